"""benchmarks/render_speed.py must not rot: --quick runs and ends with a parseable RESULT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "render_speed.py"


def test_quick_run_prints_a_well_formed_result_line():
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last[len("RESULT ") :])
    assert result["benchmark"] == "render_speed" and result["backend"] == "torch"
    assert {"cpu", "cpu_cores", "torch", "gsplat"} <= set(result["machine"])
    (row,) = result["results"]
    assert row["fps"] > 0 and row["peak_mem_mb"] >= 0 and 0 < row["coverage"] <= 1


def test_gsplat_on_cpu_is_refused_with_the_fix():
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "gsplat", "--device", "cpu", "--quick"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode != 0 and "needs --device cuda" in res.stderr
