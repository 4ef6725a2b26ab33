"""Training a subject's Gaussian head: canonical stage, then dynamic stage (DESIGN.md §2).

`lightning fit -c configs/subject.yaml` wires `SubjectModule` to `SubjectDataModule`:

1. steps [0, canonical_steps): canonical Gaussians on neutral, non-speaking frames of every
   training camera (G2ANet unused);
2. steps [canonical_steps, max_steps): the dynamic stage on every frame of the training
   sequences, G2ANet driven by the dataset's geometry, canonical Gaussians still refined.

Loss L1 + 0.2 D-SSIM. Manual optimisation: one Adam per per-Gaussian tensor (gsplat's
`DefaultStrategy` resizes the OTF tensors and their Adam moments in place while densifying and
pruning) plus one for G2ANet. Face Gaussians are never densified; the strategy sees only the
OTF ParameterDict. Checkpoints hold the variable OTF count and the strategy's running state, so
`--ckpt_path last` resumes with identical Gaussian counts, parameters and optimiser moments.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from gsplat.strategy import DefaultStrategy
from torch import Tensor

from emotalk3d.gaussians.blend import DEFAULT_D0, DEFAULT_D_TH
from emotalk3d.gaussians.completion import DEFAULT_ALPHA
from emotalk3d.gaussians.model import FrameGaussians, GaussianHead, render_frame, save_appearance
from emotalk3d.training.image_losses import appearance_loss, psnr, ssim

GAUSSIAN_PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


CARVED_OPACITY = 1e-3  # initial opacity of OTF Gaussians on background rays
BACKGROUND_TOLERANCE = 0.02  # max |pixel - background| per channel counted as background


def background_hits(
    rgb: Tensor,  # [C, N, 3] pixel colour under each Gaussian's centre per camera
    inside: Tensor,  # [C, N] bool: the centre projects inside the image, in front
    background: Tensor,  # [3]
    tol: float = BACKGROUND_TOLERANCE,
) -> Tensor:  # [N] bool
    """Gaussians whose centre lands on a background-coloured pixel in at least one view."""
    is_bg = (rgb - background).abs().amax(dim=-1) <= tol  # [C, N]
    return (is_bg & inside).any(dim=0)


class _GradHolder:
    """What DefaultStrategy reads from `info["means2d"]` in packed mode: a `.grad` [nnz, 2]."""

    def __init__(self, grad: Tensor):  # [nnz, 2]
        self.grad = grad


class SubjectModule(pl.LightningModule):
    """Canonical + dynamic Gaussian training of EmoTalk3D §3.3-3.4 (He et al., ECCV 2024;
    DESIGN.md §2). The head (`GaussianHead`) is built in `setup` from the datamodule's template,
    or from a checkpoint's buffers when loaded outside a Trainer."""

    def __init__(
        self,
        num_otf: int = 2000,
        sh_degree: int = 1,
        canonical_steps: int = 500,
        alpha: float = DEFAULT_ALPHA,
        d0: float = DEFAULT_D0,
        d_th: float = DEFAULT_D_TH,
        g2anet_hidden: int = 128,
        uv_freqs: int = 6,
        motion_scale: float = 10.0,
        dssim_weight: float = 0.2,
        lr_means: float = 0.05,
        lr_face_offsets: float = 0.0,
        lr_scales: float = 5e-3,
        lr_quats: float = 1e-3,
        lr_opacities: float = 5e-2,
        lr_sh0: float = 2.5e-3,
        lr_shN: float = 1.25e-4,
        lr_g2anet: float = 1e-3,
        densify: bool = True,
        refine_start: int = 100,
        refine_stop: int = 5000,
        refine_every: int = 50,
        reset_every: int = 1000,
        grow_grad2d: float = 2e-4,
        prune_opacity: float = 0.005,
        scene_scale: float | None = None,
        completion_refresh_every: int = 1,
        init_colors: bool = True,
        carve_background: bool = True,
        background: list[float] | None = None,
        backend: Literal["auto", "torch", "gsplat"] = "auto",
        val_images: int = 2,
        seed: int = 0,
    ) -> None:
        """
        Args:
            num_otf: initial number of out-of-face Gaussians (85,500 at full scale).
            sh_degree: SH degree of the Gaussian colours (0 to 3).
            canonical_steps: steps of the canonical stage; the dynamic stage follows. 0 skips it.
            alpha: head-completion decay per mm.
            d0: opacity-blend ramp start (mm).
            d_th: opacity-blend ramp width (mm).
            g2anet_hidden: hidden width of FeatureNet and RotationNet.
            uv_freqs: UV positional-encoding frequencies.
            motion_scale: δμ normalisation of G2ANet (mm).
            dssim_weight: weight of D-SSIM next to L1.
            lr_means: Adam learning rate of OTF means (mm per step, roughly).
            lr_face_offsets: learning rate of the face Gaussians' canonical offsets; 0 keeps
                them on the mesh.
            lr_scales: learning rate of log-scales.
            lr_quats: learning rate of quaternions.
            lr_opacities: learning rate of opacity logits.
            lr_sh0: learning rate of the DC colour coefficients.
            lr_shN: learning rate of higher SH coefficients.
            lr_g2anet: learning rate of G2ANet.
            densify: densify and prune OTF Gaussians with gsplat's DefaultStrategy.
            refine_start: first step of densification.
            refine_stop: last step of densification.
            refine_every: densify every this many steps.
            reset_every: strategy opacity-reset period (steps).
            grow_grad2d: screen-gradient threshold for densification.
            prune_opacity: opacity below which OTF Gaussians are pruned.
            scene_scale: the strategy's scene scale in mm; None uses the template's size.
            completion_refresh_every: recompute nearest face points and blend weights every
                this many steps (OTF means move while training).
            init_colors: initialise face and OTF colours from the first training batch.
            carve_background: with `init_colors`, start every OTF Gaussian whose centre projects
                onto a background-coloured pixel of a view in that batch nearly transparent
                (opacity 1e-3; the strategy prunes it unless training revives it): nothing
                can stand on a ray that sees the background (visual-hull carving), and such
                Gaussians otherwise become background-coloured floaters in held-out views.
            background: RGB in [0, 1] behind the head (None: white, the synthetic scenes').
            backend: rasterizer backend ("auto": gsplat on CUDA, else the torch reference).
            val_images: validation frames whose renders are logged as images.
            seed: seed of the OTF initialisation.
        """
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.head: GaussianHead | None = None
        self.strategy: DefaultStrategy | None = None
        self.strategy_state: dict[str, Any] | None = None
        self.register_buffer(
            "background", torch.tensor(background or [1.0, 1.0, 1.0], dtype=torch.float32)
        )
        self._val_outputs: list[dict[str, float]] = []
        self._t0: float | None = None
        self._prev_seconds = 0.0  # training time of the runs this one resumes

    # ------------------------------------------------------------------ building
    def _build_head(self, vertices, faces, uvs) -> None:
        hp = self.hparams
        self.head = GaussianHead(
            vertices,
            faces,
            uvs,
            num_otf=hp.num_otf,
            sh_degree=hp.sh_degree,
            alpha=hp.alpha,
            d0=hp.d0,
            d_th=hp.d_th,
            g2anet_hidden=hp.g2anet_hidden,
            uv_freqs=hp.uv_freqs,
            motion_scale=hp.motion_scale,
            seed=hp.seed,
        ).to(self.background.device)
        self.head.canonical.face["offsets"].requires_grad_(hp.lr_face_offsets > 0)
        scale = hp.scene_scale
        if scale is None:
            pts = self.head.template
            scale = float((pts.max(0).values - pts.min(0).values).norm())
        self.strategy = DefaultStrategy(
            prune_opa=hp.prune_opacity,
            grow_grad2d=hp.grow_grad2d,
            refine_start_iter=hp.refine_start,
            refine_stop_iter=hp.refine_stop if hp.densify else 0,
            refine_every=hp.refine_every,
            reset_every=hp.reset_every,
            absgrad=False,
        )
        self.strategy_state = self.strategy.initialize_state(scene_scale=scale)

    def setup(self, stage: str) -> None:
        if self.head is not None:
            return
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or not hasattr(dm, "template"):
            raise ValueError(
                "SubjectModule needs a SubjectDataModule (data.class_path: "
                "emotalk3d.data.image_data.SubjectDataModule) to build its Gaussians"
            )
        dm.setup(stage)
        t = dm.template
        self._build_head(t.vertices, t.faces, t.uvs)

    @property
    def datamodule(self):
        return self.trainer.datamodule

    # ------------------------------------------------------------------ optimisers
    def _param_groups(self) -> list[tuple[str, list[Tensor], float]]:
        hp = self.hparams
        c = self.head.canonical
        lrs = {
            "scales": hp.lr_scales,
            "quats": hp.lr_quats,
            "opacities": hp.lr_opacities,
            "sh0": hp.lr_sh0,
            "shN": hp.lr_shN,
        }
        groups = [("otf." + k, [c.otf[k]], hp.lr_means if k == "means" else lrs[k])
                  for k in GAUSSIAN_PARAM_KEYS]  # fmt: skip
        groups += [("face." + k, [c.face[k]], v) for k, v in lrs.items()]
        if hp.lr_face_offsets > 0:
            groups.append(("face.offsets", [c.face["offsets"]], hp.lr_face_offsets))
        groups.append(("g2anet", list(self.head.g2anet.parameters()), hp.lr_g2anet))
        return groups

    def configure_optimizers(self):
        self._opt_names = []
        opts = []
        for name, params, lr in self._param_groups():
            self._opt_names.append(name)
            opts.append(torch.optim.Adam(params, lr=lr, eps=1e-15 if name != "g2anet" else 1e-8))
        return opts

    def _raw_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        return {n: o.optimizer for n, o in zip(self._opt_names, opts, strict=True)}

    # ------------------------------------------------------------------ forward pieces
    def stage_at(self, step: int) -> str:
        """ "canonical" before `canonical_steps`, else "dynamic"."""
        return "canonical" if step < self.hparams.canonical_steps else "dynamic"

    def render_batch(
        self,
        batch: dict[str, Tensor],
        stage: str,
        **ablation: bool,
    ) -> tuple[Tensor, Tensor, dict[str, Any], FrameGaussians]:  # image [C,H,W,3], alpha, meta
        """Render the batch's frame (one frame, C cameras) with the current head."""
        points = batch["points"][:1]  # [1, P, 3]
        emotion = batch["emotion"][:1]  # [1, E]
        use_g2anet = ablation.pop("use_g2anet", stage == "dynamic")
        fg = self.head.frame_gaussians(points, emotion, use_g2anet=use_g2anet, **ablation)
        H, W = batch["image"].shape[1:3]
        image, alpha, meta = render_frame(
            fg.frame(0),
            fg.sh_degree,
            batch["world_to_cam"],
            batch["K"],
            W,
            H,
            self.background,
            backend=self.hparams.backend,
        )
        return image, alpha, meta, fg

    @torch.no_grad()
    def _init_colors(self, batch: dict[str, Tensor]) -> None:
        """Colour every Gaussian with the mean of the batch's pixels it projects to (visible or
        not: a cheap, reasonable start; training fixes occlusions)."""
        from emotalk3d.gaussians.canonical import rgb_to_sh0

        head = self.head
        can = head.canonical_gaussians()
        means = can["means"]  # [N, 3]
        C, H, W = batch["image"].shape[:3]
        hom = torch.cat([means, torch.ones_like(means[:, :1])], -1)  # [N, 4]
        cam = torch.einsum("cij,nj->cni", batch["world_to_cam"], hom)[..., :3]  # [C, N, 3]
        uv = torch.einsum("cij,cnj->cni", batch["K"], cam)
        z = uv[..., 2].clamp_min(1e-6)
        u, v = uv[..., 0] / z, uv[..., 1] / z
        ok = (cam[..., 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        ui, vi = u.long().clamp(0, W - 1), v.long().clamp(0, H - 1)
        cidx = torch.arange(C, device=means.device)[:, None].expand_as(ui)
        rgb = batch["image"][cidx, vi, ui]  # [C, N, 3]
        w = ok.float()[..., None]
        col = (rgb * w).sum(0) / w.sum(0).clamp_min(1.0)
        col = torch.where(w.sum(0) > 0, col, torch.full_like(col, 0.5))
        V = head.num_face
        head.canonical.face["sh0"][:, 0] = rgb_to_sh0(col[:V])
        head.canonical.otf["sh0"][:, 0] = rgb_to_sh0(col[V:])
        if self.hparams.carve_background:
            carved = background_hits(rgb[:, V:], ok[:, V:], self.background)  # [M]
            head.canonical.otf["opacities"][carved] = math.log(
                CARVED_OPACITY / (1 - CARVED_OPACITY)
            )

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        step = self.global_step
        stage = self.stage_at(step)
        next_stage = self.stage_at(step + 1)
        if hasattr(self.trainer.datamodule, "set_stage"):
            self.trainer.datamodule.set_stage(next_stage)
        if step == 0 and self.hparams.init_colors:
            self._init_colors(batch)
        head = self.head
        optimizers = self._raw_optimizers()
        otf_opts = {k: optimizers["otf." + k] for k in GAUSSIAN_PARAM_KEYS}
        image, alpha, meta, fg = self.render_batch(batch, stage)
        means2d = meta.get("means2d")
        densify = self.hparams.densify and means2d is not None and "radii" in meta
        if densify:
            self.strategy.step_pre_backward(
                head.canonical.otf, otf_opts, self.strategy_state, step, {"means2d": means2d}
            )
        loss, terms = appearance_loss(image, batch["image"], self.hparams.dssim_weight)
        self.manual_backward(loss)
        if densify and means2d.grad is not None:
            info = self._strategy_info(meta, fg, image.shape[0], image.shape[2], image.shape[1])
            self.strategy.step_post_backward(
                head.canonical.otf, otf_opts, self.strategy_state, step, info, packed=True
            )
        lightning_opts = self.optimizers()
        lightning_opts = lightning_opts if isinstance(lightning_opts, list) else [lightning_opts]
        # One LightningOptimizer step per iteration advances global_step by exactly one; the
        # rest step their torch optimisers directly.
        lightning_opts[0].step()
        for opt in lightning_opts[1:]:
            opt.optimizer.step()
        for opt in lightning_opts:
            opt.optimizer.zero_grad(set_to_none=True)
        if (step + 1) % max(1, self.hparams.completion_refresh_every) == 0:
            head.refresh_completion()
        with torch.no_grad():
            p = psnr(image.detach().clamp(0, 1), batch["image"])
        self.log_dict(
            {
                "train/loss": loss.detach(),
                "train/l1": terms["l1"],
                "train/dssim": terms["dssim"],
                "train/psnr": p,
                "train/num_otf": float(head.num_otf),
                "train/stage": float(stage == "dynamic"),
            },
            prog_bar=False,
            on_step=True,
            batch_size=image.shape[0],
        )
        self.log("psnr", p, prog_bar=True, on_step=True, batch_size=image.shape[0])
        return loss.detach()

    def _strategy_info(self, meta: dict, fg: FrameGaussians, C: int, W: int, H: int) -> dict:
        """Packed `info` for DefaultStrategy restricted to OTF copies: per visible (camera,
        OTF copy) the screen gradient, the radii and the OTF parameter row."""
        means2d, radii = meta["means2d"], meta["radii"]  # [C, N, 2], [C, N, 2] or [C, N]
        if radii.ndim == 2:
            radii = radii[..., None].expand(-1, -1, 2)
        is_otf = (fg.otf_ids >= 0)[None].expand(C, -1)  # [C, N]
        vis = (radii > 0).all(-1) & is_otf
        cam, gid = torch.nonzero(vis, as_tuple=True)
        return {
            "means2d": _GradHolder(means2d.grad[cam, gid]),
            "radii": radii[cam, gid],
            "gaussian_ids": fg.otf_ids[gid],
            "width": W,
            "height": H,
            "n_cameras": C,
        }

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        stage = self.stage_at(self.global_step)
        with torch.no_grad():
            image, _, _, _ = self.render_batch(batch, stage)
            image = image.clamp(0, 1)
            p = psnr(image, batch["image"])
            s = ssim(image, batch["image"]) if min(image.shape[1:3]) >= 11 else torch.tensor(0.0)
        self.log("val/psnr", p, prog_bar=True, batch_size=image.shape[0])
        self.log("val/ssim", s, batch_size=image.shape[0])
        if batch_idx < self.hparams.val_images:
            self._log_val_image(image, batch["image"], batch_idx)

    def _log_val_image(self, pred: Tensor, target: Tensor, idx: int) -> None:
        """Rows of [target | render] per camera, to the logger if it takes images, else as a
        PNG under the log dir."""
        rows = torch.cat([target.to(pred), pred], dim=2)  # [C, H, 2W, 3]
        grid = rows.reshape(-1, *rows.shape[2:])  # [C*H, 2W, 3]
        arr = (grid.detach().cpu().numpy() * 255).round().astype(np.uint8)
        name = f"val/render_{idx}"
        logger = self.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key=name, images=[arr], step=self.global_step)
            return
        if self.trainer.sanity_checking:
            return
        root = Path(
            (logger.log_dir if logger is not None and getattr(logger, "log_dir", None) else None)
            or self.trainer.default_root_dir
        )
        out = root / "val_images"
        out.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(arr).save(out / f"step{self.global_step:06d}_{idx}.png")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gaussian_counts"] = {"face": self.head.num_face, "otf": self.head.num_otf}
        checkpoint["strategy_state"] = {
            k: (v.detach().cpu() if isinstance(v, Tensor) else v)
            for k, v in (self.strategy_state or {}).items()
        }
        elapsed = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        checkpoint["train_seconds"] = self._prev_seconds + elapsed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        if self.head is None:  # loaded outside a Trainer: rebuild from the saved template
            self._build_head(
                state["head.template"], state["head.mesh_faces"], state["head.template_uvs"]
            )
        counts = checkpoint.get("gaussian_counts")
        num_otf = counts["otf"] if counts else state["head.canonical.otf.means"].shape[0]
        if num_otf != self.head.num_otf:
            self.head.resize_otf(num_otf)
        self._prev_seconds = float(checkpoint.get("train_seconds", 0.0))
        saved = checkpoint.get("strategy_state")
        if saved is not None and self.strategy_state is not None:
            dev = self.background.device
            self.strategy_state = {
                k: (v.to(dev) if isinstance(v, Tensor) else v) for k, v in saved.items()
            }

    def on_train_end(self) -> None:
        self.head.refresh_completion()

    # ------------------------------------------------------------------ export
    def export_appearance(self, path: str | Path) -> Path:
        """Write the trained head for inference (safetensors + JSON; no Lightning needed to
        load it: `emotalk3d.gaussians.model.load_appearance`)."""
        if self.head is None:
            raise RuntimeError("the head is not built yet: fit or load a checkpoint first")
        self.head.refresh_completion()
        return save_appearance(
            self.head,
            path,
            extra={"global_step": int(self.global_step) if self._trainer else None},
        )
