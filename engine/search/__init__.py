"""Full-text and vector search: Convex's `searchIndex` / `withSearchIndex` and `vectorIndex` /
`ctx.vectorSearch`, kept in step with every commit and reactive like any other read.

    schema:   define_table({...}).search_index("search_body", search_field="body", filter_fields=["channel"])
              .vector_index("by_embedding", vector_field="embedding", dimensions=1536, filter_fields=["cuisine"])
    queries:  ctx.db.query("messages").with_search_index("search_body",
                  lambda q: q.search("body", "hello hi").eq("channel", "#general")).take(10)
    actions:  await ctx.vector_search("foods", "by_embedding", {"vector": v, "limit": 16,
                  "filter": lambda q: q.or_(q.eq("cuisine", "French"), q.eq("cuisine", "Thai"))})

Modules, top to bottom:
- `tokens` — Convex's tokenizer and limits, filter values, the read/write keys of search reads;
- `spec` — the catalog's entries for search and vector indexes; `schema_checks` — schema rules;
- `text` — compiling and running a text search (matching, BM25 ranking, read set), the scan the
  query builder walks; `pagination` — `paginate()` over a search;
- `vector` — `ctx.vector_search`: its API, limits and errors;
- `maintenance` — what a commit writes for a changed document (index entries, write-log keys);
- `manager` — indexes from the schema, background backfill, drops;
- `backend` — the storage seam (`SearchStore`, `TextReader`, `VectorReader`, the ops a commit
  carries); `sqlite_store` with `sqlite_fts` (FTS5) and `sqlite_vectors` (vector table + usearch
  HNSW) implement it for SQLite.
"""
