"""Tests for emotalk3d.geometry.arkit: bounded fitting and the Live Link Face / JSON writers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from emotalk3d.constants import ARKIT_NAMES
from emotalk3d.geometry.arkit import (
    LIVE_LINK_HEADER,
    LIVE_LINK_NAMES,
    arkit_to_rig_weights,
    fit_arkit_weights,
    live_link_timecode,
    read_live_link_csv,
    write_arkit_json,
    write_live_link_csv,
)
from emotalk3d.geometry.procedural import procedural_head_rig
from emotalk3d.geometry.rig import load_ict_rig


def _sparse_weights(rng, T: int, missing: tuple[str, ...] = ()) -> np.ndarray:  # [T, 52]
    w = rng.uniform(size=(T, 52)) * (rng.uniform(size=(T, 52)) < 0.4)
    w[:, 0] = 1.0  # weights at both bounds
    for n in missing:
        w[:, ARKIT_NAMES.index(n)] = 0.0
    return w.astype(np.float32)


def test_fit_recovers_known_weights_builtin():
    rig = procedural_head_rig("tiny")
    rng = np.random.default_rng(0)
    truth = _sparse_weights(rng, 12)
    ident = rig.sample_identity(1)
    meshes = rig.evaluate(arkit_to_rig_weights(rig, truth), ident)
    fit = fit_arkit_weights(rig, meshes, identity_weights=ident)
    assert fit.shape == (12, 52)
    assert np.abs(fit - truth).max() < 1e-3
    assert fit.min() >= 0.0 and fit.max() <= 1.0
    # torch in, torch out; an explicit neutral is the same as identity weights
    fit_t = fit_arkit_weights(rig, torch.from_numpy(meshes), neutral=rig.identity_neutral(ident))
    assert isinstance(fit_t, torch.Tensor)
    np.testing.assert_allclose(fit_t.numpy(), fit, atol=1e-4)


def test_fit_clips_to_bounds():
    rig = procedural_head_rig("tiny")
    w = np.zeros(52, np.float32)
    w[ARKIT_NAMES.index("jawOpen")] = 1.6  # beyond the box: the fit stops at 1
    w[ARKIT_NAMES.index("mouthSmile_L")] = -0.5
    fit = fit_arkit_weights(rig, rig.evaluate(w))
    assert fit.min() >= 0.0 and fit.max() <= 1.0
    assert fit[ARKIT_NAMES.index("jawOpen")] == pytest.approx(1.0, abs=1e-6)


def test_fit_recovers_known_weights_ict(ict_path):
    rig = load_ict_rig(ict_path, max_vertices=5000)
    rng = np.random.default_rng(2)
    truth = _sparse_weights(rng, 6, missing=("tongueOut",))
    meshes = rig.evaluate(arkit_to_rig_weights(rig, truth))
    fit = fit_arkit_weights(rig, meshes)
    assert np.abs(fit - truth).max() < 1e-3
    assert (fit[:, ARKIT_NAMES.index("tongueOut")] == 0).all()  # ICT has no tongueOut


def test_live_link_csv_has_the_52_names_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.uniform(size=(30, 52)).astype(np.float32)
    path = write_live_link_csv(tmp_path / "take.csv", w, fps=25)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[:2] == ["Timecode", "BlendShapeCount"]
    assert len(set(header[2:54])) == 52 and tuple(header) == LIVE_LINK_HEADER
    for name in ("EyeBlinkLeft", "JawOpen", "MouthSmileLeft", "BrowInnerUp", "CheekPuff",
                 "TongueOut", "MouthSmileRight", "NoseSneerRight"):  # fmt: skip
        assert name in LIVE_LINK_NAMES
    assert header.index("JawRight") < header.index("JawLeft")  # Live Link Face order
    assert len(rows) == 31 and all(len(r) == len(header) for r in rows)
    # BlendShapeCount: the 52 ARKit blendshapes + 9 rotation columns (head, left eye and
    # right eye yaw/pitch/roll)
    assert rows[1][:2] == ["00:00:00:00.000", str(52 + 9)] and len(header) == 2 + 52 + 9
    assert rows[26][0] == "00:00:01:00.000" and rows[13][0] == "00:00:00:12.000"
    col = header.index("MouthSmileLeft")
    assert float(rows[5][col]) == pytest.approx(w[4, ARKIT_NAMES.index("mouthSmile_L")], abs=1e-6)
    np.testing.assert_allclose(read_live_link_csv(path), w, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_timecode_hours_and_fractional_fps():
    assert live_link_timecode(60 * 60 * 25 + 3, 25) == "01:00:00:03.000"
    assert live_link_timecode(1, 60) == "00:00:00:01.000"
    assert live_link_timecode(1, 29.97).startswith("00:00:00:01.")


def test_arkit_json(tmp_path):
    w = np.zeros((3, 52), np.float32)
    w[1, ARKIT_NAMES.index("jawOpen")] = 0.5
    doc = json.loads(write_arkit_json(tmp_path / "a.json", w, fps=25).read_text())
    assert doc["fps"] == 25 and doc["num_frames"] == 3 and len(doc["names"]) == 52
    assert doc["weights"][1][doc["names"].index("jawOpen")] == 0.5
    assert "eyeBlinkLeft" in doc["names"]


def test_writers_validate(tmp_path):
    with pytest.raises(ValueError, match=r"\[T, 52\]"):
        write_live_link_csv(tmp_path / "x.csv", np.zeros((3, 51)), fps=25)
    with pytest.raises(ValueError, match="fps"):
        write_arkit_json(tmp_path / "x.json", np.zeros((3, 52)), fps=0)
