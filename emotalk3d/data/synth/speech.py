"""Speech synthesis with espeak-ng (its C library, through ctypes) and emotional prosody.

DESIGN.md section 4 ("Speech"): the synthetic dataset speaks its sentences with espeak-ng,
whose phoneme events give the exact time of every phoneme, so that the ground-truth mouth
motion (see :mod:`emotalk3d.data.synth.motion`) is aligned with the audio by construction.
Emotion and intensity change the prosody (rate, base pitch, pitch range, loudness, word gap)
plus two small post-processing effects (spectral tilt and, for fear, a tremolo), so that an
audio emotion classifier can hear and learn the emotion.

Only the runtime library ``libespeak-ng.so.1`` is needed (Debian/Ubuntu package
``libespeak-ng1`` with ``espeak-ng-data``; ``make setup`` installs it). espeak-ng renders
22050 Hz 16-bit mono; the result is resampled to 16 kHz with soxr (quality ``HQ``).

espeak-ng keeps global state and is not thread-safe: every call takes one process-wide lock.
Synthesis is deterministic: the same arguments give bit-identical audio whatever was spoken
before (each utterance runs on a freshly loaded library, see :class:`_Espeak`; the only
randomness, a small per-utterance prosody jitter and the tremolo phase, comes from ``seed``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import soxr
from scipy.signal import lfilter

from emotalk3d.constants import EMOTIONS, check_emotion

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""Output sample rate in Hz (the project's audio rate)."""
ESPEAK_RATE = 22_050
"""espeak-ng's native output rate in Hz (checked against ``espeak_Initialize``)."""
DEFAULT_VOICE = "en-us"
"""espeak-ng voice used when a caller names none (variants: ``en-us+m3``, ``en-us+f2``...)."""
PAUSE = "_"
"""Phoneme name of silence (espeak-ng's own short-pause mnemonic)."""

_INSTALL_HINT = (
    "install the espeak-ng runtime library: `apt-get install libespeak-ng1 espeak-ng-data` "
    "(or run `make setup`, which installs the system packages emotalk3d needs)"
)


class EspeakError(RuntimeError):
    """espeak-ng is missing or failed; the message says what to install or change."""


# --------------------------------------------------------------------------------------------
# Prosody
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prosody:
    """Prosody of one utterance, in espeak-ng's units plus two post effects.

    Attributes:
        rate: Speaking rate in words per minute (espeak-ng accepts 80 to 450).
        pitch: Base pitch, 0 to 100 (50 is the voice's normal).
        range: Pitch range, 0 to 100 (0 is monotone, 50 normal).
        volume: Loudness, 0 to 200 (100 normal).
        word_gap: Extra pause between words, in units of 10 ms.
        tilt: Spectral tilt, -1 (darker: high frequencies attenuated) to +1 (brighter, tenser).
        tremolo: Depth of a 6.5 Hz amplitude modulation, 0 (none) to 1.
        formant: Playback speed-up of espeak-ng's output, which scales formants and pitch
            together (above 1: a shorter vocal tract, as with a smile; below 1: longer, darker).
            The rate given to espeak-ng is divided by it, so ``rate`` stays the spoken rate.
    """

    rate: float
    pitch: float
    range: float
    volume: float
    word_gap: float = 0.0
    tilt: float = 0.0
    tremolo: float = 0.0
    formant: float = 1.0

    def lerp(self, other: Prosody, t: float) -> Prosody:
        """Linear interpolation from ``self`` (t=0) to ``other`` (t=1), field by field."""
        return Prosody(
            *(a + t * (b - a) for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True))
        )

    def as_tuple(self) -> tuple[float, ...]:
        return (
            self.rate,
            self.pitch,
            self.range,
            self.volume,
            self.word_gap,
            self.tilt,
            self.tremolo,
            self.formant,
        )


NEUTRAL_PROSODY = Prosody(rate=165, pitch=50, range=50, volume=100)
"""Prosody of neutral speech (intensity 0 of every emotion)."""

