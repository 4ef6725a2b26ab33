"""The Gaussian rasterizer: closed forms, compositing order, fast path vs slow twin, gradients,
memory, backgrounds and input validation (torch backend; gsplat is compared in
test_reference_vs_gsplat.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from emotalk3d.render import _reference as ref
from emotalk3d.render.rasterize import activate, render_gaussians
from emotalk3d.render.sh import SH_C0, rgb_to_sh0

F64 = torch.float64


def _camera(c: int = 1, f: float = 50.0, w: int = 32, h: int = 32, dtype=F64):
    viewmats = torch.eye(4, dtype=dtype).repeat(c, 1, 1)  # camera at the origin looking +z
    Ks = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=dtype).repeat(c, 1, 1)
    return viewmats, Ks


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _random_scene(n: int, c: int = 2, w: int = 40, h: int = 30, dtype=F64, seed: int = 0, k=4):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([25, 20, 15], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.log(torch.rand(n, 3, generator=g, dtype=dtype) * 4 + 0.5)
    opac = torch.randn(n, generator=g, dtype=dtype)
    sh = torch.randn(n, k, 3, generator=g, dtype=dtype) * 0.4
    viewmats = torch.eye(4, dtype=dtype).repeat(c, 1, 1)
    viewmats[:, 2, 3] = 150.0
    viewmats[1:, 0, 3] = 12.0  # second camera shifted sideways
    Ks = torch.tensor([[60.0, 0, w / 2], [0, 60.0, h / 2], [0, 0, 1]], dtype=dtype)
    return means, quats, scales, opac, sh, viewmats, Ks.repeat(c, 1, 1), w, h


def test_single_isotropic_gaussian_matches_closed_form():
    f, z, sigma, op = 50.0, 100.0, 2.0, 0.8
    rgb = torch.tensor([0.9, 0.3, 0.1], dtype=F64)
    bg = torch.tensor([0.1, 0.2, 0.7], dtype=F64)
    viewmats, Ks = _camera(f=f)
    out = render_gaussians(
        torch.tensor([[0.0, 0.0, z]], dtype=F64),
        torch.tensor([[2.0, 0.0, 0.0, 0.0]], dtype=F64),  # unnormalised identity
        torch.full((1, 3), math.log(sigma), dtype=F64),
        torch.tensor([_logit(op)], dtype=F64),
        rgb_to_sh0(rgb)[None],
        viewmats,
        Ks,
        32,
        32,
        backend="torch",
        background=bg,
    )
    var = (f * sigma / z) ** 2 + 0.3  # EWA-projected variance plus the eps2d blur
    c = torch.arange(32, dtype=F64) + 0.5 - 16.0  # pixel centres relative to the principal point
    r2 = c[None, :] ** 2 + c[:, None] ** 2
    alpha = op * torch.exp(-r2 / (2 * var))
    alpha = torch.where(alpha >= 1 / 255, alpha.clamp(max=0.999), torch.zeros_like(alpha))
    expected = rgb * alpha[..., None] + bg * (1 - alpha[..., None])
    assert out.image.shape == (1, 32, 32, 3)
    torch.testing.assert_close(out.alpha[0, ..., 0], alpha, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.image[0], expected, atol=1e-12, rtol=0)
    depth = out.depth[0, ..., 0]
    torch.testing.assert_close(depth[alpha > 0], torch.full_like(depth[alpha > 0], z))
    assert (depth[alpha == 0] == 0).all()


def _two_gaussians(order):
    near = ([0.0, 0.0, 80.0], [1.0, 0.0, 0.0], 0.7)
    far = ([1.0, 0.5, 120.0], [0.0, 1.0, 0.0], 0.9)
    gs = [near, far] if order == "near_first" else [far, near]
    means = torch.tensor([g[0] for g in gs], dtype=F64)
    colors = rgb_to_sh0(torch.tensor([g[1] for g in gs], dtype=F64))
    opac = torch.tensor([_logit(g[2]) for g in gs], dtype=F64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=F64)
    scales = torch.full((2, 3), math.log(3.0), dtype=F64)
    return means, quats, scales, opac, colors


def test_two_gaussians_composite_front_to_back_in_depth_order():
    viewmats, Ks = _camera()
    outs = [
        render_gaussians(*_two_gaussians(o), viewmats, Ks, 32, 32, backend="torch")
        for o in ("near_first", "far_first")
    ]
    torch.testing.assert_close(outs[0].image, outs[1].image, atol=0, rtol=0)
    px = outs[0].image[0, 16, 16]  # both Gaussians cover the centre pixel
    assert px[0] > px[1] > 0.0  # the nearer (red) dominates the farther (green)
    # closed form at the centre pixel: c = red a1 + green a2 (1 - a1)
    f, s2 = 50.0, 9.0

    def alpha_at(mean, op):  # EWA: cov2d = s^2 J J^T + 0.3 I, J the pinhole Jacobian
        x, y, z = mean
        jac = torch.tensor([[f / z, 0, -f * x / z**2], [0, f / z, -f * y / z**2]], dtype=F64)
        cov = s2 * jac @ jac.T + 0.3 * torch.eye(2, dtype=F64)
        d = torch.tensor([16.5 - (f * x / z + 16.0), 16.5 - (f * y / z + 16.0)], dtype=F64)
        return op * math.exp(-0.5 * float(d @ torch.linalg.solve(cov, d)))

    a1 = alpha_at([0.0, 0.0, 80.0], 0.7)
    a2 = alpha_at([1.0, 0.5, 120.0], 0.9)
    expected = torch.tensor([a1, a2 * (1 - a1), 0.0], dtype=F64)
    torch.testing.assert_close(px, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        outs[0].alpha[0, 16, 16, 0], torch.tensor(a1 + a2 * (1 - a1), dtype=F64)
    )


def _projected(scene, antialiased=False):
    means, quats, scales, opac, sh, viewmats, Ks, w, h = scene
    act = activate(means, quats, scales, opac, sh, viewmats)
    proj = ref.project_gaussians(
        means, act.quats, act.scales, viewmats, Ks, w, h, opacities=act.opacities,
        antialiased=antialiased,
    )  # fmt: skip
    c, n = proj.depths.shape
    opac_c = act.opacities.expand(c, n)
    feats = torch.cat([act.colors, proj.depths[..., None]], dim=-1)
    return proj, opac_c, feats, w, h


@pytest.mark.parametrize(
    "tile_size,budget,slab", [(8, 1 << 22, 64), (16, 1 << 22, None), (4, 1000, 16), (8, 4096, None)]
)
def test_tiled_fast_path_equals_dense_twin(tile_size, budget, slab):
    """Small budgets and slabs force depth slabs, carried transmittance and tile dropping."""
    scene = list(_random_scene(120))
    scene[3] = scene[3].clamp(min=_logit(0.9))  # opaque: many pixels stop at the 1e-4 rule
    proj, opac, feats, w, h = _projected(scene)
    bg = torch.tensor([[0.2, 0.3, 0.4, 0.0], [1.0, 0.0, 0.5, 0.0]], dtype=F64)
    args = (proj.means2d, proj.conics, opac, feats, proj.depths, proj.radii, w, h)
    fast = ref.rasterize_to_pixels(
        *args, tile_size=tile_size, backgrounds=bg, max_chunk_elements=budget, slab=slab
    )
    slow = ref.rasterize_pixels_dense(*args, backgrounds=bg)
    assert (slow[1] > 0.9998).any() and (slow[1] < 0.5).any()  # opaque and sparse pixels
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    with torch.no_grad():  # the in-place (no autograd) variant
        fast_ng = ref.rasterize_to_pixels(
            *args, tile_size=tile_size, backgrounds=bg, max_chunk_elements=budget, slab=slab
        )
    for a, b in zip(fast_ng, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_tiled_fast_path_gradients_equal_dense_twin():
    proj, opac, feats, w, h = _projected(_random_scene(60, w=24, h=20))
    leaves = [proj.means2d.detach(), proj.conics.detach(), opac.detach(), feats.detach()]
    grads = []
    for fn in ("fast", "slow"):
        xs = [x.clone().requires_grad_(True) for x in leaves]
        args = (*xs, proj.depths, proj.radii, w, h)
        if fn == "fast":
            img, alpha = ref.rasterize_to_pixels(*args, tile_size=4, max_chunk_elements=500, slab=5)
        else:
            img, alpha = ref.rasterize_pixels_dense(*args)
        g = torch.Generator().manual_seed(1)
        loss = (img * torch.rand(img.shape, generator=g, dtype=F64)).sum() + (alpha**2).sum()
        grads.append(torch.autograd.grad(loss, xs))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


def test_gradcheck_tiny_scene():
    """Autograd gradients of the whole pipeline equal finite differences (float64)."""
    means = torch.tensor([[0.0, 0.0, 60.0], [3.0, -2.0, 70.0], [-2.0, 1.0, 65.0]], dtype=F64)
    quats = torch.tensor([[1.0, 0.1, 0.2, 0.0], [0.9, 0.0, 0.3, 0.1], [1.0, 0, 0, 0.2]], dtype=F64)
    scales = torch.log(torch.tensor([[2.0, 3.0, 2.5], [2.5, 2.0, 2.0], [3.0, 2.0, 3.5]], dtype=F64))
    opac = torch.tensor([0.2, -0.3, 0.5], dtype=F64)
    sh = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.3
    viewmats, Ks = _camera(f=12.0, w=8, h=8)

    def fn(means, scales, opac, sh):
        out = render_gaussians(
            means, quats, scales, opac, sh, viewmats, Ks, 8, 8, backend="torch", tile_size=4
        )
        return out.image, out.alpha

    inputs = tuple(x.clone().requires_grad_(True) for x in (means, scales, opac, sh))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_batch_dimension_equals_separate_renders():
    means, quats, scales, opac, sh, viewmats, Ks, w, h = _random_scene(50)
    means_b = torch.stack([means, means + torch.tensor([3.0, 0, 0], dtype=F64)])
    rep = [x.expand(2, *x.shape) for x in (quats, scales, opac, sh)]
    out = render_gaussians(means_b, *rep, viewmats, Ks, w, h, backend="torch")
    assert out.image.shape == (2, 2, h, w, 3)
    for b in range(2):
        single = render_gaussians(means_b[b], quats, scales, opac, sh, viewmats, Ks, w, h)
        torch.testing.assert_close(out.image[b], single.image, atol=1e-12, rtol=0)
        torch.testing.assert_close(out.depth[b], single.depth, atol=1e-9, rtol=0)


def test_background_alpha_and_culling():
    means, quats, scales, opac, sh, viewmats, Ks, w, h = _random_scene(30)
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]], dtype=F64)
    behind = means.clone()
    behind[:, 2] = -200.0  # every Gaussian behind both cameras (camera z < near plane)
    empty = render_gaussians(behind, quats, scales, opac, sh, viewmats, Ks, w, h, background=bg)
    assert (empty.meta["radii"] == 0).all()
    assert (empty.alpha == 0).all() and (empty.depth == 0).all()
    torch.testing.assert_close(empty.image, bg[:, None, None, :].expand(2, h, w, 3))
    full = render_gaussians(means, quats, scales, opac, sh, viewmats, Ks, w, h, background=bg)
    black = render_gaussians(means, quats, scales, opac, sh, viewmats, Ks, w, h)
    # image over a background = image over black + (1 - alpha) * background
    torch.testing.assert_close(full.image, black.image + (1 - black.alpha) * bg[:, None, None])
    assert float(full.alpha.max()) > 0.5  # the scene does cover pixels
    assert float(full.alpha.max()) <= 1.0 and float(full.alpha.min()) >= 0.0


def test_degree_zero_colour_is_sh0_c0_plus_half_and_clamped():
    viewmats, Ks = _camera()
    means = torch.tensor([[0.0, 0.0, 100.0]], dtype=F64)
    dc = torch.tensor([[0.5, -3.0, 0.0]], dtype=F64)  # green clamps to 0
    act = activate(means, torch.ones(1, 4, dtype=F64), torch.zeros(1, 3, dtype=F64),
                   torch.zeros(1, dtype=F64), dc, viewmats)  # fmt: skip
    expected = torch.tensor([0.5 * SH_C0 + 0.5, 0.0, 0.5], dtype=F64)
    torch.testing.assert_close(act.colors[0, 0], expected)
    torch.testing.assert_close(act.opacities, torch.tensor([0.5], dtype=F64))
    torch.testing.assert_close(act.quats, torch.full((1, 4), 0.5, dtype=F64))


def test_antialiased_scales_opacity_by_compensation():
    scene = _random_scene(40)
    proj, _, _, _, _ = _projected(scene, antialiased=True)
    assert proj.compensations is not None and (proj.compensations <= 1).all()
    a = render_gaussians(*scene[:7], scene[7], scene[8], antialiased=True)
    b = render_gaussians(*scene[:7], scene[7], scene[8])
    assert float(a.alpha.sum()) < float(b.alpha.sum())


def test_meta_means2d_receives_gradients_for_densification():
    means, quats, scales, opac, sh, viewmats, Ks, w, h = _random_scene(30, dtype=torch.float32)
    means.requires_grad_(True)
    out = render_gaussians(means, quats, scales, opac, sh, viewmats, Ks, w, h)
    assert out.meta["backend"] == "torch" and out.meta["n_cameras"] == 2
    means2d = out.meta["means2d"]
    means2d.retain_grad()
    out.image.sum().backward()
    visible = (out.meta["radii"] > 0).all(-1)
    assert means2d.grad is not None and means2d.grad[visible].abs().sum() > 0


def test_bounded_memory_512px_100k_gaussians():
    """Peak RSS growth of a 512x512 render of 100k Gaussians stays under 1.5 GB (subprocess)."""
    code = textwrap.dedent(
        """
        import json, resource, torch
        from emotalk3d.render.rasterize import render_gaussians
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(0)
        n = 100_000
        means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([160.0, 220.0, 190.0])
        quats = torch.randn(n, 4, generator=g)
        scales = torch.full((n, 3), -0.5)  # 0.6 mm: a few pixels each
        opac = torch.randn(n, generator=g)
        sh = torch.randn(n, 4, 3, generator=g) * 0.3
        vm = torch.eye(4)[None].clone(); vm[0, 2, 3] = 650.0
        K = torch.tensor([[950.0, 0, 256], [0, 950.0, 256], [0, 0, 1]])[None]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            out = render_gaussians(means, quats, scales, opac, sh, vm, K, 512, 512,
                                   backend="torch")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"growth_mb": (after - before) / 1024,
                          "alpha": float(out.alpha.mean())}))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert stats["alpha"] > 0.1  # it rendered something
    assert stats["growth_mb"] < 1500, stats


