"""Validators: the `v.*` builders, compiled once into fast checkers with `$.path` error messages.

    from engine.validators import v
    args = v.object({"channelId": v.id("channels"), "limit": v.optional(v.number())})
    args.check({"channelId": cid}, env)        # raises ValidationError("...", path="$.channelId")
    args.to_json()                             # Convex's validator JSON (function-spec form)

Invariants:
- Python value model: float = float64, int = int64 (never bool), bool, str, bytes, list, dict, None.
  Type tests use `type(x) is T`, so a bool is never an int64 and an int is never a float64.
- `check` builds no path strings on success: a failure raises `_Mismatch`, each container appends its
  path segment while the exception unwinds, and only the public `check` formats the final path.
- `v.optional(x)` is only meaningful as an object field; array/record/union members may not be optional.
- `env` is anything with `table_of_id(id_str) -> str | None`; only `v.id` consults it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from typing import Any, Iterable, Mapping

from .values import convex_type_name

__all__ = ["ValidationError", "Validator", "v", "as_validator"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHORT_LIMIT = 60
_MISSING = object()


class ValidationError(Exception):
    """A value does not match a validator: `reason` says why, `path` ("$.a[2]") says where."""

    def __init__(self, reason: str, path: str = "$") -> None:
        super().__init__(f"{reason} at {path}")
        self.reason = reason
        self.path = path


class _Mismatch(Exception):
    """Internal failure carrying path segments innermost-first, appended while unwinding."""

    __slots__ = ("reason", "segments")

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.segments: list[str] = []


# ---------------------------------------------------------------------------------------------
# Describing values and paths in messages


_type_name = convex_type_name  # one definition of Convex type names, in engine.values


def _show(value: Any) -> str:
    """A short, JSON-like rendering of a value for messages (never the whole of a big value)."""
    t = type(value)
    if t is str:
        text = json.dumps(value, ensure_ascii=False)
    elif t is bool:
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif t is float or t is int:
        text = repr(value)
    elif t is bytes:
        text = f"<{len(value)} bytes>"
    elif t is list:
        text = "[" + ", ".join(_show(x) for x in value[:8]) + (", ...]" if len(value) > 8 else "]")
    elif t is dict:
        items = list(value.items())[:8]
        text = "{" + ", ".join(f"{_key_text(k)}: {_show(x)}" for k, x in items)
        text += ", ...}" if len(value) > 8 else "}"
    else:
        text = repr(value)
    if len(text) > _SHORT_LIMIT:
        text = text[: _SHORT_LIMIT - 3] + "..."
    return text


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) and _IDENT.match(key) else json.dumps(str(key), ensure_ascii=False)


def _got(value: Any) -> str:
    return f"{_type_name(value)} ({_show(value)})"


def _field_segment(name: str) -> str:
    if _IDENT.match(name):
        return "." + name
    return "[" + json.dumps(name, ensure_ascii=False) + "]"


def field_path(base: str, name: str) -> str:
    """`$` + `name` -> `$.name` (or `$["odd key"]`); shared with schema messages."""
    return base + _field_segment(name)


# ---------------------------------------------------------------------------------------------
# Validator classes


class Validator:
    """Base class: `check(value, env, path)` raises ValidationError; `to_json()` is Convex's JSON."""

    __slots__ = ()
    is_optional: bool = False
    # Python types this validator can accept at its top level; None = any type (v.any()).
    kinds: frozenset[type] | None = frozenset()

    def check(self, value: Any, env: Any, path: str = "$") -> None:
        try:
            self._check(value, env)
        except _Mismatch as m:
            raise ValidationError(m.reason, path + "".join(reversed(m.segments))) from None

    def _check(self, value: Any, env: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def label(self) -> str:
        """What this validator expects, as shown after "Expected" in messages."""
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        return f"<Validator {self.label()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Validator) and self.to_json() == other.to_json() and (
            self.is_optional == other.is_optional
        )

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))


