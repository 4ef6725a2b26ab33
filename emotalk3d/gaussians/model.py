"""The per-frame Gaussian head: canonical + G2ANet + completion + blending (DESIGN.md §1-2).

`GaussianHead.frame_gaussians(sparse_points [T, P, 3], emotion [T or 1, E])` turns a batch of
frames of face geometry into raw Gaussian parameters for the rasterizer, vectorised over frames
and Gaussians:

1. dense face points μ_t = U · sparse_t (+ learned canonical offsets): the face Gaussians' means;
2. G2ANet: per-frame SH colours H_t and raw rotations R_t of the face Gaussians;
3. head completion: the dynamic copies of the OTF Gaussians move with their nearest face point,
   damped by exp(−α d);
4. opacity blending: canonical OTF copies (static, at μ_o) with opacity × W_p and dynamic OTF
   copies with opacity × (1 − W_p); copies with zero weight are left out.

Gaussian order in a frame: [face (V) | dynamic OTF copies | canonical OTF copies]; `otf_ids`
maps every rendered Gaussian to its OTF parameter row (−1 for face Gaussians), which is what
the densification strategy needs.

The module holds per-Gaussian tensors (in `canonical`) and network weights (in `g2anet`) in
separate containers. The nearest-face-point assignment and the blend weights are cached as
non-persistent buffers: computed once per subject for inference (`refresh_completion`, called
automatically when the OTF count changes) and refreshed by the trainer as OTF means move.

`save_appearance` / `load_appearance` write and read a trained head as safetensors plus a small
JSON (config and version); loading needs neither Lightning nor the dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from emotalk3d.constants import EMOTION_DIM
from emotalk3d.gaussians.blend import (
    DEFAULT_D0,
    DEFAULT_D_TH,
    blend_selection,
    blend_weights,
    weighted_opacity_logit,
)
from emotalk3d.gaussians.canonical import CanonicalGaussians
from emotalk3d.gaussians.completion import (
    DEFAULT_ALPHA,
    complete_motion,
    motion_decay,
    nearest_face_points,
)
from emotalk3d.gaussians.g2anet import G2ANet, relative_motion
from emotalk3d.geometry.upsample import Upsampler

APPEARANCE_FORMAT_VERSION = 1


@dataclass
class FrameGaussians:
    """Raw (pre-activation) Gaussian parameters of T frames; the rasterizer activates them.

    Attributes:
        means: [T, N, 3] mm.
        quats: [T, N, 4] unnormalised.
        scales: [T, N, 3] log-scales (an expanded view: identical across frames).
        opacities: [T, N] logits, blend weights already folded in exactly.
        sh: [T, N, K, 3] SH coefficients, K = (sh_degree + 1) ** 2.
        otf_ids: [N] int64, the OTF parameter row of each Gaussian, −1 for face Gaussians.
        sh_degree: the SH degree.
    """

    means: Tensor  # [T, N, 3]
    quats: Tensor  # [T, N, 4]
    scales: Tensor  # [T, N, 3]
    opacities: Tensor  # [T, N]
    sh: Tensor  # [T, N, K, 3]
    otf_ids: Tensor  # [N]
    sh_degree: int

    def frame(self, t: int) -> dict[str, Tensor]:
        """Frame t as a dict of [N, ...] tensors (means, quats, scales, opacities, sh)."""
        return {
            "means": self.means[t],
            "quats": self.quats[t],
            "scales": self.scales[t],
            "opacities": self.opacities[t],
            "sh": self.sh[t],
        }


class GaussianHead(nn.Module):
    """A subject's dynamic Gaussian head: EmoTalk3D §3.3-3.4 (He et al., ECCV 2024), DESIGN.md §2.

    Built from the subject's template (the sparse face mesh the geometry stage predicts); the
    dense canonical face points are the upsampled template.
    """

    def __init__(
        self,
        template_vertices: Tensor | np.ndarray,  # [P, 3] mm
        faces: Tensor | np.ndarray,  # [F, 3]
        uvs: Tensor | np.ndarray,  # [P, 2]
        num_otf: int = 2000,
        sh_degree: int = 1,
        alpha: float = DEFAULT_ALPHA,
        d0: float = DEFAULT_D0,
        d_th: float = DEFAULT_D_TH,
        g2anet_hidden: int = 128,
        uv_freqs: int = 6,
        motion_scale: float = 10.0,
        seed: int = 0,
    ) -> None:
        """
        Args:
            template_vertices: the subject's neutral sparse face points.
            faces: triangles of the face mesh (for the 4x subdivision).
            uvs: per-point UV coordinates in [0, 1].
            num_otf: initial number of out-of-face Gaussians.
            sh_degree: SH degree of the colours (0 to 3).
            alpha: head-completion decay per mm.
            d0: blend ramp start (mm).
            d_th: blend ramp width (mm).
            g2anet_hidden: hidden width of FeatureNet and RotationNet.
            uv_freqs: positional-encoding frequencies of UV.
            motion_scale: δμ normalisation of G2ANet (mm).
            seed: seed of the OTF initialisation.
        """
        super().__init__()
        verts = torch.as_tensor(np.asarray(template_vertices), dtype=torch.float32)
        faces_t = torch.as_tensor(np.asarray(faces)).long()
        uv = torch.as_tensor(np.asarray(uvs), dtype=torch.float32)
        if verts.ndim != 2 or verts.shape[1] != 3:
            raise ValueError(f"template_vertices must be [P, 3], got {tuple(verts.shape)}")
        if uv.shape != (verts.shape[0], 2):
            raise ValueError(f"uvs must be [P, 2] = [{verts.shape[0]}, 2], got {tuple(uv.shape)}")
        self.config = dict(
            num_otf=num_otf,
            sh_degree=sh_degree,
            alpha=alpha,
            d0=d0,
            d_th=d_th,
            g2anet_hidden=g2anet_hidden,
            uv_freqs=uv_freqs,
            motion_scale=motion_scale,
            seed=seed,
        )
        self.alpha, self.d0, self.d_th = alpha, d0, d_th
        self.sh_degree = sh_degree
        self.register_buffer("template", verts.clone())  # [P, 3]
        self.register_buffer("mesh_faces", faces_t.clone())  # [F, 3]
        self.register_buffer("template_uvs", uv.clone())  # [P, 2]
        self.upsampler = Upsampler(faces_t, verts.shape[0])
        dense = self.upsampler(verts)  # [V, 3]
        dense_uv = self.upsampler(torch.cat([uv, torch.zeros_like(uv[:, :1])], dim=-1))[:, :2]
        self.register_buffer("dense_uvs", dense_uv, persistent=False)  # [V, 2]
        self.canonical = CanonicalGaussians(dense, num_otf=num_otf, sh_degree=sh_degree, seed=seed)
        self.g2anet = G2ANet(
            sh_coeffs=(sh_degree + 1) ** 2,
            emotion_dim=EMOTION_DIM,
            uv_freqs=uv_freqs,
            hidden=g2anet_hidden,
            motion_scale=motion_scale,
        )
        # completion/blend cache (non-persistent: recomputed from the parameters)
        for name in (
            "otf_nearest",
            "otf_distance",
            "otf_decay",
            "otf_weight",
            "sel_dynamic",
            "sel_canonical",
        ):
            self.register_buffer(name, torch.zeros(0), persistent=False)
        self.refresh_completion()

    # ------------------------------------------------------------------ sizes and caches
    @property
    def num_face(self) -> int:
        """V, the number of face Gaussians."""
        return self.canonical.num_face

    @property
    def num_otf(self) -> int:
        """M, the number of OTF Gaussians (changes while densifying)."""
        return self.canonical.num_otf

    def canonical_face_means(self) -> Tensor:  # [V, 3]
        """μ_o of the face Gaussians: dense template points plus learned offsets."""
        return self.canonical.face_points + self.canonical.face["offsets"]

    @torch.no_grad()
    def refresh_completion(self) -> None:
        """Recompute each OTF Gaussian's nearest face point, decay exp(−α d), W_p and the
        blend selection from the current canonical means."""
        idx, dist = nearest_face_points(self.canonical.otf["means"], self.canonical_face_means())
        self.otf_nearest = idx
        self.otf_decay = motion_decay(dist, self.alpha)
        self.otf_weight = blend_weights(dist, self.d0, self.d_th)
        self.sel_canonical, self.sel_dynamic = blend_selection(self.otf_weight)
        self.otf_distance = dist

    def _check_cache(self) -> None:
        if self.otf_nearest.shape[0] != self.num_otf:
            self.refresh_completion()

    def _g2anet_static(self, face_sh: Tensor) -> tuple[Tensor, Tensor] | None:  # [V, K, 3]
        """G2ANet's per-point first-layer parts, cached between calls without autograd.

        They depend only on the canonical face SH and quaternions, the UVs and G2ANet's
        weights; the cache key is each of those tensors' identity, storage and version
        counter (optimiser steps, `load_state_dict` and `.to()` all change one), so a stale
        entry cannot be used. With autograd on (training) nothing is cached: None makes
        G2ANet compute them in the graph.
        """
        if torch.is_grad_enabled():
            return None
        c = self.canonical
        deps = [c.face["sh0"], c.face["shN"], c.face["quats"], self.dense_uvs]
        deps += list(self.g2anet.parameters())
        key = tuple((id(t), t.data_ptr(), t._version, t.dtype) for t in deps)
        cached = self.__dict__.get("_static_cache")
        if cached is None or cached[0] != key:
            static = self.g2anet.static_parts(face_sh, c.face["quats"], self.dense_uvs)
            self.__dict__["_static_cache"] = cached = (key, static)
        return cached[1]

    # ------------------------------------------------------------------ assembly
    def canonical_gaussians(self) -> dict[str, Tensor]:
        """G_o as raw parameters: means [N, 3], quats [N, 4], scales [N, 3], opacities [N],
        sh [N, K, 3]; face Gaussians first, then every OTF Gaussian once."""
        c = self.canonical
        return {
            "means": torch.cat([self.canonical_face_means(), c.otf["means"]]),
            "quats": torch.cat([c.face["quats"], c.otf["quats"]]),
            "scales": torch.cat([c.face["scales"], c.otf["scales"]]),
            "opacities": torch.cat([c.face["opacities"], c.otf["opacities"]]),
            "sh": torch.cat([c.face_sh(), c.otf_sh()]),
        }

    def frame_gaussians(
        self,
        sparse_points: Tensor,  # [T, P, 3] mm
        emotion: Tensor,  # [T, E] or [1, E]
        use_g2anet: bool = True,
        use_completion: bool = True,
        use_blending: bool = True,
    ) -> FrameGaussians:
        """Raw Gaussians of T frames (no loop over frames or Gaussians).

        Args:
            sparse_points: the sparse face points of each frame (dataset or S2GNet geometry).
            emotion: the emotion vector of each frame, or one for all.
            use_g2anet: False renders the canonical colours and rotations (ablation).
            use_completion: False keeps the OTF Gaussians static (ablation).
            use_blending: False renders every OTF Gaussian once, as a dynamic copy with its
                full opacity (ablation "no opacity blending").
        """
        if sparse_points.ndim != 3 or tuple(sparse_points.shape[1:]) != tuple(self.template.shape):
            raise ValueError(
                f"sparse_points must be [T, P, 3] with P = {self.template.shape[0]}, "
                f"got {tuple(sparse_points.shape)}"
            )
        T = sparse_points.shape[0]
        if emotion.ndim != 2 or emotion.shape[-1] != EMOTION_DIM or emotion.shape[0] not in (1, T):
            raise ValueError(
                f"emotion must be [T, {EMOTION_DIM}] or [1, {EMOTION_DIM}] with T = {T}, "
                f"got {tuple(emotion.shape)}"
            )
        self._check_cache()
        c = self.canonical
        emotion = emotion.to(sparse_points).expand(T, -1)
        dense_t = self.upsampler(sparse_points)  # [T, V, 3]
        face_motion = dense_t - c.face_points  # [T, V, 3]
        face_means = dense_t + c.face["offsets"]  # [T, V, 3]
        V, M = self.num_face, self.num_otf
        face_sh = c.face_sh()
        if use_g2anet:
            sh_f, q_f = self.g2anet(
                face_sh,
                c.face["quats"],
                self.dense_uvs,
                emotion,
                relative_motion(dense_t, c.face_points),
                static=self._g2anet_static(face_sh),
            )
        else:
            sh_f = face_sh[None].expand(T, -1, -1, -1)
            q_f = c.face["quats"][None].expand(T, -1, -1)

        # OTF: dynamic copies (moved by completion) and canonical copies (static).
        if use_blending:
            sel_d, sel_c = self.sel_dynamic, self.sel_canonical
            w_d = 1.0 - self.otf_weight[sel_d]
            w_c = self.otf_weight[sel_c]
        else:
            sel_d = torch.arange(M, device=face_means.device)
            sel_c = sel_d[:0]
            w_d = torch.ones(M, device=face_means.device)
            w_c = w_d[:0]
        otf_means = c.otf["means"]
        if use_completion:
            move = complete_motion(face_motion, self.otf_nearest[sel_d], self.otf_decay[sel_d])
        else:
            move = otf_means.new_zeros(T, sel_d.shape[0], 3)
        ids = torch.cat([sel_d, sel_c])  # [M_d + M_c]
        means = torch.cat(
            [face_means, otf_means[sel_d] + move, otf_means[sel_c][None].expand(T, -1, -1)], dim=1
        )
        otf_logits = c.otf["opacities"][ids]
        otf_w = torch.cat([w_d, w_c])
        otf_opa = torch.where(
            otf_w >= 1.0, otf_logits, weighted_opacity_logit(otf_logits, otf_w)
        )  # exact: the rasterizer's sigmoid gives sigmoid(a) * w
        opacities = torch.cat([c.face["opacities"], otf_opa])[None].expand(T, -1)
        otf_sh = c.otf_sh()[ids]
        sh = torch.cat([sh_f, otf_sh[None].expand(T, -1, -1, -1)], dim=1)
        quats = torch.cat([q_f, c.otf["quats"][ids][None].expand(T, -1, -1)], dim=1)
        scales = torch.cat([c.face["scales"], c.otf["scales"][ids]])[None].expand(T, -1, -1)
        otf_ids = torch.cat([torch.full((V,), -1, dtype=torch.long, device=ids.device), ids])
        return FrameGaussians(
            means=means,
            quats=quats,
            scales=scales,
            opacities=opacities,
            sh=sh,
            otf_ids=otf_ids,
            sh_degree=self.sh_degree,
        )

    # ------------------------------------------------------------------ checkpoint support
    def resize_otf(self, num: int) -> None:
        """Reallocate the OTF tensors to `num` rows (before loading a densified state dict)."""
        self.canonical.resize_otf(num)
        self.otf_nearest = torch.zeros(0, dtype=torch.long, device=self.template.device)


def render_frame(
    frame: dict[str, Tensor],  # means [N,3], quats [N,4], scales [N,3], opacities [N], sh [N,K,3]
    sh_degree: int,
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    background: Tensor,  # [3]
    backend: str = "auto",
) -> tuple[Tensor, Tensor, dict[str, Any]]:  # (image [C, H, W, 3], alpha [C, H, W], meta)
    """Render one frame's raw Gaussians (`FrameGaussians.frame(t)`) from C cameras; the
    rasterizer activates them. Returns the image, the alpha and the rasterizer's meta (means2d,
    radii, ... for densification)."""
    from emotalk3d.render.rasterize import render_gaussians

    out = render_gaussians(
        frame["means"],
        frame["quats"],
        frame["scales"],
        frame["opacities"],
        frame["sh"],
        viewmats,
        Ks,
        width,
        height,
        sh_degree=sh_degree,
        backend=backend,
        background=background,
        render_depth=False,
    )
    image, alpha, meta = out.image, out.alpha[..., 0], out.meta
    return image, alpha, meta


# ---------------------------------------------------------------------- export for inference
def save_appearance(head: GaussianHead, path: str | Path, extra: dict | None = None) -> Path:
    """Write a trained head as `<path>` (safetensors: template, canonical Gaussians, G2ANet)
    plus `<path>.json` (format version, config, num_otf, `extra`). Returns the safetensors path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(path))
    meta = {
        "format": "emotalk3d-appearance",
        "format_version": APPEARANCE_FORMAT_VERSION,
        "config": head.config,
        "num_points": int(head.template.shape[0]),
        "num_face": head.num_face,
        "num_otf": head.num_otf,
        **(extra or {}),
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def load_appearance(path: str | Path, map_location: str | torch.device = "cpu") -> GaussianHead:
    """Load a head written by `save_appearance` (no Lightning needed)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(
            f"appearance export needs {path} and {meta_path}; write them with "
            "SubjectModule.export_appearance or emotalk3d.gaussians.model.save_appearance"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != APPEARANCE_FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: appearance format version {meta.get('format_version')} is not "
            f"supported (expected {APPEARANCE_FORMAT_VERSION}); re-export it with this version"
        )
    state = load_file(str(path), device=str(map_location))
    head = GaussianHead(
        state["template"], state["mesh_faces"], state["template_uvs"], **meta["config"]
    )
    head.resize_otf(int(meta["num_otf"]))
    head.load_state_dict(state)
    head.refresh_completion()
    return head.to(map_location)
