"""G2ANet: geometry-to-appearance networks for the dynamic face Gaussians (DESIGN.md §2).

For every dense face point and frame, with e the emotion vector, p the point's UV position
(positionally encoded) and δμ its motion relative to the face's mean motion,

    H_t = H_o + FeatureNet(H_o, e, PE(p), δμ)      (4-layer MLP, all SH coefficients)
    R_t = R_o + RotationNet(R_o, e, PE(p), δμ)     (2-layer MLP)

Both heads are zero-initialised residuals, so an untrained G2ANet returns G_o exactly. The
rotation residual is added to the raw (unnormalised) quaternion; the rasterizer normalises
quaternions in its single activation step, so R_o + ΔR is a valid rotation for any small ΔR
and the addition needs no special case at ΔR = 0 (a quaternion product would, at the cost of
a normalisation here).

`relative_motion` and `positional_encoding` are pure functions; the networks are plain
`nn.Module`s vectorised over frames and points.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def positional_encoding(
    x: Tensor,  # [..., D]
    num_freqs: int,
) -> Tensor:  # [..., D * (1 + 2 * num_freqs)]
    """NeRF-style encoding [x, sin(2^k π x), cos(2^k π x)] for k = 0..num_freqs−1."""
    if num_freqs < 0:
        raise ValueError(f"num_freqs must be >= 0, got {num_freqs}")
    if num_freqs == 0:
        return x
    freqs = (2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)) * math.pi
    angles = x[..., None] * freqs  # [..., D, F]
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [..., D, 2F]
    return torch.cat([x, enc.flatten(-2)], dim=-1)


def relative_motion(
    means_t: Tensor,  # [..., V, 3] μ_t of the dense face points
    means_o: Tensor,  # [V, 3] μ_o
) -> Tensor:  # [..., V, 3]
    """δμ = μ_t − μ_o − mean over face points of (μ_t − μ_o): motion with the rigid mean
    translation removed, so the networks see local deformation."""
    motion = means_t - means_o
    return motion - motion.mean(dim=-2, keepdim=True)


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """`layers` linear layers (ReLU between); the last one zero-initialised (a residual head)."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {layers}")
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.ReLU())
    last = mods[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*mods)


