"""Subscription benchmarks (issue 3), each figure beside a baseline measured in the same run.

    python -m bench.sync            # full run (a few minutes)
    python -m bench.sync --quick    # small S/K, few repetitions; what tests/test_bench_smoke.py runs

1. Invalidation: S = 10 / 1 000 / 10 000 / 100 000 distinct live subscriptions on a real Deployment
   (bench/app: `items:byOwner`, `items:get`, `items:topByOwner` with distinct args), registered
   through `SubscriptionManager.subscribe`. One real commit that affects exactly one of them; the
   time `SubscriptionManager.affected_since` takes to name the affected set, vs a scan that tests
   every live query's ReadSet against every written key.
2. Fan-out: K = 1 / 100 / 1 000 WebSocket clients (the `websockets` library, in a separate client
   process) on a real server process (`python -m engine serve`), all subscribed to one query; one
   mutation over a separate connection; time until every client holds its Transition. Baseline: a
   plain `websockets` server broadcasting bytes of the same size to the same K clients, triggered
   the same way. Blocks of repetitions alternate between the two.
3. Memory: server RSS growth (VmRSS) per idle connection (vs the plain websockets server), per
   distinct subscription and per identical (shared) subscription.

Prints a table and writes bench/results/sync.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "app"
RESULTS = Path(__file__).resolve().parent / "results" / "sync.json"
PLACEHOLDER = "r99999"  # the tag the baseline server replaces with each repetition's tag


@dataclass(frozen=True)
class Sizes:
    subs: tuple[int, ...]  # S
    writes: int  # distinct measured commits per S (each affects exactly one subscription)
    reps: int  # timed affected_since calls per S
    baseline_budget_s: float  # time budget for the baseline scan per S (at least 5 reps)
    fanout: tuple[int, ...]  # K
    fanout_reps: int  # mutations per K (per side)
    idle_conns: int
    mem_subs: int
    settle_s: float  # pause before each RSS reading (and between fan-out sizes)


FULL = Sizes(subs=(10, 1_000, 10_000, 100_000), writes=30, reps=3000, baseline_budget_s=4.0,
             fanout=(1, 100, 1_000), fanout_reps=100, idle_conns=1_000, mem_subs=10_000, settle_s=1.0)
QUICK = Sizes(subs=(10, 300), writes=6, reps=200, baseline_budget_s=0.2,
              fanout=(1, 20), fanout_reps=6, idle_conns=50, mem_subs=200, settle_s=0.2)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def raise_nofile(want: int = 65_536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ==================================================================================================
# 1. Invalidation cost (in process)
# ==================================================================================================

class _Session:
    """What `SubscriptionManager.subscribe` and a round need from a session (no socket)."""

    closed = False

    def __init__(self) -> None:
        self.transitions = 0

    def push_transition(self, ts: int, frags: dict[int, bytes]) -> None:
        self.transitions += 1


def _spec(i: int) -> tuple[str, str]:
    """Subscription i's kind and owner. Kinds cycle: byOwner, get, topByOwner."""
    kind = ("byOwner", "get", "topByOwner")[i % 3]
    return kind, (f"g{i}" if kind == "get" else f"o{i}")


def _docs_for(i: int) -> list[dict[str, Any]]:
    kind, owner = _spec(i)
    count = 2 if kind == "topByOwner" else 1
    return [{"owner": owner, "rank": float(r), "tag": "t"} for r in range(count)]


class _Subscribed:
    """One deployment holding S distinct live queries, and the commits measured against it."""

    def __init__(self, S: int, dep: Any) -> None:
        self.S = S
        self.dep = dep
        self.mgr = dep.subscriptions
        self.readsets: dict[Any, Any] = {}  # every live entry's ReadSet (for the baseline scan)
        self.entries: list[Any] = []
        self.windows: list[tuple[int, int]] = []  # (after_ts, commit ts) of each measured commit
        self.key_lists: list[list[tuple[int, bytes]]] = []
        self.load_s = self.subscribe_s = 0.0
        self.ours_ns: list[int] = []
        self.scan_ns: list[int] = []