# Prosody of each emotion at strong intensity (1.0); mild (0.5) lies half-way from neutral.
# Directions follow the vocal-emotion literature (e.g. Scherer 2003; Juslin & Laukka 2003):
# anger fast/loud/wide, sadness slow/quiet/low/narrow, happiness fast/high/wide, surprise
# very high and very wide, fear fast/high/narrow with tremor, disgust slow/low/narrow,
# contempt slow/low with moderate range. Each emotion differs from every other in at least
# two of rate, pitch, range and loudness, so the eight are acoustically separable.
EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": NEUTRAL_PROSODY,
    "angry": Prosody(rate=200, pitch=40, range=85, volume=175, tilt=0.6),
    "contempt": Prosody(rate=125, pitch=38, range=75, volume=85, word_gap=3, tilt=-0.35),
    "disgusted": Prosody(
        rate=122, pitch=30, range=22, volume=130, word_gap=1, tilt=-0.5, formant=0.95
    ),
    "fear": Prosody(rate=215, pitch=76, range=25, volume=85, tilt=0.2, tremolo=0.6, formant=1.03),
    "happy": Prosody(rate=205, pitch=64, range=72, volume=125, tilt=0.35, formant=1.08),
    "sad": Prosody(rate=115, pitch=28, range=12, volume=55, word_gap=1, tilt=-0.7, formant=0.96),
    "surprised": Prosody(rate=140, pitch=88, range=100, volume=140, tilt=0.1),
}
assert set(EMOTION_PROSODY) == set(EMOTIONS)

# Relative size of the seeded per-utterance jitter (uniform in [-j, +j]) for each field:
# small next to the differences between emotions, large enough that a classifier cannot key
# on exact values.
_JITTER = Prosody(rate=0.03, pitch=2.0, range=3.0, volume=0.03)

# Sentence-final punctuation per emotion: espeak-ng speaks a clause ending in "?" with a
# rising terminal contour and one ending in "!" with its exclamation tune. Emotions not
# listed end with a full stop.
TERMINAL: dict[str, str] = {"surprised": "?", "angry": "!", "happy": "!"}

TREMOLO_HZ = 6.5
"""Frequency of the fear tremolo (amplitude modulation) in Hz."""


def prosody_for(
    emotion: str, intensity: float, pitch_offset: float = 0.0, seed: int | None = None
) -> Prosody:
    """Prosody of an emotion at an intensity, for a voice shifted by ``pitch_offset``.

    Args:
        emotion: One of :data:`emotalk3d.constants.EMOTIONS`.
        intensity: In [0, 1]; 0 is neutral prosody, 1 the strong row of the table.
        pitch_offset: Added to the base pitch (a subject's voice, -30 to +30 is sensible).
        seed: When given, a small seeded jitter is added to rate, pitch, range and volume.

    Returns:
        The prosody, clamped to espeak-ng's valid ranges.
    """
    check_emotion(emotion)
    intensity = _check_intensity(intensity)
    p = NEUTRAL_PROSODY.lerp(EMOTION_PROSODY[emotion], intensity)
    rate, pitch, rng_, vol = p.rate, p.pitch + pitch_offset, p.range, p.volume
    if seed is not None:
        u = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5E3C]).uniform(-1.0, 1.0, size=4)
        rate *= 1.0 + _JITTER.rate * u[0]
        pitch += _JITTER.pitch * u[1]
        rng_ += _JITTER.range * u[2]
        vol *= 1.0 + _JITTER.volume * u[3]
    return Prosody(
        rate=float(np.clip(rate, 80, 450)),
        pitch=float(np.clip(pitch, 0, 100)),
        range=float(np.clip(rng_, 0, 100)),
        volume=float(np.clip(vol, 0, 200)),
        word_gap=p.word_gap,
        tilt=p.tilt,
        tremolo=p.tremolo,
        formant=p.formant,
    )