@pytest.mark.parametrize(
    "change,match",
    [
        ({"means": torch.zeros(5, 2)}, r"means must be \[N, 3\]"),
        ({"quats": torch.zeros(4, 4)}, r"quats must be \[5, 4\]"),
        ({"opacities": torch.zeros(5, 1)}, r"opacities must be \[5\]"),
        ({"colors": torch.zeros(5, 5, 3)}, r"K in 1, 4, 9, 16"),
        ({"colors": torch.zeros(5, 4)}, r"colors must be SH coefficients"),
        ({"viewmats": torch.eye(4)}, r"viewmats must be \[C, 4, 4\]"),
        ({"Ks": torch.eye(3).repeat(2, 1, 1)}, r"Ks must be \[1, 3, 3\]"),
        ({"background": torch.zeros(4)}, r"background must be None, \[3\]"),
        ({"sh_degree": 2}, r"sh_degree must be None or in 0..1"),
        ({"backend": "cuda"}, r"backend must be one of"),
        ({"width": 0}, r"width and height must be positive ints"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, match):
    kwargs = dict(
        means=torch.zeros(5, 3), quats=torch.ones(5, 4), scales=torch.zeros(5, 3),
        opacities=torch.zeros(5), colors=torch.zeros(5, 4, 3), viewmats=torch.eye(4)[None],
        Ks=torch.eye(3)[None], width=8, height=8,
    )  # fmt: skip
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        render_gaussians(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error path")
def test_gsplat_backend_without_cuda_names_the_fix():
    means, quats, scales, opac, sh, viewmats, Ks, w, h = _random_scene(5, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=r"CUDA-only.*backend='torch'"):
        render_gaussians(means, quats, scales, opac, sh, viewmats, Ks, w, h, backend="gsplat")
    auto = render_gaussians(means, quats, scales, opac, sh, viewmats, Ks, w, h, backend="auto")
    assert auto.meta["backend"] == "torch"
