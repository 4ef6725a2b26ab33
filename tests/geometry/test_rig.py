"""Tests for emotalk3d.geometry.rig (LinearRig, the ICT loader) and the procedural head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d.constants import ARKIT_NAMES
from emotalk3d.geometry.procedural import procedural_head_rig
from emotalk3d.geometry.rig import (
    REQUIRED_LANDMARKS,
    LinearRig,
    decimate_rig,
    face_normals,
    load_ict_rig,
    load_rig,
)

REQUIRED_EXPRESSIONS = (
    "jawOpen mouthClose mouthFunnel mouthPucker mouthSmile_L mouthSmile_R mouthFrown_L "
    "mouthFrown_R mouthStretch_L mouthStretch_R mouthPress_L mouthPress_R mouthUpperUp_L "
    "mouthUpperUp_R mouthLowerDown_L mouthLowerDown_R browInnerUp browDown_L browDown_R "
    "browOuterUp_L browOuterUp_R eyeBlink_L eyeBlink_R eyeWide_L eyeWide_R eyeSquint_L "
    "eyeSquint_R noseSneer_L noseSneer_R cheekPuff cheekSquint_L cheekSquint_R"
).split()


@pytest.fixture(scope="module")
def head() -> LinearRig:
    return procedural_head_rig("small")


@pytest.fixture(scope="module")
def ict(ict_path) -> LinearRig:
    return load_ict_rig(ict_path)


def _toy_rig() -> LinearRig:
    rng = np.random.default_rng(0)
    P = 5
    return LinearRig(
        neutral=rng.normal(size=(P, 3)),
        faces=np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4]]),
        uvs=rng.uniform(size=(P, 2)),
        expression_deltas=rng.normal(size=(3, P, 3)),
        expression_names=("jawOpen", "mouthSmile_L", "browInnerUp_L"),
        identity_deltas=rng.normal(size=(2, P, 3)),
        identity_names=("a", "b"),
        regions={"face": np.array([1, 1, 1, 0, 0], bool)},
        landmarks={"nose_tip": 3, "chin": 4},
    )


def _lip_gap(rig: LinearRig, weights: dict) -> float:
    v = rig.evaluate(rig.weights_from_dict(weights))
    lm = rig.landmarks
    return float(np.linalg.norm(v[lm["lip_upper_mid"]] - v[lm["lip_lower_mid"]]))


def test_evaluate_equals_neutral_plus_weighted_deltas_numpy_and_torch():
    rig = _toy_rig()
    rng = np.random.default_rng(1)
    w = rng.uniform(size=(4, 3)).astype(np.float32)
    a = rng.normal(size=(4, 2)).astype(np.float32)
    expected = (rig.neutral[None] + np.einsum("bk,kpc->bpc", w, rig.expression_deltas)
                + np.einsum("bk,kpc->bpc", a, rig.identity_deltas))  # fmt: skip
    out = rig.evaluate(w, a)
    assert isinstance(out, np.ndarray) and out.shape == (4, 5, 3)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    out_t = rig.evaluate(torch.from_numpy(w), torch.from_numpy(a))
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (4, 5, 3)
    np.testing.assert_allclose(out_t.numpy(), expected, atol=1e-5)
    # unbatched and float64 torch keep their shape and dtype
    one = rig.evaluate(torch.from_numpy(w[0]).double())
    assert one.shape == (5, 3) and one.dtype == torch.float64
    np.testing.assert_allclose(
        one.numpy(), rig.neutral + np.einsum("k,kpc->pc", w[0], rig.expression_deltas), atol=1e-5
    )


def test_evaluate_rejects_wrong_width():
    rig = _toy_rig()
    with pytest.raises(ValueError, match=r"K=3"):
        rig.evaluate(np.zeros(4))


def test_unknown_expression_name_lists_close_names():
    rig = _toy_rig()
    with pytest.raises(ValueError, match=r"unknown expression 'jawOpn'.*jawOpen"):
        rig.expression_index("jawOpn")
    with pytest.raises(ValueError, match="mouthSmile_L"):
        rig.weights_from_dict({"mouthSmileL": 1.0})
    assert rig.expression_index(["browInnerUp_L", "jawOpen"]) == [2, 0]


def test_weights_from_dict_and_split_arkit_names():
    rig = _toy_rig()
    w = rig.weights_from_dict({"jawOpen": 0.5, "mouthSmile_L": 0.25})
    np.testing.assert_array_equal(w, [0.5, 0.25, 0.0])


def test_subset_reindexes_faces_and_landmarks():
    rig = _toy_rig()
    sub = rig.subset(np.array([0, 1, 1, 1, 0], bool))
    assert sub.num_vertices == 3
    np.testing.assert_array_equal(sub.faces, [[0, 2, 1]])  # only (1, 3, 2) survives
    np.testing.assert_array_equal(sub.neutral, rig.neutral[1:4])
    assert sub.landmarks == {"nose_tip": 2}
    np.testing.assert_array_equal(sub.regions["face"], [True, True, False])
    np.testing.assert_allclose(sub.evaluate(np.ones(3)), rig.evaluate(np.ones(3))[1:4], atol=1e-6)


def test_procedural_head_has_expressions_regions_landmarks(head):
    assert set(REQUIRED_EXPRESSIONS) <= set(head.expression_names)
    assert set(head.expression_names) == set(ARKIT_NAMES)
    for r in ("face", "lips", "eyes", "mouth_interior", "eyeballs", "brows", "teeth", "tongue"):
        assert head.regions[r].any(), r
    assert set(REQUIRED_LANDMARKS) <= set(head.landmarks)
    assert head.num_identities > 5
    assert head.uvs.min() >= 0 and head.uvs.max() <= 1
    assert head.num_vertices <= 5000
    n = head.neutral
    size = np.ptp(n[head.regions["skin"]], 0)
    assert 135 < size[0] < 165 and 215 < size[1] < 245 and 190 < size[2] < 240, size
    nose = n[head.landmarks["nose_tip"]]
    assert abs(nose[0]) < 1e-3 and nose[2] == pytest.approx(105.0, abs=1e-3)


def test_procedural_resolutions_and_determinism():
    tiny = procedural_head_rig("tiny")
    full = procedural_head_rig("full")
    assert tiny.num_vertices <= 1500 and 10_000 <= full.num_vertices <= 20_000
    again = procedural_head_rig("tiny")
    np.testing.assert_array_equal(tiny.neutral, again.neutral)
    np.testing.assert_array_equal(tiny.expression_deltas, again.expression_deltas)
    a, b = procedural_head_rig("tiny", seed=3), procedural_head_rig("tiny", seed=3)
    np.testing.assert_array_equal(a.neutral, b.neutral)
    assert np.abs(a.neutral - tiny.neutral).max() > 2.0  # a seed is another person


def test_jaw_open_parts_lips_and_mouth_close_closes_them(head):
    assert _lip_gap(head, {}) < 0.5
    assert 15.0 < _lip_gap(head, {"jawOpen": 1.0}) < 25.0
    assert _lip_gap(head, {"jawOpen": 1.0, "mouthClose": 1.0}) < 2.0


def test_expressions_move_the_right_way(head):
    lm = head.landmarks
    n = head.neutral

    def moved(weights, landmark):
        return head.evaluate(head.weights_from_dict(weights))[lm[landmark]] - n[lm[landmark]]

    smile = moved({"mouthSmile_L": 1.0}, "mouth_corner_L")
    assert smile[1] > 3.0 and smile[0] > 2.0  # up and outward (+x is the subject's left)
    assert moved({"mouthFrown_R": 1.0}, "mouth_corner_R")[1] < -3.0
    assert moved({"browInnerUp": 1.0}, "brow_inner_L")[1] > 3.0
    blink = head.evaluate(head.weights_from_dict({"eyeBlink_L": 1.0}))
    lid_gap = blink[lm["eye_upper_L"], 1] - blink[lm["eye_lower_L"], 1]
    assert abs(lid_gap) < 1.5 < n[lm["eye_upper_L"], 1] - n[lm["eye_lower_L"], 1]
    assert moved({"eyeBlink_L": 1.0}, "eye_upper_R")[1] == pytest.approx(0.0, abs=1e-4)


def test_procedural_normals_point_outward(head):
    n = head.neutral
    skin = head.regions["skin"][head.faces].all(1)
    fn = face_normals(n, head.faces[skin])
    centre = n[head.regions["skin"]].mean(0)
    out = np.einsum("ij,ij->i", fn, n[head.faces[skin]].mean(1) - centre)
    assert (out > 0).mean() > 0.97


def test_load_rig_dispatch():
    assert load_rig("builtin", "tiny").num_vertices <= 1500
    with pytest.raises(ValueError, match="builtin"):
        load_rig("nope", "tiny")


def test_ict_rig_in_millimetres_centred(ict):
    assert ict.num_expressions == 53 and ict.num_identities == 100
    lm = ict.landmarks
    n = ict.neutral
    assert set(REQUIRED_LANDMARKS) <= set(lm)
    width = abs(n[lm["mouth_corner_L"], 0] - n[lm["mouth_corner_R"], 0])
    assert 40 < width < 60  # mouth ~50 mm wide: centimetres were converted
    face_w = np.ptp(n[ict.regions["face"], 0])
    assert 140 < face_w < 160, face_w
    assert n[lm["nose_tip"], 2] == pytest.approx(105.0, abs=1e-3)
    opened = _lip_gap(ict, {"jawOpen": 1.0})
    assert opened > 10.0
    # ICT's own mouthClose leaves ~7 mm between the inner-lip landmarks (it rolls the lips)
    assert _lip_gap(ict, {"jawOpen": 1.0, "mouthClose": 1.0}) < 0.25 * opened
    both = ict.weights_from_dict({"browInnerUp": 0.5})
    assert both[ict.expression_index("browInnerUp_L")] == 0.5
    assert both[ict.expression_index("browInnerUp_R")] == 0.5
    for r in ("face", "lips", "eyes", "mouth_interior"):
        assert ict.regions[r].any(), r


def test_ict_decimation_is_an_exact_sub_rig(ict):
    small = decimate_rig(ict, 3000, groups=("mouth_interior", "eyeballs", "teeth"))
    assert small.num_vertices <= 3000
    assert set(REQUIRED_LANDMARKS) <= set(small.landmarks)
    f = small.faces
    assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 0] != f[:, 2]).all()
    used = np.zeros(small.num_vertices, bool)
    used[f.ravel()] = True
    assert used.all()
    # every kept vertex is an original one: nose tip moves exactly as in the full rig
    w = ict.weights_from_dict({"jawOpen": 0.7, "mouthSmile_L": 0.4})
    full_nose = ict.evaluate(w)[ict.landmarks["lip_lower_mid"]]
    np.testing.assert_allclose(small.evaluate(w)[small.landmarks["lip_lower_mid"]], full_nose)
