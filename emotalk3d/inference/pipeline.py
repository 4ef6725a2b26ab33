"""Inference: audio + emotion ► face geometry ► Gaussians ► images (DESIGN.md section 1).

    head = TalkingHead.from_checkpoints("checkpoints/demo")
    for batch in head("a.wav", emotion="angry", cameras=30.0):
        batch.images  # [b, C, H, W, 3] uint8, frames batch.start .. batch.start + b - 1

The stages are exposed for tests, .ply export and ARKit export: `geometry(audio, emotion)`
gives the face points of every frame [T, P, 3], `gaussians(points, emotion)` the raw Gaussians
of those frames, `render(gaussians, cameras)` their images.

`stream(chunks, ...)` does the same for audio that arrives in chunks (a microphone, a live
viewer): frames come out as soon as their audio and a short look-ahead have arrived
(`emotalk3d.inference.streaming`, docs/streaming.md).

Long audio runs in overlapping windows (20 s, 2 s overlap by default): each window runs HuBERT
and S2GNet on its own audio, and the geometry of two windows is cross-faded linearly over their
overlap, so memory is bounded by one window and there is no seam. Frames are rendered in small
batches and streamed. This module imports no Lightning.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from emotalk3d.audio.load import SAMPLE_RATE, load_audio, prepare_audio
from emotalk3d.constants import EMOTION_DIM, EMOTIONS, emotion_mix_vector
from emotalk3d.inference.checkpoint import DEMO_BUNDLE, Bundle, load_bundle
from emotalk3d.inference.memory import retain_freed_memory
from emotalk3d.inference.streaming import (
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_CROSSFADE_FRAMES,
    DEFAULT_LOOKAHEAD_SECONDS,
    GeometryStreamer,
    StreamConfig,
    stream_geometry,
)

AUTO = "auto"
ORBIT = "orbit"
DEFAULT_WINDOW_SECONDS = 20.0
DEFAULT_OVERLAP_SECONDS = 2.0

AudioInput = str | os.PathLike | np.ndarray | Tensor

_MIX_ITEM = re.compile(r"^\s*([A-Za-z]+)\s*(?::\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*)?$")


# ------------------------------------------------------------------------------ emotions
def parse_emotion(spec: str, intensity: float | None = None) -> dict[str, float] | None:
    """Parse an emotion spec into {emotion: intensity}; None means `auto`.

    Accepted: a name (`angry`: intensity `intensity`, default 1; neutral is always 0), `auto`,
    or a mix `happy:0.7,surprised:0.3` (each weight in [0, 1]; `intensity`, when given,
    scales every weight). Names are case-insensitive.

    Raises:
        ValueError: bad syntax, an unknown name (the message lists the valid ones), a weight or
            intensity outside [0, 1], or a repeated name.
    """
    if intensity is not None:
        check_intensity(intensity)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"emotion must be a name, 'auto' or a mix such as happy:0.7,sad:0.3; got {spec!r}"
        )
    text = spec.strip().lower()
    if text == AUTO:
        return None
    valid = (
        f"expected one of: {', '.join(EMOTIONS)}, auto, or a mix such as happy:0.7,surprised:0.3"
    )
    items = text.split(",")
    weights: dict[str, float] = {}
    for item in items:
        m = _MIX_ITEM.match(item)
        if m is None:
            raise ValueError(
                f"bad emotion {spec!r}: {item.strip()!r} is not NAME or "
                f"NAME:WEIGHT (weight a number in [0, 1]); {valid}"
            )
        name, weight = m.group(1), m.group(2)
        if name == AUTO:
            raise ValueError(f"bad emotion {spec!r}: 'auto' cannot be mixed; {valid}")
        if name not in EMOTIONS:
            raise ValueError(f"unknown emotion {name!r}; {valid}")
        if name in weights:
            raise ValueError(f"bad emotion {spec!r}: {name!r} appears twice")
        if weight is None:
            if len(items) > 1:
                raise ValueError(
                    f"bad emotion mix {spec!r}: give every emotion a weight, e.g. "
                    "happy:0.7,surprised:0.3"
                )
            w = 1.0
        else:
            w = float(weight)
            if not 0.0 <= w <= 1.0:
                raise ValueError(
                    f"bad emotion mix {spec!r}: the weight of {name!r} must lie in [0, 1], got {w}"
                )
        weights[name] = w
    scale = 1.0 if intensity is None else float(intensity)
    return {n: (0.0 if n == "neutral" else w * scale) for n, w in weights.items()}


def check_intensity(intensity: float) -> float:
    """Return `intensity` as a float if it lies in [0, 1], else raise a ValueError."""
    try:
        value = float(intensity)
    except (TypeError, ValueError):
        raise ValueError(f"intensity must be a number in [0, 1], got {intensity!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"intensity must lie in [0, 1] (0 none, 0.5 mild, 1 strong), got {intensity!r}"
        )
    return value


def emotion_label(weights: Mapping[str, float] | None) -> str:
    """A short, file-name-safe label: `angry`, `angry50`, `happy70-surprised30`, `auto`."""
    if weights is None:
        return AUTO
    parts = []
    for name, w in weights.items():
        if name == "neutral" or (len(weights) == 1 and abs(w - 1.0) < 1e-9):
            parts.append(name)
        else:
            parts.append(f"{name}{round(w * 100)}")
    return "-".join(parts)


@dataclass
class EmotionChoice:
    """A resolved emotion: the vector the networks take and how it was chosen."""

    vector: Tensor  # [E]
    weights: dict[str, float]
    label: str
    source: str = "user"  # "user" or "auto"
    probabilities: dict[str, float] | None = None  # auto only: the extractor's, EMOTIONS order

    def describe(self) -> str:
        """One line for the console, e.g. `auto: happy (intensity 0.82, p 0.61)`."""
        mix = ", ".join(f"{n} {w:.2f}" for n, w in self.weights.items())
        if self.source == AUTO and self.probabilities:
            name = max(self.probabilities, key=self.probabilities.get)
            return (
                f"auto: the extractor chose {name} (intensity {self.weights.get(name, 0.0):.2f}"
                f", p {self.probabilities[name]:.2f})"
            )
        return mix


def emotion_choice(weights: Mapping[str, float]) -> EmotionChoice:
    """`EmotionChoice` for explicit weights ({name: intensity})."""
    return EmotionChoice(
        vector=emotion_mix_vector(dict(weights)),
        weights=dict(weights),
        label=emotion_label(weights),
    )


# ------------------------------------------------------------------------------ frame maths
def num_output_frames(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames for `num_samples` samples at `fps`: ceil(duration × fps) (exact fractions)."""
    rate = Fraction(fps).limit_denominator(1001)
    return math.ceil(Fraction(int(num_samples)) * rate / int(sample_rate))


