"""Canonical Gaussians G_o = {μ_o, S_o, R_o, α_o, H_o} of one subject (DESIGN.md §2).

Two sets of per-Gaussian tensors, each in its own `nn.ParameterDict` (no network weight ever
shares them, because gsplat's densification strategy resizes every tensor it is given):

- face: one Gaussian per dense face point, bound to it. Its mean is the point itself (plus an
  optional small learned offset `offsets`), so it is not a free parameter; face Gaussians are
  never densified or pruned.
- otf: out-of-face Gaussians (hair, neck, shoulders, back of the head), initialised uniformly in
  a box around the head excluding a shell around the face surface; their means are free and
  gsplat's `DefaultStrategy` densifies and prunes them.

Raw, unconstrained values are stored: log-scales, logit opacities, unnormalised quaternions and
SH coefficients split gsplat-style into `sh0` [N, 1, 3] and `shN` [N, K-1, 3]. The rasterizer
applies the activations.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor, nn

SH_C0 = 0.28209479177387814  # Y_0^0
GAUSSIAN_KEYS = ("scales", "quats", "opacities", "sh0", "shN")


def rgb_to_sh0(rgb: Tensor) -> Tensor:  # [..., 3] -> [..., 3]
    """DC SH coefficient whose colour (C0 · sh0 + 0.5) is `rgb`."""
    return (rgb - 0.5) / SH_C0


def knn_log_scales(
    points: Tensor,  # [N, 3] mm
    k: int = 3,
    multiplier: float = 1.0,
    min_scale: float = 1e-3,
) -> Tensor:  # [N, 3] isotropic log-scales
    """log(multiplier · mean distance to the k nearest other points), the 3DGS initial scale."""
    n = points.shape[0]
    if n == 0:
        return points.new_zeros(0, 3)
    if n == 1:
        return points.new_zeros(1, 3)
    kk = min(k + 1, n)
    dist, _ = cKDTree(points.detach().cpu().double().numpy()).query(
        points.detach().cpu().double().numpy(), k=kk
    )
    mean = np.maximum(np.asarray(dist)[:, 1:].mean(axis=1) * multiplier, min_scale)
    s = torch.from_numpy(np.log(mean)).to(device=points.device, dtype=points.dtype)
    return s[:, None].expand(n, 3).contiguous()


def otf_bounds(
    face_points: Tensor,  # [V, 3] mm
    margin: float = 0.35,
    extend_down: float = 0.6,
) -> tuple[Tensor, Tensor]:  # ([3] box min, [3] box max)
    """A box around the head for the OTF points: the face bounding box grown by `margin` of its
    largest side on every side, further grown backwards (−z) to hold the back of the head and
    downwards (−y) by `extend_down` of its largest side for neck and shoulders."""
    lo, hi = face_points.min(dim=0).values, face_points.max(dim=0).values
    size = float((hi - lo).max())
    pad = margin * size
    lo = lo - pad
    hi = hi + pad
    lo = lo.clone()
    lo[1] = lo[1] - extend_down * size
    lo[2] = min(float(lo[2]), float(hi[2]) - 1.3 * size)  # room for the back of the head
    return lo, hi


def sample_otf_points(
    num: int,
    face_points: Tensor,  # [V, 3] mm
    box_min: Tensor,  # [3]
    box_max: Tensor,  # [3]
    min_face_distance: float = 3.0,
    seed: int = 0,
) -> Tensor:  # [num, 3]
    """`num` points uniform in the box, none closer than `min_face_distance` mm to a face point
    (rejection sampling, deterministic for a seed)."""
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    gen = torch.Generator().manual_seed(seed)
    tree = cKDTree(face_points.detach().cpu().double().numpy())
    lo, hi = box_min.detach().cpu().double(), box_max.detach().cpu().double()
    out: list[Tensor] = []
    have = 0
    for _ in range(100):
        if have >= num:
            break
        cand = lo + (hi - lo) * torch.rand(max(2 * (num - have), 16), 3, generator=gen).double()
        dist, _ = tree.query(cand.numpy(), k=1)
        keep = cand[torch.from_numpy(np.asarray(dist) >= min_face_distance)]
        out.append(keep)
        have += keep.shape[0]
    pts = torch.cat(out)[:num] if out else torch.zeros(0, 3, dtype=torch.float64)
    if pts.shape[0] < num:
        raise RuntimeError(f"could only place {pts.shape[0]} of {num} OTF points in the box")
    return pts.to(device=face_points.device, dtype=face_points.dtype)


def init_gaussians(
    points: Tensor,  # [N, 3]
    sh_degree: int,
    opacity: float,
    scale_multiplier: float = 1.0,
    rgb: Tensor | None = None,  # [N, 3] or None for mid grey
) -> dict[str, Tensor]:  # scales [N,3], quats [N,4], opacities [N], sh0 [N,1,3], shN [N,K-1,3]
    """Initial raw parameters of Gaussians at `points`: kNN scales, identity rotations, a
    uniform opacity and a flat colour."""
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"initial opacity must lie in (0, 1), got {opacity}")
    n = points.shape[0]
    k = (sh_degree + 1) ** 2
    quats = points.new_zeros(n, 4)
    quats[:, 0] = 1.0
    sh0 = points.new_zeros(n, 1, 3)
    if rgb is not None:
        sh0[:, 0] = rgb_to_sh0(rgb.to(points))
    return {
        "scales": knn_log_scales(points, multiplier=scale_multiplier),
        "quats": quats,
        "opacities": points.new_full((n,), math.log(opacity / (1.0 - opacity))),
        "sh0": sh0,
        "shN": points.new_zeros(n, k - 1, 3),
    }


class CanonicalGaussians(nn.Module):
    """Canonical Gaussians G_o of EmoTalk3D (He et al., ECCV 2024, §3.3; DESIGN.md §2).

    `face` holds per-dense-face-point tensors (offsets, scales, quats, opacities, sh0, shN);
    `otf` holds the free OTF Gaussians (means, scales, quats, opacities, sh0, shN). The
    canonical dense face points μ_o (the upsampled template) are a buffer.
    """

    def __init__(
        self,
        face_points: Tensor,  # [V, 3] canonical dense face points, mm
        num_otf: int = 2000,
        sh_degree: int = 1,
        face_opacity: float = 0.8,
        otf_opacity: float = 0.1,
        otf_margin: float = 0.35,
        otf_extend_down: float = 0.6,
        otf_min_face_distance: float = 3.0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            face_points: the subject's canonical dense face points μ_o (upsampled template).
            num_otf: number of OTF Gaussians before densification (85,500 at full scale).
            sh_degree: spherical-harmonics degree of the colours (0 to 3).
            face_opacity: initial opacity of face Gaussians.
            otf_opacity: initial opacity of OTF Gaussians.
            otf_margin: OTF box margin around the face, as a fraction of its largest side.
            otf_extend_down: extra OTF box extent below the face (neck, shoulders), same unit.
            otf_min_face_distance: OTF points start at least this far from the face (mm).
            seed: seed of the OTF sampling.
        """
        super().__init__()
        if face_points.ndim != 2 or face_points.shape[-1] != 3:
            raise ValueError(f"face_points must have shape [V, 3], got {tuple(face_points.shape)}")
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be 0..3, got {sh_degree}")
        self.sh_degree = sh_degree
        face_points = face_points.detach().float()
        self.register_buffer("face_points", face_points.clone())  # [V, 3]
        face = init_gaussians(face_points, sh_degree, face_opacity)
        face["offsets"] = torch.zeros_like(face_points)
        self.face = nn.ParameterDict({k: nn.Parameter(v) for k, v in face.items()})
        lo, hi = otf_bounds(face_points, otf_margin, otf_extend_down)
        otf_means = sample_otf_points(num_otf, face_points, lo, hi, otf_min_face_distance, seed)
        otf = init_gaussians(otf_means, sh_degree, otf_opacity)
        otf["means"] = otf_means
        self.otf = nn.ParameterDict({k: nn.Parameter(v) for k, v in otf.items()})

    @property
    def num_face(self) -> int:
        return self.face["scales"].shape[0]

    @property
    def num_otf(self) -> int:
        return self.otf["means"].shape[0]

    def face_sh(self) -> Tensor:  # [V, K, 3]
        return torch.cat([self.face["sh0"], self.face["shN"]], dim=1)

    def otf_sh(self) -> Tensor:  # [M, K, 3]
        return torch.cat([self.otf["sh0"], self.otf["shN"]], dim=1)

    def resize_otf(self, num: int) -> None:
        """Reallocate the OTF tensors with `num` rows (values undefined) so that a state dict
        saved after densification loads; called before `load_state_dict`."""
        for key, p in list(self.otf.items()):
            self.otf[key] = nn.Parameter(
                p.new_zeros((num, *p.shape[1:])), requires_grad=p.requires_grad
            )
