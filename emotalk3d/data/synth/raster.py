"""An independent z-buffered triangle rasterizer for the synthetic dataset (DESIGN.md section 4).

The dataset's images must come from a renderer that has nothing in common with the Gaussian
renderer being trained, so this is a classic triangle rasterizer, vectorised in torch with no
Python loop over triangles or pixels:

1. project the vertices (OpenCV pinhole, emotalk3d.render.cameras conventions); drop
   triangles with any vertex in front of the near plane (behind the camera) and degenerate ones;
2. enumerate, for every triangle, the pixels of its clipped bounding box as (triangle, pixel)
   candidate pairs (`repeat_interleave`), in chunks that bound memory;
3. keep the pixels whose centre (j + 0.5, i + 0.5) lies inside or on the triangle
   (screen-space barycentrics, all >= 0);
4. perspective-correct barycentrics and depth (1 / z interpolates linearly in screen space);
5. z-test: per-pixel minimum depth by `scatter_reduce(..., "amin")`, then the winning
   candidate of every pixel (exact depth ties go to the later triangle).

`shade` then interpolates per-vertex attributes (colour, normal, UV, position) with the
barycentrics. Cameras are batched: one call rasterizes a mesh into every camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DEFAULT_NEAR = 1.0  # mm
DEFAULT_CHUNK = 1 << 21  # (triangle, pixel) candidates per chunk: ~150 MB peak at most
_INSIDE_EPS = 1e-5  # barycentric tolerance: pixel centres on an edge count as inside


@dataclass
class Fragments:
    """Per-pixel rasterization result; leading [C] is absent for a single [4, 4] camera."""

    tri_id: Tensor  # [C, H, W] int64, index into faces, -1 for background
    bary: Tensor  # [C, H, W, 3] float32 perspective-correct barycentrics (0 on background)
    depth: Tensor  # [C, H, W] float32 camera-space z in mm (inf on background)

    @property
    def mask(self) -> Tensor:  # [C, H, W] bool
        """Pixels covered by a triangle."""
        return self.tri_id >= 0


def _as_float(x, dtype=torch.float32) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


@torch.no_grad()
def rasterize(
    vertices,  # [P, 3] or [C, P, 3] world, mm (Tensor or ndarray)
    faces,  # [F, 3] int vertex indices
    world_to_cam,  # [4, 4] or [C, 4, 4]
    K,  # [3, 3] or [C, 3, 3] pixel intrinsics
    width: int,
    height: int,
    near: float = DEFAULT_NEAR,
    cull_backfaces: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
) -> Fragments:
    """Rasterize a triangle mesh into one or several cameras with a z-buffer.

    Args:
        vertices: mesh vertices in world coordinates (mm); one set for all cameras or one per
            camera.
        faces: triangles as vertex indices.
        world_to_cam: OpenCV world-to-camera matrices.
        K: pixel intrinsics.
        width: image width W in pixels.
        height: image height H in pixels.
        near: near plane (mm); triangles with any vertex at z <= near are dropped whole.
        cull_backfaces: drop triangles whose normal (v1 - v0) x (v2 - v0) faces away from the
            camera (counter-clockwise seen from outside is front-facing).
        chunk_size: at most this many (triangle, pixel) candidates are held at once (a single
            triangle's box is never split, so the bound is max(chunk_size, W * H)).

    Returns:
        Fragments with triangle ids, perspective-correct barycentrics and depth; shapes
        [C, H, W] (and [C, H, W, 3]), or [H, W] when `world_to_cam` is one [4, 4] matrix.
        Not differentiable.
    """
    single = tuple(np.shape(world_to_cam)) == (4, 4)
    m = _as_float(world_to_cam, torch.float64)
    k = _as_float(K, torch.float64)
    if m.ndim == 2:
        m = m[None]
    if k.ndim == 2:
        k = k[None]
    if m.shape[-2:] != (4, 4) or k.shape[-2:] != (3, 3):
        raise ValueError(f"world_to_cam must be [C, 4, 4] and K [C, 3, 3]; got "
                         f"{tuple(m.shape)} and {tuple(k.shape)}")  # fmt: skip
    C = max(m.shape[0], k.shape[0])
    m, k = m.expand(C, 4, 4), k.expand(C, 3, 3)
    v = _as_float(vertices, torch.float64)
    if v.ndim == 2:
        v = v[None].expand(C, -1, -1)
    if v.ndim != 3 or v.shape[-1] != 3 or v.shape[0] != C:
        raise ValueError(f"vertices must be [P, 3] or [C={C}, P, 3], got {tuple(v.shape)}")
    f = torch.as_tensor(np.asarray(faces) if not isinstance(faces, Tensor) else faces)
    f = f.to(torch.int64)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be [F, 3] vertex indices, got {tuple(f.shape)}")
    if f.numel() and (int(f.min()) < 0 or int(f.max()) >= v.shape[1]):
        raise ValueError(f"faces index vertices 0..{v.shape[1] - 1}, got indices "
                         f"{int(f.min())}..{int(f.max())}")  # fmt: skip
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    W, H = int(width), int(height)
    F = f.shape[0]
    HW = H * W

    # 1. project (float64 for the few per-vertex ops, float32 per candidate)
    cam = v @ m[:, :3, :3].transpose(1, 2) + m[:, None, :3, 3]  # [C, P, 3]
    z = cam[..., 2]
    zs = torch.where(z > near, z, torch.ones_like(z))
    uv = cam[..., :2] / zs[..., None] @ k[:, :2, :2].transpose(1, 2) + k[:, None, :2, 2]
    tri_uv = uv[:, f]  # [C, F, 3, 2]
    tri_z = z[:, f]  # [C, F, 3]
    x0, y0 = tri_uv[..., 0, 0], tri_uv[..., 0, 1]
    x1, y1 = tri_uv[..., 1, 0], tri_uv[..., 1, 1]
    x2, y2 = tri_uv[..., 2, 0], tri_uv[..., 2, 1]
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)  # [C, F], < 0 when front-facing
    valid = (tri_z > near).all(-1) & (area.abs() > 1e-12)
    if cull_backfaces:
        valid &= area < 0

    # 2. clipped bounding boxes of pixel centres
    xs, ys = tri_uv[..., 0], tri_uv[..., 1]
    j0 = torch.ceil(xs.amin(-1).clamp(-1, W + 1) - 0.5).clamp(min=0).long()
    j1 = torch.floor(xs.amax(-1).clamp(-1, W + 1) - 0.5).clamp(max=W - 1).long()
    i0 = torch.ceil(ys.amin(-1).clamp(-1, H + 1) - 0.5).clamp(min=0).long()
    i1 = torch.floor(ys.amax(-1).clamp(-1, H + 1) - 0.5).clamp(max=H - 1).long()
    bw = (j1 - j0 + 1).clamp(min=0)
    bh = (i1 - i0 + 1).clamp(min=0)
    counts = torch.where(valid, bw * bh, torch.zeros_like(bw)).reshape(-1)  # [C*F]
    sel = counts.nonzero().squeeze(1)  # flat (camera, triangle) ids with candidates

    depth_buf = torch.full((C * HW,), float("inf"), dtype=torch.float32)
    tri_buf = torch.full((C * HW,), -1, dtype=torch.int64)
    bary_buf = torch.zeros((C * HW, 3), dtype=torch.float32)
    if sel.numel():
        # per selected triangle: barycentrics as affine functions of the pixel offset (lx, ly)
        # inside its box, b_k = A_k lx + B_k ly + C_k, evaluated at the box origin's centre in
        # float64 so that float32 per-candidate arithmetic stays precise
        flat = lambda t: t.reshape(C * F, *t.shape[2:])[sel]  # noqa: E731
        pts = flat(tri_uv)  # [n, 3, 2] float64
        bx, by, bwid = flat(j0), flat(i0), flat(bw)
        ox = bx.to(pts.dtype)[:, None] + 0.5
        oy = by.to(pts.dtype)[:, None] + 0.5
        a_, b_ = pts[:, [1, 2, 0]], pts[:, [2, 0, 1]]  # edge k runs from vertex k+1 to k+2
        inv_area = 1.0 / flat(area)[:, None]
        coef_x = -(b_[..., 1] - a_[..., 1]) * inv_area  # [n, 3]
        coef_y = (b_[..., 0] - a_[..., 0]) * inv_area
        coef_c = ((b_[..., 0] - a_[..., 0]) * (oy - a_[..., 1])
                  - (b_[..., 1] - a_[..., 1]) * (ox - a_[..., 0])) * inv_area  # fmt: skip
        table = torch.cat([coef_x, coef_y, coef_c, 1.0 / flat(tri_z)], 1).to(torch.float32)
        cnt = counts[sel]
        base = (sel // F) * HW + by * W + bx  # [n] flat index of the box origin pixel
        fid = sel % F  # [n] face index
        ends = torch.cumsum(cnt, 0)
        # chunk boundaries: split the triangle list where the running count crosses chunk_size
        chunk_of = torch.div(ends - cnt, max(int(chunk_size), 1), rounding_mode="floor")
        bounds = torch.searchsorted(chunk_of, torch.unique(chunk_of)).tolist() + [sel.numel()]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            _raster_chunk(table[a:b], cnt[a:b], bwid[a:b], base[a:b], fid[a:b], W,
                          depth_buf, tri_buf, bary_buf)  # fmt: skip

    tri_id = tri_buf.view(C, H, W)
    bary = bary_buf.view(C, H, W, 3)
    depth = depth_buf.view(C, H, W)
    if single:
        tri_id, bary, depth = tri_id[0], bary[0], depth[0]
    return Fragments(tri_id=tri_id, bary=bary, depth=depth)


def _raster_chunk(
    table: Tensor,  # [n, 12] float32: A [3], B [3], C [3] barycentric coefficients, 1/z [3]
    cnt: Tensor,  # [n] candidate pixels per triangle (its box size)
    bwid: Tensor,  # [n] box width
    base: Tensor,  # [n] flat pixel index of the box origin (camera offset included)
    fid: Tensor,  # [n] face index
    W: int,
    depth_buf: Tensor,  # [C*H*W] updated in place
    tri_buf: Tensor,  # [C*H*W] updated in place
    bary_buf: Tensor,  # [C*H*W, 3] updated in place
) -> None:
    n = cnt.shape[0]
    total = int(cnt.sum())
    rep = torch.repeat_interleave(torch.arange(n), cnt, output_size=total)  # [M]
    local = torch.arange(total) - (torch.cumsum(cnt, 0) - cnt)[rep]
    w = bwid[rep]
    ly = torch.div(local, w, rounding_mode="floor")
    lx = local - ly * w
    t = table[rep]  # [M, 12]
    bary = t[:, 0:3] * lx[:, None] + t[:, 3:6] * ly[:, None] + t[:, 6:9]  # screen-space
    inside = (bary >= -_INSIDE_EPS).all(1)
    idx = inside.nonzero().squeeze(1)
    if idx.numel() == 0:
        return
    rep, bary = rep[idx], bary[idx].clamp(min=0.0)
    pix = base[rep] + ly[idx] * W + lx[idx]
    wz = bary * t[idx, 9:12]  # perspective: 1/z is affine in screen space
    sz = wz.sum(1)
    depth = 1.0 / sz
    bary_pc = wz / sz[:, None]

    zb = torch.full_like(depth_buf, float("inf"))
    zb.scatter_reduce_(0, pix, depth, reduce="amin", include_self=True)
    win = (depth == zb[pix]).nonzero().squeeze(1)
    best = torch.full(depth_buf.shape, -1, dtype=torch.int64)
    best.scatter_reduce_(0, pix[win], win, reduce="amax", include_self=True)
    px_hit = (best >= 0).nonzero().squeeze(1)
    cand = best[px_hit]
    closer = depth[cand] < depth_buf[px_hit]
    px_hit, cand = px_hit[closer], cand[closer]
    depth_buf[px_hit] = depth[cand]
    tri_buf[px_hit] = fid[rep[cand]]
    bary_buf[px_hit] = bary_pc[cand]


def shade(
    frags: Fragments,
    faces,  # [F, 3] int vertex indices
    attributes: Tensor,  # [P, D] or [C, P, D] per-vertex attributes
    background: float | Tensor = 0.0,  # scalar or [D]
) -> Tensor:  # [C, H, W, D] (or [H, W, D] for single-camera fragments)
    """Interpolate per-vertex attributes with the fragments' perspective-correct barycentrics.

    Background pixels get `background`. Differentiable with respect to `attributes`.
    """
    f = torch.as_tensor(np.asarray(faces) if not isinstance(faces, Tensor) else faces).long()
    attr = torch.as_tensor(attributes)
    tri = frags.tri_id
    single = tri.ndim == 2
    if single:
        tri, bary = tri[None], frags.bary[None]
    else:
        bary = frags.bary
    C, H, W = tri.shape
    if attr.ndim == 2:
        attr = attr[None].expand(C, -1, -1)
    if attr.ndim != 3 or attr.shape[0] != C:
        raise ValueError(f"attributes must be [P, D] or [C={C}, P, D], got {tuple(attr.shape)}")
    D = attr.shape[-1]
    out = torch.as_tensor(background, dtype=attr.dtype).expand(C * H * W, D).clone()
    flat_tri = tri.reshape(-1)
    fg = (flat_tri >= 0).nonzero().squeeze(1)
    if fg.numel():
        cam = torch.div(fg, H * W, rounding_mode="floor")
        vid = f[flat_tri[fg]]  # [M, 3]
        b = bary.reshape(-1, 3)[fg].to(attr.dtype)
        val = b[:, :1] * attr[cam, vid[:, 0]]
        val = val + b[:, 1:2] * attr[cam, vid[:, 1]]
        val = val + b[:, 2:3] * attr[cam, vid[:, 2]]
        out = out.index_put((fg,), val)
    out = out.view(C, H, W, D)
    return out[0] if single else out