async def _build(S: int, path: Path, sizes: Sizes) -> _Subscribed:
    from engine.deployment import Auth, Deployment

    nobody = Auth()
    dep = await Deployment.open(APP, path)
    sub = _Subscribed(S, dep)
    mgr = sub.mgr
    assert mgr is not None
    store = mgr._store

    def recording_store(entry: Any, ev: Any) -> bool:  # wraps the manager's own store step
        sub.readsets[entry] = ev.reads
        return store(entry, ev)

    mgr._store = recording_store  # type: ignore[method-assign]
    fns = {name: dep.lookup(f"items:{name}", kind="query", auth=nobody) for name in ("byOwner", "get", "topByOwner")}

    async def call(path: str, args: dict[str, Any]) -> Any:
        outcome = await dep.call(path, args, kind="mutation", auth=nobody)
        if not outcome.success:
            raise RuntimeError(f"{path}: {outcome.error_message}")
        return outcome

    # The rows the queries read, loaded through ordinary mutations (5 000 inserts each).
    t0 = time.perf_counter()
    doc_ids: dict[int, list[str]] = {}
    batch: list[dict[str, Any]] = []
    owners: list[int] = []
    for i in range(S):
        docs = _docs_for(i)
        batch.extend(docs)
        owners.extend([i] * len(docs))
        if len(batch) >= 5000 or i == S - 1:
            ids = (await call("items:fill", {"docs": batch})).value
            for j, doc_id in zip(owners, ids):
                doc_ids.setdefault(j, []).append(doc_id)
            batch, owners = [], []
    sub.load_s = time.perf_counter() - t0
    # S distinct live queries through the real subscribe path (each runs its query), 1 000 per snapshot.
    t0 = time.perf_counter()
    sessions = [_Session() for _ in range(100)]
    for start in range(0, S, 1000):
        snapshot = await dep.persistence.snapshot()
        try:
            for i in range(start, min(S, start + 1000)):
                kind, owner = _spec(i)
                if kind == "byOwner":
                    args: dict[str, Any] = {"owner": owner}
                elif kind == "get":
                    args = {"id": doc_ids[i][0]}
                else:
                    args = {"owner": owner, "n": float(1 + (i // 3) % 2)}
                sub.entries.append(await mgr.subscribe(sessions[i % len(sessions)], i, f"items:{kind}", fns[kind],
                                                       args, nobody, None, snapshot))
        finally:
            snapshot.close()
    sub.subscribe_s = time.perf_counter() - t0
    assert mgr.live_queries == S, (mgr.live_queries, S)
    # The measured commits: distinct targets, the three kinds in turn; each one writes keys inside
    # exactly one live query's read set.
    rng = random.Random(S)
    count = min(sizes.writes, S)
    picks = {k: rng.sample(range(k, S, 3), len(range(k, S, 3))) for k in range(3)}
    for w in range(count):
        target = picks[w % 3].pop()
        kind, owner = _spec(target)
        before = dep.committer.durable_ts
        if kind == "byOwner":  # a new row inside the owner's range
            outcome = await call("items:add", {"owner": owner, "rank": 5.0, "tag": "new"})
        elif kind == "get":  # a patch of the document read by id
            outcome = await call("items:setTag", {"id": doc_ids[target][0], "tag": f"w{w}"})
        else:  # a row inserted ahead of where take(n) stopped
            outcome = await call("items:add", {"owner": owner, "rank": -1.0, "tag": "new"})
        await mgr.settled()  # the round re-runs the query; its new read set still holds the key
        keys = [k for _, ks in dep.committer.write_log.since(before, outcome.ts) for k in ks]
        ours = mgr.affected_since(before, outcome.ts)
        scan = {e for e, rs in sub.readsets.items() if rs.overlaps(keys)}
        assert ours == scan == {sub.entries[target]}, (S, target, len(ours), len(scan))
        sub.windows.append((before, outcome.ts))
        sub.key_lists.append(keys)
    return sub


async def invalidation(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    subs: list[_Subscribed] = []
    try:
        for S in sizes.subs:
            sub = await _build(S, workdir / f"inval-{S}.sqlite3", sizes)
            subs.append(sub)
            print(f"  S={S:>7,}: built (load {sub.load_s:.1f} s, subscribe {sub.subscribe_s:.1f} s)",
                  file=sys.stderr, flush=True)
        gc.collect()
        # Ours: the deployments take turns in blocks of 100 calls, so drift (other load, CPU clock)
        # hits every S alike; each block cycles through that deployment's measured commits.
        block = 100
        for b in range(max(1, sizes.reps // block)):
            for sub in subs:
                affected_since = sub.mgr.affected_since
                windows = sub.windows
                n = len(windows)
                for r in range(block):
                    after, until = windows[(b * block + r) % n]
                    t0 = time.perf_counter_ns()
                    affected_since(after, until)
                    sub.ours_ns.append(time.perf_counter_ns() - t0)
        # Baseline: every live query's ReadSet tested against every written key (at least 5 times).
        for sub in subs:
            live = list(sub.readsets.items())
            for _, rs in live:
                rs.contains(0, b"")  # sort/merge once up front, so the scan pays only for lookups
            deadline = time.perf_counter() + sizes.baseline_budget_s
            r = 0
            while r < 5 or (time.perf_counter() < deadline and r < sizes.reps):
                keys = sub.key_lists[r % len(sub.key_lists)]
                t0 = time.perf_counter_ns()
                hit = [e for e, rs in live if rs.overlaps(keys)]
                sub.scan_ns.append(time.perf_counter_ns() - t0)
                assert len(hit) == 1
                r += 1
        rss = rss_kib()
        rows = []
        for sub in subs:
            row = {
                "S": sub.S, "live_queries": sub.mgr.live_queries, "intervals": sub.mgr.index.size,
                "measured_commits": len(sub.windows),
                "keys_per_commit": round(statistics.mean(len(k) for k in sub.key_lists), 2),
                "ours_median_us": statistics.median(sub.ours_ns) / 1000,
                "ours_p99_us": pct(sub.ours_ns, 99) / 1000, "ours_reps": len(sub.ours_ns),
                "scan_median_us": statistics.median(sub.scan_ns) / 1000, "scan_reps": len(sub.scan_ns),
                "load_s": round(sub.load_s, 2), "subscribe_s": round(sub.subscribe_s, 2),
            }
            row["scan_over_ours"] = row["scan_median_us"] / row["ours_median_us"]
            rows.append(row)
            print(f"  S={sub.S:>7,}: ours {row['ours_median_us']:8.2f} us, scan {row['scan_median_us']:12.1f} us",
                  file=sys.stderr, flush=True)
    finally:
        for sub in subs:
            await sub.dep.close()
    first, last = rows[0], rows[-1]
    return {
        "rows": rows,
        "ratio_ours_Smax_vs_Smin": last["ours_median_us"] / first["ours_median_us"],
        "scan_over_ours_at_Smax": last["scan_over_ours"],
        "S_min": first["S"], "S_max": last["S"],
        "bench_process_rss_mib": round(rss / 1024, 1),
        "targets": {"ratio_Smax_vs_Smin_max": 2.0, "scan_over_ours_min": 100.0},
        "write_mix": "commits cycle: insert into a byOwner range, patch a doc read by get, insert ahead of "
                     "where a topByOwner take(n) stopped",
    }


# ==================================================================================================
# 2 + 3. Servers and the client process
# ==================================================================================================

async def baseline_server() -> None:
    """A plain `websockets` server: "P:<template>" sets the payload, "SUB" joins the audience,
    "GO:<tag>" broadcasts the template (tag substituted) to the audience."""
    from websockets.asyncio.server import broadcast, serve

    audience: set[Any] = set()
    template = ""

    async def handler(ws: Any) -> None:
        nonlocal template
        try:
            async for msg in ws:
                if msg.startswith("GO:"):
                    broadcast(audience, template.replace(PLACEHOLDER, msg[3:]))
                elif msg == "SUB":
                    audience.add(ws)
                    await ws.send("OK")
                elif msg.startswith("P:"):
                    template = msg[2:]
                    await ws.send("OK")
                elif msg == "IDLE":
                    await ws.send("OK")
        finally:
            audience.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None, backlog=4096) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().create_future()


def start_engine(workdir: Path, name: str, profile: str | None = None) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, CONVEX_ADMIN_KEY="bench-admin-key", PYTHONUNBUFFERED="1")
    prof = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *prof, "-m", "engine", "serve", "--app", str(APP), "--db", str(workdir / f"{name}.sqlite3"),
         "--port", "0", "--site-port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=open(workdir / f"{name}.log", "w"), text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Convex-compatible API listening on "):
            url = line.split()[-1].replace("http://", "ws://") + "/api/1.0.0/sync"
            return proc, url
    raise RuntimeError(f"the engine server did not start (exit {proc.wait()})")


def start_baseline() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.sync", "--role", "baseline-server"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        raise RuntimeError("the baseline server did not start")
    return proc, f"ws://127.0.0.1:{line.split()[1]}"


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_client(config: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.sync", "--role", "client", "--config", json.dumps(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"client process failed:\n{done.stderr[-4000:]}")
    sys.stderr.write(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- client side (runs in its own process) ---------------------------------------------------------

class Conn(asyncio.Protocol):
    """A WebSocket client connection on the `websockets` library's sans-I/O protocol, driven from
    asyncio callbacks: no task and no buffering per connection, so K receivers cost the client
    process as little as possible (it shares 2 cores with the server being measured)."""

    def __init__(self, uri: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.proto = ClientProtocol(parse_uri(uri), max_size=None)  # no extensions: no compression
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self.on_text: Any = None  # if set, called with each text frame's bytes instead of queueing
        self.transport: Any = None

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    if self.on_text is not None:
                        self.on_text(event.data)
                    else:
                        self.inbox.put_nowait(event.data.decode())
            elif isinstance(event, Response) and not self.opened.done():
                if self.proto.handshake_exc is not None:
                    self.opened.set_exception(self.proto.handshake_exc)
                else:
                    self.opened.set_result(None)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))

    def _flush(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)

    # API
    def send(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self._flush()

    async def recv(self) -> str:
        return await self.inbox.get()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.proto.send_close()
                self._flush()
            except Exception:
                pass
            self.transport.close()


async def _connect(url: str) -> Conn:
    from websockets.uri import parse_uri

    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    for attempt in range(20):
        try:
            _, conn = await loop.create_connection(lambda: Conn(url), uri.host, uri.port)
            await asyncio.wait_for(conn.opened, 60)
            return conn
        except OSError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def _connect_many(url: str, n: int, parallel: int = 64) -> list[Conn]:
    sem = asyncio.Semaphore(parallel)

    async def one() -> Conn:
        async with sem:
            return await _connect(url)

    return list(await asyncio.gather(*(one() for _ in range(n))))


class EngineClient:
    """One Convex sync connection speaking just enough of the protocol."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.qs_version = 0
        self.next_query = 0
        self.next_request = 0

    def hello(self) -> None:
        self.conn.send(json.dumps({"type": "Connect", "sessionId": str(uuid.uuid4()), "connectionCount": 0,
                                   "clientTs": time.time() * 1000}))

    def add(self, queries: list[tuple[str, dict[str, Any]]]) -> None:
        mods = []
        for path, args in queries:
            mods.append({"type": "Add", "queryId": self.next_query, "udfPath": path, "args": [args]})
            self.next_query += 1
        self.conn.send(json.dumps({"type": "ModifyQuerySet", "baseVersion": self.qs_version,
                                   "newVersion": self.qs_version + 1, "modifications": mods}))
        self.qs_version += 1

    async def wait_transition(self) -> str:
        """The Transition that brings the query set to the version last sent."""
        while True:
            msg = await self.conn.recv()
            if msg.startswith('{"type":"Transition"'):
                if json.loads(msg)["endVersion"]["querySet"] >= self.qs_version:
                    return msg

    async def mutation(self, path: str, args: dict[str, Any]) -> Any:
        rid = self.next_request
        self.next_request += 1
        self.conn.send(json.dumps({"type": "Mutation", "requestId": rid, "udfPath": path, "args": [args]}))
        while True:
            msg = await self.conn.recv()
            if '"type":"MutationResponse"' in msg:  # keys are sorted: "type" is not first
                data = json.loads(msg)
                if data["requestId"] == rid:
                    if not data["success"]:
                        raise RuntimeError(data)
                    return data["result"]


class Audience:
    """K receiving connections; notes when each one gets a text frame with the current marker."""

    def __init__(self, conns: list[Conn], prefix: bytes) -> None:
        self.conns = conns
        self.prefix = prefix
        self.marker = b"\x00never"
        self.count = 0
        self.last = 0
        self.frame = b""
        self.done = asyncio.Event()
        for conn in conns:
            while not conn.inbox.empty():
                conn.inbox.get_nowait()
            conn.on_text = self._on_text

    def _on_text(self, data: bytes) -> None:
        if data.startswith(self.prefix) and self.marker in data:
            self.last = time.perf_counter_ns()
            self.count += 1
            if self.count == 1:
                self.frame = data
            if self.count == len(self.conns):
                self.done.set()

    def arm(self, marker: str) -> None:
        self.marker = marker.encode()
        self.count = 0
        self.done.clear()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


async def _fanout(cfg: dict[str, Any]) -> dict[str, Any]:
    engine_url, base_url, ks, reps = cfg["engine_url"], cfg["baseline_url"], cfg["ks"], cfg["reps"]
    writer = EngineClient(await _connect(engine_url))
    writer.hello()
    # Ten rows the audience's query returns; each repetition re-tags one of them (constant size).
    ids = await writer.mutation("items:fill", {"docs": [{"owner": "fan", "rank": float(r), "tag": "r00000"}
                                                        for r in range(10)]})
    query = ("items:topByOwner", {"owner": "fan", "n": 10.0})
    trigger = await _connect(base_url)
    out: dict[str, Any] = {}
    tag_no = 0
    for k in ks:
        t_setup = time.perf_counter()
        clients = [EngineClient(conn) for conn in await _connect_many(engine_url, k)]

        async def join(c: EngineClient) -> None:
            c.hello()
            c.add([query])
            await c.wait_transition()

        await asyncio.wait_for(asyncio.gather(*(join(c) for c in clients)), 300)
        ours = Audience([c.conn for c in clients], b'{"type":"Transition"')
        base_conns = await _connect_many(base_url, k)

        async def sub(conn: Conn) -> None:
            conn.send("SUB")
            await conn.recv()

        await asyncio.wait_for(asyncio.gather(*(sub(c) for c in base_conns)), 300)
        base = Audience(base_conns, b'{"type":"Transition"')
        setup_s = time.perf_counter() - t_setup
        ours_ms: list[float] = []
        base_ms: list[float] = []
        frame_size = 0
        block = max(1, min(10, reps // 4))
        while len(ours_ms) < reps or len(base_ms) < reps:
            for _ in range(min(block, reps - len(ours_ms))):
                tag_no += 1
                tag = f"r{tag_no:05d}"
                ours.arm(f'"tag":"{tag}"')
                t0 = time.perf_counter_ns()
                await asyncio.wait_for(writer.mutation("items:setTag", {"id": ids[tag_no % len(ids)], "tag": tag}), 60)
                await asyncio.wait_for(ours.done.wait(), 60)
                ours_ms.append((ours.last - t0) / 1e6)
                await asyncio.sleep(0.01)
            if not frame_size:  # the same bytes (size) as our Transition, with a swappable tag
                frame_size = len(ours.frame)
                trigger.send("P:" + ours.frame.decode().replace(f'"tag":"r{tag_no:05d}"', f'"tag":"{PLACEHOLDER}"'))
                await trigger.recv()
            for _ in range(min(block, reps - len(base_ms))):
                tag_no += 1
                tag = f"r{tag_no:05d}"
                base.arm(f'"tag":"{tag}"')
                t0 = time.perf_counter_ns()
                trigger.send("GO:" + tag)
                await asyncio.wait_for(base.done.wait(), 60)
                base_ms.append((base.last - t0) / 1e6)
                await asyncio.sleep(0.01)
        ours.close()
        base.close()
        r = out[str(k)] = {
            "K": k, "reps": reps, "transition_bytes": frame_size, "setup_s": round(setup_s, 2),
            "ours_p50_ms": pct(ours_ms, 50), "ours_p99_ms": pct(ours_ms, 99),
            "baseline_p50_ms": pct(base_ms, 50), "baseline_p99_ms": pct(base_ms, 99),
            "ours_ms": [round(x, 2) for x in ours_ms], "base_ms": [round(x, 2) for x in base_ms],
        }
        r["p50_ratio"] = r["ours_p50_ms"] / r["baseline_p50_ms"]
        r["p99_ratio"] = r["ours_p99_ms"] / r["baseline_p99_ms"]
        print(f"  K={k:>5}: ours p50 {r['ours_p50_ms']:.2f} ms p99 {r['ours_p99_ms']:.2f} ms | baseline p50 "
              f"{r['baseline_p50_ms']:.2f} ms p99 {r['baseline_p99_ms']:.2f} ms", file=sys.stderr, flush=True)
        await asyncio.sleep(cfg["settle_s"])  # let the servers drop the closed connections
    writer.conn.close()
    trigger.close()
    return out


_settle_s = 1.0


async def _settle_rss(pid: int) -> int:
    await asyncio.sleep(_settle_s)
    return rss_kib(pid)


async def _memory(cfg: dict[str, Any]) -> dict[str, Any]:
    engine_url, engine_pid = cfg["engine_url"], cfg["engine_pid"]
    base_url, base_pid = cfg["baseline_url"], cfg["baseline_pid"]
    n, n_subs = cfg["idle_conns"], cfg["mem_subs"]
    out: dict[str, Any] = {"idle_conns": n, "subscriptions": n_subs}

    # Warm both servers up (imports, a first query), then measure.
    warm = EngineClient(await _connect(engine_url))
    warm.hello()
    warm.add([("items:byOwner", {"owner": "warm"})])
    await warm.wait_transition()
    warm_b = await _connect(base_url)
    warm_b.send("IDLE")
    await warm_b.recv()

    # Idle connections: Connect and an empty query set (one round trip, so each session surely
    # exists server-side), nothing else. The plain server: one round trip each.
    before = await _settle_rss(engine_pid)
    clients = [EngineClient(conn) for conn in await _connect_many(engine_url, n)]
    for c in clients:
        c.hello()
        c.add([])
    await asyncio.gather(*(c.wait_transition() for c in clients))
    after = await _settle_rss(engine_pid)
    out["ours_rss_before_mib"] = round(before / 1024, 1)
    out["ours_per_idle_conn_kib"] = (after - before) / n

    b_before = await _settle_rss(base_pid)
    bconns = await _connect_many(base_url, n)
    for conn in bconns:
        conn.send("IDLE")
    await asyncio.gather(*(conn.recv() for conn in bconns))
    b_after = await _settle_rss(base_pid)
    out["baseline_per_idle_conn_kib"] = (b_after - b_before) / n

    # Distinct subscriptions over (up to) 100 of the idle connections, 100 queries per message.
    holders = clients[:min(100, len(clients))]
    before = await _settle_rss(engine_pid)
    q = 0
    while q < n_subs:
        batch = []
        for c in holders:
            queries = []
            for _ in range(min(100, n_subs - q)):
                queries.append(("items:byOwner", {"owner": f"m{q}"}) if q % 2 == 0
                               else ("items:topByOwner", {"owner": f"m{q}", "n": 3.0}))
                q += 1
            if queries:
                batch.append(c)
                c.add(queries)
        await asyncio.gather(*(c.wait_transition() for c in batch))
    after = await _settle_rss(engine_pid)
    out["ours_per_distinct_sub_kib"] = (after - before) / n_subs

    # Identical subscriptions: one query held n_subs times (one shared entry).
    before = after
    q = 0
    while q < n_subs:
        batch = []
        for c in holders:
            m = min(100, n_subs - q)
            if m:
                q += m
                batch.append(c)
                c.add([("items:byOwner", {"owner": "shared"})] * m)
        await asyncio.gather(*(c.wait_transition() for c in batch))
    after = await _settle_rss(engine_pid)
    out["ours_per_shared_sub_kib"] = (after - before) / n_subs
    out["ours_rss_after_mib"] = round(after / 1024, 1)
    for conn in [warm.conn, warm_b, *(c.conn for c in clients), *bconns]:
        conn.close()
    return out


async def client_main(cfg: dict[str, Any]) -> dict[str, Any]:
    global _settle_s
    raise_nofile()
    _settle_s = cfg["settle_s"]
    if cfg["what"] == "fanout":
        return await _fanout(cfg)
    return await _memory(cfg)


# ==================================================================================================
# Orchestration and report
# ==================================================================================================

def machine() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "implementation":
            platform.python_implementation(), "platform": platform.platform(), "processor": platform.processor()
            or platform.machine()}


def fanout(sizes: Sizes, workdir: Path, profile: str | None = None) -> dict[str, Any]:
    eng, eng_url = start_engine(workdir, "fanout", profile)
    base, base_url = start_baseline()
    try:
        fan = run_client({"what": "fanout", "engine_url": eng_url, "baseline_url": base_url,
                          "ks": list(sizes.fanout), "reps": sizes.fanout_reps, "settle_s": sizes.settle_s})
    finally:
        stop(eng)
        stop(base)
    kmax = str(max(sizes.fanout))
    return {"by_K": fan, "K_max": int(kmax), "p50_ratio_at_Kmax": fan[kmax]["p50_ratio"],
            "p99_ratio_at_Kmax": fan[kmax]["p99_ratio"], "target_ratio_max": 2.0}


def memory(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    eng, eng_url = start_engine(workdir, "memory")
    base, base_url = start_baseline()
    try:
        mem = run_client({"what": "memory", "engine_url": eng_url, "engine_pid": eng.pid, "baseline_url": base_url,
                          "baseline_pid": base.pid, "idle_conns": sizes.idle_conns, "mem_subs": sizes.mem_subs,
                          "settle_s": sizes.settle_s})
    finally:
        stop(eng)
        stop(base)
    return mem


def print_table(report: dict[str, Any]) -> None:
    inv, fan, mem = report.get("invalidation"), report.get("fanout"), report.get("memory")
    m = report["machine"]
    print(f"\nSubscription benchmark — {m['nproc']} CPU, Python {m['python']}, load average "
          f"{m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}{' (quick)' if report['quick'] else ''}\n")
    if inv:
        _print_invalidation(inv)
    if fan:
        _print_fanout(fan)
    if mem:
        _print_memory(mem)


def _print_invalidation(inv: dict[str, Any]) -> None:
    print("1. Invalidation: time to decide the affected set of one commit (median)")
    print(f"   {'S':>8} | {'ours (affected_since)':>22} | {'baseline (same run): scan all':>30} | {'scan/ours':>9}")
    for r in inv["rows"]:
        print(f"   {r['S']:>8,} | {r['ours_median_us']:>19.2f} us | {r['scan_median_us']:>27.1f} us "
              f"| {r['scan_over_ours']:>8.0f}x")
    print(f"   ours S={inv['S_max']:,} / S={inv['S_min']:,}: {inv['ratio_ours_Smax_vs_Smin']:.2f}x (target <= 2x); "
          f"scan/ours at S={inv['S_max']:,}: {inv['scan_over_ours_at_Smax']:.0f}x (target >= 100x)\n")


def _print_fanout(fan: dict[str, Any]) -> None:
    print("2. Fan-out: mutation sent -> every client holds its Transition")
    print(f"   {'K':>6} | {'ours p50':>9} | {'ours p99':>9} | {'baseline (same run) p50':>23} | {'p99':>9} "
          f"| {'p50 ratio':>9} | {'bytes':>6}")
    for r in fan["by_K"].values():
        print(f"   {r['K']:>6,} | {r['ours_p50_ms']:>6.2f} ms | {r['ours_p99_ms']:>6.2f} ms | "
              f"{r['baseline_p50_ms']:>20.2f} ms | {r['baseline_p99_ms']:>6.2f} ms | {r['p50_ratio']:>8.2f}x "
              f"| {r['transition_bytes']:>6}")
    print(f"   at K={fan['K_max']:,}: p50 {fan['p50_ratio_at_Kmax']:.2f}x, p99 {fan['p99_ratio_at_Kmax']:.2f}x "
          f"of the plain websockets broadcast (target <= 2x)\n")


def _print_memory(mem: dict[str, Any]) -> None:
    print("3. Memory (server RSS growth / N)")
    print(f"   per idle connection: ours {mem['ours_per_idle_conn_kib']:.1f} KiB, baseline (same run, plain "
          f"websockets) {mem['baseline_per_idle_conn_kib']:.1f} KiB  (N={mem['idle_conns']:,})")
    print(f"   per distinct subscription: {mem['ours_per_distinct_sub_kib']:.2f} KiB; per identical (shared) "
          f"subscription: {mem['ours_per_shared_sub_kib']:.2f} KiB  (N={mem['subscriptions']:,})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small S/K and few repetitions (smoke test)")
    parser.add_argument("--out", default=None, help="where to write the JSON report (default: bench/results/sync.json; sync.quick.json with --quick)")
    parser.add_argument("--dir", help="working directory for the databases (default: a temporary one)")
    parser.add_argument("--only", default="invalidation,fanout,memory",
                        help="comma-separated parts to run (default: invalidation,fanout,memory)")
    parser.add_argument("--profile-server", metavar="PATH",
                        help="run the fan-out engine server under cProfile and write its stats to PATH")
    parser.add_argument("--role", choices=["client", "baseline-server"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "baseline-server":
        raise_nofile()
        asyncio.run(baseline_server())
        return 0
    if args.role == "client":
        print(json.dumps(asyncio.run(client_main(json.loads(args.config)))))
        return 0

    sizes = QUICK if args.quick else FULL
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - {"invalidation", "fanout", "memory"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    nofile = raise_nofile()  # inherited by the server and client processes
    started = time.perf_counter()
    info = machine()
    info["loadavg_start"] = os.getloadavg()
    report: dict[str, Any] = {"quick": args.quick, "machine": info, "sizes": asdict(sizes),
                              "open_files_limit": nofile}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-sync-") as tmp:
        workdir = Path(tmp)
        if "invalidation" in parts:
            print("1. invalidation ...", file=sys.stderr, flush=True)
            report["invalidation"] = asyncio.run(invalidation(sizes, workdir))
        if "fanout" in parts:
            print("2. fan-out ...", file=sys.stderr, flush=True)
            report["fanout"] = fanout(sizes, workdir, args.profile_server)
        if "memory" in parts:
            print("3. memory ...", file=sys.stderr, flush=True)
            report["memory"] = memory(sizes, workdir)
    info["loadavg_end"] = os.getloadavg()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    report["command"] = "python -m bench.sync" + (" --quick" if args.quick else "") + (
        f" --only {args.only}" if set(parts) != {"invalidation", "fanout", "memory"} else "")
    print_table(report)
    # A quick (smoke) run never overwrites the published full figures.
    out = Path(args.out) if args.out else (RESULTS.with_name('sync.quick.json') if args.quick else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
