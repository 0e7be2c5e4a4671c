"""Return validators for whole documents (`Doc<"tasks">`): the schema's fields plus the system fields."""

from engine import pagination_result_validator, v
from typing import cast

from engine.validators import ObjectValidator, Validator

from ..schema import schema


def doc(table: str):
    return v.object({"_id": v.id(table), "_creationTime": v.number(), **cast(ObjectValidator, schema.tables[table].document).fields})


def paginated(item: Validator) -> ObjectValidator:
    """The result of `.paginate()`: Convex's `PaginationResult<T>` exactly."""
    return pagination_result_validator(item)
