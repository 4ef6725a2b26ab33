"""S2G training on tiny data: the data module's batches, loss going down, the CLI fit and resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from emotalk3d.cli import lightning_main
from emotalk3d.data.format import DatasetFormatError
from emotalk3d.data.speech_data import (
    S2GDataModule,
    SpeechClip,
    collate_clips,
    speed_perturbed,
)
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


def test_training_windows_know_their_clip_and_start(datamodule):
    clips = datamodule.clips("train")
    batch = next(iter(datamodule.train_dataloader()))
    hop = 16000 // datamodule.fps
    for i, (c, f0) in enumerate(zip(batch["clip_index"], batch["start_frame"], strict=True)):
        clip, n = clips[int(c)], int(batch["num_frames"][i])
        assert torch.equal(batch["meshes"][i, :n], clip.meshes[int(f0) : int(f0) + n])
        s = int(batch["audio_lengths"][i])
        assert torch.equal(batch["audio"][i, :s], clip.audio[int(f0) * hop : int(f0) * hop + s])


def test_speed_perturbed_at_rate_one_is_the_plain_window(datamodule):
    clip = max(datamodule.clips("train"), key=lambda c: len(c.meshes))
    w = speed_perturbed(clip, 1.0, 25, max_frames=10, position=0.0)
    assert torch.equal(w.meshes, clip.meshes[:10])
    assert torch.equal(w.audio, clip.audio[: 10 * 640])
    assert w.start_frame == -1 and w.index == clip.index


@pytest.mark.parametrize("rate", [0.9, 1.1, 1.25])
def test_speed_perturbed_keeps_face_and_sound_in_step(datamodule, rate):
    clip = max(datamodule.clips("train"), key=lambda c: len(c.meshes))
    T = len(clip.meshes)
    w = speed_perturbed(clip, rate, 25, max_frames=12, position=0.5)
    n = len(w.meshes)
    assert n == min(12, int((T - 1) / rate) + 1) and len(w.audio) == n * 640  # the frame rule
    t0 = 0.5 * ((T - 1) - (n - 1) * rate)
    for k in range(n):  # loop twin of the interpolation: frame k shows source frame t0 + k r
        pos = t0 + k * rate
        lo, frac = int(pos), pos - int(pos)
        hi = min(lo + 1, T - 1)
        want = (1 - frac) * clip.meshes[lo] + frac * clip.meshes[hi]
        assert torch.allclose(w.meshes[k], want, atol=1e-4)


@pytest.mark.parametrize("rate", [0.9, 1.2])
def test_speed_perturbed_audio_is_played_at_the_rate(rate):
    sr, f = 16000, 200.0
    t = torch.arange(3 * sr) / sr
    clip = SpeechClip("s/x", 0, torch.sin(2 * torch.pi * f * t), torch.zeros(9), 0, 0.0)
    w = speed_perturbed(clip, rate, 25, position=0.0)
    assert len(w.audio) == int((75 - 1) / rate + 1) * 640
    spectrum = torch.fft.rfft(w.audio[1000:-1000]).abs()
    peak = float(spectrum.argmax()) * sr / (len(w.audio) - 2000)
    assert peak == pytest.approx(f * rate, rel=0.01)


def test_speed_perturb_trains_only_and_is_checked(tiny_dataset):
    dm = S2GDataModule(str(tiny_dataset), batch_size=2, max_seconds=1.0, speed_perturb=0.2)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert (train["start_frame"] == -1).all()
    assert -(-train["audio"].shape[1] * 25 // 16000) == train["meshes"].shape[1]
    val = next(iter(dm.val_dataloader()))
    assert (val["start_frame"] == 0).all()
    clips = dm.clips("val")[: len(val["clip_index"])]
    assert torch.equal(val["meshes"][0, : len(clips[0].meshes)], clips[0].meshes)
    with pytest.raises(ValueError, match="speed_perturb"):
        S2GDataModule(str(tiny_dataset), speed_perturb=0.6)


def cached_model(dm: S2GDataModule, passes: int = 1, dropout: float = 0.0) -> S2GModule:
    """A tiny model on the feature cache with a non-zero head (so predictions move).

    Without dropout (and tiny HuBERT has no time masking) the train-mode passes are
    deterministic, so they equal what the encoder gives in eval mode."""
    model = tiny_model(
        dm,
        hubert_freeze="all",
        hubert_layer="weighted",
        feature_cache=passes,
        hubert_dropout=dropout,
        lookahead=2,
    )
    with torch.no_grad():
        model.net.head.weight.normal_(0.0, 0.05)
        model.net.audio_encoder.layer_weights.copy_(torch.tensor([1.0, -0.5, 0.3]))
    clips = dm.clips("train")
    frames = [len(c.meshes) for c in clips]
    model._feature_cache = model.encode_clips([c.audio for c in clips], frames, passes)
    return model


def test_feature_cache_gives_the_encoder_path_on_whole_clips(datamodule):
    model = cached_model(datamodule).eval()
    clips = datamodule.clips("train")[:3]
    batch = collate_clips(clips, datamodule.templates, {"lips": datamodule.regions["lips"]})
    with torch.no_grad():
        raw = model.predict_batch(batch)  # the encoder on the audio, as validation and inference
        cached = model.predict_cached(batch)
    mask = batch["frame_mask"]
    assert (raw - batch["template"][:, None])[mask].abs().max() > 1e-2  # the head moves points
    assert torch.allclose(cached[mask], raw[mask], atol=1e-4)


def test_feature_cache_training_skips_the_encoder_and_learns(datamodule, monkeypatch):
    model = cached_model(datamodule).train()
    model.log = lambda *args, **kwargs: None  # no trainer attached

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although its features are cached")

    monkeypatch.setattr(model.net.audio_encoder, "forward", no_encoder)
    batch = next(iter(datamodule.train_dataloader()))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    before = model.net.audio_encoder.layer_weights.detach().clone()
    losses = []
    for _ in range(12):
        loss = model.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert not torch.equal(model.net.audio_encoder.layer_weights, before)  # the mix learns


def test_feature_cache_passes_carry_the_encoders_training_noise(datamodule):
    model = cached_model(datamodule, passes=3, dropout=0.2)
    first = model._feature_cache[0]  # [passes, K, 2 T, D]
    assert first.shape[0] == 3 and model.net.audio_encoder.training
    assert not torch.allclose(first[0], first[1])  # dropout: each pass is another draw
    clean = cached_model(datamodule, passes=2)._feature_cache[0]
    assert torch.equal(clean[0], clean[1])


def test_feature_cache_refuses_speed_perturbed_data(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    args = ["fit", "-c", CONFIG, f"--data.init_args.data_dir={tiny_dataset}"]
    args += [f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]
    args += ["--model.init_args.hubert_freeze=all", "--model.init_args.feature_cache=1"]
    with pytest.raises(ValueError, match="speed_perturb"):
        lightning_main([*args, "--data.init_args.speed_perturb=0.1", "--trainer.max_steps=1"])


def test_feature_cache_needs_a_frozen_encoder(datamodule):
    with pytest.raises(ValueError, match="hubert_freeze: all"):
        tiny_model(datamodule, hubert_freeze="facexhubert", feature_cache=2)
    with pytest.raises(ValueError, match="passes"):
        tiny_model(datamodule, hubert_freeze="all", feature_cache=-1)


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
    # configs/s2g.yaml's feature cache through the CLI, and its resume (the cache is rebuilt)
    cached = [*common, f"--trainer.default_root_dir={tmp_path / 'cached'}"]
    cached += ["--model.init_args.hubert_freeze=all", "--model.init_args.feature_cache=2"]
    lightning_main(["fit", *cached, "--trainer.max_steps=2"])
    lightning_main(["fit", *cached, "--trainer.max_steps=3", "--ckpt_path=last"])
    last = tmp_path / "cached" / "checkpoints" / "last.ckpt"
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


def test_encoder_start_step_holds_the_encoder_then_releases_it():
    from emotalk3d.training.s2g_module import lr_scheduler_config

    head, enc = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [head], "lr": 1e-3}, {"params": [enc], "lr": 1e-4}])
    sched = lr_scheduler_config(opt, None, 2, "constant", group_starts=[0, 5])["scheduler"]
    seen = []
    for _ in range(7):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [h for h, _ in seen] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    assert [e for _, e in seen] == pytest.approx([0, 0, 0, 0, 0, 1e-4, 1e-4])
    with pytest.raises(ValueError, match="group_starts"):
        lr_scheduler_config(opt, None, 2, "constant", group_starts=[0])


def test_layer_mix_learns_with_s2gnet_not_the_encoder_group(datamodule):
    model = tiny_model(datamodule, hubert_layer="weighted", encoder_lr=1e-5, encoder_start_step=9)
    groups = model.configure_optimizers()["optimizer"].param_groups
    mix = model.net.audio_encoder.layer_weights
    assert any(p is mix for p in groups[0]["params"]) and groups[0]["lr"] == model.hparams.lr
    hubert = {id(p) for p in model.net.audio_encoder.model.parameters()}
    assert {id(p) for p in groups[1]["params"]} == hubert  # freeze none: all of HuBERT


def test_held_encoder_gets_no_gradient_until_its_start_step(datamodule):
    model = tiny_model(datamodule, hubert_freeze="feature_extractor", encoder_start_step=3)
    hubert = model.net.audio_encoder.model
    trainable = {n for n, p in hubert.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("feature_extractor") for n in trainable)
    model.on_train_batch_start(None, 0)  # global step 0 < 3: held
    assert not any(p.requires_grad for p in hubert.parameters())
    model.hparams.encoder_start_step = 0  # released: the configured layers train again
    model.on_train_batch_start(None, 0)
    assert {n for n, p in hubert.named_parameters() if p.requires_grad} == trainable
