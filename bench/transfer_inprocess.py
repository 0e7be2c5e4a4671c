"""The transfer workload in one process: CPU per transfer of the engine alone, for A/B comparisons.

    python -m bench.transfer_inprocess                    # this checkout
    python -m bench.transfer_inprocess --ab OTHER_DIR     # alternate with another checkout, 4 rounds each
    python -m bench.transfer_inprocess --profile F.prof   # cProfile of the measured transfers only
    python -m bench.transfer_inprocess --parts            # CPU of a transfer's pieces, then of it whole
    python -m bench.transfer_inprocess --clients 9        # fewer clients: smaller group commits

The deployment is opened in-process on bench/transfer_app (100 000 accounts in a temporary SQLite
file); 50 concurrent clients send `POST /api/mutation` requests as raw HTTP/1.1 bytes into
engine.http_server's protocol through an in-memory transport (no sockets, no load generator), so
the figure is the engine's own CPU per transfer: parsing, routing, the mutation, the commit. Noise
from a shared machine is far smaller than over real sockets; a change to the commit path shows here
first. `--ab` runs each checkout in a fresh interpreter, alternating, and prints both means.
The 50 clients here all send in the same event-loop round, so every group commit holds 50
transfers; served, requests arrive spread out and groups are small (a mean of ~9 transfers in a
served HTTP run): `--clients 9` measures that regime, where per-group costs weigh more.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ACCOUNTS = 100_000
CLIENTS = 50
# The request exactly as Node's fetch (undici, Node 20) sends it for bench.transfer's HTTP load.
_REQUEST = (b"POST /api/mutation?format=json HTTP/1.1\r\nhost: 127.0.0.1:3210\r\nconnection: keep-alive\r\n"
            b"content-type: application/json\r\naccept: */*\r\naccept-language: *\r\nsec-fetch-mode: cors\r\n"
            b"user-agent: node\r\naccept-encoding: gzip, deflate\r\ncontent-length: %d\r\n\r\n%s")


class _Transport(asyncio.Transport):
    """Collects what the server writes; wakes the client when a response arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self._closing = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


# `--parts`: what a transfer's pieces cost, each measured like the transfer (same clients, requests).
# (label, function, whether from_id == to_id: transfer:transfer then returns before reading)
PARTS = [
    ("no-op mutation (transfer with from = to: HTTP edge, routing, arguments, runner, log)", "transfer:transfer", True),
    ("+ two indexed reads (parts:reads, no commit)", "parts:reads", False),
    ("one read + one patch + the commit (parts:one_patch)", "parts:one_patch", False),
    ("the transfer: two reads, two patches, the commit", "transfer:transfer", False),
]


async def _measure(per_client: int, repo: Path, profile: Path | None = None, mmap_bytes: int = 0,
                   parts: bool = False, clients: int = CLIENTS) -> dict[str, Any]:
    sys.path.insert(0, str(repo))  # the checkout measured (its engine, its transfer app)
    from engine.deployment import Auth, Deployment
    from engine.storage import SqlitePersistence
    from engine.http_server import HttpServer, _Connection
    from engine.server import ApiEndpoint, tune_gc_for_serving

    app = repo / "bench" / "transfer_app"
    with tempfile.TemporaryDirectory(prefix="bench-inproc-") as tmp:
        db = Path(tmp) / "db.sqlite3"
        dep = await Deployment.open(app, db, admin_key="bench", persistence=SqlitePersistence(db, mmap_bytes=mmap_bytes))
        try:
            admin = Auth(admin=True)
            for start in range(0, ACCOUNTS, 2000):
                outcome = await dep.call("accounts:seed", {"start": float(start), "count": 2000.0, "balance": 1e9},
                                         kind="mutation", auth=admin)
                assert outcome.success, outcome
            tune_gc_for_serving()  # as `engine serve` does
            server = HttpServer(ApiEndpoint(dep))
            rnd = random.Random(1)
            loop = asyncio.get_running_loop()

            async def client(n: int, path: str = "transfer:transfer", same: bool = False) -> None:
                conn = _Connection(server)
                transport = _Transport()
                conn.connection_made(transport)
                for _ in range(n):
                    src = rnd.randrange(ACCOUNTS)
                    body = json.dumps({"path": path, "args": {
                        "amount": 1, "from_id": src, "to_id": src if same else rnd.randrange(ACCOUNTS)}}).encode()
                    request = _REQUEST % (len(body), body)
                    transport.waiter = loop.create_future()
                    transport.out.clear()
                    conn.data_received(request)
                    await transport.waiter
                    if b'"success"' not in transport.out[-1]:
                        raise RuntimeError(transport.out[-1][:300])

            await asyncio.gather(*[client(20) for _ in range(clients)])  # warm-up
            if parts:
                costs = {}
                for label, path, same in PARTS:
                    await asyncio.gather(*[client(20, path, same) for _ in range(clients)])  # warm-up
                    cpu = time.process_time()
                    await asyncio.gather(*[client(per_client, path, same) for _ in range(clients)])
                    costs[label] = 1000 * (time.process_time() - cpu) / (clients * per_client)
                return {"parts_cpu_ms": costs}
            profiler = cProfile.Profile() if profile is not None else None
            wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
            if profiler is not None:
                profiler.enable()
            await asyncio.gather(*[client(per_client) for _ in range(clients)])
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            loop_cpu = time.thread_time() - loop_cpu
        finally:
            await dep.close()
    n = clients * per_client
    return {"transfers": n, "tps": n / wall, "cpu_ms_per_transfer": 1000 * cpu / n,
            "loop_cpu_ms_per_transfer": 1000 * loop_cpu / n}


