"""The viewer's FastAPI app: the web page, the clip API and the binary Gaussian data.

`create_app(checkpoint=None, ...)` loads a bundle (default: the demo, checkpoints/demo) and
returns the app; `emotalk3d viewer` serves it with uvicorn. docs/viewer.md documents the API
and the binary layouts. Every error answer is JSON {"detail": "<readable message>"}; no
traceback reaches a client.

Security: uploads are read with a byte limit enforced while the body streams in and checked by
decoding (never by extension), in memory; examples are picked by name from a list made at
start-up; no value from a request is ever used as a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotalk3d.audio.load import SAMPLE_RATE, AudioError, AudioTooLongError, load_audio
from emotalk3d.constants import EMOTIONS
from emotalk3d.viewer.clips import DONE, ClipRequest, ClipStore, QueueFull, bundle_id
from emotalk3d.viewer.live import add_live_socket, close_with, foreign_origin
from emotalk3d.viewer.settings import (
    DECODE_SLOTS,
    DEFAULT_CACHE_MB,
    DEFAULT_MAX_LIVE,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_UPLOAD_MB,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEB_DIST = REPO_ROOT / "viewer" / "web" / "dist"
DEFAULT_EXAMPLES = REPO_ROOT / "examples"
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and the small text fields
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_CLIP_ID = re.compile(r"^[0-9a-f]{32}$")

NO_DIST_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>emotalk3d viewer</title>
</head><body><h1>The viewer's web client is not built</h1>
<p>Run <code>make web</code> (that is <code>npm ci &amp;&amp; npm run build</code> in
<code>viewer/web</code>), then reload. The API under <code>/api/</code> works already.</p>
</body></html>"""


def web_dist() -> Path:
    """The built web client folder: `EMOTALK3D_WEB_DIST`, else viewer/web/dist in the repo."""
    env = os.environ.get("EMOTALK3D_WEB_DIST")
    return Path(env) if env else DEFAULT_WEB_DIST


@dataclass
class Example:
    """A bundled example clip, decoded once at start-up."""

    name: str
    samples: torch.Tensor  # [S] float32 16 kHz

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.samples.shape[0] / SAMPLE_RATE


def load_examples(
    folder: str | os.PathLike | None, max_seconds: float | None = None
) -> dict[str, Example]:
    """Decode the audio files of `folder` (not recursive) into {name: Example}.

    Names are the file stems, kept only when they match [A-Za-z0-9][A-Za-z0-9_-]*; files that
    do not decode, or last longer than `max_seconds`, are skipped with a warning.
    """
    out: dict[str, Example] = {}
    if folder is None or not Path(folder).is_dir():
        return out
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in AUDIO_EXTENSIONS or not _NAME.match(path.stem):
            continue
        try:
            out[path.stem] = Example(path.stem, load_audio(path))
        except (AudioError, OSError) as exc:
            log.warning("skipping example %s: %s", path, exc)
            continue
        if max_seconds is not None and out[path.stem].duration > max_seconds:
            log.warning("skipping example %s: longer than %g s", path, max_seconds)
            del out[path.stem]
    return out


