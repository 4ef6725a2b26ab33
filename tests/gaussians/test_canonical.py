"""Canonical Gaussians: face set bound to the dense points, OTF set around the head."""

from __future__ import annotations

import math

import pytest
import torch

from emotalk3d.gaussians.canonical import (
    SH_C0,
    CanonicalGaussians,
    knn_log_scales,
    otf_bounds,
    rgb_to_sh0,
    sample_otf_points,
)
from emotalk3d.gaussians.completion import nearest_face_points


def face_cloud(n: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, 3, generator=g)
    return pts / pts.norm(dim=-1, keepdim=True) * torch.tensor([70.0, 90.0, 80.0])


def test_otf_points_in_box_and_away_from_face():
    face = face_cloud()
    lo, hi = otf_bounds(face)
    pts = sample_otf_points(500, face, lo, hi, min_face_distance=4.0, seed=3)
    assert pts.shape == (500, 3)
    assert torch.all(pts >= lo) and torch.all(pts <= hi)
    _, d = nearest_face_points(pts, face)
    assert float(d.min()) >= 4.0
    # the box reaches below the face (neck, shoulders) and is deterministic per seed
    assert float(lo[1]) < float(face[:, 1].min()) - 50
    assert torch.equal(pts, sample_otf_points(500, face, lo, hi, min_face_distance=4.0, seed=3))


def test_canonical_containers_and_shapes():
    face = face_cloud(100)
    g = CanonicalGaussians(face, num_otf=64, sh_degree=2)
    assert set(g.face.keys()) == {"offsets", "scales", "quats", "opacities", "sh0", "shN"}
    assert set(g.otf.keys()) == {"means", "scales", "quats", "opacities", "sh0", "shN"}
    assert g.face["shN"].shape == (100, 8, 3) and g.otf["sh0"].shape == (64, 1, 3)
    assert g.num_face == 100 and g.num_otf == 64
    assert torch.count_nonzero(g.face["offsets"]) == 0
    assert torch.allclose(torch.sigmoid(g.otf["opacities"]), torch.full((64,), 0.1))
    # no network weights inside the per-Gaussian containers
    assert all(p.shape[0] in (100, 64) for p in g.parameters())
    g.resize_otf(10)
    assert all(p.shape[0] == 10 for p in g.otf.values())


def test_knn_scales_and_sh0():
    pts = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [4.0, 0, 0], [6.0, 0, 0]])
    s = knn_log_scales(pts, k=1)
    assert torch.allclose(s, torch.full((4, 3), math.log(2.0)))
    rgb = torch.tensor([0.5, 1.0, 0.0])
    assert torch.allclose(SH_C0 * rgb_to_sh0(rgb) + 0.5, rgb)


def test_validation_messages():
    with pytest.raises(ValueError, match=r"face_points must have shape \[V, 3\]"):
        CanonicalGaussians(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="sh_degree"):
        CanonicalGaussians(face_cloud(10), sh_degree=4)
