"""Head completion and opacity blending equal their formulas (DESIGN.md §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotalk3d.gaussians.blend import (
    blend_selection,
    blend_weights,
    weighted_opacity_logit,
)
from emotalk3d.gaussians.completion import complete_motion, motion_decay, nearest_face_points
from emotalk3d.gaussians.model import GaussianHead


def grid_mesh(n: int = 6, size: float = 60.0):
    xs, ys = np.meshgrid(np.linspace(-size, size, n), np.linspace(-size, size, n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1).astype(np.float32)
    f = []
    for i in range(n - 1):
        for j in range(n - 1):
            a = i * n + j
            f += [[a, a + 1, a + n], [a + 1, a + n + 1, a + n]]
    uv = (v[:, :2] + size) / (2 * size)
    return v, np.array(f, dtype=np.int64), uv


def test_nearest_face_points_hand_made():
    face = torch.tensor([[0.0, 0, 0], [10.0, 0, 0], [0, 20.0, 0]])
    pts = torch.tensor([[1.0, 0, 0], [9.0, 0, 3.0], [0.0, 30.0, 0.0]])
    idx, dist = nearest_face_points(pts, face)
    assert idx.tolist() == [0, 1, 2]
    assert torch.allclose(dist, torch.tensor([1.0, math.sqrt(1 + 9), 10.0]))


def test_completion_formula():
    face_motion = torch.tensor([[[1.0, 2.0, 3.0], [0.0, -4.0, 0.0]]])  # [T=1, V=2, 3]
    nearest = torch.tensor([1, 0, 0])
    dist = torch.tensor([0.0, 10.0, 30.0])
    decay = motion_decay(dist, alpha=0.1)
    assert torch.allclose(decay, torch.exp(-0.1 * dist))
    move = complete_motion(face_motion, nearest, decay)
    assert move.shape == (1, 3, 3)
    assert torch.allclose(move[0, 0], torch.tensor([0.0, -4.0, 0.0]))
    assert torch.allclose(move[0, 1], torch.tensor([1.0, 2.0, 3.0]) * math.exp(-1.0))
    assert torch.allclose(move[0, 2], torch.tensor([1.0, 2.0, 3.0]) * math.exp(-3.0))


def test_blend_weight_formula():
    d = torch.tensor([0.0, 4.99, 5.0, 7.5, 10.0, 15.0, 40.0])
    w = blend_weights(d, d0=5.0, d_th=10.0)
    expected = torch.tensor([0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.0])
    assert torch.allclose(w, expected)
    can, dyn = blend_selection(w)
    assert can.tolist() == [3, 4, 5, 6]
    assert dyn.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="d_th"):
        blend_weights(d, d0=5.0, d_th=0.0)


def test_weighted_opacity_logit_is_exact():
    a = torch.linspace(-8, 8, 33, dtype=torch.float64, requires_grad=True)
    w = torch.rand(33, dtype=torch.float64) * 0.98 + 0.01
    out = weighted_opacity_logit(a, w)
    assert torch.allclose(torch.sigmoid(out), torch.sigmoid(a) * w, atol=1e-10)
    out.sum().backward()
    assert torch.isfinite(a.grad).all()
    assert torch.allclose(weighted_opacity_logit(a, torch.ones_like(w)), a, atol=1e-6)


def test_head_blend_weights_zero_on_face_and_formula_on_otf():
    v, f, uv = grid_mesh()
    head = GaussianHead(v, f, uv, num_otf=300, sh_degree=0, seed=1)
    # W_p of the face points themselves is 0: they are at distance 0 from the face.
    face = head.canonical_face_means()
    _, d_face = nearest_face_points(face, face)
    assert torch.all(blend_weights(d_face, head.d0, head.d_th) == 0)
    # OTF cache equals the formulas on its own distances.
    idx, dist = nearest_face_points(head.canonical.otf["means"], face)
    assert torch.equal(head.otf_nearest, idx)
    assert torch.allclose(head.otf_weight, ((dist - 5.0) / 10.0).clamp(0, 1))
    assert torch.allclose(head.otf_decay, torch.exp(-0.1 * dist))
    # Hand-placed OTF points at known distances.
    with torch.no_grad():
        head.canonical.otf["means"][:3] = torch.tensor(
            [[0.0, 0.0, 2.0], [0.0, 0.0, 10.0], [0.0, 0.0, 20.0]]
        )
    head.refresh_completion()
    assert torch.allclose(head.otf_weight[:3], torch.tensor([0.0, 0.5, 1.0]))


def test_frame_gaussians_completion_and_blending():
    v, f, uv = grid_mesh()
    head = GaussianHead(v, f, uv, num_otf=50, sh_degree=0, seed=2)
    with torch.no_grad():
        head.canonical.otf["means"][:3] = torch.tensor(
            [[0.0, 0.0, 2.0], [0.0, 0.0, 10.0], [0.0, 0.0, 20.0]]
        )
        head.canonical.otf["opacities"][:3] = torch.tensor([0.3, -0.7, 1.1])
    head.refresh_completion()
    pts = torch.as_tensor(v)[None].repeat(2, 1, 1)
    pts[1, :, 2] += 4.0  # the whole face moves 4 mm forward in frame 1
    fg = head.frame_gaussians(pts, torch.zeros(1, 9))
    V = head.num_face
    sel_d, sel_c = head.sel_dynamic.tolist(), head.sel_canonical.tolist()
    assert fg.means.shape[1] == V + len(sel_d) + len(sel_c)
    assert torch.all(fg.otf_ids[:V] == -1)
    # face Gaussians sit on the dense points
    assert torch.allclose(fg.means[1, :V], head.upsampler(pts[1]))
    sig = torch.sigmoid(fg.opacities[0])
    for k, w in zip(range(3), (0.0, 0.5, 1.0), strict=True):
        a = torch.sigmoid(head.canonical.otf["opacities"][k])
        pos = torch.nonzero(fg.otf_ids == k).flatten().tolist()
        dyn = [p for p in pos if p < V + len(sel_d)]
        can = [p for p in pos if p >= V + len(sel_d)]
        assert len(dyn) == (1 if w < 1 else 0) and len(can) == (1 if w > 0 else 0)
        d = float(head.otf_distance[k])
        for p in dyn:
            assert torch.allclose(sig[p], a * (1 - w), atol=1e-6)
            expected = head.canonical.otf["means"][k] + torch.tensor([0, 0, 4.0]) * math.exp(
                -0.1 * d
            )
            assert torch.allclose(fg.means[1, p], expected, atol=1e-4)
        for p in can:
            assert torch.allclose(sig[p], a * w, atol=1e-6)
            assert torch.allclose(fg.means[1, p], head.canonical.otf["means"][k])
    # ablations: no blending renders each OTF Gaussian once at full opacity
    fg2 = head.frame_gaussians(pts, torch.zeros(1, 9), use_blending=False)
    assert fg2.means.shape[1] == V + head.num_otf
    assert torch.allclose(fg2.opacities[0, V:], head.canonical.otf["opacities"])
    fg3 = head.frame_gaussians(pts, torch.zeros(1, 9), use_completion=False)
    assert torch.allclose(fg3.means[1, V:], fg3.means[0, V:])
