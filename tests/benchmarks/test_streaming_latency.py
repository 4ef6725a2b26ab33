"""benchmarks/streaming_latency.py must not rot: --quick runs and ends with a well-formed
RESULT."""

from __future__ import annotations


def test_quick_run_prints_a_well_formed_result_line(load_script, result_line, capsys):
    script = load_script("streaming_latency")
    script.main(["--quick", "--threads", "1", "--chunk", "0.2", "--lookahead", "0.2"])
    result = result_line(capsys.readouterr().out)
    assert result["benchmark"] == "streaming_latency" and result["quick"] is True
    assert (result["seconds"], result["chunk_seconds"], result["lookahead_seconds"]) == (
        1.2,
        0.2,
        0.2,
    )
    rows = {r["mode"]: r for r in result["results"]}
    assert set(rows) == {"geometry", "frames"} and rows["frames"]["resolution"] == 32
    for r in rows.values():
        assert r["frames"] == 30  # 1.2 s at 25 fps
        # chunks arrive in real time and a frame waits for 0.2 s of look-ahead, which
        # always lies in a later 0.2 s chunk: no frame can come out sooner than that chunk
        assert r["steady_median_ms"] >= 0 and r["max_ms"] >= r["steady_p90_ms"]
        assert r["first_frame_ms"] > 150
    assert result["budget"]["s2g_per_chunk_ms"] > 0 and result["budget"]["frame_ms"] > 0
    assert result["budget"]["frames_per_chunk"] == 5
    off = result["vs_offline"]
    assert off["clips"] >= 1 and 0 <= off["mean_mm"] <= off["max_mm"]
    assert off["offline_motion_max_mm"] > 0  # the tiny bundle's geometry moves with the audio


def test_percentile_interpolates(load_script):
    script = load_script("streaming_latency")
    assert script.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert script.percentile([5.0], 0.9) == 5.0
