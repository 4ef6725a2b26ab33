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


class CountProbe:
    """Records the step and the OTF count when training starts (after a resume's restore)."""

    def __init__(self):
        self.start: tuple[int, int] | None = None

    def __call__(self, trainer, module):
        self.start = (trainer.global_step, module.head.num_otf)


def test_fit_resume_and_export(tiny_dataset: Path, tmp_path: Path):
    from lightning.pytorch.callbacks import Callback

    from emotalk3d.cli import lightning_main
    from emotalk3d.gaussians.model import load_appearance
    from emotalk3d.training.cli import EmoTalkCLI

    root = tmp_path / "run"
    lightning_main(fit_args(tiny_dataset, root, 3))
    last = root / "checkpoints" / "last.ckpt"
    assert last.is_file(), sorted(p.name for p in root.rglob("*"))
    ck = torch.load(last, map_location="cpu", weights_only=False)
    assert ck["global_step"] == 3
    counts = ck["gaussian_counts"]
    assert counts["otf"] != 200, "densification should have changed the OTF count"
    assert ck["state_dict"]["head.canonical.otf.means"].shape[0] == counts["otf"]
    assert ck["strategy_state"]["count"].shape[0] == counts["otf"]
    assert ck["optimizer_states"][0]["state"][0]["exp_avg"].shape[0] == counts["otf"]

    # an interrupted run resumed from `last`: same step, same counts, then it goes on
    probe = CountProbe()

    class Probe(Callback):
        def on_train_start(self, trainer, module):
            probe(trainer, module)

    cli = EmoTalkCLI(args=fit_args(tiny_dataset, root, 6)[1:], run=False)
    cli.trainer.callbacks.append(Probe())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(last))
    assert probe.start == (3, counts["otf"])
    assert cli.trainer.global_step == 6
    module = cli.model
    # a checkpoint loads without a Trainer or dataset too (the head is rebuilt from it)
    reloaded = type(module).load_from_checkpoint(last, map_location="cpu")
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]  # step 6
    assert torch.equal(reloaded.head.canonical.otf["means"], state["head.canonical.otf.means"])

    # export for inference: loads without Lightning, renders the same Gaussians
    out = module.export_appearance(tmp_path / "export" / "subject.safetensors")
    head = load_appearance(out)
    assert head.num_otf == module.head.num_otf
    pts = module.head.template[None]
    emo = torch.zeros(1, 9)
    a = module.head.frame_gaussians(pts, emo)
    b = head.frame_gaussians(pts, emo)
    assert torch.allclose(a.means, b.means) and torch.allclose(a.opacities, b.opacities)


def test_fit_logs_val_images_with_csv_logger(tiny_dataset: Path, tmp_path: Path):
    from emotalk3d.cli import lightning_main

    args = fit_args(tiny_dataset, tmp_path, 4)
    args.remove("--trainer.logger=false")
    args += [
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.log_every_n_steps=1",
        "--model.init_args.canonical_steps=2",
    ]
    lightning_main(args)
    pngs = sorted(tmp_path.rglob("val_images/*.png"))
    assert pngs, "validation renders should be saved as PNGs with a CSV logger"
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    psnrs = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")]
    assert psnrs and all(5.0 < p < 100.0 for p in psnrs)
    stages = [float(r["train/stage"]) for r in rows if r.get("train/stage")]
    assert stages[0] == 0.0 and stages[-1] == 1.0, "canonical then dynamic stage"


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
