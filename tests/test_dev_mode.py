"""Dev mode: a real `python -m engine dev` process with a raw WebSocket subscription, and
`Deployment.reload()` in-process (indexes rebuilt under concurrent writes, crons, import errors).

Each change is made by saving a file in a temporary copy of a small app; the test then waits for
the server's one-line report ("Reloaded app: ..." / "Reload refused: ...") on its stdout, with a
deadline, and checks what the still-connected client receives. The client never reconnects: every
Transition it receives must start at the version the previous one ended at, on the same socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from conftest import REPO_ROOT, TEST_ADMIN_KEY, free_port
from engine.cron import CRON_JOBS
from engine.deployment import Auth, Deployment
from engine.errors import EngineError
from engine.values import decode_json

LINE_DEADLINE_S = 30.0

SCHEMA_V1 = '''
from engine import define_schema, define_table, v

schema = define_schema({"notes": define_table({"text": v.string()})})
'''

NOTES_V1 = '''
from engine import mutation, query, v


@query
async def label(ctx, args):
    return "v1"


@query
async def count(ctx, args):
    return float(len(await ctx.db.query("notes").collect()))


@mutation(args={"text": v.string()})
async def add(ctx, args):
    return await ctx.db.insert("notes", {"text": args["text"]})
'''


class DevServer:
    """`python -m engine dev` with its stdout read line by line (and kept for failure reports)."""

    def __init__(self, app: Path, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.port, self.site_port = free_port(), free_port()
        while self.site_port == self.port:
            self.site_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        env = {**os.environ, "CONVEX_ADMIN_KEY": TEST_ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "dev", "--app", str(app), "--db", str(workdir / "db.sqlite3"),
             "--port", str(self.port), "--site-port", str(self.site_port), *extra_args],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def wait_line(self, prefix: str) -> str:
        """The next output line starting with `prefix` (earlier other lines are skipped)."""
        deadline = time.monotonic() + LINE_DEADLINE_S
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line starting with {prefix!r} within {LINE_DEADLINE_S}s:\n{self.output()}")
            if line is None:
                pytest.fail(f"the dev server exited (code {self.proc.wait()}):\n{self.output()}")
            if line.startswith(prefix):
                return line

    def wait_lines(self, *prefixes: str) -> None:
        """Until a line starting with each prefix was printed, in whatever order they come."""
        left = list(prefixes)
        deadline = time.monotonic() + LINE_DEADLINE_S
        while left:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no lines starting with {left!r} within {LINE_DEADLINE_S}s:\n{self.output()}")
            if line is None:
                pytest.fail(f"the dev server exited (code {self.proc.wait()}):\n{self.output()}")
            left = [p for p in left if not line.startswith(p)]

    def output(self) -> str:
        return "\n".join(self.lines[-100:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Subscriber:
    """A raw Convex sync client holding one socket and checking the Transition chain."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.version: dict[str, Any] = {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}
        self.query_set = 0
        self.ws.send(json.dumps({"type": "Connect", "sessionId": str(uuid.uuid4()), "connectionCount": 0,
                                 "lastCloseReason": "InitialConnect", "clientTs": 0}))
        self.latest: dict[int, dict[str, Any]] = {}

    def add(self, query_id: int, path: str, args: dict[str, Any]) -> None:
        self.ws.send(json.dumps({"type": "ModifyQuerySet", "baseVersion": self.query_set,
                                 "newVersion": self.query_set + 1,
                                 "modifications": [{"type": "Add", "queryId": query_id, "udfPath": path,
                                                    "args": [args]}]}))
        self.query_set += 1

    def wait_for(self, query_id: int, predicate) -> dict[str, Any]:
        """Receive Transitions until query `query_id`'s latest modification satisfies `predicate`."""
        current = self.latest.get(query_id)
        if current is not None and predicate(current):
            return current
        deadline = time.monotonic() + LINE_DEADLINE_S
        while True:
            frame = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame["type"] != "Transition":
                continue
            assert frame["startVersion"] == self.version, "a Transition that does not continue the last one"
            self.version = frame["endVersion"]
            for mod in frame["modifications"]:
                self.latest[mod["queryId"]] = mod
            current = self.latest.get(query_id)
            if current is not None and predicate(current):
                return current


