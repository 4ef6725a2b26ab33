"""Every YAML under configs/ parses with the project's LightningCLI and instantiates.

Generic on purpose: a config added later is covered without editing this file. Instantiation
points the data at the tiny synthetic dataset and the outputs at a temporary folder, and never
fits.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule

from emotalk3d.training.cli import EmoTalkCLI

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert {"configs/s2g.yaml", "configs/emotion.yaml"} <= set(CONFIGS)
    assert {"configs/tiny/s2g.yaml", "configs/tiny/emotion.yaml"} <= set(CONFIGS)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_parses(config, monkeypatch):
    """`--print_config` parses and validates the whole file without instantiating anything."""
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        EmoTalkCLI(args=["-c", config, "--print_config"], run=False)
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(out.getvalue())
    for key in ("model", "data", "trainer"):
        assert key in printed, f"{config}: the parsed config has no {key!r} section"
    assert printed["model"]["class_path"].startswith("emotalk3d.")
    assert printed["data"]["class_path"].startswith("emotalk3d.")


@pytest.mark.parametrize("config", CONFIGS)
def test_config_instantiates(config, tiny_dataset, tmp_path, monkeypatch):
    """Model, data module and trainer are built (on the tiny dataset), without fitting."""
    monkeypatch.chdir(REPO)
    raw = yaml.safe_load((REPO / config).read_text())
    accelerator = str(raw.get("trainer", {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        pytest.skip(f"{config} asks for accelerator {accelerator!r} and this machine has no CUDA")
    args = ["-c", config, f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]
    if "data_dir" in raw.get("data", {}).get("init_args", {}):
        args.append(f"--data.init_args.data_dir={tiny_dataset}")
    cli = EmoTalkCLI(args=args, run=False)
    assert isinstance(cli.model, LightningModule)
    assert isinstance(cli.datamodule, LightningDataModule)
    assert Path(cli.trainer.default_root_dir) == tmp_path
    if "data_dir" in raw.get("data", {}).get("init_args", {}):
        assert Path(cli.datamodule.data_dir) == tiny_dataset
    assert not any(p.isnan().any() for p in cli.model.parameters())
