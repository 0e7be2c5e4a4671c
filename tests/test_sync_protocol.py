"""The WebSocket sync protocol, spoken by hand over a real socket to a real server process
(convex-protocol.md §1, §2, §4.4, §5, §10): one test per MUST the official clients depend on.

`Conn` is a scripted client. Every frame it receives is checked against what the JS and Rust clients
enforce — text frames only; a Transition's startVersion equal to the client's current version and
its ts never going backwards; at most one modification per query id, sorted; exact modification
shapes (logLines always, journal always, errorData only for ConvexError); and, when a Transition
advances the query set to N, a result for every query added at versions <= N. Tests wait for
frames with timeouts, never by sleeping.

The app is tests/apps/sync. Tests on the shared server use names made unique per test, so they do
not see each other's writes; tests that restart a server or move its clock get their own.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import re
import socket
import struct
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


APP = Path(__file__).resolve().parent / "apps" / "sync"
ZERO_TS = "AAAAAAAAAAA="
NPM_PATH = "/api/1.48.0/sync"
PY_PATH = "/api/sync"
RECV_TIMEOUT = 10.0
LOG_LINE = re.compile(r"^\[(LOG|INFO|WARN|ERROR|DEBUG)\] ")

pytestmark = pytest.mark.slow


def _load_auth_config() -> Any:
    spec = importlib.util.spec_from_file_location("sync_app_auth_config", APP / "auth_config.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


auth_config = _load_auth_config()


def ts_value(encoded: str) -> int:
    raw = base64.b64decode(encoded, validate=True)
    assert len(raw) == 8 and len(encoded) % 4 == 0, encoded
    return struct.unpack("<Q", raw)[0]


def ts_text(value: int) -> str:
    return base64.b64encode(struct.pack("<Q", value)).decode()


def unique(prefix: str = "n") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ws_url(server: Any, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


# --- the scripted client -----------------------------------------------------------------------------


class Conn:
    """One socket speaking the sync protocol by hand, checking every server frame as it arrives."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.version = {"querySet": 0, "identity": 0, "ts": ZERO_TS}
        self.query_set = 0  # last ModifyQuerySet version sent
        self.identity = 0  # last Authenticate version sent
        self.next_query_id = 0
        self.next_request_id = 0
        self.added_at: dict[int, int] = {}  # query id -> query set version that added it, until answered
        self.results: dict[int, dict] = {}  # query id -> latest QueryUpdated/QueryFailed
        self.frames: list[dict] = []  # everything received, Pings included
        self.responses: dict[int, int] = {}  # request id -> number of responses seen

    @classmethod
    async def open(cls, server: Any, path: str = NPM_PATH, *, session_id: str | None = None,
                   connection_count: int = 0, max_observed: str | None = None, send_connect: bool = True,
                   headers: dict[str, str] | None = None, small_buffers: bool = False) -> Conn:
        sock = None
        if small_buffers:
            # No receive-buffer autotuning and no compression: a client that stops reading fills
            # its socket after a few big frames.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
        ws = await connect(ws_url(server, path), max_size=None, additional_headers=headers,
                           open_timeout=RECV_TIMEOUT, sock=sock, compression=None if small_buffers else "deflate")
        conn = cls(ws, session_id or str(uuid.uuid4()))
        if send_connect:
            msg: dict[str, Any] = {"type": "Connect", "sessionId": conn.session_id,
                                   "connectionCount": connection_count,
                                   "lastCloseReason": "InitialConnect" if connection_count == 0 else "closed",
                                   "clientTs": 1_730_000_000_000}
            if max_observed is not None:
                msg["maxObservedTimestamp"] = max_observed
            await conn.send(msg)
        return conn

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, msg: dict) -> None:
        await self.ws.send(json.dumps(msg))

    # -- requests --------------------------------------------------------------------------------
    async def add(self, *queries: tuple[str, dict], journal: str | None = None) -> list[int]:
        """Subscribe to `(udfPath, args)` queries in one ModifyQuerySet; returns their query ids."""
        ids = []
        mods = []
        for path, args in queries:
            qid = self.next_query_id
            self.next_query_id += 1
            ids.append(qid)
            mod = {"type": "Add", "queryId": qid, "udfPath": path, "args": [args]}
            if journal is not None:
                mod["journal"] = journal
            mods.append(mod)
        await self.modify(mods)
        return ids

    async def remove(self, *query_ids: int) -> None:
        await self.modify([{"type": "Remove", "queryId": q} for q in query_ids])

    async def modify(self, mods: list[dict]) -> None:
        base, self.query_set = self.query_set, self.query_set + 1
        for mod in mods:
            if mod["type"] == "Add":
                self.added_at[mod["queryId"]] = self.query_set
        await self.send({"type": "ModifyQuerySet", "baseVersion": base, "newVersion": self.query_set,
                         "modifications": mods})

    async def mutation(self, path: str, args: dict, *, request_id: int | None = None) -> int:
        return await self._request("Mutation", path, args, request_id)

    async def action(self, path: str, args: dict) -> int:
        return await self._request("Action", path, args, None)

    async def _request(self, kind: str, path: str, args: dict, request_id: int | None) -> int:
        if request_id is None:
            request_id = self.next_request_id
            self.next_request_id += 1
        await self.send({"type": kind, "requestId": request_id, "udfPath": path, "args": [args]})
        return request_id

    async def authenticate(self, token_type: str, value: str | None = None) -> None:
        msg: dict[str, Any] = {"type": "Authenticate", "tokenType": token_type, "baseVersion": self.identity}
        if value is not None:
            msg["value"] = value
        self.identity += 1
        await self.send(msg)

    # -- receiving -------------------------------------------------------------------------------
    async def recv(self, timeout: float = RECV_TIMEOUT, *, pings: bool = False) -> dict:
        """The next server message (Pings skipped unless `pings`)."""
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            assert isinstance(frame, str), "every server message is one JSON object in a TEXT frame"
            msg = json.loads(frame)
            assert isinstance(msg, dict) and isinstance(msg.get("type"), str), msg
            self.frames.append(msg)
            if msg["type"] == "Transition":
                self._check_transition(msg)
            elif msg["type"] in ("MutationResponse", "ActionResponse"):
                self._check_response(msg)
            elif msg["type"] == "Ping":
                assert msg == {"type": "Ping"}
                if not pings:
                    continue
            return msg

    async def until(self, predicate: Callable[[dict], bool], timeout: float = RECV_TIMEOUT) -> tuple[dict, list[dict]]:
        """Receive until `predicate(msg)`; returns (that message, everything received before it)."""
        before = []
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv()
                if predicate(msg):
                    return msg, before
                before.append(msg)

    async def expect(self, kind: str, timeout: float = RECV_TIMEOUT) -> dict:
        msg = await self.recv(timeout)
        assert msg["type"] == kind, f"expected {kind}, got {msg}"
        return msg

    async def settle_query_set(self, timeout: float = RECV_TIMEOUT) -> list[dict]:
        """Transitions until the server has applied every ModifyQuerySet and Authenticate sent."""
        seen = []
        if self.version["querySet"] == self.query_set and self.version["identity"] == self.identity:
            return seen
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv()
                assert msg["type"] == "Transition", f"unexpected {msg}"
                seen.append(msg)
                if self.version["querySet"] == self.query_set and self.version["identity"] == self.identity:
                    return seen

    async def call_mutation(self, path: str, args: dict, **kw: Any) -> tuple[dict, dict]:
        """Send a mutation; return (its MutationResponse, the first later Transition whose
        endVersion.ts >= the response's ts) — the moment the JS promise resolves."""
        rid = await self.mutation(path, args, **kw)
        response, _ = await self.until(lambda m: m["type"] == "MutationResponse" and m["requestId"] == rid)
        if not response["success"]:
            return response, {}
        ts = ts_value(response["ts"])
        transition, _ = await self.until(lambda m: m["type"] == "Transition" and ts_value(m["endVersion"]["ts"]) >= ts)
        return response, transition

    async def closed(self, timeout: float = RECV_TIMEOUT) -> tuple[int | None, str, list[dict]]:
        """Wait for the server to close the socket: (close code or None, reason, messages before)."""
        before = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    before.append(await self.recv())
        except ConnectionClosed as e:
            if e.rcvd is None:
                return None, "", before
            return e.rcvd.code, e.rcvd.reason, before

    def value(self, query_id: int) -> Any:
        result = self.results[query_id]
        assert result["type"] == "QueryUpdated", result
        return result["value"]

    # -- invariants ------------------------------------------------------------------------------
    def _check_transition(self, msg: dict) -> None:
        assert set(msg) <= {"type", "startVersion", "endVersion", "modifications", "clientClockSkew", "serverTs"}, msg
        start, end = msg["startVersion"], msg["endVersion"]
        assert start == self.version, f"startVersion {start} != client's current version {self.version}"
        assert set(end) == {"querySet", "identity", "ts"}
        assert ts_value(end["ts"]) >= ts_value(start["ts"]), "ts went backwards"
        assert start["querySet"] <= end["querySet"] <= self.query_set
        assert start["identity"] <= end["identity"] <= self.identity
        if msg.get("serverTs") is not None:
            assert isinstance(msg["serverTs"], (int, float))
        if msg.get("clientClockSkew") is not None:
            assert isinstance(msg["clientClockSkew"], (int, float))
        ids = [m["queryId"] for m in msg["modifications"]]
        assert ids == sorted(set(ids)), f"modifications must be unique per query and sorted: {ids}"
        for mod in msg["modifications"]:
            check_modification(mod)
            qid = mod["queryId"]
            if mod["type"] == "QueryRemoved":
                self.results.pop(qid, None)
            else:
                self.results[qid] = mod
            self.added_at.pop(qid, None)
        missing = [q for q, v in self.added_at.items() if v <= end["querySet"]]
        assert not missing, f"Transition to querySet {end['querySet']} has no result for queries {missing}"
        self.version = end

    def _check_response(self, msg: dict) -> None:
        rid = msg["requestId"]
        self.responses[rid] = self.responses.get(rid, 0) + 1
        assert self.responses[rid] == 1, f"more than one response for request {rid}"
        assert isinstance(msg["success"], bool) and isinstance(msg["logLines"], list)
        assert all(LOG_LINE.match(line) for line in msg["logLines"]), msg["logLines"]
        mutation = msg["type"] == "MutationResponse"
        keys = {"type", "requestId", "success", "result", "logLines"} | ({"ts"} if mutation else set())
        if msg["success"]:
            assert set(msg) == keys, msg
            if mutation:
                ts_value(msg["ts"])
        else:
            assert set(msg) - {"errorData"} == keys, msg
            assert isinstance(msg["result"], str)
            if mutation:
                assert msg["ts"] is None


