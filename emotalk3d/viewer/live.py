"""The viewer's live mode: microphone audio in, frame records out, over one websocket.

Protocol on `WS /api/live` (docs/viewer.md, "Live mode"):

1. The client sends JSON text `{"emotion": name or mix, "intensity": float | null,
   "sample_rate": int}`; the server answers `{"started": true, ...}` (fps, N, look-ahead and
   the limits).
2. The client sends binary messages, each a chunk of little-endian float32 mono PCM at
   `sample_rate`. The server resamples them to 16 kHz (soxr, streaming), pushes them into a
   `GeometryStreamer` (geometry only, docs/streaming.md) and answers every chunk with one
   binary message: the frames that became ready, as an "E3DF" frames binary (the 32-byte
   header with the first frame index and the count, then the records; count may be 0). The
   records are made by `ClipStore.encode_points`, exactly as a clip's.
3. The client sends `{"end": true}`: the server flushes the rest (one last "E3DF" message) and
   sends `{"done": true, "frames": N}`, then closes.

Errors are a JSON text message `{"detail": "..."}` followed by a close with code 4000 + the
HTTP status it corresponds to (4400 malformed, 4408 idle or over time, 4413 chunk too large,
4422 unusable request or too long, 4429 busy); never a traceback. Compute runs in the thread
pool, one chunk at a time per session, so other requests are served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import soxr
import torch
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from emotalk3d.audio.load import RESAMPLE_QUALITY, SAMPLE_RATE
from emotalk3d.constants import EMOTIONS
from emotalk3d.viewer.clips import ClipStore
from emotalk3d.viewer.encode import frames_header

log = logging.getLogger(__name__)

LIVE_PATH = "/api/live"
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MAX_CHUNK_SECONDS = 1.0
"""Longest audio chunk accepted in one message."""
IDLE_TIMEOUT_S = 10.0
"""A session that receives no message for this long is closed (4408)."""
START_KEYS = frozenset({"emotion", "intensity", "sample_rate"})


class LiveError(Exception):
    """A live-mode refusal: `detail` is sent as {"detail": ...}, then the socket is closed with
    `code` (4000 + the corresponding HTTP status)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class LiveStart:
    """A validated start message."""

    weights: dict[str, float]  # emotion name -> intensity
    sample_rate: int  # Hz of the PCM chunks that follow


def parse_live_start(text: str | None) -> LiveStart:
    """Validate the first message of a live session.

    Args:
        text: The message's text (None when the client sent binary data first).

    Raises:
        LiveError: 4400 not a JSON object with the known keys; 4422 `auto`, an unknown emotion,
            an intensity outside [0, 1] or a sample rate outside [8000, 192000] Hz.
    """
    from emotalk3d.inference.pipeline import check_intensity, parse_emotion

    usage = (
        'the first message must be JSON text {"emotion": "happy", "intensity": 0.8, '
        '"sample_rate": 48000}; then send float32 PCM chunks'
    )
    if text is None:
        raise LiveError(4400, usage)
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise LiveError(4400, usage) from None
    if not isinstance(message, dict):
        raise LiveError(4400, usage)
    unknown = sorted(set(message) - START_KEYS)
    if unknown:
        raise LiveError(4400, f"unknown keys {unknown[:5]}; allowed: {sorted(START_KEYS)}")
    emotion = message.get("emotion", "neutral")
    if not isinstance(emotion, str):
        raise LiveError(4422, f"emotion must be a name or a mix as text, got {emotion!r:.60}")
    if emotion.strip().lower() == "auto":
        raise LiveError(
            4422,
            "the live mode cannot use emotion 'auto': the emotion extractor judges a whole clip, "
            "which a live stream does not have; pick a name or a mix such as "
            "happy:0.7,surprised:0.3",
        )
    intensity = message.get("intensity")
    if intensity is not None:
        bad = LiveError(
            4422, f"intensity must be a number in [0, 1] or null, got {intensity!r:.40}"
        )
        if isinstance(intensity, bool) or not isinstance(intensity, int | float):
            raise bad
        try:
            intensity = check_intensity(float(intensity))
        except ValueError:
            raise bad from None
    rate = message.get("sample_rate")
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int)
        or not (MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE)
    ):
        raise LiveError(
            4422,
            f"sample_rate must be an integer number of Hz in [{MIN_SAMPLE_RATE}, "
            f"{MAX_SAMPLE_RATE}], got {rate!r:.40}",
        )
    try:
        weights = parse_emotion(emotion[:200], 1.0 if intensity is None else intensity)
    except ValueError as exc:
        text_ = str(exc)[:400].replace(", auto, or a mix", ", or a mix")
        if "expected one of" not in text_:
            text_ += f" (valid emotions: {', '.join(EMOTIONS)})"
        raise LiveError(4422, text_) from None
    assert weights is not None  # `auto` was refused above
    return LiveStart(weights=weights, sample_rate=rate)


