"""The EmoTalk3D-release adapter on a small hand-made folder in the release's style."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from emotalk3d.data.emotalk3d import (
    convert_emotalk3d,
    parse_sequence_name,
    read_emotalk3d_subject,
    read_obj,
    scan_emotalk3d_subject,
)
from emotalk3d.data.format import DatasetFormatError, check_dataset, read_subject

T = 3
QUAD = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 0.2]]) * 0.1  # metres


def _write_obj(path: Path, verts: np.ndarray) -> None:
    lines = [f"v {x} {y} {z}" for x, y, z in verts]
    lines += ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1", "vt 0.5 0.5"]
    lines += ["f 1/1 2/2 5/5", "f 2/2 3/3 5/5 4/4"]  # a triangle and a quad (fan-split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_release(root: Path) -> Path:
    """S01 with cameras A..C (metres), an OBJ-per-frame neutral sequence and an .npy sequence."""
    subj = root / "S01"
    subj.mkdir(parents=True)
    cams = {}
    for i, letter in enumerate("ABC"):
        w2c = np.eye(4)[:3]  # 3x4 extrinsic
        w2c[:, 3] = [0.1 * i, 0.0, 0.65]
        cams[letter] = {"K": [[30, 0, 8], [0, 30, 6], [0, 0, 1]], "RT": w2c.tolist()}
    (subj / "calibration.json").write_text(json.dumps(cams))
    _write_obj(subj / "template.obj", QUAD)
    for name, per_frame_obj in (("Neutral_005", True), ("happy_strong_012", False)):
        seq = subj / name
        for t in range(T):
            verts = QUAD + 0.001 * t
            if per_frame_obj:
                _write_obj(seq / "meshes" / f"frame_{t + 10:04d}.obj", verts)
            for letter in "ABC":
                img = np.full((12, 16, 3), 40 * t, np.uint8)
                (seq / "images" / letter).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(seq / "images" / letter / f"{t + 10:06d}.jpg")
        if not per_frame_obj:
            np.save(seq / "meshes.npy", np.stack([QUAD + 0.001 * t for t in range(T)]))
        stereo = np.zeros((int(44100 * T / 25) + 50, 2), np.float32)
        stereo[:, 0] = 0.2
        sf.write(seq / f"{name}.wav", stereo, 44100)
    return subj


def test_parse_sequence_names():
    assert parse_sequence_name("happy_strong_012") == ("happy", 1.0, "012")
    assert parse_sequence_name("Angry-1-s03") == ("angry", 0.5, "s03")
    assert parse_sequence_name("neutral_005") == ("neutral", 0.0, "005")
    assert parse_sequence_name("disgust_mild_a_b") == ("disgusted", 0.5, "a_b")
    with pytest.raises(DatasetFormatError, match="'bored_1_2'.*<emotion>_<level>_<sentence>"):
        parse_sequence_name("bored_1_2")
    with pytest.raises(DatasetFormatError, match="level"):
        parse_sequence_name("happy_loud_2")


def test_read_obj_triangulates_and_maps_uvs(tmp_path):
    _write_obj(tmp_path / "m.obj", QUAD)
    v, f, uv = read_obj(tmp_path / "m.obj")
    np.testing.assert_allclose(v, QUAD)
    np.testing.assert_array_equal(f, [[0, 1, 4], [1, 2, 4], [1, 4, 3]])
    np.testing.assert_allclose(uv, [[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]])


def test_scan_recognises_the_layout(tmp_path):
    subject = scan_emotalk3d_subject(make_release(tmp_path / "src"))
    assert [s.name for s in subject.sequences] == ["Neutral_005", "happy_strong_012"]
    neutral, happy = subject.sequences
    assert (neutral.emotion, neutral.intensity) == ("neutral", 0.0)
    assert (happy.emotion, happy.intensity, happy.sentence_id) == ("happy", 1.0, "012")
    assert sorted(neutral.images) == ["A", "B", "C"] and len(neutral.images["A"]) == T
    assert [p.name for p in neutral.meshes] == [f"frame_{t + 10:04d}.obj" for t in range(T)]


def test_convert_writes_a_readable_dataset(tmp_path):
    make_release(tmp_path / "src")
    (out,) = convert_emotalk3d(tmp_path / "src", tmp_path / "dst")
    subject = read_subject(out)
    assert [c.id for c in subject.cameras] == ["A", "B", "C"]
    assert (subject.cameras[0].width, subject.cameras[0].height) == (16, 12)
    np.testing.assert_allclose(subject.cameras[1].world_to_cam[:3, 3], [100, 0, 650])  # mm
    np.testing.assert_allclose(subject.template.vertices, QUAD * 1000, atol=1e-4)
    assert subject.template.faces.shape == (3, 3)
    neutral, happy = subject.sequences
    np.testing.assert_allclose(happy.load_meshes()[2], (QUAD + 0.002) * 1000, atol=1e-3)
    audio, sr = neutral.load_audio()
    assert sr == 16000 and len(audio) == 16000 * T // 25
    np.testing.assert_allclose(audio[100:-100], 0.1, atol=2e-3)  # stereo mixed down
    assert neutral.image_path("B", 2).name == "00002.jpg"
    assert abs(neutral.load_image("B", 2).mean() - 80 / 255) < 0.02
    problems = check_dataset(tmp_path / "dst").problems
    assert len(problems) == 1 and "missing region masks" in problems[0]  # documented gap


def test_read_emotalk3d_subject_converts_once(tmp_path, monkeypatch):
    import emotalk3d.data.emotalk3d as adapter

    src = make_release(tmp_path / "src")
    subject = read_emotalk3d_subject(src, tmp_path / "cache")
    assert subject.name == "S01" and len(subject.sequences) == 2

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("the converted cache should have been reused")

    monkeypatch.setattr(adapter, "convert_emotalk3d_subject", no_second_conversion)
    again = read_emotalk3d_subject(src, tmp_path / "cache")
    assert again.name == "S01" and len(again.sequences) == 2


def test_uninterpretable_files_are_named(tmp_path):
    subj = make_release(tmp_path / "src")
    bad = subj / "Neutral_005/meshes/frame_0011.obj"
    bad.write_text("v 1 2\n")
    with pytest.raises(DatasetFormatError, match="frame_0011.obj"):
        convert_emotalk3d(subj, tmp_path / "dst")

    (subj / "calibration.json").write_text(json.dumps({"A": {"K": np.eye(3).tolist()}}))
    with pytest.raises(DatasetFormatError, match=r"calibration\.json.*world_to_cam"):
        convert_emotalk3d(subj, tmp_path / "dst")

    (subj / "calibration.json").unlink()
    with pytest.raises(DatasetFormatError, match="calibration"):
        scan_emotalk3d_subject(subj)


def test_image_count_must_match_mesh_count(tmp_path):
    subj = make_release(tmp_path / "src")
    (subj / "happy_strong_012/images/B/000011.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"images/B.*2 images.*3 meshes"):
        convert_emotalk3d(subj, tmp_path / "dst")
