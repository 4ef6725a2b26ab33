"""The dataset format v1: write/read round trips and the deep check's named problems."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from emotalk3d.cli import main
from emotalk3d.data.format import (
    Camera,
    DatasetFormatError,
    SequenceMeta,
    Template,
    check_dataset,
    read_calibration,
    read_dataset,
    read_image,
    read_subject,
    read_template,
    write_calibration,
    write_frame_images,
    write_sequence,
    write_template,
)

FPS = 25.0
SR = 16000


def _cameras(num: int = 2, w: int = 16, h: int = 12) -> list[Camera]:
    cams = []
    for i in range(num):
        K = np.array([[20.0, 0, w / 2], [0, 20.0, h / 2], [0, 0, 1]])
        w2c = np.eye(4)
        w2c[:3, 3] = [10.0 * i, 0.0, 650.0]
        cams.append(Camera(id=f"cam{i:02d}", K=K, world_to_cam=w2c, width=w, height=h))
    return cams


def _template(P: int = 10) -> Template:
    rng = np.random.default_rng(0)
    regions = {r: np.arange(P) % (k + 2) == 0 for k, r in enumerate(
        ("face", "lips", "eyes", "mouth_interior"))}  # fmt: skip
    return Template(
        vertices=rng.normal(size=(P, 3)).astype(np.float32) * 50,
        faces=np.array([[0, 1, 2], [2, 3, 4], [5, 6, 9]], dtype=np.int32),
        uvs=rng.uniform(size=(P, 2)).astype(np.float32),
        regions=regions,
    )


def _meta(T: int, emotion: str = "happy", intensity: float = 1.0, **extra) -> SequenceMeta:
    return SequenceMeta(emotion=emotion, intensity=intensity, sentence="Hello there.", fps=FPS,
                        num_frames=T, sentence_id="s001", split="train", extra=extra)  # fmt: skip


def _audio(T: int) -> np.ndarray:  # [S]
    S = int(T / FPS * SR) - 100  # ceil(duration * fps) == T
    return (0.3 * np.sin(np.arange(S) / SR * 2 * np.pi * 220)).astype(np.float32)


def _image(cam_index: int, t: int, w: int = 16, h: int = 12) -> np.ndarray:  # [H, W, 3] uint8
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = 10 * cam_index
    img[..., 1] = 7 * t
    img[: h // 2, : w // 2, 2] = 200
    return img


def make_dataset(root: Path, T: int = 4, P: int = 10, num_cams: int = 2) -> Path:
    """A valid two-sequence dataset (one with images and masks, one without) in `root`."""
    subj = root / "subj00"
    cams = _cameras(num_cams)
    write_calibration(subj, cams)
    write_template(subj, _template(P))
    meshes = np.random.default_rng(1).normal(size=(T, P, 3)).astype(np.float32)
    q = write_sequence(subj, "happy_strong_s001", _meta(T), meshes, _audio(T))
    for c, cam in enumerate(cams):
        for t in range(T):
            mask = np.zeros((cam.height, cam.width), dtype=bool)
            mask[2:8, 3:9] = True
            write_frame_images(q, cam.id, t, _image(c, t), mask=mask)
    write_sequence(subj, "neutral_s002", _meta(T, "neutral", 0.0), meshes, _audio(T))
    return root


# --------------------------------------------------------------------------------------------
# round trips


def test_calibration_round_trip(tmp_path):
    cams = _cameras(3, w=32, h=24)
    write_calibration(tmp_path, cams)
    back = read_calibration(tmp_path)
    assert [c.id for c in back] == ["cam00", "cam01", "cam02"]
    for a, b in zip(cams, back, strict=True):
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_array_equal(a.world_to_cam, b.world_to_cam)
        assert (b.width, b.height) == (32, 24)
    obj = json.loads((tmp_path / "calibration.json").read_text())
    assert obj["format_version"] == 1


def test_template_round_trip(tmp_path):
    t = _template()
    write_template(tmp_path, t)
    back = read_template(tmp_path / "template.npz")
    np.testing.assert_array_equal(back.vertices, t.vertices)
    np.testing.assert_array_equal(back.faces, t.faces)
    np.testing.assert_array_equal(back.uvs, t.uvs)
    assert back.vertices.dtype == np.float32 and back.faces.dtype == np.int32
    assert sorted(back.regions) == sorted(t.regions)
    for k in t.regions:
        np.testing.assert_array_equal(back.regions[k], t.regions[k])
        assert back.regions[k].dtype == np.bool_


def test_sequence_round_trip_with_extra_meta_images_and_masks(tmp_path):
    make_dataset(tmp_path)
    (subject,) = read_dataset(tmp_path)
    assert subject.name == "subj00" and len(subject.cameras) == 2
    assert [s.name for s in subject.sequences] == ["happy_strong_s001", "neutral_s002"]
    seq, seq_no_img = subject.sequences
    assert seq.has_images and not seq_no_img.has_images
    assert seq.meta.emotion == "happy" and seq.meta.split == "train"
    assert seq.meta.sentence_id == "s001" and seq.meta.num_frames == 4

    meshes = seq.load_meshes()
    expected = np.random.default_rng(1).normal(size=(4, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(meshes, expected)

    audio, sr = seq.load_audio()
    assert sr == 16000 and audio.dtype == np.float32
    np.testing.assert_allclose(audio, _audio(4), atol=1.0 / 32767)  # PCM_16 quantisation

    img = seq.load_image("cam01", 3)
    assert img.shape == (12, 16, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img * 255, _image(1, 3), atol=1e-3)
    mask = seq.load_mask("cam01", 3)
    assert mask.shape == (12, 16) and mask[4, 5] == 1.0 and mask[0, 0] == 0.0
    assert seq_no_img.load_mask("cam00", 0) is None
    with pytest.raises(DatasetFormatError, match="no images"):
        seq_no_img.load_image("cam00", 0)
    assert subject.split("train") == subject.sequences
    assert subject.camera("cam01").id == "cam01"


def test_meta_extra_keys_survive_round_trip(tmp_path):
    subj = tmp_path / "s"
    write_calibration(subj, _cameras())
    write_template(subj, _template())
    meshes = np.zeros((3, 10, 3), np.float32)
    write_sequence(subj, "q", _meta(3, seed=7, voice="en+f3"), meshes, _audio(3))
    seq = read_subject(subj).sequences[0]
    assert seq.meta.extra == {"seed": 7, "voice": "en+f3"}


def test_float_audio_and_jpeg_images(tmp_path):
    subj = tmp_path / "s"
    write_calibration(subj, _cameras(1))
    write_template(subj, _template())
    audio = _audio(3) * 1.7  # beyond [-1, 1]: only FLOAT keeps it
    q = write_sequence(subj, "q", _meta(3), np.zeros((3, 10, 3)), audio, audio_subtype="FLOAT")
    write_frame_images(q, "cam00", 0, _image(0, 0).astype(np.float32) / 255, image_format="jpg")
    seq = read_subject(subj).sequences[0]
    np.testing.assert_array_equal(seq.load_audio()[0], audio)
    assert seq.image_path("cam00", 0).suffix == ".jpg"
    assert seq.load_image("cam00", 0).shape == (12, 16, 3)


def test_audio_at_other_rate_is_resampled_to_16k(tmp_path):
    subj = tmp_path / "s"
    write_calibration(subj, _cameras(1))
    write_template(subj, _template())
    a48 = np.zeros(48000, np.float32)
    q = write_sequence(subj, "q", _meta(25), np.zeros((25, 10, 3)), a48, sample_rate=48000)
    audio, sr = read_subject(subj).sequences[0].load_audio()
    assert sr == 16000 and len(audio) == 16000
    assert not list(q.glob(".*")), "no temporary files are left behind"


def test_writes_leave_no_temporary_files(tmp_path):
    make_dataset(tmp_path)
    assert not [p for p in tmp_path.rglob(".*")]


# --------------------------------------------------------------------------------------------
# reader validation


def test_reader_rejects_malformed_files_naming_them(tmp_path):
    make_dataset(tmp_path)
    subj = tmp_path / "subj00"
    (subj / "calibration.json").write_text('{"format_version": 1, "cameras": [{"id": "a"}]}')
    with pytest.raises(DatasetFormatError, match=r"calibration\.json.*missing"):
        read_subject(subj)
    make_dataset(tmp_path)
    np.savez(subj / "template.npz", vertices=np.zeros((4, 2), np.float32))
    with pytest.raises(DatasetFormatError, match=r"template\.npz.*faces"):
        read_subject(subj)


def test_reader_rejects_unknown_emotion_and_bad_split(tmp_path):
    make_dataset(tmp_path)
    meta_path = tmp_path / "subj00/sequences/neutral_s002/meta.json"
    obj = json.loads(meta_path.read_text())
    obj["emotion"] = "bored"
    meta_path.write_text(json.dumps(obj))
    with pytest.raises(DatasetFormatError, match="unknown emotion 'bored'"):
        read_subject(tmp_path / "subj00")

    make_dataset(tmp_path)
    obj = json.loads(meta_path.read_text())
    obj["split"] = "holdout"
    meta_path.write_text(json.dumps(obj))
    with pytest.raises(DatasetFormatError, match=r"split must be one of train, val, test.*holdout"):
        read_subject(tmp_path / "subj00")


def test_load_meshes_checks_template_vertex_count(tmp_path):
    make_dataset(tmp_path)
    seq = read_subject(tmp_path / "subj00").sequences[0]
    np.save(seq.path / "meshes.npy", np.zeros((4, 9, 3), np.float32))
    with pytest.raises(DatasetFormatError, match="9 vertices per frame.*has 10"):
        seq.load_meshes()


def test_read_image_names_a_corrupt_file(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetFormatError, match="bad.png"):
        read_image(path)


def test_writer_validates_inputs(tmp_path):
    with pytest.raises(DatasetFormatError, match="3x3"):
        write_calibration(tmp_path, [Camera("a", np.eye(2), np.eye(4), 4, 4)])
    with pytest.raises(DatasetFormatError, match="intensity"):
        write_sequence(tmp_path, "q", _meta(3, intensity=1.5), np.zeros((3, 4, 3)), _audio(3))
    with pytest.raises(DatasetFormatError, match="frames"):
        write_sequence(tmp_path, "q", _meta(3), np.zeros((4, 4, 3)), _audio(3))


# --------------------------------------------------------------------------------------------
# the deep check


def test_check_valid_dataset_has_no_problems_and_a_summary(tmp_path):
    make_dataset(tmp_path)
    report = check_dataset(tmp_path)
    assert report.problems == [] and report.ok
    s = report.summary
    assert s["subjects"] == 1 and s["sequences"] == 2 and s["sequences_with_images"] == 1
    assert s["frames"] == 8 and s["image_frames"] == 4
    assert s["cameras"] == 2 and s["image_resolution"] == "16x12"
    assert s["emotions"] == {"neutral": 1, "happy": 1}
    assert s["sequences_per_split"] == {"train": 2}
    assert math.isclose(s["audio_seconds"], 2 * len(_audio(4)) / SR, abs_tol=1e-3)


def test_check_names_a_missing_image(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "subj00/sequences/happy_strong_s001/images/cam01/00002.png").unlink()
    report = check_dataset(tmp_path)
    assert len(report.problems) == 1
    assert "1 of 8 images missing" in report.problems[0]
    assert "images/cam01/00002.png" in report.problems[0]


def test_check_names_a_mesh_with_the_wrong_vertex_count(tmp_path):
    make_dataset(tmp_path)
    np.save(tmp_path / "subj00/sequences/neutral_s002/meshes.npy", np.zeros((4, 11, 3), "f4"))
    report = check_dataset(tmp_path)
    assert len(report.problems) == 1
    msg = report.problems[0]
    assert "neutral_s002/meshes.npy" in msg and "11 vertices" in msg and "has 10" in msg


def test_check_names_a_frame_count_mismatch(tmp_path):
    make_dataset(tmp_path)
    np.save(tmp_path / "subj00/sequences/neutral_s002/meshes.npy", np.zeros((6, 10, 3), "f4"))
    report = check_dataset(tmp_path)
    assert len(report.problems) == 1
    msg = report.problems[0]
    assert "frame-count mismatch" in msg and "6 frames" in msg and "num_frames=4" in msg


def test_check_names_audio_length_mismatch(tmp_path):
    make_dataset(tmp_path)
    seq = tmp_path / "subj00/sequences/neutral_s002"
    import soundfile as sf

    sf.write(seq / "audio.wav", np.zeros(SR, np.float32), SR)  # 1 s = 25 frames, meta says 4
    report = check_dataset(tmp_path)
    assert len(report.problems) == 1 and "neutral_s002/audio.wav" in report.problems[0]


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_check_names_a_corrupt_png(tmp_path, how):
    make_dataset(tmp_path)
    path = tmp_path / "subj00/sequences/happy_strong_s001/images/cam00/00001.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x89PNG junk" * 5)
    report = check_dataset(tmp_path)
    assert len(report.problems) == 1
    assert "images/cam00/00001.png" in report.problems[0] and "corrupt" in report.problems[0]


def test_check_names_wrong_image_size_and_bad_meta(tmp_path):
    make_dataset(tmp_path)
    q = tmp_path / "subj00/sequences/happy_strong_s001"
    write_frame_images(q, "cam00", 0, np.zeros((8, 8, 3), np.uint8))
    meta_path = tmp_path / "subj00/sequences/neutral_s002/meta.json"
    obj = json.loads(meta_path.read_text())
    obj["split"] = "holdout"
    meta_path.write_text(json.dumps(obj))
    problems = check_dataset(tmp_path).problems
    assert len(problems) == 2
    assert any("images/cam00/00000.png is 8x8" in p and "16x12" in p for p in problems)
    assert any("neutral_s002/meta.json" in p and "holdout" in p for p in problems)


def test_check_on_a_folder_without_subjects(tmp_path):
    report = check_dataset(tmp_path)
    assert not report.ok and "no subject folders" in report.problems[0]


def test_data_check_cli_exit_codes(tmp_path, capsys):
    make_dataset(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "subjects:" in out and "happy 1" in out
    (tmp_path / "subj00/sequences/happy_strong_s001/images/cam01/00000.png").unlink()
    assert main(["data", "check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "images/cam01/00000.png" in captured.out + captured.err
