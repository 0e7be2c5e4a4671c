"""Return validators for whole documents (`Doc<"tasks">`): the schema's fields plus the system fields."""

from engine import v

from ..schema import schema


def doc(table: str):
    return v.object({"_id": v.id(table), "_creationTime": v.number(), **schema.tables[table].document.fields})


def paginated(item) -> object:
    """The result of `.paginate()`."""
    return v.object({
        "page": v.array(item),
        "isDone": v.boolean(),
        "continueCursor": v.string(),
        "splitCursor": v.optional(v.union(v.string(), v.null())),
        "pageStatus": v.optional(v.union(v.string(), v.null())),
    })
