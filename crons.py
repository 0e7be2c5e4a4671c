"""Nova Command's scheduled jobs (all UTC unless a job says otherwise).

Each integration registers its jobs here; the handlers live in functions/.
"""

from engine import cron_jobs

crons = cron_jobs()

# -- jobs are registered below, one block per integration ---------------------------------------------