def _run_in(checkout: Path, per_client: int, clients: int = CLIENTS) -> dict[str, float]:
    more = ["--clients", str(clients)] if clients != CLIENTS else []  # (older checkouts lack the option)
    done = subprocess.run([sys.executable, __file__, "--per-client", str(per_client), *more,
                           "--json", "--repo", str(checkout)],
                          cwd=checkout, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-client", type=int, default=100, help="transfers per client")
    parser.add_argument("--clients", type=int, default=CLIENTS, help=f"concurrent clients (default {CLIENTS})")
    parser.add_argument("--ab", type=Path, metavar="OTHER_DIR", help="another checkout to alternate with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--mmap-bytes", type=int, default=0,
                        help="snapshot readers map this much of the file (SqlitePersistence(mmap_bytes=); default 0)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="write a cProfile of the measured transfers (not the seeding) to FILE")
    parser.add_argument("--parts", action="store_true",
                        help="CPU per call of a transfer's pieces (a no-op mutation, its reads, one patch), "
                             "then of the whole transfer, in one process")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.parts:
        if args.ab is not None or args.profile is not None:
            parser.error("--parts measures this checkout alone (no --ab, no --profile)")
        result = asyncio.run(_measure(args.per_client, args.repo.resolve(), mmap_bytes=args.mmap_bytes, parts=True,
                                      clients=args.clients))
        for label, ms in result["parts_cpu_ms"].items():
            print(f"{ms:.3f} CPU-ms  {label}")
        return 0
    if args.ab is None:
        result = asyncio.run(_measure(args.per_client, args.repo.resolve(), args.profile, args.mmap_bytes,
                                      clients=args.clients))
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['transfers']} transfers in-process: {result['tps']:.0f}/s, "
                  f"{result['cpu_ms_per_transfer']:.3f} CPU-ms each "
                  f"({result['loop_cpu_ms_per_transfer']:.3f} on the event loop's thread)")
        return 0
    here = Path(__file__).resolve().parent.parent
    runs: dict[str, list[float]] = {"this": [], "other": []}
    loop: dict[str, list[float]] = {"this": [], "other": []}
    for _ in range(args.rounds):
        for name, checkout in (("other", args.ab.resolve()), ("this", here)):
            result = _run_in(checkout, args.per_client, args.clients)
            runs[name].append(result["cpu_ms_per_transfer"])
            loop[name].append(result["loop_cpu_ms_per_transfer"])
            print(f"{name:5} {runs[name][-1]:.3f} CPU-ms per transfer ({loop[name][-1]:.3f} on the loop's thread)",
                  flush=True)
    this, other = statistics.mean(runs["this"]), statistics.mean(runs["other"])
    print(f"mean: this {this:.3f}, other {other:.3f} CPU-ms per transfer: this/other = {this / other:.3f}")
    this, other = statistics.mean(loop["this"]), statistics.mean(loop["other"])
    print(f"on the event loop's thread: this {this:.3f}, other {other:.3f}: this/other = {this / other:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
