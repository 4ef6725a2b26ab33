"""Lightning wiring of the emotion extractor (DESIGN.md sections 2 and 5).

`emotalk3d.audio.emotion.EmotionExtractor` (a plain nn.Module) trained on the labelled clips of
`emotalk3d.data.speech_data.EmotionDataModule`: cross-entropy over the 8 emotions plus a
regression of the intensity, AdamW, logging of accuracy.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from emotalk3d.audio.emotion import EmotionExtractor, EmotionOutput
from emotalk3d.training.s2g_module import TrainTimeMixin, lr_scheduler_config


def emotion_losses(
    logits: Tensor,  # [B, 8]
    intensity: Tensor,  # [B] predicted, in [0, 1]
    label: Tensor,  # [B] int64
    target_intensity: Tensor,  # [B]
    intensity_weight: float = 1.0,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:  # name -> []
    """Cross-entropy on the emotion plus `intensity_weight` x MSE on the intensity."""
    ce = F.cross_entropy(logits, label, label_smoothing=label_smoothing)
    mse = F.mse_loss(intensity, target_intensity.to(intensity))
    return {"loss": ce + intensity_weight * mse, "ce": ce, "intensity_mse": mse}


class EmotionModule(TrainTimeMixin, pl.LightningModule):
    """Trains the speech emotion extractor of EmoTalk3D (He et al., ECCV 2024, section 3.2;
    DESIGN.md section 2 "Emotion extractor"): 8-way emotion classification plus intensity.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        size: Literal["tiny", "small", "base"] = "small",
        freeze: int | str | list[str] | None = None,
        prosody: bool = True,
        head_dim: int = 128,
        dropout: float = 0.1,
        prosody_version: int = 2,
        prosody_head_dim: int = 0,
        backbone_dropout: float = 0.0,
        intensity_weight: float = 1.0,
        label_smoothing: float = 0.0,
        lr: float = 3e-4,
        head_lr: float | None = 3e-3,
        prosody_lr: float | None = None,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        lr_schedule: Literal["constant", "cosine"] = "cosine",
    ) -> None:
        """Configure the extractor and its training.

        Args:
            pretrained: wav2vec2 hub id, local folder, or a folder saved by
                `EmotionExtractor.save_pretrained`; None for a randomly initialised backbone.
            size: backbone size when not pretrained: tiny (tests), small (CPU) or base.
            freeze: frozen backbone parameters (see EmotionExtractor); None for its default.
            prosody: join prosody statistics of the waveform to the pooled features.
            head_dim: width of the classifier's hidden layer.
            dropout: dropout before the classifier's hidden layer.
            prosody_version: prosody statistics, 2 (23 numbers) or 1 (the first 7).
            prosody_head_dim: width of the prosody-only logit branch added to the head's
                logits; 0 for none.
            backbone_dropout: probability of zeroing a training clip's pooled transformer
                summary (modality dropout), so the head also learns from prosody alone.
            intensity_weight: weight of the intensity MSE against the cross-entropy.
            label_smoothing: cross-entropy label smoothing.
            lr: AdamW learning rate of the backbone (3e-4: 1e-3 trained worse from scratch).
            head_lr: AdamW learning rate of the pooling head (hidden layer, classifier,
                intensity); None for `lr`. The small head on top of a slowly moving
                transformer learns the prosody cues far faster at a higher rate.
            prosody_lr: AdamW learning rate of the prosody-only branch (`prosody_head_dim`);
                None for `head_lr`. A small MLP on 23 numbers: it wants a higher rate than
                the head that also reads the transformer.
            weight_decay: AdamW weight decay.
            warmup_steps: linear learning-rate warm-up steps.
            lr_schedule: "cosine" decay to 5% over the run after warm-up, or "constant".
        """
        super().__init__()
        self.save_hyperparameters()
        self.extractor = EmotionExtractor(
            pretrained=pretrained,
            size=size,
            freeze=freeze,
            prosody=prosody,
            head_dim=head_dim,
            dropout=dropout,
            prosody_version=prosody_version,
            prosody_head_dim=prosody_head_dim,
            backbone_dropout=backbone_dropout,
        )

    def forward(
        self,
        audio: Tensor,  # [B, S] 16 kHz
        lengths: Tensor | None = None,  # [B]
    ) -> EmotionOutput:  # logits [B, 8], intensity [B]
        """Emotion logits and intensity of a (padded) batch of clips."""
        return self.extractor(audio, lengths)

    def _step(self, batch: dict[str, Tensor], prefix: str) -> Tensor:
        out = self(batch["audio"], batch["audio_lengths"])
        hp = self.hparams
        losses = emotion_losses(
            out.logits,
            out.intensity,
            batch["label"],
            batch["intensity"],
            hp.intensity_weight,
            hp.label_smoothing if prefix == "train" else 0.0,
        )
        acc = (out.logits.argmax(dim=-1) == batch["label"]).float().mean()
        mae = (out.intensity - batch["intensity"]).abs().mean()
        B = batch["audio"].shape[0]
        self.log_dict(
            {
                f"{prefix}/loss": losses["loss"],
                f"{prefix}/ce": losses["ce"],
                f"{prefix}/acc": acc,
                f"{prefix}/intensity_mae": mae,
            },
            prog_bar=prefix != "test",
            batch_size=B,
        )
        return losses["loss"]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Name the fix when a checkpoint from before prosody version 2 meets a version-2 head
        (Lightning calls this before loading the weights)."""
        saved = checkpoint.get("hyper_parameters", {})
        version = saved.get("prosody_version", 1)
        if saved.get("prosody", True) and version != self.extractor.prosody_version:
            raise ValueError(
                f"this checkpoint's extractor uses prosody statistics version {version}, the "
                f"model was built with version {self.extractor.prosody_version}; load it with "
                f"EmotionModule.load_from_checkpoint(path, prosody_version={version}) "
                "(checkpoints saved before version 2 existed have version 1)"
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "val")
        if self.extractor.prosody:
            # What the head predicts with the transformer summary zeroed (modality dropout's
            # training condition): shows how much the prosody statistics alone carry.
            out = self.extractor(batch["audio"], batch["audio_lengths"], use_backbone=False)
            acc = (out.logits.argmax(dim=-1) == batch["label"]).float().mean()
            self.log("val/acc_prosody_only", acc, batch_size=batch["audio"].shape[0])
        return loss

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        backbone = [p for p in self.extractor.backbone.parameters() if p.requires_grad]
        in_backbone = {id(p) for p in backbone}
        branch = self.extractor.prosody_branch
        in_branch = set() if branch is None else {id(p) for p in branch.parameters()}
        head = [
            p
            for p in self.parameters()
            if p.requires_grad and id(p) not in in_backbone and id(p) not in in_branch
        ]
        head_lr = hp.lr if hp.get("head_lr") is None else hp.head_lr
        prosody_lr = head_lr if hp.get("prosody_lr") is None else hp.prosody_lr
        groups = [
            {"params": backbone, "lr": hp.lr},
            {"params": head, "lr": head_lr},
            {"params": [] if branch is None else list(branch.parameters()), "lr": prosody_lr},
        ]
        groups = [g for g in groups if g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        scheduler = lr_scheduler_config(optimizer, self._trainer, hp.warmup_steps, hp.lr_schedule)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
