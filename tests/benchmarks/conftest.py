"""Load a benchmark script as a module (in-process: no second torch import)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def load_script():
    """`load_script("pipeline_speed")` -> the module; torch's thread count restored after."""
    threads = torch.get_num_threads()

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    torch.set_num_threads(threads)


def _result_line(out: str) -> dict:
    last = out.strip().splitlines()[-1]
    assert last.startswith("RESULT "), f"the last line is not a RESULT line: {last!r}"
    result = json.loads(last[len("RESULT ") :])
    # every RESULT states the machine it ran on
    assert {"cpu", "cpu_cores", "gpu", "torch", "gsplat", "torch_threads"} <= set(result["machine"])
    return result


@pytest.fixture
def result_line():
    """`result_line(stdout)` -> the parsed `RESULT {json}` that must end a benchmark's output
    (and must state the machine)."""
    return _result_line
