"""The torch reference against gsplat, the library it mirrors (DESIGN.md section 3).

On CPU: projection, covariances, tile intersections and SH against gsplat's own pure-torch
functions in `gsplat.cuda._torch_impl` (gsplat 1.5.3). gsplat's pure-torch compositing
(`_rasterize_to_pixels`) calls its CUDA `rasterize_to_indices_in_range` and needs nerfacc, so
full images are compared on CUDA only: gsplat's rasterizer against ours, images and gradients.
"""

from __future__ import annotations

import gsplat
import pytest
import torch

from emotalk3d.render import _reference as ref
from emotalk3d.render.rasterize import activate, render_gaussians
from emotalk3d.render.sh import eval_sh

# gsplat is a hard dependency; only its private pure-torch module may move between releases.
gs_impl = pytest.importorskip(
    "gsplat.cuda._torch_impl",
    reason=f"gsplat {gsplat.__version__} has no private gsplat.cuda._torch_impl module",
)

F64 = torch.float64
CUDA_REASON = "needs CUDA (gsplat's rasterizer is CUDA-only)"


def _scene(n=400, c=3, w=64, h=48, seed=0, dtype=F64, device="cpu"):
    """Random Gaussians around the origin; some behind cameras, off-screen, or huge."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 40.0
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.log(torch.rand(n, 3, generator=g, dtype=dtype) * 5.0 + 0.05)
    opac = torch.randn(n, generator=g, dtype=dtype) * 2.0
    sh = torch.randn(n, 16, 3, generator=g, dtype=dtype) * 0.3
    viewmats = []
    for i in range(c):
        yaw = 0.6 * (i - (c - 1) / 2)
        rot = torch.tensor(
            [[torch.cos(torch.tensor(yaw)), 0, -torch.sin(torch.tensor(yaw))], [0, 1, 0],
             [torch.sin(torch.tensor(yaw)), 0, torch.cos(torch.tensor(yaw))]], dtype=dtype
        )  # fmt: skip
        vm = torch.eye(4, dtype=dtype)
        vm[:3, :3] = rot
        vm[:3, 3] = torch.tensor([3.0 * i, -2.0, 120.0], dtype=dtype)
        viewmats.append(vm)
    Ks = torch.tensor([[70.0, 0, w / 2 + 1.5], [0, 65.0, h / 2 - 2.0], [0, 0, 1]], dtype=dtype)
    out = (means, quats, scales, opac, sh, torch.stack(viewmats), Ks.repeat(c, 1, 1))
    return tuple(x.to(device) for x in out) + (w, h)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_covariance_world_to_camera_and_perspective_match_gsplat(seed):
    means, quats, scales, _, _, viewmats, Ks, w, h = _scene(seed=seed)
    unit = torch.nn.functional.normalize(quats, dim=-1)
    covars = ref.covariance_3d(unit, torch.exp(scales))
    gs_covars, _ = gs_impl._quat_scale_to_covar_preci(quats, torch.exp(scales), True, False)
    torch.testing.assert_close(covars, gs_covars)
    means_c, covars_c = ref.world_to_camera(means, covars, viewmats)
    gs_means_c, gs_covars_c = gs_impl._world_to_cam(means, covars, viewmats)
    torch.testing.assert_close(means_c, gs_means_c)
    torch.testing.assert_close(covars_c, gs_covars_c)
    means2d, covars2d = ref.perspective_project(means_c, covars_c, Ks, w, h)
    gs_means2d, gs_covars2d = gs_impl._persp_proj(means_c, covars_c, Ks, w, h)
    front = means_c[..., 2] > 1.0
    torch.testing.assert_close(means2d[front], gs_means2d[front])
    torch.testing.assert_close(covars2d[front], gs_covars2d[front])


@pytest.mark.parametrize("antialiased", [False, True])
@pytest.mark.parametrize("seed", [0, 3])
def test_fully_fused_projection_matches_gsplat(seed, antialiased):
    means, quats, scales, _, _, viewmats, Ks, w, h = _scene(seed=seed)
    unit = torch.nn.functional.normalize(quats, dim=-1)
    proj = ref.project_gaussians(
        means, unit, torch.exp(scales), viewmats, Ks, w, h, eps2d=0.3, near_plane=0.5,
        far_plane=400.0, antialiased=antialiased,
    )  # fmt: skip
    covars, _ = gs_impl._quat_scale_to_covar_preci(quats, torch.exp(scales), True, False)
    radii, means2d, depths, conics, comp = gs_impl._fully_fused_projection(
        means, covars, viewmats, Ks, w, h, eps2d=0.3, near_plane=0.5, far_plane=400.0,
        calc_compensations=antialiased,
    )  # fmt: skip
    assert torch.equal(proj.radii, radii)
    visible = (radii > 0).all(-1)
    assert 0 < int(visible.sum()) < visible.numel()  # some culled, some kept
    torch.testing.assert_close(proj.means2d[visible], means2d[visible])
    torch.testing.assert_close(proj.depths, depths)
    torch.testing.assert_close(proj.conics[visible], conics[visible])
    if antialiased:
        torch.testing.assert_close(proj.compensations[visible], comp[visible])
    else:
        assert proj.compensations is None and comp is None


def test_projection_gradients_match_gsplat():
    means, quats, scales, _, _, viewmats, Ks, w, h = _scene(n=60)
    weights = torch.randn(3, 60, 5, generator=torch.Generator().manual_seed(1), dtype=F64)

    def loss(ours: bool, means, quats, scales):
        unit = torch.nn.functional.normalize(quats, dim=-1)
        if ours:
            p = ref.project_gaussians(means, unit, torch.exp(scales), viewmats, Ks, w, h)
            m2, con = p.means2d, p.conics
        else:
            cov, _ = gs_impl._quat_scale_to_covar_preci(quats, torch.exp(scales), True, False)
            _, m2, _, con, _ = gs_impl._fully_fused_projection(means, cov, viewmats, Ks, w, h)
        return (torch.cat([m2, con], dim=-1) * weights).sum()

    grads = []
    for ours in (True, False):
        xs = [x.clone().requires_grad_(True) for x in (means, quats, scales)]
        grads.append(torch.autograd.grad(loss(ours, *xs), xs))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_tile_intersections_match_gsplat_isect_tiles():
    means, quats, scales, opac, _, viewmats, Ks, w, h = _scene(n=40, c=2, w=40, h=32)
    unit = torch.nn.functional.normalize(quats, dim=-1)
    proj = ref.project_gaussians(means, unit, torch.exp(scales) * 0.3, viewmats, Ks, w, h)
    means2d, radii, depths = proj.means2d.float(), proj.radii, proj.depths.float()
    tile, tx, ty = 8, 5, 4
    ours = ref.intersect_tiles(means2d, radii, depths, tile, tx, ty)
    _, isect_ids, flatten_ids = gs_impl._isect_tiles(means2d, radii, depths, tile, tx, ty)
    assert len(ours.flat_ids) == len(flatten_ids) > 0
    assert torch.equal(ours.flat_ids.long(), flatten_ids.long())
    hi = isect_ids >> 32  # gsplat packs (image << tile_bits) | tile above the depth bits
    tile_bits = (tx * ty).bit_length()
    tile_ids = (hi >> tile_bits) * (tx * ty) + (hi & ((1 << tile_bits) - 1))
    assert torch.equal(ours.tile_ids.long(), tile_ids)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_gsplat(degree):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g, dtype=F64) * 5.0  # not unit: both normalise
    coeffs = torch.randn(500, 16, 3, generator=g, dtype=F64)
    xs = [dirs.clone().requires_grad_(True), coeffs.clone().requires_grad_(True)]
    ys = [dirs.clone().requires_grad_(True), coeffs.clone().requires_grad_(True)]
    ours = eval_sh(degree, *xs)
    theirs = gs_impl._spherical_harmonics(degree, *ys)
    torch.testing.assert_close(ours, theirs)
    w = torch.randn(500, 3, generator=g, dtype=F64)
    ga = torch.autograd.grad((ours * w).sum(), xs, allow_unused=True)
    gb = torch.autograd.grad((theirs * w).sum(), ys, allow_unused=True)
    for a, b, x in zip(ga, gb, xs, strict=True):  # degree 0 does not depend on dirs
        zero = torch.zeros_like(x)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b)


def test_activated_colours_use_the_camera_to_gaussian_direction():
    means, quats, scales, opac, sh, viewmats, _, _, _ = _scene(n=30)
    act = activate(means, quats, scales, opac, sh, viewmats, sh_degree=3)
    campos = torch.inverse(viewmats)[:, :3, 3]  # gsplat's way of finding the camera centre
    dirs = means[None] - campos[:, None]
    expected = torch.clamp_min(
        gs_impl._spherical_harmonics(3, dirs, sh.expand(3, -1, -1, -1)) + 0.5, 0
    )
    torch.testing.assert_close(act.colors, expected)


# --------------------------------------------------------------------------------------------
# CUDA: gsplat's rasterizer against ours


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


@pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)
@pytest.mark.parametrize("seed", [0, 1])
def test_gsplat_backend_matches_torch_reference_on_cuda(seed):
    scene = _scene(n=2000, c=2, w=96, h=80, seed=seed, dtype=torch.float32, device="cuda")
    means, quats, scales, opac, sh, viewmats, Ks, w, h = scene
    bg = torch.tensor([0.2, 0.4, 0.6], device="cuda")
    results = {}
    for backend in ("gsplat", "torch"):
        xs = [x.clone().requires_grad_(True) for x in (means, quats, scales, opac, sh)]
        out = render_gaussians(*xs, viewmats, Ks, w, h, backend=backend, background=bg)
        g = torch.Generator(device="cuda").manual_seed(7)
        loss = (out.image * torch.rand(out.image.shape, generator=g, device="cuda")).sum()
        results[backend] = (out, torch.autograd.grad(loss + out.alpha.sum(), xs))
    (og, gg), (ot, gt) = results["gsplat"], results["torch"]
    assert _rel_err(og.image, ot.image) < 1e-3
    assert _rel_err(og.alpha, ot.alpha) < 1e-3
    valid = (og.alpha > 0.5) & (ot.alpha > 0.5)
    assert _rel_err(og.depth[valid], ot.depth[valid]) < 1e-3
    for name, a, b in zip(("means", "quats", "scales", "opacities", "sh"), gg, gt, strict=True):
        assert _rel_err(a, b) < 1e-3, name
