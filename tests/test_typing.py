"""Typed Python: pyright (standard) reports no error over engine/ and functions/; the decorators keep
precise types; the editable install resolves for pyright and mypy from any folder; and
`ctx.db.get/patch/replace/delete` take a table name first, as convex 1.48 recommends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.deployment import Auth, Deployment
from engine.errors import EngineError

from conftest import JS_DIR, REPO_ROOT, write_app

PYRIGHT = JS_DIR / "node_modules" / "pyright" / "index.js"
VENV_PYTHON = sys.executable

USER_CODE = '''
from typing import Literal
from engine import ActionCtx, Doc, Id, MutationCtx, QueryCtx, action, internal_mutation, mutation, query, v


@query(args={"id": v.id("tasks")})
async def title(ctx: QueryCtx, args) -> str:
    task: Doc[Literal["tasks"]] | None = await ctx.db.get("tasks", args["id"])
    return task["title"] if task else ""


@mutation
async def rename(ctx: MutationCtx, args) -> None:
    await ctx.db.patch("tasks", args["id"], {"title": "x"})


@action(args={})
async def fetch(ctx: ActionCtx, args) -> list[str]:
    return [await ctx.run_query("tasks:title", {"id": "x"})]


reset = internal_mutation(args={}, handler=rename.handler)
reveal_type(title)
reveal_type(rename)
reveal_type(fetch)
reveal_type(reset)
task_id: Id[Literal["tasks"]]
'''


def _pyright(*args: str, cwd: Path) -> dict:
    if not PYRIGHT.exists():
        pytest.fail("tests/js/node_modules is missing: run `tests/run`")
    done = subprocess.run(["node", str(PYRIGHT), "--outputjson", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright printed no JSON:\n{done.stdout}\n{done.stderr}")


def test_pyright_reports_no_error_over_engine_and_functions():
    report = _pyright(cwd=REPO_ROOT)  # pyproject.toml [tool.pyright]: engine/, functions/, standard mode
    errors = [f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert errors == [], "\n".join(errors)
    assert report["summary"]["filesAnalyzed"] > 80


def test_decorated_functions_keep_their_types_for_a_checker_outside_the_repo(tmp_path):
    code = tmp_path / "user_code.py"
    code.write_text(USER_CODE)
    report = _pyright("--pythonpath", VENV_PYTHON, str(code), cwd=tmp_path)
    errors = [d["message"] for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert errors == []
    revealed = [d["message"] for d in report["generalDiagnostics"] if d["severity"] == "information"]
    assert revealed == [
        'Type of "title" is "RegisteredFunction[QueryCtx, str]"',
        'Type of "rename" is "RegisteredFunction[MutationCtx, None]"',
        'Type of "fetch" is "RegisteredFunction[ActionCtx, list[str]]"',
        'Type of "reset" is "RegisteredFunction[MutationCtx, None]"',
    ]


def test_mypy_resolves_the_editable_install(tmp_path):
    code = tmp_path / "user_code.py"
    code.write_text("import engine\nfrom engine import QueryCtx, query\nreveal_type(query)\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental",
                           str(code)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert 'Revealed type is "engine.registration.Register[engine.runner.QueryCtx]"' in done.stdout, done.stdout
    assert "Cannot find implementation or library stub" not in done.stdout
    assert "missing library stubs or py.typed" not in done.stdout


TABLE_FIRST = {
    "schema.py": """
from engine import define_schema, define_table, v
schema = define_schema({"tasks": define_table({"title": v.string()}), "agents": define_table({"name": v.string()})})
""",
    "functions/t.py": """
from engine import mutation, query, v

@mutation
async def roundtrip(ctx, args):
    tid = await ctx.db.insert("tasks", {"title": "a"})
    await ctx.db.patch("tasks", tid, {"title": "b"})
    patched = (await ctx.db.get("tasks", tid))["title"]
    await ctx.db.replace("tasks", tid, {"title": "c"})
    replaced = (await ctx.db.get(tid))["title"]
    await ctx.db.delete("tasks", tid)
    return [patched, replaced, await ctx.db.get("tasks", tid)]

@mutation
async def wrongTable(ctx, args):
    aid = await ctx.db.insert("agents", {"name": "n"})
    await ctx.db.patch("tasks", aid, {"title": "x"})
""",
}


async def test_db_methods_take_the_table_first(tmp_path):
    app = write_app(tmp_path / "app", TABLE_FIRST)
    dep = await Deployment.open(app, tmp_path / "db.sqlite3", admin_key="k")
    try:
        ok = await dep.call("t:roundtrip", {}, kind="mutation", auth=Auth())
        assert ok.success, ok.error_message
        assert ok.value == ["b", "c", None]
        before = dep.latest_ts()
        wrong = await dep.call("t:wrongTable", {}, kind="mutation", auth=Auth())
        assert not wrong.success
        assert 'is an ID of table "agents", not "tasks"' in wrong.error_message
        assert dep.latest_ts() == before
    finally:
        await dep.close()


def test_the_package_is_marked_typed():
    assert (REPO_ROOT / "engine" / "py.typed").exists()
    import engine

    for name in ("QueryCtx", "MutationCtx", "ActionCtx", "Id", "Doc"):
        assert name in engine.__all__ and hasattr(engine, name)
    with pytest.raises(EngineError):
        raise EngineError("X", "y")
