"""The benchmarks' CUDA paths (gsplat backend, synchronised timing) in --quick mode; skipped
without CUDA, which is every CPU-only machine."""

from __future__ import annotations

import pytest
import torch

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (gsplat's rasterizer is CUDA-only)"
)


@needs_cuda
@pytest.mark.parametrize(
    "name, args",
    [
        ("render_speed", ["--quick", "--backend", "gsplat", "--device", "cuda"]),
        ("pipeline_speed", ["--quick", "--backend", "gsplat", "--device", "cuda"]),
        ("streaming_latency", ["--quick", "--backend", "gsplat", "--device", "cuda"]),
    ],
)
def test_quick_cuda_run_prints_a_well_formed_result_line(
    load_script, result_line, capsys, name, args
):
    load_script(name).main(args)
    result = result_line(capsys.readouterr().out)
    assert result["benchmark"] == name and result["device"] == "cuda"
    assert result["machine"]["gpu"]  # the GPU's name is stated