class _Scalar(Validator):
    """string, float64, int64, boolean, null, bytes: one exact Python type."""

    __slots__ = ("_type", "_json_type", "_label", "kinds")

    def __init__(self, py_type: type, json_type: str, label: str) -> None:
        self._type = py_type
        self._json_type = json_type
        self._label = label
        self.kinds = frozenset([py_type])

    def _check(self, value: Any, env: Any) -> None:
        if type(value) is not self._type:
            raise _Mismatch(f"Expected {self._label}, got {_got(value)}")

    def to_json(self) -> dict[str, Any]:
        return {"type": self._json_type}

    def label(self) -> str:
        return self._label


class AnyValidator(Validator):
    __slots__ = ()
    kinds = None

    def _check(self, value: Any, env: Any) -> None:
        return None

    def to_json(self) -> dict[str, Any]:
        return {"type": "any"}

    def label(self) -> str:
        return "any"


class IdValidator(Validator):
    __slots__ = ("table_name",)
    kinds = frozenset([str])

    def __init__(self, table_name: str) -> None:
        if type(table_name) is not str or not table_name:
            raise TypeError(f"v.id() needs a table name, got {table_name!r}")
        self.table_name = table_name

    def _check(self, value: Any, env: Any) -> None:
        if type(value) is not str:
            raise _Mismatch(f'Expected ID for table "{self.table_name}", got {_got(value)}')
        table = env.table_of_id(value)
        if table == self.table_name:
            return
        if table is None:
            raise _Mismatch(f'Value {_show(value)} is not a valid ID for table "{self.table_name}"')
        raise _Mismatch(f'ID belongs to table "{table}", expected "{self.table_name}"')

    def to_json(self) -> dict[str, Any]:
        return {"type": "id", "tableName": self.table_name}

    def label(self) -> str:
        return f'id("{self.table_name}")'


def _literal_key(value: Any) -> tuple[type, Any]:
    # 1, 1.0 and True are equal (and hash equal) in Python but are three different Convex values;
    # float.hex() also separates -0.0 from 0.0 and makes NaN equal to itself.
    return (type(value), value.hex() if type(value) is float else value)


class LiteralValidator(Validator):
    __slots__ = ("value", "_key", "kinds")

    def __init__(self, value: Any) -> None:
        if type(value) not in (str, float, int, bool):
            raise TypeError(f"v.literal() takes a str, float, int or bool, got {_got(value)}")
        if type(value) is int and not -(2**63) <= value < 2**63:
            raise ValueError(f"v.literal({value}) is outside the int64 range")
        self.value = value
        self._key = _literal_key(value)
        self.kinds = frozenset([type(value)])

    def _check(self, value: Any, env: Any) -> None:
        if type(value) is not self._key[0] or _literal_key(value) != self._key:
            raise _Mismatch(f"Expected {self.label()}, got {_got(value)}")

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if type(value) is int:
            return {"type": "literal", "value": {"$integer": _int64_b64(value)}}
        # NaN, ±inf and -0.0 are not JSON numbers: they travel as {"$float": ...} like any value.
        if type(value) is float and (not math.isfinite(value) or (value == 0.0 and math.copysign(1.0, value) < 0)):
            return {"type": "literal", "value": {"$float": base64.b64encode(struct.pack("<d", value)).decode()}}
        return {"type": "literal", "value": value}

    def label(self) -> str:
        return _show(self.value)


def _int64_b64(value: int) -> str:
    return base64.b64encode(struct.pack("<q", value)).decode()


class ArrayValidator(Validator):
    __slots__ = ("element",)
    kinds = frozenset([list])

    def __init__(self, element: Validator) -> None:
        self.element = _member(element, "v.array()")

    def _check(self, value: Any, env: Any) -> None:
        if type(value) is not list:
            raise _Mismatch(f"Expected array, got {_got(value)}")
        check = self.element._check
        i = 0
        try:
            for i, item in enumerate(value):
                check(item, env)
        except _Mismatch as m:
            m.segments.append(f"[{i}]")
            raise

    def to_json(self) -> dict[str, Any]:
        return {"type": "array", "value": self.element.to_json()}

    def label(self) -> str:
        return "array"


