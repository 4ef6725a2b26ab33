"""Streaming geometry: face points frame by frame while the audio is still arriving.

HuBERT attends over its whole input and S2GNet's GRU carries state from the first frame, so
offline inference of a frame uses audio from everywhere in its window. Streaming bounds that
to a sliding window (docs/streaming.md):

- Every time audio arrives (`push`), the frames whose own audio *and* `lookahead` seconds
  after it have arrived become ready. S2GNet (with its HuBERT) is re-run on the audio from
  `context` seconds before the first ready frame up to everything received, starting at a
  frame boundary; the GRU starts from zero at the window start, and the context lets it
  warm up (re-running over the context instead of carrying the GRU state keeps S2GNet's own
  forward and keeps HuBERT's features consistent within the window).
- Only the ready frames are emitted. The window's predictions for the frames after them
  (predicted with less look-ahead) are kept, and the first `crossfade` frames emitted by the
  next run are cross-faded from those into the new predictions, so consecutive runs join
  without a jump.
- `finish()` emits the rest when the audio ends (the last frames see no more look-ahead than
  offline processing does).

With `context` at least the clip length and `lookahead` at least the clip length the window
is the whole clip and the output equals offline processing exactly; with finite values the
difference is measured, not assumed (docs/streaming.md gives the figures and defaults).

Every window's audio length is O(context + lookahead + chunk), so the cost per pushed chunk
and the memory are bounded however long the stream runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from emotalk3d.audio.load import SAMPLE_RATE

DEFAULT_CHUNK_SECONDS = 0.2
DEFAULT_LOOKAHEAD_SECONDS = 0.2
DEFAULT_CONTEXT_SECONDS = 2.0
DEFAULT_CROSSFADE_FRAMES = 2


@dataclass(frozen=True)
class StreamConfig:
    """Look-ahead and context of streaming inference.

    Attributes:
        lookahead_seconds: Audio after a frame's own audio that must have arrived before the
            frame is emitted (the algorithmic latency beyond the frame itself).
        context_seconds: Audio before the first new frame that each window re-reads (GRU
            warm-up and HuBERT context).
        crossfade_frames: Frames over which a run's first emitted frames are cross-faded from
            the previous run's predictions of them (0: none).
    """

    lookahead_seconds: float = DEFAULT_LOOKAHEAD_SECONDS
    context_seconds: float = DEFAULT_CONTEXT_SECONDS
    crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES

    def __post_init__(self) -> None:
        for name in ("lookahead_seconds", "context_seconds"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {v!r}")
        if not (isinstance(self.crossfade_frames, int) and self.crossfade_frames >= 0):
            raise ValueError(f"crossfade_frames must be an int >= 0, got {self.crossfade_frames!r}")


def as_chunk(chunk: Tensor | np.ndarray) -> Tensor:  # [s] float32
    """One chunk of 16 kHz mono audio as a float32 CPU tensor [s]."""
    t = torch.as_tensor(np.asarray(chunk) if not isinstance(chunk, Tensor) else chunk)
    if t.ndim != 1 or not t.is_floating_point():
        raise ValueError(
            "stream chunks must be 1-D float arrays of 16 kHz mono samples, got "
            f"shape {tuple(t.shape)} dtype {t.dtype}; resample and mix down first "
            "(emotalk3d.audio.load.prepare_audio)"
        )
    return t.detach().to(device="cpu", dtype=torch.float32)


def split_chunks(
    audio: Tensor,  # [S]
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    sample_rate: int = SAMPLE_RATE,
) -> Iterator[Tensor]:  # each [s]
    """Cut a clip into consecutive chunks of `chunk_seconds` (the last one shorter)."""
    step = round(chunk_seconds * sample_rate)
    if step < 1:
        raise ValueError(f"chunk_seconds must give at least one sample, got {chunk_seconds}")
    for s in range(0, audio.shape[0], step):
        yield audio[s : s + step]


class GeometryStreamer:
    """Stateful streaming S2GNet: `push(chunk)` returns the face points [t, P, 3] of the frames
    that became ready (t may be 0), `finish()` those of the remaining frames.

    Frame k covers samples [k spf, (k + 1) spf), spf = sample_rate / fps; it is emitted once
    (k + 1) spf + lookahead samples have arrived, or at `finish()`. After `finish()` the
    total number of frames is ceil(samples × fps / sample_rate), as offline.
    """

    def __init__(
        self,
        s2g: torch.nn.Module,
        template: Tensor,  # [P, 3]
        emotion: Tensor,  # [E]
        style_id: int,
        config: StreamConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        """
        Args:
            s2g: An `S2GNet` holding its audio encoder (raw audio in).
            template: The subject's neutral face points (mm).
            emotion: The emotion vector.
            style_id: S2GNet's subject (speaking style) id.
            config: Look-ahead, context and cross-fade (default `StreamConfig()`).
            device: Device of the networks.
        """
        self.s2g = s2g
        self.config = StreamConfig() if config is None else config
        self.device = torch.device(device)
        self.template = template.to(self.device)[None]  # [1, P, 3]
        self.emotion = emotion.to(self.device).float()[None]  # [1, E]
        self.subject = torch.tensor([int(style_id)], device=self.device)
        self.fps = int(s2g.fps)
        if SAMPLE_RATE % self.fps:
            raise ValueError(f"streaming needs fps dividing {SAMPLE_RATE}, got {self.fps}")
        self.spf = SAMPLE_RATE // self.fps  # samples per frame
        self.lookahead = round(self.config.lookahead_seconds * SAMPLE_RATE)  # samples
        needed = int(getattr(s2g, "lookahead", 0)) * self.spf  # S2GNet's own future frames
        if self.lookahead < needed:
            raise ValueError(
                f"lookahead_seconds {self.config.lookahead_seconds} is shorter than the "
                f"{needed / SAMPLE_RATE:.3f} s of audio after each frame that this S2GNet reads "
                f"(lookahead {s2g.lookahead} frames); stream with lookahead_seconds >= "
                f"{needed / SAMPLE_RATE:.3f}"
            )
        self.context = math.ceil(self.config.context_seconds * self.fps)  # frames
        self.min_samples = int(s2g.audio_encoder.min_samples)
        self._buf = torch.zeros(0)  # audio from sample `_buf_start` on
        self._buf_start = 0
        self.received = 0  # samples pushed so far
        self.emitted = 0  # frames emitted so far
        self._tail: Tensor | None = None  # previous run's predictions of frames >= emitted
        self.finished = False
        self.runs = 0  # S2GNet calls so far (for the latency budget)

    @property
    def ready_frames(self) -> int:
        """Frames whose audio and look-ahead have arrived (emitted or not)."""
        return max(0, (self.received - self.lookahead) // self.spf)

    def push(self, chunk: Tensor | np.ndarray) -> Tensor:  # [t, P, 3]
        """Add audio; return the face points of the frames that became ready."""
        if self.finished:
            raise RuntimeError("push after finish(): start a new GeometryStreamer")
        c = as_chunk(chunk)
        self._buf = torch.cat([self._buf, c])
        self.received += c.shape[0]
        return self._emit(self.ready_frames)

    def finish(self) -> Tensor:  # [t, P, 3]
        """The audio has ended: return the remaining frames (ceil(S × fps / rate) in all)."""
        if self.finished:
            return self.template.new_zeros(0, *self.template.shape[1:])
        self.finished = True
        total = -(-self.received // self.spf)
        return self._emit(total)

    @torch.no_grad()
    def _emit(self, upto: int) -> Tensor:  # [upto - emitted, P, 3]
        first = self.emitted
        if upto <= first or self.received == 0:
            return self.template.new_zeros(0, *self.template.shape[1:])
        start = max(0, first - self.context)  # window's first frame
        s0 = start * self.spf
        piece = self._buf[s0 - self._buf_start :]  # audio [s0, received)
        frames = -(-piece.shape[0] // self.spf)  # the window's frames, ceil
        if piece.shape[0] < self.min_samples:  # a very short start or end: pad like offline
            piece = torch.nn.functional.pad(piece, (0, self.min_samples - piece.shape[0]))
        pts = self.s2g(
            piece[None].to(self.device), self.template, self.emotion, self.subject, frames
        )[0]  # [frames, P, 3], frame `start` first
        self.runs += 1
        new = pts[first - start : upto - start]
        fade = 0 if self._tail is None else min(self.config.crossfade_frames, len(self._tail))
        fade = min(fade, new.shape[0])
        if fade:
            new = torch.cat([crossfade_into(self._tail[:fade], new[:fade]), new[fade:]])
        self._tail = pts[upto - start :]
        self.emitted = upto
        # keep only the audio the next window can need
        keep_from = max(0, self.emitted - self.context) * self.spf
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
        return new


def crossfade_into(
    previous: Tensor,  # [O, ...] earlier predictions of O frames
    following: Tensor,  # [O, ...] new predictions of the same frames
) -> Tensor:  # [O, ...]
    """Fade from `previous` to `following`: frame i weighs `following` by (i + 1) / (O + 1),
    so the first faded frame stays close to what the previous run predicted (no jump at the
    seam) and the last is mostly the new, better-informed prediction."""
    if previous.shape != following.shape:
        raise ValueError(
            f"crossfade needs equal shapes, got {tuple(previous.shape)} and "
            f"{tuple(following.shape)}"
        )
    n = previous.shape[0]
    w = torch.arange(1, n + 1, dtype=previous.dtype, device=previous.device) / (n + 1)
    w = w.view(-1, *([1] * (previous.ndim - 1)))
    return previous * (1.0 - w) + following * w


def stream_geometry(
    streamer: GeometryStreamer,
    chunks: Iterable[Tensor | np.ndarray],
) -> Iterator[Tensor]:  # each [t, P, 3], t >= 1
    """Drive a `GeometryStreamer` with an iterable of chunks; yield non-empty frame batches."""
    for chunk in chunks:
        pts = streamer.push(chunk)
        if pts.shape[0]:
            yield pts
    pts = streamer.finish()
    if pts.shape[0]:
        yield pts
