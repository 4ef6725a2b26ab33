"""mp4 output: one H.264 video and one AAC audio stream with matching durations, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk3d.render.video import Mp4Writer, probe_video, save_png_atomic, write_mp4


def _frames(t: int, h: int = 32, w: int = 48) -> np.ndarray:  # [T, H, W, 3] uint8
    ramp = np.linspace(0, 255, t, dtype=np.float32)[:, None, None, None]
    return np.broadcast_to(ramp, (t, h, w, 3)).astype(np.uint8).copy()


def test_mp4_has_video_and_audio_with_matching_durations(tmp_path):
    fps, sr = 25, 16000
    duration = 1.37
    audio = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(duration * sr)) / sr).astype(np.float32)
    t = int(np.ceil(duration * fps))
    out = write_mp4(tmp_path / "clip.mp4", iter(_frames(t)), fps, audio, sr)
    streams = {s.kind: s for s in probe_video(out)}
    assert set(streams) == {"video", "audio"}
    assert streams["video"].codec == "h264" and streams["audio"].codec == "aac"
    assert streams["video"].frames == t
    assert (streams["video"].width, streams["video"].height) == (48, 32)
    assert abs(streams["video"].duration_s - t / fps) < 1.0 / fps
    assert abs(streams["audio"].duration_s - duration) < 1.0 / fps


def _decode_audio(path) -> np.ndarray:  # [C, S] float32 of the mp4's audio track
    import av

    with av.open(str(path)) as container:
        parts = [f.to_ndarray() for f in container.decode(audio=0)]
    return np.concatenate(parts, axis=1)


def test_an_audio_file_is_muxed_as_it_is_stereo_at_full_bandwidth(tmp_path):
    import soundfile as sf

    sr, duration, fps = 44100, 1.0, 25
    t = np.arange(int(duration * sr)) / sr
    left, right = 0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 11000 * t)
    wav = tmp_path / "stereo.wav"
    sf.write(wav, np.stack([left, right], 1).astype(np.float32), sr)
    writer = Mp4Writer(tmp_path / "clip.mp4", fps, 48, 32, wav)
    writer.write(_frames(fps))
    out = writer.close()
    audio = next(s for s in probe_video(out) if s.kind == "audio")
    assert (audio.channels, audio.sample_rate) == (2, 48000)
    assert abs(audio.duration_s - duration) < 1.0 / fps
    decoded = _decode_audio(out)  # [2, S] at 48 kHz
    mid = decoded[:, 4800:-4800]

    def peak_hz(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
        return float(np.fft.rfftfreq(x.size, 1 / 48000)[spec.argmax()])

    # each channel keeps its own tone, and 11 kHz survives (a 16 kHz copy would cut it at 8)
    assert abs(peak_hz(mid[0]) - 440) < 5 and abs(peak_hz(mid[1]) - 11000) < 5
    assert 0.2 < np.abs(mid[1]).max() < 0.4


def test_odd_size_is_rejected_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="even"):
        Mp4Writer(tmp_path / "x.mp4", 25, 33, 32)


def test_failed_write_leaves_no_file(tmp_path):
    out = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="expected frames"):
        with Mp4Writer(out, 25, 32, 32) as writer:
            writer.write(np.zeros((4, 16, 16, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_png_atomic_roundtrip(tmp_path):
    from PIL import Image

    img = (np.random.default_rng(0).random((8, 10, 3)) * 255).astype(np.uint8)
    path = save_png_atomic(tmp_path / "f.png", img)
    assert np.array_equal(np.asarray(Image.open(path)), img)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_outputs_get_umask_permissions_not_0600(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = save_png_atomic(tmp_path / "p.png", np.zeros((2, 2, 3), np.uint8))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