def plan_windows(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Frame ranges [start, end) of overlapping windows covering `num_frames` frames.

    Consecutive windows share exactly `overlap` frames; the last one ends at `num_frames`.
    """
    if num_frames < 1:
        raise ValueError(f"need at least one frame, got {num_frames}")
    if not 0 <= overlap < window:
        raise ValueError(
            f"need 0 <= overlap < window frames, got overlap {overlap}, window {window}"
        )
    out = []
    start = 0
    while True:
        end = min(start + window, num_frames)
        out.append((start, end))
        if end == num_frames:
            return out
        start = end - overlap


def crossfade(
    previous: Tensor,  # [O, ...] the earlier window's last O frames
    following: Tensor,  # [O, ...] the later window's first O frames
) -> Tensor:  # [O, ...]
    """Linear cross-fade over an overlap: frame i weighs the later window by (i + 0.5) / O."""
    if previous.shape != following.shape:
        raise ValueError(
            f"crossfade needs equal shapes, got {tuple(previous.shape)} and "
            f"{tuple(following.shape)}"
        )
    n = previous.shape[0]
    w = (torch.arange(n, dtype=previous.dtype, device=previous.device) + 0.5) / max(n, 1)
    w = w.view(-1, *([1] * (previous.ndim - 1)))
    return previous * (1.0 - w) + following * w


def resample_stream(
    chunks: Iterator[Tensor],  # each [t, ...]
    num_in: int,
    fps_in: float,
    fps_out: float,
    num_out: int,
) -> Iterator[Tensor]:  # each [t', ...]
    """Linearly resample a stream of frames from `fps_in` to `fps_out` (bounded memory).

    Output frame j sits at input position x = j fps_in / fps_out (clamped to the last input
    frame) and interpolates frames floor(x) and floor(x) + 1. Equal rates pass frames through
    (truncated or edge-padded to `num_out`).
    """
    ratio = Fraction(fps_in).limit_denominator(1001) / Fraction(fps_out).limit_denominator(1001)
    buf: Tensor | None = None
    buf_start = 0  # input index of buf[0]
    j = 0
    for chunk in chunks:
        buf = chunk if buf is None else torch.cat([buf, chunk])
        have = buf_start + buf.shape[0]
        out = []
        while j < num_out:
            x = min(j * ratio, Fraction(num_in - 1))
            i0 = math.floor(x)
            i1 = min(i0 + 1, num_in - 1)
            if i1 >= have:
                break
            f = float(x - i0)
            a, b = buf[i0 - buf_start], buf[i1 - buf_start]
            out.append(a if f == 0.0 else a * (1.0 - f) + b * f)
            j += 1
        if out:
            yield torch.stack(out)
        keep = min(math.floor(min(j * ratio, Fraction(num_in - 1))), have) - buf_start
        buf, buf_start = buf[keep:], buf_start + keep
    if j < num_out:  # only when the input ended early: hold the last frame
        assert buf is not None and buf.shape[0] > 0
        yield buf[-1:].expand(num_out - j, *buf.shape[1:]).clone()


def rechunk(chunks: Iterator[Tensor], size: int) -> Iterator[Tensor]:
    """Regroup a stream of [t, ...] tensors into batches of exactly `size` (the last smaller)."""
    pending: list[Tensor] = []
    have = 0
    for chunk in chunks:
        pending.append(chunk)
        have += chunk.shape[0]
        while have >= size:
            joined = torch.cat(pending)
            yield joined[:size]
            rest = joined[size:]
            pending, have = ([rest] if rest.shape[0] else []), rest.shape[0]
    if have:
        yield torch.cat(pending)


# ------------------------------------------------------------------------------ cameras
@dataclass
class Cameras:
    """Render cameras: C static cameras, or one moving camera per frame (`orbit`).

    Attributes:
        viewmats: [C, 4, 4] world-to-camera, or [T, C, 4, 4] per frame.
        Ks: [C, 3, 3] pixel intrinsics.
        width: image width in pixels.
        height: image height in pixels.
        names: one label per camera (`view30`, `orbit`), used in file names.
    """

    viewmats: Tensor  # [C, 4, 4] or [T, C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int
    names: list[str] = field(default_factory=list)

    @property
    def num_cameras(self) -> int:
        """C."""
        return int(self.Ks.shape[0])

    @property
    def per_frame(self) -> bool:
        """True when the cameras move (one set of viewmats per frame)."""
        return self.viewmats.ndim == 4

    def at(self, start: int, stop: int) -> Tensor:  # [C, 4, 4] or [b, C, 4, 4]
        """The viewmats of frames [start, stop) (the shared ones for static cameras)."""
        if not self.per_frame:
            return self.viewmats
        last = self.viewmats.shape[0] - 1
        idx = torch.arange(start, stop).clamp(max=last)
        return self.viewmats[idx]


def view_name(yaw: float) -> str:
    """`view30`, `view-30`, `view12.5`: a file-name label for a yaw in degrees."""
    return f"view{float(yaw):g}"


# ------------------------------------------------------------------------------ outputs
@dataclass
class FrameBatch:
    """What `TalkingHead.__call__` yields for consecutive frames [start, start + b)."""

    start: int
    images: np.ndarray | None  # [b, C, H, W, 3] uint8; None from stream(render=False)
    geometry: Tensor  # [b, P, 3] face points (mm)


# ------------------------------------------------------------------------------ the head
class TalkingHead:
    """Speech + emotion ► free-view talking head: EmoTalk3D's full inference path (He et al.,
    ECCV 2024, section 3: "speech to geometry to appearance"; DESIGN.md section 1).

    Build with `from_checkpoints(folder)`. The stages are public: `geometry`, `gaussians`,
    `render`; `__call__` chains them in streamed batches.
    """

    def __init__(
        self,
        bundle: Bundle,
        subject: str | None = None,
        device: str | torch.device = "cpu",
        backend: str = "auto",
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    ) -> None:
        """
        Args:
            bundle: A loaded bundle (`emotalk3d.inference.checkpoint.load_bundle`).
            subject: The appearance subject (default: the bundle's first).
            device: Torch device of the networks and the renderer.
            backend: Rasterizer: "auto", "torch" or "gsplat".
            window_seconds: Audio per window of the chunked geometry.
            overlap_seconds: Overlap (cross-faded) between consecutive windows.
        """
        if backend not in ("auto", "torch", "gsplat"):
            raise ValueError(f"backend must be auto, torch or gsplat, got {backend!r}")
        if not 0 <= overlap_seconds < window_seconds:
            raise ValueError(
                f"need 0 <= overlap_seconds < window_seconds, got "
                f"{overlap_seconds}, {window_seconds}"
            )
        retain_freed_memory()  # per-frame temporaries reuse heap blocks (inference/memory.py)
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.device = torch.device(device)
        self.backend = backend
        self.window_seconds = float(window_seconds)
        self.overlap_seconds = float(overlap_seconds)
        names = list(bundle.heads)
        self.subject = names[0] if subject is None else subject
        if self.subject not in bundle.heads:
            raise ValueError(
                f"subject {self.subject!r} is not loaded; available: {', '.join(names)}"
            )
        self.head = bundle.heads[self.subject]
        self.s2g = bundle.s2g
        self.extractor = bundle.extractor
        # The subject's style id: its own when S2GNet was trained on it, else the first.
        subjects = bundle.s2g_subjects
        self.style_id = subjects.index(self.subject) if self.subject in subjects else 0
        self.template = self.head.template  # [P, 3]
        self.render_settings = dict(self.manifest.get("render", {}))
        bg = self.render_settings.get("background", [1.0, 1.0, 1.0])
        self.background = torch.tensor(bg, dtype=torch.float32, device=self.device)  # [3]

    @classmethod
    def from_checkpoints(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        backend: str = "auto",
        subject: str | None = None,
        **kwargs: Any,
    ) -> TalkingHead:
        """Load a bundle folder (default: the built-in demo, `checkpoints/demo`).

        Raises:
            BundleError: missing, incomplete or incompatible bundle (names how to rebuild it).
        """
        folder = DEMO_BUNDLE if path is None else Path(path)
        bundle = load_bundle(folder, device=device, subjects=None if subject is None else [subject])
        return cls(bundle, subject=subject, device=device, backend=backend, **kwargs)

    # -------------------------------------------------------------------- properties
    @property
    def fps(self) -> int:
        """The motion frame rate S2GNet was trained at."""
        return int(self.s2g.fps)

    @property
    def subjects(self) -> list[str]:
        """Appearance subjects loaded from the bundle."""
        return list(self.bundle.heads)

    @property
    def regions(self) -> dict[str, Tensor]:
        """Region masks [P] bool of the template points (lips, eyes, ... when known)."""
        out = dict(self.bundle.regions)
        if self.bundle.rig is not None:
            for k, m in self.bundle.rig.regions.items():
                out.setdefault(k, torch.as_tensor(m, device=self.device))
        return out

    @property
    def landmarks(self) -> dict[str, int]:
        """Landmark vertex indices (lip_upper_mid, mouth_corner_L, ...); empty without a rig."""
        return dict(self.bundle.rig.landmarks) if self.bundle.rig is not None else {}

    # -------------------------------------------------------------------- inputs
    def load_audio(self, audio: AudioInput, sample_rate: int | None = None) -> Tensor:  # [S]
        """Audio as 16 kHz mono float32 [S]: a file path, or samples with their `sample_rate`."""
        if isinstance(audio, str | os.PathLike):
            return load_audio(audio)
        if sample_rate is None:
            raise ValueError("audio given as samples needs its sample_rate (e.g. 16000)")
        if isinstance(audio, Tensor) and sample_rate == SAMPLE_RATE and audio.ndim == 1:
            return audio.detach().float().cpu()
        return prepare_audio(audio, int(sample_rate))

    def _check_audio(self, audio: Tensor) -> None:  # audio: [S]
        need = max(self.s2g.audio_encoder.min_samples, self.extractor.min_samples)
        if audio.ndim != 1 or audio.shape[0] < need:
            raise ValueError(
                f"audio must be [S] 16 kHz mono with at least {need} samples "
                f"({need / SAMPLE_RATE * 1000:.0f} ms), got {tuple(audio.shape)}"
            )

    @torch.no_grad()
    def predict_emotion(self, audio: Tensor) -> tuple[str, float, Tensor]:  # audio: [S]
        """The extractor's emotion of a clip: (name, intensity, probabilities [8]).

        Long clips are judged window by window (`window_seconds`); probabilities and
        intensities are averaged weighted by window length.
        """
        self._check_audio(audio)
        step = int(self.window_seconds * SAMPLE_RATE)
        probs = torch.zeros(len(EMOTIONS))
        inten = 0.0
        total = 0
        for start in range(0, audio.shape[0], step):
            piece = audio[start : start + step]
            if piece.shape[0] < self.extractor.min_samples:
                continue
            out = self.extractor(piece[None].to(self.device))
            n = piece.shape[0]
            probs += torch.softmax(out.logits[0].float(), -1).cpu() * n
            inten += float(out.intensity[0]) * n
            total += n
        probs /= total
        return EMOTIONS[int(probs.argmax())], inten / total, probs

    def resolve_emotion(
        self,
        emotion: str | Mapping[str, float] | EmotionChoice | Tensor = "neutral",
        audio: Tensor | None = None,  # [S], needed for auto
        intensity: float | None = None,
    ) -> EmotionChoice:
        """Turn a name, `auto`, a mix, weights or a raw vector [E] into an `EmotionChoice`.

        `auto` runs the emotion extractor on `audio`; `intensity`, when given, replaces the
        predicted intensity. The decision is in the result (`describe()` prints it).
        """
        if isinstance(emotion, EmotionChoice):
            return emotion
        if isinstance(emotion, Tensor):
            if emotion.shape != (EMOTION_DIM,):
                raise ValueError(
                    f"an emotion vector must be [E={EMOTION_DIM}], got {tuple(emotion.shape)}"
                )
            return EmotionChoice(vector=emotion.float().cpu(), weights={}, label="custom")
        if isinstance(emotion, Mapping):
            for w in emotion.values():
                check_intensity(w)
            weights = {k: float(v) for k, v in emotion.items()}
            return emotion_choice(weights)
        weights = parse_emotion(emotion, intensity)
        if weights is not None:
            return emotion_choice(weights)
        if audio is None:
            raise ValueError("emotion 'auto' needs the audio to judge")
        name, predicted, probs = self.predict_emotion(audio)
        level = predicted if intensity is None else check_intensity(intensity)
        w = {name: 0.0 if name == "neutral" else float(np.clip(level, 0.0, 1.0))}
        choice = emotion_choice(w)
        choice.source = AUTO
        choice.label = AUTO
        choice.probabilities = {n: float(p) for n, p in zip(EMOTIONS, probs, strict=True)}
        return choice

    def cameras(
        self,
        views: float | Sequence[float] | str = 0.0,
        resolution: int = 256,
        pitch: float = 0.0,
        distance: float | None = None,
        num_frames: int | None = None,
    ) -> Cameras:
        """Cameras around the head: yaw(s) in degrees from the frontal camera, or `orbit`.

        Args:
            views: One yaw, several yaws (one camera each), or "orbit" (a camera swinging
                0 ► 45 ► 0 ► -45 ► 0 degrees over the clip; needs `num_frames`).
            resolution: Square image size in pixels.
            pitch: Degrees up (positive) or down.
            distance: Camera distance in mm (default: the bundle's frontal camera's).
            num_frames: Frames of the clip (orbit only).
        """
        from emotalk3d.render.cameras import interpolate_orbit, intrinsics_from_fov, orbit_camera

        rs = self.render_settings
        dist = float(rs.get("distance", 650.0) if distance is None else distance)
        target = rs.get("target", (0.0, -30.0, 0.0))
        height = float(rs.get("height", 0.0))
        if int(resolution) < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
        K = torch.tensor(
            intrinsics_from_fov(float(rs.get("fov_deg", 30.0)), resolution, resolution)
        )
        if isinstance(views, str):
            if views != ORBIT:
                raise ValueError(f"views must be yaw degrees or 'orbit', got {views!r}")
            if num_frames is None:
                raise ValueError("an orbit camera needs num_frames")
            mats = interpolate_orbit(
                num_frames, (0.0, 45.0, 0.0, -45.0), [pitch] * 4, dist, target, height, loop=True
            )
            vm = torch.tensor(mats)[:, None]  # [T, 1, 4, 4]
            names = [ORBIT]
        else:
            yaws = [float(views)] if isinstance(views, int | float) else [float(v) for v in views]
            if not yaws or not all(math.isfinite(y) for y in yaws):
                raise ValueError(f"views must be finite yaw angles in degrees, got {views!r}")
            vm = torch.stack(
                [torch.tensor(orbit_camera(y, pitch, dist, target, height)) for y in yaws]
            )  # [C, 4, 4]
            names = [view_name(y) for y in yaws]
        C = len(names)
        return Cameras(
            viewmats=vm.float().to(self.device),
            Ks=K.float()[None].expand(C, 3, 3).contiguous().to(self.device),
            width=int(resolution),
            height=int(resolution),
            names=names,
        )

    # -------------------------------------------------------------------- stages
    def num_frames(self, num_samples: int, fps: float | None = None) -> int:
        """Frames of a clip of `num_samples` 16 kHz samples: ceil(duration × fps)."""
        return num_output_frames(num_samples, self.fps if fps is None else fps)

    @torch.no_grad()
    def iter_geometry(
        self,
        audio: Tensor,  # [S] 16 kHz
        emotion: EmotionChoice | str | Tensor = "neutral",
        fps: float | None = None,
    ) -> Iterator[Tensor]:  # yields [t, P, 3]
        """Face points of every frame, streamed window by window (bounded memory).

        Windows of `window_seconds` overlap by `overlap_seconds`; the overlap is cross-faded.
        At an `fps` other than the model's, frames are resampled linearly in time.
        """
        audio = self.load_audio(audio, SAMPLE_RATE) if not isinstance(audio, Tensor) else audio
        self._check_audio(audio)
        choice = self.resolve_emotion(emotion, audio)
        out_fps = self.fps if fps is None else fps
        num_in = self.num_frames(audio.shape[0])
        num_out = self.num_frames(audio.shape[0], out_fps)
        stream = self._model_geometry(audio, choice.vector, num_in)
        if out_fps == self.fps:
            yield from stream
        else:
            yield from resample_stream(stream, num_in, self.fps, out_fps, num_out)

    def _model_geometry(
        self,
        audio: Tensor,  # [S]
        vector: Tensor,  # [E]
        num_frames: int,
    ) -> Iterator[Tensor]:  # yields [t, P, 3]
        spf = SAMPLE_RATE / self.fps  # samples per frame
        window = max(2, round(self.window_seconds * self.fps))
        overlap = min(round(self.overlap_seconds * self.fps), window - 1)
        emotion = vector.to(self.device)[None]  # [1, E]
        subject = torch.tensor([self.style_id], device=self.device)
        template = self.template[None]  # [1, P, 3]
        min_samples = self.s2g.audio_encoder.min_samples
        tail: Tensor | None = None  # the previous window's last `overlap` frames
        for k, (a, b) in enumerate(plan_windows(num_frames, window, overlap)):
            s0 = round(a * spf)
            s1 = min(round(b * spf), audio.shape[0])
            piece = audio[s0:s1]
            if piece.shape[0] < min_samples:  # a last window with almost no audio: pad
                piece = torch.nn.functional.pad(piece, (0, min_samples - piece.shape[0]))
            pts = self.s2g(
                piece[None].to(self.device), template, emotion, subject, num_frames=b - a
            )[0]  # [b - a, P, 3]
            if k > 0 and overlap > 0:
                pts = torch.cat([crossfade(tail, pts[:overlap]), pts[overlap:]])
            last = b == num_frames
            if last:
                yield pts
            else:
                yield pts[: pts.shape[0] - overlap]
                tail = pts[pts.shape[0] - overlap :]

    def geometry(
        self,
        audio: AudioInput,
        emotion: EmotionChoice | str | Mapping[str, float] | Tensor = "neutral",
        sample_rate: int | None = None,
        fps: float | None = None,
    ) -> Tensor:  # [T, P, 3]
        """Face points of every frame (mm), T = ceil(duration × fps)."""
        wav = self.load_audio(audio, sample_rate)
        choice = self.resolve_emotion(emotion, wav)
        return torch.cat(list(self.iter_geometry(wav, choice, fps)))

    @torch.no_grad()
    def gaussians(
        self,
        points: Tensor,  # [T, P, 3]
        emotion: EmotionChoice | str | Mapping[str, float] | Tensor = "neutral",
    ):
        """Raw per-frame Gaussians (`FrameGaussians`: means [T, N, 3], ...) of face points."""
        choice = self.resolve_emotion(emotion)
        vec = choice.vector.to(self.device)[None]  # [1, E]
        return self.head.frame_gaussians(points.to(self.device), vec)

    @torch.no_grad()
    def render(
        self,
        gaussians: Any,  # FrameGaussians of b frames
        cameras: Cameras,
        start: int = 0,
    ) -> Tensor:  # [b, C, H, W, 3] float in [0, 1]
        """Render b frames' Gaussians from every camera (frames start .. start + b - 1)."""
        from emotalk3d.render.rasterize import render_gaussians

        b = gaussians.means.shape[0]
        out = render_gaussians(
            gaussians.means,
            gaussians.quats,
            gaussians.scales,
            gaussians.opacities,
            gaussians.sh,
            cameras.at(start, start + b),
            cameras.Ks,
            cameras.width,
            cameras.height,
            backend=self.backend,
            background=self.background,
            sh_degree=gaussians.sh_degree,
            render_depth=False,
        )
        return out.image.clamp(0.0, 1.0)

    def __call__(
        self,
        audio: AudioInput,
        emotion: EmotionChoice | str | Mapping[str, float] | Tensor = "neutral",
        cameras: Cameras | float | Sequence[float] | str = 0.0,
        *,
        sample_rate: int | None = None,
        intensity: float | None = None,
        fps: float | None = None,
        resolution: int = 256,
        batch_size: int = 4,
    ) -> Iterator[FrameBatch]:
        """Render a clip, yielding `FrameBatch`es of `batch_size` frames in order.

        Args:
            audio: A file path, or samples [S] with `sample_rate`.
            emotion: A name, `auto`, a mix string, {name: intensity}, an `EmotionChoice` or a
                vector [E].
            cameras: `Cameras`, a yaw in degrees, several yaws, or "orbit".
            sample_rate: Rate of `audio` samples.
            intensity: Intensity in [0, 1] for a named emotion (default 1), or to override
                `auto`'s.
            fps: Video frame rate (default: the model's).
            resolution: Square image size when `cameras` is not a `Cameras`.
            batch_size: Frames rendered together.
        """
        wav = self.load_audio(audio, sample_rate)
        self._check_audio(wav)
        choice = self.resolve_emotion(emotion, wav, intensity)
        out_fps = self.fps if fps is None else fps
        total = self.num_frames(wav.shape[0], out_fps)
        if not isinstance(cameras, Cameras):
            cameras = self.cameras(cameras, resolution, num_frames=total)
        start = 0
        for pts in rechunk(self.iter_geometry(wav, choice, out_fps), max(1, int(batch_size))):
            g = self.gaussians(pts, choice)
            images = self.render(g, cameras, start)
            u8 = (images * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
            yield FrameBatch(start=start, images=u8, geometry=pts)
            start += pts.shape[0]

    def stream(
        self,
        chunks: Iterable[Tensor | np.ndarray],
        emotion: EmotionChoice | str | Mapping[str, float] | Tensor = "neutral",
        cameras: Cameras | float | Sequence[float] = 0.0,
        *,
        intensity: float | None = None,
        resolution: int = 256,
        lookahead_seconds: float = DEFAULT_LOOKAHEAD_SECONDS,
        context_seconds: float = DEFAULT_CONTEXT_SECONDS,
        crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES,
        render: bool = True,
        batch_size: int = 8,
    ) -> Iterator[FrameBatch]:
        """Render audio that arrives in chunks: each `FrameBatch` is yielded as soon as its
        frames' audio plus `lookahead_seconds` has arrived (docs/streaming.md).

        The geometry is S2GNet re-run on a sliding window (`context_seconds` before the new
        frames to everything received) and cross-faded at window seams; it matches offline
        processing (`geometry`) within the tolerance measured in docs/streaming.md. Frames
        are rendered exactly as `__call__` renders them.

        Args:
            chunks: 16 kHz mono float chunks [s] of any sizes (e.g. 200 ms), in order; the
                stream ends when the iterable does.
            emotion: A name, a mix, {name: intensity}, an `EmotionChoice` or a vector [E];
                not `auto`, which needs the whole clip.
            cameras: `Cameras` with static viewmats, a yaw in degrees or several yaws (an
                orbit needs the clip length, which a stream does not know).
            intensity: Intensity in [0, 1] of a named emotion (default 1).
            resolution: Square image size when `cameras` is not a `Cameras`.
            lookahead_seconds: Audio after a frame needed before it is emitted.
            context_seconds: Audio before the new frames each window re-reads.
            crossfade_frames: Frames cross-faded at each window seam.
            render: False yields geometry only (`images` None): what a client-side renderer
                such as the viewer needs.
            batch_size: Most frames rendered together.

        Raises:
            ValueError: `auto` emotion, an orbit camera, or a malformed chunk.
        """
        if isinstance(emotion, str) and emotion.strip().lower() == AUTO:
            raise ValueError(
                "stream() cannot use emotion 'auto': the extractor judges the whole clip; "
                "pass a name or a mix (e.g. 'happy' or 'happy:0.7,surprised:0.3')"
            )
        if isinstance(cameras, str) or (isinstance(cameras, Cameras) and cameras.per_frame):
            raise ValueError(
                "stream() needs static cameras (a yaw, several yaws or Cameras without per-frame "
                "viewmats): an orbit is planned over the clip length, which a stream does not know"
            )
        choice = self.resolve_emotion(emotion, None, intensity)
        if render and not isinstance(cameras, Cameras):
            cameras = self.cameras(cameras, resolution)
        config = StreamConfig(lookahead_seconds, context_seconds, crossfade_frames)
        streamer = self.streamer(choice, config)
        start = 0
        for pts in stream_geometry(streamer, chunks):
            for b0 in range(0, pts.shape[0], max(1, int(batch_size))):
                part = pts[b0 : b0 + max(1, int(batch_size))]
                u8 = None
                if render:
                    assert isinstance(cameras, Cameras)
                    images = self.render(self.gaussians(part, choice), cameras, start)
                    u8 = (images * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
                yield FrameBatch(start=start, images=u8, geometry=part)
                start += part.shape[0]

    def streamer(
        self, choice: EmotionChoice, config: StreamConfig | None = None
    ) -> GeometryStreamer:
        """A `GeometryStreamer` of this head's S2GNet, subject and `choice`'s emotion (what
        `stream` drives; a server fed by a websocket pushes chunks into it itself).

        Args:
            choice: The resolved emotion (`resolve_emotion`; not `auto`).
            config: Look-ahead, context and cross-fade (default `StreamConfig()`).
        """
        return GeometryStreamer(
            self.s2g, self.template, choice.vector, self.style_id, config, self.device
        )

    # -------------------------------------------------------------------- exports
    def arkit_weights(self, points: Tensor) -> np.ndarray:  # points: [T, P, 3] -> [T, 52]
        """ARKit blendshape weights of face points (needs a bundle with a rig)."""
        from emotalk3d.geometry.arkit import fit_arkit_weights

        rig = self.bundle.rig
        if rig is None:
            raise ValueError(
                f"the bundle {self.bundle.folder} has no face rig, which ARKit "
                "export needs; re-export it with a rig (emotalk3d bundle --rig ...)"
            )
        pts = points.detach().cpu().numpy()
        return fit_arkit_weights(rig, pts, neutral=self.template.cpu().numpy())
