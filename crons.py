"""Nova Command's scheduled jobs (all UTC unless a job says otherwise).

Each integration registers its jobs here; the handlers live in functions/.
"""

from engine import cron_jobs

crons = cron_jobs()

# -- jobs are registered below, one block per integration ---------------------------------------------

# -- OpenClaw (functions/delivery.py, functions/wakes.py): notifications to agents, heartbeats ---------
# Every minute (a cron expression, not an interval: nothing fires the moment the server starts).
crons.cron("deliver agent notifications", "* * * * *", "delivery:deliverDue")
# One job for the whole squad: each tick wakes the agents whose staggered minute has come.
crons.cron("agent heartbeats", "* * * * *", "wakes:heartbeatTick")

# -- Standups and cleanup (functions/telegram.py, functions/maintenance.py) ---------------------------
# The standup moment is local time ($NOVA_STANDUP_TIME, default 23:30, in $NOVA_STANDUP_TIMEZONE,
# default UTC): a 15-minute tick checks it (every zone's offset is a multiple of 15 minutes), then
# generates, picks key decisions and sends to Telegram; it also retries failed sends.
from .functions.maintenance import CLEANUP_JOB  # noqa: E402
from .functions.telegram import STANDUP_JOB  # noqa: E402

crons.cron(STANDUP_JOB, "*/15 * * * *", "telegram:standupTick", {"trigger": "cron"})
crons.weekly(CLEANUP_JOB, {"dayOfWeek": "sunday", "hourUTC": 3, "minuteUTC": 0}, "maintenance:cleanup",
             {"trigger": "cron"})
