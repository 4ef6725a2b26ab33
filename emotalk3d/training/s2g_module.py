"""Lightning wiring of S2GNet: HuBERT + S2GNet trained on audio/mesh pairs (DESIGN.md 2, 5).

The networks are plain modules (`emotalk3d.audio.hubert.HubertEncoder`,
`emotalk3d.geometry.s2gnet.S2GNet`); this module only connects them to the batches of
`emotalk3d.data.speech_data.S2GDataModule`, the losses of `emotalk3d.training.losses`, the
metrics of `emotalk3d.training.metrics`, an AdamW optimiser and logging.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Timer
from torch import Tensor

from emotalk3d.audio.hubert import HubertEncoder
from emotalk3d.geometry.s2gnet import S2GNet
from emotalk3d.training.losses import region_weights, velocity_loss, vertex_loss
from emotalk3d.training.metrics import (
    emotional_vertex_error,
    lip_vertex_error,
    mean_vertex_error,
)


def warmup_cosine(step: int, warmup_steps: int, progress: float, schedule: str) -> float:
    """Learning-rate factor: linear warm-up over `warmup_steps`, then constant or a cosine
    decay to 5% as `progress` (the fraction of the run after warm-up, in [0, 1]) goes to 1."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0.0, progress))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))


def total_steps(trainer: pl.Trainer | None) -> float:
    """The run's optimiser steps as the trainer estimates them (inf when unknown)."""
    if trainer is None:
        return math.inf
    try:
        return float(trainer.estimated_stepping_batches)
    except Exception:  # no data attached yet (e.g. a unit test)
        return math.inf


def run_progress(
    trainer: pl.Trainer | None, step: int, warmup_steps: int, total: float = math.inf
) -> float:
    """Fraction of the run done after warm-up: by steps (of `total`) or, when the trainer has
    a `max_time`, by elapsed training time, whichever is further along."""
    progress = 0.0
    if math.isfinite(total) and total > warmup_steps:
        progress = (step - warmup_steps) / (total - warmup_steps)
    for cb in trainer.callbacks if trainer is not None else []:
        if isinstance(cb, Timer):
            elapsed, left = cb.time_elapsed("train"), cb.time_remaining("train")
            if left is not None and elapsed + left > 0:
                progress = max(progress, elapsed / (elapsed + left))
    return progress


def lr_scheduler_config(
    optimizer: torch.optim.Optimizer, trainer: pl.Trainer | None, warmup_steps: int, schedule: str
) -> dict:
    """Per-step LambdaLR config for `configure_optimizers`: warm-up, then cosine over the run
    (its steps, or its `max_time` when that ends it first) or constant."""
    total = total_steps(trainer)

    def factor(step: int) -> float:
        progress = run_progress(trainer, step, warmup_steps, total)
        return warmup_cosine(step, warmup_steps, progress, schedule)

    return {
        "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor),
        "interval": "step",
    }


class TrainTimeMixin:
    """Accumulates wall-clock training seconds across resumes in checkpoint["train_seconds"]."""

    _t0: float | None = None
    _prev_seconds: float = 0.0

    def on_train_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        checkpoint["train_seconds"] = self._prev_seconds + elapsed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._prev_seconds = float(checkpoint.get("train_seconds", 0.0))


