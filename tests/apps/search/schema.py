"""Search test app: a full-text index on messages.body, a vector index on foods.embedding."""

from engine import define_schema, define_table, v

schema = define_schema({
    "messages": define_table({
        "body": v.string(),
        "channel": v.string(),
        "author": v.optional(v.string()),
        "n": v.optional(v.number()),
    })
    .index("by_channel", ["channel"])
    .search_index("search_body", search_field="body", filter_fields=["channel", "author"]),
    "foods": define_table({
        "description": v.string(),
        "cuisine": v.string(),
        "embedding": v.optional(v.array(v.float64())),
    })
    .vector_index("by_embedding", vector_field="embedding", dimensions=4, filter_fields=["cuisine"]),
})
