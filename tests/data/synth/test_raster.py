"""The independent triangle rasterizer: coverage, occlusion, perspective-correct barycentrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d.data.synth.raster import rasterize, shade
from emotalk3d.render.cameras import arc_cameras, intrinsics, stack_cameras

W, H = 24, 20
F_PX = 100.0
K = intrinsics(F_PX, F_PX, 0.0, 0.0)  # principal point at the top-left corner: u = f x / z
IDENTITY = np.eye(4)


def _lift(uv: np.ndarray, z: float) -> np.ndarray:  # [N, 2] pixels -> [N, 3] camera points
    """Camera-space points at depth z that project to the pixel coordinates uv."""
    return np.concatenate([uv * z / F_PX, np.full((len(uv), 1), z)], 1)


def test_known_triangle_covers_exactly_the_pixels_whose_centres_are_inside():
    # right triangle (2, 3), (14, 3), (2, 15) in pixel coordinates: inside means
    # u >= 2, v >= 3, u + v <= 17 for the pixel centre (u, v) = (j + 0.5, i + 0.5)
    uv = np.array([[2.0, 3.0], [14.0, 3.0], [2.0, 15.0]])
    verts = _lift(uv, 500.0)
    frags = rasterize(verts, [[0, 1, 2]], IDENTITY, K, W, H)
    i, j = np.mgrid[0:H, 0:W]
    u, v = j + 0.5, i + 0.5
    expected = (u >= 2) & (v >= 3) & (u + v <= 17)
    assert expected.sum() == 78  # hand count: 12 + 11 + ... + 1
    np.testing.assert_array_equal(frags.mask.numpy(), expected)
    np.testing.assert_array_equal(frags.tri_id.numpy()[expected], 0)
    np.testing.assert_allclose(frags.depth.numpy()[expected], 500.0, rtol=1e-6)
    assert np.isinf(frags.depth.numpy()[~expected]).all()
    # both windings cover the same pixels; culling keeps only the front-facing one
    back = rasterize(verts, [[0, 2, 1]], IDENTITY, K, W, H)
    np.testing.assert_array_equal(back.mask.numpy(), expected)
    culled = [rasterize(verts, t, IDENTITY, K, W, H, cull_backfaces=True).mask.sum() for t in
              ([[0, 1, 2]], [[0, 2, 1]])]  # fmt: skip
    assert sorted(int(c) for c in culled) == [0, 78]


def test_nearer_triangle_occludes_and_order_does_not_matter():
    big = _lift(np.array([[0.0, 0.0], [W * 2.0, 0.0], [0.0, H * 2.0]]), 800.0)  # fills image
    small = _lift(np.array([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0]]), 300.0)
    verts = np.concatenate([big, small])
    a = rasterize(verts, [[0, 1, 2], [3, 4, 5]], IDENTITY, K, W, H)
    b = rasterize(verts, [[3, 4, 5], [0, 1, 2]], IDENTITY, K, W, H)
    near_px = a.tri_id.numpy() == 1
    assert near_px.sum() > 20
    np.testing.assert_allclose(a.depth.numpy()[near_px], 300.0, rtol=1e-6)
    np.testing.assert_allclose(a.depth.numpy()[~near_px], 800.0, rtol=1e-6)
    # the same image with the triangle order reversed (ids swap)
    np.testing.assert_array_equal(b.tri_id.numpy(), 1 - a.tri_id.numpy())
    np.testing.assert_array_equal(a.depth.numpy(), b.depth.numpy())
    # chunking (one triangle per chunk) does not change the result
    c = rasterize(verts, [[0, 1, 2], [3, 4, 5]], IDENTITY, K, W, H, chunk_size=1)
    np.testing.assert_array_equal(c.tri_id.numpy(), a.tri_id.numpy())
    np.testing.assert_array_equal(c.bary.numpy(), a.bary.numpy())


def test_perspective_correct_barycentrics_interpolate_a_slanted_plane_exactly():
    # a triangle slanted in depth: vertices at z = 200, 400, 900
    verts = np.array([[-100.0, -80.0, 200.0], [150.0, -40.0, 400.0], [-60.0, 260.0, 900.0]])
    k = intrinsics(F_PX, F_PX, W / 2, H / 2)
    frags = rasterize(verts, [[0, 1, 2]], IDENTITY, k, W, H)
    m = frags.mask.numpy()
    assert m.sum() > 30
    # interpolating camera-space positions gives the 3-D point seen through each pixel centre
    pos = shade(frags, [[0, 1, 2]], torch.tensor(verts, dtype=torch.float64)).numpy()[m]
    i, j = np.nonzero(m)
    ray = np.stack([(j + 0.5 - W / 2) / F_PX, (i + 0.5 - H / 2) / F_PX, np.ones_like(i)], 1)
    normal = np.cross(verts[1] - verts[0], verts[2] - verts[0])
    t = (normal @ verts[0]) / (ray @ normal)  # ray-plane intersection depth
    np.testing.assert_allclose(frags.depth.numpy()[m], t, rtol=1e-5)
    np.testing.assert_allclose(pos, ray * t[:, None], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(frags.bary.numpy()[m].sum(1), 1.0, atol=1e-6)


def test_triangles_behind_the_camera_are_dropped():
    front = _lift(np.array([[2.0, 2.0], [20.0, 2.0], [2.0, 18.0]]), 500.0)
    behind = front * np.array([1.0, 1.0, -1.0])  # mirrored behind the camera
    straddle = np.concatenate([front[:2], behind[2:]])
    for verts in (behind, straddle):
        assert not rasterize(verts, [[0, 1, 2]], IDENTITY, K, W, H).mask.any()


def _sphere(r: float = 100.0, nlat: int = 30, nlon: int = 48):  # ([P, 3], [F, 3])
    th = np.linspace(0, np.pi, nlat + 1)
    ph = np.linspace(0, 2 * np.pi, nlon, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    v = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    i, j = np.mgrid[0:nlat, 0:nlon]
    a, b = i * nlon + j, i * nlon + (j + 1) % nlon
    c, d = a + nlon, b + nlon
    f = np.concatenate([np.stack([a, c, b], -1), np.stack([b, c, d], -1)]).reshape(-1, 3)
    return r * v, f


def test_batched_cameras_match_single_camera_calls_and_sphere_area():
    v, f = _sphere()
    viewmats, Ks, w, h = stack_cameras(arc_cameras(3, width=64))
    batch = rasterize(v, f, viewmats, Ks, w, h)
    for c in range(3):
        one = rasterize(v, f, viewmats[c], Ks[c], w, h)
        np.testing.assert_array_equal(batch.tri_id[c].numpy(), one.tri_id.numpy())
    # a sphere's silhouette is a disk of radius f tan(asin(r / d)) pixels
    fpx = Ks[0, 1, 1]
    r_px = fpx * np.tan(np.arcsin(100.0 / 650.0))
    assert batch.mask[1].sum().item() == pytest.approx(np.pi * r_px**2, rel=0.05)
    # the nearest depth is the sphere's front: distance - radius
    assert batch.depth[1].min().item() == pytest.approx(550.0, abs=1.0)


def test_invalid_inputs_are_rejected_with_named_shapes():
    with pytest.raises(ValueError, match="faces"):
        rasterize(np.zeros((3, 3)), [[0, 1, 5]], IDENTITY, K, W, H)
    with pytest.raises(ValueError, match="vertices"):
        rasterize(np.zeros((3, 2)), [[0, 1, 2]], IDENTITY, K, W, H)
