"""benchmarks/pipeline_speed.py must not rot: --quick runs and ends with a well-formed RESULT."""

from __future__ import annotations

import pytest


def test_quick_run_prints_a_well_formed_result_line(load_script, result_line, capsys):
    script = load_script("pipeline_speed")
    script.main(["--quick", "--threads", "1", "--memory-seconds", "3"])
    result = result_line(capsys.readouterr().out)
    assert result["benchmark"] == "pipeline_speed" and result["quick"] is True
    assert result["bundle"] == "untrained:builtin:tiny"
    assert (result["seconds"], result["resolution"], result["frames"]) == (1.0, 32, 25)
    stages = {r["stage"]: r for r in result["stages"]}
    assert set(stages) == set(script.STAGES)  # every stage of render.py's work is timed
    assert all(r["wall_s"] >= 0 and r["cpu_s"] >= 0 for r in stages.values())
    assert sum(r["wall_s"] for r in stages.values()) <= result["wall_s"] * 1.01
    # processing time per audio second, as render.py prints it
    assert result["real_time_factor"] == pytest.approx(result["wall_s"] / result["seconds"])
    assert result["real_time_factor_no_encode"] <= result["real_time_factor"]
    short, long = result["geometry_memory"]
    assert (short["frames"], long["frames"]) == (750, 75)  # 1.5 windows of 20 s, then 3 s
    assert long["rss_peak_mb"] > 0 and short["peak_mem_mb"] >= 0


def test_gsplat_on_cpu_is_refused_with_the_fix(load_script, result_line, capsys):
    script = load_script("pipeline_speed")
    with pytest.raises(SystemExit):
        script.main(["--quick", "--backend", "gsplat"])
    assert "needs --device cuda" in capsys.readouterr().err
