"""Per-frame ARKit weight timelines: speech visemes, emotion expressions and blinks.

DESIGN.md section 4 ("Motion"): phonemes ► visemes ► ARKit weights with coarticulation
smoothing; emotion ► FACS-based expression weights scaled by intensity, with an onset and small
natural variation; random blinks. The ground-truth meshes of the synthetic dataset are a rig
evaluated with these weights at every frame.

Conventions:

- Frames sit at times ``k / fps`` for ``k < frame_count(duration, fps)`` (the project's one
  definition of a clip's frame count, :func:`frame_count`).
- Internal timelines are ``[T, 52]`` arrays in :data:`emotalk3d.constants.ARKIT_NAMES` order;
  :func:`to_rig_weights` reorders them into a rig's expression order ``[T, K]``.
- ``mouthClose`` has ARKit semantics: the lips shut when ``mouthClose ≈ jawOpen``. Every p, b
  and m has a closure channel c in [0, 1] that is exactly 1 at the frames of the phoneme (or,
  for a phoneme shorter than a frame, at the frame nearest its centre), and ``mouthClose =
  c · (jawOpen + CLOSURE_MARGIN)``; shapes that part the lips are scaled by (1 - c). So lips
  close within one frame of every bilabial event, whatever the coarticulation or the emotion.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from emotalk3d.constants import ARKIT_NAMES, EMOTIONS, check_emotion
from emotalk3d.data.synth import visemes as vis
from emotalk3d.data.synth.speech import PhonemeEvent, Speech, synthesize

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25
"""Motion frame rate of the dataset (DESIGN.md section 2)."""
FINE_RATE = 1000
"""Rate in Hz of the fine time grid on which viseme targets are smoothed."""
COARTICULATION_SIGMA = 0.022
"""Standard deviation in s of the Gaussian coarticulation kernel."""
CLOSURE_MARGIN = 0.03
"""mouthClose - jawOpen at full closure: presses the lips slightly past touching."""
CLOSURE_RAMP = 0.035
"""Time in s over which a lip closure builds up before and releases after a bilabial."""
ONSET_RANGE = (0.3, 0.5)
"""Range in s of the emotion onset ramp (drawn per utterance)."""
BLINK_INTERVAL = (2.0, 6.0)
"""Range in s between blink onsets."""
BLINK_DURATION = (0.15, 0.25)
"""Range in s of a blink's duration."""

NUM_ARKIT = len(ARKIT_NAMES)
_IDX = {n: i for i, n in enumerate(ARKIT_NAMES)}
JAW = _IDX["jawOpen"]
CLOSE = _IDX["mouthClose"]
# Shapes that part the lips: scaled by (1 - closure) so a closure really closes.
_LIP_PARTING = np.array(
    [
        _IDX[n]
        for n in (
            "mouthFunnel",
            "mouthUpperUp_L",
            "mouthUpperUp_R",
            "mouthLowerDown_L",
            "mouthLowerDown_R",
            "mouthShrugUpper",
            "tongueOut",
        )
    ]
)
# Shapes that stay on during a closure but lift the upper lip (a nose wrinkle raises it):
# mouthClose grows by this much per unit of them, so the lips still meet.
_CLOSE_COMPENSATION = np.zeros(len(ARKIT_NAMES), np.float64)
_CLOSE_COMPENSATION[[_IDX["noseSneer_L"], _IDX["noseSneer_R"]]] = 0.1
_BLINK = np.array([_IDX["eyeBlink_L"], _IDX["eyeBlink_R"]])
_WIDE = np.array([_IDX["eyeWide_L"], _IDX["eyeWide_R"]])

# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def frame_count(duration_s: float, fps: float = DEFAULT_FPS) -> int:
    """Number of motion frames of a clip: ceil(duration × fps).

    The whole project uses this one definition: frames sit at times k / fps for
    k < ceil(duration × fps), so the last frame starts before the audio ends. The product is
    rounded to 6 decimals first so that float noise (2.04 s × 25 = 51.000000000000007) does
    not add a frame; for a clip of S samples it equals ``ceil(S · fps / 16000)``.

    Raises:
        ValueError: A negative duration or a non-positive fps.
    """
    if not duration_s >= 0:
        raise ValueError(f"duration must be >= 0 s, got {duration_s}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return int(math.ceil(round(duration_s * fps, 6)))


def frame_times(num_frames: int, fps: float = DEFAULT_FPS) -> np.ndarray:  # [T]
    """Times in s of frames 0..num_frames-1: k / fps."""
    return np.arange(num_frames, dtype=np.float64) / fps


def _check_timeline(num_frames: int, fps: float) -> None:
    if int(num_frames) != num_frames or num_frames < 0:
        raise ValueError(f"num_frames must be a non-negative integer, got {num_frames!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


# --------------------------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------------------------


def _fine_grid_len(phonemes: Sequence[PhonemeEvent], num_frames: int, fps: float) -> int:
    end = max((p.end for p in phonemes), default=0.0)
    end = max(end, (num_frames - 1) / fps if num_frames else 0.0)
    return int(math.ceil(end * FINE_RATE)) + 2


def _frame_index(num_frames: int, fps: float) -> np.ndarray:  # [T]
    return np.round(frame_times(num_frames, fps) * FINE_RATE).astype(np.int64)


def viseme_classes(
    phonemes: Sequence[PhonemeEvent], num_samples: int
) -> np.ndarray:  # [num_samples] int64
    """Viseme class index (into VISEMES) of each sample of the fine grid (FINE_RATE Hz)."""
    classes = np.zeros(num_samples, np.int64)  # 0 = sil
    vindex = {v: i for i, v in enumerate(vis.VISEMES)}
    for p in phonemes:
        a = max(int(round(p.start * FINE_RATE)), 0)
        b = min(int(round(p.end * FINE_RATE)), num_samples)
        if b <= a:
            continue
        v = vis.phoneme_to_viseme(p.phoneme)
        if isinstance(v, tuple):
            mid = a + int(round((b - a) * vis.DIPHTHONG_SPLIT))
            classes[a:mid] = vindex[v[0]]
            classes[mid:b] = vindex[v[1]]
        else:
            classes[a:b] = vindex[v]
    return classes


def closure_weights(
    phonemes: Sequence[PhonemeEvent], num_frames: int, fps: float = DEFAULT_FPS
) -> np.ndarray:  # [T]
    """Lip-closure channel c in [0, 1] per frame, exactly 1 near every p, b, m.

    c is 1 over each bilabial's span and ramps linearly to 0 over :data:`CLOSURE_RAMP` on
    either side; then every frame inside the span is set to 1, and when no frame falls inside
    (a phoneme shorter than a frame) the frame nearest the span's centre is. That frame is
    within one frame period of the phoneme's onset.
    """
    _check_timeline(num_frames, fps)
    t = frame_times(num_frames, fps)
    c = np.zeros(num_frames, np.float64)
    if num_frames == 0:
        return c.astype(np.float32)
    for p in phonemes:
        if not vis.is_bilabial(p.phoneme):
            continue
        dist = np.maximum(p.start - t, 0.0) + np.maximum(t - p.end, 0.0)
        c = np.maximum(c, np.clip(1.0 - dist / CLOSURE_RAMP, 0.0, 1.0))
        inside = (t >= p.start) & (t <= p.end)
        if inside.any():
            c[inside] = 1.0
        else:
            k = int(np.clip(round(0.5 * (p.start + p.end) * fps), 0, num_frames - 1))
            c[k] = 1.0
    return c.astype(np.float32)


def speech_weights(
    phonemes: Sequence[PhonemeEvent],
    num_frames: int,
    fps: float = DEFAULT_FPS,
    articulation: float = 1.0,
) -> np.ndarray:  # [T, 52]
    """ARKit weights (ARKIT_NAMES order) of the mouth for an utterance's phonemes.

    Viseme targets are laid out on a 1 kHz grid, smoothed with a Gaussian kernel
    (coarticulation, sigma :data:`COARTICULATION_SIGMA`), scaled by ``articulation`` (how
    large the movements are; emotions change it) and sampled at the frame times k / fps. Then
    the closure channel (:func:`closure_weights`) sets ``mouthClose = c · (jawOpen +
    CLOSURE_MARGIN)`` and scales lip-parting shapes by (1 - c).

    Args:
        phonemes: Consecutive phoneme spans (from :func:`.speech.synthesize`).
        num_frames: T, usually ``frame_count(speech.duration, fps)``.
        fps: Frame rate.
        articulation: Gain on the viseme weights (1 normal, < 1 smaller movements).

    Returns:
        Weights in [0, 1].
    """
    _check_timeline(num_frames, fps)
    if num_frames == 0:
        return np.zeros((0, NUM_ARKIT), np.float32)
    n = _fine_grid_len(phonemes, num_frames, fps)
    classes = viseme_classes(phonemes, n)
    # Smoothing is linear, so smooth the class indicators [V, n] and mix the poses after:
    # the same as smoothing the [n, 52] targets, at a fraction of the cost.
    onehot = np.zeros((len(vis.VISEMES), n), np.float64)
    onehot[classes, np.arange(n)] = 1.0
    smooth = gaussian_filter1d(onehot, COARTICULATION_SIGMA * FINE_RATE, axis=1, mode="nearest")
    at_frames = smooth[:, _frame_index(num_frames, fps)].T  # [T, V]
    w = at_frames @ vis.VISEME_WEIGHTS.astype(np.float64) * float(articulation)
    w = np.clip(w, 0.0, 1.0)
    c = closure_weights(phonemes, num_frames, fps).astype(np.float64)
    return _apply_closure(w, c).astype(np.float32)


def _apply_closure(
    w: np.ndarray,  # [T, 52]
    c: np.ndarray,  # [T]
) -> np.ndarray:  # [T, 52]
    w = w.copy()
    w[:, _LIP_PARTING] *= (1.0 - c)[:, None]
    w[:, CLOSE] = np.clip(c * (w[:, JAW] + CLOSURE_MARGIN), 0.0, 1.0)
    return w


def closure_from_speech(
    speech: np.ndarray,  # [T, 52]
) -> np.ndarray:  # [T]
    """Recover the closure channel c from :func:`speech_weights`'s output (exact inverse)."""
    return np.clip(speech[:, CLOSE] / (speech[:, JAW] + CLOSURE_MARGIN), 0.0, 1.0)


# Movement size of speech per emotion at strong intensity (interpolated from 1 at neutral).
ARTICULATION: dict[str, float] = {
    "neutral": 1.0,
    "angry": 1.15,
    "contempt": 0.9,
    "disgusted": 0.85,
    "fear": 0.95,
    "happy": 1.1,
    "sad": 0.8,
    "surprised": 1.15,
}
assert set(ARTICULATION) == set(EMOTIONS)


def articulation_gain(emotion: str, intensity: float) -> float:
    """Speech movement gain for an emotion at an intensity (1 for neutral)."""
    check_emotion(emotion)
    return 1.0 + float(intensity) * (ARTICULATION[emotion] - 1.0)


# --------------------------------------------------------------------------------------------
# Emotion
# --------------------------------------------------------------------------------------------

# FACS action units ► ARKit weights at strong intensity. Bilateral shapes are written without
# a side and applied to both; contempt is unilateral (left only).
# AU1 inner brow raiser ► browInnerUp; AU2 outer brow raiser ► browOuterUp; AU4 brow lowerer ►
# browDown; AU5 upper lid raiser ► eyeWide; AU6 cheek raiser ► cheekSquint; AU7 lid tightener
# ► eyeSquint; AU9 nose wrinkler ► noseSneer; AU10 upper lip raiser ► mouthUpperUp; AU12 lip
# corner puller ► mouthSmile; AU14 dimpler ► mouthDimple; AU15 lip corner depressor ►
# mouthFrown; AU17 chin raiser ► mouthShrugLower; AU20 lip stretcher ► mouthStretch; AU23/24
# lip tightener/pressor ► mouthPress; AU26 jaw drop ► jawOpen.
FACS: dict[str, dict[str, float]] = {
    "neutral": {},
    "angry": {"browDown": 0.8, "eyeWide": 0.3, "eyeSquint": 0.45, "mouthPress": 0.5,
              "noseSneer": 0.2},
    "contempt": {"mouthSmile_L": 0.5, "mouthDimple_L": 0.5, "eyeSquint_L": 0.15},
    "disgusted": {"noseSneer": 0.7, "mouthUpperUp": 0.45, "mouthFrown": 0.4, "browDown": 0.3,
                  "cheekSquint": 0.2},
    "fear": {"browInnerUp": 0.7, "browOuterUp": 0.5, "browDown": 0.3, "eyeWide": 0.75,
             "mouthStretch": 0.5},
    "happy": {"cheekSquint": 0.6, "mouthSmile": 0.7, "eyeSquint": 0.2},
    "sad": {"browInnerUp": 0.75, "browDown": 0.3, "mouthFrown": 0.6, "mouthShrugLower": 0.25},
    "surprised": {"browInnerUp": 0.8, "browOuterUp": 0.8, "eyeWide": 0.7, "jawOpen": 0.15},
}  # fmt: skip
assert set(FACS) == set(EMOTIONS)
FACS_AUS: dict[str, str] = {
    "neutral": "-",
    "angry": "AU4 + AU5 + AU7 + AU23/24 (+ AU9)",
    "contempt": "unilateral AU12 + AU14 (left)",
    "disgusted": "AU9 + AU10 + AU15 (+ AU4, AU6)",
    "fear": "AU1 + AU2 + AU4 + AU5 + AU20",
    "happy": "AU6 + AU12 (+ AU7)",
    "sad": "AU1 + AU4 + AU15 + AU17",
    "surprised": "AU1 + AU2 + AU5 + AU26",
}


def expression_pose(emotion: str) -> np.ndarray:  # [52]
    """ARKit weights (ARKIT_NAMES order) of an emotion's expression at strong intensity."""
    check_emotion(emotion)
    v = np.zeros(NUM_ARKIT, np.float32)
    for name, w in FACS[emotion].items():
        if name in _IDX:
            v[_IDX[name]] = w
        else:
            v[_IDX[f"{name}_L"]] = w
            v[_IDX[f"{name}_R"]] = w
    return v


def _slow_noise(
    rng: np.random.Generator, t: np.ndarray, count: int
) -> np.ndarray:  # [T, count] in [-1, 1]
    """Smooth noise: a sum of three random sinusoids between 0.1 and 0.6 Hz per channel."""
    freqs = rng.uniform(0.1, 0.6, size=(3, count))
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(3, count))
    amps = rng.uniform(0.5, 1.0, size=(3, count))
    s = np.sum(amps[None] * np.sin(2 * np.pi * freqs[None] * t[:, None, None] + phases), axis=1)
    return s / amps.sum(axis=0)


def emotion_weights(
    emotion: str,
    intensity: float,
    num_frames: int,
    fps: float = DEFAULT_FPS,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:  # [T, 52]
    """FACS expression weights (ARKIT_NAMES order) of an emotion over an utterance.

    The strong pose (:data:`FACS`) is scaled by ``intensity``, eased in from neutral over an
    onset of 0.3 to 0.5 s (smoothstep, drawn from ``rng``), and modulated by ±10 % slow noise
    (three random sinusoids of 0.1 to 0.6 Hz per shape, shared by left and right).

    Args:
        emotion: One of :data:`emotalk3d.constants.EMOTIONS`.
        intensity: In [0, 1] (mild 0.5, strong 1.0).
        num_frames: T.
        fps: Frame rate.
        rng: A numpy Generator or a seed.

    Returns:
        Weights in [0, 1]; all zero for neutral.
    """
    check_emotion(emotion)
    _check_timeline(num_frames, fps)
    intensity = float(intensity)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"intensity must lie in [0, 1] (mild 0.5, strong 1.0), got {intensity}")
    rng = _as_rng(rng)
    t = frame_times(num_frames, fps)
    onset = rng.uniform(*ONSET_RANGE)
    x = np.clip(t / onset, 0.0, 1.0)
    ramp = x * x * (3.0 - 2.0 * x)
    # Noise per shape, with left and right of one shape sharing a channel.
    bases = [n[:-2] if n.endswith(("_L", "_R")) else n for n in ARKIT_NAMES]
    unique = sorted(set(bases))
    noise = _slow_noise(rng, t, len(unique))
    cols = np.array([unique.index(b) for b in bases])
    variation = 1.0 + 0.1 * noise[:, cols]
    pose = expression_pose(emotion).astype(np.float64) * intensity
    w = ramp[:, None] * pose[None, :] * variation
    return np.clip(w, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Blinks
# --------------------------------------------------------------------------------------------


def blink_weights(
    num_frames: int,
    fps: float = DEFAULT_FPS,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:  # [T, 52]
    """Random blinks (eyeBlink_L/R, ARKIT_NAMES order): one every 2 to 6 s, 150 to 250 ms.

    The first blink starts 0.5 to 3 s in. A blink closes in 40 % of its duration (smooth),
    holds closed for 20 % and opens in the remaining 40 %.
    """
    _check_timeline(num_frames, fps)
    rng = _as_rng(rng)
    t = frame_times(num_frames, fps)
    end = num_frames / fps
    b = np.zeros(num_frames, np.float64)
    start = rng.uniform(0.5, 3.0)
    while start < end:
        dur = rng.uniform(*BLINK_DURATION)
        u = (t - start) / dur
        rise = np.clip(u / 0.4, 0, 1)
        fall = np.clip((1.0 - u) / 0.4, 0, 1)
        x = np.minimum(rise, fall)
        b = np.maximum(b, np.where((u > 0) & (u < 1), x * x * (3 - 2 * x), 0.0))
        start += rng.uniform(*BLINK_INTERVAL)
    w = np.zeros((num_frames, NUM_ARKIT), np.float32)
    w[:, _BLINK] = b[:, None]
    return w


# --------------------------------------------------------------------------------------------
# Combining and rig output
# --------------------------------------------------------------------------------------------


def combine(
    speech: np.ndarray,  # [T, 52]
    emotion: np.ndarray | None = None,  # [T, 52]
    blinks: np.ndarray | None = None,  # [T, 52]
    expression_names: Sequence[str] | None = None,
) -> np.ndarray:  # [T, K] (K = len(expression_names), else 52)
    """Total weights: speech + emotion + blinks, with lip closures kept closed.

    Speech and emotion add, then: the emotion's lip-parting shapes (e.g. disgust's
    mouthUpperUp) and its jaw opening are scaled by (1 - c) where c is the closure channel,
    mouthClose is recomputed as ``c · (jawOpen + CLOSURE_MARGIN)`` on the total jaw opening
    (plus 0.1 per unit of noseSneer_L/R, which lifts the upper lip and stays on),
    blinks override eyeBlink and relax eyeWide. A smile therefore never prevents a closure.

    Args:
        speech: From :func:`speech_weights`.
        emotion: From :func:`emotion_weights` (None: no emotion).
        blinks: From :func:`blink_weights` (None: no blinks).
        expression_names: A rig's expression names (see :func:`to_rig_weights`); None returns
            ARKIT_NAMES order.

    Returns:
        Weights clipped to [0, 1].
    """
    speech = _check_arkit("speech", speech)
    t = speech.shape[0]
    emotion = np.zeros_like(speech) if emotion is None else _check_arkit("emotion", emotion, t)
    blinks = np.zeros_like(speech) if blinks is None else _check_arkit("blinks", blinks, t)
    c = closure_from_speech(speech).astype(np.float64)
    emo = emotion.astype(np.float64).copy()
    emo[:, _LIP_PARTING] *= (1.0 - c)[:, None]
    emo[:, JAW] *= 1.0 - c
    emo[:, CLOSE] = 0.0
    total = speech.astype(np.float64) + emo
    total[:, CLOSE] = 0.0
    total = np.clip(total, 0.0, 1.0)
    extra = total @ _CLOSE_COMPENSATION
    total[:, CLOSE] = np.clip(c * (total[:, JAW] + CLOSURE_MARGIN + extra), 0.0, 1.0)
    blink = blinks[:, _BLINK].astype(np.float64)
    total[:, _BLINK] = np.maximum(total[:, _BLINK], blink)
    total[:, _WIDE] *= 1.0 - blink
    total = np.clip(total, 0.0, 1.0).astype(np.float32)
    if expression_names is None:
        return total
    return to_rig_weights(total, expression_names)


def _check_arkit(name: str, w: np.ndarray, frames: int | None = None) -> np.ndarray:
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[1] != NUM_ARKIT:
        raise ValueError(
            f"{name} weights must have shape [T, {NUM_ARKIT}] (ARKIT_NAMES order), "
            f"got {w.shape}; build them with {name}_weights()"
        )
    if frames is not None and w.shape[0] != frames:
        raise ValueError(
            f"{name} weights have {w.shape[0]} frames but speech has {frames}; "
            "build every timeline with the same num_frames"
        )
    return w


_unmapped_warned: set[tuple[str, ...]] = set()


def rig_index(expression_names: Sequence[str]) -> list[list[int]]:
    """For each rig expression, the ARKIT_NAMES columns whose mean drives it.

    ``X`` maps to column X; a split ``X_L`` / ``X_R`` that ARKit keeps whole (the ICT model's
    browInnerUp_L/_R, cheekPuff_L/_R) maps to X; a whole ``X`` that ARKit splits maps to the
    mean of X_L and X_R. Names with no ARKit counterpart get no columns (weight 0).
    """
    if isinstance(expression_names, str) or not all(isinstance(n, str) for n in expression_names):
        raise ValueError(
            "expression_names must be a sequence of strings (a rig's expression names), "
            f"got {expression_names!r}"
        )
    out: list[list[int]] = []
    unmapped = []
    for name in expression_names:
        if name in _IDX:
            out.append([_IDX[name]])
        elif name.endswith(("_L", "_R")) and name[:-2] in _IDX:
            out.append([_IDX[name[:-2]]])
        elif f"{name}_L" in _IDX and f"{name}_R" in _IDX:
            out.append([_IDX[f"{name}_L"], _IDX[f"{name}_R"]])
        else:
            out.append([])
            unmapped.append(name)
    if unmapped and tuple(unmapped) not in _unmapped_warned:
        _unmapped_warned.add(tuple(unmapped))
        logger.info("rig expressions with no ARKit counterpart stay at 0: %s", unmapped)
    return out


def to_rig_weights(
    weights: np.ndarray,  # [T, 52]
    expression_names: Sequence[str],
) -> np.ndarray:  # [T, K]
    """Reorder ARKIT_NAMES-ordered weights into a rig's expression order (see rig_index)."""
    weights = _check_arkit("ARKit", weights)
    index = rig_index(expression_names)
    out = np.zeros((weights.shape[0], len(index)), np.float32)
    for k, cols in enumerate(index):
        if cols:
            out[:, k] = weights[:, cols].mean(axis=1)
    return out


# --------------------------------------------------------------------------------------------
# One utterance
# --------------------------------------------------------------------------------------------


def utterance_weights(
    speech: Speech,
    emotion: str,
    intensity: float,
    fps: float = DEFAULT_FPS,
    expression_names: Sequence[str] | None = None,
    seed: int = 0,
) -> np.ndarray:  # [T, K]
    """All weights of a synthesized utterance: visemes, emotion expression and blinks.

    T is ``frame_count(speech.duration, fps)``; K is ``len(expression_names)`` (or 52,
    ARKIT_NAMES order). Emotion variation and blinks are seeded by ``seed``.
    """
    check_emotion(emotion)
    if emotion == "neutral":
        intensity = 0.0
    t = frame_count(speech.duration, fps)
    sw = speech_weights(speech.phonemes, t, fps, articulation_gain(emotion, intensity))
    ew = emotion_weights(emotion, intensity, t, fps, np.random.default_rng([seed, 0xE0]))
    bw = blink_weights(t, fps, np.random.default_rng([seed, 0xB1]))
    return combine(sw, ew, bw, expression_names)


def synthesize_utterance(
    sentence: str | object,
    emotion: str = "neutral",
    intensity: float = 0.0,
    fps: float = DEFAULT_FPS,
    rig_expression_names: Sequence[str] | None = None,
    seed: int = 0,
    voice: str = "en-us",
    pitch_offset: float = 0.0,
) -> tuple[Speech, np.ndarray]:  # weights [T, K]
    """Speak a sentence in an emotion and build its per-frame rig weights.

    Args:
        sentence: Text, or a :class:`.sentences.Sentence` (its ``text`` is spoken).
        emotion: One of :data:`emotalk3d.constants.EMOTIONS`.
        intensity: In [0, 1] (mild 0.5, strong 1.0; ignored for neutral).
        fps: Motion frame rate.
        rig_expression_names: The rig's expression names (``LinearRig.expression_names``);
            None gives ARKIT_NAMES order.
        seed: Seeds prosody jitter, expression variation and blinks.
        voice: espeak-ng voice of the subject (e.g. ``en-us+m3``).
        pitch_offset: The subject's pitch shift (espeak-ng units).

    Returns:
        The :class:`Speech` and the weights [T, K] with T = ``frame_count(duration, fps)``.
    """
    text = sentence if isinstance(sentence, str) else getattr(sentence, "text", None)
    if not isinstance(text, str):
        raise ValueError(f"sentence must be a str or a Sentence, got {type(sentence).__name__}")
    speech = synthesize(text, emotion, intensity, voice=voice, seed=seed, pitch_offset=pitch_offset)
    weights = utterance_weights(speech, emotion, speech.intensity, fps, rig_expression_names, seed)
    return speech, weights