def _value(expected: Any):
    return lambda mod: mod["type"] == "QueryUpdated" and mod["value"] == expected


def _http(server: DevServer, kind: str, path: str, args: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/{kind}", json={"path": path, "args": args, "format": "json"},
                          timeout=30)
    return response.json()


def _socket(server: DevServer) -> ClientConnection:
    return connect(server.url.replace("http://", "ws://") + "/api/sync")


def _save(path: Path, text: str) -> None:
    """Save as editors do: write a temporary file, then rename it over the old one, so a reload
    never reads a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _first_app(app: Path) -> Path:
    """A dev app at `app` in its first version (SCHEMA_V1, NOTES_V1)."""
    (app / "functions").mkdir(parents=True)
    _save(app / "schema.py", SCHEMA_V1)
    _save(app / "functions" / "notes.py", NOTES_V1)
    return app


@pytest.fixture
def dev_app(tmp_path: Path):
    app = _first_app(tmp_path / "app")
    server = DevServer(app, tmp_path)
    try:
        # Both, in either order (the listening line now comes first, after the event-loop line).
        server.wait_lines("Watching ", "Convex-compatible API listening")
        yield app, server
    finally:
        server.stop()


@pytest.mark.slow
def test_saved_changes_reach_a_connected_subscription_without_a_reconnect(dev_app):
    app, server = dev_app
    with _socket(server) as ws:
        _live_label(app, server, Subscriber(ws))


@pytest.mark.slow
def test_dev_with_codegen_rewrites_the_typed_api_on_every_save(tmp_path):
    app = _first_app(tmp_path / "app")
    web = tmp_path / "web" / "convex"
    server = DevServer(app, tmp_path, ("--codegen", str(web)))
    try:
        assert server.wait_line("Generated ") == f"Generated {web / '_generated'}"
        api = (web / "_generated" / "api.d.ts").read_text()
        assert 'add: FunctionReference<"mutation", "public", { text: string }, any>;' in api
        assert "shout" not in api
        server.wait_line("Watching ")  # saves from here on are seen
        _save(app / "functions" / "notes.py", NOTES_V1 + """

@query(args={"text": v.string(), "times": v.optional(v.float64())}, returns=v.string())
async def shout(ctx, args):
    return args["text"].upper()
""")
        server.wait_line("Reloaded app")
        server.wait_line("Generated ")
        api = (web / "_generated" / "api.d.ts").read_text()
        assert 'shout: FunctionReference<"query", "public", { text: string; times?: number }, string>;' in api
        assert 'notes: {' in (web / "_generated" / "dataModel.d.ts").read_text()
    finally:
        server.stop()


@pytest.mark.slow
def test_dev_writes_the_typed_api_into_the_app_folder_unless_told_not_to(tmp_path):
    """Like `npx convex dev` (which always rewrites convex/_generated): without --codegen the app
    folder's _generated/ is written at start and after a save; --no-codegen writes nothing."""
    app = _first_app(tmp_path / "app")
    server = DevServer(app, tmp_path)
    try:
        assert server.wait_line("Generated ") == f"Generated {app / '_generated'}"
        assert "shout" not in (app / "_generated" / "api.d.ts").read_text()
        server.wait_line("Watching ")
        _save(app / "functions" / "notes.py", NOTES_V1 + """

@query(args={"text": v.string()}, returns=v.string())
async def shout(ctx, args):
    return args["text"].upper()
""")
        server.wait_line("Reloaded app")
        server.wait_line("Generated ")
        assert "shout: FunctionReference" in (app / "_generated" / "api.d.ts").read_text()
    finally:
        server.stop()
    quiet = _first_app(tmp_path / "quiet")
    server = DevServer(quiet, tmp_path / "q", ("--no-codegen",))
    try:
        server.wait_line("Watching ")
        assert not (quiet / "_generated").exists()
    finally:
        server.stop()


