"""The agent voice worker: an agent of Nova Command joins a voice channel's LiveKit room.

    python -m functions._voice.worker --channel <channelId> --agent <sessionKey> --url <engine url>

Runs as its own process, outside the engine (this folder starts with "_", so the app loader does not
scan it for Convex functions). Modules, one concept each:
- audio.py      PCM frames (48 kHz mono int16 by default), levels, generated tones and silence
- pipeline.py   the conversation: segmenter (VAD) -> speech-to-text -> reply -> text-to-speech, each
                behind a small Protocol, with offline implementations
- tokens.py     a LiveKit token for the agent, fetched from the engine over HTTP
- media.py      the room: a connector/session interface, implemented with the `livekit` realtime SDK
                (imported only when used, so everything else works without the native library)
- reconnect.py  exponential back-off with jitter
- worker.py     the process: token -> connect -> publish -> listen, reconnecting; the CLI
"""
