"""Schema of the transfer benchmark app (bench/transfer.py): SpacetimeDB's "keynote-2" Convex app."""

from engine import define_schema, define_table, v

schema = define_schema({
    "accounts": define_table({"id": v.number(), "balance": v.number()}).index("by_account_id", ["id"]),
})
