"""Soak: does the server's memory level off under steady load? (issue 9, fault 5)

    python -m bench.soak                 # 1 000 sockets x 3 subscriptions, 50 mutations/s, 10 minutes
    python -m bench.soak --minutes 3     # shorter
    python -m bench.soak --quick         # 100 sockets, 20 s (what tests/test_bench_smoke.py runs)

The server is `python -m engine serve` on bench/app (200 items of 50 owners). A client process
(bench.sync's sans-I/O WebSocket clients, no task per connection) opens the sockets; each subscribes
to three queries: the top 5 items of one owner, every item of another, and one item by id. A writer
socket sends `items:setTag` at a steady rate (random item, a fresh marker tag each time), so every
mutation invalidates the subscriptions that read that item.

Printed and written per minute (bench/results/soak.json): the server's RSS (VmRSS), mutations
applied, and the update latency — from sending a mutation to each socket receiving the Transition
that carries its marker — p50/p99. The verdict: RSS growth between the end of minute 2 (warm) and
the last minute, as a fraction; the goal is at most 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sync import EngineClient, _connect, _connect_many, machine, pct, raise_nofile, rss_kib, start_engine, stop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
OWNERS = 50
ITEMS_PER_OWNER = 4


def _rss_parts(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident KiB: memory the process allocated vs. pages of mapped
    files (the SQLite file its readers map) that happen to be resident."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0]] = int(line.split()[1])
    return parts.get("RssAnon", 0), parts.get("RssFile", 0)


async def _client(cfg: dict[str, Any]) -> dict[str, Any]:
    raise_nofile()
    url, pid = cfg["url"], cfg["pid"]
    rnd = random.Random(7)
    writer = EngineClient(await _connect(url))
    writer.hello()
    ids: list[str] = []
    for o in range(OWNERS):
        docs = [{"owner": f"o{o}", "rank": float(r), "tag": "init"} for r in range(ITEMS_PER_OWNER)]
        ids += await writer.mutation("items:fill", {"docs": docs})
    sent: dict[int, float] = {}  # marker number -> when its mutation was sent
    latencies: list[float] = []

    def watcher() -> Any:
        # A marker stays in query results after its update (byOwner lists every item's tag), so
        # each socket counts only its first sighting of a marker.
        seen: set[int] = set()

        def on_text(data: bytes) -> None:
            if not data.startswith(b'{"type":"Transition"'):
                return
            now = time.perf_counter()
            start = data.find(b"mk-")
            while start >= 0:
                number = int(data[start + 3:start + 11])
                t0 = sent.get(number)
                if t0 is not None and number not in seen:
                    seen.add(number)
                    latencies.append(now - t0)
                start = data.find(b"mk-", start + 11)

        on_text.seen = seen  # type: ignore[attr-defined]
        return on_text

    clients = [EngineClient(c) for c in await _connect_many(url, cfg["sockets"])]
    for i, c in enumerate(clients):
        c.hello()
        c.add([("items:topByOwner", {"owner": f"o{i % OWNERS}", "n": 5.0}),
               ("items:byOwner", {"owner": f"o{(i * 7) % OWNERS}"}),
               ("items:get", {"id": ids[i % len(ids)]})])
    await asyncio.gather(*(c.wait_transition() for c in clients))
    watchers = []
    for c in clients:
        c.conn.on_text = watcher()
        watchers.append(c.conn.on_text)
    minutes: list[dict[str, Any]] = []
    period = 1.0 / cfg["rate"]
    started = time.perf_counter()
    n = 0
    for minute in range(cfg["minutes"]):
        latencies.clear()
        applied = 0
        end = started + (minute + 1) * cfg["minute_s"]
        while time.perf_counter() < end:
            n += 1
            sent[n] = time.perf_counter()
            await writer.mutation("items:setTag", {"id": rnd.choice(ids), "tag": f"mk-{n:08d}"})
            applied += 1
            if len(sent) > 5000:  # markers older than a minute or two are no longer measured
                cutoff = n - 2500
                for key in [k for k in sent if k < cutoff]:
                    del sent[key]
                for w in watchers:
                    w.seen.difference_update([x for x in w.seen if x < cutoff])
            delay = started + n * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        lat = sorted(latencies)
        anon, file_ = _rss_parts(pid)
        row = {"minute": minute + 1, "rss_mib": round(rss_kib(pid) / 1024, 1), "anon_mib": round(anon / 1024, 1),
               "file_mib": round(file_ / 1024, 1), "mutations": applied,
               "updates": len(lat), "p50_ms": round(pct(lat, 50) * 1000, 2) if lat else None,
               "p99_ms": round(pct(lat, 99) * 1000, 2) if lat else None}
        minutes.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    for c in clients:
        c.conn.close()
    writer.conn.close()
    return {"minutes": minutes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="mutations per second")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "client":
        print(json.dumps(asyncio.run(_client(json.loads(args.config)))))
        return 0
    minute_s = 60.0
    if args.quick:
        args.minutes, args.sockets, minute_s = 4, 100, 5.0
    out_path = args.out or (RESULTS.with_suffix(".quick.json") if args.quick else RESULTS)
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        proc, url = start_engine(Path(tmp), "soak")
        try:
            cfg = {"url": url, "pid": proc.pid, "sockets": args.sockets, "rate": args.rate,
                   "minutes": args.minutes, "minute_s": minute_s}
            done = subprocess.run([sys.executable, "-m", "bench.soak", "--role", "client", "--config", json.dumps(cfg)],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=args.minutes * minute_s * 3 + 300)
            if done.returncode != 0:
                raise RuntimeError("the soak client failed")
            report = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            stop(proc)
    rows = report["minutes"]
    warm = rows[1]["rss_mib"] if len(rows) > 1 else rows[0]["rss_mib"]
    growth = (rows[-1]["rss_mib"] - warm) / warm
    report.update(sockets=args.sockets, subscriptions=args.sockets * 3, rate=args.rate, minute_s=minute_s,
                  growth_after_warmup=round(growth, 4), goal="<= 0.05", machine=machine(),
                  load=os.getloadavg())
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"RSS {warm} MiB after minute 2 -> {rows[-1]['rss_mib']} MiB at minute {len(rows)}: "
          f"{growth * 100:+.1f}% (goal <= 5%)   -> {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
