"""Schema of the engine-core test app."""

from engine import define_schema, define_table, v

schema = define_schema({
    "counters": define_table({"name": v.string(), "value": v.float64()}).index("by_name", ["name"]),
    "items": define_table({
        "group": v.string(),
        "rank": v.float64(),
        "tags": v.optional(v.array(v.string())),
        "ref": v.optional(v.id("counters")),
    }).index("by_group", ["group"]).index("by_group_rank", ["group", "rank"]),
    "accounts": define_table({"owner": v.string(), "balance": v.int64()}).index("by_owner", ["owner"]),
})
