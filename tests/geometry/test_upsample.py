"""The 4x midpoint-subdivision operator against its explicit-loop twin."""

from __future__ import annotations

import pytest
import torch

from emotalk3d.geometry.upsample import (
    Upsampler,
    subdivide,
    unique_edges,
    upsample,
    upsample_reference,
)


def grid_mesh(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """An n x n grid of points in the z=0 plane, two triangles per cell (shuffled faces)."""
    ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    points = torch.stack([xs, ys, torch.zeros_like(xs)], dim=-1).reshape(-1, 3).double()
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, d], [a, d, c]]
    faces = torch.tensor(faces)[
        torch.randperm(2 * (n - 1) ** 2, generator=torch.Generator().manual_seed(0))
    ]
    return points, faces


def test_counts_and_rows_sum_to_one():
    points, faces = grid_mesh(4)
    P, F = points.shape[0], faces.shape[0]
    sub = subdivide(faces, P)
    # Euler: unique edges of a triangulated n x n grid = 3(n-1)^2 + 2(n-1).
    assert sub.edges.shape == (3 * 9 + 2 * 3, 2)
    assert sub.num_dense == P + sub.edges.shape[0]
    assert sub.faces.shape == (4 * F, 3)
    dense = sub.matrix.to_dense()
    torch.testing.assert_close(dense.sum(dim=1), torch.ones(sub.num_dense), rtol=0, atol=0)
    # about 4x points for a large closed-ish mesh; here at least 2x
    assert sub.num_dense > 2 * P


def test_original_points_kept_exactly_and_midpoints():
    points, faces = grid_mesh(5)
    points = points + 0.37 * torch.randn_like(points)
    sub = subdivide(faces, points.shape[0])
    dense = upsample(points, sub.matrix)
    P = points.shape[0]
    assert torch.equal(dense[:P], points)  # bit-exact identity rows
    for k, (i, j) in enumerate(sub.edges.tolist()):
        torch.testing.assert_close(dense[P + k], 0.5 * (points[i] + points[j]))


def test_matches_reference_twin_on_sequences_with_gradients():
    points, faces = grid_mesh(4)
    seq = (points + torch.randn(2, 3, *points.shape, dtype=torch.float64)).requires_grad_()
    sub = subdivide(faces, points.shape[0])
    fast = upsample(seq, sub.matrix)
    ref = upsample_reference(seq, faces)
    assert fast.shape == ref.shape == (2, 3, sub.num_dense, 3)
    torch.testing.assert_close(fast, ref)
    w = torch.randn_like(fast)
    (g_fast,) = torch.autograd.grad((fast * w).sum(), seq)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), seq)
    torch.testing.assert_close(g_fast, g_ref)


def test_subdivided_faces_are_consistent():
    points, faces = grid_mesh(3)
    sub = subdivide(faces, points.shape[0])
    dense = upsample(points, sub.matrix)

    # z-normal of every triangle keeps the sign of its parent (same winding), area is 1/4.
    def signed_area(pts, f):
        a, b, c = pts[f[:, 0]], pts[f[:, 1]], pts[f[:, 2]]
        return 0.5 * torch.linalg.cross(b - a, c - a)[:, 2]

    parent = signed_area(points, faces)
    child = signed_area(dense, sub.faces).reshape(4, -1)
    torch.testing.assert_close(child, parent.expand(4, -1) / 4)
    # every edge of the subdivided mesh is half an original edge or joins two midpoints
    edges2, _ = unique_edges(sub.faces)
    assert edges2.shape[0] == 2 * sub.edges.shape[0] + 3 * faces.shape[0]


def test_uvs_and_regions():
    points, faces = grid_mesh(3)
    P = points.shape[0]
    uvs = points[:, :2].float() / 2
    region = torch.zeros(P, dtype=torch.bool)
    region[[0, 1]] = True  # the edge (0, 1) exists; (0, 4) or (1, 4) also join a region point
    sub = subdivide(faces, P, uvs=uvs, regions={"lips": region})
    assert sub.uvs.shape == (sub.num_dense, 2)
    for k, (i, j) in enumerate(sub.edges.tolist()):
        torch.testing.assert_close(sub.uvs[P + k], 0.5 * (uvs[i] + uvs[j]))
        assert bool(sub.regions["lips"][P + k]) == (bool(region[i]) and bool(region[j]))
    assert int(sub.regions["lips"].sum()) == 3  # points 0, 1 and the midpoint of (0, 1)


def test_module_and_validation():
    points, faces = grid_mesh(3)
    up = Upsampler(faces, points.shape[0])
    torch.testing.assert_close(up(points.float()), upsample_reference(points.float(), faces))
    with pytest.raises(ValueError, match="num_points"):
        subdivide(faces, 4)
    with pytest.raises(ValueError, match=r"\[F, 3\]"):
        subdivide(faces[:, :2], 9)
    with pytest.raises(ValueError, match="P = 9"):
        upsample(torch.zeros(8, 3), up.matrix)
