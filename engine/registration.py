"""Function registration: the decorators application code uses, and function references.

    @query(args={"channelId": v.id("channels")})
    async def list(ctx, args): ...

The decorator returns a `RegisteredFunction`; the loader names it "module:export" from where it is
found. `api.tasks.list` / `internal.tasks.reset` build the same "module:export" strings Convex's
generated `api` object does (`api.a.b.c` -> "a/b:c"), so functions can name each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .validators import Validator, as_validator

__all__ = ["RegisteredFunction", "query", "mutation", "action", "internal_query", "internal_mutation",
           "internal_action", "api", "internal", "FunctionReference", "function_name"]

Kind = Literal["query", "mutation", "action"]
Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]


@dataclass(slots=True)
class RegisteredFunction:
    kind: Kind
    visibility: Literal["public", "internal"]
    handler: Handler
    args: Validator | None = None
    returns: Validator | None = None
    path: str = field(default="")  # "module:export", set by the loader

    async def __call__(self, ctx: Any, args: dict[str, Any]) -> Any:
        # Calling a registered function directly runs its handler (Convex discourages it; allowed).
        return await self.handler(ctx, args)


def _register(kind: Kind, visibility: Literal["public", "internal"]):
    def decorator(fn: Handler | None = None, *, args: Any = None, returns: Any = None,
                  handler: Handler | None = None):
        def wrap(h: Handler) -> RegisteredFunction:
            if not callable(h):
                raise TypeError(f"{kind} handler must be an async function")
            return RegisteredFunction(kind, visibility, h,
                                      as_validator(args) if args is not None else None,
                                      as_validator(returns) if returns is not None else None)

        if handler is not None:  # Convex's object form: query(args=..., handler=fn)
            return wrap(handler)
        if fn is not None:  # bare @query
            return wrap(fn)
        return wrap

    decorator.__name__ = kind if visibility == "public" else f"internal_{kind}"
    return decorator


query = _register("query", "public")
mutation = _register("mutation", "public")
action = _register("action", "public")
internal_query = _register("query", "internal")
internal_mutation = _register("mutation", "internal")
internal_action = _register("action", "internal")


class FunctionReference(str):
    """A function's "module:export" name; also a str, so it can be passed anywhere a path can."""

    __slots__ = ()


class _ApiPath:
    __slots__ = ("_parts",)

    def __init__(self, parts: tuple[str, ...]) -> None:
        self._parts = parts

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        parts = self._parts + (name,)
        return _ApiRef(parts)


class _ApiRef(FunctionReference):
    """`api.a.b` is both a reference ("a:b") and a path prefix (`api.a.b.c` -> "a/b:c")."""

    def __new__(cls, parts: tuple[str, ...]) -> _ApiRef:
        module, export = "/".join(parts[:-1]), parts[-1]
        obj = super().__new__(cls, module if export == "default" else f"{module}:{export}")
        return obj

    def __init__(self, parts: tuple[str, ...]) -> None:
        self._parts = parts

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _ApiRef(self._parts + (name,))


class _ApiRoot:
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _ApiPath((name,))


api = _ApiRoot()
internal = _ApiRoot()


def function_name(ref: Any) -> str:
    """A path string from a reference, a string, or a RegisteredFunction."""
    if isinstance(ref, RegisteredFunction):
        if not ref.path:
            raise ValueError("this function has not been loaded from functions/ yet")
        return ref.path
    if isinstance(ref, str):
        return str(ref)
    raise TypeError(f"expected a function reference, got {type(ref).__name__}")