class LiveSession:
    """One live stream: resampler, `GeometryStreamer` and frame encoding (not thread-safe: the
    socket handler calls it one message at a time)."""

    def __init__(self, store: ClipStore, start: LiveStart, max_seconds: float) -> None:
        """
        Args:
            store: The clip store (its head and `encode_points`).
            start: The validated start message.
            max_seconds: Longest audio of the session (input seconds).
        """
        head = store.head
        self.store = store
        self.choice = head.resolve_emotion(start.weights)
        self.streamer = head.streamer(self.choice)
        self.rate = start.sample_rate
        self.max_seconds = float(max_seconds)
        self.max_chunk_bytes = 4 * math.ceil(MAX_CHUNK_SECONDS * self.rate)
        self.resampler = None
        if self.rate != SAMPLE_RATE:
            self.resampler = soxr.ResampleStream(
                self.rate, SAMPLE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        self.received = 0  # input samples so far
        self.frames = 0  # frames sent so far

    @property
    def label(self) -> str:
        """The emotion's label (`happy`, `happy50`, `angry70-sad30`)."""
        return self.choice.label

    def samples(self, data: bytes) -> np.ndarray:  # [s] float32 at `rate`
        """Check one binary message and read its samples.

        Raises:
            LiveError: 4400 empty, not whole float32 samples or non-finite; 4413 longer than
                `MAX_CHUNK_SECONDS`; 4422 the session would pass `max_seconds`.
        """
        if len(data) > self.max_chunk_bytes:
            raise LiveError(
                4413,
                f"audio chunk too large: {len(data)} bytes, the limit is {self.max_chunk_bytes} "
                f"({MAX_CHUNK_SECONDS:g} s of float32 at {self.rate} Hz); send chunks of "
                "100-200 ms",
            )
        if not data or len(data) % 4:
            raise LiveError(
                4400,
                f"audio chunks must be whole little-endian float32 samples, got {len(data)} bytes",
            )
        pcm = np.frombuffer(data, dtype="<f4")  # [s]
        if not np.isfinite(pcm).all():
            raise LiveError(4400, "the audio chunk contains NaN or infinite samples")
        if self.received + pcm.shape[0] > self.max_seconds * self.rate:
            raise LiveError(
                4422,
                f"the live session is too long: the limit is {self.max_seconds:g} s of audio; "
                "stop and start again",
            )
        return pcm

    @torch.no_grad()
    def push(self, data: bytes) -> bytes:
        """One audio chunk in; the "E3DF" message of the frames that became ready (maybe 0)."""
        pcm = self.samples(data)
        self.received += pcm.shape[0]
        if self.resampler is not None:
            pcm = self.resampler.resample_chunk(pcm)  # [s'] at 16 kHz
        points = self.streamer.push(torch.from_numpy(np.array(pcm, dtype=np.float32)))
        return self._message(points)

    @torch.no_grad()
    def finish(self) -> bytes:
        """The audio has ended: the "E3DF" message of the remaining frames."""
        points = []
        if self.resampler is not None:
            tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)  # [s']
            if tail.shape[0]:
                points.append(self.streamer.push(torch.from_numpy(np.array(tail, np.float32))))
        points.append(self.streamer.finish())
        return self._message(torch.cat(points))

    def _message(self, points: torch.Tensor) -> bytes:  # points: [t, P, 3]
        t = int(points.shape[0])
        step = self.store.frame_batch
        records = b"".join(
            self.store.encode_points(points[i : i + step], self.choice) for i in range(0, t, step)
        )
        header = frames_header(self.store.num_gaussians, self.frames, t, self.store.fps)
        self.frames += t
        return header + records


