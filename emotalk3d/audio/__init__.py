"""Audio stage (DESIGN.md section 1): loading, HuBERT features, emotion extraction.

Imports are light: ``emotalk3d.audio.load`` needs no transformers; the model modules are
imported on first use of their names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emotalk3d.audio.load import (
    MOTION_FPS,
    SAMPLE_RATE,
    AudioError,
    iter_audio_chunks,
    load_audio,
    num_motion_frames,
    prepare_audio,
)

if TYPE_CHECKING:
    from emotalk3d.audio.emotion import EmotionExtractor, EmotionOutput, EmotionPrediction
    from emotalk3d.audio.hubert import HubertEncoder, PretrainedNotAvailableError

_LAZY = {
    "HubertEncoder": "emotalk3d.audio.hubert",
    "PretrainedNotAvailableError": "emotalk3d.audio.hubert",
    "EmotionExtractor": "emotalk3d.audio.emotion",
    "EmotionOutput": "emotalk3d.audio.emotion",
    "EmotionPrediction": "emotalk3d.audio.emotion",
}

__all__ = [
    "MOTION_FPS",
    "SAMPLE_RATE",
    "AudioError",
    "EmotionExtractor",
    "EmotionOutput",
    "EmotionPrediction",
    "HubertEncoder",
    "PretrainedNotAvailableError",
    "iter_audio_chunks",
    "load_audio",
    "num_motion_frames",
    "prepare_audio",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emotalk3d.audio' has no attribute {name!r}")
