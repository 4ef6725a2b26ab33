"""The viewer's clip store: a bounded generation queue, one worker thread, a size-bounded cache.

A clip is one generation request (16 kHz samples + emotion + intensity) turned into the
browser's per-frame binary (`emotalk3d.viewer.encode`). Its id is the content hash

    sha256(float32 samples bytes | emotion key | intensity | bundle id)[:32]  (hex)

so the same request gives the same id, and a finished clip is answered from the cache.

Generation runs on one worker thread, never on the event loop: `submit` puts a job in a
queue bounded by `max_queue` (waiting + running jobs) and raises `QueueFull` past it. Finished
clips (their frame records and WAV bytes) are kept in an LRU cache bounded in bytes; the
least recently used finished clips are evicted first, and the clip just finished is always
kept. Queued and running clips are never evicted.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from emotalk3d.audio.load import SAMPLE_RATE
from emotalk3d.viewer.encode import (
    activate_for_viewer,
    encode_canonical,
    encode_frame_records,
    frame_stride,
    frames_header,
)

if TYPE_CHECKING:
    from emotalk3d.inference.pipeline import EmotionChoice

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, ERROR = "queued", "running", "done", "error"
ID_HEX_CHARS = 32
MAX_RECORDS = 2048  # clip records kept (finished, failed, pending) before old ones are dropped
GEOMETRY_SHARE = 0.2  # progress share given to the geometry stage


class QueueFull(RuntimeError):
    """The generation queue holds `max_queue` jobs; retry after `retry_after` seconds."""

    def __init__(self, max_queue: int, retry_after: int) -> None:
        super().__init__(
            f"the generation queue is full ({max_queue} clips waiting or running); "
            f"retry in about {retry_after} s"
        )
        self.retry_after = retry_after


def bundle_id(folder: str | os.PathLike) -> str:
    """A content hash (hex) of every file of a bundle folder: names and bytes, sorted."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def clip_key(
    samples: Tensor,  # [S] float32 16 kHz
    emotion_key: str,
    intensity: float | None,
    bundle: str,
) -> str:
    """The clip id: hex sha256 of the decoded samples, emotion, intensity and bundle id."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(samples.detach().cpu().numpy(), dtype="<f4").tobytes())
    level = "none" if intensity is None else repr(float(intensity))
    digest.update(f"|{emotion_key}|{level}|".encode())
    digest.update(bundle.encode())
    return digest.hexdigest()[:ID_HEX_CHARS]


def emotion_key(weights: Mapping[str, float] | None) -> str:
    """A canonical text of parsed emotion weights (None = auto) for hashing."""
    if weights is None:
        return "auto"
    return ",".join(f"{k}:{float(v):.6f}" for k, v in sorted(weights.items()))


def wav_bytes(samples: Tensor) -> bytes:  # samples: [S] float32 16 kHz
    """16-bit PCM mono WAV bytes at 16 kHz."""
    buffer = io.BytesIO()
    pcm = np.clip(samples.detach().cpu().numpy(), -1.0, 1.0)
    sf.write(buffer, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@dataclass
class ClipRequest:
    """What a generation job needs: audio and the parsed emotion."""

    samples: Tensor  # [S] float32 16 kHz mono
    weights: dict[str, float] | None  # None: auto
    intensity: float | None  # auto only: overrides the extractor's intensity


@dataclass
class Clip:
    """One clip's state. Frame records and WAV bytes exist once it is done."""

    id: str
    num_frames: int
    duration: float
    status: str = QUEUED
    progress: float = 0.0
    error: str | None = None
    emotion: str = ""
    request: ClipRequest | None = None
    records: bytes | bytearray = b""  # [num_frames * stride] frame records
    wav: bytes = b""
    created: float = field(default_factory=time.monotonic)

    @property
    def nbytes(self) -> int:
        """Bytes the clip holds in the cache."""
        return len(self.records) + len(self.wav)


