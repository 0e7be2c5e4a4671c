"""Search benchmark app (bench/search.py): a searchable table, the same table without a search index,
and 128-dimension vectors."""

from engine import define_schema, define_table, v

schema = define_schema({
    "docs": define_table({"body": v.string(), "tenant": v.string()})
    .search_index("search_body", search_field="body", filter_fields=["tenant"]),
    "plain": define_table({"body": v.string(), "tenant": v.string()}),
    "vecs": define_table({"v": v.array(v.float64()), "tenant": v.string()})
    .vector_index("by_v", vector_field="v", dimensions=128, filter_fields=["tenant"]),
})
