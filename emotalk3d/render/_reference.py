"""The pure-PyTorch Gaussian rasterizer: the `torch` backend of `render_gaussians`.

Differentiable through autograd, on any device, with bounded memory. It follows gsplat's
conventions exactly (DESIGN.md section 3), so it is both the CPU renderer and the twin that
gsplat's CUDA path is tested against:

1. Projection (`project_gaussians`): Sigma = R S S^T R^T; world to camera; EWA projection
   with the Jacobian of the pinhole map (the camera-space x/y clamped to 1.3x the field of
   view, as gsplat does) to a 2D covariance; `eps2d` added to its diagonal; conic = inverse;
   radius = ceil(extend * sqrt(Sigma2d_ii)) per axis, with extend = 3.33 sigma or, when
   opacities are given, gsplat-CUDA's opacity-aware min(3.33, sqrt(2 ln(opacity * 255)));
   culling by near/far plane, degenerate covariance, low opacity and off-screen boxes.
2. Tiling (`rasterize_to_pixels`): Gaussians sorted by depth; every (Gaussian, tile)
   intersection of its pixel box listed with torch ops (no Python loop over Gaussians or
   pixels); intersections sorted by (image, tile, depth).
3. Compositing: tiles are processed in chunks of similar intersection counts so a padded
   chunk [tiles, gaussians, pixels] stays under `max_chunk_elements`; within a chunk the
   Gaussian weight of every (tile, gaussian, pixel) triple is one matrix product (below);
   alpha = min(0.999, opacity * exp(-sigma)), dropped below 1/255; transmittance by cumprod
   front to back; a pixel stops at the Gaussian that would bring its transmittance to 1e-4 or
   below (that one excluded), exactly gsplat's rule. Long tiles are processed in depth slabs
   that carry transmittance, and a chunk stops early once all its pixels are opaque.

The quadratic-form trick. With tile-local pixel coordinates (u, v) and a Gaussian's
tile-local mean (mx, my) and conic (a, b, c),

    log(opacity) - sigma = log(opacity) - [a dx^2 / 2 + b dx dy + c dy^2 / 2],  d = (u, v) - m

is a polynomial phi(u, v) . psi(gaussian) with phi = [u^2, v^2, uv, u, v, 1], so all pixels of
all tiles in a chunk cost one GEMM and one `exp`. `rasterize_pixels_dense` is the slow,
obviously correct twin (every pixel against every Gaussian, direct differences) that the
tests compare outputs and gradients against.

Shapes use I for images (cameras, or batch x cameras flattened), besides the package glossary.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD: weaker contributions are skipped
MAX_ALPHA = 0.999  # gsplat clips a Gaussian's alpha here
MIN_TRANSMITTANCE = 1e-4  # a pixel is done before the Gaussian that would reach this
RADIUS_SIGMAS = 3.33  # gsplat's box half-size in standard deviations
DEFAULT_TILE_SIZE = 8
DEFAULT_MAX_CHUNK_ELEMENTS = 1 << 22  # padded (tile, gaussian, pixel) triples per chunk
DEFAULT_SLAB = 64  # gaussians per depth slab (the early-termination granularity)
_NULL_LOGIT = -1.0e4  # log-weight of padding: below the threshold, so its alpha is 0
# threshold() keeps x > t; keeping alpha >= 1/255 needs t just below 1/255
_BELOW_ALPHA_THRESHOLD = float(np.nextafter(np.float32(ALPHA_THRESHOLD), np.float32(0.0)))


class Projection(NamedTuple):
    """Per-camera projected Gaussians; entries with radii == 0 are culled.

    Attributes:
        radii: [..., C, N, 2] int32 pixel half-sizes of the box (0: culled).
        means2d: [..., C, N, 2] pixel coordinates of the mean (pixel centres at +0.5).
        depths: [..., C, N] camera-space z.
        conics: [..., C, N, 3] inverse 2D covariance (a, b, c) = upper triangle.
        compensations: [..., C, N] sqrt(det(S) / det(S + eps2d I)), or None unless antialiased.
        covars2d: [..., C, N, 2, 2] 2D covariance with the eps2d blur.
    """

    radii: Tensor
    means2d: Tensor
    depths: Tensor
    conics: Tensor
    compensations: Tensor | None
    covars2d: Tensor


# --------------------------------------------------------------------------------------------
# projection


def quat_to_rotmat(
    quats: Tensor,  # [..., 4] unit quaternions, wxyz
) -> Tensor:  # [..., 3, 3]
    """Rotation matrix of unit quaternions (w, x, y, z); callers normalise (see `activate`)."""
    w, x, y, z = quats.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(
    quats: Tensor,  # [..., 4] unit quaternions, wxyz
    scales: Tensor,  # [..., 3] positive standard deviations
) -> Tensor:  # [..., 3, 3]
    """World-space covariance Sigma = R S S^T R^T."""
    m = quat_to_rotmat(quats) * scales[..., None, :]  # R S
    return m @ m.transpose(-1, -2)


def world_to_camera(
    means: Tensor,  # [..., N, 3]
    covars: Tensor,  # [..., N, 3, 3]
    viewmats: Tensor,  # [..., C, 4, 4] world-to-camera
) -> tuple[Tensor, Tensor]:  # [..., C, N, 3], [..., C, N, 3, 3]
    """Means and covariances in each camera's frame: x_c = R x + t, Sigma_c = R Sigma R^T."""
    rot = viewmats[..., :3, :3]  # [..., C, 3, 3]
    t = viewmats[..., :3, 3]  # [..., C, 3]
    means_c = torch.einsum("...cij,...nj->...cni", rot, means) + t[..., :, None, :]
    covars_c = torch.einsum("...cij,...njk,...clk->...cnil", rot, covars, rot)
    return means_c, covars_c


