"""`Id` and `Doc`: typed names for document ids and documents, as Convex's generated `Id<"t">` and `Doc<"t">`.

    from typing import Literal
    from engine import Doc, Id, QueryCtx, query, v

    @query(args={"id": v.id("tasks")})
    async def title(ctx: QueryCtx, args) -> str:
        task: Doc[Literal["tasks"]] | None = await ctx.db.get("tasks", args["id"])
        return task["title"] if task else ""

They exist for type checkers only: at run time an id is a plain `str` and a document a plain
`dict` (the database never returns instances of these classes), like `typing.NewType`. The table
parameter is a string `Literal`, so `Id[Literal["tasks"]]` and `Id[Literal["agents"]]` are
different types and a checker tells them apart.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["Id", "Doc"]

TableName = TypeVar("TableName", bound=str)


class Id(str, Generic[TableName]):
    """A document id of table `TableName` (a `str` at run time)."""

    __slots__ = ()


class Doc(dict[str, Any], Generic[TableName]):
    """A document of table `TableName`, with `_id` and `_creationTime` (a `dict` at run time)."""

    __slots__ = ()
