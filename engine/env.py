"""Environment variables and secrets for functions: Convex's `process.env`.

    from engine import env

    api_key = env.require("LIVEKIT_API_KEY")       # EngineError naming the variable if unset
    region = env.get("LIVEKIT_REGION", "eu")

Values come from the process environment overlaid on an optional env file, a JSON object of
strings (default `<db dir>/env.json`, or `serve --env-file F`). The process environment wins, so
`doppler run -- python -m engine serve` works unchanged, and a secret set with
`python -m engine env set NAME VALUE` is seen by the running server at its next read (the file is
re-read when it changes). A missing secret fails where it is used, never at startup.

On PostgreSQL (several nodes) the deployment's variables live in the database instead of a file,
so every node sees the same ones: the Deployment keeps a copy here (`use_shared`), refreshed when
any node changes them (engine.storage.postgres notifies); the process environment still wins.

`CONVEX_CLOUD_URL` and `CONVEX_SITE_URL` are Convex's system variables: the deployment's own API
origin and HTTP-actions origin (`engine serve` sets them from where it listens, or from
$CONVEX_CLOUD_ORIGIN / $CONVEX_SITE_ORIGIN behind a proxy, as Convex's self-hosted backend does).
They win over anything of the same name in the environment or the file.

Invariants: values never reach a log line or an error message, only names; the file is written
atomically with mode 0600.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from .errors import EngineError

__all__ = ["ENV_FILE_NAME", "get", "require", "use_file", "env_file", "read_file", "set_var", "remove_var",
           "check_name", "check_value", "set_deployment_urls", "deployment_urls", "CLOUD_URL", "SITE_URL",
           "use_shared", "shared", "deployment_values", "check_changes"]

CLOUD_URL = "CONVEX_CLOUD_URL"
SITE_URL = "CONVEX_SITE_URL"

ENV_FILE_NAME = "env.json"
# Convex's rules for deployment environment variables.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
MAX_VALUE_BYTES = 8 * 1024

_lock = threading.Lock()
_file: Path | None = None
_cache: tuple[tuple[int, int, int], dict[str, str]] | None = None
_system: dict[str, str] = {}
_shared: dict[str, str] | None = None  # a shared store's variables (replace the file's when set)


def set_deployment_urls(cloud_url: str | None, site_url: str | None) -> None:
    """The deployment's own origins, as functions see them (`CONVEX_CLOUD_URL`, `CONVEX_SITE_URL`)."""
    for name, value in ((CLOUD_URL, cloud_url), (SITE_URL, site_url)):
        if value:
            _system[name] = value.rstrip("/")
        else:
            _system.pop(name, None)


def deployment_urls() -> tuple[str | None, str | None]:
    return _system.get(CLOUD_URL), _system.get(SITE_URL)


def use_file(path: str | Path | None) -> None:
    """Set the env file the server reads (None: the process environment only)."""
    global _file, _cache
    with _lock:
        _file = Path(path).resolve() if path is not None else None
        _cache = None


def env_file() -> Path | None:
    return _file


def use_shared(values: dict[str, str] | None) -> None:
    """The variables of a store several nodes share (None: back to the env file)."""
    global _shared
    _shared = dict(values) if values is not None else None


def shared() -> dict[str, str] | None:
    return _shared


def deployment_values() -> dict[str, str]:
    """The deployment's own variables (not the process environment): the shared store's, else
    the env file's."""
    if _shared is not None:
        return dict(_shared)
    return read_file(_file) if _file is not None else {}


def read_file(path: str | Path) -> dict[str, str]:
    """The variables in an env file ({} if it does not exist)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise EngineError("InvalidEnvFile", f"The env file {path} is not valid JSON: {e}.") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise EngineError("InvalidEnvFile", f"The env file {path} must be a JSON object of string values.")
    return data


def _file_vars() -> dict[str, str]:
    global _cache
    path = _file
    if path is None:
        return {}
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
    values = read_file(path)
    with _lock:
        _cache = (key, values)
    return values


def get(name: str, default: str | None = None) -> str | None:
    """The variable's value (system variables, then the process environment, then the env file),
    else `default`."""
    value = _system.get(name)
    if value is not None:
        return value
    value = os.environ.get(name)
    if value is not None:
        return value
    shared_values = _shared
    if shared_values is not None:
        return shared_values.get(name, default)
    return _file_vars().get(name, default)


def require(name: str) -> str:
    """The variable's value; an unset or empty variable raises `MissingEnvironmentVariable`."""
    value = get(name)
    if not value:
        state = "is empty" if value == "" else "is not set"
        raise EngineError(
            "MissingEnvironmentVariable",
            f"Environment variable {name} {state}; set it with "
            f"`python -m engine env set {name} ...` or in the environment",
        )
    return value


# --- editing the file (the `env` command) --------------------------------------------------------


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise EngineError("InvalidEnvironmentVariableName",
                          f"Invalid environment variable name {name!r}: it must start with a letter and contain "
                          "only letters, digits and underscores (at most 40 characters).")


def check_value(name: str, value: str) -> None:
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise EngineError("EnvironmentVariableTooLarge",
                          f"The value of {name} is longer than {MAX_VALUE_BYTES} bytes.")


def check_changes(changes: Any) -> list[tuple[str, str | None]]:
    """`[{name, value | null}]` (the CLI's update_environment_variables body) checked whole, as
    (name, value or None to remove) pairs; EngineError naming the first bad one."""
    if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
        raise EngineError("InvalidEnvironmentVariableChanges",
                          "`changes` must be an array of {name, value} objects (value null removes).")
    out: list[tuple[str, str | None]] = []
    for change in changes:
        name, value = change.get("name"), change.get("value")
        if not isinstance(name, str):
            raise EngineError("InvalidEnvironmentVariableName", "Each change needs a `name` string.")
        check_name(name)
        if value is not None:
            if not isinstance(value, str):
                raise EngineError("InvalidEnvironmentVariableValue", f"The value of {name} must be a string.")
            check_value(name, value)
        out.append((name, value))
    return out


def _write(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".env-", suffix=".json", dir=path.parent)  # created with mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(sorted(values.items())), f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_var(path: str | Path, name: str, value: str) -> bool:
    """Set `name` in the env file; True if it was new."""
    check_name(name)
    check_value(name, value)
    path = Path(path)
    values = read_file(path)
    created = name not in values
    values[name] = value
    _write(path, values)
    return created


def remove_var(path: str | Path, name: str) -> bool:
    """Remove `name` from the env file; False if it was not there."""
    path = Path(path)
    values = read_file(path)
    if name not in values:
        return False
    del values[name]
    _write(path, values)
    return True