def _check_intensity(intensity: float) -> float:
    intensity = float(intensity)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(
            f"intensity must lie in [0, 1] (mild 0.5, strong 1.0), got {intensity}; "
            "pass a value in that range"
        )
    return intensity


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme (espeak-ng mnemonic, e.g. ``p``, ``A:``, ``_``) and its time span in s."""

    phoneme: str
    start: float
    end: float


@dataclass
class Speech:
    """A synthesized utterance.

    Attributes:
        audio: 16 kHz mono samples in [-1, 1].
        phonemes: Consecutive phoneme spans covering ``[0, duration]`` (pauses included).
        text: The text spoken.
        emotion: The emotion it was spoken with.
        intensity: The emotion's intensity in [0, 1].
        prosody: The prosody actually used.
        sample_rate: Always 16000.
    """

    audio: np.ndarray  # [S] float32
    phonemes: list[PhonemeEvent]
    text: str = ""
    emotion: str = "neutral"
    intensity: float = 0.0
    prosody: Prosody | None = None
    sample_rate: int = SAMPLE_RATE
    voice: str = DEFAULT_VOICE
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return len(self.audio) / self.sample_rate

    def num_frames(self, fps: float = 25) -> int:
        """Motion frames for this clip: ceil(samples × fps / rate), in integer arithmetic."""
        num = len(self.audio) * fps
        if float(num).is_integer():
            return int(-(-int(num) // self.sample_rate))
        return int(np.ceil(num / self.sample_rate))


# --------------------------------------------------------------------------------------------
# The espeak-ng C library
# --------------------------------------------------------------------------------------------

# espeak_EVENT_TYPE values (speak_lib.h, API revision 12)
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
# espeak_AUDIO_OUTPUT / options / flags / parameters
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (40 bytes on LP64)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the output
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def _load_library() -> ctypes.CDLL:
    """dlopen libespeak-ng and declare the prototypes used (speak_lib.h, API revision 12)."""
    lib = None
    for name in ("libespeak-ng.so.1", ctypes.util.find_library("espeak-ng")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_LOCAL)
            break
        except OSError:
            continue
    if lib is None:
        raise EspeakError(f"espeak-ng C library (libespeak-ng.so.1) not found; {_INSTALL_HINT}")
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    return lib


def _unload_library(lib: ctypes.CDLL) -> None:
    """dlclose the library so that the next dlopen starts from fresh static state."""
    import _ctypes

    handle = lib._handle
    del lib
    _ctypes.dlclose(handle)


class _Espeak:
    """One espeak-ng session: a freshly loaded library, initialised, and its callback buffers.

    espeak-ng keeps synthesis state in C statics that no API call resets (the pitch-flutter
    index, the automatic gain, the echo buffer, its noise generator), so the same text can come
    out a few samples different depending on what was spoken before. For bit-exact
    determinism every utterance therefore runs in its own session: dlopen, initialise,
    synthesize, ``espeak_Terminate``, dlclose (about 10 ms of overhead). Use as a context
    manager, under :data:`_LOCK`.
    """

    def __init__(self) -> None:
        self.lib: ctypes.CDLL | None = None
        self.rate = 0
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[float, str]] = []  # (ms, phoneme)
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: C holds the pointer

    def __enter__(self) -> _Espeak:
        lib = _load_library()
        # 0x8000 (DONT_EXIT): report missing voice data as an error instead of exit().
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS | 0x8000
        )
        if rate <= 0:
            _unload_library(lib)
            raise EspeakError(
                f"espeak_Initialize failed (returned {rate}): its voice data is missing; "
                f"{_INSTALL_HINT}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.rate = lib, rate
        return self

    def __exit__(self, *exc: object) -> None:
        lib, self.lib = self.lib, None
        if lib is not None:
            lib.espeak_Terminate()
            _unload_library(lib)

    def _on_synth(self, wav, num_samples, events) -> int:  # noqa: ANN001 (ctypes pointers)
        if wav and num_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self.events.append((float(ev.audio_position), name))
            i += 1
        return 0

    def synth(
        self, text: str, voice: str, prosody: Prosody
    ) -> tuple[np.ndarray, list[tuple[float, str]]]:  # pcm: [S] int16 at self.rate
        assert self.lib is not None, "use _Espeak as a context manager"
        err = self.lib.espeak_SetVoiceByName(voice.encode("utf-8"))
        if err != 0:
            raise ValueError(
                f"espeak-ng has no voice {voice!r} (error {err}); use a name such as "
                "'en-us', 'en-us+m3' or 'en-us+f2' (list them with `espeak-ng --voices=en`)"
            )
        for key, value in (
            ("rate", prosody.rate / prosody.formant),
            ("volume", prosody.volume),
            ("pitch", prosody.pitch),
            ("range", prosody.range),
            ("wordgap", prosody.word_gap),
        ):
            self.lib.espeak_SetParameter(_PARAM[key], int(round(value)), 0)
        self.chunks, self.events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(
            data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        if err != 0:
            raise EspeakError(f"espeak_Synth failed with error {err} for text {text!r}")
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return pcm, list(self.events)


_LOCK = threading.Lock()
_AVAILABLE: bool | None = None


def espeak_available() -> bool:
    """True when the espeak-ng library loads and initialises in this process (cached)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            with _LOCK, _Espeak():
                pass
            _AVAILABLE = True
        except EspeakError:
            _AVAILABLE = False
    return _AVAILABLE


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------


def _phoneme_spans(events: list[tuple[float, str]], duration: float) -> list[PhonemeEvent]:
    """Turn (onset ms, phoneme) events into consecutive spans covering [0, duration]."""
    spans: list[PhonemeEvent] = []
    onsets = [(min(ms / 1000.0, duration), name) for ms, name in events]
    onsets.sort(key=lambda x: x[0])  # already ordered; sort is stable for equal times
    if not onsets or onsets[0][0] > 0.0:
        onsets.insert(0, (0.0, PAUSE))
    for i, (start, name) in enumerate(onsets):
        end = onsets[i + 1][0] if i + 1 < len(onsets) else duration
        if end - start > 1e-6:
            spans.append(PhonemeEvent(name or PAUSE, start, end))
    if not spans:
        spans.append(PhonemeEvent(PAUSE, 0.0, duration))
    # The last span always reaches the end of the audio.
    if spans[-1].end < duration:
        last = spans[-1]
        spans[-1] = PhonemeEvent(last.phoneme, last.start, duration)
    return spans


