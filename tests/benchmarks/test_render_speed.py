"""benchmarks/render_speed.py must not rot: --quick runs and ends with a parseable RESULT."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "render_speed.py"


@pytest.fixture(scope="module")
def render_speed():
    """The script as a module (in-process: no second torch import), threads restored after."""
    spec = importlib.util.spec_from_file_location("render_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)


def test_quick_run_prints_a_well_formed_result_line(render_speed, capsys):
    render_speed.main(["--quick", "--threads", "1"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last[len("RESULT ") :])
    assert result["benchmark"] == "render_speed" and result["backend"] == "torch"
    assert {"cpu", "cpu_cores", "torch", "gsplat"} <= set(result["machine"])
    assert result["quick"] is True and result["repeats"] == 2
    (row,) = result["results"]
    assert (row["n"], row["size"]) == (2_000, 64)  # what --quick configures
    assert row["fps"] > 0 and row["ms_per_frame"] == pytest.approx(1000.0 / row["fps"])
    # On CPU the peak is the RSS growth over the timed frames, which may round to 0 after
    # the warm-up frame allocated everything; so only non-negative is guaranteed.
    assert row["peak_mem_mb"] >= 0 and 0 < row["coverage"] <= 1
    # the subject's per-frame path: the tiny untrained bundle, unbatched and batched
    subject = result["subject"]
    assert subject["bundle"] == "untrained:builtin:tiny"
    assert [(r["size"], r["batch"]) for r in subject["results"]] == [(32, 1), (32, 2)]
    for r in subject["results"]:
        assert r["n"] > 4000  # the tiny rig's dense face Gaussians plus OTF copies
        assert r["fps"] == pytest.approx(1000.0 / r["ms_per_frame"])
        assert r["appearance_ms_per_frame"] > 0 and r["rasterize_ms_per_frame"] > 0
        assert r["peak_mem_mb"] >= 0


def test_gsplat_on_cpu_is_refused_with_the_fix(render_speed, capsys):
    with pytest.raises(SystemExit) as exc:
        render_speed.main(["--backend", "gsplat", "--device", "cpu", "--quick"])
    assert exc.value.code != 0
    assert "needs --device cuda" in capsys.readouterr().err


def test_quick_full_scale_subject_rows(render_speed, capsys):
    render_speed.main(["--quick", "--threads", "1", "--only", "subject", "--full-scale"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last[len("RESULT ") :])
    assert result["results"] == []  # --only subject: no rasterizer table
    rows = result["full_scale"]["results"]
    assert [(r["size"], r["batch"]) for r in rows] == [(32, 1), (32, 2)]
    # the tiny rig's dense face Gaussians plus 600 OTF Gaussians and their blended copies
    assert all(r["n"] > 4600 and r["fps"] > 0 for r in rows)
