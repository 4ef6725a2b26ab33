"""Visemes, speech/emotion/blink weight timelines and their combination for a rig."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from emotalk3d.constants import ARKIT_NAMES, EMOTIONS
from emotalk3d.data.synth import motion as mo
from emotalk3d.data.synth import speech as sp
from emotalk3d.data.synth import visemes as vis
from emotalk3d.data.synth.sentences import SENTENCES
from emotalk3d.geometry.procedural import procedural_head_rig

needs_espeak = pytest.mark.skipif(
    not sp.espeak_available(),
    reason="libespeak-ng.so.1 is not installed (apt-get install libespeak-ng1, or make setup)",
)
I = {n: i for i, n in enumerate(ARKIT_NAMES)}
FPS = 25


def spans(*items: tuple[str, float]) -> list[sp.PhonemeEvent]:
    """Consecutive phoneme spans from (phoneme, duration in s) pairs."""
    out, t = [], 0.0
    for name, d in items:
        out.append(sp.PhonemeEvent(name, t, t + d))
        t += d
    return out


def test_frame_count_is_ceil_of_duration_times_fps():
    assert mo.frame_count(2.0, 25) == 50
    assert mo.frame_count(2.04, 25) == 51  # 2.04 * 25 = 51.000000000000007 in floats
    assert mo.frame_count(2.041, 25) == 52
    assert mo.frame_count(0.0, 25) == 0
    assert mo.frame_count(1 / 3, 30) == 10
    assert mo.frame_count(0.01, 25) == 1
    for samples in (16_000, 16_001, 32_640, 31_999):
        s = sp.Speech(np.zeros(samples, np.float32), [])
        assert s.num_frames(25) == mo.frame_count(s.duration, 25) == -(-samples * 25 // 16_000)
    with pytest.raises(ValueError, match="fps must be > 0"):
        mo.frame_count(1.0, 0)


def test_every_espeak_phoneme_seen_in_the_sentences_has_a_viseme(caplog):
    # the mnemonics espeak-ng 1.51 en-us produces for the sentence list, all emotions
    seen = (
        "_ _: _! b p m D t @2 n l d s V r I z k f v u: oU a 0 3 w eI aI @ i: O: a# E i @L "
        "S N h A@ I# t# T tS O2 I2 aU g aa o@ O@ ; A: 3: dZ U aI@ OI aI3 j i@ e@ r-"
    ).split()
    with caplog.at_level(logging.WARNING):
        for p in seen:
            v = vis.phoneme_to_viseme(p)
            for c in v if isinstance(v, tuple) else (v,):
                assert c in vis.VISEMES
    assert not caplog.records


def test_unknown_phoneme_maps_to_default_and_warns_once(caplog):
    with caplog.at_level(logging.WARNING):
        assert vis.phoneme_to_viseme("Q%") == vis.DEFAULT_VISEME
        assert vis.phoneme_to_viseme("Q%") == vis.DEFAULT_VISEME
    assert sum("Q%" in r.getMessage() for r in caplog.records) == 1
    assert vis.phoneme_to_viseme("i:2") == "EE"  # stress/variant digits are stripped


def test_viseme_table_shapes():
    assert vis.VISEME_WEIGHTS.shape == (len(vis.VISEMES), 52)
    assert not vis.VISEME_WEIGHTS[vis.VISEMES.index("sil")].any()
    for v in ("AA", "AO"):
        assert vis.viseme_pose(v)["jawOpen"] >= 0.5
    assert vis.viseme_pose("OO")["mouthPucker"] >= 0.5
    assert vis.viseme_pose("EE")["mouthStretch_L"] > 0.3
    assert vis.viseme_pose("FF")["mouthRollLower"] >= 0.5
    with pytest.raises(ValueError, match="unknown viseme"):
        vis.viseme_pose("ZZ")


def test_speech_weights_open_vowel_and_closure_on_synthetic_timing():
    ph = spans(("_", 0.2), ("m", 0.06), ("A:", 0.2), ("p", 0.03), ("u:", 0.2), ("_", 0.3))
    t = mo.frame_count(ph[-1].end, FPS)
    w = mo.speech_weights(ph, t, FPS)
    assert w.shape == (t, 52) and w.dtype == np.float32
    assert w.min() >= 0 and w.max() <= 1
    assert w[0].max() == 0 and w[-1].max() == 0  # rest at the pauses
    centre = lambda p: int(round(0.5 * (p.start + p.end) * FPS))  # noqa: E731
    assert w[centre(ph[2]), I["jawOpen"]] >= 0.5
    assert w[centre(ph[4]), I["mouthPucker"]] >= 0.4
    c = mo.closure_weights(ph, t, FPS)
    for p in (ph[1], ph[3]):  # m (60 ms) and a p shorter than a frame (30 ms)
        near = [k for k in range(t) if abs(k / FPS - p.start) <= 1 / FPS + 1e-9]
        k = max(near, key=lambda k: c[k])
        assert c[k] == 1.0
        assert w[k, I["mouthClose"]] == pytest.approx(w[k, I["jawOpen"]] + mo.CLOSURE_MARGIN)
        assert w[k, I["mouthFunnel"]] == 0.0
    assert np.allclose(mo.closure_from_speech(w), c, atol=1e-6)


def bilabial_frames_closed(speech: sp.Speech, w: np.ndarray) -> list[str]:  # w: [T, 52]
    """Problems: bilabial events with no fully closed frame within one frame of their onset."""
    c = mo.closure_from_speech(w)
    bad = []
    for p in speech.phonemes:
        if p.phoneme not in ("p", "b", "m"):
            continue
        near = [k for k in range(len(w)) if abs(k / FPS - p.start) <= 1 / FPS + 1e-9]
        ok = [
            k for k in near if c[k] > 0.999 and w[k, I["mouthClose"]] >= w[k, I["jawOpen"]] + 0.02
        ]
        if not ok:
            bad.append(f"{p} frames {near}")
    return bad


@needs_espeak
@pytest.mark.parametrize("emotion", EMOTIONS)
def test_lips_close_within_one_frame_of_every_bilabial(emotion):
    intensity = 0.0 if emotion == "neutral" else 1.0
    for s in SENTENCES[:6]:
        speech, w = mo.synthesize_utterance(s, emotion, intensity, FPS, None, seed=1)
        assert w.shape == (mo.frame_count(speech.duration, FPS), 52)
        assert bilabial_frames_closed(speech, w) == []


@needs_espeak
def test_ict_inner_lips_touch_at_every_bilabial(ict_path):
    """On the real ICT face the inner-lip midpoints (68-landmarks 62/66) meet at closures."""
    d = np.load(ict_path)
    names = [str(n) for n in d["expression_names"]]
    lm = d["landmarks68"][[62, 66]]
    neutral = d["neutral"][lm].astype(np.float64)  # [2, 3] cm
    deltas = d["expression_deltas"][:, lm].astype(np.float64)  # [K, 2, 3]
    for emotion in ("neutral", "disgusted", "happy", "surprised"):
        speech, w = mo.synthesize_utterance(SENTENCES[0], emotion, 1.0, FPS, names, seed=2)
        pts = neutral[None] + np.einsum("tk,kpc->tpc", w, deltas)
        gap_mm = 10.0 * (pts[:, 0, 1] - pts[:, 1, 1])  # upper minus lower, y up
        for p in speech.phonemes:
            if p.phoneme in ("p", "b", "m"):
                near = [k for k in range(len(w)) if abs(k / FPS - p.start) <= 1 / FPS + 1e-9]
                assert gap_mm[near].min() <= 0.3, (emotion, p, gap_mm[near])
        # and the mouth does open on the vowels
        assert gap_mm.max() > 8.0


@needs_espeak
def test_jaw_is_open_at_the_centre_of_open_vowels():
    speech, w = mo.synthesize_utterance("The father bought a hot pot.", "neutral", 0.0, FPS)
    open_vowels = [p for p in speech.phonemes if p.phoneme in ("A:", "0")]
    assert len(open_vowels) >= 3  # father, hot, pot
    for p in open_vowels:
        k = int(round(0.5 * (p.start + p.end) * FPS))
        assert w[k, I["jawOpen"]] >= 0.4, (p, w[k, I["jawOpen"]])


@needs_espeak
def test_same_seed_gives_identical_audio_and_weights():
    a = mo.synthesize_utterance(SENTENCES[3], "fear", 0.5, FPS, None, seed=5)
    b = mo.synthesize_utterance(SENTENCES[3], "fear", 0.5, FPS, None, seed=5)
    c = mo.synthesize_utterance(SENTENCES[3], "fear", 0.5, FPS, None, seed=6)
    assert np.array_equal(a[0].audio, b[0].audio)
    assert np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1][: len(a[1])]) or len(a[1]) != len(c[1])


def test_emotion_weights_follow_facs_and_intensity():
    t = 100
    happy = mo.emotion_weights("happy", 1.0, t, FPS, rng=0)
    mild = mo.emotion_weights("happy", 0.5, t, FPS, rng=0)
    assert happy[0].max() == 0.0  # onset ramp starts from neutral
    late = happy[30:]
    for n in ("mouthSmile_L", "mouthSmile_R", "cheekSquint_L", "cheekSquint_R"):
        assert late[:, I[n]].min() > 0.4
    assert np.allclose(mild, 0.5 * happy, atol=1e-6)
    contempt = mo.emotion_weights("contempt", 1.0, t, FPS, rng=0)
    assert contempt[30:, I["mouthSmile_L"]].min() > 0.3
    assert contempt[:, I["mouthSmile_R"]].max() == 0.0  # unilateral
    sad = mo.emotion_weights("sad", 1.0, t, FPS, rng=0)
    assert sad[50, I["browInnerUp"]] > 0.5 and sad[50, I["mouthFrown_L"]] > 0.4
    assert mo.emotion_weights("neutral", 1.0, t, FPS, rng=0).max() == 0.0
    # slow variation: not constant, but smooth
    x = happy[30:, I["mouthSmile_L"]]
    assert x.std() > 1e-3 and np.abs(np.diff(x)).max() < 0.02
    # seeded
    assert np.array_equal(happy, mo.emotion_weights("happy", 1.0, t, FPS, rng=0))


def test_unknown_emotion_and_bad_intensity_raise():
    with pytest.raises(ValueError, match="unknown emotion 'bored'"):
        mo.emotion_weights("bored", 1.0, 10, FPS, rng=0)
    with pytest.raises(ValueError, match="intensity must lie in"):
        mo.emotion_weights("sad", -0.1, 10, FPS, rng=0)
    with pytest.raises(ValueError, match="unknown emotion 'bored'"):
        mo.synthesize_utterance("Hello there.", "bored", 1.0)


def test_blinks_are_random_brief_and_regular():
    t = 30 * FPS  # 30 s
    b = mo.blink_weights(t, FPS, rng=3)[:, I["eyeBlink_L"]]
    assert np.array_equal(b, mo.blink_weights(t, FPS, rng=3)[:, I["eyeBlink_R"]])
    closed = b > 0.5
    onsets = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 5 <= len(onsets) <= 15  # one every 2-6 s
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, (b > 0).astype(int), 0])))[::2]
    assert runs.max() <= 7  # each under 250 ms + a frame
    assert b.max() > 0.9
    assert not np.array_equal(b, mo.blink_weights(t, FPS, rng=4)[:, I["eyeBlink_L"]])


def test_combine_keeps_closures_under_emotion_and_maps_to_rig_names():
    ph = spans(("_", 0.3), ("b", 0.08), ("A:", 0.2), ("_", 0.3))
    t = mo.frame_count(0.88, FPS)
    s = mo.speech_weights(ph, t, FPS)
    e = mo.emotion_weights("disgusted", 1.0, t, FPS, rng=0)
    e[:, I["jawOpen"]] = 0.3  # an emotion that drops the jaw must not open a closure
    bl = mo.blink_weights(t, FPS, rng=0)
    w = mo.combine(s, e, bl)
    k = int(round(0.34 * FPS))  # inside the b
    assert mo.closure_from_speech(s)[k] == 1.0
    assert w[k, I["mouthUpperUp_L"]] == 0.0
    assert w[k, I["mouthClose"]] >= w[k, I["jawOpen"]] + mo.CLOSURE_MARGIN - 1e-6
    assert w[k, I["noseSneer_L"]] > 0.5  # the expression stays on
    assert w.min() >= 0 and w.max() <= 1
    # ICT-style names: browInnerUp and cheekPuff split by side; unknown names stay 0
    e2 = mo.emotion_weights("sad", 1.0, t, FPS, rng=0)
    names = ["browInnerUp_L", "browInnerUp_R", "jawOpen", "mouthSmile", "notAShape"]
    r = mo.combine(s, e2, None, names)
    full = mo.combine(s, e2, None)
    assert r.shape == (t, 5)
    assert np.array_equal(r[:, 0], full[:, I["browInnerUp"]])
    assert np.array_equal(r[:, 1], full[:, I["browInnerUp"]])
    assert np.array_equal(r[:, 2], full[:, I["jawOpen"]])
    assert np.allclose(r[:, 3], 0.5 * (full[:, I["mouthSmile_L"]] + full[:, I["mouthSmile_R"]]))
    assert not r[:, 4].any()
    with pytest.raises(ValueError, match=r"shape \[T, 52\]"):
        mo.combine(s[:, :10])
    with pytest.raises(ValueError, match="frames"):
        mo.combine(s, e[:-1])
    with pytest.raises(ValueError, match="sequence of strings"):
        mo.to_rig_weights(full, "jawOpen")


@needs_espeak
def test_builtin_rig_lips_meet_at_every_bilabial():
    """End to end on the built-in head: lip_upper_mid meets lip_lower_mid within one frame."""
    rig = procedural_head_rig("tiny")
    names = list(rig.expression_names)
    lm = [rig.landmarks["lip_upper_mid"], rig.landmarks["lip_lower_mid"]]
    neutral = rig.neutral[lm].astype(np.float64)  # [2, 3] mm
    deltas = rig.expression_deltas[:, lm].astype(np.float64)  # [K, 2, 3]
    for emotion in ("neutral", "disgusted", "surprised"):
        speech, w = mo.synthesize_utterance(SENTENCES[2], emotion, 1.0, FPS, names, seed=4)
        pts = neutral[None] + np.einsum("tk,kpc->tpc", w, deltas)
        gap_mm = pts[:, 0, 1] - pts[:, 1, 1]  # upper minus lower, y up
        for p in speech.phonemes:
            if p.phoneme in ("p", "b", "m"):
                near = [k for k in range(len(w)) if abs(k / FPS - p.start) <= 1 / FPS + 1e-9]
                assert gap_mm[near].min() <= 0.3, (emotion, p, gap_mm[near])
        assert gap_mm.max() > 5.0
