"""`emotalk3d data synth|check|preview` end to end through the console entry point."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from emotalk3d.cli import main
from emotalk3d.data.format import check_dataset
from emotalk3d.data.synth.preview import LABEL_H, LABEL_W


def test_data_synth_end_to_end_on_tiny(tmp_path, capsys):
    # the tiny preset with 2 cameras at 16 px so the end-to-end run stays a few seconds;
    # the full tiny preset is generated once per session by the tiny_dataset fixture
    out = tmp_path / "ds"
    argv = ["data", "synth", "--rig", "builtin", "--size", "tiny", "--subjects", "1",
            "--seed", "3", "--cameras", "2", "--resolution", "16", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "subjects:   1" in printed and "cameras:    2 at 16x16" in printed
    report = check_dataset(out)
    assert report.ok, report.problems
    assert report.summary["sequences"] == 8 and report.summary["sequences_with_images"] == 2
    info = json.loads((out / "dataset.json").read_text())
    assert info["seed"] == 3 and info["preset"]["num_cameras"] == 2


def test_data_check_prints_summary_and_named_problems(tiny_dataset, tmp_path, capsys):
    assert main(["data", "check", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "ok: no problems found" in out and "neutral 1" in out


def test_data_check_fails_on_a_broken_copy(tiny_dataset, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    seq = next(p for p in sorted((broken / "subj00/sequences").iterdir())
               if (p / "images").is_dir())  # fmt: skip
    victim = sorted((seq / "images").iterdir())[0] / "00003.png"
    victim.unlink()
    np.save(seq / "meshes.npy", np.zeros((2, 5, 3), np.float32))
    assert main(["data", "check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "3 problem(s)" in out
    assert victim.relative_to(broken).as_posix() in out
    assert "5 vertices per frame" in out and "frame-count mismatch" in out


def test_data_preview_writes_a_contact_sheet(tiny_dataset, tmp_path, capsys):
    png = tmp_path / "sheet.png"
    assert main(["data", "preview", str(tiny_dataset), "--frames", "3", "--out", str(png)]) == 0
    with Image.open(png) as im:
        w, h = im.size
    cams, res, gap = 5, 64, 2  # the tiny preset: 5 cameras at 64 x 64
    assert (w, h) == (LABEL_W + 3 * res + 4 * gap, LABEL_H + cams * res + (cams + 1) * gap)
    assert str(png) in capsys.readouterr().out


def test_data_preview_names_an_unknown_sequence(tiny_dataset, tmp_path, capsys):
    code = main(["data", "preview", str(tiny_dataset), "--sequence", "nope",
                 "--out", str(tmp_path / "x.png")])  # fmt: skip
    assert code == 2
    assert "no sequence 'nope'" in capsys.readouterr().err


def test_data_without_subcommand_prints_help(capsys):
    assert main(["data"]) == 2
    assert "synth" in capsys.readouterr().out
