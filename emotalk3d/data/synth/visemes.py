"""espeak-ng phoneme mnemonics to viseme classes, and viseme classes to ARKit weights.

DESIGN.md section 4 ("Motion"): phonemes ► visemes ► ARKit weights. The phoneme names are
espeak-ng's (Kirshenbaum-style ASCII mnemonics, as its ``espeakEVENT_PHONEME`` events report
them for the ``en-us`` voice), e.g. ``p b m f v T D s z S Z t d n l r w j k g N h tS dZ`` and
vowels ``a A: @ @L aI aU E eI i: I O: OI oU U u: V 3:``; ``_``, ``_:`` and ``_!`` are pauses.

Weights use ARKit semantics (ICT spelling): ``mouthClose`` closes the lips *against*
``jawOpen`` (lips shut when mouthClose ≈ jawOpen), as Apple and the ICT Face Model define
it. Bilabial closures are therefore not a viseme target alone: :mod:`.motion` adds a closure
channel that pins ``mouthClose`` to the jaw opening at every p, b, m.
"""

from __future__ import annotations

import logging
import re
from types import MappingProxyType

import numpy as np

from emotalk3d.constants import ARKIT_NAMES

logger = logging.getLogger(__name__)

# Viseme classes. Each gets a target pose (ARKit weights); bilateral shapes are listed once
# without their side and expanded to _L and _R.
VISEMES: tuple[str, ...] = (
    "sil",  # silence: rest pose
    "PP",  # bilabial closure p b m
    "FF",  # labiodental f v
    "TH",  # dental T D
    "DD",  # alveolar t d n l
    "SS",  # sibilant s z
    "SH",  # postalveolar S Z tS dZ
    "KK",  # velar and glottal k g N h
    "RR",  # r
    "WW",  # labio-velar w
    "AA",  # open vowels a A: V 0 aa
    "AO",  # open rounded O: O@ OI-onset
    "EE",  # spread front vowels i: I E eI
    "ER",  # mid and central vowels @ 3 3:
    "OO",  # close rounded vowels u: U oU
)

_BILATERAL = {
    "mouthSmile",
    "mouthFrown",
    "mouthStretch",
    "mouthPress",
    "mouthUpperUp",
    "mouthLowerDown",
    "mouthDimple",
    "browDown",
    "browOuterUp",
    "eyeBlink",
    "eyeWide",
    "eyeSquint",
    "cheekSquint",
    "noseSneer",
}

# Target pose of each viseme class at normal articulation.
_VISEME_POSES: dict[str, dict[str, float]] = {
    "sil": {},
    "PP": {"jawOpen": 0.04, "mouthPress": 0.35, "mouthRollLower": 0.1},
    "FF": {"jawOpen": 0.08, "mouthRollLower": 0.55, "mouthUpperUp": 0.25, "mouthShrugUpper": 0.15},
    "TH": {"jawOpen": 0.14, "mouthLowerDown": 0.15, "tongueOut": 0.3},
    "DD": {"jawOpen": 0.18, "mouthLowerDown": 0.1, "mouthStretch": 0.08},
    "SS": {"jawOpen": 0.07, "mouthStretch": 0.3, "mouthLowerDown": 0.1},
    "SH": {"jawOpen": 0.1, "mouthFunnel": 0.45, "mouthPucker": 0.25, "mouthShrugUpper": 0.1},
    "KK": {"jawOpen": 0.22, "mouthLowerDown": 0.05},
    "RR": {"jawOpen": 0.12, "mouthPucker": 0.3, "mouthFunnel": 0.25},
    "WW": {"jawOpen": 0.05, "mouthPucker": 0.75, "mouthFunnel": 0.2},
    "AA": {"jawOpen": 0.62, "mouthLowerDown": 0.2, "mouthUpperUp": 0.05},
    "AO": {"jawOpen": 0.52, "mouthFunnel": 0.35, "mouthPucker": 0.1},
    "EE": {"jawOpen": 0.16, "mouthStretch": 0.38, "mouthSmile": 0.1, "mouthUpperUp": 0.05},
    "ER": {"jawOpen": 0.3, "mouthLowerDown": 0.08},
    "OO": {"jawOpen": 0.18, "mouthPucker": 0.6, "mouthFunnel": 0.35},
}

