"""Nova Command's HTTP routes (the site origin, port 3211; also /http/... on the API port).

Each integration keeps its handlers in functions/_http/<integration>.py and registers them here, so
this file reads as the spec's endpoint table.
"""

from engine import HttpRouter

http = HttpRouter()

# -- routes are registered below, one block per integration ------------------------------------------

# -- LiveKit (functions/_http/livekit.py): voice tokens for non-Convex callers, room webhooks ---------
from .functions._http.livekit import livekit_webhook, voice_token  # noqa: E402

http.route(path="/voice/token", method="POST", handler=voice_token)
http.route(path="/livekit/webhook", method="POST", handler=livekit_webhook)

# -- OpenClaw (functions/_http/openclaw.py): lifecycle events in, notifications out to agents ---------
from .functions._http.openclaw import deliver_notifications, openclaw_event  # noqa: E402

http.route(path="/openclaw/event", method="POST", handler=openclaw_event)
http.route(path="/notifications/deliver", method="POST", handler=deliver_notifications)

# -- Standups and maintenance (functions/_http/standup.py): admin-key triggers for the nightly jobs ---
from .functions._http.standup import maintenance_cleanup, standup_generate, standup_send  # noqa: E402

http.route(path="/standup/generate", method="POST", handler=standup_generate)
http.route(path="/standup/send", method="POST", handler=standup_send)
http.route(path="/maintenance/cleanup", method="POST", handler=maintenance_cleanup)

# -- Documents (functions/_http/documents.py): a file and its document in one call (issue 11) --------
from .functions._http.documents import upload_document  # noqa: E402

http.route(path="/documents/upload", method="POST", handler=upload_document)