def foreign_origin(socket: WebSocket) -> LiveError | None:
    """A refusal (4403) when a browser page of another site opened this websocket.

    Browsers do not apply the same-origin policy to websockets, so any page the user visits
    could otherwise drive the local viewer's compute. A handshake without Origin (a script, not
    a browser page) is allowed; one whose Origin is not this server's host is refused.
    """
    origin = socket.headers.get("origin")
    if not origin or urlsplit(origin).netloc == socket.headers.get("host", ""):
        return None
    return LiveError(
        4403,
        f"websocket from another site refused (Origin {origin[:80]}); open the viewer's own "
        "page on this server",
    )


async def close_with(socket: WebSocket, error: LiveError) -> None:
    """Send {"detail": ...} and close with the error's code (the client may be gone already)."""
    with contextlib.suppress(Exception):
        await socket.send_json({"detail": error.detail})
        reason = error.detail.encode()[:120].decode(errors="ignore")  # at most 123 bytes
        await socket.close(code=error.code, reason=reason)


async def _receive(socket: WebSocket, timeout: float) -> dict[str, Any]:
    """The next websocket message (an ASGI dict with "text" or "bytes").

    Raises:
        WebSocketDisconnect: the client closed the socket.
        LiveError: 4408 nothing arrived within `timeout` seconds.
    """
    try:
        message = await asyncio.wait_for(socket.receive(), timeout=max(timeout, 0.0))
    except TimeoutError:
        raise LiveError(
            4408, f"no message within {timeout:.3g} s (idle, or the session's time is up): closed"
        ) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


def add_live_socket(app: FastAPI, store: ClipStore, max_seconds: float, max_sessions: int) -> Any:
    """Register `WS /api/live` on `app`; answer the counter of running sessions.

    Args:
        app: The viewer app.
        store: Its clip store (head, frame encoding, fps, N).
        max_seconds: Longest audio of one session (the server's `--max-seconds`).
        max_sessions: Sessions at a time; further ones are refused with 4429 (0: live mode off).
    """
    state = {"active": 0}
    # wall-clock bound of a session: its audio in real time, plus slack for a slow start
    wall_limit = 2.0 * max_seconds + 30.0

    async def serve(socket: WebSocket) -> None:
        deadline = time.monotonic() + wall_limit

        async def receive() -> dict[str, Any]:
            left = deadline - time.monotonic()
            return await _receive(socket, min(IDLE_TIMEOUT_S, left))

        first = await receive()
        start = parse_live_start(first.get("text"))
        session = LiveSession(store, start, max_seconds)
        await socket.send_json({
            "started": True,
            "emotion": session.label,
            "fps": store.fps,
            "num_gaussians": store.num_gaussians,
            "lookahead_seconds": session.streamer.config.lookahead_seconds,
            "max_seconds": max_seconds,
            "max_chunk_seconds": MAX_CHUNK_SECONDS,
        })  # fmt: skip
        while True:
            message = await receive()
            data = message.get("bytes")
            if data is not None:
                await socket.send_bytes(await run_in_threadpool(session.push, data))
                continue
            try:
                command = json.loads(message.get("text") or "")
            except json.JSONDecodeError:
                command = None
            if command != {"end": True}:
                raise LiveError(
                    4400, 'after the start message send binary float32 chunks, then {"end": true}'
                )
            await socket.send_bytes(await run_in_threadpool(session.finish))
            await socket.send_json({"done": True, "frames": session.frames})
            await socket.close(code=1000)
            return

    @app.websocket(LIVE_PATH)
    async def live_socket(socket: WebSocket) -> None:
        await socket.accept()
        if (refusal := foreign_origin(socket)) is not None:
            await close_with(socket, refusal)
            return
        if state["active"] >= max_sessions:  # checked and counted without awaiting in between
            detail = (
                "the live mode is off on this server (--max-live 0)"
                if max_sessions < 1
                else f"the live mode is busy: {max_sessions} session(s) at a time; try again "
                "when the running one stops"
            )
            await close_with(socket, LiveError(4403 if max_sessions < 1 else 4429, detail))
            return
        state["active"] += 1
        try:
            await serve(socket)
        except (WebSocketDisconnect, OSError):  # the client left (uvicorn: ClientDisconnected)
            log.info("live session: the client disconnected")
        except LiveError as exc:
            await close_with(socket, exc)
        except Exception as exc:  # never a traceback to the client
            log.exception("live session failed", exc_info=exc)
            detail = f"internal server error ({type(exc).__name__}); see the server log"
            await close_with(socket, LiveError(1011, detail))
        finally:
            state["active"] -= 1

    return state
