"""Bank transfers (SpacetimeDB's "keynote-2" workload) against the engine and the raw-database limit.

    python -m bench.transfer            # full run: 100 000 accounts, 50 connections, 5 s warm-up + 20 s,
                                        # on SQLite, then on PostgreSQL (when installed)
    python -m bench.transfer --quick    # seconds; what tests/test_bench_smoke.py runs
    python -m bench.transfer --backends sqlite           # one column only (sqlite, postgres)
    python -m bench.transfer --seconds 10                # a shorter measured window

Each column runs two servers side by side:
- SQLite: the engine, `python -m engine serve` on bench/transfer_app (keynote-2's Convex app
  translated: `transfer:transfer` reads both accounts through `by_account_id` and patches both
  balances), beside bench/transfer_baseline.py, the same transfer in raw SQLite (WAL,
  synchronous=NORMAL, one connection used inline) behind a minimal asyncio HTTP server;
- PostgreSQL: a PostgreSQL started for the run (tests/pg_harness.py: initdb in a temp folder,
  loopback, fsync on, as bench/cluster.py does), the engine served on one database
  (`engine serve --db postgresql://...`) beside bench/transfer_baseline_pg.py on another: raw
  asyncpg, one transaction per transfer (`SELECT ... ORDER BY id FOR UPDATE` of both accounts,
  `UPDATE`, COMMIT) on a small pool, behind the same kind of HTTP server.
The SQLite column runs first and exactly as before; the PostgreSQL server exists only during its
own column.

The load is tests/js/transfer_load.mjs (Node, the official npm client): 50 connections, one transfer
in flight each, accounts drawn from Zipf(alpha) over 100 000 ids (alpha 0 = uniform; 1.5 puts ~80%
of transfers on a few hot accounts). "http" posts `/api/mutation?format=json` with plain fetch, as
keynote-2's Convex connector does; "ws" drives one npm ConvexClient per connection. A failed
transfer is counted, never retried. Each configuration warms up, then counts what completes in the
measured window; runs alternate between the two servers. Also: one connection doing sequential
transfers (the per-request latency floor).

After every run, the conservation check: the total balance is unchanged, and every account's
balance equals its starting balance plus exactly the transfers acknowledged to it (all runs so far,
warm-ups included) — nothing acknowledged was lost, nothing unacknowledged applied.

Writes bench/results/transfer.json (every figure, the server's and the load generator's CPU time per
transfer, the machine's load). Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "transfer_app"
JS = ROOT / "tests" / "js"
RESULTS = Path(__file__).resolve().parent / "results" / "transfer.json"
ADMIN_KEY = "bench-transfer|0123456789abcdef"
BALANCE = 1_000_000_000


@dataclass(frozen=True)
class Sizes:
    accounts: int
    connections: int
    warmup_s: float
    measure_s: float


FULL = Sizes(accounts=100_000, connections=50, warmup_s=5, measure_s=20)
QUICK = Sizes(accounts=2_000, connections=8, warmup_s=0.5, measure_s=1.5)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _post(url: str, path: str, body: dict, *, admin: bool = False) -> Any:
    headers = {"content-type": "application/json"}
    if admin:
        headers["authorization"] = f"Convex {ADMIN_KEY}"
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as resp:
        answer = json.loads(resp.read())
    if answer.get("status") != "success":
        raise RuntimeError(f"{path} {body.get('path')}: {answer}")
    return answer.get("value")


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.log = log
        # `python -m engine` imports the engine of its working directory (sys.path[0]).
        self.proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=open(log, "wb"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = self._wait_url()

    def _wait_url(self) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(r"(?:listening on|API listening on) (http://\S+)", self.log.read_text())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _load(server: Server, transport: str, alpha: float, connections: int, sizes: Sizes, seed: int) -> dict:
    config = {"url": server.url, "transport": transport, "connections": connections, "accounts": sizes.accounts,
              "alpha": alpha, "warmupS": sizes.warmup_s, "measureS": sizes.measure_s, "seed": seed}
    before = _cpu_s(server.proc.pid)
    load_before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load generator, once it has exited
    done = subprocess.run(["node", str(JS / "transfer_load.mjs"), json.dumps(config)], cwd=JS, capture_output=True,
                          text=True, timeout=600)
    load_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr}")
    out = json.loads(done.stdout)
    out["server_cpu_ms_per_transfer"] = 1000 * (_cpu_s(server.proc.pid) - before) / max(1, out["acknowledged"])
    load_cpu = (load_after.ru_utime + load_after.ru_stime) - (load_before.ru_utime + load_before.ru_stime)
    out["load_cpu_ms_per_transfer"] = 1000 * load_cpu / max(1, out["acknowledged"])
    return out


def _balances(server: Server, accounts: int, baseline: bool) -> dict[int, float]:
    path = "/api/mutation" if baseline else "/api/query"
    fn = "transfer:balances" if baseline else "accounts:balances"
    out: dict[int, float] = {}
    for start in range(0, accounts, 5000):
        rows = _post(server.url, path, {"path": fn, "args": {"start": start, "count": 5000}, "format": "json"})
        out.update((int(i), float(b)) for i, b in rows)
    return out


def _check_conservation(server: Server, sizes: Sizes, expected_delta: dict[int, int], baseline: bool) -> dict:
    balances = _balances(server, sizes.accounts, baseline)
    total = sum(balances.values())
    wrong = [i for i in range(sizes.accounts) if balances.get(i) != BALANCE + expected_delta.get(i, 0)]
    ok = len(balances) == sizes.accounts and total == sizes.accounts * BALANCE and not wrong
    return {"ok": ok, "accounts": len(balances), "total_unchanged": total == sizes.accounts * BALANCE,
            "accounts_off": len(wrong), "first_off": wrong[:5]}


def seed(engine: Server, accounts: int) -> None:
    """Create the engine's accounts 0..accounts-1 with BALANCE each (5 000 per mutation)."""
    for start in range(0, accounts, 5000):
        _post(engine.url, "/api/function", {"path": "accounts:seed", "args": {
            "start": start, "count": min(5000, accounts - start), "balance": BALANCE}}, admin=True)


