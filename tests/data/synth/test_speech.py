"""espeak-ng speech synthesis, emotional prosody and the sentence list."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk3d.constants import EMOTIONS
from emotalk3d.data.synth import speech as sp
from emotalk3d.data.synth.sentences import SENTENCES, SPLITS, sentence, sentences

needs_espeak = pytest.mark.skipif(
    not sp.espeak_available(),
    reason="libespeak-ng.so.1 is not installed (apt-get install libespeak-ng1, or make setup)",
)

TEXT = "Bob made a big pot of maple soup."


def mean_pitch_hz(x: np.ndarray, sr: int = 16_000) -> float:  # x: [S]
    """Median f0 over voiced 40 ms frames, by autocorrelation (60-500 Hz)."""
    fr, hop = 640, 320
    n = (len(x) - fr) // hop + 1
    frames = x[np.arange(fr)[None] + hop * np.arange(n)[:, None]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt((frames**2).mean(axis=1))
    spec = np.fft.rfft(frames, 2 * fr, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :fr]
    lo, hi = sr // 500, sr // 60
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    voiced = (rms > 0.02) & (ac[np.arange(n), lag] > 0.5 * ac[:, 0])
    assert voiced.sum() > 10, "too few voiced frames to measure pitch"
    return float(np.median(sr / lag[voiced]))


def rms(x: np.ndarray) -> float:  # x: [S]
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@needs_espeak
def test_synthesize_returns_16k_float_audio_and_covering_phonemes():
    s = sp.synthesize(TEXT)
    assert s.sample_rate == 16_000
    assert s.audio.dtype == np.float32 and s.audio.ndim == 1
    assert 1.5 < s.duration < 3.5
    assert np.abs(s.audio).max() <= 1.0 and rms(s.audio) > 0.02
    ph = s.phonemes
    assert ph[0].start == 0.0 and ph[0].phoneme.startswith("_")
    assert ph[-1].end == pytest.approx(s.duration)
    for a, b in zip(ph, ph[1:], strict=False):
        assert a.end == b.start and a.start < a.end
    names = [p.phoneme for p in ph]
    # "Bob made a big pot of maple soup": 8 bilabials, the open vowel of "pot", rounded u:.
    assert sum(n in ("p", "b", "m") for n in names) == 8
    assert "0" in names and "u:" in names


@needs_espeak
def test_same_arguments_give_identical_audio_and_seed_changes_it():
    a = sp.synthesize(TEXT, "happy", 1.0, seed=3)
    # espeak-ng's C statics must not leak from one utterance into the next
    sp.synthesize("Something else entirely, spoken sadly and slowly.", "sad", 1.0, seed=9)
    b = sp.synthesize(TEXT, "happy", 1.0, seed=3)
    c = sp.synthesize(TEXT, "happy", 1.0, seed=4)
    assert np.array_equal(a.audio, b.audio)
    assert a.phonemes == b.phonemes
    assert not (len(a.audio) == len(c.audio) and np.array_equal(a.audio, c.audio))


@needs_espeak
def test_emotions_differ_in_prosody_in_the_expected_directions():
    got = {e: sp.synthesize(TEXT, e, 1.0) for e in ("neutral", "angry", "happy", "sad")}
    # angry louder than sad and than neutral
    assert rms(got["angry"].audio) > 2.0 * rms(got["sad"].audio)
    assert rms(got["angry"].audio) > rms(got["neutral"].audio)
    # happy higher pitched than sad (by more than 3 semitones)
    f_happy, f_sad = mean_pitch_hz(got["happy"].audio), mean_pitch_hz(got["sad"].audio)
    assert 12 * np.log2(f_happy / f_sad) > 3.0, (f_happy, f_sad)
    # sad slower: longer for the same sentence; angry faster than neutral
    assert got["sad"].duration > 1.2 * got["neutral"].duration
    assert got["angry"].duration < got["neutral"].duration


@needs_espeak
def test_mild_intensity_lies_between_neutral_and_strong():
    d = {i: sp.synthesize(TEXT, "sad", i).duration for i in (0.0, 0.5, 1.0)}
    assert d[0.0] < d[0.5] < d[1.0]


def test_prosody_interpolates_from_neutral_by_intensity():
    strong = sp.prosody_for("angry", 1.0)
    mild = sp.prosody_for("angry", 0.5)
    assert strong == sp.EMOTION_PROSODY["angry"]
    assert mild.rate == pytest.approx(0.5 * (sp.NEUTRAL_PROSODY.rate + strong.rate))
    assert mild.volume == pytest.approx(0.5 * (sp.NEUTRAL_PROSODY.volume + strong.volume))
    assert sp.prosody_for("angry", 0.0) == sp.NEUTRAL_PROSODY
    assert sp.prosody_for("neutral", 1.0, pitch_offset=10).pitch == 60


def test_every_pair_of_emotions_differs_in_at_least_two_prosody_fields():
    fields = ("rate", "pitch", "range", "volume")
    for i, a in enumerate(EMOTIONS):
        for b in EMOTIONS[i + 1 :]:
            pa, pb = sp.EMOTION_PROSODY[a], sp.EMOTION_PROSODY[b]
            big = sum(abs(getattr(pa, f) - getattr(pb, f)) >= 10 for f in fields)
            assert big >= 2, (a, b)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown emotion 'joyful'.*neutral, angry"):
        sp.synthesize(TEXT, "joyful", 1.0)
    with pytest.raises(ValueError, match=r"intensity must lie in \[0, 1\]"):
        sp.synthesize(TEXT, "happy", 1.5)
    with pytest.raises(ValueError, match="non-empty"):
        sp.synthesize("   ")


@needs_espeak
def test_unknown_voice_is_a_clear_error():
    with pytest.raises(ValueError, match="no voice 'xx-nowhere'"):
        sp.synthesize(TEXT, voice="xx-nowhere")
    assert sp.synthesize("Hello there.").duration > 0.3  # the engine still works after it


def test_missing_library_names_the_package(monkeypatch):
    def no_lib(*args, **kwargs):
        raise OSError("not found")

    monkeypatch.setattr(sp.ctypes, "CDLL", no_lib)
    with pytest.raises(sp.EspeakError, match="apt-get install libespeak-ng1"):
        with sp._Espeak():
            pass


def test_event_struct_matches_speak_lib_h():
    # espeak_EVENT: 6 ints, a pointer and an 8-byte union (speak_lib.h, API revision 12).
    assert sp.ctypes.sizeof(sp._Event) == 40
    assert sp._Event.audio_position.offset == 16
    assert sp._Event.id.offset == 32


@needs_espeak
def test_one_sentence_synthesizes_with_emotion():
    # (its speed is a benchmark's business, not a wall-clock assertion here)
    s = sp.synthesize(SENTENCES[12].text, "surprised", 1.0)
    assert s.audio.size > 0 and np.isfinite(s.audio).all() and np.abs(s.audio).max() > 0
    assert s.phonemes and s.phonemes[-1].end == pytest.approx(s.duration)


def test_sentence_list_and_split():
    assert len(SENTENCES) >= 48
    ids = [s.id for s in SENTENCES]
    assert ids == [f"s{i:03d}" for i in range(len(SENTENCES))]
    assert len({s.text for s in SENTENCES}) == len(SENTENCES)
    assert [len(sentences(x)) for x in SPLITS] == [40, 4, 4]
    assert sentences("test")[0].id == "s044" and sentence("s044").split == "test"
    for s in SENTENCES:
        assert 4 <= len(s.text.split()) <= 10, s
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        sentences("dev")
    with pytest.raises(KeyError):
        sentence("s999")
