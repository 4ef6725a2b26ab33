"""Fixtures of the inference tests: a tiny untrained bundle and a short synthesized clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle of tiny untrained components on the built-in tiny rig (S2GNet's zero head
    perturbed so the geometry moves with the audio)."""
    from emotalk3d.inference.checkpoint import build_untrained_bundle

    return build_untrained_bundle(
        tmp_path_factory.mktemp("bundle") / "tiny", num_otf=200, perturb=2.0
    )


@pytest.fixture(scope="session")
def speech() -> np.ndarray:  # [S] float32, 16 kHz
    """About a second of synthesized speech (espeak-ng)."""
    from emotalk3d.data.synth.speech import espeak_available, synthesize

    if not espeak_available():
        pytest.skip(
            "libespeak-ng.so.1 is not installed (apt-get install libespeak-ng1, or make setup)"
        )

    return synthesize("Hello there.", "happy", 1.0).audio


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory, speech) -> Path:
    """`speech` written as a 16 kHz WAV file."""
    import soundfile as sf

    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    sf.write(path, speech, 16000)
    return path


@pytest.fixture(scope="session")
def talking_head(tiny_bundle):
    """The tiny bundle loaded (torch backend, CPU)."""
    from emotalk3d.inference.pipeline import TalkingHead

    return TalkingHead.from_checkpoints(tiny_bundle, backend="torch")