def check_modification(mod: dict) -> None:
    kind = mod["type"]
    if kind == "QueryRemoved":
        assert set(mod) == {"type", "queryId"}, mod
        return
    if kind == "QueryUpdated":
        assert set(mod) == {"type", "queryId", "value", "logLines", "journal"}, mod
    else:
        assert kind == "QueryFailed", mod
        assert set(mod) - {"errorData"} == {"type", "queryId", "errorMessage", "logLines", "journal"}, mod
        assert isinstance(mod["errorMessage"], str)
        if "errorData" in mod:
            assert mod["errorData"] is not None or "ConvexError" in mod["errorMessage"]
    assert isinstance(mod["logLines"], list) and all(LOG_LINE.match(line) for line in mod["logLines"]), mod
    assert mod["journal"] is None or isinstance(mod["journal"], str)


async def expect_transition_with(conn: Conn, query_id: int, timeout: float = RECV_TIMEOUT) -> dict:
    msg, _ = await conn.until(lambda m: m["type"] == "Transition"
                              and any(x["queryId"] == query_id for x in m["modifications"]), timeout)
    return next(x for x in msg["modifications"] if x["queryId"] == query_id)


@pytest.fixture(scope="module")
def server(shared_server_factory: Any) -> Any:
    return shared_server_factory(APP)


