"""Schema of the scheduler test app: one table of events, and one holding scheduled job ids."""

from engine import define_schema, define_table, v

schema = define_schema(
    {
        "events": define_table({"tag": v.string(), "by": v.optional(v.string())}).index("by_tag", ["tag"]),
        "notes": define_table({"jobId": v.id("_scheduled_functions")}),
    }
)
