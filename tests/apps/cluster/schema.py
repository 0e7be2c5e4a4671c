"""Schema of the cluster test app."""

from engine import define_schema, define_table, v

schema = define_schema(
    {
        # One row per run of a scheduled function or a cron: what ran, on which node, and (crons)
        # which planned time of the job it was.
        "runs": define_table({"tag": v.string(), "node": v.string(), "planned": v.optional(v.float64())})
        .index("by_tag", ["tag"]),
        "flags": define_table({"name": v.string(), "on": v.boolean()}).index("by_name", ["name"]),
    }
)