# --- URLs and the basic conversation ---------------------------------------------------------------


@pytest.mark.parametrize("path", [PY_PATH, NPM_PATH, "/api/1.2.3/sync", "//api/1.48.0/sync"])
async def test_both_url_forms_serve_the_protocol(server, path):
    name = unique()
    conn = await Conn.open(server, path)
    try:
        await conn.send({"type": "Event", "eventType": "ClientConnect", "event": {"marks": []}})  # ignored
        [q] = await conn.add(("counters:get", {"name": name}))
        [first] = await conn.settle_query_set()
        assert first["startVersion"] == {"querySet": 0, "identity": 0, "ts": ZERO_TS}
        assert first["endVersion"]["querySet"] == 1 and first["endVersion"]["identity"] == 0
        assert first["modifications"] == [{"type": "QueryUpdated", "queryId": q, "value": None, "logLines": [],
                                           "journal": None}]
        response, transition = await conn.call_mutation("counters:increment", {"name": name})
        assert response["success"] and response["result"] == 1.0 and response["logLines"] == []
        assert conn.value(q) == 1.0
        assert {"type": "QueryUpdated", "queryId": q, "value": 1.0, "logLines": [], "journal": None} \
            in transition["modifications"]
    finally:
        await conn.close()


# --- query sets and versions -------------------------------------------------------------------------


async def test_query_set_versions_chain_and_every_add_is_answered(server):
    a, b = unique(), unique()
    conn = await Conn.open(server)
    try:
        # Four ModifyQuerySets back to back (the server may batch them into fewer Transitions).
        [q0] = await conn.add(("counters:get", {"name": a}))
        [q1, q2] = await conn.add(("counters:get", {"name": b}), ("counters:get", {"name": a}))
        await conn.remove(q0)
        await conn.modify([])  # an empty change (sent by clients on every reconnect) still advances
        seen = await conn.settle_query_set()
        assert conn.version["querySet"] == 4
        removed = [m for t in seen for m in t["modifications"] if m["type"] == "QueryRemoved"]
        assert removed == [{"type": "QueryRemoved", "queryId": q0}]
        assert q0 not in conn.results and conn.value(q1) is None and conn.value(q2) is None
        # The same query (function + args) under two ids: both get every update.
        await conn.call_mutation("counters:increment", {"name": a, "by": 5.0})
        assert conn.value(q2) == 5.0 and conn.value(q1) is None
        # Re-adding a removed id is a new query id for the client; ids only grow.
        [q3] = await conn.add(("counters:get", {"name": a}))
        await conn.settle_query_set()
        assert conn.value(q3) == 5.0 and q3 > q2
    finally:
        await conn.close()


async def test_modification_shapes(server):
    name = unique()
    conn = await Conn.open(server)
    try:
        ids = await conn.add(
            ("counters:get", {"name": name}),
            ("errors:convexQuery", {}),
            ("errors:convexString", {}),
            ("errors:plainQuery", {}),
            ("nope:missing", {}),
            ("counters:get", {"name": 12.0}),  # fails argument validation
            ("items:page", {"list": name, "paginationOpts": {"numItems": 2.0, "cursor": None}}),
        )
        await conn.settle_query_set()
        ok, convex, convex_string, plain, missing, bad_args, page = (conn.results[q] for q in ids)
        assert ok == {"type": "QueryUpdated", "queryId": ids[0], "value": None, "logLines": [], "journal": None}
        assert convex["type"] == "QueryFailed" and "ConvexError" in convex["errorMessage"]
        assert convex["errorData"] == {"code": "BAD", "n": {"$integer": base64.b64encode(struct.pack("<q", 1)).decode()}}
        assert convex["logLines"] == ["[LOG] 'about to fail'"]
        assert convex_string["errorData"] == "just a string"
        for failed in (plain, missing, bad_args):
            assert failed["type"] == "QueryFailed" and "errorData" not in failed, failed
        assert "plain query boom" in plain["errorMessage"]
        assert "Could not find public function for 'nope:missing'" in missing["errorMessage"]
        assert page["type"] == "QueryUpdated" and page["value"]["page"] == [] and page["value"]["isDone"] is True
        assert isinstance(page["value"]["continueCursor"], str)
        await conn.remove(ids[1], ids[3])
        [removal] = await conn.settle_query_set()
        assert removal["modifications"] == [{"type": "QueryRemoved", "queryId": ids[1]},
                                            {"type": "QueryRemoved", "queryId": ids[3]}]
    finally:
        await conn.close()


