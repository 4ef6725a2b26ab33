"""Video and frame output: mp4 (H.264 + AAC, browser-playable) with the input audio muxed.

Every writer here is atomic: it writes to a temporary file beside the target and renames it
into place only when the file is complete, so an interrupted or failed render never leaves a
partial output under the requested name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

AAC_SAMPLE_RATE = 48000  # AAC-LC at 48 kHz plays everywhere; 16 kHz speech is resampled up


@dataclass(frozen=True)
class StreamInfo:
    """What `probe_video` reads back from a media file."""

    kind: str  # "video" or "audio"
    codec: str
    duration_s: float
    frames: int | None = None  # video only
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None  # audio only
    channels: int | None = None  # audio only


def _temp_beside(path: Path, suffix: str) -> Path:
    """A fresh temporary file name in `path`'s folder (same filesystem, so rename is atomic)."""
    fd, name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=suffix + ".partial", dir=path.parent
    )
    os.close(fd)
    # mkstemp creates 0600; give the output the permissions a plain open() would (umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def check_writable(path: str | Path) -> Path:
    """Validate that `path` can be written (its folder exists or can be made, and is writable).

    Raises:
        ValueError: naming the path and the fix, before any work is done.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"cannot create the output folder {parent}: {err.strerror}; choose another --out"
        ) from err
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder {parent} is not writable; choose another --out")
    if path.is_dir():
        raise ValueError(f"output path {path} is a folder; give a file name such as {path}/out.mp4")
    return path


class Mp4Writer:
    """Streams RGB frames into an H.264 mp4 and muxes an audio track at close.

    Frames are encoded as they arrive, and the audio is resampled and encoded block by block
    at close (bounded memory for long clips). The file appears under its final name only
    after `close()` succeeds; `abort()` (or an exception inside a `with` block) removes the
    partial file.

    Args:
        path: output .mp4 path.
        fps: frame rate of the video.
        width: frame width in pixels (even, as H.264 4:2:0 requires).
        height: frame height in pixels (even).
        audio: the track to mux: an audio file (muxed as it is: its own channels, mono or
            stereo, more than two mixed to mono, at full bandwidth), mono samples float32 in
            [-1, 1], or None for a silent video.
        sample_rate: sample rate of `audio` samples (ignored for a file).
        crf: x264 constant rate factor (lower is better quality; 18-23 is typical).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        audio: np.ndarray | str | os.PathLike | None = None,  # [S] float32, or a file
        sample_rate: int = 16000,
        crf: int = 20,
    ) -> None:
        import av

        if width % 2 or height % 2:
            raise ValueError(
                f"H.264 needs an even frame size, got {width}x{height}; "
                "use an even --resolution such as 256 or 512"
            )
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = check_writable(path)
        self.width, self.height = width, height
        self.audio = (
            audio
            if isinstance(audio, str | os.PathLike) or audio is None
            else (np.asarray(audio, dtype=np.float32).reshape(-1))
        )
        self.sample_rate = int(sample_rate)
        channels = 1
        if isinstance(self.audio, str | os.PathLike):
            from emotalk3d.audio.load import open_audio_blocks

            self.sample_rate, blocks = open_audio_blocks(self.audio)
            first = next(blocks, None)
            blocks.close()
            channels = 2 if first is not None and first.shape[1] == 2 else 1
        self.frames_written = 0
        self._tmp = _temp_beside(self.path, ".mp4")
        self._container = av.open(
            str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        rate = Fraction(fps).limit_denominator(1001)
        self._video = self._container.add_stream("libx264", rate=rate)
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = None
        if self.audio is not None and (not isinstance(self.audio, np.ndarray) or self.audio.size):
            self._audio = self._container.add_stream("aac", rate=AAC_SAMPLE_RATE)
            self._audio.layout = "stereo" if channels == 2 else "mono"

    def write(self, frames: np.ndarray) -> None:
        """Encode one frame [H, W, 3] or a batch [T, H, W, 3] (uint8, or float in [0, 1])."""
        import av

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"expected frames [T, {self.height}, {self.width}, 3], got {list(frames.shape)}"
            )
        if frames.dtype != np.uint8:
            frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._video.encode(vf):
                self._container.mux(packet)
            self.frames_written += 1

    def _audio_blocks(self) -> Iterable[np.ndarray]:  # [n, C] float32 at self.sample_rate
        if isinstance(self.audio, np.ndarray):
            step = 1 << 16
            return (self.audio[i : i + step, None] for i in range(0, self.audio.size, step))
        from emotalk3d.audio.load import open_audio_blocks

        _, blocks = open_audio_blocks(self.audio)
        return blocks

    def _encode_audio(self) -> None:
        import av
        import soxr

        layout = self._audio.layout.name
        channels = 2 if layout == "stereo" else 1
        frame_size = self._audio.codec_context.frame_size or 1024
        resampler = None
        if self.sample_rate != AAC_SAMPLE_RATE:
            resampler = soxr.ResampleStream(
                self.sample_rate, AAC_SAMPLE_RATE, channels, dtype="float32", quality="HQ"
            )
        pending = np.zeros((0, channels), np.float32)  # [n, C] not yet a whole AAC frame
        pts = 0

        def encode(samples: np.ndarray, last: bool) -> None:  # samples: [n, C]
            nonlocal pending, pts
            pending = np.concatenate([pending, samples])
            whole = len(pending) if last else len(pending) - len(pending) % frame_size
            for start in range(0, whole, frame_size):
                chunk = np.clip(pending[start : start + frame_size], -1.0, 1.0)
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(chunk.T), format="fltp", layout=layout
                )
                af.sample_rate, af.pts = AAC_SAMPLE_RATE, pts
                pts += chunk.shape[0]
                for packet in self._audio.encode(af):
                    self._container.mux(packet)
            pending = pending[whole:]

        for block in self._audio_blocks():
            if block.shape[1] != channels:  # more than two channels: mix to mono
                block = block.mean(axis=1, keepdims=True, dtype=np.float32)
            block = np.ascontiguousarray(block, dtype=np.float32)
            encode(block if resampler is None else resampler.resample_chunk(block), False)
        tail = np.zeros((0, channels), np.float32)
        if resampler is not None:
            tail = resampler.resample_chunk(tail, last=True)
        encode(tail, True)
        for packet in self._audio.encode(None):
            self._container.mux(packet)

    def finish(self) -> None:
        """Flush the encoders and mux the audio into the temporary file (not yet in place)."""
        if self._container is None:
            return
        try:
            if self.frames_written == 0:
                raise ValueError("no frames were written; nothing to encode")
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._encode_audio()
            self._container.close()
            self._container = None
        except BaseException:
            self.abort()
            raise

    def close(self) -> Path:
        """`finish`, then move the file into place; returns its path."""
        self.finish()
        if self._tmp.exists():
            os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Discard the partial file."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the container may be half-written; we delete it anyway
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],  # each [H, W, 3] or [T, H, W, 3]
    fps: float,
    audio: np.ndarray | None = None,  # [S] float32
    sample_rate: int = 16000,
    crf: int = 20,
) -> Path:
    """Write frames (an iterable, consumed lazily) and audio into an mp4, atomically."""
    it = iter(frames)
    first = np.asarray(next(it))
    height, width = first.shape[-3], first.shape[-2]
    with Mp4Writer(path, fps, width, height, audio, sample_rate, crf) as writer:
        writer.write(first)
        for frames_chunk in it:
            writer.write(frames_chunk)
    return Path(path)


def save_png_atomic(path: str | Path, image: np.ndarray) -> Path:  # image: [H, W, 3] or [H, W]
    """Save an image as PNG through a temporary file and an atomic rename."""
    from PIL import Image

    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    tmp = _temp_beside(path, ".png")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def probe_video(path: str | Path) -> list[StreamInfo]:
    """Read back the streams of a media file, decoding to count frames and measure durations."""
    import av

    infos = []
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type not in ("video", "audio"):
                continue
            duration = (
                float(stream.duration * stream.time_base) if stream.duration is not None else 0.0
            )
            if stream.type == "video":
                frames = sum(1 for _ in container.decode(stream))
                container.seek(0)
                infos.append(
                    StreamInfo(
                        "video",
                        stream.codec_context.name,
                        duration,
                        frames=frames,
                        width=stream.codec_context.width,
                        height=stream.codec_context.height,
                    )
                )
            else:
                infos.append(
                    StreamInfo(
                        "audio",
                        stream.codec_context.name,
                        duration,
                        sample_rate=stream.codec_context.sample_rate,
                        channels=stream.codec_context.channels,
                    )
                )
    return infos
