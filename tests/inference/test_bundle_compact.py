"""Compact bundles: S2GNet's head factorised by truncated SVD, weights stored in float16."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from emotalk3d.geometry.s2gnet import S2GNet, compress_head, low_rank_factors
from emotalk3d.inference.checkpoint import cast_safetensors, load_bundle, save_bundle


def test_low_rank_factors_are_the_truncated_svd():
    torch.manual_seed(0)
    basis = torch.randn(40, 5) @ torch.randn(5, 12)  # rank 5 exactly  [40, 12]
    a, b = low_rank_factors(basis, 5)
    assert a.shape == (5, 12) and b.shape == (40, 5)
    torch.testing.assert_close(b @ a, basis, atol=1e-4, rtol=1e-4)
    noisy = basis + 0.01 * torch.randn(40, 12)
    a3, b3 = low_rank_factors(noisy, 3)
    u, s, vh = torch.linalg.svd(noisy.double())
    best = (u[:, :3] * s[:3]) @ vh[:3]  # Eckart-Young optimum
    torch.testing.assert_close((b3 @ a3).double(), best, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="rank must be in"):
        low_rank_factors(basis, 13)


def _net(head_rank=None) -> S2GNet:
    return S2GNet(num_points=30, audio_dim=8, hidden_size=16, head_rank=head_rank)


def test_factorised_head_starts_at_zero_and_compress_keeps_the_output():
    torch.manual_seed(0)
    feats = torch.randn(2, 20, 8)  # [B, T_a, D]
    tpl = torch.randn(2, 30, 3)  # [B, P, 3]
    emo, subj = torch.zeros(2, 9), torch.zeros(2, dtype=torch.long)
    fresh = _net(head_rank=4).eval()
    torch.testing.assert_close(
        fresh(feats, tpl, emo, subj, num_frames=10), tpl[:, None].expand(-1, 10, -1, -1)
    )

    net = _net().eval()
    with torch.no_grad():  # a "trained" head of rank 6
        net.head.weight.copy_(torch.randn(90, 6) @ torch.randn(6, 16))
        net.head.bias.normal_()
    ref = net(feats, tpl, emo, subj, num_frames=10)
    exact = compress_head(net, 6).eval()
    assert exact.head_rank == 6 and exact.config()["head_rank"] == 6
    torch.testing.assert_close(exact(feats, tpl, emo, subj, num_frames=10), ref, atol=1e-4, rtol=0)
    lossy = compress_head(net, 2).eval()
    assert (lossy(feats, tpl, emo, subj, num_frames=10) - ref).abs().max() > 1e-2
    with pytest.raises(ValueError, match="already factorised"):
        compress_head(exact, 3)


def test_cast_safetensors_keeps_integers_and_metadata(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"w": torch.randn(3, 4), "ids": torch.arange(5)}, str(path), metadata={"k": "v"})
    cast_safetensors(path, torch.float16)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"k": "v"}
        assert f.get_tensor("w").dtype == torch.float16
        assert f.get_tensor("ids").dtype == torch.int64


def test_float16_bundle_is_smaller_and_renders_like_float32(tiny_bundle, tmp_path, speech):
    full = load_bundle(tiny_bundle)
    half_dir = save_bundle(
        tmp_path / "half",
        full.s2g,
        full.extractor,
        full.heads,
        s2g_subjects=full.s2g_subjects,
        s2g_templates=full.s2g_templates,
        regions=full.regions,
        rig=full.rig,
        storage_dtype="float16",
    )
    manifest = json.loads((half_dir / "manifest.json").read_text())
    assert manifest["storage_dtype"] == "float16"
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*.safetensors"))  # noqa: E731
    assert size(half_dir) < 0.6 * size(tiny_bundle)
    half = load_bundle(half_dir)
    for module in (half.s2g, half.extractor, *half.heads.values()):
        assert all(p.dtype == torch.float32 for p in module.parameters())
    assert half.rig.neutral.dtype == np.float32

    from emotalk3d.inference.pipeline import TalkingHead

    a = TalkingHead(full, backend="torch")
    b = TalkingHead(half, backend="torch")
    audio = torch.from_numpy(speech)
    pa = a.geometry(audio, "happy", sample_rate=16000)  # [T, P, 3]
    pb = b.geometry(audio, "happy", sample_rate=16000)
    assert (pa - pb).norm(dim=-1).max() < 0.1  # mm: f16 weights move points by far less
    ia = a.render(a.gaussians(pa[:2], "happy"), a.cameras(0.0, 64))
    ib = b.render(b.gaussians(pa[:2], "happy"), b.cameras(0.0, 64))
    assert (ia - ib).abs().mean() < 2 / 255  # images in [0, 1]