# espeak-ng en-us mnemonics → viseme class; a diphthong is (first class, second class).
PHONEME_VISEMES: MappingProxyType[str, str | tuple[str, str]] = MappingProxyType(
    {
        # pauses
        "_": "sil",
        "_:": "sil",
        "_!": "sil",
        "_^_": "sil",
        # consonants
        "p": "PP",
        "b": "PP",
        "m": "PP",
        "f": "FF",
        "v": "FF",
        "T": "TH",
        "D": "TH",
        "t": "DD",
        "d": "DD",
        "n": "DD",
        "l": "DD",
        "t#": "DD",  # flap (better, water)
        "n-": "DD",  # syllabic n
        "l/": "DD",
        "s": "SS",
        "z": "SS",
        "S": "SH",
        "Z": "SH",
        "tS": "SH",
        "dZ": "SH",
        "k": "KK",
        "g": "KK",
        "N": "KK",
        "h": "KK",
        "?": "KK",  # glottal stop
        "x": "KK",
        "r": "RR",
        "r-": "RR",  # syllabic r
        "w": "WW",
        "j": "EE",
        ";": "EE",  # palatalisation mark after a consonant
        # open vowels
        "a": "AA",
        "aa": "AA",
        "a#": "AA",
        "A:": "AA",
        "A@": "AA",
        "V": "AA",
        "0": "AA",
        "aI": ("AA", "EE"),
        "aI@": ("AA", "ER"),
        "aI3": ("AA", "ER"),
        "aU": ("AA", "OO"),
        # open rounded
        "O:": "AO",
        "O": "AO",
        "O2": "AO",
        "O@": "AO",
        "o@": "AO",
        "OI": ("AO", "EE"),
        # spread
        "i:": "EE",
        "i": "EE",
        "I": "EE",
        "I#": "EE",
        "I2": "EE",
        "E": "EE",
        "e@": "EE",
        "i@": ("EE", "ER"),
        "eI": "EE",
        # central
        "@": "ER",
        "@2": "ER",
        "@5": "ER",
        "@L": "ER",
        "3": "ER",
        "3:": "ER",
        # rounded
        "u:": "OO",
        "U": "OO",
        "U@": "OO",
        "oU": "OO",
        "u": "OO",
    }
)

BILABIAL_PHONEMES: frozenset[str] = frozenset({"p", "b", "m"})
"""Phonemes whose lips must close (the closure channel of :mod:`.motion`)."""

DEFAULT_VISEME = "ER"
"""Viseme of an unknown phoneme: a neutral, half-open mouth."""
DIPHTHONG_SPLIT = 0.55
"""Fraction of a diphthong's span that shows its first viseme."""

_warned: set[str] = set()


def _expand(pose: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, w in pose.items():
        if name in _BILATERAL:
            out[f"{name}_L"] = w
            out[f"{name}_R"] = w
        else:
            out[name] = w
    return out


def _pose_vector(pose: dict[str, float]) -> np.ndarray:  # [K] K = 52 ARKit names
    v = np.zeros(len(ARKIT_NAMES), np.float32)
    for name, w in _expand(pose).items():
        v[ARKIT_NAMES.index(name)] = w
    return v


VISEME_WEIGHTS: np.ndarray = np.stack([_pose_vector(_VISEME_POSES[v]) for v in VISEMES])
"""[len(VISEMES), 52] ARKit weights (ARKIT_NAMES order) of each viseme class."""
VISEME_WEIGHTS.flags.writeable = False


def viseme_pose(viseme: str) -> dict[str, float]:
    """The non-zero ARKit weights (ICT spelling) of a viseme class.

    Raises:
        ValueError: ``viseme`` is not one of :data:`VISEMES`.
    """
    if viseme not in VISEMES:
        raise ValueError(f"unknown viseme {viseme!r}; expected one of {', '.join(VISEMES)}")
    return _expand(_VISEME_POSES[viseme])


def phoneme_to_viseme(phoneme: str) -> str | tuple[str, str]:
    """The viseme class (or a diphthong's two classes) of an espeak-ng phoneme mnemonic.

    Tries the exact name, then the name without espeak-ng's stress/variant marks (digits and
    ``#``, ``;``, ``-``, ``/``, ``!``); a name still unknown maps to :data:`DEFAULT_VISEME`
    with one logged warning per name.
    """
    if phoneme in PHONEME_VISEMES:
        return PHONEME_VISEMES[phoneme]
    if phoneme.startswith("_"):
        return "sil"
    stripped = re.sub(r"[0-9#;\-/!]+$", "", phoneme)
    if stripped in PHONEME_VISEMES:
        return PHONEME_VISEMES[stripped]
    if phoneme not in _warned:
        _warned.add(phoneme)
        logger.warning(
            "unknown espeak-ng phoneme %r: animating it as viseme %r", phoneme, DEFAULT_VISEME
        )
    return DEFAULT_VISEME


def is_bilabial(phoneme: str) -> bool:
    """True for p, b, m (the lips must close)."""
    return phoneme in BILABIAL_PHONEMES