async def test_a_page_keeps_its_end_through_its_journal_also_after_a_reconnect(server):
    name = unique()
    page_args = {"list": name, "paginationOpts": {"numItems": 2.0, "cursor": None}}
    conn = await Conn.open(server)
    try:
        await conn.call_mutation("items:addMany", {"list": name, "ranks": [10.0, 20.0, 30.0, 40.0]})
        [q] = await conn.add(("items:page", page_args))
        await conn.settle_query_set()
        first = conn.results[q]
        assert [r["rank"] for r in first["value"]["page"]] == [10.0, 20.0]
        journal = first["journal"]
        assert isinstance(journal, str)
        # An insert inside the page: the page grows instead of pushing 20 onto the next page.
        await conn.call_mutation("items:add", {"list": name, "rank": 15.0})
        assert [r["rank"] for r in conn.value(q)["page"]] == [10.0, 15.0, 20.0]
        assert conn.value(q)["continueCursor"] == first["value"]["continueCursor"]
    finally:
        await conn.close()
    # A reconnecting client re-subscribes with the journal it was given: same end, same rows.
    again = await Conn.open(server)
    try:
        [pinned] = await again.add(("items:page", page_args), journal=journal)
        [fresh] = await again.add(("items:page", page_args))
        await again.settle_query_set()
        assert [r["rank"] for r in again.value(pinned)["page"]] == [10.0, 15.0, 20.0]
        assert [r["rank"] for r in again.value(fresh)["page"]] == [10.0, 15.0]
    finally:
        await again.close()


async def test_a_query_fails_and_recovers_reactively(server):
    name = unique()
    conn = await Conn.open(server)
    try:
        [q] = await conn.add(("errors:maybe", {"name": name}))
        await conn.settle_query_set()
        assert conn.value(q) is None
        await conn.call_mutation("counters:set", {"name": name, "value": -2.0})
        assert conn.results[q]["type"] == "QueryFailed" and conn.results[q]["errorData"] == {"negative": -2.0}
        await conn.call_mutation("counters:set", {"name": name, "value": 3.0})
        assert conn.value(q) == 3.0
    finally:
        await conn.close()


async def test_all_queries_of_a_transition_see_one_snapshot(server):
    a, b = unique(), unique()
    watcher = await Conn.open(server)
    writer = await Conn.open(server)
    try:
        qa, qb = await watcher.add(("counters:get", {"name": a}), ("counters:get", {"name": b}))
        await watcher.settle_query_set()
        # Many transactions that set both counters at once, pipelined without waiting.
        rids = [await writer.mutation("counters:setMany", {"names": [a, b], "value": float(i)}) for i in range(1, 31)]
        for rid in rids:
            await writer.until(lambda m, rid=rid: m["type"] == "MutationResponse" and m["requestId"] == rid)
        async with asyncio.timeout(RECV_TIMEOUT):
            while watcher.results[qa].get("value") != 30.0:
                msg = await watcher.recv()
                assert msg["type"] == "Transition"
                assert watcher.value(qa) == watcher.value(qb), "one Transition mixed two snapshots"
        assert watcher.value(qb) == 30.0
    finally:
        await watcher.close()
        await writer.close()


# --- mutations and actions -----------------------------------------------------------------------------


async def test_mutation_response_comes_before_a_transition_even_with_no_subscriptions(server):
    conn = await Conn.open(server)
    try:
        rid = await conn.mutation("counters:increment", {"name": unique()})
        response = await conn.expect("MutationResponse")
        assert response["requestId"] == rid and response["success"] is True and response["result"] == 1.0
        ts = ts_value(response["ts"])
        transition = await conn.expect("Transition")
        assert transition["startVersion"] == {"querySet": 0, "identity": 0, "ts": ZERO_TS}
        assert ts_value(transition["endVersion"]["ts"]) >= ts and transition["modifications"] == []
        # A second mutation: again a response, then a Transition reaching its ts.
        response, transition = await conn.call_mutation("counters:increment", {"name": unique()})
        assert ts_value(response["ts"]) > ts and ts_value(transition["endVersion"]["ts"]) >= ts_value(response["ts"])
    finally:
        await conn.close()


async def test_failed_mutations_and_actions_respond_with_error_data_only_for_convex_errors(server):
    conn = await Conn.open(server)
    try:
        integer_one = {"$integer": base64.b64encode(struct.pack("<q", 1)).decode()}
        for kind, path, expect_data in (("Mutation", "errors:convexMutation", True),
                                        ("Mutation", "errors:plainMutation", False),
                                        ("Mutation", "nope:missing", False),
                                        ("Action", "errors:convexAction", True)):
            rid = await (conn.mutation(path, {}) if kind == "Mutation" else conn.action(path, {}))
            response, _ = await conn.until(lambda m, rid=rid: m.get("requestId") == rid)
            assert response["type"] == f"{kind}Response" and response["success"] is False
            if expect_data:
                assert response["errorData"] == {"code": "BAD", "n": integer_one}
                assert "ConvexError" in response["result"]
            else:
                assert "errorData" not in response, response
        # The connection is still fine afterwards.
        response, _ = await conn.call_mutation("counters:increment", {"name": unique()})
        assert response["success"]
    finally:
        await conn.close()


async def test_mutations_on_one_connection_run_one_at_a_time_in_order(server):
    stream = unique()
    conn = await Conn.open(server)
    try:
        [q] = await conn.add(("events:list", {"stream": stream}))
        await conn.settle_query_set()
        # The first one is slow: running the others concurrently would give them the same seq.
        rids = [await conn.mutation("events:append", {"stream": stream, "tag": "a", "delayMs": 300.0}),
                await conn.mutation("events:append", {"stream": stream, "tag": "b"}),
                await conn.mutation("events:append", {"stream": stream, "tag": "c", "delayMs": 50.0}),
                await conn.mutation("events:append", {"stream": stream, "tag": "d"})]
        responses = []
        async with asyncio.timeout(RECV_TIMEOUT):
            while len(responses) < len(rids):
                msg = await conn.recv()
                if msg["type"] == "MutationResponse":
                    responses.append(msg)
        assert [r["requestId"] for r in responses] == rids
        assert [r["result"] for r in responses] == [0.0, 1.0, 2.0, 3.0]
        last = ts_value(responses[-1]["ts"])
        while ts_value(conn.version["ts"]) < last:
            await conn.recv()
        assert conn.value(q) == ["a", "b", "c", "d"]
    finally:
        await conn.close()


