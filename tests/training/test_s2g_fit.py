"""S2G training on tiny data: the data module's batches, loss going down, the CLI fit and resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from emotalk3d.cli import lightning_main
from emotalk3d.data.format import DatasetFormatError
from emotalk3d.data.speech_data import S2GDataModule, collate_clips
from emotalk3d.training.s2g_module import S2GModule

CONFIG = "configs/tiny/s2g.yaml"


@pytest.fixture(scope="module")
def datamodule(tiny_dataset):
    dm = S2GDataModule(str(tiny_dataset), batch_size=2, max_seconds=1.0)
    dm.setup("fit")
    return dm


def tiny_model(dm: S2GDataModule, **kw) -> S2GModule:
    torch.manual_seed(0)
    args = dict(hubert_size="tiny", hubert_freeze="none", hidden_size=32, warmup_steps=0)
    args.update(kw)
    return S2GModule(num_points=dm.num_points, subject_names=dm.subject_names, **args)


def test_batches_are_padded_with_masks(datamodule):
    clips = datamodule.clips("val") + datamodule.clips("train")[:1]
    batch = collate_clips(clips, datamodule.templates, {"lips": datamodule.regions["lips"]})
    B, T, P = batch["meshes"].shape[:3]
    assert B == len(clips) and P == datamodule.num_points
    assert batch["frame_mask"].sum(dim=1).tolist() == [c.meshes.shape[0] for c in clips]
    assert batch["audio_lengths"].tolist() == [len(c.audio) for c in clips]
    assert batch["template"].shape == (B, P, 3) and batch["lips"].shape == (B, P)
    # every clip's audio covers its frames: ceil(S * 25 / 16000) == T (the generator's rule)
    for c in clips:
        assert math.ceil(len(c.audio) * 25 / 16000) == c.meshes.shape[0]
    train = next(iter(datamodule.train_dataloader()))
    assert train["meshes"].shape[1] <= 25  # max_seconds=1.0 windows
    assert -(-train["audio"].shape[1] * 25 // 16000) == train["meshes"].shape[1]


def test_untrained_module_predicts_the_template(datamodule):
    model = tiny_model(datamodule).eval()
    batch = next(iter(datamodule.val_dataloader()))
    with torch.no_grad():
        pred = model.predict_batch(batch)
    assert pred.shape == batch["meshes"].shape
    assert torch.equal(pred, batch["template"][:, None].expand_as(pred))


def test_a_few_steps_reduce_the_loss(datamodule):
    model = tiny_model(datamodule)
    batch = next(iter(datamodule.val_dataloader()))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = model._losses(batch, model.predict_batch(batch))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_forward_returns_predictions_not_losses(datamodule):
    model = tiny_model(datamodule)
    batch = next(iter(datamodule.val_dataloader()))
    out = model(batch["audio"], batch["template"], batch["emotion"], batch["subject"])
    assert isinstance(out, torch.Tensor) and out.ndim == 4


def test_missing_subject_and_non_dataset_folder(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="not in"):
        _ = S2GDataModule(str(tiny_dataset), subjects=["nobody"]).num_points
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a dataset")
    with pytest.raises(DatasetFormatError):
        _ = S2GDataModule(str(tmp_path / "junk")).num_points


def test_cli_fit_two_steps_and_resume(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    common = [
        "-c",
        CONFIG,
        f"--data.init_args.data_dir={tiny_dataset}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    lightning_main(["fit", *common, "--trainer.max_steps=2"])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
    assert ckpt["hyper_parameters"]["num_points"] > 0  # linked from the data module
    assert not torch.equal(ckpt["state_dict"]["subject_templates"], torch.zeros(1))
    lightning_main(["fit", *common, "--trainer.max_steps=3", "--ckpt_path=last"])
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3
    # the checkpoint is self-contained: it loads without the CLI or the data
    model = S2GModule.load_from_checkpoint(last, map_location="cpu")
    assert model.subject_templates.abs().sum() > 0 and model.lips.any()


def test_quality_benchmark_quick(tiny_dataset, tmp_path, monkeypatch, capsys):
    """benchmarks/s2g_quality.py --quick on an untrained checkpoint: the table and RESULT line."""
    import importlib.util
    import json

    from lightning.pytorch import Trainer

    repo = Path(__file__).resolve().parents[2]
    dm = S2GDataModule(str(tiny_dataset), batch_size=2)
    model = tiny_model(dm)
    trainer = Trainer(logger=False, max_steps=0, enable_progress_bar=False)
    trainer.strategy.connect(model)
    ckpt = tmp_path / "untrained.ckpt"
    trainer.save_checkpoint(ckpt)
    spec = importlib.util.spec_from_file_location("s2g_quality", repo / "benchmarks/s2g_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--data", str(tiny_dataset), "--checkpoint", str(ckpt), "--quick"])
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("RESULT ")]
    assert len(line) == 1 and json.loads(line[0][7:]) == json.loads(json.dumps(result))
    # untrained = template: the model row equals the template baseline exactly
    assert result["lve_mm"] == result["baseline_template_lve_mm"] > 0
    assert result["eve_mm"] == result["baseline_template_eve_mm"]
    assert result["clips"] == 2
    assert torch.is_grad_enabled()  # the benchmark leaves global autograd state alone

    # the emotion rows from a bundle's extractor (the committed demo's)
    from emotalk3d.inference.checkpoint import DEMO_BUNDLE

    args = ["--data", str(tiny_dataset), "--checkpoint", str(ckpt), "--quick"]
    with_emotion = bench.main([*args, "--emotion-checkpoint", str(DEMO_BUNDLE)])
    out = capsys.readouterr().out
    assert "s2g_auto_emotion" in out and "emotion extractor: accuracy" in out
    assert with_emotion["emotion_accuracy"] in (0.0, 0.5, 1.0)  # 2 clips
    assert with_emotion["lve_mm"] == result["lve_mm"]


def test_lr_schedule_warmup_then_cosine():
    from emotalk3d.training.s2g_module import run_progress, warmup_cosine

    assert warmup_cosine(0, 10, 0.0, "cosine") == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 0.0, "cosine") == pytest.approx(1.0)
    floor = 0.05  # the cosine decays from 1 to 5% of the base rate

    def cosine(p: float) -> float:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    assert warmup_cosine(50, 10, 0.5, "cosine") == pytest.approx(cosine(0.5))  # (1 + floor) / 2
    assert warmup_cosine(99, 10, 1.0, "cosine") == pytest.approx(cosine(1.0)) == floor
    assert warmup_cosine(99, 10, 1.0, "constant") == 1.0
    assert run_progress(None, 55, 10, total=100) == pytest.approx(0.5)
