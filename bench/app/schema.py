"""Schema of the subscription benchmark app (bench/sync.py)."""

from engine import define_schema, define_table, v

schema = define_schema({
    "items": define_table({"owner": v.string(), "rank": v.float64(), "tag": v.string()})
    .index("by_owner", ["owner"])
    .index("by_owner_rank", ["owner", "rank"]),
})