class S2GModule(TrainTimeMixin, pl.LightningModule):
    """Trains S2GNet with its HuBERT encoder end to end (EmoTalk3D, He et al. ECCV 2024,
    section 3.2; DESIGN.md section 2 "S2GNet" and "Losses").

    Loss: vertex MSE/Huber with the lip region weighted `lip_weight` times, plus
    `velocity_weight` times the same on consecutive-frame differences. Logs the losses and,
    in validation/test, LVE, EVE and the mean vertex error in millimetres.
    """

    def __init__(
        self,
        num_points: int = 0,
        subject_names: list[str] | None = None,
        hubert_pretrained: str | None = None,
        hubert_size: Literal["tiny", "small", "base"] = "small",
        hubert_freeze: int | str | list[str] = "facexhubert",
        hubert_layer: int | Literal["last", "weighted"] = "last",
        hidden_size: int = 256,
        num_layers: int = 2,
        lookahead: int = 0,
        emotion_embed_dim: int = 64,
        subject_embed_dim: int = 32,
        dropout: float = 0.0,
        use_emotion: bool = True,
        fps: int = 25,
        loss: Literal["mse", "huber"] = "mse",
        huber_delta: float = 1.0,
        lip_weight: float = 3.0,
        velocity_weight: float = 1.0,
        lr: float = 1e-3,
        encoder_lr: float | None = None,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        lr_schedule: Literal["constant", "cosine"] = "cosine",
    ) -> None:
        """Configure the model and its training.

        Args:
            num_points: P, face points per frame. Linked from the data module by the CLI.
            subject_names: the training subjects in subject-id order (one style embedding
                each). Linked from the data module by the CLI.
            hubert_pretrained: HuBERT hub id or local folder; None for a randomly initialised
                model of `hubert_size` trained from scratch.
            hubert_size: tiny (tests), small (CPU demo) or base, when not pretrained.
            hubert_freeze: which encoder parameters stay frozen (see HubertEncoder: none,
                feature_extractor, facexhubert, all, an int, or name prefixes).
            hubert_layer: encoder output: "last", a hidden-state index, or "weighted".
            hidden_size: GRU hidden size (256 in FaceXHuBERT).
            num_layers: GRU layers (2).
            lookahead: future motion frames each frame's input also sees (S2GNet).
            emotion_embed_dim: width of the emotion embedding.
            subject_embed_dim: width of the subject style embedding.
            dropout: dropout between GRU layers and after the fusion layer.
            use_emotion: False trains the no-emotion ablation (emotion input ignored).
            fps: motion frame rate (must match the data).
            loss: "mse" or "huber" vertex loss.
            huber_delta: Huber transition in mm.
            lip_weight: weight of lip points relative to the others in both losses.
            velocity_weight: weight of the velocity loss.
            lr: AdamW learning rate of S2GNet.
            encoder_lr: learning rate of the trainable encoder layers (default: `lr`).
            weight_decay: AdamW weight decay.
            warmup_steps: linear learning-rate warm-up steps.
            lr_schedule: "cosine" decay to 5% over the run after warm-up, or "constant".
        """
        super().__init__()
        if num_points < 1:
            raise ValueError(
                "S2GModule needs num_points (P, the template's vertex count) >= 1; the "
                "LightningCLI links it from the data module (data.num_points), otherwise pass it"
            )
        subject_names = list(subject_names) if subject_names else ["subject"]
        self.save_hyperparameters()
        encoder = HubertEncoder(
            pretrained=hubert_pretrained, size=hubert_size, freeze=hubert_freeze, layer=hubert_layer
        )
        self.net = S2GNet(
            num_points=num_points,
            num_subjects=len(subject_names),
            audio_encoder=encoder,
            hidden_size=hidden_size,
            num_layers=num_layers,
            lookahead=lookahead,
            emotion_embed_dim=emotion_embed_dim,
            subject_embed_dim=subject_embed_dim,
            dropout=dropout,
            use_emotion=use_emotion,
            fps=fps,
        )
        # The training subjects' templates and region masks travel with the checkpoint so
        # inference and benchmarks need no dataset (filled from the data module in setup).
        self.register_buffer("subject_templates", torch.zeros(len(subject_names), num_points, 3))
        self.register_buffer("lips", torch.zeros(num_points, dtype=torch.bool))
        self.register_buffer("eyes", torch.zeros(num_points, dtype=torch.bool))

    @property
    def subject_names(self) -> list[str]:
        """Training subjects in subject-id order."""
        return list(self.hparams.subject_names)

    def setup(self, stage: str) -> None:
        """Copy the data module's templates and region masks into the buffers."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "templates"):
            return
        if list(dm.subject_names) != self.subject_names or dm.num_points != self.hparams.num_points:
            raise ValueError(
                f"the data has subjects {dm.subject_names} with P = {dm.num_points} points but "
                f"the model was built for {self.subject_names} with P = "
                f"{self.hparams.num_points}; train on the same data or rebuild the model"
            )
        self.subject_templates.copy_(dm.templates)
        regions = dm.regions
        for name in ("lips", "eyes"):
            if name in regions:
                getattr(self, name).copy_(regions[name])

    def forward(
        self,
        audio: Tensor,  # [B, S] 16 kHz
        template: Tensor,  # [B, P, 3]
        emotion: Tensor,  # [B, E]
        subject: Tensor,  # [B]
        audio_lengths: Tensor | None = None,  # [B]
        frame_lengths: Tensor | None = None,  # [B]
        num_frames: int | None = None,
    ) -> Tensor:  # [B, T, P, 3]
        """Predicted face points; see `S2GNet.forward`."""
        return self.net(
            audio,
            template,
            emotion,
            subject,
            num_frames=num_frames,
            audio_lengths=audio_lengths,
            frame_lengths=frame_lengths,
        )

    def predict_batch(self, batch: dict[str, Tensor]) -> Tensor:  # [B, T, P, 3]
        """Predictions for a batch of `S2GDataModule` with as many frames as its meshes."""
        return self(
            batch["audio"],
            batch["template"],
            batch["emotion"],
            batch["subject"],
            audio_lengths=batch["audio_lengths"],
            frame_lengths=batch["num_frames"],
            num_frames=batch["meshes"].shape[1],
        )

    def _losses(self, batch: dict[str, Tensor], pred: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        weights = region_weights(pred.shape[2], batch.get("lips"), hp.lip_weight)
        kw = dict(
            point_weights=weights.to(pred),
            frame_mask=batch["frame_mask"],
            kind=hp.loss,
            huber_delta=hp.huber_delta,
        )
        vert = vertex_loss(pred, batch["meshes"], **kw)
        vel = velocity_loss(pred, batch["meshes"], **kw)
        return {"loss": vert + hp.velocity_weight * vel, "vertex": vert, "velocity": vel}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        pred = self.predict_batch(batch)
        losses = self._losses(batch, pred)
        B = pred.shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=B)
        self.log("train/vertex", losses["vertex"], batch_size=B)
        self.log("train/velocity", losses["velocity"], batch_size=B)
        return losses["loss"]

    def _evaluate(self, batch: dict[str, Tensor], prefix: str) -> Tensor:
        pred = self.predict_batch(batch)
        losses = self._losses(batch, pred)
        mask, target = batch["frame_mask"], batch["meshes"]
        n = int(mask.sum())  # frames: metrics are per-frame means, pooled over frames
        metrics = {
            f"{prefix}/loss": losses["loss"],
            f"{prefix}/mve_mm": mean_vertex_error(pred, target, mask),
        }
        if "lips" in batch:
            metrics[f"{prefix}/lve_mm"] = lip_vertex_error(pred, target, batch["lips"], mask)
        if "eyes" in batch:
            metrics[f"{prefix}/eve_mm"] = emotional_vertex_error(pred, target, batch["eyes"], mask)
        self.log_dict(metrics, prog_bar=prefix == "val", batch_size=n)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        enc_params = [p for p in self.net.audio_encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in self.net.audio_encoder.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in enc_ids]
        groups = [{"params": rest, "lr": hp.lr}]
        if enc_params:
            groups.append({"params": enc_params, "lr": hp.encoder_lr or hp.lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        scheduler = lr_scheduler_config(optimizer, self._trainer, hp.warmup_steps, hp.lr_schedule)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
