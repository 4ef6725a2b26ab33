"""Audio loading: any WAV/FLAC/OGG/MP3, any rate and channel count, to 16 kHz mono float32.

DESIGN.md section 1, first arrow (``wav ► audio.load``). Everything downstream (HuBERT, the
emotion extractor, S2GNet's frame count) sees one convention: a 1-D ``float32`` torch tensor of
16 kHz mono samples in [-1, 1] (shape ``[S]``).

Decoding goes through soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3 from libsndfile
1.1 on); when libsndfile cannot open a file, PyAV (FFmpeg) is tried, so MP3 also works with an
older libsndfile. Files are decoded block by block and resampled with soxr's streaming
resampler (quality ``HQ``), so memory stays bounded by the 16 kHz output (one-shot loading)
or by one chunk (:func:`iter_audio_chunks`). The streamed result is sample-for-sample what
``soxr.resample`` gives on the whole clip.

Errors are :class:`AudioError` (a ``ValueError``) with a message naming the file, what was
wrong and what to do, except a missing file, which is a ``FileNotFoundError``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import Tensor

SAMPLE_RATE = 16_000
"""The project's audio rate in Hz (HuBERT and wav2vec2 are trained at 16 kHz)."""
MOTION_FPS = 25
"""The default motion frame rate (DESIGN.md section 2)."""
SUPPORTED_FORMATS = ("WAV", "FLAC", "OGG", "MP3")
"""Formats that are tested; anything else libsndfile or FFmpeg decodes works too."""
SILENCE_PEAK = 1e-4
"""A clip whose absolute peak stays below this has nothing to say."""
RESAMPLE_QUALITY = "HQ"
"""soxr quality recipe (``HQ``: 20-bit precision, passband to 91 % of Nyquist)."""

_BLOCK_FRAMES = 65_536  # frames decoded at a time (about 1.5 s at 44.1 kHz)

FFMPEG_FORMATS = "wav,w64,flac,ogg,mp3,mov,matroska,aac,aiff,caf,au"
"""FFmpeg demuxers the PyAV fallback may use: single-file audio and audio-in-video containers
(mov covers mp4/m4a, matroska covers webm). Playlist-like demuxers (concat, hls, ...) open
other files or URLs named inside the input, so an upload could make the viewer read a local
file; they are refused."""

AudioSource = str | os.PathLike | BinaryIO


class AudioError(ValueError):
    """An audio input that cannot be used: undecodable, empty, silent or non-finite."""


class AudioTooLongError(AudioError):
    """An audio input longer than the caller's limit (decoding stops at the limit)."""


