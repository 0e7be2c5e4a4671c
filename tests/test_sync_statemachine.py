"""Reactivity, model-checked: random subscriptions, writes, auth changes and unsubscriptions against
real SyncSessions and the real SubscriptionManager, in process, on a real (in-memory) SQLite store.

Each `Client` runs a genuine `SyncSession.run` loop: frames go in through its receive function and
come out through a send function that records them. After every step the machine waits until the
manager has settled (every commit so far went through a finished round, no session waits for one)
and every session's outbox is drained — observed, never slept on — and then checks, like a client:

- every Transition chains (startVersion == the client's version), ts never goes backwards, and a
  Transition that advances the query set answers every query added up to that version;
- after settling, every live subscription's last pushed result equals a fresh run of its query
  (`Deployment.call(kind="query")`, with the subscriber's identity; a paginated query is re-run
  with its pinned end as `endCursor`);
- a result is only sent again when it changed (identity changes included);
- once every subscription is gone, the manager holds no entries and no read-set intervals.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.auth import authenticate
from engine.deployment import MISSING, Deployment
from engine.protocol import decode_ts
from engine.runner import Auth
from engine.sync import SyncSession
from engine.values import to_wire

APP = Path(__file__).resolve().parent / "apps" / "sync"
_spec = importlib.util.spec_from_file_location("sync_app_auth_config_sm", APP / "auth_config.py")
auth_config = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(auth_config)  # type: ignore[union-attr]

STEP_TIMEOUT = 10.0
NAMES = ["a", "b", "c"]
LISTS = ["x", "y"]
QUERIES: list[tuple[str, dict]] = [
    *[("counters:get", {"name": n}) for n in NAMES],
    ("counters:all", {}),
    ("counters:getMany", {"names": ["a", "c"]}),
    ("errors:maybe", {"name": "a"}),
    *[("items:all", {"list": name}) for name in LISTS],
    ("items:page", {"list": "x", "paginationOpts": {"numItems": 2.0, "cursor": None}}),
    ("items:page", {"list": "y", "paginationOpts": {"numItems": 1.0, "cursor": None}}),
    ("whoami:whoami", {}),
]
USERS = [None, "ada", "bob"]


def _wire(value: Any) -> Any:
    """A Convex value as a client decodes it from JSON."""
    return json.loads(json.dumps(to_wire(value)))


class Client:
    """One connection: a live SyncSession fed by hand, and the client-side model of its state."""

    def __init__(self, dep: Deployment, npm: bool) -> None:
        self.dep = dep
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.handled = asyncio.Event()
        self.frames: list[dict] = []
        self.session = SyncSession(dep, dep.subscriptions, self._send, npm=npm)  # type: ignore[arg-type]
        self.task = asyncio.create_task(self.session.run(self._receive, self._close))
        self.version = {"querySet": 0, "identity": 0, "ts": 0}
        self.query_set = 0
        self.identity = 0
        self.next_query_id = 0
        self.next_request_id = 0
        self.live: dict[int, tuple[str, dict]] = {}  # query id -> (path, args)
        self.added_at: dict[int, int] = {}
        self.results: dict[int, dict] = {}
        self.auth = Auth()
        self.responses: dict[int, dict] = {}
        self.closed = False

    async def _send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    async def _receive(self) -> str | None:
        self.handled.set()  # everything delivered before has been handled
        frame = await self.inbox.get()
        self.handled.clear()
        return frame

    async def _close(self, code: int, reason: str) -> None:
        raise AssertionError(f"the server closed a well-behaved connection: {code} {reason}")

    async def deliver(self, msg: dict | None) -> None:
        """Hand the session one client message and wait until it has been handled."""
        self.handled.clear()
        self.inbox.put_nowait(None if msg is None else json.dumps(msg))
        if msg is None:
            await asyncio.wait_for(self.task, STEP_TIMEOUT)
            self.closed = True
            return
        await asyncio.wait_for(self.handled.wait(), STEP_TIMEOUT)

    async def drained(self) -> None:
        session = self.session
        await asyncio.wait_for(session.wait_drained(), STEP_TIMEOUT)

    # -- the client-side view ----------------------------------------------------------------------
    def consume(self) -> None:
        frames, self.frames = self.frames, []
        for msg in frames:
            kind = msg["type"]
            if kind == "Transition":
                self._transition(msg)
            elif kind == "MutationResponse":
                assert msg["requestId"] not in self.responses
                self.responses[msg["requestId"]] = msg
            else:
                assert kind == "Ping", msg

    def _transition(self, msg: dict) -> None:
        start, end = msg["startVersion"], msg["endVersion"]
        start = {**start, "ts": decode_ts(start["ts"])}
        end = {**end, "ts": decode_ts(end["ts"])}
        assert start == self.version, f"startVersion {start} != {self.version}"
        assert end["ts"] >= start["ts"] and end["querySet"] >= start["querySet"]
        ids = [m["queryId"] for m in msg["modifications"]]
        assert ids == sorted(set(ids))
        for mod in msg["modifications"]:
            qid = mod["queryId"]
            if mod["type"] == "QueryRemoved":
                self.results.pop(qid, None)
                continue
            assert set(mod) >= {"logLines", "journal"}
            previous = self.results.get(qid)
            if previous is not None and qid not in self.added_at:
                assert previous != mod, f"query {qid} was sent again unchanged: {mod}"
            self.results[qid] = mod
            self.added_at.pop(qid, None)
        missing = [q for q, v in self.added_at.items() if v <= end["querySet"]]
        assert not missing, f"Transition to querySet {end['querySet']} lacks results for {missing}"
        self.version = end


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dep: Deployment = self.run(Deployment.open(APP, ":memory:", admin_key="sm-admin"))
        self.clients: list[Client] = []
        self.item_ids: list[str] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        async def close() -> None:
            for client in self.live_clients():
                await client.deliver(None)
            await self.dep.close()

        try:
            self.run(close())
        finally:
            self.loop.close()

    def live_clients(self) -> list[Client]:
        return [c for c in self.clients if not c.closed]

    # -- settling and checking --------------------------------------------------------------------
    async def _settle(self) -> None:
        await asyncio.wait_for(self.dep.subscriptions.settled(), STEP_TIMEOUT)  # type: ignore[union-attr]
        for client in self.live_clients():
            await client.drained()
            client.consume()

    async def _check(self) -> None:
        for client in self.live_clients():
            assert client.version["querySet"] == client.query_set
            assert client.version["identity"] == client.identity
            assert set(client.results) == set(client.live)
            for qid, (path, args) in client.live.items():
                got = client.results[qid]
                if path == "items:page" and got["type"] == "QueryUpdated":
                    # The subscription's page keeps its end (journal); re-run it with that end.
                    opts = {**args["paginationOpts"], "endCursor": got["value"]["continueCursor"]}
                    args = {**args, "paginationOpts": opts}
                fresh = await self.dep.call(path, args, kind="query", auth=client.auth)
                if fresh.success:
                    assert got["type"] == "QueryUpdated", (path, args, got, fresh)
                    assert got["value"] == _wire(fresh.value), (path, args, got["value"], fresh.value)
                else:
                    assert got["type"] == "QueryFailed", (path, args, got, fresh)
                    if fresh.error_data is MISSING:
                        assert "errorData" not in got
                    else:
                        assert got["errorData"] == _wire(fresh.error_data)
        manager = self.dep.subscriptions
        assert manager is not None
        for entry in manager.entries.values():
            assert entry.subscribers, "an entry nobody holds"
            assert all(not s.closed for s in entry.subscribers)
        if not any(c.live for c in self.live_clients()):
            assert manager.entries == {} and manager.index.size == 0

    def step(self, coro: Any = None) -> None:
        async def go() -> None:
            if coro is not None:
                await coro
            await self._settle()
            await self._check()

        self.run(go())

    # -- rules ------------------------------------------------------------------------------------
    @initialize()
    def first_client(self) -> None:
        self.step(self._open(True))

    async def _open(self, npm: bool) -> None:
        client = Client(self.dep, npm)
        self.clients.append(client)
        await client.deliver({"type": "Connect", "sessionId": f"00000000-0000-4000-8000-{len(self.clients):012d}",
                              "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0})

    @precondition(lambda self: len(self.live_clients()) < 3)
    @rule(npm=st.booleans())
    def open_client(self, npm: bool) -> None:
        self.step(self._open(npm))

    @precondition(lambda self: len(self.live_clients()) > 1)
    @rule(data=st.data())
    def close_client(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from(self.live_clients()))
        self.step(client.deliver(None))

    @rule(data=st.data(), picks=st.lists(st.sampled_from(QUERIES), min_size=1, max_size=3))
    def subscribe(self, data: st.DataObject, picks: list[tuple[str, dict]]) -> None:
        client = data.draw(st.sampled_from(self.live_clients()))
        mods = []
        client.query_set += 1
        for path, args in picks:
            qid = client.next_query_id
            client.next_query_id += 1
            client.live[qid] = (path, args)
            client.added_at[qid] = client.query_set
            mods.append({"type": "Add", "queryId": qid, "udfPath": path, "args": [args]})
        self.step(client.deliver({"type": "ModifyQuerySet", "baseVersion": client.query_set - 1,
                                  "newVersion": client.query_set, "modifications": mods}))

    @precondition(lambda self: any(c.live for c in self.live_clients()))
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from([c for c in self.live_clients() if c.live]))
        qids = data.draw(st.lists(st.sampled_from(sorted(client.live)), min_size=1, max_size=2, unique=True))
        for qid in qids:
            del client.live[qid]
        client.query_set += 1
        self.step(client.deliver({"type": "ModifyQuerySet", "baseVersion": client.query_set - 1,
                                  "newVersion": client.query_set,
                                  "modifications": [{"type": "Remove", "queryId": q} for q in qids]}))

    @rule(data=st.data(), user=st.sampled_from(USERS))
    def authenticate(self, data: st.DataObject, user: str | None) -> None:
        client = data.draw(st.sampled_from(self.live_clients()))

        async def go() -> None:
            if user is None:
                msg: dict[str, Any] = {"type": "Authenticate", "tokenType": "None", "baseVersion": client.identity}
                client.auth = Auth()
            else:
                token = auth_config.sign_token(user)
                msg = {"type": "Authenticate", "tokenType": "User", "value": token, "baseVersion": client.identity}
                client.auth = await authenticate(self.dep, "User", token)
            client.identity += 1
            await client.deliver(msg)

        self.step(go())

    # Writes: from "another client" (Deployment.call) or as one of the sessions' own mutations.
    def _write(self, data: st.DataObject, path: str, args: dict) -> None:
        via = data.draw(st.sampled_from([None, *self.live_clients()]))

        async def go() -> None:
            if via is None:
                outcome = await self.dep.call(path, args, kind="mutation", auth=Auth())
                assert outcome.success, outcome
                await self.dep.subscriptions.settled(outcome.ts)  # type: ignore[union-attr]
                result = outcome.value
            else:
                rid = via.next_request_id
                via.next_request_id += 1
                await via.deliver({"type": "Mutation", "requestId": rid, "udfPath": path, "args": [_wire(args)]})
                while rid not in via.responses:
                    await via.drained()
                    await asyncio.wait_for(self.dep.subscriptions.settled(), STEP_TIMEOUT)  # type: ignore[union-attr]
                    await via.drained()
                    via.consume()
                    if rid not in via.responses:
                        # The mutation worker has not answered yet: wait for its next frame.
                        await asyncio.wait_for(self._next_frame(via), STEP_TIMEOUT)
                response = via.responses[rid]
                assert response["success"], response
                result = response["result"]
            if path == "items:add":
                self.item_ids.append(result)
            elif path == "items:remove":
                self.item_ids.remove(args["id"])

        self.step(go())

    async def _next_frame(self, client: Client) -> None:
        while not client.frames:
            await client.session.wait_drained(after_next_send=True)

    @rule(data=st.data(), name=st.sampled_from(NAMES), value=st.sampled_from([-1.0, 0.0, 1.0, 2.0]))
    def set_counter(self, data: st.DataObject, name: str, value: float) -> None:
        self._write(data, "counters:set", {"name": name, "value": value})

    @rule(data=st.data(), value=st.sampled_from([-1.0, 3.0]))
    def set_two_counters(self, data: st.DataObject, value: float) -> None:
        self._write(data, "counters:setMany", {"names": ["a", "b"], "value": value})

    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def remove_counter(self, data: st.DataObject, name: str) -> None:
        self._write(data, "counters:remove", {"name": name})

    @rule(data=st.data(), list_=st.sampled_from(LISTS), rank=st.integers(0, 6))
    def add_item(self, data: st.DataObject, list_: str, rank: int) -> None:
        self._write(data, "items:add", {"list": list_, "rank": float(rank)})

    @precondition(lambda self: self.item_ids)
    @rule(data=st.data())
    def remove_item(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self.item_ids))
        self._write(data, "items:remove", {"id": item})


SyncMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSyncMachine = SyncMachine.TestCase
