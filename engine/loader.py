"""Loading an app folder, and Convex's function path rules.

An app is a folder with `schema.py` (exporting `schema`), `functions/**/*.py`, and optionally
`http_routes.py` (exporting `http`) and `crons.py` (exporting `crons`). Each load imports the folder
as a fresh synthetic package, so app modules can import each other relatively (`from . import x`)
and a reload (dev mode) never sees stale modules. Files and folders whose names start with "_" are
helpers: imported on demand, never scanned for functions.

Paths: "dir/file:export"; "tasks" means "tasks:default"; a ".js" suffix on the module is accepted
and ignored, as Convex's server does.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EngineError
from .registration import RegisteredFunction

__all__ = ["App", "load_app", "canonicalize_path"]

_COMPONENT = re.compile(r"^[A-Za-z0-9_.]*[A-Za-z0-9][A-Za-z0-9_.]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_counter = itertools.count(1)


_CANONICAL: dict[str, str] = {}  # valid paths seen, with their canonical form (bounded)


def canonicalize_path(path: Any) -> str:
    """'tasks' -> 'tasks:default', 'tasks.js:list' -> 'tasks:list'; raises InvalidFunctionPath."""
    if type(path) is str:
        known = _CANONICAL.get(path)
        if known is not None:
            return known
    canonical = _canonicalize(path)
    if len(_CANONICAL) >= 10_000:
        _CANONICAL.clear()
    _CANONICAL[path] = canonical
    return canonical


def _canonicalize(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise EngineError("InvalidFunctionPath", f"Function path must be a non-empty string, got {path!r}.")
    module, sep, export = path.rpartition(":")
    if not sep:
        module, export = path, "default"
    if module.endswith(".js"):
        module = module[:-3]
    parts = module.split("/")
    if not module or not all(_COMPONENT.match(p) for p in parts) or "." in "".join(parts):
        raise EngineError("InvalidFunctionPath", f"Invalid function path {path!r}: bad module path {module!r}.")
    if not _IDENTIFIER.match(export) or set(export) == {"_"}:
        raise EngineError("InvalidFunctionPath", f"Invalid function path {path!r}: bad export name {export!r}.")
    return f"{module}:{export}"


@dataclass
class App:
    root: Path
    schema: Any = None  # engine.schema.SchemaDefinition | None
    functions: dict[str, RegisteredFunction] = field(default_factory=dict)
    http: Any = None  # engine.http_router.HttpRouter | None
    crons: Any = None
    package: str = ""


def _import_file(package: str, name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"{package}.{name}", path,
                                                  submodule_search_locations=None)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_app(root: str | Path) -> App:
    root = Path(root).resolve()
    if not root.is_dir():
        raise EngineError("AppNotFound", f"App folder {str(root)!r} does not exist.")
    package = f"_convex_app_{next(_counter)}"
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(root)]  # type: ignore[attr-defined]
    sys.modules[package] = pkg
    app = App(root=root, package=package)
    try:
        if (root / "schema.py").exists():
            module = _import_file(package, "schema", root / "schema.py")
            app.schema = getattr(module, "schema", None) or getattr(module, "default", None)
        functions_dir = root / "functions"
        if functions_dir.is_dir():
            importlib.import_module(f"{package}.functions")
            for file in sorted(functions_dir.rglob("*.py")):
                rel = file.relative_to(functions_dir).with_suffix("")
                if any(part.startswith("_") for part in rel.parts):
                    continue
                module_path = "/".join(rel.parts)
                module = importlib.import_module(f"{package}.functions." + ".".join(rel.parts))
                for export, value in vars(module).items():
                    if isinstance(value, RegisteredFunction) and not export.startswith("_"):
                        path = f"{module_path}:{export}"
                        if value.path and value.path != path:
                            continue  # re-exported from another module: registered there
                        value.path = path
                        app.functions[path] = value
        if (root / "http_routes.py").exists():
            module = importlib.import_module(f"{package}.http_routes")
            app.http = getattr(module, "http", None) or getattr(module, "default", None)
        if (root / "crons.py").exists():
            module = importlib.import_module(f"{package}.crons")
            app.crons = getattr(module, "crons", None) or getattr(module, "default", None)
    except EngineError:
        raise
    except Exception as e:
        raise EngineError("AppLoadError", f"Loading the app in {root} failed: {type(e).__name__}: {e}") from e
    return app
