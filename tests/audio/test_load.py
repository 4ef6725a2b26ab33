"""Audio loading: formats, rates, channels, resampling, errors, frame counts, streaming."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from emotalk3d.audio import load as load_mod
from emotalk3d.audio.load import (
    AudioError,
    AudioTooLongError,
    iter_audio_chunks,
    load_audio,
    num_motion_frames,
    prepare_audio,
)


def _tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 2) -> np.ndarray:
    n = round(seconds * rate)
    t = np.arange(n) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    cols = [mono * (1.0 - 0.3 * c) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)  # [n, C]


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


@pytest.mark.parametrize("fmt", ["MP3", "OGG", "FLAC", "WAV"])
def test_44k_stereo_file_becomes_16k_mono(tmp_path, fmt):
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, _tone(1.5, 44100), 44100, format=fmt)
    audio = load_audio(path)
    assert audio.dtype == torch.float32 and audio.ndim == 1
    assert abs(audio.numel() - 1.5 * 16000) <= 16  # codec padding is at most ~1 ms
    # mono is the channel mean: 0.5 * (1 + 0.7) / 2 = 0.425 peak
    assert abs(float(audio.abs().max()) - 0.425) < 0.03
    assert abs(_dominant_hz(audio.numpy(), 16000) - 440.0) < 2.0


def test_resampling_keeps_frequency_and_is_hq():
    rate = 44100
    x = _tone(2.0, rate, freq=1234.0, channels=1)[:, 0]
    y = prepare_audio(x, rate).numpy()
    assert y.shape == (32000,)
    assert abs(_dominant_hz(y, 16000) - 1234.0) < 1.0
    t = np.arange(32000) / 16000
    ref = 0.5 * np.sin(2 * np.pi * 1234.0 * t)
    mid = slice(1000, -1000)  # away from the filter's edge transients
    assert np.abs(y[mid] - ref[mid]).max() < 1e-3


def test_prepare_audio_layouts_and_int_pcm():
    x = _tone(0.5, 16000)  # [S, 2]
    want = torch.from_numpy(x.mean(axis=1))
    assert torch.allclose(prepare_audio(x, 16000), want)
    assert torch.allclose(prepare_audio(torch.from_numpy(x.T.copy()), 16000), want)  # [C, S]
    pcm = (x * 32767).astype(np.int16)
    assert torch.allclose(prepare_audio(pcm, 16000), want, atol=1e-4)
    with pytest.raises(AudioError, match="dtype"):
        prepare_audio(np.ones(100, dtype=np.uint8), 16000)


def test_file_object_source(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, _tone(0.5, 22050), 22050, format="WAV")
    buf.seek(0)
    assert load_audio(buf).numel() == 8000


def test_pyav_fallback_decodes_mp3_like_soundfile(tmp_path):
    path = tmp_path / "clip.mp3"
    sf.write(path, _tone(1.0, 44100), 44100, format="MP3")
    want, _ = sf.read(path, dtype="float32", always_2d=True)
    got = np.concatenate(list(load_mod._pyav_blocks(load_mod._pyav_open(path))))
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3


@pytest.mark.parametrize("as_upload", [True, False])
def test_playlist_formats_cannot_read_other_files(tmp_path, monkeypatch, as_upload):
    # FFmpeg's concat demuxer would decode the file it names: an upload must never reach the
    # filesystem (the viewer decodes uploads with load_audio)
    sf.write(tmp_path / "secret.wav", _tone(1.0, 16000, channels=1), 16000)
    script = b"ffconcat version 1.0\nfile secret.wav\n"
    monkeypatch.chdir(tmp_path)
    source = io.BytesIO(script)
    if not as_upload:
        source = tmp_path / "playlist.txt"
        source.write_bytes(script)
    with pytest.raises(AudioError, match="could not decode"):
        load_audio(source)


def test_max_seconds_stops_decoding_at_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "long.flac"
    sf.write(path, _tone(20.0, 16000, channels=1), 16000)
    blocks = []
    real = load_mod._soundfile_blocks
    monkeypatch.setattr(
        load_mod, "_soundfile_blocks", lambda h: (blocks.append(len(b)) or b for b in real(h))
    )
    with pytest.raises(AudioTooLongError, match=r"long\.flac is longer than the limit of 2 s"):
        load_audio(path, max_seconds=2.0)
    assert sum(blocks) < 16000 * 2 + load_mod._BLOCK_FRAMES  # stopped after the limit's block
    assert load_audio(path, max_seconds=20.0).shape == (320000,)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(path)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError, match=r"could not decode .*notes\.wav as audio") as info:
        load_audio(path)
    assert "WAV, FLAC, OGG, MP3" in str(info.value)


def test_empty_inputs(tmp_path):
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(zero_bytes)
    no_frames = tmp_path / "noframes.wav"
    sf.write(no_frames, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(no_frames)
    with pytest.raises(AudioError, match="empty"):
        prepare_audio(np.zeros(0, np.float32), 16000)


def test_silence_only(tmp_path):
    path = tmp_path / "quiet.flac"
    sf.write(path, np.full((16000, 1), 1e-6, np.float32), 16000)
    with pytest.raises(AudioError, match="contains only silence"):
        load_audio(path)
    with pytest.raises(AudioError, match="contains only silence"):
        list(iter_audio_chunks(path, chunk_seconds=0.25))


def test_nan_and_inf_samples(tmp_path):
    x = _tone(0.5, 16000, channels=1)
    x[100, 0] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path)
    x[100, 0] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        prepare_audio(x, 16000)


def test_bad_target_rate():
    with pytest.raises(ValueError, match="target_sr"):
        prepare_audio(np.ones(100, np.float32), 16000, target_sr=0)


def test_motion_frame_count_is_ceil_duration_times_fps():
    for n in [0, 1, 639, 640, 641, 15999, 16000, 16001, 12345, 99999, 160_001, 1_234_567]:
        assert num_motion_frames(n) == math.ceil(n * 25 / 16000) == -(-n // 640)
        assert num_motion_frames(n, 44100, 30) == math.ceil(n * 30 / 44100 - 1e-12)
    # integer arithmetic where floats go wrong: 3 * 0.1 s at 10 fps is exactly 3 frames
    assert num_motion_frames(3 * 4410, 44100, 10) == 3
    with pytest.raises(TypeError):
        num_motion_frames(16000.0)


def test_same_signal_at_16k_and_44k_gives_same_frame_count(tmp_path):
    rng = np.random.default_rng(0)
    for seconds in [0.5, 0.77, 1.0, 1.013, 2.345, 3.21, 4.0004]:
        counts = []
        for rate in (16000, 44100):
            n = round(seconds * rate)
            t = np.arange(n) / rate
            x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(n)).astype(
                np.float32
            )
            path = tmp_path / f"s{rate}.wav"
            sf.write(path, x, rate, subtype="FLOAT")
            counts.append(num_motion_frames(load_audio(path).numel()))
        assert counts[0] == counts[1] == math.ceil(seconds * 25 - 1e-9), (seconds, counts)


def test_chunked_loading_equals_one_shot(tmp_path):
    rate = 44100
    rng = np.random.default_rng(1)
    x = (0.2 * rng.standard_normal((rate * 40, 2))).astype(np.float32)  # 40 s stereo
    path = tmp_path / "long.flac"
    sf.write(path, x, rate)
    whole = load_audio(path)
    chunks = list(iter_audio_chunks(path, chunk_seconds=7.0))
    assert [c.numel() for c in chunks[:-1]] == [7 * 16000] * (len(chunks) - 1)
    streamed = torch.cat(chunks)
    assert streamed.shape == whole.shape == (40 * 16000,)
    assert torch.equal(streamed, whole)
    # and both equal soxr's one-shot resampling of the whole decoded file
    decoded, _ = sf.read(path, dtype="float32")
    ref = soxr.resample(decoded.mean(axis=1).astype(np.float32), rate, 16000, "HQ")
    assert np.abs(whole.numpy() - ref).max() < 1e-5


def test_agrees_with_the_synth_frame_count():
    """data.synth.motion.frame_count (from a duration) and num_motion_frames (from samples)."""
    from emotalk3d.data.synth.motion import frame_count

    for n in [1, 639, 640, 641, 12345, 16000, 16001, 32640, 99999, 1_234_567]:
        assert frame_count(n / 16000, 25) == num_motion_frames(n), n