async def test_actions_respond_and_are_followed_by_a_transition(server):
    name = unique()
    conn = await Conn.open(server)
    bare = await Conn.open(server, PY_PATH)
    try:
        [q] = await conn.add(("counters:get", {"name": name}))
        await conn.settle_query_set()
        rid = await conn.action("actions:incrementTwice", {"name": name})
        # Its mutations' commits may reach the subscription before the response does.
        response, _ = await conn.until(lambda m: m["type"] == "ActionResponse")
        assert response == {"type": "ActionResponse", "requestId": rid, "success": True, "result": 2.0, "logLines": []}
        # A Transition follows the response, and by then everything the action committed is visible.
        await conn.expect("Transition")
        assert conn.value(q) == 2.0
        # With no subscriptions there is still a Transition after an action (the Python client's
        # ConvexError results and queued work wait for one).
        rid = await bare.action("actions:echo", {"x": 1.0})
        response = await bare.expect("ActionResponse")
        assert response == {"type": "ActionResponse", "requestId": rid, "success": True, "result": {"x": 1.0},
                            "logLines": ["[LOG] 'echo' 1"]}
        await bare.expect("Transition")
        # Actions run concurrently with a connection's queued mutations.
        mid = await conn.mutation("counters:increment", {"name": name, "delayMs": 400.0})
        aid = await conn.action("actions:read", {"name": name})
        first, _ = await conn.until(lambda m: m["type"] in ("MutationResponse", "ActionResponse"))
        assert first["requestId"] == aid and first["result"] == 2.0
        second, _ = await conn.until(lambda m: m["type"] == "MutationResponse")
        assert second["requestId"] == mid and second["result"] == 3.0
    finally:
        await conn.close()
        await bare.close()


# --- idempotent replay --------------------------------------------------------------------------------


async def test_a_replayed_mutation_returns_the_stored_result_and_never_runs_twice(server):
    name = unique()
    session = str(uuid.uuid4())
    first = await Conn.open(server, session_id=session)
    response, _ = await first.call_mutation("counters:increment", {"name": name}, request_id=0)
    assert response["result"] == 1.0
    await first.close()
    # Reconnect with the same session: the client re-sends request 0, then goes on with request 1.
    second = await Conn.open(server, session_id=session, connection_count=1, max_observed=response["ts"])
    try:
        replay, transition = await second.call_mutation("counters:increment", {"name": name}, request_id=0)
        assert replay["success"] and replay["result"] == 1.0 and replay["ts"] == response["ts"]
        assert ts_value(transition["endVersion"]["ts"]) >= ts_value(replay["ts"])
        fresh, _ = await second.call_mutation("counters:increment", {"name": name}, request_id=1)
        assert fresh["result"] == 2.0
        # Another session's request 0 is a different request.
        other = await Conn.open(server)
        try:
            assert (await other.call_mutation("counters:increment", {"name": name}, request_id=0))[0]["result"] == 3.0
        finally:
            await other.close()
        [q] = await second.add(("counters:get", {"name": name}))
        await second.settle_query_set()
        assert second.value(q) == 3.0
    finally:
        await second.close()


async def test_a_replay_racing_the_original_mutation_still_runs_once(server):
    name = unique()
    session = str(uuid.uuid4())
    old = await Conn.open(server, session_id=session)
    new = await Conn.open(server, session_id=session, connection_count=1)
    try:
        await old.mutation("counters:increment", {"name": name, "delayMs": 300.0}, request_id=0)
        # The first frame proves the old socket's mutation is running (its response comes later).
        [q] = await new.add(("counters:get", {"name": name}))
        await new.settle_query_set()
        replay, _ = await new.call_mutation("counters:increment", {"name": name, "delayMs": 300.0}, request_id=0)
        original, _ = await old.until(lambda m: m["type"] == "MutationResponse")
        assert replay["result"] == original["result"] == 1.0
        assert new.value(q) == 1.0
    finally:
        await old.close()
        await new.close()


async def test_a_replay_committing_before_the_original_from_a_first_connection_still_runs_once(server):
    """The original runs on the session's first connection (connectionCount 0, which skips the
    stored-result lookup) and is slow; the replay on the reconnected socket commits first. The
    original conflicts on the idempotency key, and its retry finds the stored result."""
    name = unique()
    session = str(uuid.uuid4())
    old = await Conn.open(server, session_id=session)
    new = await Conn.open(server, session_id=session, connection_count=1)
    try:
        await old.mutation("items:addSlowly", {"list": name, "rank": 1.0, "delayMs": 500.0}, request_id=0)
        replay, _ = await new.call_mutation("items:addSlowly", {"list": name, "rank": 1.0, "delayMs": 0.0},
                                            request_id=0)
        original, _ = await old.until(lambda m: m["type"] == "MutationResponse")
        assert replay["success"] and original["success"], (replay, original)
        assert original["result"] == replay["result"]
        [q] = await new.add(("items:all", {"list": name}))
        await new.settle_query_set()
        assert len(new.value(q)) == 1
    finally:
        await old.close()
        await new.close()


# --- auth ---------------------------------------------------------------------------------------------


