"""The synthetic dataset generator: the tiny preset is valid, complete and deterministic."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from emotalk3d.constants import EMOTIONS
from emotalk3d.data.format import check_dataset, read_dataset
from emotalk3d.data.synth.generate import (
    SIZES,
    SynthSize,
    generate_dataset,
    plan_sequences,
    plan_subjects,
    preview_frames,
)
from emotalk3d.data.synth.sentences import sentence


def test_tiny_dataset_passes_the_deep_check(tiny_dataset):
    report = check_dataset(tiny_dataset)
    assert report.problems == []
    s = report.summary
    tiny = SIZES["tiny"]
    assert s["subjects"] == 1
    assert s["sequences"] == len(tiny.sentence_ids) * tiny.emotions_per_sentence == 8
    assert s["cameras"] == tiny.num_cameras and s["image_resolution"] == "64x64"
    assert s["sequences_per_split"] == {"train": 4, "val": 2, "test": 2}
    assert "neutral" in s["emotions"] and len(s["emotions"]) >= 5
    assert 8 * 1.0 < s["audio_seconds"] < 8 * 4.0  # short sentences of about 2 s


def test_tiny_dataset_contents_are_consistent(tiny_dataset):
    (subject,) = read_dataset(tiny_dataset)
    P = len(subject.template.vertices)
    assert 1000 < P < 2000  # the tiny built-in head (~1.4k vertices)
    for name in ("face", "lips", "eyes", "mouth_interior"):
        assert subject.template.regions[name].any(), name
    for seq in subject.sequences:
        meta = seq.meta
        assert seq.name.endswith(meta.sentence_id)
        assert meta.sentence == sentence(meta.sentence_id).text
        assert meta.split == sentence(meta.sentence_id).split
        assert meta.intensity == (0.0 if meta.emotion == "neutral" else meta.intensity)
        assert meta.intensity in (0.0, 0.5, 1.0)
        meshes = seq.load_meshes()
        assert meshes.shape == (meta.num_frames, P, 3) and meshes.dtype == np.float32
        audio, sr = seq.load_audio()
        assert sr == 16000 and np.abs(audio).max() > 0.05  # real speech, not silence
        # speech moves the lips: some lip vertex travels more than 2 mm during the clip
        lips = subject.template.regions["lips"]
        travel = np.linalg.norm(meshes[:, lips] - subject.template.vertices[lips], axis=-1)
        assert travel.max() > 2.0, seq.name
    neutral = [s for s in subject.sequences if s.meta.emotion == "neutral"]
    assert neutral and all(s.has_images for s in neutral)


def test_tiny_images_show_the_head_in_every_camera(tiny_dataset):
    (subject,) = read_dataset(tiny_dataset)
    seq = next(s for s in subject.sequences if s.has_images)
    for cam in subject.cameras:
        mask = seq.load_mask(cam.id, 0)
        img = seq.load_image(cam.id, 0)
        assert img.shape == (cam.height, cam.width, 3)
        cover = mask.mean()
        assert 0.1 < cover < 0.9, (cam.id, cover)  # the subject is in view, not filling it
        assert mask[0, 0] == 0 and mask[0, -1] == 0  # background in the top corners


def test_dataset_json_records_the_generation(tiny_dataset):
    info = json.loads((tiny_dataset / "dataset.json").read_text())
    assert info["generator"] == "emotalk3d.data.synth" and info["rig"] == "builtin"
    assert info["size"] == "tiny" and info["seed"] == 0 and info["format_version"] == 1
    split = info["sentence_split"]
    assert len(split["train"]) == 40 and len(split["val"]) == 4 and len(split["test"]) == 4
    assert info["subjects"][0]["name"] == "subj00"


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tiny_dataset, tmp_path):
    # the tiny preset with 1 camera at 8x8: meshes and audio do not depend on the cameras,
    # so this second generation must reproduce the session's tiny dataset byte for byte
    cheap = replace(SIZES["tiny"], num_cameras=1, resolution=8)
    again = generate_dataset(tmp_path / "a", size=cheap, seed=0, progress=False)
    seqs = sorted(p.name for p in (tiny_dataset / "subj00/sequences").iterdir())
    assert seqs == sorted(p.name for p in (again / "subj00/sequences").iterdir())
    for name in seqs:
        for f in ("meshes.npy", "audio.wav", "meta.json"):
            a = (tiny_dataset / "subj00/sequences" / name / f).read_bytes()
            b = (again / "subj00/sequences" / name / f).read_bytes()
            assert a == b, f"{name}/{f} differs between two runs with seed 0"
    assert (tiny_dataset / "subj00/template.npz").read_bytes() == (
        again / "subj00/template.npz"
    ).read_bytes()

    one = replace(cheap, sentence_ids=("s000",), emotions_per_sentence=1)
    other = generate_dataset(tmp_path / "b", size=one, seed=1, progress=False)
    a = (tiny_dataset / "subj00/sequences/neutral_s000/audio.wav").read_bytes()
    b = (other / "subj00/sequences/neutral_s000/audio.wav").read_bytes()
    assert a != b  # the seed reaches the prosody jitter


def test_emotion_plan_is_balanced_and_varied():
    small = SIZES["small"]
    for k in range(3):
        plans = plan_sequences(small, k, seed=0)
        train = [p for p in plans if p.split == "train"]
        counts = Counter(p.emotion for p in train)
        assert set(counts) == set(EMOTIONS)
        assert max(counts.values()) - min(counts.values()) <= 1  # balanced classes
        by_sentence: dict[str, set] = {}
        for p in train:
            by_sentence.setdefault(p.sentence_id, set()).add((p.emotion, p.intensity))
        assert all(len(v) == small.emotions_per_sentence for v in by_sentence.values())
        assert plans[0].emotion == "neutral" and plans[0].images  # neutral images per subject
        levels = Counter(p.intensity for p in plans if p.emotion != "neutral")
        assert levels[0.5] > 0 and levels[1.0] > 0
        assert len({p.name for p in plans}) == len(plans)
    a = [(p.sentence_id, p.emotion) for p in plan_sequences(small, 0, 0)]
    b = [(p.sentence_id, p.emotion) for p in plan_sequences(small, 1, 0)]
    assert a != b  # subjects hear sentences in different emotions


def test_image_budget_takes_neutral_first_then_distinct_emotions():
    small = SIZES["small"]
    for k in range(2):
        plans = plan_sequences(small, k, seed=0)
        imaged = [p for p in plans if p.images]
        assert len(imaged) == small.image_sequences == 4
        assert sum(p.emotion == "neutral" for p in imaged) == 2
        emotional = [p for p in imaged if p.emotion != "neutral"]
        assert len({p.emotion for p in emotional}) == 2
        assert sorted(p.split for p in emotional) == ["train", "val"]
        assert all(p.split == "train" for p in imaged if p.emotion == "neutral")
    tiny = [p for p in plan_sequences(SIZES["tiny"], 0, seed=0) if p.images]
    assert sorted((p.emotion == "neutral", p.split) for p in tiny) == [
        (False, "train"),
        (True, "train"),
    ]
    full = plan_sequences(SIZES["full"], 0, seed=0)
    assert all(p.images for p in full)


def test_subjects_get_distinct_voices_and_appearances():
    subjects = plan_subjects(SIZES["small"], 3, seed=0)
    assert len({s.voice for s in subjects}) == 3
    assert len({s.appearance_seed for s in subjects}) == 3
    assert [s.name for s in subjects] == ["subj00", "subj01", "subj02"]


def test_size_presets_are_typed_and_validated():
    assert all(isinstance(s, SynthSize) for s in SIZES.values())
    assert SIZES["full"].resolution == 512 and SIZES["full"].num_cameras == 11
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        generate_dataset("unused", size="huge")
    with pytest.raises(ValueError, match="unknown rig 'bust'"):
        generate_dataset("unused", rig="bust")


def test_preview_frames_spread_evenly():
    assert preview_frames(50, 3) == [0, 24, 49]
    assert preview_frames(2, 6) == [0, 1]


def test_generator_refuses_to_overwrite_another_dataset(tmp_path):
    from emotalk3d.data.format import Camera, write_calibration

    write_calibration(tmp_path / "subjA", [Camera("a", np.eye(3), np.eye(4), 8, 8)])
    with pytest.raises(FileExistsError, match="not made by this generator"):
        generate_dataset(tmp_path, size="tiny", progress=False)
    assert (tmp_path / "subjA/calibration.json").is_file()
