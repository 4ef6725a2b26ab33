"""The emotion vector of DESIGN.md section 2 and the shared name lists."""

from __future__ import annotations

import pytest
import torch

from emotalk3d.constants import (
    ARKIT_NAMES,
    EMOTION_DIM,
    EMOTIONS,
    check_emotion,
    emotion_mix_vector,
    emotion_vector,
)


def test_emotion_vector_is_scaled_one_hot_plus_intensity():
    vec = emotion_vector("angry", 0.5)
    expected = torch.zeros(EMOTION_DIM)
    expected[EMOTIONS.index("angry")] = 0.5
    expected[-1] = 0.5
    assert torch.equal(vec, expected)


def test_neutral_is_the_zero_vector():
    assert torch.equal(emotion_vector("neutral", 0.0), torch.zeros(EMOTION_DIM))


def test_mix_keeps_each_weight_and_the_largest_as_intensity():
    vec = emotion_mix_vector({"happy": 0.7, "surprised": 0.3})
    assert vec[EMOTIONS.index("happy")] == pytest.approx(0.7)
    assert vec[EMOTIONS.index("surprised")] == pytest.approx(0.3)
    assert vec[-1] == pytest.approx(0.7)
    assert vec.sum() == pytest.approx(1.7)


def test_unknown_emotion_lists_the_valid_ones():
    with pytest.raises(ValueError, match="angry, contempt"):
        check_emotion("furious")


def test_intensity_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        emotion_vector("sad", 1.5)


def test_arkit_names_are_52_unique():
    assert len(set(ARKIT_NAMES)) == 52