class ClipStore:
    """Queue, worker and cache of the viewer's clips (thread-safe)."""

    def __init__(
        self,
        head,  # emotalk3d.inference.pipeline.TalkingHead
        *,
        max_queue: int = 4,
        cache_bytes: int = 512 << 20,
        bundle: str = "",
        frame_batch: int = 8,
    ) -> None:
        """
        Args:
            head: The loaded `TalkingHead` (used only on the worker thread after start).
            max_queue: Jobs (waiting + running) accepted before `submit` raises `QueueFull`.
            cache_bytes: Bytes of finished clips kept before the least recently used go.
            bundle: The bundle id (part of every clip id).
            frame_batch: Frames turned into Gaussians and encoded together.
        """
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if cache_bytes < 0:
            raise ValueError(f"cache size must be >= 0 bytes, got {cache_bytes}")
        self.head = head
        self.max_queue = int(max_queue)
        self.cache_bytes = int(cache_bytes)
        self.bundle = bundle
        self.frame_batch = max(1, int(frame_batch))
        self.fps = int(head.fps)
        self._viewmat = head.cameras(0.0).viewmats[0]  # [4, 4] the default frontal camera
        self._lock = threading.Lock()
        self._clips: OrderedDict[str, Clip] = OrderedDict()  # LRU order: oldest first
        self._pending = 0  # queued + running
        self._jobs: queue.Queue[Clip | None] = queue.Queue()
        self._gate = threading.Event()
        self._gate.set()
        self._job_seconds = 5.0  # running mean of job time, for Retry-After
        self.canonical = self._make_canonical()
        self.num_gaussians = int.from_bytes(self.canonical[8:12], "little")
        self._worker = threading.Thread(target=self._run, name="viewer-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def _make_canonical(self) -> bytes:
        g = self.head.gaussians(self.head.template[None], "neutral")  # the neutral pose
        return encode_canonical(activate_for_viewer(g, self._viewmat))

    @torch.no_grad()
    def encode_points(self, points: Tensor, choice: EmotionChoice) -> bytes:  # [b, P, 3]
        """The b frame records ("E3DF" layout, no header) of face points: the pipeline's
        per-frame Gaussians (`TalkingHead.gaussians`: appearance network, completion, blend)
        activated for the frontal camera and encoded. Clips and the live mode both use it.

        Args:
            points: Face points of b frames (mm).
            choice: The `EmotionChoice` the Gaussians are conditioned on.
        """
        g = self.head.gaussians(points, choice)
        return encode_frame_records(activate_for_viewer(g, self._viewmat))

    def submit(self, request: ClipRequest) -> tuple[Clip, bool]:
        """Queue a clip; return it and whether it was already known (cached or pending).

        Raises:
            QueueFull: `max_queue` jobs are already waiting or running.
        """
        cid = clip_key(
            request.samples, emotion_key(request.weights), request.intensity, self.bundle
        )
        with self._lock:
            clip = self._clips.get(cid)
            if clip is not None and clip.status != ERROR:
                self._clips.move_to_end(cid)
                return clip, True
            if self._pending >= self.max_queue:
                retry = max(1, math.ceil(self._job_seconds * self._pending))
                raise QueueFull(self.max_queue, retry)
            num_samples = int(request.samples.shape[0])
            clip = Clip(
                id=cid,
                num_frames=int(self.head.num_frames(num_samples)),
                duration=num_samples / SAMPLE_RATE,
                request=request,
            )
            self._clips[cid] = clip
            self._clips.move_to_end(cid)
            self._pending += 1
            self._trim_records()
        self._jobs.put(clip)
        return clip, False

    def clip_bytes(self, num_samples: int) -> int:
        """Bytes a finished clip of `num_samples` 16 kHz samples holds (frames + WAV)."""
        frames = int(self.head.num_frames(int(num_samples)))
        return frames * frame_stride(self.num_gaussians) + 2 * int(num_samples) + 44

    def get(self, cid: str) -> Clip | None:
        """The clip of id `cid` (marked as recently used), or None."""
        with self._lock:
            clip = self._clips.get(cid)
            if clip is not None:
                self._clips.move_to_end(cid)
            return clip

    def frames(self, clip: Clip, start: int, count: int | None) -> bytes:
        """The frames binary of frames start .. start + count - 1, clamped to the clip."""
        total = clip.num_frames
        start = min(max(0, int(start)), total)
        count = total - start if count is None else min(max(0, int(count)), total - start)
        stride = frame_stride(self.num_gaussians)
        body = memoryview(clip.records)[start * stride : (start + count) * stride]
        return frames_header(self.num_gaussians, start, count, self.fps) + body

    @property
    def queue_length(self) -> int:
        """Jobs waiting or running."""
        with self._lock:
            return self._pending

    @property
    def num_clips(self) -> int:
        """Finished clips in the cache."""
        with self._lock:
            return sum(1 for c in self._clips.values() if c.status == DONE)

    @property
    def cached_bytes(self) -> int:
        """Bytes held by finished clips."""
        with self._lock:
            return sum(c.nbytes for c in self._clips.values())

    def pause(self) -> None:
        """Stop the worker from taking new jobs (maintenance and deterministic tests)."""
        self._gate.clear()

    def resume(self) -> None:
        """Let the worker take jobs again."""
        self._gate.set()

    def close(self) -> None:
        """Stop the worker after its current job (pending jobs are dropped)."""
        self._jobs.put(None)
        self._gate.set()
        self._worker.join(timeout=30.0)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            clip = self._jobs.get()
            if clip is None:
                return
            self._gate.wait()
            t0 = time.monotonic()
            with self._lock:
                clip.status = RUNNING
            try:
                records, wav, label = self._generate(clip)
            except Exception as exc:  # a failed job must not stop the worker
                message = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
                log.exception("clip %s failed", clip.id)
                with self._lock:
                    clip.status, clip.error, clip.request = ERROR, message, None
                    self._pending -= 1
                continue
            with self._lock:
                clip.records, clip.wav, clip.emotion = records, wav, label
                clip.status, clip.progress, clip.request = DONE, 1.0, None
                self._pending -= 1
                self._clips.move_to_end(clip.id)
                self._evict(keep=clip.id)
            elapsed = time.monotonic() - t0
            self._job_seconds = 0.7 * self._job_seconds + 0.3 * elapsed

    @torch.no_grad()
    def _generate(self, clip: Clip) -> tuple[bytearray, bytes, str]:
        from emotalk3d.inference.pipeline import rechunk

        request = clip.request
        assert request is not None
        head = self.head
        wav = request.samples
        spec = "auto" if request.weights is None else request.weights
        choice = head.resolve_emotion(spec, wav, request.intensity)
        if request.weights is None:
            label = max(choice.weights, key=choice.weights.get)
        else:
            label = choice.label
        clip.progress = GEOMETRY_SHARE / 2
        stride = frame_stride(self.num_gaussians)
        records = bytearray(clip.num_frames * stride)  # filled in place: no second copy
        done = 0
        total = max(1, clip.num_frames)
        for pts in rechunk(head.iter_geometry(wav, choice), self.frame_batch):  # [b, P, 3]
            b = pts.shape[0]
            if done + b > clip.num_frames:
                raise RuntimeError(
                    f"the pipeline gave more than the {clip.num_frames} frames expected"
                )
            records[done * stride : (done + b) * stride] = self.encode_points(pts, choice)
            done += b
            clip.progress = GEOMETRY_SHARE + (1.0 - GEOMETRY_SHARE) * min(done / total, 1.0)
        if done != clip.num_frames:
            raise RuntimeError(f"the pipeline gave {done} frames, expected {clip.num_frames}")
        return records, wav_bytes(wav), label

    # ------------------------------------------------------------------ cache
    def _evict(self, keep: str) -> None:
        """Drop least recently used finished clips until the cache fits (lock held)."""
        total = sum(c.nbytes for c in self._clips.values())
        for cid in list(self._clips):
            if total <= self.cache_bytes:
                break
            clip = self._clips[cid]
            if cid == keep or clip.status != DONE:
                continue
            total -= clip.nbytes
            del self._clips[cid]
            log.info("evicted clip %s (%d bytes)", cid, clip.nbytes)

    def _trim_records(self) -> None:
        """Bound the number of records: drop the oldest failed, then finished ones."""
        for wanted in (ERROR, DONE):
            for cid in list(self._clips):
                if len(self._clips) <= MAX_RECORDS:
                    return
                if self._clips[cid].status == wanted:
                    del self._clips[cid]
