"""G2ANet: zero-initialised residual heads leave G_o unchanged (DESIGN.md §2, §6.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d.gaussians.g2anet import G2ANet, positional_encoding, relative_motion


def test_last_layers_are_zero_initialised():
    net = G2ANet(sh_coeffs=4)
    for mlp in (net.feature_net, net.rotation_net):
        last = mlp[-1]
        assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
    assert sum(isinstance(m, torch.nn.Linear) for m in net.feature_net) == 4
    assert sum(isinstance(m, torch.nn.Linear) for m in net.rotation_net) == 2


def test_untrained_g2anet_is_identity_on_canonical():
    torch.manual_seed(0)
    T, V, K = 3, 20, 4
    net = G2ANet(sh_coeffs=K)
    sh = torch.randn(V, K, 3)
    quats = torch.randn(V, 4)
    uvs = torch.rand(V, 2)
    emo = torch.rand(T, 9)
    dmu = torch.randn(T, V, 3) * 5
    sh_t, q_t = net(sh, quats, uvs, emo, dmu)
    assert sh_t.shape == (T, V, K, 3) and q_t.shape == (T, V, 4)
    assert torch.equal(sh_t, sh[None].expand(T, -1, -1, -1))
    assert torch.equal(q_t, quats[None].expand(T, -1, -1))
    # ...and a trained (perturbed) head does change them, so the test can fail.
    with torch.no_grad():
        net.feature_net[-1].bias.fill_(0.1)
    assert not torch.allclose(net(sh, quats, uvs, emo, dmu)[0], sh[None])


def test_head_untrained_frame_equals_canonical():
    from emotalk3d.gaussians.model import GaussianHead

    n = 5
    xs, ys = np.meshgrid(np.linspace(-50, 50, n), np.linspace(-50, 50, n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1).astype(np.float32)
    f = [[i * n + j, i * n + j + 1, i * n + j + n] for i in range(n - 1) for j in range(n - 1)]
    uv = (v[:, :2] + 50) / 100
    head = GaussianHead(v, f, uv, num_otf=40, sh_degree=1)
    pts = torch.as_tensor(v)[None] + torch.randn(2, *v.shape) * 2.0
    fg = head.frame_gaussians(pts, torch.rand(2, 9))
    V = head.num_face
    can = head.canonical_gaussians()
    assert torch.equal(fg.sh[:, :V], can["sh"][:V][None].expand(2, -1, -1, -1))
    assert torch.equal(fg.quats[:, :V], can["quats"][:V][None].expand(2, -1, -1))


def test_relative_motion_removes_mean():
    mu_o = torch.randn(10, 3)
    shift = torch.tensor([1.0, -2.0, 3.0])
    local = torch.randn(10, 3)
    local = local - local.mean(0)
    mu_t = (mu_o + shift + local)[None]
    assert torch.allclose(relative_motion(mu_t, mu_o)[0], local, atol=1e-6)


def test_positional_encoding_shape_and_validation():
    x = torch.rand(5, 2)
    assert positional_encoding(x, 6).shape == (5, 2 * 13)
    assert torch.equal(positional_encoding(x, 0), x)
    net = G2ANet(sh_coeffs=4)
    with pytest.raises(ValueError, match=r"emotion must have shape \[T, 9\]"):
        net(torch.zeros(3, 4, 3), torch.zeros(3, 4), torch.zeros(3, 2), torch.zeros(1, 5),
            torch.zeros(1, 3, 3))  # fmt: skip


def test_split_first_layer_matches_the_concatenating_twin():
    """`forward` (first layer applied per input part, in-place ReLUs) equals
    `forward_reference` (networks on the concatenated input) in outputs and gradients."""
    torch.manual_seed(1)
    T, V, K = 3, 50, 4
    net = G2ANet(sh_coeffs=K, hidden=32).double()
    with torch.no_grad():  # trained-like: non-zero residual heads
        for mlp in (net.feature_net, net.rotation_net):
            mlp[-1].weight.normal_(0.0, 0.3)
            mlp[-1].bias.normal_(0.0, 0.1)
    inputs = [
        torch.randn(V, K, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(V, 4, dtype=torch.float64, requires_grad=True),
        torch.rand(V, 2, dtype=torch.float64),
        torch.rand(T, 9, dtype=torch.float64),
        (torch.randn(T, V, 3, dtype=torch.float64) * 5).requires_grad_(),
    ]
    fast = net(*inputs)
    slow = net.forward_reference(*inputs)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    weights = [torch.randn_like(x) for x in fast]
    params = [*net.parameters(), inputs[0], inputs[1], inputs[4]]

    def grads(outputs):
        loss = sum((w * x).sum() for w, x in zip(weights, outputs, strict=True))
        return torch.autograd.grad(loss, params)

    g_fast, g_slow = grads(fast), grads(slow)
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert any(float(g.abs().max()) > 0 for g in g_fast[:4])  # the check is not vacuous


def test_inference_caches_the_per_point_parts_until_a_weight_changes():
    """Without autograd, `frame_gaussians` reuses G2ANet's per-point first-layer parts; an
    in-place weight update (what an optimiser step does) must invalidate them."""
    from emotalk3d.gaussians.model import GaussianHead

    n = 5
    xs, ys = np.meshgrid(np.linspace(-50, 50, n), np.linspace(-50, 50, n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1).astype(np.float32)
    f = [[i * n + j, i * n + j + 1, i * n + j + n] for i in range(n - 1) for j in range(n - 1)]
    head = GaussianHead(v, f, (v[:, :2] + 50) / 100, num_otf=40, sh_degree=1, g2anet_hidden=16)
    with torch.no_grad():
        for mlp in (head.g2anet.feature_net, head.g2anet.rotation_net):
            mlp[-1].weight.normal_(0.0, 0.5)
    pts = torch.as_tensor(v)[None] + torch.randn(2, *v.shape) * 2.0
    emo = torch.rand(2, 9)

    def uncached():  # autograd on: computed in the graph, never cached
        g = head.frame_gaussians(pts, emo)
        return g.sh.detach(), g.quats.detach()

    with torch.no_grad():
        first = head.frame_gaussians(pts, emo)
        entry = head.__dict__["_static_cache"]
        again = head.frame_gaussians(pts, emo)
        assert head.__dict__["_static_cache"] is entry  # reused
        assert torch.equal(first.sh, again.sh)
        torch.testing.assert_close(first.sh, uncached()[0], rtol=1e-5, atol=1e-6)
        head.g2anet.feature_net[0].weight.add_(0.05)  # an optimiser-like in-place update
        head.g2anet.rotation_net[0].bias.add_(0.05)
        after = head.frame_gaussians(pts, emo)
    assert head.__dict__["_static_cache"] is not entry
    sh_ref, q_ref = uncached()
    torch.testing.assert_close(after.sh, sh_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after.quats, q_ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after.sh, first.sh)
