"""Schema of the HTTP-actions test app: events recorded by webhook routes."""

from engine import define_schema, define_table, v

schema = define_schema(
    {
        "events": define_table({"source": v.string(), "text": v.string()}).index("by_source", ["source"]),
    }
)
