"""Schema of the sync test app."""

from engine import define_schema, define_table, v

schema = define_schema(
    {
        "counters": define_table({"name": v.string(), "value": v.float64()}).index("by_name", ["name"]),
        # Items of a named list, ordered by `rank` (random ranks put inserts anywhere in the list).
        "items": define_table({"list": v.string(), "rank": v.float64()}).index("by_list_rank", ["list", "rank"]),
        # An append-only log per stream; `seq` is the count of earlier events in the stream.
        "events": define_table({"stream": v.string(), "tag": v.string(), "seq": v.float64()})
        .index("by_stream_seq", ["stream", "seq"]),
    }
)
