"""Schema of the conformance app: named counters, and messages with optional int64 and bytes fields."""

from engine import define_schema, define_table, v

schema = define_schema(
    {
        "counters": define_table({"name": v.string(), "value": v.float64()}).index("by_name", ["name"]),
        "messages": define_table(
            {
                "author": v.string(),
                "body": v.string(),
                "n": v.optional(v.int64()),
                "blob": v.optional(v.bytes()),
            }
        ).index("by_author", ["author"]),
    }
)
