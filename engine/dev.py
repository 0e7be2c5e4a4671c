"""Dev mode: serve the app and load saved code changes into the running deployment (`npx convex dev`).

`python -m engine dev` serves exactly like `serve` and watches the app folder with watchfiles. A
saved change to a `.py` file under `functions/`, or to `schema.py`, `http_routes.py` or `crons.py`,
runs `Deployment.reload()` (and, with `--codegen DIR`, rewrites DIR/_generated/): connected clients keep their WebSocket and their subscriptions re-run
on the new code. Each reload prints one line on stdout:

    Reloaded app: 12 functions
    Reload refused: functions/tasks.py, line 3: SyntaxError: invalid syntax

A refused reload changes nothing: the previous code keeps serving. Edits saved in a burst are
loaded together (watchfiles groups changes that arrive within a few milliseconds of each other).
`Watching <folder> for changes` is printed once the watcher is registered, so anything saved after
that line is seen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from watchfiles import Change, awatch

from .errors import EngineError
from .server import serve

__all__ = ["serve_dev", "watch_app", "reload_and_report", "is_app_source", "fresh_imports"]

log = logging.getLogger("engine.dev")

WATCHED_FILES = frozenset({"schema.py", "http_routes.py", "crons.py"})


def fresh_imports() -> None:
    """Make every import of app code compile the source as saved now. Cached bytecode is matched
    to its source by size and whole-second mtime, so an edit of the same length within the second
    (`"v1"` -> `"v2"`) would otherwise load the stale bytecode. Call before the app is first loaded."""
    sys.dont_write_bytecode = True
    # A cache folder that never gets created: no stale .pyc can be found there.
    sys.pycache_prefix = os.path.join(tempfile.gettempdir(), f"engine-dev-no-bytecode-{os.getpid()}")


def is_app_source(root: Path, path: str) -> bool:
    """Whether a change to `path` can change the loaded app."""
    p = Path(path)
    try:
        rel = p.relative_to(root)
    except ValueError:
        return False
    if p.suffix != ".py" or "__pycache__" in rel.parts:
        return False
    return rel.parts[0] == "functions" if len(rel.parts) > 1 else rel.name in WATCHED_FILES


async def reload_and_report(dep: Any, out: Callable[[str], None] | None = None) -> bool:
    """Reload once and print the one-line result; True if the new code is serving."""
    out = out or (lambda line: print(line, flush=True))
    try:
        app = await dep.reload()
    except EngineError as e:
        out(f"Reload refused: {e.message}")
        return False
    except Exception as e:  # a fault in a reload step must not take the server down
        log.exception("reloading the app failed")
        out(f"Reload refused: {type(e).__name__}: {e}")
        return False
    out(f"Reloaded app: {len(app.functions)} functions")
    return True


def regenerate(dep: Any, codegen_dir: Path | None, out: Callable[[str], None] | None = None) -> None:
    """`dev --codegen DIR`: rewrite DIR/_generated/ from the code now serving (engine.codegen)."""
    if codegen_dir is None:
        return
    from .codegen import write_generated

    out = out or (lambda line: print(line, flush=True))
    try:
        write_generated(dep.app, codegen_dir)
    except Exception as e:  # a type the generator cannot express must not stop serving
        log.exception("codegen failed")
        out(f"Codegen failed: {type(e).__name__}: {e}")
        return
    out(f"Generated {codegen_dir / '_generated'}")


async def watch_app(dep: Any, stop: asyncio.Event, codegen_dir: Path | None = None) -> None:
    """Reload `dep` after every burst of saved changes to its app's code, until `stop` is set.

    Two watchers, so the rest of the folder (a virtualenv, node_modules, the database) costs
    nothing: the app folder itself, not recursively (schema.py, http_routes.py, crons.py), and
    functions/ recursively (started when the folder appears, if it is not there yet)."""
    root = Path(dep.app.root).resolve()
    functions = root / "functions"
    changed = asyncio.Event()
    halt = asyncio.Event()  # the watchers' own stop: set when this function ends, however it ends
    feeders: list[asyncio.Task[None]] = []

    def source_filter(change: Change, path: str) -> bool:
        return is_app_source(root, path) or Path(path) == functions

    def follow(path: Path, recursive: bool) -> None:
        async def feed() -> None:
            try:
                async for _ in awatch(path, watch_filter=source_filter, stop_event=halt, recursive=recursive,
                                      debounce=400, step=30):
                    changed.set()
            except Exception:  # e.g. the OS limit on watches: serving goes on, without reloads
                log.exception("watching %s for changes failed; saved changes there will not be loaded", path)
                print(f"Reload watcher for {path} failed; restart `dev` to load changes", flush=True)

        feeders.append(asyncio.create_task(feed(), name=f"dev-watch:{path.name}"))

    follow(root, False)
    if functions.is_dir():
        follow(functions, True)
    # Each watcher registers with the OS in its task's first step, which runs before we resume
    # from this yield; events from then on are kept, so the line below is a promise.
    await asyncio.sleep(0)
    print(f"Watching {root} for changes", flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            woken = asyncio.ensure_future(changed.wait())
            await asyncio.wait([woken, stopped], return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            if stop.is_set():
                return
            changed.clear()
            if len(feeders) == 1 and functions.is_dir():
                follow(functions, True)
            if await reload_and_report(dep):
                regenerate(dep, codegen_dir)
    finally:
        stopped.cancel()
        halt.set()  # the watcher threads check it every few milliseconds and end
        await asyncio.gather(*feeders, return_exceptions=True)


async def serve_dev(dep: Any, host: str, port: int, site_port: int, *, codegen_dir: Path | None = None) -> None:
    """`serve` plus the watcher; closes `dep` (after the watcher has stopped reloading it). With
    `codegen_dir`, its `_generated/` is written now and after every reload."""
    regenerate(dep, codegen_dir)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_app(dep, stop, codegen_dir), name="dev-watcher")
    closing_dep = dep.close

    async def close_after_watcher() -> None:
        stop.set()
        try:
            await watcher
        except Exception:
            log.exception("the dev watcher failed")
        await closing_dep()

    dep.close = close_after_watcher  # serve() closes the deployment once both servers stopped
    try:
        await serve(dep, host, port, site_port, stop=stop)
    finally:
        stop.set()
        if not watcher.done():
            await asyncio.gather(watcher, return_exceptions=True)