class ObjectValidator(Validator):
    __slots__ = ("fields", "_entries", "_names", "_required")
    kinds = frozenset([dict])

    def __init__(self, fields: Mapping[str, Any]) -> None:
        if not isinstance(fields, Mapping):
            raise TypeError(f"v.object() takes a dict of validators, got {type(fields).__name__}")
        entries = []
        for name, validator in fields.items():
            if type(name) is not str or not name:
                raise TypeError(f"v.object() field names must be non-empty strings, got {name!r}")
            val = as_validator(validator)
            entries.append((name, val, val.is_optional))
        self.fields: dict[str, Validator] = {n: val for n, val, _ in entries}
        self._entries: tuple[tuple[str, Validator, bool], ...] = tuple(entries)
        self._names = frozenset(self.fields)
        self._required = sum(1 for _, _, opt in entries if not opt)

    def _check(self, value: Any, env: Any) -> None:
        if type(value) is not dict:
            raise _Mismatch(f"Expected object, got {_got(value)}")
        present = 0
        for name, validator, optional in self._entries:
            item = value.get(name, _MISSING)
            if item is _MISSING:
                if not optional:
                    # Reported at the object's own path: the field is not there to point at.
                    raise _Mismatch(f"Object is missing the required field `{name}`")
                continue
            present += 1
            try:
                validator._check(item, env)
            except _Mismatch as m:
                m.segments.append(_field_segment(name))
                raise
        if present != len(value):
            for key in value:
                if key not in self._names:
                    raise _Mismatch(f"Object contains extra field `{key}` that is not in the validator")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "object",
            "value": {n: {"fieldType": val.to_json(), "optional": opt} for n, val, opt in self._entries},
        }

    def label(self) -> str:
        return "object"


class RecordValidator(Validator):
    __slots__ = ("keys", "values")
    kinds = frozenset([dict])

    def __init__(self, keys: Validator, values: Validator) -> None:
        keys = _member(keys, "v.record() keys")
        if not _is_string_like(keys):
            raise TypeError(
                f"v.record() keys must be v.string(), v.id(...) or a union of those and string literals, "
                f"got {keys.label()}"
            )
        self.keys = keys
        self.values = _member(values, "v.record() values")

    def _check(self, value: Any, env: Any) -> None:
        if type(value) is not dict:
            raise _Mismatch(f"Expected record, got {_got(value)}")
        check_key = self.keys._check
        check_value = self.values._check
        key: Any = ""
        try:
            for key, item in value.items():
                check_key(key, env)
                check_value(item, env)
        except _Mismatch as m:
            m.segments.append(_field_segment(key) if type(key) is str else f"[{_show(key)}]")
            raise

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "record",
            "keys": self.keys.to_json(),
            "values": {"fieldType": self.values.to_json(), "optional": False},
        }

    def label(self) -> str:
        return "record"


def _is_string_like(validator: Validator) -> bool:
    if isinstance(validator, (IdValidator,)):
        return True
    if isinstance(validator, _Scalar):
        return validator._type is str
    if isinstance(validator, LiteralValidator):
        return type(validator.value) is str
    if isinstance(validator, UnionValidator):
        return all(_is_string_like(m) for m in validator.members)
    return False


class UnionValidator(Validator):
    __slots__ = ("members", "_literals", "_others", "kinds")

    def __init__(self, members: Iterable[Any]) -> None:
        self.members: tuple[Validator, ...] = tuple(_member(m, "v.union()") for m in members)
        # Literal members collapse into one set lookup: the common `status` enum costs one probe.
        self._literals = frozenset(m._key for m in self.members if isinstance(m, LiteralValidator))
        self._others = tuple(m for m in self.members if not isinstance(m, LiteralValidator))
        kinds: set[type] = set()
        for m in self.members:
            if m.kinds is None:
                self.kinds = None
                break
            kinds |= m.kinds
        else:
            self.kinds = frozenset(kinds)

    def _check(self, value: Any, env: Any) -> None:
        if self._literals and type(value) in (str, float, int, bool) and _literal_key(value) in self._literals:
            return
        for member in self._others:
            try:
                member._check(value, env)
                return
            except _Mismatch:
                continue
        # No member matched. If exactly one member could take this type, its own (deeper) error is
        # the useful one; otherwise list everything the union expected.
        t = type(value)
        candidates = [m for m in self.members if m.kinds is None or t in m.kinds]
        if len(candidates) == 1 and not isinstance(candidates[0], LiteralValidator):
            candidates[0]._check(value, env)
        raise _Mismatch(f"Expected {self.label()}, got {_got(value)}")

    def to_json(self) -> dict[str, Any]:
        return {"type": "union", "value": [m.to_json() for m in self.members]}

    def label(self) -> str:
        if not self.members:
            return "nothing (empty union)"
        return " | ".join(m.label() for m in self.members)