def _live_label(app: Path, server: DevServer, client: Subscriber) -> None:
    client.add(0, "notes:label", {})
    client.wait_for(0, _value("v1"))

    # A function edit: the live query re-runs on the new code and the same socket gets the value.
    _save(app / "functions" / "notes.py", NOTES_V1.replace('"v1"', '"v2"'))
    assert server.wait_line("Reload") == "Reloaded app: 3 functions"
    client.wait_for(0, _value("v2"))

    # A file that does not import is refused, naming it; the previous code keeps serving.
    _save(app / "functions" / "notes.py", NOTES_V1.replace('return "v1"', 'return "v3" +'))
    line = server.wait_line("Reload")
    assert line.startswith("Reload refused: functions/notes.py, line 7: SyntaxError"), line
    assert _http(server, "query", "notes:label", {})["value"] == "v2"

    # A new module with a function: callable after the reload, and the old one still answers.
    _save(app / "functions" / "notes.py", NOTES_V1.replace('"v1"', '"v4"'))
    _save(app / "functions" / "extra.py", "from engine import query\n\n\n@query\nasync def hello(ctx, args):\n"
                                          "    return 'hello'\n")
    # Two files saved: one reload or two; the last one loads both.
    while (line := server.wait_line("Reload")) != "Reloaded app: 4 functions":
        assert line == "Reloaded app: 3 functions", line
    client.wait_for(0, _value("v4"))
    assert _http(server, "query", "extra:hello", {})["value"] == "hello"
    assert client.ws.close_code is None


@pytest.mark.slow
def test_a_schema_the_stored_documents_do_not_fit_is_refused_naming_table_and_document(dev_app):
    app, server = dev_app
    with _socket(server) as ws:
        _schema_changes(app, server, Subscriber(ws))


def _schema_changes(app: Path, server: DevServer, client: Subscriber) -> None:
    client.add(0, "notes:count", {})
    client.wait_for(0, _value(0.0))
    doc_id = _http(server, "mutation", "notes:add", {"text": "first"})["value"]
    client.wait_for(0, _value(1.0))

    strict = SCHEMA_V1.replace('{"text": v.string()}', '{"text": v.string(), "done": v.boolean()}')
    _save(app / "schema.py", strict)
    line = server.wait_line("Reload")
    assert line.startswith("Reload refused: "), line
    assert f'"{doc_id}"' in line and 'table "notes"' in line and "done" in line, line
    # The old schema still applies: a document without `done` is accepted.
    assert _http(server, "mutation", "notes:add", {"text": "second"})["status"] == "success"
    client.wait_for(0, _value(2.0))

    # A schema that fits, with a new index, and a function using it: the index is filled from the
    # stored documents, and writes after the reload keep it up to date.
    _save(app / "schema.py", SCHEMA_V1.replace('define_table({"text": v.string()})',
                                               'define_table({"text": v.string()}).index("by_text", ["text"])'))
    _save(app / "functions" / "notes.py", NOTES_V1 + '''

@query(args={"text": v.string()})
async def by_text(ctx, args):
    rows = await ctx.db.query("notes").with_index("by_text", lambda q: q.eq("text", args["text"])).collect()
    return [row["_id"] for row in rows]
''')
    # Two files saved: one reload or two; the last one loads both.
    while (line := server.wait_line("Reload")) != "Reloaded app: 4 functions":
        assert line == "Reloaded app: 3 functions", line
    assert _http(server, "query", "notes:by_text", {"text": "first"})["value"] == [doc_id]
    third = _http(server, "mutation", "notes:add", {"text": "first"})["value"]
    assert _http(server, "query", "notes:by_text", {"text": "first"})["value"] == [doc_id, third]
    client.wait_for(0, _value(3.0))
    assert client.ws.close_code is None


# -- Deployment.reload in-process: indexes and crons ------------------------------------------------
NOTES_INDEXED = '''
from engine import mutation, query, v


@mutation(args={"text": v.string(), "n": v.float64()})
async def add(ctx, args):
    note = await ctx.db.insert("notes", dict(args))
    if args["n"] % 3 == 0:
        await ctx.db.patch(note, {"text": args["text"] + "!"})
    return note
'''