class G2ANet(nn.Module):
    """FeatureNet and RotationNet of EmoTalk3D (He et al., ECCV 2024, §3.3; DESIGN.md §2).

    Inputs per face point and frame: the canonical attribute (all SH coefficients for
    FeatureNet, the normalised canonical quaternion for RotationNet), the emotion vector e, the
    positionally encoded UV p and δμ / motion_scale. Zero-initialised output layers make the
    untrained network the identity on G_o.
    """

    def __init__(
        self,
        sh_coeffs: int = 16,
        emotion_dim: int = 9,
        uv_freqs: int = 6,
        hidden: int = 128,
        feature_layers: int = 4,
        rotation_layers: int = 2,
        motion_scale: float = 10.0,
    ) -> None:
        """
        Args:
            sh_coeffs: SH coefficients per colour channel, (sh_degree + 1) ** 2.
            emotion_dim: size E of the emotion vector.
            uv_freqs: frequencies of the UV positional encoding.
            hidden: width of the hidden layers of both networks.
            feature_layers: linear layers of FeatureNet (the paper's 4).
            rotation_layers: linear layers of RotationNet (the paper's 2).
            motion_scale: δμ is divided by this (mm) before entering the networks.
        """
        super().__init__()
        if motion_scale <= 0:
            raise ValueError(f"motion_scale must be > 0 (mm), got {motion_scale}")
        self.sh_coeffs = sh_coeffs
        self.emotion_dim = emotion_dim
        self.uv_freqs = uv_freqs
        self.motion_scale = motion_scale
        cond = emotion_dim + 2 * (1 + 2 * uv_freqs) + 3
        self.feature_net = _mlp(sh_coeffs * 3 + cond, hidden, sh_coeffs * 3, feature_layers)
        self.rotation_net = _mlp(4 + cond, hidden, 4, rotation_layers)

    def forward(
        self,
        sh: Tensor,  # [V, K, 3] canonical SH coefficients H_o
        quats: Tensor,  # [V, 4] canonical raw quaternions R_o
        uvs: Tensor,  # [V, 2] UV positions p in [0, 1]
        emotion: Tensor,  # [T, E]
        delta_mu: Tensor,  # [T, V, 3] δμ (mm)
        static: tuple[Tensor, Tensor] | None = None,  # `static_parts(sh, quats, uvs)`
    ) -> tuple[Tensor, Tensor]:  # (H_t [T, V, K, 3], R_t [T, V, 4])
        """Per-frame SH coefficients and raw quaternions of the face Gaussians.

        The first layer of each network is applied in parts instead of to the concatenated
        input [attribute, e, PE(p), δμ]: the per-point parts (attribute, PE(p)) once per point,
        the emotion once per frame and only δμ per point and frame, summed by broadcasting;
        ReLUs run in place. Same function as `forward_reference` (the concatenating twin, which
        the tests compare outputs and gradients against), without the [T, V, input] copies.
        """
        V, K, T = self._check(sh, quats, uvs, emotion, delta_mu)
        dtype = sh.dtype
        if static is None:
            static = self.static_parts(sh, quats, uvs)
        e = emotion.to(dtype)  # [T, E]
        motion = delta_mu.to(dtype) / self.motion_scale  # [T, V, 3]
        d_sh = self._run(self.feature_net, static[0], e, motion)  # [T, V, 3K]
        d_q = self._run(self.rotation_net, static[1], e, motion)  # [T, V, 4]
        return sh[None] + d_sh.reshape(T, V, K, 3), quats[None] + d_q

    def static_parts(
        self,
        sh: Tensor,  # [V, K, 3] canonical SH coefficients H_o
        quats: Tensor,  # [V, 4] canonical raw quaternions R_o
        uvs: Tensor,  # [V, 2] UV positions p in [0, 1]
    ) -> tuple[Tensor, Tensor]:  # ([V, H] FeatureNet, [V, H] RotationNet)
        """The per-point part of each network's first layer: W_attr · attribute + W_p · PE(p)
        + bias. It depends on the canonical Gaussians and the weights only, so inference may
        compute it once and pass it to `forward` for every batch of frames."""
        V, K, _ = sh.shape
        pe = positional_encoding(uvs.to(sh.dtype), self.uv_freqs)  # [V, Dp]
        q_in = torch.nn.functional.normalize(quats, dim=-1)
        out = []
        for net, attr in ((self.feature_net, sh.reshape(V, K * 3)), (self.rotation_net, q_in)):
            first = net[0]
            assert isinstance(first, nn.Linear)
            a, p = attr.shape[-1], pe.shape[-1]
            w_attr, _, w_pe, _ = first.weight.split([a, self.emotion_dim, p, 3], dim=1)
            out.append(torch.addmm(first.bias, attr, w_attr.t()).addmm_(pe, w_pe.t()))
        return out[0], out[1]

    def _run(
        self,
        net: nn.Sequential,
        static: Tensor,  # [V, H] `static_parts` of this network
        emotion: Tensor,  # [T, E]
        motion: Tensor,  # [T, V, 3]
    ) -> Tensor:  # [T, V, out]
        """`net` on [attribute, emotion, PE(p), motion] with its first layer split by input
        part: the per-point part given, the emotion once per frame, motion per point and frame."""
        first = net[0]
        assert isinstance(first, nn.Linear)
        n, dp, de = first.in_features, 2 * (1 + 2 * self.uv_freqs), self.emotion_dim
        w_e = first.weight[:, n - 3 - dp - de : n - 3 - dp]  # input order: attr, e, PE(p), δμ
        w_m = first.weight[:, n - 3 :]
        x = torch.matmul(motion, w_m.t())  # [T, V, H]
        x = x.add_(static).add_((emotion @ w_e.t())[:, None, :])
        for layer in net[1:]:
            x = x.relu_() if isinstance(layer, nn.ReLU) else layer(x)
        return x

    def forward_reference(
        self,
        sh: Tensor,  # [V, K, 3]
        quats: Tensor,  # [V, 4]
        uvs: Tensor,  # [V, 2]
        emotion: Tensor,  # [T, E]
        delta_mu: Tensor,  # [T, V, 3]
    ) -> tuple[Tensor, Tensor]:  # (H_t [T, V, K, 3], R_t [T, V, 4])
        """The slow, obviously correct twin of `forward`: each network on the concatenated
        input [attribute, e, PE(p), δμ / motion_scale] of every point and frame."""
        V, K, T = self._check(sh, quats, uvs, emotion, delta_mu)
        pe = positional_encoding(uvs.to(sh.dtype), self.uv_freqs)  # [V, Dp]
        cond = torch.cat(
            [
                emotion[:, None, :].to(sh.dtype).expand(T, V, -1),
                pe[None].expand(T, -1, -1),
                delta_mu.to(sh.dtype) / self.motion_scale,
            ],
            dim=-1,
        )  # [T, V, Dc]
        sh_flat = sh.reshape(V, K * 3)
        d_sh = self.feature_net(torch.cat([sh_flat[None].expand(T, -1, -1), cond], dim=-1))
        q_in = torch.nn.functional.normalize(quats, dim=-1)
        d_q = self.rotation_net(torch.cat([q_in[None].expand(T, -1, -1), cond], dim=-1))
        return sh[None] + d_sh.reshape(T, V, K, 3), quats[None] + d_q

    def _check(
        self,
        sh: Tensor,  # [V, K, 3]
        quats: Tensor,  # [V, 4]
        uvs: Tensor,  # [V, 2]
        emotion: Tensor,  # [T, E]
        delta_mu: Tensor,  # [T, V, 3]
    ) -> tuple[int, int, int]:  # V, K, T
        V, K, _ = sh.shape
        T = emotion.shape[0]
        if K != self.sh_coeffs:
            raise ValueError(
                f"sh has {K} coefficients per channel, G2ANet expects {self.sh_coeffs}"
            )
        if emotion.ndim != 2 or emotion.shape[-1] != self.emotion_dim:
            raise ValueError(
                f"emotion must have shape [T, {self.emotion_dim}], got {tuple(emotion.shape)}"
            )
        if delta_mu.shape != (T, V, 3):
            raise ValueError(f"delta_mu must have shape [{T}, {V}, 3], got {tuple(delta_mu.shape)}")
        assert quats.shape == (V, 4) and uvs.shape == (V, 2), (quats.shape, uvs.shape)
        return V, K, T
