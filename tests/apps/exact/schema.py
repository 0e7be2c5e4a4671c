"""Schema of the `exact` test app."""

from engine import define_schema, define_table, v

schema = define_schema({
    # `n` orders a list; `keep` is what the filtered pagination keeps; `pad` makes rows big.
    "items": define_table({"list": v.string(), "n": v.float64(), "keep": v.boolean(),
                           "pad": v.optional(v.string())}).index("by_list_n", ["list", "n"]),
    "events": define_table({"tag": v.string()}).index("by_tag", ["tag"]),
    "files": define_table({"name": v.string(), "storageId": v.id("_storage")}),
})