class OptionalValidator(Validator):
    """`v.optional(x)`: an object field that may be absent. Checks and serializes as `x`."""

    __slots__ = ("inner",)
    is_optional = True

    def __init__(self, inner: Validator) -> None:
        self.inner = inner.inner if isinstance(inner, OptionalValidator) else as_validator(inner)

    @property
    def kinds(self) -> frozenset[type] | None:  # type: ignore[override]
        return self.inner.kinds

    def _check(self, value: Any, env: Any) -> None:
        self.inner._check(value, env)

    def to_json(self) -> dict[str, Any]:
        return self.inner.to_json()

    def label(self) -> str:
        return self.inner.label()


def _member(x: Any, where: str) -> Validator:
    validator = as_validator(x)
    if validator.is_optional:
        raise TypeError(f"v.optional() is only allowed as an object field, not inside {where}")
    return validator


def as_validator(x: Any) -> Validator:
    """A Validator as is; a plain dict of validators as `v.object(dict)` (function `args=`)."""
    if isinstance(x, Validator):
        return x
    if isinstance(x, Mapping):
        return ObjectValidator(x)
    raise TypeError(f"Expected a validator (v.string(), v.object({{...}}), ...) or a dict of them, got {x!r}")


# ---------------------------------------------------------------------------------------------
# The `v` namespace


_STRING = _Scalar(str, "string", "string")
_FLOAT64 = _Scalar(float, "number", "float64")
_INT64 = _Scalar(int, "bigint", "int64")
_BOOLEAN = _Scalar(bool, "boolean", "boolean")
_NULL = _Scalar(type(None), "null", "null")
_BYTES = _Scalar(bytes, "bytes", "bytes")
_ANY = AnyValidator()


class _V:
    """The validator builders, named as in Convex's `v` (`v.float64` is `v.number`, `v.int64` is `v.bigint`)."""

    __slots__ = ()

    @staticmethod
    def string() -> Validator:
        return _STRING

    @staticmethod
    def number() -> Validator:
        return _FLOAT64

    @staticmethod
    def float64() -> Validator:
        return _FLOAT64

    @staticmethod
    def int64() -> Validator:
        return _INT64

    @staticmethod
    def bigint() -> Validator:
        return _INT64

    @staticmethod
    def boolean() -> Validator:
        return _BOOLEAN

    @staticmethod
    def null() -> Validator:
        return _NULL

    @staticmethod
    def bytes() -> Validator:
        return _BYTES

    @staticmethod
    def any() -> Validator:
        return _ANY

    @staticmethod
    def id(table_name: str) -> IdValidator:
        return IdValidator(table_name)

    @staticmethod
    def literal(value: Any) -> LiteralValidator:
        return LiteralValidator(value)

    @staticmethod
    def array(element: Any) -> ArrayValidator:
        return ArrayValidator(element)

    @staticmethod
    def object(fields: Mapping[str, Any]) -> ObjectValidator:
        return ObjectValidator(fields)

    @staticmethod
    def record(keys: Any, values: Any) -> RecordValidator:
        return RecordValidator(keys, values)

    @staticmethod
    def union(*members: Any) -> UnionValidator:
        return UnionValidator(members)

    @staticmethod
    def optional(inner: Any) -> OptionalValidator:
        return OptionalValidator(inner)


v = _V()