async def test_authenticate_user_none_and_admin_bump_the_identity_version(server):
    name = unique()
    token = auth_config.sign_token("ada", name="Ada")
    identity = {"tokenIdentifier": f"{auth_config.ISSUER}|ada", "subject": "ada", "issuer": auth_config.ISSUER,
                "name": "Ada"}
    conn = await Conn.open(server)
    try:
        # With no queries at all, an accepted Authenticate still gets its identity bump.
        await conn.authenticate("User", token)
        [bump] = await conn.settle_query_set()
        assert bump["startVersion"]["identity"] == 0 and bump["endVersion"]["identity"] == 1
        assert bump["modifications"] == []
        who, hello, internal = await conn.add(("whoami:whoami", {}), ("whoami:greeting", {}),
                                              ("counters:getInternal", {"name": name}))
        await conn.settle_query_set()
        assert conn.value(who) == identity and conn.value(hello) == "hello"
        assert conn.results[internal]["type"] == "QueryFailed"
        rid = await conn.action("whoami:whoamiAction", {})
        assert (await conn.until(lambda m: m.get("requestId") == rid))[0]["result"] == identity
        await conn.expect("Transition")  # the one that follows every action
        # Logging out: identity 2, whoami re-runs as nobody; greeting (never read auth) is unchanged.
        await conn.authenticate("None")
        [logout] = await conn.settle_query_set()
        assert logout["endVersion"]["identity"] == 2
        assert who in [m["queryId"] for m in logout["modifications"]] and conn.value(who) is None
        # Admin: internal functions become visible to the queries already subscribed.
        await conn.authenticate("Admin", server.admin_key)
        [admin] = await conn.settle_query_set()
        assert admin["endVersion"]["identity"] == 3
        assert conn.value(internal) is None and conn.value(who) is None
        response, _ = await conn.call_mutation("counters:increment", {"name": name})
        assert conn.value(internal) == 1.0 and response["result"] == 1.0
        # And back to a user, reconnect-style (a fresh socket starts again at identity 0).
        again = await Conn.open(server)
        try:
            await again.authenticate("User", token)
            [who2] = await again.add(("whoami:whoami", {}))
            await again.settle_query_set()
            assert again.value(who2) == identity and again.version["identity"] == 1
        finally:
            await again.close()
    finally:
        await conn.close()


async def test_an_identity_change_sends_only_the_results_that_changed(server):
    conn = await Conn.open(server)
    try:
        who, hello = await conn.add(("whoami:whoami", {}), ("whoami:greeting", {}))
        await conn.settle_query_set()
        await conn.authenticate("User", auth_config.sign_token("ada"))
        [bump] = await conn.settle_query_set()
        assert [m["queryId"] for m in bump["modifications"]] == [who]
        assert conn.value(hello) == "hello"
    finally:
        await conn.close()


@pytest.mark.parametrize("token_type,make_value", [
    ("User", lambda: "not-a-jwt"),
    ("User", lambda: auth_config.sign_token("ada", ttl=-120)),  # expired
    ("User", lambda: auth_config.sign_token("ada", aud="someone-else")),  # no provider for that aud
    ("Admin", lambda: "wrong-admin-key"),
])
async def test_a_bad_token_gets_an_auth_error_and_the_socket_is_closed(server, token_type, make_value):
    value = make_value()
    conn = await Conn.open(server)
    await conn.add(("whoami:greeting", {}))
    await conn.settle_query_set()
    await conn.authenticate(token_type, value)
    _, _, before = await conn.closed()
    [error] = [m for m in before if m["type"] == "AuthError"]
    assert set(error) == {"type", "error", "baseVersion", "authUpdateAttempted"}
    assert error["baseVersion"] == 0 and error["authUpdateAttempted"] is True
    assert isinstance(error["error"], str) and error["error"] and value not in error["error"]
    assert before[-1] is error, "nothing after the AuthError"


async def test_auth_error_carries_the_identity_version_before_the_failed_update(server):
    conn = await Conn.open(server)
    await conn.authenticate("User", auth_config.sign_token("ada"))
    await conn.settle_query_set()
    await conn.authenticate("User", auth_config.sign_token("ada", ttl=-120))
    _, _, before = await conn.closed()
    [error] = [m for m in before if m["type"] == "AuthError"]
    assert error["baseVersion"] == 1 and error["authUpdateAttempted"] is True


async def test_a_token_that_expires_while_connected_gets_an_unattempted_auth_error(server):
    conn = await Conn.open(server)
    await conn.authenticate("User", auth_config.sign_token("ada", ttl=1))
    await conn.settle_query_set()
    _, _, before = await conn.closed(timeout=20)
    [error] = [m for m in before if m["type"] == "AuthError"]
    assert error["authUpdateAttempted"] is False and error["baseVersion"] == 1
    assert before[-1] is error


# --- bad input ----------------------------------------------------------------------------------------


async def test_an_authenticate_with_the_wrong_base_version_ends_the_connection(server):
    conn = await Conn.open(server)
    await conn.send({"type": "Authenticate", "tokenType": "None", "baseVersion": 4})
    code, _, before = await conn.closed()
    assert [m["type"] for m in before] in ([], ["FatalError"])
    assert before or code == 1011


async def test_base_version_mismatch_is_a_fatal_error(server):
    conn = await Conn.open(server)
    await conn.send({"type": "ModifyQuerySet", "baseVersion": 3, "newVersion": 4, "modifications": []})
    _, _, before = await conn.closed()
    [fatal] = before
    assert set(fatal) == {"type", "error"} and fatal["type"] == "FatalError" and "BaseVersionMismatch" in fatal["error"]


@pytest.mark.parametrize("frame", [
    "this is not json",
    "{\"type\": \"Connect\"",
    "[1, 2, 3]",
    json.dumps({"type": "NoSuchMessage"}),
    json.dumps({"type": "ModifyQuerySet", "baseVersion": 0}),
    json.dumps({"type": "Mutation", "requestId": "zero", "udfPath": "counters:increment", "args": [{}]}),
])
async def test_malformed_frames_are_fatal_errors(server, frame):
    conn = await Conn.open(server)
    await conn.ws.send(frame)
    _, _, before = await conn.closed()
    [fatal] = before
    assert fatal["type"] == "FatalError" and isinstance(fatal["error"], str)


