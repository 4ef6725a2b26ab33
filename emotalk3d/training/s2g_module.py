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
from emotalk3d.geometry.s2gnet import S2GNet, align_features
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
    optimizer: torch.optim.Optimizer,
    trainer: pl.Trainer | None,
    warmup_steps: int,
    schedule: str,
    group_starts: list[int] | None = None,
) -> dict:
    """Per-step LambdaLR config for `configure_optimizers`: warm-up, then cosine over the run
    (its steps, or its `max_time` when that ends it first) or constant. `group_starts[i]`
    holds parameter group i at learning rate 0 before that step (default: all start at 0)."""
    total = total_steps(trainer)

    def factor(step: int) -> float:
        progress = run_progress(trainer, step, warmup_steps, total)
        return warmup_cosine(step, warmup_steps, progress, schedule)

    starts = group_starts or [0] * len(optimizer.param_groups)
    if len(starts) != len(optimizer.param_groups):
        raise ValueError(f"group_starts needs {len(optimizer.param_groups)} steps, got {starts}")

    def held(start: int):
        return lambda step: factor(step) if step >= start else 0.0

    return {
        "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, [held(s) for s in starts]),
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
        feature_cache: int = 0,
        hubert_dropout: float | None = None,
        encoder_start_step: int = 0,
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
            feature_cache: n > 0, with a fully frozen encoder (`hubert_freeze: all`): when
                fitting starts, run the encoder n times over every whole training clip and
                keep its hidden states; each training window then reads one of its clip's n
                passes, drawn at random, through `S2GNet.decode` instead of running the
                encoder. The passes run in train mode, as the per-step encoder does, so they
                carry its dropout and time masking: n noisy versions of each clip's features.
                A layer mix (`hubert_layer: weighted`) keeps learning. Validation and test
                run the encoder (eval mode) on the audio. 0: the encoder runs every step.
            hubert_dropout: the encoder's hidden, attention and activation dropout (None: its
                config's 0.1). Frozen layers apply it too in train mode: noise on the
                features that regularises S2GNet.
            encoder_start_step: the trainable encoder layers keep learning rate 0 until this
                optimiser step, then follow the schedule at `encoder_lr`: S2GNet first learns
                to read the random features, then the encoder adapts them (two-stage
                training; 0 trains both from the start).
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
            pretrained=hubert_pretrained,
            size=hubert_size,
            freeze=hubert_freeze,
            layer=hubert_layer,
            dropout=hubert_dropout,
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
        if feature_cache < 0:
            raise ValueError(f"feature_cache counts encoder passes (>= 0), got {feature_cache}")
        if feature_cache and any(p.requires_grad for p in encoder.model.parameters()):
            raise ValueError(
                "feature_cache needs a fully frozen encoder (its features must not change "
                f"while training), but hubert_freeze={hubert_freeze!r} leaves layers trainable; "
                "set hubert_freeze: all or feature_cache: 0"
            )
        self._feature_cache: list[Tensor] | None = None  # per training clip [n, K, 2 T, D]
        # HuBERT weights that train (after encoder_start_step), by name
        self._encoder_trainable = {
            n for n, p in encoder.model.named_parameters() if p.requires_grad
        }

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
        if stage == "fit" and self.hparams.feature_cache:
            if getattr(dm, "speed_perturb", 0.0):
                raise ValueError(
                    "feature_cache caches features of the clips as they are, but the data "
                    f"perturbs their speed (speed_perturb={dm.speed_perturb}); set one of "
                    "model feature_cache: 0 or data speed_perturb: 0"
                )
            clips = dm.clips("train")
            self._feature_cache = self.encode_clips(
                [c.audio for c in clips], [len(c.meshes) for c in clips], self.hparams.feature_cache
            )

    @torch.no_grad()
    def encode_clips(
        self, audios: list[Tensor], num_frames: list[int], passes: int = 1
    ) -> list[Tensor]:  # each [passes, K, 2 T_i, D]
        """`passes` train-mode runs of the frozen encoder over whole clips (16 kHz audio
        [S_i] with T_i motion frames each): hidden states resampled to exactly two per motion
        frame as `S2GNet.decode` pairs them, so a window of motion frames [f0, f1) is
        states[:, :, 2 f0 : 2 f1]."""
        encoder = self.net.audio_encoder
        was_training = encoder.training
        encoder.train()  # dropout and time masking, as the per-step encoder in training
        try:
            out = []
            for audio, T in zip(audios, num_frames, strict=True):
                runs = []
                for _ in range(passes):
                    states = encoder.hidden_states(audio[None].to(self.device))  # [K, 1, T_a, D]
                    paired = align_features(states[:, 0], T)  # [K, T, 2 D]
                    runs.append(paired.reshape(states.shape[0], 2 * T, -1).cpu())
                out.append(torch.stack(runs))
            return out
        finally:
            encoder.train(was_training)

    def cached_features(self, batch: dict[str, Tensor]) -> Tensor:  # [B, 2 T, D]
        """The encoder output for a training batch's windows, from the feature cache (one of
        each clip's cached passes, drawn at random per window)."""
        T = batch["meshes"].shape[1]
        passes, K, _, D = self._feature_cache[0].shape
        states = self._feature_cache[0].new_zeros(K, len(batch["clip_index"]), 2 * T, D)
        drawn = torch.randint(0, passes, (len(batch["clip_index"]),))
        for i, (c, f0, n) in enumerate(
            zip(batch["clip_index"], batch["start_frame"], batch["num_frames"], strict=True)
        ):
            cached = self._feature_cache[int(c)][int(drawn[i])]  # [K, 2 T_c, D]
            states[:, i, : 2 * n] = cached[:, 2 * int(f0) : 2 * int(f0 + n)]
        return self.net.audio_encoder.combine(states.to(self.device))

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

    def predict_cached(self, batch: dict[str, Tensor]) -> Tensor:  # [B, T, P, 3]
        """`predict_batch` with the encoder's output read from the feature cache."""
        return self.net.decode(
            self.cached_features(batch),
            batch["template"],
            batch["emotion"],
            batch["subject"],
            num_frames=batch["meshes"].shape[1],
            feature_lengths=2 * batch["num_frames"],
            frame_lengths=batch["num_frames"],
        )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Before `encoder_start_step` the trainable encoder weights get no gradient at all
        (their learning rate is 0 then), so the first stage costs what a frozen encoder does."""
        held = self.global_step < self.hparams.encoder_start_step
        for name, p in self.net.audio_encoder.model.named_parameters():
            if name in self._encoder_trainable:
                p.requires_grad_(not held)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        cached = self._feature_cache is not None
        pred = self.predict_cached(batch) if cached else self.predict_batch(batch)
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
        # the HuBERT weights; the layer mix (`hubert_layer: weighted`) learns with S2GNet
        encoder = self.net.audio_encoder.model
        enc_params = [p for p in encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in encoder.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in enc_ids]
        groups = [{"params": rest, "lr": hp.lr}]
        if enc_params:
            groups.append({"params": enc_params, "lr": hp.encoder_lr or hp.lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        scheduler = lr_scheduler_config(
            optimizer,
            self._trainer,
            hp.warmup_steps,
            hp.lr_schedule,
            group_starts=[0, hp.encoder_start_step][: len(groups)],
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
