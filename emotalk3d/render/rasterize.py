"""Render 3D Gaussians: one public function, two backends (DESIGN.md section 3).

`render_gaussians` takes *raw* Gaussian parameters (unnormalised wxyz quaternions, log-scales,
logit opacities, SH coefficients) and activates them in exactly one place, `activate`:

    quats      -> quats / |quats|
    scales     -> exp(scales)
    opacities  -> sigmoid(opacities)
    colors     -> rgb = max(0, SH(d) . coeffs + 0.5), d = mean - camera centre (per camera)

Colours are always SH coefficients: [..., N, K, 3] with K = (degree + 1)^2, degree 0..3, or
[..., N, 3], which means the DC coefficient alone (K = 1; `sh.rgb_to_sh0` turns an RGB colour
into it). This is the layout of 3DGS .ply files and of gsplat.

Backends:
- "gsplat": `gsplat.rasterization` (CUDA only), fed the activated values and the per-camera
  RGB from `activate`, so both backends composite identical inputs.
- "torch": the pure-PyTorch reference in `_reference.py` (any device, autograd, bounded
  memory).
- "auto": gsplat when CUDA is available and the tensors are on a CUDA device, else torch.

Conventions: OpenCV cameras (x right, y down, z forward), world-to-camera `viewmats`, pixel
intrinsics `Ks`, millimetres, pixel (row i, col j) centred at (j + 0.5, i + 0.5). One optional
leading batch dimension B (e.g. frames) is supported: means [B, N, 3] with viewmats
[B, C, 4, 4] or shared [C, 4, 4]. See docs/rendering.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from emotalk3d.render import _reference as ref
from emotalk3d.render.sh import MAX_SH_DEGREE, eval_sh, sh_degree_from_bases

Backend = Literal["auto", "gsplat", "torch"]
BACKENDS = ("auto", "gsplat", "torch")


@dataclass
class RenderOutput:
    """What `render_gaussians` returns. Batch dims [B] appear only when the input had them.

    Attributes:
        image: [..., C, H, W, 3] colour composited over the background.
        alpha: [..., C, H, W, 1] accumulated opacity (1 - final transmittance).
        depth: [..., C, H, W, 1] expected camera-space z, sum(w z) / sum(w) (alpha-normalised,
            gsplat's "ED"), 0 where alpha is 0; None if `render_depth=False`.
        meta: backend, width, height, n_cameras and the projection: radii [..., C, N, 2],
            means2d [..., C, N, 2] (in the autograd graph, for gsplat's densification
            strategy), depths [..., C, N], conics [..., C, N, 3], opacities [..., C, N].
    """

    image: Tensor
    alpha: Tensor
    depth: Tensor | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActivatedGaussians:
    """Activated Gaussians (the single place raw parameters become physical ones).

    Attributes:
        quats: [..., N, 4] unit quaternions, wxyz.
        scales: [..., N, 3] standard deviations (mm).
        opacities: [..., N] in (0, 1).
        colors: [..., C, N, 3] RGB per camera, >= 0.
    """

    quats: Tensor
    scales: Tensor
    opacities: Tensor
    colors: Tensor


def camera_centers(
    viewmats: Tensor,  # [..., C, 4, 4] world-to-camera
) -> Tensor:  # [..., C, 3]
    """World positions of camera centres, -R^T t."""
    rot = viewmats[..., :3, :3]
    t = viewmats[..., :3, 3]
    return -(rot.transpose(-1, -2) @ t[..., None])[..., 0]


def activate(
    means: Tensor,  # [..., N, 3]
    quats: Tensor,  # [..., N, 4] raw, wxyz
    scales: Tensor,  # [..., N, 3] log-scales
    opacities: Tensor,  # [..., N] logits
    colors: Tensor,  # [..., N, K, 3] SH coefficients (or [..., N, 3]: DC only)
    viewmats: Tensor,  # [..., C, 4, 4]
    sh_degree: int | None = None,
) -> ActivatedGaussians:
    """Turn raw parameters into physical ones (see the module docstring).

    `sh_degree` (default: all bands present) may be below the coefficients' degree, in which
    case higher bands are ignored.
    """
    if colors.dim() == means.dim():
        colors = colors[..., None, :]  # DC only
    degree = sh_degree_from_bases(colors.shape[-2]) if sh_degree is None else sh_degree
    dirs = means[..., None, :, :] - camera_centers(viewmats)[..., :, None, :]  # [..., C, N, 3]
    sh = eval_sh(degree, dirs, colors[..., None, :, :, :])  # [..., C, N, 3]
    return ActivatedGaussians(
        quats=torch.nn.functional.normalize(quats, dim=-1),
        scales=torch.exp(scales),
        opacities=torch.sigmoid(opacities),
        colors=torch.clamp_min(sh + 0.5, 0.0),
    )


def _fail(what: str, expected: str, got: Any, fix: str = "") -> None:
    msg = f"render_gaussians: {what} must be {expected}; got {got}"
    raise ValueError(msg + (f". {fix}" if fix else ""))


def _validate(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    background: Tensor | None,
    sh_degree: int | None,
    backend: str,
) -> tuple[tuple[int, ...], int]:
    """Check shapes, dtypes and devices; return (batch dims, C)."""
    tensors = {"means": means, "quats": quats, "scales": scales, "opacities": opacities,
               "colors": colors, "viewmats": viewmats, "Ks": Ks}  # fmt: skip
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            _fail(name, "a torch.Tensor", type(t).__name__)
    if backend not in BACKENDS:
        _fail("backend", f"one of {BACKENDS}", repr(backend))
    if means.dim() not in (2, 3) or means.shape[-1] != 3:
        _fail("means", "[N, 3] or [B, N, 3] (world positions, mm)", tuple(means.shape))
    batch, n = tuple(means.shape[:-2]), means.shape[-2]
    for name, t, tail in (("quats", quats, (4,)), ("scales", scales, (3,)), ("opacities", opacities, ())):  # fmt: skip # noqa: E501
        want = batch + (n,) + tail
        if tuple(t.shape) != want:
            _fail(name, f"{list(want)} to match means {list(means.shape)}", tuple(t.shape))
    lead = list(batch + (n,))
    sh_shape = colors.dim() == means.dim() + 1
    if (
        tuple(colors.shape[: len(lead)]) != tuple(lead)
        or colors.shape[-1] != 3
        or not (sh_shape or colors.dim() == means.dim())
    ):
        _fail(
            "colors",
            f"SH coefficients {lead + ['K', 3]} or the DC term alone {lead + [3]}",
            tuple(colors.shape),
            "RGB in [0, 1] converts to DC with emotalk3d.render.sh.rgb_to_sh0",
        )
    k = colors.shape[-2] if sh_shape else 1
    try:
        full = sh_degree_from_bases(k)
    except ValueError as e:
        _fail("colors", "[..., N, K, 3] with K in 1, 4, 9, 16", tuple(colors.shape), str(e))
    if sh_degree is not None and not (0 <= sh_degree <= min(full, MAX_SH_DEGREE)):
        _fail("sh_degree", f"None or in 0..{full} (colors have K = {k})", sh_degree)
    vm_ok = viewmats.dim() in (3, 3 + len(batch)) and viewmats.shape[-2:] == (4, 4)
    if vm_ok and viewmats.dim() == 3 + len(batch):
        vm_ok = tuple(viewmats.shape[: len(batch)]) == batch
    if not vm_ok:
        want = "[C, 4, 4]" + (f" or {list(batch) + ['C', 4, 4]}" if batch else "")
        _fail("viewmats", f"{want} world-to-camera matrices", tuple(viewmats.shape))
    c = viewmats.shape[-3]
    if tuple(Ks.shape[-3:]) != (c, 3, 3) or Ks.dim() not in (3, viewmats.dim()):
        _fail("Ks", f"[{c}, 3, 3] (one 3x3 pixel intrinsics per viewmat)", tuple(Ks.shape))
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        _fail("width and height", "positive ints", (width, height))
    if background is not None:
        bg_ok = background.shape[-1:] == (3,) and (
            background.dim() == 1 or tuple(background.shape[:-1]) in ((c,), batch + (c,))
        )
        if not bg_ok:
            _fail("background", f"None, [3] or [{c}, 3] RGB", tuple(background.shape))
    for name, t in tensors.items():
        if t.device != means.device:
            _fail(name, f"on the same device as means ({means.device})", t.device)
        if not t.is_floating_point():
            _fail(name, "a floating-point tensor", t.dtype)
    return batch, c


def _gsplat_available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


def render_gaussians(
    means: Tensor,  # [..., N, 3] world positions, mm
    quats: Tensor,  # [..., N, 4] raw (unnormalised) wxyz
    scales: Tensor,  # [..., N, 3] raw log standard deviations
    opacities: Tensor,  # [..., N] raw logits
    colors: Tensor,  # [..., N, K, 3] raw SH coefficients, or [..., N, 3] DC only
    viewmats: Tensor,  # [C, 4, 4] or [..., C, 4, 4] world-to-camera (OpenCV)
    Ks: Tensor,  # [C, 3, 3] or [..., C, 3, 3] pixel intrinsics
    width: int,
    height: int,
    backend: Backend = "auto",
    background: Tensor | None = None,  # [3], [C, 3] or [..., C, 3]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    sh_degree: int | None = None,
    render_depth: bool = True,
    eps2d: float = 0.3,
    antialiased: bool = False,
    tile_size: int = ref.DEFAULT_TILE_SIZE,
    max_chunk_elements: int = ref.DEFAULT_MAX_CHUNK_ELEMENTS,
) -> RenderOutput:
    """Render raw 3D Gaussians into C cameras (optionally for a batch B of Gaussian sets).

    Args:
        means: Gaussian centres in world space, mm.
        quats: Rotations as raw wxyz quaternions (normalised here).
        scales: Log standard deviations (exponentiated here).
        opacities: Opacity logits (sigmoid here).
        colors: SH coefficients, K = (degree + 1)^2 with degree 0..3; [..., N, 3] is the DC
            coefficient alone. Colour = max(0, SH + 0.5), evaluated per camera.
        viewmats: World-to-camera matrices; [C, 4, 4] is shared by every batch element.
        Ks: Pixel intrinsics matching `viewmats`.
        width: Image width in pixels.
        height: Image height in pixels.
        backend: "gsplat" (CUDA), "torch" (any device) or "auto".
        background: RGB added with the remaining transmittance; None means black.
        near_plane: Gaussians with camera z below this are culled (mm).
        far_plane: Gaussians with camera z above this are culled (mm).
        sh_degree: SH bands to use (default: all that `colors` has).
        render_depth: Also render the expected depth.
        eps2d: Pixel variance added to every projected covariance (gsplat's low-pass blur).
        antialiased: gsplat's "antialiased" mode: opacity times sqrt(det S / det(S + eps2d I)).
        tile_size: torch backend: tile side in pixels.
        max_chunk_elements: torch backend: cap on (tile, Gaussian, pixel) triples per chunk,
            which bounds its working memory (about 40 bytes per triple with autograd).

    Returns:
        A `RenderOutput`.

    Raises:
        ValueError: On wrong shapes, dtypes, devices or options (the message names the fix).
        RuntimeError: backend="gsplat" without CUDA tensors.
    """
    batch, c = _validate(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                         background, sh_degree, backend)  # fmt: skip
    if backend == "auto":
        backend = "gsplat" if _gsplat_available(means.device) else "torch"
    if backend == "gsplat" and not _gsplat_available(means.device):
        raise RuntimeError(
            "render_gaussians: backend='gsplat' needs CUDA and tensors on a CUDA device "
            f"(gsplat's rasterizer is CUDA-only); got device {means.device}, CUDA available: "
            f"{torch.cuda.is_available()}. Use backend='torch' (or 'auto') on this machine."
        )
    dtype = means.dtype
    viewmats = viewmats.to(dtype).expand(batch + (c, 4, 4))
    Ks = Ks.to(dtype).expand(batch + (c, 3, 3))
    if background is not None:
        background = background.to(dtype).expand(batch + (c, 3))
    act = activate(means, quats, scales, opacities, colors, viewmats, sh_degree)
    run = _render_gsplat if backend == "gsplat" else _render_torch
    out = run(means, act, viewmats, Ks, width, height, background, near_plane, far_plane,
              render_depth, eps2d, antialiased, tile_size, max_chunk_elements)  # fmt: skip
    out.meta.update(backend=backend, width=width, height=height, n_cameras=c)
    return out


def _render_torch(
    means: Tensor,  # [..., N, 3]
    act: ActivatedGaussians,
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    background: Tensor | None,  # [..., C, 3]
    near_plane: float,
    far_plane: float,
    render_depth: bool,
    eps2d: float,
    antialiased: bool,
    tile_size: int,
    max_chunk_elements: int,
) -> RenderOutput:
    proj = ref.project_gaussians(
        means, act.quats, act.scales, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, opacities=act.opacities,
        antialiased=antialiased,
    )  # fmt: skip
    lead = proj.depths.shape[:-1]  # [..., C]
    n = means.shape[-2]
    n_images = math.prod(lead)
    opac = act.opacities[..., None, :].expand(lead + (n,))
    if proj.compensations is not None:
        opac = opac * proj.compensations
    feats = act.colors
    if render_depth:
        feats = torch.cat([feats, proj.depths[..., None]], dim=-1)
    bg = None
    if background is not None:
        bg = background.reshape(n_images, 3)
        if render_depth:
            bg = torch.cat([bg, bg.new_zeros(n_images, 1)], dim=-1)
    render, alpha = ref.rasterize_to_pixels(
        proj.means2d.reshape(n_images, n, 2), proj.conics.reshape(n_images, n, 3),
        opac.reshape(n_images, n), feats.reshape(n_images, n, -1),
        proj.depths.reshape(n_images, n), proj.radii.reshape(n_images, n, 2),
        width, height, tile_size=tile_size, backgrounds=bg,
        max_chunk_elements=max_chunk_elements,
    )  # fmt: skip
    render = render.reshape(lead + (height, width, -1))
    alpha = alpha.reshape(lead + (height, width, 1))
    depth = None
    if render_depth:
        depth = render[..., 3:4] / alpha.clamp(min=1e-10)
    meta = dict(radii=proj.radii, means2d=proj.means2d, depths=proj.depths,
                conics=proj.conics, opacities=opac, tile_size=tile_size)  # fmt: skip
    return RenderOutput(image=render[..., :3], alpha=alpha, depth=depth, meta=meta)


def _render_gsplat(
    means: Tensor,  # [..., N, 3]
    act: ActivatedGaussians,
    viewmats: Tensor,  # [..., C, 4, 4]
    Ks: Tensor,  # [..., C, 3, 3]
    width: int,
    height: int,
    background: Tensor | None,  # [..., C, 3]
    near_plane: float,
    far_plane: float,
    render_depth: bool,
    eps2d: float,
    antialiased: bool,
    tile_size: int,
    max_chunk_elements: int,
) -> RenderOutput:
    import gsplat  # lazily: importable on CPU-only machines

    del tile_size, max_chunk_elements  # gsplat uses its own 16-pixel tiles
    render, alpha, meta = gsplat.rasterization(
        means, act.quats, act.scales, act.opacities, act.colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=None,
        packed=False, backgrounds=background,
        render_mode="RGB+ED" if render_depth else "RGB",
        rasterize_mode="antialiased" if antialiased else "classic",
    )  # fmt: skip
    depth = render[..., 3:4] if render_depth else None
    return RenderOutput(image=render[..., :3], alpha=alpha, depth=depth, meta=dict(meta))
