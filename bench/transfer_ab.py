"""The transfer workload served by this checkout's engine and by another's, each beside the raw-SQLite
baseline, alternating: does a change move the served figure?

    python -m bench.transfer_ab OTHER_DIR                   # HTTP, alpha 0, 3 rounds of 3 s + 10 s each
    python -m bench.transfer_ab OTHER_DIR --rounds 4 --transport ws --alpha 1.5
    python -m bench.transfer_ab OTHER_DIR --quick --rounds 1    # seconds; what tests/test_bench_smoke.py runs

Both engines and the baseline run at once (100 000 accounts each, bench.transfer's apps, load
generator and sizes except the shorter windows); every round runs the baseline, then the two
engines in an order that rotates from round to round, so drift and order hit both alike. Prints
every run, then each engine's mean TPS, its ratio to the baseline's mean and its server CPU per
transfer. Nothing here asserts on time; no results file (bench.transfer writes the published one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench import transfer as bt


def _engine(name: str, checkout: Path, workdir: Path, accounts: int) -> bt.Server:
    server = bt.Server(name, [sys.executable, "-m", "engine", "serve", "--app", str(checkout / "bench" / "transfer_app"),
                              "--db", str(workdir / f"{name}.sqlite3"), "--port", "0", "--site-port", "0"],
                       {"CONVEX_ADMIN_KEY": bt.ADMIN_KEY, "PYTHONUNBUFFERED": "1"}, workdir / f"{name}.log",
                       cwd=checkout)
    bt.seed(server, accounts)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout (its engine and bench/transfer_app)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transport", choices=("http", "ws"), default="http")
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per run (after 3 s warm-up)")
    parser.add_argument("--quick", action="store_true", help="bench.transfer's --quick sizes (seconds; a smoke test)")
    args = parser.parse_args(argv)
    sizes = bt.QUICK if args.quick else bt.Sizes(accounts=bt.FULL.accounts, connections=bt.FULL.connections,
                                                 warmup_s=3, measure_s=args.seconds)
    with tempfile.TemporaryDirectory(prefix="bench-transfer-ab-") as tmp:
        workdir = Path(tmp)
        baseline = bt.Server("baseline", [sys.executable, "-m", "bench.transfer_baseline", "--db",
                                          str(workdir / "baseline.sqlite3"), "--accounts", str(sizes.accounts),
                                          "--balance", str(bt.BALANCE)], {}, workdir / "baseline.log")
        engines: list[bt.Server] = []
        try:
            engines.append(_engine("this", bt.ROOT, workdir, sizes.accounts))
            engines.append(_engine("other", args.other.resolve(), workdir, sizes.accounts))
            tps: dict[str, list[float]] = {"baseline": [], "this": [], "other": []}
            cpu: dict[str, list[float]] = {"this": [], "other": []}
            for r in range(args.rounds):
                out = bt._load(baseline, "http", args.alpha, sizes.connections, sizes, seed=r + 1)
                tps["baseline"].append(out["tps"])
                print(f"round {r}: baseline {out['tps']:.0f} TPS", flush=True)
                for server in engines[r % 2:] + engines[:r % 2]:
                    out = bt._load(server, args.transport, args.alpha, sizes.connections, sizes, seed=r + 1)
                    tps[server.name].append(out["tps"])
                    cpu[server.name].append(out["server_cpu_ms_per_transfer"])
                    print(f"round {r}: {server.name:5} {out['tps']:.0f} TPS, {out['server_cpu_ms_per_transfer']:.3f} "
                          f"CPU-ms per transfer, failed {out['failed']}", flush=True)
        finally:
            for server in engines:
                server.stop()
            baseline.stop()
    base = statistics.mean(tps["baseline"])
    for name in ("this", "other"):
        mean = statistics.mean(tps[name])
        print(f"{name:5} {mean:.0f} TPS = {mean / base:.2f}x the baseline's {base:.0f}, "
              f"{statistics.mean(cpu[name]):.3f} CPU-ms per transfer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