async def test_duplicate_or_unknown_query_ids_close_1011_and_others_are_unaffected(server):
    name = unique()
    bystander = await Conn.open(server)
    try:
        [q] = await bystander.add(("counters:get", {"name": name}))
        await bystander.settle_query_set()
        dup = await Conn.open(server)
        await dup.add(("counters:get", {"name": name}))
        await dup.modify([{"type": "Add", "queryId": 0, "udfPath": "counters:get", "args": [{"name": name}]}])
        code, reason, _ = await dup.closed()
        assert (code, reason) == (1011, "InternalServerError")
        dup_in_one = await Conn.open(server)
        add = {"type": "Add", "queryId": 7, "udfPath": "counters:get", "args": [{"name": name}]}
        await dup_in_one.modify([add, add])
        assert (await dup_in_one.closed())[0] == 1011
        unknown = await Conn.open(server)
        await unknown.remove(42)
        code, reason, _ = await unknown.closed()
        assert (code, reason) == (1011, "InternalServerError")
        # The bystander still gets its updates.
        response, _ = await bystander.call_mutation("counters:increment", {"name": name})
        assert response["result"] == 1.0 and bystander.value(q) == 1.0
    finally:
        await bystander.close()


# --- invalidation on the wire ---------------------------------------------------------------------------


async def test_unchanged_results_are_not_sent_again(server):
    a, b, sentinel = unique(), unique(), unique()
    conn = await Conn.open(server)
    other = await Conn.open(server)
    try:
        qa, qb = await conn.add(("counters:get", {"name": a}), ("counters:get", {"name": b}))
        await conn.settle_query_set()
        _, transition = await conn.call_mutation("counters:increment", {"name": a})
        assert [m["queryId"] for m in transition["modifications"]] == [qa]
        oa, os_ = await other.add(("counters:get", {"name": a}), ("counters:get", {"name": sentinel}))
        await other.settle_query_set()
        # A write that leaves the value as it was: the query re-runs, nothing is sent.
        _, transition = await conn.call_mutation("counters:increment", {"name": a, "by": 0.0})
        assert transition["modifications"] == []
        # `other` gets nothing for it: its next Transition is the sentinel's.
        await conn.call_mutation("counters:increment", {"name": sentinel})
        msg = await other.expect("Transition")
        assert [m["queryId"] for m in msg["modifications"]] == [os_]
        assert other.value(oa) == 1.0 and conn.value(qb) is None
    finally:
        await conn.close()
        await other.close()


async def test_a_write_outside_a_query_read_set_does_not_rerun_it(server):
    """`counters:getTraced` logs a process-wide run number, so every re-run would reach the client."""
    a, b = unique(), unique()
    watcher = await Conn.open(server)
    writer = await Conn.open(server)
    try:
        [q] = await watcher.add(("counters:getTraced", {"name": a}))
        await watcher.settle_query_set()
        [line] = watcher.results[q]["logLines"]
        runs = int(line.split()[-1])
        # The writer watches b: once its Transition for the write arrives, the round that handled
        # the write is over, so a re-run of the watcher's query would already be on its way.
        [wb] = await writer.add(("counters:get", {"name": b}))
        await writer.settle_query_set()
        for _ in range(3):
            await writer.call_mutation("counters:increment", {"name": b})
        assert writer.value(wb) == 3.0
        await writer.call_mutation("counters:increment", {"name": a})
        msg = await watcher.expect("Transition")
        assert msg["modifications"] == [{"type": "QueryUpdated", "queryId": q, "value": 1.0,
                                         "logLines": [f"[LOG] 'run' {runs + 1}"], "journal": None}]
    finally:
        await watcher.close()
        await writer.close()


async def test_identical_subscriptions_share_one_execution(server):
    name = unique()
    first = await Conn.open(server)
    second = await Conn.open(server, PY_PATH)
    try:
        [q1] = await first.add(("counters:getTraced", {"name": name}))
        await first.settle_query_set()
        [q2] = await second.add(("counters:getTraced", {"name": name}))
        await second.settle_query_set()
        # The second subscriber got the stored result of the first run, not a new run.
        assert second.results[q2]["logLines"] == first.results[q1]["logLines"]
        await first.call_mutation("counters:increment", {"name": name})
        update = await expect_transition_with(second, q2)
        assert update["logLines"] == first.results[q1]["logLines"] and update["value"] == 1.0
    finally:
        await first.close()
        await second.close()


async def test_a_socket_that_is_not_read_delays_no_one_and_gets_the_newest_state(server):
    name = unique()
    pad = 2_000_000.0
    stuck = await Conn.open(server, PY_PATH, small_buffers=True)
    fast = await Conn.open(server)
    try:
        [qs] = await stuck.add(("big:padded", {"name": name, "size": pad}))
        [qf] = await fast.add(("big:padded", {"name": name, "size": pad}))
        await stuck.settle_query_set()
        await fast.settle_query_set()
        # From here on `stuck` reads nothing from its socket, whose buffers fill up within a few updates.
        stuck.ws.transport.pause_reading()
        writes = 20
        for i in range(1, writes + 1):
            await fast.call_mutation("counters:increment", {"name": name})
            assert fast.value(qf)["value"] == float(i)
        # Reading again: chained Transitions, fewer than the writes (unsent ones were merged), ending
        # at the latest value.
        stuck.ws.transport.resume_reading()
        transitions = 0
        async with asyncio.timeout(30):
            while stuck.results[qs]["value"]["value"] != float(writes):
                if (await stuck.recv())["type"] == "Transition":
                    transitions += 1
        assert transitions < writes
    finally:
        await stuck.close()
        await fast.close()


# --- big transitions ----------------------------------------------------------------------------------