def _tilt_filter(
    x: np.ndarray,  # [S]
    tilt: float,
    sample_rate: int,
) -> np.ndarray:  # [S]
    """Spectral tilt: add (tilt > 0) or remove (tilt < 0) content above about 1.5 kHz."""
    if tilt == 0.0:
        return x
    a = float(np.exp(-2.0 * np.pi * 1500.0 / sample_rate))
    low = lfilter([1.0 - a], [1.0, -a], x)
    high = x - low
    gain = 1.0 + 1.5 * tilt if tilt > 0 else 1.0 + 0.85 * tilt
    return (low + gain * high).astype(np.float32)


def _tremolo(
    x: np.ndarray,  # [S]
    depth: float,
    sample_rate: int,
    phase: float,
) -> np.ndarray:  # [S]
    """Amplitude modulation at :data:`TREMOLO_HZ`, 1 - depth/2 · (1 - cos)."""
    if depth == 0.0:
        return x
    t = np.arange(len(x)) / sample_rate
    env = 1.0 - 0.5 * depth * (1.0 - np.cos(2.0 * np.pi * TREMOLO_HZ * t + phase))
    return (x * env).astype(np.float32)


def _with_terminal(text: str, emotion: str) -> str:
    """``text`` with its final punctuation replaced by the emotion's (see TERMINAL)."""
    body = text.rstrip().rstrip(".!?;,:")
    return body + TERMINAL.get(emotion, ".")


def synthesize(
    text: str,
    emotion: str = "neutral",
    intensity: float = 0.0,
    voice: str = DEFAULT_VOICE,
    seed: int = 0,
    pitch_offset: float = 0.0,
) -> Speech:
    """Speak ``text`` with espeak-ng in an emotion, returning 16 kHz audio and phoneme times.

    Args:
        text: The sentence (UTF-8; plain text, no SSML).
        emotion: One of :data:`emotalk3d.constants.EMOTIONS`.
        intensity: In [0, 1] (mild 0.5, strong 1.0; neutral speech ignores it).
        voice: espeak-ng voice name, optionally with a variant (``en-us+m3``); a subject's
            identity.
        seed: Seeds the small prosody jitter; the same arguments give identical audio.
        pitch_offset: Shifts the base pitch (espeak-ng units, 50 normal) for a subject.

    The sentence's final punctuation is set by the emotion (:data:`TERMINAL`: rising "?" for
    surprise, "!" for anger and happiness, "." otherwise), as is its prosody
    (:func:`prosody_for`).

    Returns:
        The :class:`Speech`: ``audio`` [S] float32 at 16 kHz and ``phonemes`` spans that
        cover the whole clip (leading and trailing pauses as ``_``).

    Raises:
        ValueError: Unknown emotion, intensity outside [0, 1], empty text or unknown voice.
        EspeakError: The espeak-ng library or its data is not installed.
    """
    check_emotion(emotion)
    intensity = _check_intensity(intensity)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    if emotion == "neutral":
        intensity = 0.0
    prosody = prosody_for(emotion, intensity, pitch_offset=pitch_offset, seed=seed)
    spoken = _with_terminal(text, emotion if intensity > 0 else "neutral")
    with _LOCK, _Espeak() as eng:
        pcm, events = eng.synth(spoken, voice, prosody)
        native_rate = eng.rate
    # Playing espeak-ng's output `formant` times faster shifts formants (and pitch) up.
    events = [(ms / prosody.formant, name) for ms, name in events]
    if pcm.size == 0:
        raise EspeakError(f"espeak-ng produced no audio for {text!r}")
    x = pcm.astype(np.float32) / 32768.0
    x = soxr.resample(x, native_rate * prosody.formant, SAMPLE_RATE, quality="HQ")
    x = np.asarray(x, dtype=np.float32)
    x = _tilt_filter(x, prosody.tilt, SAMPLE_RATE)
    phase = float(np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x7E30]).uniform(0, 2 * np.pi))
    x = _tremolo(x, prosody.tremolo, SAMPLE_RATE, phase)
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:  # loud emotions: limit the peak, keep the loudness ordering
        x = (x * (0.99 / peak)).astype(np.float32)
    duration = len(x) / SAMPLE_RATE
    return Speech(
        audio=x,
        phonemes=_phoneme_spans(events, duration),
        text=text,
        emotion=emotion,
        intensity=intensity,
        prosody=prosody,
        voice=voice,
    )
