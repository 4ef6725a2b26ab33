"""Constants shared by every stage: emotions, the emotion vector, ARKit blendshape names.

DESIGN.md section 2 fixes the emotions and the emotion vector: one-hot over 8 emotions scaled
by a continuous intensity in [0, 1], followed by the intensity itself (E = 9).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "angry",
    "contempt",
    "disgusted",
    "fear",
    "happy",
    "sad",
    "surprised",
)
NUM_EMOTIONS = len(EMOTIONS)
EMOTION_DIM = NUM_EMOTIONS + 1  # E
INTENSITY_LEVELS: dict[str, float] = {"mild": 0.5, "strong": 1.0}

# The 52 ARKit blendshapes in Apple's order, spelt as the ICT Face Model spells its
# blendshapes (`_L`/`_R` suffixes). `geometry.arkit` maps them to Live Link Face columns.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlink_L", "eyeLookDown_L", "eyeLookIn_L", "eyeLookOut_L", "eyeLookUp_L",
    "eyeSquint_L", "eyeWide_L",
    "eyeBlink_R", "eyeLookDown_R", "eyeLookIn_R", "eyeLookOut_R", "eyeLookUp_R",
    "eyeSquint_R", "eyeWide_R",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmile_L", "mouthSmile_R", "mouthFrown_L", "mouthFrown_R",
    "mouthDimple_L", "mouthDimple_R", "mouthStretch_L", "mouthStretch_R",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPress_L", "mouthPress_R", "mouthLowerDown_L", "mouthLowerDown_R",
    "mouthUpperUp_L", "mouthUpperUp_R",
    "browDown_L", "browDown_R", "browInnerUp", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff", "cheekSquint_L", "cheekSquint_R",
    "noseSneer_L", "noseSneer_R",
    "tongueOut",
)  # fmt: skip
assert len(ARKIT_NAMES) == 52


def check_emotion(name: str) -> str:
    """Return `name` if it is a known emotion, else raise a ValueError listing the valid ones."""
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; expected one of: {', '.join(EMOTIONS)}")
    return name


def emotion_mix_vector(weights: Mapping[str, float]) -> Tensor:  # [E]
    """Emotion vector for a mix such as {"happy": 0.7, "surprised": 0.3}.

    Each named emotion's one-hot slot holds its intensity; the last entry is the overall
    intensity, the largest of them. Neutral has intensity 0 by definition (DESIGN.md section 2),
    so it contributes nothing and pure neutral is the zero vector.
    """
    if not weights:
        raise ValueError("an emotion mix needs at least one emotion, e.g. 'happy:0.7,sad:0.3'")
    vec = torch.zeros(EMOTION_DIM)
    for name, w in weights.items():
        check_emotion(name)
        if not 0.0 <= float(w) <= 1.0:
            raise ValueError(f"intensity of {name!r} must lie in [0, 1], got {w}")
        if name != "neutral":
            vec[EMOTIONS.index(name)] = float(w)
    vec[-1] = vec[:-1].max()
    return vec


def emotion_vector(emotion: str, intensity: float) -> Tensor:  # [E]
    """The emotion vector e of DESIGN.md section 2 for one emotion at one intensity."""
    return emotion_mix_vector({emotion: intensity})