async def _big_transition_frames(server: Any, path: str, headers: dict[str, str] | None = None) -> list[dict]:
    conn = await Conn.open(server, path, headers=headers)
    try:
        await conn.add(("big:blob", {"size": 6_000_000.0}))
        frames = []
        async with asyncio.timeout(30):
            while True:
                raw = await conn.ws.recv()
                assert isinstance(raw, str)
                msg = json.loads(raw)
                frames.append(msg)
                if msg["type"] == "Transition" or (msg["type"] == "TransitionChunk"
                                                   and msg["partNumber"] == msg["totalParts"] - 1):
                    return frames
    finally:
        await conn.close()


async def test_large_transitions_are_never_chunked_for_the_python_client(server):
    for path, headers in ((PY_PATH, None), (NPM_PATH, {"Convex-Client": "python-0.8.1"})):
        [transition] = await _big_transition_frames(server, path, headers)
        assert transition["type"] == "Transition"
        [mod] = transition["modifications"]
        assert mod["type"] == "QueryUpdated" and len(mod["value"]) == 6_000_000


async def test_large_transitions_are_chunked_in_order_for_npm_clients(server):
    chunks = await _big_transition_frames(server, NPM_PATH)
    assert len(chunks) > 1 and all(c["type"] == "TransitionChunk" for c in chunks)
    assert [c["partNumber"] for c in chunks] == list(range(len(chunks)))
    assert {(c["totalParts"], c["transitionId"]) for c in chunks} == {(len(chunks), chunks[0]["transitionId"])}
    transition = json.loads("".join(c["chunk"] for c in chunks))
    assert transition["type"] == "Transition"
    assert transition["startVersion"] == {"querySet": 0, "identity": 0, "ts": ZERO_TS}
    assert len(transition["modifications"][0]["value"]) == 6_000_000


async def test_npm_clients_older_than_1_28_get_whole_transitions(server):
    [transition] = await _big_transition_frames(server, "/api/1.27.0/sync")
    assert transition["type"] == "Transition"


# --- restarts, clocks, keepalive -----------------------------------------------------------------------


async def test_ts_never_goes_backwards_across_a_restart(server_factory):
    server = server_factory(APP)
    name = unique()
    session = str(uuid.uuid4())
    conn = await Conn.open(server, session_id=session)
    [q] = await conn.add(("counters:get", {"name": name}))
    await conn.settle_query_set()
    response, _ = await conn.call_mutation("counters:increment", {"name": name}, request_id=0)
    before = max(ts_value(response["ts"]), ts_value(conn.version["ts"]))
    await conn.close()
    await asyncio.to_thread(server.restart)
    conn = await Conn.open(server, session_id=session, connection_count=1, max_observed=ts_text(before))
    try:
        [q] = await conn.add(("counters:get", {"name": name}))
        [first] = await conn.settle_query_set()
        assert ts_value(first["endVersion"]["ts"]) >= before and conn.value(q) == 1.0
        # The stored result of request 0 survived the restart too.
        replay, _ = await conn.call_mutation("counters:increment", {"name": name}, request_id=0)
        assert replay["result"] == 1.0 and replay["ts"] == response["ts"]
        fresh, _ = await conn.call_mutation("counters:increment", {"name": name}, request_id=1)
        assert fresh["result"] == 2.0 and ts_value(fresh["ts"]) > before
    finally:
        await conn.close()


async def test_a_client_that_saw_a_slightly_later_ts_is_not_locked_out(server_factory):
    """A client that saw timestamps of a server whose clock ran a little ahead (a restart on
    another machine, a clock step) is served, and the clock moves past what it saw, for everyone."""
    server = server_factory(APP)
    name = unique()
    probe = await Conn.open(server)
    response, _ = await probe.call_mutation("counters:increment", {"name": name})
    await probe.close()
    ahead = ts_value(response["ts"]) + 3 * 10**9  # 3 s ahead: inside the bounded skew
    conn = await Conn.open(server, connection_count=3, max_observed=ts_text(ahead))
    try:
        [q] = await conn.add(("counters:get", {"name": name}))
        await conn.settle_query_set()
        assert conn.value(q) == 1.0
        response, _ = await conn.call_mutation("counters:increment", {"name": name})
        assert ts_value(response["ts"]) > ahead and conn.value(q) == 2.0
    finally:
        await conn.close()
    # Other clients move forward with the clock as well.
    other = await Conn.open(server)
    try:
        response, _ = await other.call_mutation("counters:increment", {"name": name})
        assert ts_value(response["ts"]) > ahead
    finally:
        await other.close()


async def test_a_client_far_ahead_is_served_but_does_not_move_the_clock(server_factory):
    """~11.6 days ahead (the server lost its database, or a client lies): the client is still
    served, but a value that far ahead is not trusted and the shared clock stays put."""
    server = server_factory(APP)
    name = unique()
    probe = await Conn.open(server)
    response, _ = await probe.call_mutation("counters:increment", {"name": name})
    await probe.close()
    ahead = ts_value(response["ts"]) + 10**15
    conn = await Conn.open(server, connection_count=3, max_observed=ts_text(ahead))
    try:
        [q] = await conn.add(("counters:get", {"name": name}))
        await conn.settle_query_set()
        assert conn.value(q) == 1.0
        response, _ = await conn.call_mutation("counters:increment", {"name": name})
        assert response["success"] and conn.value(q) == 2.0
        assert ts_value(response["ts"]) < ahead
    finally:
        await conn.close()


async def test_idle_connections_get_an_app_level_ping(server_factory):
    server = server_factory(APP, extra_env={"CONVEX_SYNC_PING_INTERVAL": "0.3"})
    conn = await Conn.open(server)
    try:
        [q] = await conn.add(("whoami:greeting", {}))
        await conn.settle_query_set()
        for _ in range(2):
            assert await conn.recv(timeout=10, pings=True) == {"type": "Ping"}
        # Pings do not disturb the conversation.
        response, _ = await conn.call_mutation("counters:increment", {"name": unique()})
        assert response["success"] and conn.value(q) == "hello"
    finally:
        await conn.close()
