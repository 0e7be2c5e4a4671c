from engine import cron_jobs, internal

crons = cron_jobs()
crons.interval("tick", {"seconds": 1}, internal.jobs.tick)
crons.interval("work", {"seconds": 1}, internal.jobs.work)
