"""Shared fixtures: the ICT model path (when ../shared has it) and a tiny synthetic dataset."""

from __future__ import annotations

import os

# Before any test module imports torch (see emotalk3d/__init__.py for the measurement).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ict_path() -> Path:
    """Path of the ICT Face Model Light archive; skips when it is not beside the checkout."""
    from emotalk3d.geometry.rig import find_ict_model

    path = find_ict_model()
    if path is None:
        pytest.skip("ICT Face Model Light not found (../shared/assets or $EMOTALK3D_ICT_MODEL)")
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A tiny built-in-rig dataset, generated once per test session."""
    from emotalk3d.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip(
            "libespeak-ng.so.1 is not installed (apt-get install libespeak-ng1, or make setup)"
        )

    from emotalk3d.data.synth.generate import generate_dataset

    out = tmp_path_factory.mktemp("tiny_dataset")
    generate_dataset(out, rig="builtin", size="tiny", subjects=1, seed=0, progress=False)
    return out
