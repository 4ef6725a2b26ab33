"""benchmarks/train_speed.py must not rot: --quick runs and ends with a well-formed RESULT."""

from __future__ import annotations

import pytest


def test_quick_run_prints_a_well_formed_result_line(load_script, result_line, capsys, tiny_dataset):
    script = load_script("train_speed")
    script.main(["--quick", "--threads", "1", "--data", f"tiny={tiny_dataset}"])
    result = result_line(capsys.readouterr().out)
    assert result["benchmark"] == "train_speed" and result["quick"] is True
    rows = {(r["stage"], r["config"]): r for r in result["results"]}
    assert set(rows) == {("s2g", "tiny"), ("subject", "tiny")}
    for r in rows.values():
        assert r["steps"] == 2 and r["data_dir"] == str(tiny_dataset)
        assert r["step_s"] > 0 and r["steps_per_s"] == pytest.approx(1.0 / r["step_s"])
        assert r["peak_mem_mb"] >= 0
    assert rows[("s2g", "tiny")]["phase"] is None
    assert rows[("subject", "tiny")]["phase"] == "dynamic"


def test_full_subject_on_cpu_is_reported_not_measured(load_script, result_line, capsys):
    script = load_script("train_speed")
    script.main(["--stages", "subject", "--configs", "full"])
    result = result_line(capsys.readouterr().out)
    (row,) = result["results"]
    assert row["config"] == "full" and row["skipped"].startswith("not measured")


def test_bad_data_argument_names_the_form(load_script, result_line, capsys):
    script = load_script("train_speed")
    with pytest.raises(SystemExit):
        script.main(["--quick", "--data", "tiny"])
    assert "NAME=DIR" in capsys.readouterr().err