def _start_servers(backend: str, sizes: Sizes, workdir: Path, pg: Any) -> tuple[Server, Server]:
    env = {"CONVEX_ADMIN_KEY": ADMIN_KEY, "PYTHONUNBUFFERED": "1"}
    if backend == "sqlite":
        engine_db, base_cmd = str(workdir / "engine.sqlite3"), ["-m", "bench.transfer_baseline", "--db",
                                                                  str(workdir / "baseline.sqlite3")]
    else:
        engine_db = pg.create_database("transfer_engine")
        base_cmd = ["-m", "bench.transfer_baseline_pg", "--url", pg.create_database("transfer_baseline")]
    suffix = "" if backend == "sqlite" else "_pg"
    engine = Server("engine" + suffix, [sys.executable, "-m", "engine", "serve", "--app", str(APP), "--db",
                                        engine_db, "--port", "0", "--site-port", "0"], env,
                    workdir / f"engine{suffix}.log")
    try:
        baseline = Server("baseline" + suffix, [sys.executable, *base_cmd, "--accounts", str(sizes.accounts),
                                                "--balance", str(BALANCE)], env, workdir / f"baseline{suffix}.log")
    except BaseException:
        engine.stop()
        raise
    return engine, baseline


def run(sizes: Sizes, workdir: Path, backend: str = "sqlite", pg: Any = None, rounds: int = 1) -> dict[str, Any]:
    """One backend's column: its engine and its raw baseline side by side, runs alternating; with
    `rounds` > 1 the whole plan is run that many times over (each run records its round)."""
    engine, baseline = _start_servers(backend, sizes, workdir, pg)
    results: dict[str, Any] = {"runs": []}
    try:
        t0 = time.monotonic()
        seed(engine, sizes.accounts)
        results["seed_s"] = time.monotonic() - t0
        deltas: dict[str, dict[int, int]] = {"engine": {}, "baseline": {}}
        plan = []
        for alpha in (0.0, 1.5):
            plan += [("engine", "http", alpha, sizes.connections), ("baseline", "http", alpha, sizes.connections),
                     ("engine", "ws", alpha, sizes.connections)]
        plan += [("engine", "http", 0.0, 1), ("baseline", "http", 0.0, 1), ("engine", "ws", 0.0, 1)]
        plan = [(r, *step) for r in range(rounds) for step in plan]
        for n, (round_no, who, transport, alpha, connections) in enumerate(plan):
            server = engine if who == "engine" else baseline
            out = _load(server, transport, alpha, connections, sizes, seed=n + 1)
            delta = deltas[who]
            for account, moved in out.pop("moved"):
                delta[account] = delta.get(account, 0) + moved
            out["conservation"] = _check_conservation(server, sizes, delta, who == "baseline")
            out.update(server=server.name, backend=backend, transport=transport, alpha=alpha, connections=connections,
                       round=round_no)
            results["runs"].append(out)
            print(f"{server.name:11} {transport:4} alpha={alpha:<3} conns={connections:<3} {out['tps']:8.0f} TPS "
                  f"p50 {out['p50_ms'] or 0:6.2f} ms  p99 {out['p99_ms'] or 0:6.2f} ms  failed {out['failed']}  "
                  f"cpu {out['server_cpu_ms_per_transfer']:.3f} ms/transfer (load {out['load_cpu_ms_per_transfer']:.3f})  "
                  f"conserved {out['conservation']['ok']}", flush=True)
    finally:
        engine.stop()
        baseline.stop()
    return results