def num_motion_frames(
    num_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = MOTION_FPS
) -> int:
    """Number of motion frames a clip of ``num_samples`` samples needs: ceil(duration × fps).

    This is the project's single definition of the frame count (S2GNet interpolates its 50 Hz
    HuBERT features to exactly this many 25 fps frames). Integer arithmetic, so odd sample
    counts never suffer float rounding: ``ceil(num_samples * fps / sample_rate)``.

    Args:
        num_samples: Number of audio samples (at ``sample_rate``).
        sample_rate: Sample rate in Hz of those samples.
        fps: Motion frame rate in frames per second.

    Returns:
        The frame count T; 0 for an empty clip.
    """
    for name, value in (("num_samples", num_samples), ("sample_rate", sample_rate), ("fps", fps)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if num_samples < 0 or sample_rate <= 0 or fps <= 0:
        raise ValueError(
            f"expected num_samples >= 0, sample_rate > 0 and fps > 0, got "
            f"num_samples={num_samples}, sample_rate={sample_rate}, fps={fps}"
        )
    return -(-int(num_samples) * int(fps) // int(sample_rate))


def _describe(source: AudioSource) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _decode_error(source: AudioSource, reasons: list[str]) -> AudioError:
    return AudioError(
        f"could not decode {_describe(source)} as audio: {'; '.join(reasons)}. "
        f"Supported formats: {', '.join(SUPPORTED_FORMATS)} (anything libsndfile or FFmpeg "
        "reads); convert the file to WAV or FLAC if it is one of these and still fails."
    )


def _soundfile_blocks(handle: sf.SoundFile) -> Iterator[np.ndarray]:  # [n, C]
    while True:
        block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if len(block) == 0:
            return
        yield block


def _pyav_open(source: AudioSource):
    import av

    container = av.open(
        str(source) if isinstance(source, str | os.PathLike) else source,
        options={"format_whitelist": FFMPEG_FORMATS, "protocol_whitelist": "file"},
    )
    if not container.streams.audio:
        container.close()
        raise AudioError(f"{_describe(source)} has no audio stream")
    return container


def _pyav_blocks(container) -> Iterator[np.ndarray]:  # [n, C]
    import av

    stream = container.streams.audio[0]
    # Planar float at the stream's own rate and layout: we mix down and resample ourselves.
    converter = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
    try:
        for packet_frame in container.decode(stream):
            for frame in converter.resample(packet_frame):
                yield frame.to_ndarray().T.astype(np.float32, copy=False)
        for frame in converter.resample(None):
            yield frame.to_ndarray().T.astype(np.float32, copy=False)
    finally:
        container.close()


def open_audio_blocks(source: AudioSource) -> tuple[int, Iterator[np.ndarray]]:
    """Open ``source`` as it is (its own rate and channels, nothing resampled or mixed).

    Returns its sample rate and an iterator of float32 [n, C] blocks; closing the iterator
    closes the file. Raises as :func:`load_audio` does for a missing or undecodable file.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"audio file not found: {path}")
        if path.is_dir():
            raise AudioError(f"{path} is a folder, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{path} is empty (0 bytes); give a clip with speech in it")
    reasons = []
    start = source.tell() if hasattr(source, "tell") else None
    try:
        handle = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        reasons.append(f"libsndfile: {exc}")
    else:

        def blocks() -> Iterator[np.ndarray]:
            with handle:
                yield from _soundfile_blocks(handle)

        return handle.samplerate, blocks()
    if start is not None:
        source.seek(start)
    try:
        container = _pyav_open(source)
    except AudioError:
        raise
    except Exception as exc:  # PyAV raises many FFmpeg error classes
        reasons.append(f"FFmpeg: {exc}")
        raise _decode_error(source, reasons) from None
    return int(container.streams.audio[0].rate), _pyav_blocks(container)


def _to_mono(block: np.ndarray) -> np.ndarray:  # [n, C] -> [n]
    return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)


def _check_finite(block: np.ndarray, what: str) -> None:
    if not np.isfinite(block).all():
        bad = int((~np.isfinite(block)).sum())
        raise AudioError(
            f"{what} contains {bad} NaN or infinite sample(s); the file or array is corrupt. "
            "Re-export it, or replace non-finite samples (e.g. numpy.nan_to_num) first."
        )


def _resampled(
    source_rate: int, target_sr: int, blocks: Iterator[np.ndarray], what: str
) -> Iterator[np.ndarray]:  # yields [n] float32 mono blocks at target_sr
    stream = None
    if source_rate != target_sr:
        stream = soxr.ResampleStream(
            source_rate, target_sr, 1, dtype="float32", quality=RESAMPLE_QUALITY
        )
    for block in blocks:
        _check_finite(block, what)
        mono = np.ascontiguousarray(_to_mono(block))
        out = mono if stream is None else stream.resample_chunk(mono)
        if len(out):
            yield out
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if len(tail):
            yield tail


def _check_target_sr(target_sr: int) -> None:
    if isinstance(target_sr, bool) or not isinstance(target_sr, int) or target_sr <= 0:
        raise ValueError(f"target_sr must be a positive integer in Hz, got {target_sr!r}")


def _empty_error(what: str) -> AudioError:
    return AudioError(f"{what} is empty (0 samples); give a clip with speech in it")


def _silence_error(what: str, peak: float) -> AudioError:
    return AudioError(
        f"{what} contains only silence (peak |sample| {peak:.2g} < {SILENCE_PEAK:g}); "
        "there is nothing to say. Check the recording level or the file."
    )


def iter_audio_chunks(
    source: AudioSource, chunk_seconds: float = 30.0, target_sr: int = SAMPLE_RATE
) -> Iterator[Tensor]:  # yields [S_chunk]
    """Stream a file as consecutive 16 kHz mono chunks with bounded memory.

    Every chunk holds exactly ``round(chunk_seconds * target_sr)`` samples except the last;
    concatenated they equal :func:`load_audio`'s result. Decoding and resampling run block by
    block, so memory stays about one chunk whatever the file's length.

    Args:
        source: A path or a readable binary file object.
        chunk_seconds: Length of each yielded chunk in seconds.
        target_sr: Output sample rate in Hz.

    Yields:
        float32 tensors of shape [S_chunk].

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        AudioError: The file cannot be decoded, is empty, or has NaN/inf samples (raised
            before the first chunk where detectable, else when the bad block is reached);
            a silent-only file raises after its last chunk, once that is known.
    """
    _check_target_sr(target_sr)
    chunk = round(chunk_seconds * target_sr)
    if chunk <= 0:
        raise ValueError(f"chunk_seconds must give at least one sample, got {chunk_seconds}")
    what = _describe(source)
    rate, blocks = open_audio_blocks(source)
    pending: list[np.ndarray] = []
    have = 0
    total = 0
    peak = 0.0
    for out in _resampled(rate, target_sr, blocks, what):
        peak = max(peak, float(np.abs(out).max()))
        pending.append(out)
        have += len(out)
        while have >= chunk:
            joined = np.concatenate(pending)
            yield torch.from_numpy(joined[:chunk].copy())
            total += chunk
            rest = joined[chunk:]
            pending, have = ([rest] if len(rest) else []), len(rest)
    if have:
        total += have
        yield torch.from_numpy(np.concatenate(pending))
    if total == 0:
        raise _empty_error(what)
    if peak < SILENCE_PEAK:
        raise _silence_error(what, peak)


def load_audio(
    source: AudioSource, target_sr: int = SAMPLE_RATE, max_seconds: float | None = None
) -> Tensor:  # [S]
    """Load an audio file as mono float32 samples at ``target_sr`` (16 kHz by default).

    Any channel count is mixed down by averaging; any sample rate is resampled with soxr
    (``HQ``). Long files are decoded and resampled block by block, so peak memory is about
    two copies of the 16 kHz output.

    Args:
        source: A path (str or PathLike) or a readable binary file object.
        target_sr: Output sample rate in Hz.
        max_seconds: Longest clip accepted; decoding stops as soon as the output passes it,
            so a small file that decodes to hours (a compressed run of silence) costs no
            more than the limit. None: no limit.

    Returns:
        float32 tensor [S] with values as decoded (normally within [-1, 1]).

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        AudioTooLongError: The clip is longer than ``max_seconds``.
        AudioError: The file cannot be decoded as audio, is empty, contains only silence, or
            has NaN/inf samples.
    """
    _check_target_sr(target_sr)
    what = _describe(source)
    limit = None if max_seconds is None else float(max_seconds) * target_sr
    rate, blocks = open_audio_blocks(source)
    parts, have = [], 0
    for part in _resampled(rate, target_sr, blocks, what):
        parts.append(part)
        have += len(part)
        if limit is not None and have > limit:
            blocks.close()  # closes the file or FFmpeg container
            raise AudioTooLongError(
                f"{what} is longer than the limit of {max_seconds:g} s; give a shorter clip"
            )
    if not parts:
        raise _empty_error(what)
    samples = np.concatenate(parts) if len(parts) > 1 else parts[0]
    del parts
    peak = float(np.abs(samples).max())
    if peak < SILENCE_PEAK:
        raise _silence_error(what, peak)
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))


def prepare_audio(
    samples: np.ndarray | Tensor,  # [S], [S, C] or [C, S]
    sample_rate: int,
    target_sr: int = SAMPLE_RATE,
) -> Tensor:  # [S]
    """Bring already-decoded samples to the project's convention (16 kHz mono float32).

    Args:
        samples: 1-D mono samples, or 2-D multichannel samples. A 2-D array is read as
            [S, C] (soundfile's layout) unless its first axis is the short one (at most 16
            channels and fewer rows than columns), then as [C, S] (torch's layout).
            Integer PCM (int16, int32) is scaled to [-1, 1]; floats are taken as they are.
        sample_rate: Rate of ``samples`` in Hz.
        target_sr: Output rate in Hz.

    Returns:
        float32 tensor [S'] with S' = round(S * target_sr / sample_rate).

    Raises:
        AudioError: Empty, silent-only or non-finite samples, or an unsupported shape/dtype.
    """
    _check_target_sr(target_sr)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise ValueError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    array = samples.detach().cpu().numpy() if isinstance(samples, Tensor) else np.asarray(samples)
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif array.dtype == np.int32:
        array = array.astype(np.float32) / 2147483648.0
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
    else:
        raise AudioError(
            f"audio samples must be float, int16 or int32, got dtype {array.dtype}; "
            "convert them to float32 in [-1, 1]"
        )
    if array.ndim == 2:
        if array.shape[0] <= 16 and array.shape[0] < array.shape[1]:
            array = array.T  # [C, S] -> [S, C]
    elif array.ndim == 1:
        array = array[:, None]
    else:
        raise AudioError(f"audio samples must be [S], [S, C] or [C, S], got shape {array.shape}")
    what = "the audio array"
    if array.size == 0:
        raise _empty_error(what)
    out = np.concatenate(list(_resampled(int(sample_rate), target_sr, iter([array]), what)))
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if len(out) == 0:
        raise _empty_error(what)
    if peak < SILENCE_PEAK:
        raise _silence_error(what, peak)
    return torch.from_numpy(np.ascontiguousarray(out))