class ApiError(Exception):
    """A client error answered as JSON {"detail": message} with `status` (and headers)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_text(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "invalid request: " + "; ".join(parts)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    too_large = ApiError(
        413,
        f"upload too large: the limit is {limit / 2**20:.1f} MB including the form; "
        "send a shorter clip or start the server with a larger --max-upload-mb",
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large
        except ValueError:
            raise ApiError(400, "bad Content-Length header") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _is_decode_failure(exc: AudioError) -> bool:
    text = str(exc)
    return text.startswith("could not decode") or "has no audio stream" in text


def create_app(
    checkpoint: str | os.PathLike | None = None,
    *,
    head: Any = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    cache_mb: float = DEFAULT_CACHE_MB,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    examples_dir: str | os.PathLike | None = DEFAULT_EXAMPLES,
    torch_threads: int | None = 1,
    device: str = "cpu",
    server_render: bool = False,
    render_device: str | None = None,
    max_live: int = DEFAULT_MAX_LIVE,
) -> FastAPI:
    """Build the viewer app.

    Args:
        checkpoint: Bundle folder (default: the demo, checkpoints/demo).
        head: An already loaded `TalkingHead` (then `checkpoint` is ignored).
        max_queue: Generation jobs (waiting + running) before 429.
        cache_mb: MB of finished clips kept (LRU eviction past it).
        max_upload_mb: Upload size limit in MB (2**20 bytes).
        max_seconds: Longest accepted audio in seconds.
        examples_dir: Folder of example clips offered by name (None: none).
        torch_threads: torch intra-op threads (None leaves torch's setting).
        device: Torch device of the networks.
        server_render: Also serve JPEG frames over a websocket (CUDA; see render_ws.py).
        render_device: Device of the server renderer (default "cuda"; "cpu" renders slowly
            with the torch backend, for tests).
        max_live: Live-mode sessions (`WS /api/live`) at a time; more are refused (0: off).

    Raises:
        BundleError: the bundle is missing or broken (the message says how to build it).
        ValueError: `server_render` without CUDA (unless `render_device="cpu"`).
    """
    from emotalk3d.inference.pipeline import TalkingHead, check_intensity, parse_emotion

    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    if max_upload_mb <= 0 or max_seconds <= 0:
        raise ValueError("max_upload_mb and max_seconds must be positive")
    if max_live < 0:
        raise ValueError(f"max_live must be >= 0, got {max_live}")
    render_device = render_device or "cuda"
    if server_render and torch.device(render_device).type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                "--server-render needs a CUDA GPU (torch.cuda.is_available() is False on this "
                "machine); leave the flag out: the browser renders the Gaussians itself"
            )
    if head is None:
        head = TalkingHead.from_checkpoints(checkpoint, device=device, backend="torch")
    store = ClipStore(
        head,
        max_queue=max_queue,
        cache_bytes=int(cache_mb * 2**20),
        bundle=bundle_id(head.bundle.folder),
    )
    examples = load_examples(examples_dir, max_seconds)
    max_upload = int(max_upload_mb * 2**20)
    decode_slots = asyncio.Semaphore(DECODE_SLOTS)  # uploads decoded at once; others wait
    background = [float(x) for x in head.background.tolist()]
    min_samples = max(
        int(getattr(head.s2g.audio_encoder, "min_samples", 1)),
        int(getattr(head.extractor, "min_samples", 1)),
    )
    valid_emotions = [*EMOTIONS, "auto"]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        store.close()

    app = FastAPI(
        title="emotalk3d viewer",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.examples = examples
    app.state.head = head
    live = add_live_socket(app, store, max_seconds, max_live)
    app.state.live = live

    # ---------------------------------------------------------------- errors
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return _error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_text(exc))

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        return _error(500, f"internal server error ({type(exc).__name__}); see the server log")

    # ---------------------------------------------------------------- info
    @app.get("/api/health")
    async def health() -> dict[str, Any]:  # on the event loop: answers while the pool is busy
        return {
            "status": "ok",
            "subject": head.subject,
            "fps": store.fps,
            "queue": store.queue_length,
            "max_queue": store.max_queue,
            "clips": store.num_clips,
            "live": live["active"],
        }

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {
            "emotions": valid_emotions,
            "fps": store.fps,
            "examples": [{"name": e.name, "duration": e.duration} for e in examples.values()],
            "max_upload_mb": max_upload / 2**20,
            "background": background,
            "server_render": bool(server_render),
            "live": max_live > 0,
        }

    @app.get("/api/canonical.bin")
    def canonical(request: Request) -> Response:
        etag = f'"{store.bundle}"'
        headers = {"Cache-Control": "public, max-age=3600", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(store.canonical, media_type="application/octet-stream", headers=headers)

    # ---------------------------------------------------------------- clips
    def _parse_request(form: Any) -> tuple[Any, dict[str, float] | None, float | None]:
        emotion = str(form.get("emotion") or "neutral")
        raw_intensity = form.get("intensity")
        intensity = None
        if raw_intensity not in (None, ""):
            if isinstance(raw_intensity, UploadFile):
                raise ApiError(422, "intensity must be a number in [0, 1], not a file")
            try:
                intensity = check_intensity(float(raw_intensity))
            except ValueError:
                raise ApiError(
                    422, f"intensity must be a number in [0, 1], got {str(raw_intensity)[:40]!r}"
                ) from None
        if isinstance(form.get("emotion"), UploadFile):
            raise ApiError(422, "emotion must be text, not a file")
        # A named emotion or mix defaults to intensity 1; `auto` keeps the extractor's
        # intensity unless one is given.
        is_auto = emotion.strip().lower() == "auto"
        try:
            weights = parse_emotion(
                emotion, None if is_auto else (1.0 if intensity is None else intensity)
            )
        except ValueError as exc:
            text = str(exc)[:400]
            if "expected one of" not in text:
                text += f" (valid emotions: {', '.join(valid_emotions)})"
            raise ApiError(422, text) from None
        return form.get("audio"), weights, intensity

    def _example_samples(form: Any) -> torch.Tensor | None:
        name = form.get("example")
        if name in (None, ""):
            return None
        if not isinstance(name, str) or name not in examples:
            shown = str(name)[:60] if isinstance(name, str) else "a file"
            names = ", ".join(examples) or "none are installed"
            raise ApiError(422, f"unknown example {shown!r}; valid examples: {names}")
        return examples[name].samples

    def _too_long(seconds: str) -> ApiError:
        return ApiError(422, f"the audio is too long ({seconds}); the limit is {max_seconds:g} s")

    def _decode_upload(data: bytes) -> torch.Tensor:
        try:  # stops at the limit: a few kB can decode to hours of silence
            samples = load_audio(io.BytesIO(data), max_seconds=max_seconds)
        except AudioTooLongError:
            raise _too_long(f"over {max_seconds:g} s") from None
        except AudioError as exc:
            if _is_decode_failure(exc):
                raise ApiError(
                    415,
                    "the upload is not audio that can be decoded (the type is checked by "
                    "decoding, not by the file name); send WAV, FLAC, OGG or MP3",
                ) from None
            raise ApiError(422, str(exc).replace("<BytesIO>", "the upload")) from None
        except Exception:  # decoders raise many error classes on hostile input
            raise ApiError(415, "the upload is not audio that can be decoded") from None
        return samples

    @app.post("/api/clips")
    async def create_clip(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise ApiError(
                422,
                "send multipart/form-data with an `audio` file or an `example` name "
                "(url-encoded forms work for examples)",
            )
        body = await _read_limited(request, max_upload + FORM_OVERHEAD_BYTES)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        replayed = Request(request.scope, receive=replay)
        try:
            async with replayed.form(max_files=1, max_fields=8) as form:
                upload, weights, intensity = _parse_request(form)
                example = _example_samples(form)
                if upload is not None and not isinstance(upload, UploadFile):
                    if upload == "":
                        upload = None
                    else:
                        raise ApiError(422, "`audio` must be a file upload")
                if upload is not None and example is not None:
                    raise ApiError(422, "give either an `audio` file or an `example`, not both")
                if upload is None and example is None:
                    raise ApiError(422, "missing audio: send an `audio` file or an `example` name")
                if upload is not None:
                    data = await upload.read(max_upload + 1)
                    if len(data) > max_upload:
                        raise ApiError(
                            413,
                            f"upload too large: the limit is {max_upload / 2**20:.1f} MB; send "
                            "a shorter clip or start the server with a larger --max-upload-mb",
                        )
                    if not data:
                        raise ApiError(400, "the uploaded audio file is empty (0 bytes)")
                    async with decode_slots:  # leave the thread pool to other requests
                        samples = await run_in_threadpool(_decode_upload, data)
                else:
                    samples = example
        except ApiError:
            raise
        except Exception as exc:  # malformed multipart bodies
            raise ApiError(400, f"malformed form data: {str(exc)[:200]}") from None
        n = int(samples.shape[0])
        if n < min_samples:
            raise ApiError(
                422,
                f"the audio is too short ({n / SAMPLE_RATE * 1000:.0f} ms); it needs at least "
                f"{min_samples / SAMPLE_RATE * 1000:.0f} ms",
            )
        if n > max_seconds * SAMPLE_RATE:
            raise _too_long(f"{n / SAMPLE_RATE:.1f} s")
        need = store.clip_bytes(n)
        if need > store.cache_bytes:
            fits = store.cache_bytes / max(need / n, 1e-9) / SAMPLE_RATE
            raise ApiError(
                422,
                f"the audio is too long for the clip cache: {n / SAMPLE_RATE:.1f} s needs "
                f"{need / 2**20:.0f} MB of frame data, the cache holds "
                f"{store.cache_bytes / 2**20:.0f} MB (about {fits:.0f} s); send a shorter clip "
                "or start the server with a larger --cache-mb",
            )
        clip_request = ClipRequest(samples=samples, weights=weights, intensity=intensity)
        try:
            clip, known = await run_in_threadpool(store.submit, clip_request)
        except QueueFull as exc:
            raise ApiError(429, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        status = 200 if known and clip.status == DONE else 202
        return JSONResponse({"id": clip.id, "status": clip.status}, status_code=status)

    def _clip(clip_id: str):
        if not _CLIP_ID.match(clip_id):
            raise ApiError(404, "unknown clip id (ids are 32 lowercase hex characters)")
        clip = store.get(clip_id)
        if clip is None:
            raise ApiError(404, f"unknown clip {clip_id}: never made here, or evicted")
        return clip

    def _done(clip_id: str):
        clip = _clip(clip_id)
        if clip.status != DONE:
            raise ApiError(
                409, f"clip {clip_id} is {clip.status}, not done; poll /api/clips/{clip_id}"
            )
        return clip

    @app.get("/api/clips/{clip_id}")
    def clip_info(clip_id: str) -> dict[str, Any]:
        clip = _clip(clip_id)
        return {
            "id": clip.id,
            "status": clip.status,
            "progress": round(float(clip.progress), 4),
            "error": clip.error,
            "fps": store.fps,
            "num_frames": clip.num_frames,
            "num_gaussians": store.num_gaussians,
            "duration": clip.duration,
            "emotion": clip.emotion,
        }

    immutable = {"Cache-Control": "private, max-age=86400, immutable"}

    @app.get("/api/clips/{clip_id}/audio")
    def clip_audio(clip_id: str) -> Response:
        return Response(_done(clip_id).wav, media_type="audio/wav", headers=immutable)

    @app.get("/api/clips/{clip_id}/frames.bin")
    def clip_frames(clip_id: str, start: int = 0, count: int | None = None) -> Response:
        if start < 0 or (count is not None and count < 0):
            raise ApiError(422, f"start and count must be >= 0, got start={start}, count={count}")
        data = store.frames(_done(clip_id), start, count)
        return Response(data, media_type="application/octet-stream", headers=immutable)

    if server_render:
        _add_render_socket(app, store, head, render_device, _CLIP_ID)

    # ---------------------------------------------------------------- web page
    dist = web_dist()
    if (dist / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=dist / "assets"), name="assets")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = web_dist() / "index.html"
        if not page.is_file():
            return HTMLResponse(NO_DIST_PAGE, status_code=503)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    log.info(
        "viewer ready: subject %s, %d Gaussians, %d fps, %d examples, queue %d, cache %.0f MB",
        head.subject,
        store.num_gaussians,
        store.fps,
        len(examples),
        max_queue,
        cache_mb,
    )
    return app


def _add_render_socket(app: FastAPI, store: ClipStore, head: Any, device: str, ids: Any) -> None:
    """`WS /api/clips/{id}/render.ws`: JPEG frames rendered on the server (render_ws.py)."""
    import json

    from emotalk3d.viewer.render_ws import FrameRenderer, RenderRequestError, parse_render_request

    renderer = FrameRenderer(store, head.render_settings, head.background, device)

    @app.websocket("/api/clips/{clip_id}/render.ws")
    async def render_socket(socket: WebSocket, clip_id: str) -> None:
        await socket.accept()
        if (refusal := foreign_origin(socket)) is not None:
            await close_with(socket, refusal)
            return
        clip = store.get(clip_id) if ids.match(clip_id) else None
        if clip is None or clip.status != DONE:
            reason = "unknown clip" if clip is None else f"clip is {clip.status}, not done"
            await socket.send_json({"detail": reason})
            await socket.close(code=4404 if clip is None else 4409, reason=reason)
            return
        try:
            while True:
                text = await socket.receive_text()
                try:
                    request = parse_render_request(json.loads(text), clip.num_frames)
                except json.JSONDecodeError:
                    await socket.send_json({"detail": 'send JSON text, e.g. {"frame": 0}'})
                    continue
                except RenderRequestError as exc:
                    await socket.send_json({"detail": str(exc)})
                    continue
                jpeg = await run_in_threadpool(renderer.render, clip, request)
                await socket.send_bytes(jpeg)
        except WebSocketDisconnect:
            return
