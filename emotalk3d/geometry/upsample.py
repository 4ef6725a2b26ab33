"""4x upsampling of the face mesh: one level of midpoint subdivision as a fixed sparse matrix.

DESIGN.md sections 1-2: S2GNet predicts the sparse face points [T, P, 3]; the appearance stage
wants about 4x denser points. One level of midpoint subdivision keeps every original point and
adds one point at the midpoint of every unique edge, and splits every triangle into four. All
of it is linear in the points, so it is stored once as a sparse matrix U [V, P] (V = P + number
of unique edges) and applied to whole sequences with a single sparse matmul:

    dense = upsample(points, U)  # [..., P, 3] -> [..., V, 3]

`upsample_reference` is the slow, obviously correct twin (an explicit loop over edges) that the
tests compare against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


@dataclass
class Subdivision:
    """One level of midpoint subdivision of a triangle mesh with P points and F faces.

    Attributes:
        matrix: sparse COO matrix U [V, P]; identity rows for the original points, then one row
            with two 0.5 entries per unique edge (rows sum to 1).
        edges: [V - P, 2] int64, the unique edges (sorted point pairs) in the order of the new
            points: new point `P + i` is the midpoint of `edges[i]`.
        faces: [4F, 3] int64, the subdivided triangles (same winding as the input).
        uvs: [V, 2] float32 texture coordinates (midpoints for new points), or None.
        regions: name -> [V] bool; a new point belongs to a region when both edge ends do.
    """

    matrix: Tensor  # [V, P] sparse
    edges: Tensor  # [V - P, 2]
    faces: Tensor  # [4F, 3]
    uvs: Tensor | None = None  # [V, 2]
    regions: dict[str, Tensor] = field(default_factory=dict)  # name -> [V]

    @property
    def num_points(self) -> int:
        """P, the number of input (sparse) points."""
        return int(self.matrix.shape[1])

    @property
    def num_dense(self) -> int:
        """V, the number of output (dense) points."""
        return int(self.matrix.shape[0])


def unique_edges(
    faces: Tensor,  # [F, 3] int
) -> tuple[Tensor, Tensor]:  # ([E, 2] sorted pairs, [F, 3] edge index of each face corner)
    """The unique undirected edges of a triangle mesh and, per face, the index of each edge.

    Face corner k of face f owns the edge (faces[f, k], faces[f, (k + 1) % 3]); the second
    return gives its row in the first. Edges are sorted lexicographically, so the result does
    not depend on face order.
    """
    faces = faces.long()
    directed = torch.stack([faces, faces.roll(-1, dims=1)], dim=-1)  # [F, 3, 2]
    pairs = directed.reshape(-1, 2).sort(dim=1).values  # [3F, 2]
    edges, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    return edges, inverse.reshape(-1, 3)


def subdivide(
    faces: Tensor | np.ndarray,  # [F, 3] int
    num_points: int,
    uvs: Tensor | np.ndarray | None = None,  # [P, 2]
    regions: Mapping[str, Tensor | np.ndarray] | None = None,  # name -> [P] bool
) -> Subdivision:
    """Build the fixed midpoint-subdivision operator of a triangle mesh.

    Args:
        faces: [F, 3] point indices of the triangles.
        num_points: P, the number of points of the mesh (points used by no face stay as they
            are and get no neighbours).
        uvs: optional [P, 2] texture coordinates; new points get the midpoint.
        regions: optional region masks, name -> [P] bool.

    Returns:
        The `Subdivision` (matrix U [V, P], edges, faces [4F, 3], uvs, regions).

    Raises:
        ValueError: when `faces` is not [F, 3] or indexes outside [0, num_points).
    """
    faces = torch.as_tensor(np.asarray(faces) if not isinstance(faces, Tensor) else faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.numel() == 0:
        raise ValueError(f"faces must be a non-empty [F, 3] index array, got {tuple(faces.shape)}")
    if faces.dtype.is_floating_point:
        raise ValueError(f"faces must hold integer point indices, got dtype {faces.dtype}")
    faces = faces.long()
    if int(faces.min()) < 0 or int(faces.max()) >= num_points:
        raise ValueError(
            f"faces index points {int(faces.min())}..{int(faces.max())} but the mesh has "
            f"num_points={num_points}; pass the template's vertex count"
        )
    edges, face_edges = unique_edges(faces)  # [E, 2], [F, 3]
    num_edges = edges.shape[0]
    P = num_points

    # U: identity rows for originals, 0.5/0.5 rows for edge midpoints.
    ident = torch.arange(P)
    mid_rows = P + torch.arange(num_edges)
    rows = torch.cat([ident, mid_rows, mid_rows])
    cols = torch.cat([ident, edges[:, 0], edges[:, 1]])
    vals = torch.cat([torch.ones(P), torch.full((2 * num_edges,), 0.5)])
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), vals, (P + num_edges, P), check_invariants=True
    ).coalesce()

    # Faces: corners a, b, c; midpoints m_ab, m_bc, m_ca (corner k owns edge k -> k+1).
    a, b, c = faces.unbind(dim=1)
    m_ab, m_bc, m_ca = (P + face_edges).unbind(dim=1)
    new_faces = torch.cat(
        [
            torch.stack([a, m_ab, m_ca], dim=1),
            torch.stack([m_ab, b, m_bc], dim=1),
            torch.stack([m_ca, m_bc, c], dim=1),
            torch.stack([m_ab, m_bc, m_ca], dim=1),
        ]
    )

    new_uvs = None
    if uvs is not None:
        uv = torch.as_tensor(np.asarray(uvs, dtype=np.float32))
        if uv.shape != (P, 2):
            raise ValueError(f"uvs must be [P, 2] = [{P}, 2], got {tuple(uv.shape)}")
        new_uvs = torch.cat([uv, 0.5 * (uv[edges[:, 0]] + uv[edges[:, 1]])])

    new_regions: dict[str, Tensor] = {}
    for name, mask in (regions or {}).items():
        m = torch.as_tensor(np.asarray(mask)).bool()
        if m.shape != (P,):
            raise ValueError(f"region {name!r} must be a [P] = [{P}] mask, got {tuple(m.shape)}")
        new_regions[name] = torch.cat([m, m[edges[:, 0]] & m[edges[:, 1]]])

    return Subdivision(
        matrix=matrix, edges=edges, faces=new_faces, uvs=new_uvs, regions=new_regions
    )


def upsample(
    points: Tensor,  # [..., P, 3]
    matrix: Tensor,  # [V, P] sparse (or dense)
) -> Tensor:  # [..., V, 3]
    """Apply the subdivision matrix to any batch of point sets in one (sparse) matmul.

    The leading dimensions (e.g. [B, T]) and the xyz axis are folded into the columns of one
    [P, B*T*3] matrix, so a whole sequence costs a single matmul. Differentiable in `points`.
    """
    if points.ndim < 2 or points.shape[-2] != matrix.shape[1]:
        raise ValueError(
            f"points must be [..., P, 3] with P = {matrix.shape[1]} (the matrix's columns), "
            f"got {tuple(points.shape)}"
        )
    lead = points.shape[:-2]
    P, D = points.shape[-2:]
    cols = points.movedim(-2, 0).reshape(P, -1)  # [P, prod(lead) * D]
    matrix = matrix.to(device=points.device, dtype=points.dtype)
    dense = torch.sparse.mm(matrix, cols) if matrix.is_sparse else matrix @ cols  # [V, ...]
    return dense.reshape(matrix.shape[0], *lead, D).movedim(0, -2)


def upsample_reference(
    points: Tensor,  # [..., P, 3]
    faces: Tensor,  # [F, 3]
) -> Tensor:  # [..., V, 3]
    """Slow twin of `subdivide` + `upsample`: loop over the faces' edges one by one.

    Collects each undirected edge once (sorted pairs, sorted order, as `unique_edges` does) and
    appends its midpoint after the original points.
    """
    seen: set[tuple[int, int]] = set()
    for f in faces.tolist():
        for k in range(3):
            i, j = f[k], f[(k + 1) % 3]
            seen.add((min(i, j), max(i, j)))
    mids = [0.5 * (points[..., i, :] + points[..., j, :]) for i, j in sorted(seen)]
    return torch.cat([points, torch.stack(mids, dim=-2)], dim=-2)


class Upsampler(torch.nn.Module):
    """The fixed 4x subdivision (DESIGN.md section 1, geometry.upsample) as a module.

    Holds the sparse matrix's indices and values as non-trainable buffers so the operator
    follows `.to(device)` and checkpoints; `forward` is `upsample`.

    Args:
        faces: [F, 3] triangles of the sparse face mesh.
        num_points: P.
    """

    def __init__(self, faces: Tensor | np.ndarray, num_points: int):
        super().__init__()
        sub = subdivide(faces, num_points)
        self.register_buffer("indices", sub.matrix.indices(), persistent=False)
        self.register_buffer("values", sub.matrix.values(), persistent=False)
        self.register_buffer("faces", sub.faces, persistent=False)
        self.shape = tuple(sub.matrix.shape)

    @property
    def matrix(self) -> Tensor:  # [V, P] sparse
        """The sparse subdivision matrix U."""
        return torch.sparse_coo_tensor(
            self.indices, self.values, self.shape, is_coalesced=True, check_invariants=False
        )

    def forward(
        self,
        points: Tensor,  # [..., P, 3]
    ) -> Tensor:  # [..., V, 3]
        """Dense points of `points` (see `upsample`)."""
        return upsample(points, self.matrix)
