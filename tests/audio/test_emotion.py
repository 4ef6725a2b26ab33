"""EmotionExtractor: shapes, padding, save/load, predict, prosody features."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Wav2Vec2Model

from emotalk3d.audio.emotion import (
    EmotionExtractor,
    EmotionOutput,
    prosody_frames,
    prosody_stats,
)
from emotalk3d.constants import EMOTIONS


def _voice(seconds: float, f0: float, amp: float = 0.3, seed: int = 0) -> torch.Tensor:  # [S]
    """A crude voiced sound: harmonics of f0 with a slow loudness envelope, plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16000)) / 16000
    wave = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 6))
    env = 0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t)
    return amp * env * wave / 2 + 0.002 * torch.randn(t.shape, generator=g)


def test_output_shapes_and_ranges():
    torch.manual_seed(0)
    model = EmotionExtractor(size="tiny").eval()
    audio = torch.stack([_voice(0.8, 120), _voice(0.8, 220, seed=1)])
    out = model(audio)
    assert isinstance(out, EmotionOutput)
    assert out.logits.shape == (2, 8) and out.intensity.shape == (2,)
    assert torch.all((out.intensity > 0) & (out.intensity < 1))
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("prosody", [True, False])
def test_padded_batch_equals_single_clips(prosody):
    torch.manual_seed(1)
    model = EmotionExtractor(size="tiny", prosody=prosody).eval()
    a, b = _voice(1.0, 150, seed=2), _voice(0.55, 260, amp=0.1, seed=3)
    batch = torch.zeros(2, a.numel())
    batch[0], batch[1, : b.numel()] = a, b
    batch[1, b.numel() :] = 0.7  # garbage in the padding must not matter
    with torch.no_grad():
        by_len = model(batch, lengths=torch.tensor([a.numel(), b.numel()]))
        mask = torch.zeros_like(batch, dtype=torch.long)
        mask[0], mask[1, : b.numel()] = 1, 1
        by_mask = model(batch, attention_mask=mask)
        one_a, one_b = model(a[None]), model(b[None])
    for out in (by_len, by_mask):
        assert torch.allclose(out.logits[0], one_a.logits[0], atol=1e-5)
        assert torch.allclose(out.logits[1], one_b.logits[0], atol=1e-5)
        assert torch.allclose(out.intensity[1], one_b.intensity[0], atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(2)
    model = EmotionExtractor(size="tiny", head_dim=16).eval()
    with torch.no_grad():  # make the head non-trivial
        for p in model.classifier.parameters():
            p.normal_()
    model.save_pretrained(tmp_path / "emo")
    loaded = EmotionExtractor(pretrained=str(tmp_path / "emo")).eval()
    assert loaded.head_dim == 16
    audio = _voice(0.7, 180)[None]
    with torch.no_grad():
        want, got = model(audio), loaded(audio)
    assert torch.equal(want.logits, got.logits) and torch.equal(want.intensity, got.intensity)
    # the backbone part is a plain HF wav2vec2 folder
    backbone = Wav2Vec2Model.from_pretrained(tmp_path / "emo")
    assert torch.equal(
        backbone.encoder.layers[0].attention.q_proj.weight,
        model.backbone.encoder.layers[0].attention.q_proj.weight,
    )
    # a plain backbone folder gets a fresh head and a frozen CNN (fine-tuning default)
    fresh = EmotionExtractor(pretrained=str(tmp_path / "emo"), head_dim=8)
    assert fresh.head_dim == 16  # the saved settings win for a folder written by us
    bare = tmp_path / "bare"
    model.backbone.save_pretrained(bare)
    plain = EmotionExtractor(pretrained=str(bare), head_dim=8)
    assert plain.head_dim == 8
    assert not any(p.requires_grad for p in plain.backbone.feature_extractor.parameters())
    assert all(p.requires_grad for p in plain.backbone.encoder.parameters())


def test_predict_returns_a_valid_emotion():
    torch.manual_seed(3)
    model = EmotionExtractor(size="tiny").train()
    emotion, intensity, probs = model.predict(_voice(0.6, 200))
    assert emotion in EMOTIONS
    assert 0.0 <= intensity <= 1.0
    assert probs.shape == (8,) and abs(float(probs.sum()) - 1.0) < 1e-5
    assert EMOTIONS[int(probs.argmax())] == emotion
    assert model.training  # predict restores the mode
    with pytest.raises(ValueError, match=r"one clip \[S\]"):
        model.predict(torch.zeros(1, 16000))


def test_bad_inputs_are_rejected():
    model = EmotionExtractor(size="tiny")
    with pytest.raises(ValueError, match="at least 400 samples"):
        model(torch.zeros(1, 300))
    with pytest.raises(ValueError, match="lengths must lie"):
        model(torch.zeros(2, 800), lengths=torch.tensor([800, 900]))
    with pytest.raises(ValueError, match="not both"):
        model(torch.zeros(1, 800), lengths=torch.tensor([800]), attention_mask=torch.ones(1, 800))


def test_prosody_features_track_pitch_and_loudness():
    low, high = _voice(1.0, 110), _voice(1.0, 220, amp=0.03)
    _, log2_f0, voicing = prosody_frames(torch.stack([low, high]))
    voiced = voicing > 0.5
    assert voiced.float().mean() > 0.9
    assert abs(2 ** log2_f0[0][voiced[0]].median().item() - 110) < 5
    assert abs(2 ** log2_f0[1][voiced[1]].median().item() - 220) < 10
    mask = torch.ones(2, log2_f0.shape[1], dtype=torch.bool)
    stats = prosody_stats(torch.stack([low, high]), mask)
    assert stats.shape == (2, 7)
    assert stats[0, 0] - stats[1, 0] > 0.9  # 20 dB louder -> +1 in the scaled loudness
    assert abs((stats[1, 2] - stats[0, 2]).item() - 1.0) < 0.1  # one octave higher
    # noise is unvoiced
    _, _, v_noise = prosody_frames(0.1 * torch.randn(1, 16000))
    assert (v_noise > 0.5).float().mean() < 0.1


def test_small_model_learns_a_prosodic_contrast_quickly():
    """A few optimiser steps separate a loud low voice from a quiet high one."""
    torch.manual_seed(4)
    model = EmotionExtractor(size="tiny")
    audio = torch.stack(
        [_voice(0.3, 100 + 10 * i, amp=0.4, seed=i) for i in range(3)]
        + [_voice(0.3, 250 + 10 * i, amp=0.05, seed=9 + i) for i in range(3)]
    )
    labels = torch.tensor([1] * 3 + [6] * 3)  # angry vs sad
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        out = model(audio)
        loss = torch.nn.functional.cross_entropy(out.logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_training_mode_differs_from_eval_only_by_dropout(size):
    """Issue 3: SpecAugment's masked frames (mask_time_prob) acted as query tokens the head
    relied on, so the trained extractor scored 73% in train mode and 23% in eval mode. With
    dropout off, training-mode outputs must equal eval-mode ones."""
    torch.manual_seed(0)
    model = EmotionExtractor(size=size, dropout=0.0)
    assert model.backbone.config.mask_time_prob == 0.0
    assert model.backbone.config.mask_feature_prob == 0.0
    audio = torch.stack([_voice(1.0, 120), _voice(1.0, 220, seed=1)])  # [2, S]
    lengths = torch.tensor([16000, 12000])
    with torch.no_grad():
        expected = model.eval()(audio, lengths).logits  # [2, 8]
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.eval()
        got = model(audio, lengths).logits  # [2, 8]
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-3)  # kernels differ slightly