def _summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per figure. With several rounds, each round's engine run is divided by the same
    round's baseline run, and the row gives the median round (and every round's ratio): the
    machine's speed drifts over minutes, and a run compared with its neighbour sees the least of it."""
    def find_all(who: str, transport: str, alpha: float, conns: int) -> dict[int, dict]:
        return {r.get("round", 0): r for r in results["runs"]
                if (r["server"], r["transport"], r["alpha"], r["connections"]) == (who, transport, alpha, conns)}

    rows = []
    for backend in ("sqlite", "postgres"):
        suffix = "" if backend == "sqlite" else "_pg"
        runs = [r for r in results["runs"] if r.get("backend", "sqlite") == backend]
        if not runs:
            continue
        for transport, alpha, conns in (("http", 0.0, None), ("http", 1.5, None), ("ws", 0.0, None),
                                        ("ws", 1.5, None), ("http", 0.0, 1), ("ws", 0.0, 1)):
            conns = conns or max(r["connections"] for r in runs)
            engs = find_all("engine" + suffix, transport, alpha, conns)
            bases = find_all("baseline" + suffix, "http", alpha, conns)
            pairs = sorted((eng["tps"] / bases[n]["tps"], n) for n, eng in engs.items()
                           if n in bases and bases[n]["tps"])
            if pairs:
                ratio, n = pairs[(len(pairs) - 1) // 2]  # the median round (the lower one of an even count)
                eng, base = engs[n], bases[n]
                rows.append({"backend": backend, "transport": transport, "alpha": alpha, "connections": conns,
                             "engine_tps": eng["tps"], "baseline_tps": base["tps"], "ratio": ratio,
                             "round": n, "round_ratios": [r for r, _ in sorted(pairs, key=lambda p: p[1])],
                             "engine_failed": sum(e["failed"] for e in engs.values()), "engine_p50_ms": eng["p50_ms"],
                             "baseline_p50_ms": base["p50_ms"]})
    return rows


def _default_backends() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_harness import postgres_bin_dir

    return "sqlite,postgres" if postgres_bin_dir() is not None else "sqlite"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--backends", default=None,
                        help="comma-separated: sqlite, postgres (default: both when PostgreSQL is installed)")
    parser.add_argument("--seconds", type=float, default=None, help="measured window per run (default: 20; quick 1.5)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole plan this many times; each figure is then the median round's "
                             "engine/baseline ratio (default: 1)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.seconds is not None:
        sizes = Sizes(sizes.accounts, sizes.connections, sizes.warmup_s, args.seconds)
    backends = [b.strip() for b in (args.backends or _default_backends()).split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))} (known: sqlite, postgres)")
    out = args.out or (RESULTS.with_suffix(".quick.json") if args.quick else RESULTS)
    load_before = os.getloadavg()
    results: dict[str, Any] = {"runs": [], "seed_s": {}}
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        for backend in backends:
            pg = None
            if backend == "postgres":
                sys.path.insert(0, str(ROOT / "tests"))
                from pg_harness import PostgresServer, debian_bin_dir

                pg = PostgresServer(debian_bin_dir()).start()  # Debian's 15, as published (not pgserver's 16)
            try:
                part = run(sizes, Path(tmp), backend, pg, rounds=max(1, args.rounds))
            finally:
                if pg is not None:
                    pg.close()
            results["runs"] += part["runs"]
            results["seed_s"][backend] = part["seed_s"]
    results["summary"] = _summary(results)
    results.update(sizes=sizes.__dict__, backends=backends, rounds=max(1, args.rounds),
                   python=platform.python_version(), cpus=os.cpu_count(),
                   load_before=load_before, load_after=os.getloadavg(),
                   all_conserved=all(r["conservation"]["ok"] for r in results["runs"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    for row in results["summary"]:
        print(f"{row['backend']:8} {row['transport']:4} alpha {row['alpha']:<3} x{row['connections']:<3} "
              f"engine {row['engine_tps']:7.0f} vs baseline {row['baseline_tps']:7.0f} TPS = {row['ratio']:.2f}x  "
              f"(engine failed {row['engine_failed']})"
              + (f"  rounds: {' '.join(f'{r:.2f}x' for r in row['round_ratios'])}" if len(row["round_ratios"]) > 1 else ""))
    print(f"conservation held in every run: {results['all_conserved']}   -> {out}")


if __name__ == "__main__":
    main()
