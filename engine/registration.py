"""Function registration: the decorators application code uses, and function references.

    @query(args={"channelId": v.id("channels")})
    async def list(ctx, args): ...

The decorator returns a `RegisteredFunction`; the loader names it "module:export" from where it is
found. `api.tasks.list` / `internal.tasks.reset` build the same "module:export" strings Convex's
generated `api` object does (`api.a.b.c` -> "a/b:c"), so functions can name each other.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

from .validators import Validator, as_validator

if TYPE_CHECKING:
    from .runner import ActionCtx, MutationCtx, QueryCtx

__all__ = ["RegisteredFunction", "query", "mutation", "action", "internal_query", "internal_mutation",
           "internal_action", "api", "internal", "FunctionReference", "function_name", "Register"]

Kind = Literal["query", "mutation", "action"]
Visibility = Literal["public", "internal"]
CtxT = TypeVar("CtxT")
CtxT_contra = TypeVar("CtxT_contra", contravariant=True)
R = TypeVar("R")
Handler = Callable[[Any, dict[str, Any]], Coroutine[Any, Any, Any]]


@dataclass(slots=True)
class RegisteredFunction(Generic[CtxT, R]):
    """A registered query, mutation or action: `RegisteredFunction[QueryCtx, list[dict]]` keeps the
    context the handler gets and what it returns."""

    kind: Kind
    visibility: Visibility
    handler: Callable[[CtxT, dict[str, Any]], Coroutine[Any, Any, R]]
    args: Validator | None = None
    returns: Validator | None = None
    path: str = field(default="")  # "module:export", set by the loader

    async def __call__(self, ctx: CtxT, args: dict[str, Any]) -> R:
        # Calling a registered function directly runs its handler (Convex discourages it; allowed).
        return await self.handler(ctx, args)


class _Wrap(Generic[CtxT]):
    """What `query(args=...)` returns: a decorator that keeps the handler's return type."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[Any], Any]) -> None:
        self._make = make

    def __call__(self, handler: Callable[[CtxT, dict[str, Any]], Coroutine[Any, Any, R]], /) -> RegisteredFunction[CtxT, R]:
        return self._make(handler)


class Register(Generic[CtxT]):
    """`query`, `mutation`, `action` and their `internal_` forms, in Convex's three spellings:
    `@query`, `@query(args=..., returns=...)` and `query(args=..., handler=fn)`."""

    def __init__(self, kind: Kind, visibility: Visibility) -> None:
        self.kind: Kind = kind
        self.visibility: Visibility = visibility
        self.__name__ = kind if visibility == "public" else f"internal_{kind}"

    def _make(self, args: Any, returns: Any) -> Callable[[Any], Any]:
        def make(h: Any) -> RegisteredFunction[Any, Any]:
            if not callable(h):
                raise TypeError(f"{self.kind} handler must be an async function")
            return RegisteredFunction(self.kind, self.visibility, cast(Handler, h),
                                      as_validator(args) if args is not None else None,
                                      as_validator(returns) if returns is not None else None)

        return make

    @overload
    def __call__(self, fn: Callable[[CtxT, dict[str, Any]], Coroutine[Any, Any, R]], /) -> RegisteredFunction[CtxT, R]: ...

    @overload
    def __call__(self, fn: None = None, /, *, args: Any = None, returns: Any = None,
                 handler: Callable[[CtxT, dict[str, Any]], Coroutine[Any, Any, R]]) -> RegisteredFunction[CtxT, R]: ...

    @overload
    def __call__(self, fn: None = None, /, *, args: Any = None, returns: Any = None,
                 handler: None = None) -> _Wrap[CtxT]: ...

    def __call__(self, fn: Any = None, /, *, args: Any = None, returns: Any = None, handler: Any = None) -> Any:
        make = self._make(args, returns)
        if handler is not None:  # Convex's object form: query(args=..., handler=fn)
            return make(handler)
        if fn is not None:  # bare @query
            return make(fn)
        return _Wrap(make)


query: Register[QueryCtx] = Register("query", "public")
mutation: Register[MutationCtx] = Register("mutation", "public")
action: Register[ActionCtx] = Register("action", "public")
internal_query: Register[QueryCtx] = Register("query", "internal")
internal_mutation: Register[MutationCtx] = Register("mutation", "internal")
internal_action: Register[ActionCtx] = Register("action", "internal")


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
