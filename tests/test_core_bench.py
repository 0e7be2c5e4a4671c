"""The core benchmark runs end to end (`--quick` sizes). Shape only: no assertion on timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_core_quick_runs_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    done = subprocess.run([sys.executable, "-m", "bench.core", "--quick", "--out", str(out), "--dir", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "baseline (same run)" in done.stdout and str(out) in done.stdout
    report = json.loads(out.read_text())
    assert report["quick"] is True
    commits, query, counter = report["commits"], report["query_10_rows"], report["hot_counter"]
    assert commits["raw_aiosqlite_per_s"] > 0 and commits["engine_sequential_per_s"] > 0
    assert query["small"]["n"] == query["big"]["n"] > 0 and query["median_ratio_big_vs_small"] > 0
    assert counter["all_applied"] is True and counter["increments"] == 200