async def _index_matches_documents(dep, table: str) -> None:
    """Every stored index of `table` holds exactly one entry per document, under its current key."""
    info = dep.catalog.table(table)
    snapshot = await dep.persistence.snapshot()
    try:
        docs = [decode_json(raw) async for _, _, raw in snapshot.scan(info.indexes["by_creation_time"].id,
                                                                      b"", b"\xff", False)]
        for ix in info.stored_indexes():
            entries = [(key, doc_id) async for key, doc_id, _ in snapshot.scan(ix.id, b"", b"\xff", False)]
            assert entries == sorted((ix.key(doc), doc["_id"]) for doc in docs), ix.name
    finally:
        snapshot.close()


async def test_reload_rebuilds_indexes_consistently_while_mutations_run(tmp_path):
    app = tmp_path / "app"
    (app / "functions").mkdir(parents=True)
    _save(app / "schema.py", SCHEMA_V1.replace('{"text": v.string()})',
                                               '{"text": v.string(), "n": v.float64()})'
                                               '.index("by_text", ["text"]).index("gone", ["n"])'))
    _save(app / "functions" / "notes.py", NOTES_INDEXED)
    dep = await Deployment.open(app, tmp_path / "db.sqlite3")
    try:
        async def writer(w: int) -> None:
            for i in range(40):
                outcome = await dep.call("notes:add", {"text": f"w{w}-{i}", "n": float(i)}, kind="mutation",
                                         auth=Auth())
                assert outcome.success, outcome.error_message

        await writer(99)
        # by_text changes its fields, `gone` goes away, by_n is new.
        _save(app / "schema.py", SCHEMA_V1.replace('{"text": v.string()})',
                                                   '{"text": v.string(), "n": v.float64()})'
                                                   '.index("by_text", ["text", "n"]).index("by_n", ["n"])'))
        writers = [asyncio.create_task(writer(w)) for w in range(4)]
        new = await dep.reload()
        await asyncio.gather(*writers)
        assert set(new.functions) == {"notes:add"}
        info = dep.catalog.table("notes")
        assert set(info.indexes) == {"by_id", "by_creation_time", "by_text", "by_n"}
        assert list(info.indexes["by_text"].fields) == ["text", "n", "_creationTime", "_id"]
        await _index_matches_documents(dep, "notes")
    finally:
        await dep.close()
    # What was persisted is what a restart loads: the same indexes, nothing rebuilt differently.
    dep = await Deployment.open(app, tmp_path / "db.sqlite3")
    try:
        assert {n: list(ix.fields) for n, ix in dep.catalog.table("notes").indexes.items()} == \
            {n: list(ix.fields) for n, ix in info.indexes.items()}
        await _index_matches_documents(dep, "notes")
    finally:
        await dep.close()


async def test_reload_syncs_crons_and_refuses_a_cron_naming_a_missing_function(tmp_path):
    app = _first_app(tmp_path / "app")
    dep = await Deployment.open(app, tmp_path / "db.sqlite3")
    try:
        _save(app / "crons.py", "from engine import cron_jobs\n\ncrons = cron_jobs()\n"
                                'crons.daily("nightly", {"hourUTC": 3, "minuteUTC": 0}, "notes:missing")\n')
        with pytest.raises(EngineError, match='crons.py: cron job "nightly" runs notes:missing, which does not exist'):
            await dep.reload()
        assert dep.app.crons is None
        _save(app / "crons.py", "from engine import cron_jobs\n\ncrons = cron_jobs()\n"
                                'crons.daily("nightly", {"hourUTC": 3, "minuteUTC": 0}, "notes:add", {"text": "x"})\n')
        await dep.reload()
        table = dep.catalog.table(CRON_JOBS)
        jobs = [decode_json(raw)["name"] async for _, raw in dep.persistence.table_documents(table.number)]
        assert jobs == ["nightly"]
        # A failure while importing names the file and line where it happened.
        _save(app / "functions" / "broken.py", "from engine import query\n\nVALUE = 1 / 0\n")
        with pytest.raises(EngineError, match=r"functions/broken.py, line 3: ZeroDivisionError"):
            await dep.reload()
        assert "notes:label" in dep.app.functions and "broken" not in str(list(dep.app.functions))
    finally:
        await dep.close()
