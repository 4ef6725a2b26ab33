"""EmotionExtractor: shapes, padding, save/load, predict, prosody features."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import Wav2Vec2Model

from emotalk3d.audio.emotion import (
    NUM_EXTRA_PROSODY_STATS,
    EmotionExtractor,
    EmotionOutput,
    extra_prosody_stats,
    num_prosody_stats,
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


def _sweep(seconds: float, f_start: float, f_end: float, amp: float = 0.3) -> torch.Tensor:  # [S]
    """A harmonic tone whose pitch glides from f_start to f_end (Hz)."""
    t = torch.arange(int(seconds * 16000)) / 16000
    f = f_start + (f_end - f_start) * t / seconds
    phase = 2 * math.pi * torch.cumsum(f, 0) / 16000
    return amp * sum(torch.sin(k * phase) / k for k in range(1, 6)) / 2


def _extra(audio: torch.Tensor) -> torch.Tensor:  # [B, S] -> [B, 16]
    frames = (audio.shape[1] - 400) // 320 + 1
    return extra_prosody_stats(audio, torch.ones(audio.shape[0], frames, dtype=torch.bool))


def test_extra_prosody_stats_measure_their_cues():
    """Issue 3: version-2 statistics (tilt, pauses, tremolo, pitch percentiles, terminal
    contour, loudness) each move with the cue they name."""
    base = _voice(2.0, 150, seed=5)
    t = torch.arange(base.numel()) / 16000
    trembling = base * (1 + 0.6 * torch.sin(2 * math.pi * 6.5 * t)) / 1.6
    slow = base * (1 + 0.6 * torch.sin(2 * math.pi * 2.0 * t)) / 1.6
    bright = base + 0.05 * torch.sin(2 * math.pi * 3000 * t)
    gappy = base.clone()
    gappy[8000:16000] = 0.0  # half a second of silence inside
    rising = _sweep(2.0, 120, 240)
    falling = _sweep(2.0, 240, 120)
    quiet = 0.1 * base
    stats = _extra(torch.stack([base, trembling, slow, bright, gappy, rising, falling, quiet]))
    assert stats.shape == (8, NUM_EXTRA_PROSODY_STATS) and torch.isfinite(stats).all()
    TILT, PAUSE, INNER, TREMOLO, P10, P50, P90, TERMINAL, E50 = 0, 2, 3, 5, 8, 9, 10, 12, 13
    assert stats[3, TILT] > stats[0, TILT] + 3  # energy above 1.5 kHz
    assert stats[4, PAUSE] > stats[0, PAUSE] + 0.15 and stats[4, INNER] > 0.2
    assert stats[1, TREMOLO] > stats[2, TREMOLO] + 1.0  # 6.5 Hz vs 2 Hz modulation
    assert abs(2 ** stats[0, P50].item() - 150) < 8
    assert stats[5, P90] - stats[5, P10] > 0.6  # an octave glide spans most of an octave
    assert stats[5, TERMINAL] > 0.2 and stats[6, TERMINAL] < -0.2
    assert abs((stats[0, E50] - stats[7, E50]).item() - 20.0) < 1.0  # 10x amplitude = 20 dB


def test_extra_prosody_stats_ignore_padding():
    a, b = _voice(1.2, 140, seed=6), _voice(0.7, 210, amp=0.1, seed=7)
    batch = torch.zeros(2, a.numel())
    batch[0], batch[1, : b.numel()] = a, b
    mask = torch.zeros(2, (a.numel() - 400) // 320 + 1, dtype=torch.bool)
    mask[0] = True
    mask[1, : (b.numel() - 400) // 320 + 1] = True
    together = extra_prosody_stats(batch, mask)
    torch.testing.assert_close(together[0], _extra(a[None])[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together[1], _extra(b[None])[0], atol=1e-4, rtol=1e-4)


def test_prosody_versions_and_old_folders(tmp_path):
    """Folders saved before version 2 (no prosody_version setting) load as version 1."""
    torch.manual_seed(5)
    v2 = EmotionExtractor(size="tiny", head_dim=16)
    assert v2.prosody_version == 2 and v2.prosody_mean.numel() == num_prosody_stats(2) == 23
    old = EmotionExtractor(size="tiny", head_dim=16, prosody_version=1).eval()
    assert old.head[1].in_features == 2 * 32 + 7
    old.save_pretrained(tmp_path / "old")
    settings_file = tmp_path / "old" / "emotion_extractor.json"
    settings = json.loads(settings_file.read_text())
    del settings["prosody_version"], settings["prosody_head_dim"]  # as written before
    settings_file.write_text(json.dumps(settings))
    loaded = EmotionExtractor(pretrained=str(tmp_path / "old")).eval()
    assert loaded.prosody_version == 1 and loaded.prosody_branch is None
    audio = _voice(0.7, 180)[None]
    with torch.no_grad():
        assert torch.equal(old(audio).logits, loaded(audio).logits)
    with pytest.raises(ValueError, match="prosody-feature version 3"):
        EmotionExtractor(size="tiny", prosody_version=3)


def test_prosody_branch_round_trip(tmp_path):
    torch.manual_seed(6)
    model = EmotionExtractor(size="tiny", head_dim=16, prosody_head_dim=8).eval()
    with torch.no_grad():
        for p in model.prosody_branch.parameters():
            p.normal_()
    model.save_pretrained(tmp_path / "emo")
    loaded = EmotionExtractor(pretrained=str(tmp_path / "emo")).eval()
    assert loaded.prosody_head_dim == 8
    audio = _voice(0.7, 180)[None]
    with torch.no_grad():
        want = model(audio).logits
        assert torch.equal(want, loaded(audio).logits)
        # the branch's logits are added: removing it changes the prediction
        model.prosody_branch = None
        assert not torch.allclose(want, model(audio).logits)


def test_backbone_dropout_zeroes_the_transformer_summary_in_training_only():
    torch.manual_seed(7)
    model = EmotionExtractor(size="tiny", dropout=0.0, backbone_dropout=0.99)
    audio = torch.stack([_voice(0.8, 120), _voice(0.8, 220, seed=1)])  # [2, S]
    with torch.no_grad():
        model.eval()
        alone = model(audio, use_backbone=False).logits  # [2, 8]
        full = model(audio).logits
        assert not torch.allclose(alone, full)  # the transformer summary matters in eval
        model.train()
        torch.manual_seed(0)  # rand < 0.99 for both clips with this seed
        dropped = model(audio).logits
    torch.testing.assert_close(dropped, alone)
    with pytest.raises(ValueError, match="backbone_dropout"):
        EmotionExtractor(size="tiny", backbone_dropout=1.0)
