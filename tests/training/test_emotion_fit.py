"""Emotion extractor training on tiny data: losses, accuracy logging, the CLI fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emotalk3d.cli import lightning_main
from emotalk3d.constants import EMOTIONS
from emotalk3d.data.speech_data import EmotionDataModule
from emotalk3d.training.emotion_module import EmotionModule, emotion_losses

REPO = Path(__file__).resolve().parents[2]


def test_emotion_losses_hand_made():
    logits = torch.tensor([[10.0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 10.0]])
    label = torch.tensor([0, 7])
    out = emotion_losses(logits, torch.tensor([0.0, 1.0]), label, torch.tensor([0.0, 0.5]), 2.0)
    assert out["ce"].item() == pytest.approx(7 * torch.exp(torch.tensor(-10.0)).item(), rel=1e-2)
    assert out["intensity_mse"].item() == pytest.approx(0.125)
    assert out["loss"].item() == pytest.approx(out["ce"].item() + 0.25)


@pytest.fixture(scope="module")
def datamodule(tiny_dataset):
    dm = EmotionDataModule(str(tiny_dataset), batch_size=4, max_seconds=1.0)
    dm.setup("fit")
    return dm


def test_batches_hold_labels_and_intensity(datamodule):
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["audio"].ndim == 2 and "meshes" not in batch
    assert batch["label"].dtype == torch.int64
    for label, intensity in zip(batch["label"].tolist(), batch["intensity"].tolist(), strict=True):
        assert 0 <= label < len(EMOTIONS)
        assert (intensity == 0.0) == (EMOTIONS[label] == "neutral")


def test_a_few_steps_reduce_the_loss(datamodule):
    torch.manual_seed(0)
    model = EmotionModule(size="tiny", head_dim=32, dropout=0.0)
    batch = next(iter(datamodule.train_dataloader()))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        out = model(batch["audio"], batch["audio_lengths"])
        loss = emotion_losses(out.logits, out.intensity, batch["label"], batch["intensity"])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_cli_fit_two_steps(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    lightning_main(
        [
            "fit",
            "-c",
            "configs/tiny/emotion.yaml",
            f"--data.init_args.data_dir={tiny_dataset}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.max_steps=2",
            "--trainer.enable_progress_bar=false",
        ]
    )
    ckpt = torch.load(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert ckpt["global_step"] == 2
    # the tiny config exercises the issue-3 recipe: prosody v2, branch, modality dropout
    hp = ckpt["hyper_parameters"]
    assert (hp["prosody_version"], hp["prosody_head_dim"], hp["backbone_dropout"]) == (2, 16, 0.5)
    assert ckpt["state_dict"]["extractor.prosody_branch.1.weight"].shape == (16, 23)


def test_prosody_statistics_reach_the_head_standardised(datamodule):
    """Issue 3: the raw statistics sat off-centre (loudness spread ~2.4) with spreads of
    0.25-0.7 next to unit-scale transformer features; the head gets them standardised
    (all 23 of version 2, and the 7 of version 1)."""
    for version, count in ((2, 23), (1, 7)):
        model = EmotionModule(size="tiny", head_dim=32, prosody_version=version).extractor
        feats = []
        for clip in datamodule.clips("train"):
            audio = clip.audio[None].float()  # [1, S]
            frames = (audio.shape[1] - 400) // 320 + 1
            stats = model.prosody_features(audio, torch.ones(1, frames, dtype=torch.bool))
            assert stats.shape == (1, count)
            feats.append((stats[0] - model.prosody_mean) / model.prosody_std)
        z = torch.stack(feats)  # [N, count]
        # measured on the `small` preset; the tiny one (other sentences, few clips) is near
        assert z.mean(dim=0).abs().max() < 2.0, z.mean(dim=0)
        assert z.std(dim=0).min() > 0.2 and z.std(dim=0).max() < 3.0, z.std(dim=0)
        # fixed constants, not part of the saved head
        assert "prosody_mean" not in model.state_dict()


def test_head_learns_at_its_own_rate():
    """The pooling head trains at `head_lr`, the transformer at `lr`."""
    model = EmotionModule(size="tiny", head_dim=32, lr=3e-4, head_lr=3e-3, warmup_steps=0)
    model._trainer = None
    groups = model.configure_optimizers()["optimizer"].param_groups
    backbone = {id(p) for p in model.extractor.backbone.parameters()}
    assert [g["initial_lr"] for g in groups] == [3e-4, 3e-3]
    assert {id(p) for p in groups[0]["params"]} == backbone
    head = {id(p) for p in groups[1]["params"]}
    assert id(model.extractor.classifier.weight) in head and not head & backbone


def test_prosody_branch_learns_at_its_own_rate():
    model = EmotionModule(
        size="tiny", head_dim=32, prosody_head_dim=16, lr=3e-4, head_lr=3e-3, prosody_lr=1e-2
    )
    model._trainer = None
    groups = model.configure_optimizers()["optimizer"].param_groups
    assert [g["initial_lr"] for g in groups] == [3e-4, 3e-3, 1e-2]
    branch = {id(p) for p in model.extractor.prosody_branch.parameters()}
    assert {id(p) for p in groups[2]["params"]} == branch
    assert not branch & {id(p) for p in groups[1]["params"]}


def test_old_checkpoints_name_their_prosody_version():
    """A checkpoint saved before prosody version 2 (no prosody_version hyperparameter) meets
    a version-2 model with an error that says how to load it."""
    model = EmotionModule(size="tiny", head_dim=32)
    with pytest.raises(ValueError, match=r"prosody_version=1"):
        model.on_load_checkpoint({"hyper_parameters": {"size": "tiny", "prosody": True}})
    model.on_load_checkpoint({"hyper_parameters": {"prosody_version": 2}})
    EmotionModule(size="tiny", head_dim=32, prosody_version=1).on_load_checkpoint(
        {"hyper_parameters": {"size": "tiny"}}
    )
