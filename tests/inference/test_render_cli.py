"""`emotalk3d render` and `python render.py`: outputs, durations and every bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from emotalk3d.cli import main
from emotalk3d.inference.pipeline import num_output_frames

REPO = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_render_mp4_two_views_with_matching_audio(
    tiny_bundle, speech_wav, speech, tmp_path, capsys
):
    from emotalk3d.render.video import probe_video

    out = tmp_path / "clip.mp4"
    args = ["render", "--audio", str(speech_wav), "--emotion", "angry", "--views", "0,30",
            "--checkpoint", str(tiny_bundle), "--resolution", "64", "--fps", "10",
            "--backend", "torch", "--out", str(out), "--arkit", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "real-time factor" in printed and "emotion: angry" in printed
    duration = len(speech) / 16000
    frames = num_output_frames(len(speech), 10)
    assert frames == math.ceil(duration * 10)
    for name in ("clip_view0.mp4", "clip_view30.mp4"):
        streams = probe_video(tmp_path / name)
        assert sorted(s.kind for s in streams) == ["audio", "video"]
        video = next(s for s in streams if s.kind == "video")
        audio = next(s for s in streams if s.kind == "audio")
        assert video.frames == frames and (video.width, video.height) == (64, 64)
        assert abs(video.duration_s - duration) <= 1 / 10 + 1e-6
        assert abs(audio.duration_s - duration) <= 1 / 10
        assert f"wrote {tmp_path / name}" in printed
    csv = (tmp_path / "clip_view0_arkit.csv").read_text().splitlines()
    assert csv[0].startswith("Timecode,BlendShapeCount") and len(csv) == frames + 1
    doc = json.loads((tmp_path / "clip_view0_arkit.json").read_text())
    assert doc["num_frames"] == frames and len(doc["names"]) == 52
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_a_view_failing_at_the_end_leaves_no_view_in_place(
    tiny_bundle, speech_wav, tmp_path, monkeypatch
):
    from emotalk3d.render.video import Mp4Writer

    real = Mp4Writer._encode_audio

    def fail_second_view(self):
        if "view30" in self.path.name:
            raise OSError("disk full")
        real(self)

    monkeypatch.setattr(Mp4Writer, "_encode_audio", fail_second_view)
    args = ["render", "--audio", str(speech_wav), "--views", "0,30", "--checkpoint",
            str(tiny_bundle), "--resolution", "32", "--fps", "2", "--backend", "torch",
            "--out", str(tmp_path / "clip.mp4"), "--no-progress"]  # fmt: skip
    with pytest.raises(OSError, match="disk full"):
        main(args)
    assert _files(tmp_path) == set()  # neither view, no temporary file


def test_render_png_and_ply_formats(tiny_bundle, speech_wav, speech, tmp_path):
    common = ["render", "--audio", str(speech_wav), "--checkpoint", str(tiny_bundle),
              "--resolution", "32", "--fps", "2", "--backend", "torch",
              "--no-progress"]  # fmt: skip
    frames = num_output_frames(len(speech), 2)
    assert main([*common, "--format", "png", "--view", "-20", "--out", str(tmp_path / "png")]) == 0
    pngs = sorted((tmp_path / "png").iterdir())
    assert [p.name for p in pngs] == [f"frame_{i:05d}.png" for i in range(frames)]
    from PIL import Image

    assert Image.open(pngs[0]).size == (32, 32)

    assert main([*common, "--format", "ply", "--emotion", "sad", "--out", str(tmp_path / "g")]) == 0
    plys = sorted((tmp_path / "g").iterdir())
    assert [p.name for p in plys] == [f"frame_{i:05d}.ply" for i in range(frames)]
    from emotalk3d.gaussians.ply import load_ply

    g = load_ply(plys[0])
    assert g["means"].ndim == 2 and g["means"].shape[1] == 3
    assert _files(tmp_path) == {"png", "g"}


def test_default_output_name_is_next_to_the_audio(tiny_bundle, speech_wav, tmp_path):
    import shutil

    wav = tmp_path / "hello.wav"
    shutil.copy(speech_wav, wav)
    args = ["render", "--audio", str(wav), "--emotion", "happy", "--intensity", "0.5",
            "--view", "30", "--checkpoint", str(tiny_bundle), "--resolution", "32",
            "--fps", "2", "--backend", "torch", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert (tmp_path / "hello_happy50_view30.mp4").is_file()


@pytest.fixture()
def bad_inputs(tmp_path, speech_wav):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return {"text": text, "blocker": blocker, "wav": speech_wav}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "audio file not found"),
        ("text", "could not decode"),
        ("emotion", "unknown emotion 'furious'; expected one of: neutral, angry, contempt"),
        ("mix", "is not NAME or NAME:WEIGHT"),
        ("intensity", "intensity must lie in [0, 1]"),
        ("view", "argument --view: invalid float value: 'left'"),
        ("views", "'left' is not a number"),
        ("unwritable", "cannot create the output folder"),
        ("checkpoint", "scripts/build_demo.sh"),
        ("odd", "must be even for mp4"),
        ("subject", "unknown --subject 'bob'"),
    ],
)
def test_bad_inputs_exit_nonzero_with_message_and_no_output(
    case, message, bad_inputs, tiny_bundle, tmp_path, capsys
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "video.mp4"
    args = {"--audio": str(bad_inputs["wav"]), "--checkpoint": str(tiny_bundle),
            "--out": str(out), "--resolution": "32", "--fps": "2"}  # fmt: skip
    extra: list[str] = []
    if case == "missing":
        args["--audio"] = str(tmp_path / "nope.wav")
    elif case == "text":
        args["--audio"] = str(bad_inputs["text"])
    elif case == "emotion":
        extra = ["--emotion", "furious"]
    elif case == "mix":
        extra = ["--emotion", "happy:lots"]
    elif case == "intensity":
        extra = ["--emotion", "angry", "--intensity", "1.5"]
    elif case == "view":
        extra = ["--view", "left"]
    elif case == "views":
        extra = ["--views", "0,left"]
    elif case == "unwritable":
        args["--out"] = str(bad_inputs["blocker"] / "video.mp4")
    elif case == "checkpoint":
        args["--checkpoint"] = str(tmp_path / "no_bundle")
    elif case == "odd":
        args["--resolution"] = "33"
    elif case == "subject":
        extra = ["--subject", "bob"]
    argv = ["render", *[x for kv in args.items() for x in kv], *extra]
    if case == "view":
        with pytest.raises(SystemExit) as exc:
            main(argv)
        code = exc.value.code
    else:
        code = main(argv)
    assert code != 0
    assert message in capsys.readouterr().err
    assert _files(out_dir) == set()
    assert _files(tmp_path) <= {"out", "notes.wav", "a_file"}


def test_render_py_wrapper_reports_a_missing_audio_file(tmp_path):
    out = tmp_path / "x.mp4"
    res = subprocess.run(
        [sys.executable, str(REPO / "render.py"), "--audio", str(tmp_path / "a.wav"),
         "--emotion", "angry", "--view", "30", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2
    assert "error: audio file not found" in res.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
