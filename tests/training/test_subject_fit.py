"""`lightning fit -c configs/tiny/subject.yaml` end to end on CPU, resuming, export, data errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from emotalk3d.data.format import DatasetFormatError
from emotalk3d.data.image_data import SubjectDataModule

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "tiny" / "subject.yaml")


def fit_args(data_dir: Path, root: Path, max_steps: int, *extra: str) -> list[str]:
    """CLI arguments of a short tiny fit: few steps, densification early, no progress bar."""
    return [
        "fit",
        "-c",
        CONFIG,
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.steps_per_epoch=4",
        "--data.init_args.image_scale=0.5",  # 32x32 images: the mechanics, quickly
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={max_steps}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--model.init_args.num_otf=200",
        "--model.init_args.canonical_steps=2",
        "--model.init_args.refine_start=0",
        "--model.init_args.refine_every=2",
        "--model.init_args.grow_grad2d=1e-9",  # make densification certain within few steps
        *extra,
    ]


def test_fit_logs_resumes_and_exports(tiny_dataset: Path, tmp_path: Path):
    """One short fit (CSV logger: metrics and validation PNGs), then a resumed fit from its
    `last.ckpt`, then the inference export. One test so the suite pays for two fits only."""
    from lightning.pytorch.callbacks import Callback

    from emotalk3d.cli import lightning_main
    from emotalk3d.gaussians.model import load_appearance
    from emotalk3d.training.cli import EmoTalkCLI
    from emotalk3d.training.image_losses import psnr

    root = tmp_path / "run"
    logged = [f"--trainer.logger.init_args.save_dir={root}", "--trainer.log_every_n_steps=1"]
    first = fit_args(tiny_dataset, root, 4, *logged)
    first.remove("--trainer.logger=false")
    lightning_main(first)

    # logging: metrics of both stages, validation renders as PNGs (CSV logger has no images)
    assert sorted(root.rglob("val_images/*.png")), "validation renders should be saved as PNGs"
    rows = list(csv.DictReader(open(next(root.rglob("metrics.csv")))))
    psnrs = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")]
    # better than rendering nothing: the background colour alone against the same val images
    probe = EmoTalkCLI(args=fit_args(tiny_dataset, tmp_path / "probe", 4)[1:], run=False)
    probe.datamodule.setup("validate")
    total, weight = 0.0, 0
    for batch in probe.datamodule.val_dataloader():
        target = batch["image"]
        empty = probe.model.background.to(target.dtype).expand_as(target)
        total += float(psnr(empty, target)) * target.shape[0]
        weight += target.shape[0]
    background_psnr = total / weight
    assert psnrs and all(background_psnr < p < 100.0 for p in psnrs), (psnrs, background_psnr)
    stages = [float(r["train/stage"]) for r in rows if r.get("train/stage")]
    assert stages[0] == 0.0 and stages[-1] == 1.0, "canonical then dynamic stage"

    # the checkpoint holds the densified OTF tensors, their Adam moments and strategy state
    last = next(root.rglob("last.ckpt"))
    ck = torch.load(last, map_location="cpu", weights_only=False)
    assert ck["global_step"] == 4
    counts = ck["gaussian_counts"]
    assert counts["otf"] != 200, "densification should have changed the OTF count"
    assert ck["state_dict"]["head.canonical.otf.means"].shape[0] == counts["otf"]
    assert ck["strategy_state"]["count"].shape[0] == counts["otf"]
    assert ck["optimizer_states"][0]["state"][0]["exp_avg"].shape[0] == counts["otf"]

    # an interrupted run resumed from `last`: same step, same counts, then it goes on
    start: list[tuple[int, int]] = []

    class Probe(Callback):
        def on_train_start(self, trainer, module):
            start.append((trainer.global_step, module.head.num_otf))

    resumed = fit_args(tiny_dataset, root, 6, "--model.init_args.refine_every=1000")[1:]
    cli = EmoTalkCLI(args=resumed, run=False)
    cli.trainer.callbacks.append(Probe())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(last))
    assert start == [(4, counts["otf"])]
    assert cli.trainer.global_step == 6
    module = cli.model
    assert module.head.num_otf == counts["otf"], "no refinement after the resume"

    # a checkpoint loads without a Trainer or dataset too (the head is rebuilt from it)
    reloaded = type(module).load_from_checkpoint(last, map_location="cpu")
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(reloaded.head.canonical.otf["means"], state["head.canonical.otf.means"])

    # export for inference: loads without Lightning, gives the same Gaussians
    out = module.export_appearance(tmp_path / "export" / "subject.safetensors")
    head = load_appearance(out)
    assert head.num_otf == module.head.num_otf
    pts = module.head.template[None]
    emo = torch.zeros(1, 9)
    a = module.head.frame_gaussians(pts, emo)
    b = head.frame_gaussians(pts, emo)
    assert torch.allclose(a.means, b.means) and torch.allclose(a.opacities, b.opacities)


def test_datamodule_pools_and_cameras(tiny_dataset: Path):
    dm = SubjectDataModule(data_dir=str(tiny_dataset), batch_cameras=3, steps_per_epoch=2)
    dm.setup("fit")
    assert set(dm.train_camera_idx).isdisjoint(dm.val_camera_idx) and dm.val_camera_idx
    assert dm.pools["canonical"] and set(dm.pools["canonical"]) <= set(dm.pools["dynamic"])
    for k in dm.pools["canonical"]:
        ref = dm.frames[k]
        assert dm.sequences[ref.sequence].meta.split in ("train", None)
    batch = next(iter(dm.train_dataloader()))
    C = batch["image"].shape[0]
    assert C == 3 and batch["image"].shape[-1] == 3
    assert torch.equal(batch["points"][0], batch["points"][-1]), "one frame per batch"
    assert set(batch["camera"].tolist()) <= set(dm.train_camera_idx)
    vb = next(iter(dm.val_dataloader()))
    assert set(vb["camera"].tolist()) == set(dm.val_camera_idx)
    dm.set_stage("dynamic")
    with pytest.raises(ValueError, match="stage must be"):
        dm.set_stage("other")


def test_data_folder_not_in_dataset_format(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    dm = SubjectDataModule(data_dir=str(tmp_path))
    with pytest.raises(DatasetFormatError, match="not a dataset in the emotalk3d dataset format"):
        dm.setup("fit")


def test_background_hits_carve_only_visible_background_centres():
    from emotalk3d.training.subject_module import background_hits

    white = torch.ones(3)
    rgb = torch.tensor(
        [
            [[1.0, 1.0, 1.0], [0.5, 0.4, 0.3], [0.99, 1.0, 0.995], [1.0, 1.0, 1.0]],
            [[0.2, 0.2, 0.2], [0.5, 0.4, 0.3], [0.3, 0.3, 0.3], [1.0, 0.9, 1.0]],
        ]
    )  # [C=2, N=4, 3]
    inside = torch.tensor([[True, True, True, False], [True, True, True, True]])  # [C, N]
    hits = background_hits(rgb, inside, white)  # [N]
    # 0: background in camera 0; 1: never; 2: within tolerance in camera 0; 3: off-image there
    assert hits.tolist() == [True, False, True, False]