def perspective_project(
    means_c: Tensor,  # [..., C, N, 3]
    covars_c: Tensor,  # [..., C, N, 3, 3]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:  # [..., C, N, 2], [..., C, N, 2, 2]
    """Pinhole projection of means and EWA projection J Sigma_c J^T of covariances.

    As gsplat does, the Jacobian is taken at x/z and y/z clamped to 1.3 times the half field
    of view (Gaussians far off-screen do not blow up); the mean itself is not clamped.
    """
    tx, ty, tz = means_c.unbind(-1)  # [..., C, N]
    fx = Ks[..., 0, 0, None]  # [..., C, 1]
    fy = Ks[..., 1, 1, None]
    cx = Ks[..., 0, 2, None]
    cy = Ks[..., 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    jx = tz * torch.maximum(torch.minimum(tx / tz, lim_x_pos), -lim_x_neg)
    jy = tz * torch.maximum(torch.minimum(ty / tz, lim_y_pos), -lim_y_neg)
    zero = torch.zeros_like(tz)
    jac = torch.stack(
        [fx / tz, zero, -fx * jx / (tz * tz), zero, fy / tz, -fy * jy / (tz * tz)], dim=-1
    ).reshape(tz.shape + (2, 3))  # [..., C, N, 2, 3]
    covars2d = jac @ covars_c @ jac.transpose(-1, -2)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)
    return means2d, covars2d


def project_gaussians(
    means: Tensor,  # [..., N, 3] world
    quats: Tensor,  # [..., N, 4] unit, wxyz
    scales: Tensor,  # [..., N, 3] positive
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    opacities: Tensor | None = None,  # [..., N] activated, for gsplat-CUDA's tight boxes
    antialiased: bool = False,
) -> Projection:
    """Project activated 3D Gaussians to every camera (gsplat's fully fused projection).

    Without `opacities` the boxes are 3.33 sigma, as gsplat's pure-torch
    `_fully_fused_projection`; with them, gsplat-CUDA's opacity-aware boxes and low-opacity
    culling (a Gaussian with opacity below 1/255, times the compensation when antialiased,
    is culled).
    """
    covars = covariance_3d(quats, scales)
    means_c, covars_c = world_to_camera(means, covars, viewmats)
    means2d, covars2d = perspective_project(means_c, covars_c, Ks, width, height)
    det_orig = covars2d[..., 0, 0] * covars2d[..., 1, 1] - covars2d[..., 0, 1] ** 2
    covars2d = covars2d + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    det = covars2d[..., 0, 0] * covars2d[..., 1, 1] - covars2d[..., 0, 1] ** 2
    det_safe = det.clamp(min=1e-10)
    compensations = torch.sqrt(torch.clamp(det_orig / det_safe, min=0.0)) if antialiased else None
    conics = torch.stack(
        [
            covars2d[..., 1, 1] / det_safe,
            -0.5 * (covars2d[..., 0, 1] + covars2d[..., 1, 0]) / det_safe,
            covars2d[..., 0, 0] / det_safe,
        ],
        dim=-1,
    )
    depths = means_c[..., 2]
    with torch.no_grad():
        valid = (det > 0) & (depths > near_plane) & (depths < far_plane)
        extend = torch.full_like(depths, RADIUS_SIGMAS)
        if opacities is not None:
            op = opacities[..., None, :].expand_as(depths)
            if compensations is not None:
                op = op * compensations
            valid &= op >= ALPHA_THRESHOLD
            extend = torch.minimum(
                extend, torch.sqrt(2.0 * torch.log(op.clamp(min=ALPHA_THRESHOLD) * 255.0))
            )
        var = torch.stack([covars2d[..., 0, 0], covars2d[..., 1, 1]], dim=-1)
        radius = torch.ceil(extend[..., None] * torch.sqrt(var.clamp(min=0.0)))
        radius = torch.where(valid[..., None], radius, torch.zeros_like(radius))
        inside = (
            (means2d[..., 0] + radius[..., 0] > 0)
            & (means2d[..., 0] - radius[..., 0] < width)
            & (means2d[..., 1] + radius[..., 1] > 0)
            & (means2d[..., 1] - radius[..., 1] < height)
        )
        radius = torch.where(inside[..., None], radius, torch.zeros_like(radius))
        radii = radius.to(torch.int32)
    return Projection(radii, means2d, depths, conics, compensations, covars2d)


# --------------------------------------------------------------------------------------------
# tiling


class TileIntersections(NamedTuple):
    """(image, tile, Gaussian) intersections sorted by (image, tile, depth).

    Attributes:
        flat_ids: [M] index into the flattened [I * N] Gaussians.
        tile_ids: [M] flattened (image, tile_row, tile_col) index.
        counts: [I * tiles_y * tiles_x] intersections per tile.
        offsets: [I * tiles_y * tiles_x] start of each tile's run in the sorted lists.
    """

    flat_ids: Tensor
    tile_ids: Tensor
    counts: Tensor
    offsets: Tensor


@torch.no_grad()
def intersect_tiles(
    means2d: Tensor,  # [I, N, 2]
    radii: Tensor,  # [I, N, 2] int
    depths: Tensor,  # [I, N]
    tile_size: int,
    tiles_x: int,
    tiles_y: int,
) -> TileIntersections:
    """List every (Gaussian, tile) pair whose pixel box meets the tile, sorted front to back.

    A box [m - r, m + r] covers tiles floor((m - r) / s) .. ceil((m + r) / s) - 1 per axis
    (gsplat's `isect_tiles`). Vectorised: repeat_interleave expands each Gaussian into its
    tiles; one stable sort by tile of the depth-ordered list gives (tile, depth) order.
    """
    n_images, n = depths.shape
    device = depths.device
    n_tiles = n_images * tiles_x * tiles_y
    assert n_images * n < 2**31 and n_tiles < 2**31, "too many Gaussians or tiles for int32 ids"
    visible = (radii > 0).all(dim=-1).reshape(-1)  # [I * N]
    flat = visible.nonzero().squeeze(1)  # [V]
    flat = flat.index_select(0, torch.argsort(depths.reshape(-1).index_select(0, flat)))
    m = means2d.reshape(-1, 2).index_select(0, flat)
    r = radii.reshape(-1, 2).index_select(0, flat).to(m.dtype)
    lim = torch.tensor([tiles_x, tiles_y], device=device, dtype=m.dtype)
    lo = torch.minimum(torch.floor((m - r) / tile_size).clamp(min=0), lim)
    hi = torch.minimum(torch.ceil((m + r) / tile_size).clamp(min=0), lim)
    span = (hi - lo).to(torch.int32)  # [V, 2] tiles per axis
    lo = lo.to(torch.int32)
    per = span[:, 0] * span[:, 1]  # [V] tiles per Gaussian
    src = torch.repeat_interleave(torch.arange(len(flat), device=device, dtype=torch.int32), per)
    start = (torch.cumsum(per, 0, dtype=torch.int32) - per).index_select(0, src)
    local = torch.arange(len(src), device=device, dtype=torch.int32) - start  # [M]
    # row-major walk over the Gaussian's tile box; float division is exact for these sizes
    wx = span[:, 0].index_select(0, src)
    ty = torch.floor(local.float() / wx.float()).to(torch.int32)
    tx = local - ty * wx
    origin = ((flat // n).to(torch.int32) * tiles_y + lo[:, 1]) * tiles_x + lo[:, 0]  # [V]
    tile_ids = origin.index_select(0, src) + ty * tiles_x + tx
    tile_ids, order = torch.sort(tile_ids, stable=True)
    flat_ids = flat.index_select(0, src.index_select(0, order))
    counts = torch.bincount(tile_ids, minlength=n_tiles)
    offsets = torch.cumsum(counts, 0) - counts
    return TileIntersections(flat_ids, tile_ids, counts, offsets)


def _pixel_features(
    tile_size: int, dtype: torch.dtype, device: torch.device
) -> Tensor:  # [6, P] with P = tile_size^2
    """phi = [u^2, v^2, uv, u, v, 1] of every pixel centre in tile-local coordinates."""
    c = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - 0.5 * tile_size
    v, u = torch.meshgrid(c, c, indexing="ij")  # row-major pixels of the tile
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([u * u, v * v, u * v, u, v, torch.ones_like(u)], dim=0)


def _gaussian_coefficients(
    means_local: Tensor,  # [M, 2] mean minus tile centre
    conics: Tensor,  # [M, 3]
    log_opacities: Tensor,  # [M]
) -> Tensor:  # [M, 6]
    """psi with phi . psi = log(opacity) - sigma (see the module docstring)."""
    mx, my = means_local.unbind(-1)
    a, b, c = conics.unbind(-1)
    const = log_opacities - (0.5 * a * mx * mx + 0.5 * c * my * my + b * mx * my)
    return torch.stack([-0.5 * a, -0.5 * c, -b, a * mx + b * my, c * my + b * mx, const], -1)


def _plan_chunks(
    counts: np.ndarray,  # [tiles] intersections per tile
    pixels: int,
    max_elements: int,
) -> list[np.ndarray]:
    """Group non-empty tiles (largest first) so tiles x max_count x pixels <= max_elements."""
    tiles = np.nonzero(counts)[0]
    tiles = tiles[np.argsort(-counts[tiles], kind="stable")]
    chunks, i = [], 0
    while i < len(tiles):
        per_tile = pixels * int(counts[tiles[i]])
        take = max(1, max_elements // per_tile)
        chunks.append(tiles[i : i + take])
        i += take
    return chunks


def _composite_slab(
    logit: Tensor,  # [n, S, P] log(opacity) - sigma, front to back along S
    trans: Tensor,  # [n, P] transmittance before the slab (0: the pixel is done)
    inplace: bool,
) -> tuple[Tensor, Tensor]:  # weights [n, S, P], transmittance after [n, P]
    """gsplat's compositing rules for one depth slab, in few memory passes.

    alpha = min(0.999, exp(logit)), zeroed below 1/255; T_k = T_0 prod_{j<=k} (1 - alpha_j);
    a Gaussian is included only while T_k > 1e-4, and its weight is
    alpha_k T_{k-1} = alpha_k / (1 - alpha_k) * T_k, so zeroing T_k <= 1e-4 (a `threshold`,
    which also marks the pixel done for later slabs) zeroes exactly the excluded weights.
    The logit is clamped first: exp() of very negative numbers is slow on CPU, and anything
    below log(1/255) is dropped anyway. `inplace` reuses buffers when no graph is recorded.
    """
    lo, hi = math.log(ALPHA_THRESHOLD) - 0.5, math.log(MAX_ALPHA)
    thr = torch.nn.functional.threshold
    if inplace:
        alpha = thr(logit.clamp_(lo, hi).exp_(), _BELOW_ALPHA_THRESHOLD, 0.0, inplace=True)
        one_minus = torch.rsub(alpha, 1.0)
        ratio = alpha.div_(one_minus)  # alpha / (1 - alpha), before one_minus is scaled
        one_minus[:, 0].mul_(trans)
        t_incl = thr(torch.cumprod(one_minus, dim=1), MIN_TRANSMITTANCE, 0.0, inplace=True)
        w = ratio.mul_(t_incl)
    else:
        alpha = thr(torch.exp(torch.clamp(logit, lo, hi)), _BELOW_ALPHA_THRESHOLD, 0.0)
        one_minus = 1.0 - alpha  # >= 1 - MAX_ALPHA > 0
        # trans multiplies after the cumprod: with no zero in its input, cumprod's backward
        # takes autograd's cheap path (reversed cumsum / input) instead of the zero-aware one
        # (3.5x slower on CPU), which a done pixel's trans = 0 in the first row would force
        t_incl = torch.cumprod(one_minus, dim=1) * trans[:, None, :]  # [n, S, P]
        t_incl = thr(t_incl, MIN_TRANSMITTANCE, 0.0)
        w = alpha / one_minus * t_incl
    return w, t_incl[:, -1]


def rasterize_to_pixels(
    means2d: Tensor,  # [I, N, 2]
    conics: Tensor,  # [I, N, 3]
    opacities: Tensor,  # [I, N] activated (times compensation when antialiased)
    features: Tensor,  # [I, N, D] per-image Gaussian features (RGB, depth, ...)
    depths: Tensor,  # [I, N] sort key
    radii: Tensor,  # [I, N, 2] int, 0 = culled
    width: int,
    height: int,
    tile_size: int = DEFAULT_TILE_SIZE,
    backgrounds: Tensor | None = None,  # [I, D]
    max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS,
    slab: int | None = DEFAULT_SLAB,
) -> tuple[Tensor, Tensor]:  # [I, H, W, D], [I, H, W, 1]
    """Tiled front-to-back alpha compositing (the fast path; see the module docstring).

    Returns:
        The composited features (plus background x remaining transmittance) and alpha = 1 -
        the transmittance left after the last contributing Gaussian.
    """
    n_images, n, d = features.shape
    assert means2d.shape == (n_images, n, 2), means2d.shape
    assert conics.shape == (n_images, n, 3), conics.shape
    assert opacities.shape == (n_images, n), opacities.shape
    assert depths.shape == (n_images, n) and radii.shape == (n_images, n, 2)
    dtype, device = means2d.dtype, means2d.device
    tiles_x = math.ceil(width / tile_size)
    tiles_y = math.ceil(height / tile_size)
    pixels = tile_size * tile_size
    isect = intersect_tiles(means2d.detach(), radii, depths.detach(), tile_size, tiles_x, tiles_y)
    m = len(isect.flat_ids)

    # per-intersection coefficients psi and features (+ a "ones" channel for alpha), then a
    # null row at index m that pads every tile's run to the chunk's length
    tile_in_image = isect.tile_ids % (tiles_x * tiles_y)
    centre = (
        torch.stack(
            [(tile_in_image % tiles_x).to(dtype), (tile_in_image // tiles_x).to(dtype)], dim=-1
        )
        * tile_size
        + 0.5 * tile_size
    )  # [M, 2]
    log_op = torch.log(opacities.reshape(-1).clamp(min=1e-30))
    psi = _gaussian_coefficients(
        means2d.reshape(-1, 2)[isect.flat_ids] - centre,
        conics.reshape(-1, 3)[isect.flat_ids],
        log_op[isect.flat_ids],
    )  # [M, 6]
    null_psi = torch.zeros(1, 6, dtype=dtype, device=device)
    null_psi[0, 5] = _NULL_LOGIT
    psi = torch.cat([psi, null_psi], dim=0)  # [M + 1, 6]
    feats = torch.cat([features, torch.ones_like(features[..., :1])], dim=-1).reshape(-1, d + 1)
    feats = torch.cat([feats[isect.flat_ids], feats.new_zeros(1, d + 1)], dim=0)  # [M + 1, D+1]
    phi = _pixel_features(tile_size, dtype, device)  # [6, P]

    counts_np = isect.counts.cpu().numpy()
    offsets = isect.offsets
    inplace = not (torch.is_grad_enabled() and (psi.requires_grad or feats.requires_grad))
    out_tiles, out_vals = [], []
    for chunk_np in _plan_chunks(counts_np, pixels, max_chunk_elements):
        tiles = torch.from_numpy(chunk_np).to(device)  # [n_t], largest count first
        cnt = isect.counts[tiles]
        length = int(counts_np[chunk_np[0]])
        step = min(length, max(1, max_chunk_elements // (len(chunk_np) * pixels)))
        if slab:
            step = min(step, slab)
        rows = torch.arange(len(chunk_np), device=device)  # live tiles of the chunk
        trans = torch.ones(len(chunk_np), pixels, dtype=dtype, device=device)
        acc = torch.zeros(len(chunk_np), pixels, d + 1, dtype=dtype, device=device)
        if not inplace:
            # With a graph, gather the chunk's padded runs once and cut slabs as views: every
            # per-slab gather from psi/feats would cost a zero-filled [M + 1, .] gradient and
            # its accumulation in backward; the split's backward is one concatenation.
            j = torch.arange(length, device=device)  # [L]
            idx = torch.where(j < cnt[:, None], offsets[tiles, None] + j, m).reshape(-1)
            psi_slabs = psi.index_select(0, idx).reshape(len(chunk_np), length, 6).split(step, 1)
            feat_slabs = feats.index_select(0, idx).reshape(len(chunk_np), length, d + 1)
            feat_slabs = feat_slabs.split(step, 1)
            parts, part_rows = [], []
        for k, s0 in enumerate(range(0, length, step)):
            n_live = len(rows)
            if inplace:
                j = torch.arange(s0, min(s0 + step, length), device=device)  # [S]
                idx = offsets[tiles[rows], None] + j  # [n, S]
                idx = torch.where(j < cnt[rows, None], idx, torch.full_like(idx, m)).reshape(-1)
                p = psi.index_select(0, idx).reshape(n_live, len(j), 6)  # [n, S, 6]
                f = feats.index_select(0, idx).reshape(n_live, len(j), d + 1)  # [n, S, D + 1]
            else:
                p, f = psi_slabs[k], feat_slabs[k]  # [n_t, S, 6], [n_t, S, D + 1]
                if n_live < len(chunk_np):
                    p, f = p.index_select(0, rows), f.index_select(0, rows)
            w, trans = _composite_slab(p @ phi, trans, inplace)  # logit [n, S, P]
            part = torch.bmm(w.transpose(1, 2), f)  # [n, P, D + 1]
            if inplace:
                acc.index_add_(0, rows, part)
            else:
                parts.append(part)
                part_rows.append(rows)
            if s0 + step >= length:
                break
            # drop tiles whose pixels are all done (transmittance zeroed) or whose run ended
            keep = (cnt[rows] > s0 + step) & (trans > 0).any(dim=-1)
            if not bool(keep.all()):
                rows, trans = rows[keep], trans[keep]
                if len(rows) == 0:
                    break
        if not inplace:
            acc = acc.index_add(0, torch.cat(part_rows), torch.cat(parts))
        out_tiles.append(tiles)
        out_vals.append(acc)

    n_tiles = n_images * tiles_y * tiles_x
    out = torch.zeros(n_tiles, pixels, d + 1, dtype=dtype, device=device)
    if out_tiles:
        out = out.index_copy(0, torch.cat(out_tiles), torch.cat(out_vals))
    out = out.reshape(n_images, tiles_y, tiles_x, tile_size, tile_size, d + 1)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(
        n_images, tiles_y * tile_size, tiles_x * tile_size, d + 1
    )[:, :height, :width]
    render, alpha = out[..., :d], out[..., d:]
    if backgrounds is not None:
        render = render + (1.0 - alpha) * backgrounds[:, None, None, :]
    return render, alpha


def rasterize_pixels_dense(
    means2d: Tensor,  # [I, N, 2]
    conics: Tensor,  # [I, N, 3]
    opacities: Tensor,  # [I, N]
    features: Tensor,  # [I, N, D]
    depths: Tensor,  # [I, N]
    radii: Tensor,  # [I, N, 2] int, 0 = culled
    width: int,
    height: int,
    backgrounds: Tensor | None = None,  # [I, D]
) -> tuple[Tensor, Tensor]:  # [I, H, W, D], [I, H, W, 1]
    """The slow, obviously correct twin of `rasterize_to_pixels` (tiny scenes only).

    Every pixel against every visible Gaussian in depth order, with direct differences
    d = pixel centre - mean, sigma = d^T conic d / 2, and gsplat's alpha and stopping rules
    written out plainly. Memory is I x H x W x N.
    """
    n_images, n, d = features.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means2d.dtype, device=means2d.device) + 0.5,
        torch.arange(width, dtype=means2d.dtype, device=means2d.device) + 0.5,
        indexing="ij",
    )
    renders, alphas = [], []
    for i in range(n_images):
        order = torch.argsort(depths[i])
        order = order[(radii[i, order] > 0).all(dim=-1)]  # front to back, visible only
        mx, my = means2d[i, order].unbind(-1)  # [G]
        a, b, c = conics[i, order].unbind(-1)
        dx = xs[..., None] - mx  # [H, W, G]
        dy = ys[..., None] - my
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[i, order] * torch.exp(-sigma), max=MAX_ALPHA)
        skip = (sigma < 0) | (alpha < ALPHA_THRESHOLD)
        alpha = torch.where(skip, torch.zeros_like(alpha), alpha)
        trans_after = torch.cumprod(1.0 - alpha, dim=-1)  # T after each Gaussian
        trans_before = torch.cat([torch.ones_like(alpha[..., :1]), trans_after[..., :-1]], -1)
        included = trans_after > MIN_TRANSMITTANCE  # stops at the first that would reach 1e-4
        weight = torch.where(included, alpha * trans_before, torch.zeros_like(alpha))
        render = weight @ features[i, order]  # [H, W, D]
        alpha_px = weight.sum(dim=-1, keepdim=True)
        if backgrounds is not None:
            render = render + (1.0 - alpha_px) * backgrounds[i]
        renders.append(render)
        alphas.append(alpha_px)
    return torch.stack(renders), torch.stack(alphas)
