"""The benchmarks run end to end (`--quick` sizes). Completion only: no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_sync_quick_completes_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    done = subprocess.run([sys.executable, "-m", "bench.sync", "--quick", "--out", str(out), "--dir", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert {"invalidation", "fanout", "memory", "machine"} <= report.keys()


@pytest.mark.slow
def test_bench_cluster_quick_completes_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    done = subprocess.run([sys.executable, "-m", "bench.cluster", "--quick", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert {"commits", "hot_counter", "invalidation", "machine"} <= report.keys()
    assert {"cross_node_a_to_b", "same_node_postgres", "fan_out_3_nodes", "hot_counter_3_nodes"} <= \
        report["invalidation"].keys()


@pytest.mark.slow
def test_bench_transfer_inprocess_ab_runs_both_checkouts() -> None:
    # The same checkout on both sides: the A/B machinery end to end, with tiny runs.
    done = subprocess.run([sys.executable, "-m", "bench.transfer_inprocess", "--ab", str(REPO_ROOT), "--rounds", "1",
                           "--per-client", "2"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "this/other = " in done.stdout


@pytest.mark.slow
def test_bench_transfer_ab_serves_both_checkouts_beside_the_baseline() -> None:
    # The same checkout on both sides: two served engines and the baseline, tiny runs.
    done = subprocess.run([sys.executable, "-m", "bench.transfer_ab", str(REPO_ROOT), "--quick", "--rounds", "1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "round 0: baseline" in done.stdout
    for name in ("this ", "other"):
        assert any(line.startswith(name) and "x the baseline's" in line for line in done.stdout.splitlines()), \
            done.stdout


@pytest.mark.slow
def test_bench_transfer_inprocess_parts_prints_each_piece() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.transfer_inprocess", "--parts", "--per-client", "2"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 4 and all(" CPU-ms  " in line for line in lines), done.stdout
    assert lines[-1].endswith("the transfer: two reads, two patches, the commit")

def test_bench_transfer_quick_completes_conserves_and_writes_json(tmp_path: Path) -> None:
    """Both columns (SQLite, and PostgreSQL when installed): every run's conservation check held."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from pg_harness import postgres_bin_dir

    out = tmp_path / "transfer.json"
    done = subprocess.run([sys.executable, "-m", "bench.transfer", "--quick", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    expected = {"sqlite", "postgres"} if postgres_bin_dir() is not None else {"sqlite"}
    assert set(report["backends"]) == expected
    assert {r["backend"] for r in report["summary"]} == expected
    assert {r["server"] for r in report["runs"]} >= {"engine", "baseline"}
    assert report["all_conserved"] is True
    assert all(r["acknowledged"] > 0 for r in report["runs"])
    assert all(r["server_cpu_ms_per_transfer"] > 0 and r["load_cpu_ms_per_transfer"] > 0 for r in report["runs"])


def test_bench_transfer_rounds_compare_each_engine_run_with_its_own_rounds_baseline(tmp_path: Path) -> None:
    """--rounds 2: every figure's runs happen twice; its row is the median round's ratio (the lower
    of two), and lists both rounds' ratios, each an engine run over the same round's baseline."""
    out = tmp_path / "transfer.json"
    done = subprocess.run([sys.executable, "-m", "bench.transfer", "--quick", "--backends", "sqlite", "--rounds", "2",
                           "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["rounds"] == 2 and report["all_conserved"] is True
    runs = report["runs"]
    for row in report["summary"]:
        key = (row["transport"], row["alpha"], row["connections"])
        engine = {r["round"]: r["tps"] for r in runs
                  if r["server"] == "engine" and (r["transport"], r["alpha"], r["connections"]) == key}
        baseline = {r["round"]: r["tps"] for r in runs
                    if r["server"] == "baseline" and (r["alpha"], r["connections"]) == key[1:]}
        assert sorted(engine) == sorted(baseline) == [0, 1]
        assert row["round_ratios"] == [engine[n] / baseline[n] for n in (0, 1)]
        assert row["ratio"] == min(row["round_ratios"])
        assert row["engine_tps"] == engine[row["round"]] and row["baseline_tps"] == baseline[row["round"]]
