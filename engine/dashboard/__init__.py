"""The engine's own dashboard, served at `/dashboard` on the API port.

    http://127.0.0.1:3210/dashboard      (paste the admin key into the login box)

Static files only (`static/`: one HTML page, one stylesheet, plain ES modules; no build step, no
third-party code), talking to the deployment the way any client does: a small client of the sync
protocol (`static/sync.js`) authenticates with the admin key and subscribes to the system queries
of engine.system_udfs, so tables, documents, scheduled functions and crons update live; edits are
system mutations; the function runner calls `/api/function`; the log view long-polls
`/api/stream_function_logs`; environment variables use the CLI's endpoints.

The page itself is public (like Convex's self-hosted dashboard, it holds nothing); every piece of
data behind it needs the admin key, which the page keeps in the tab's sessionStorage only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..http_api import PREFIX_ROUTES, ROUTES, HttpRequest, HttpResponse, error_response

__all__ = ["STATIC_DIR", "register_routes"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
_HEADERS = [("cache-control", "no-cache"), ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"), ("x-frame-options", "DENY")]


def _file(name: str) -> HttpResponse:
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        return error_response(404, "NotFound", f"The dashboard has no file {name!r}.")
    return HttpResponse(200, path.read_bytes(), [("content-type", _TYPES[path.suffix]), *_HEADERS])


async def _index(dep: Any, req: HttpRequest) -> HttpResponse:
    return _file("index.html")


async def _static(dep: Any, req: HttpRequest) -> HttpResponse:
    name = req.path[len("/dashboard/"):]
    return _file(name or "index.html")


def register_routes() -> None:
    ROUTES["/dashboard"] = {"GET": _index}
    PREFIX_ROUTES["/dashboard/"] = {"GET": _static}
