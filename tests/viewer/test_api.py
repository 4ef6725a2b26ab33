"""API tests of the viewer server (issue 6) with FastAPI's TestClient on a tiny untrained bundle.

The binaries are parsed with the plain-Python reference decoder and compared with the
pipeline's own Gaussians, activated here from the documented definitions (frontal camera at
(0, -30, 650) mm, colour = SH + 0.5 clamped, alpha = sigmoid(logit)).
"""

from __future__ import annotations

import io
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotalk3d.constants import EMOTIONS
from emotalk3d.viewer.encode import (
    LayoutError,
    decode_canonical,
    decode_frames,
    encode_frame_records,
    frame_stride,
    frames_header,
)

FRONTAL_CAMERA = torch.tensor([0.0, -30.0, 650.0])  # the contract's default frontal camera
POLL_TIMEOUT_S = 120.0
REPO = Path(__file__).resolve().parents[2]


def wav_upload(samples: np.ndarray, rate: int = 16_000, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def assert_error(response, status: int, *words: str) -> str:
    """A JSON {"detail": str} error of `status` whose message contains every word."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    detail = body["detail"]
    assert "Traceback" not in detail and 'File "' not in detail, detail
    for word in words:
        assert word.lower() in detail.lower(), (word, detail)
    return detail


def wait_done(client, clip_id: str) -> dict:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        info = client.get(f"/api/clips/{clip_id}").json()
        assert 0.0 <= info["progress"] <= 1.0
        if info["status"] in ("done", "error"):
            assert info["status"] == "done", info
            return info
        assert time.monotonic() < deadline, f"clip {clip_id} not done in {POLL_TIMEOUT_S} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def example_clip(viewer_client) -> dict:
    """The "hello" example generated as happy at intensity 0.5, polled until done."""
    response = viewer_client.post(
        "/api/clips",
        files={
            "example": (None, "hello"),
            "emotion": (None, "happy"),
            "intensity": (None, "0.5"),
        },  # fmt: skip
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] in ("queued", "running", "done") and len(body["id"]) == 32
    return wait_done(viewer_client, body["id"])


@pytest.fixture(scope="module")
def reference(viewer_app) -> dict:
    """The pipeline's Gaussians of "hello" / happy 0.5, activated per the documented layout."""
    from emotalk3d.render.sh import eval_sh

    head = viewer_app.state.head
    samples = viewer_app.state.examples["hello"].samples
    choice = head.resolve_emotion({"happy": 0.5})
    g = head.gaussians(head.geometry(samples, choice, sample_rate=16_000), choice)

    def colours(gs) -> np.ndarray:  # [T, N, 4]
        rgb = eval_sh(gs.sh_degree, gs.means - FRONTAL_CAMERA, gs.sh) + 0.5
        alpha = torch.sigmoid(gs.opacities)[..., None]
        return torch.cat([rgb.clamp(0, 1), alpha], -1).numpy()

    neutral = head.gaussians(head.template[None], "neutral")
    return {
        "samples": samples.numpy(),
        "means": g.means.numpy(),
        "quats": torch.nn.functional.normalize(g.quats, dim=-1).numpy(),
        "rgba": colours(g),
        "canonical_means": neutral.means[0].numpy(),
        "canonical_scales": torch.exp(neutral.scales[0]).numpy(),
        "canonical_quats": torch.nn.functional.normalize(neutral.quats[0], dim=-1).numpy(),
        "canonical_rgba": colours(neutral)[0],
    }


# ---------------------------------------------------------------------------- info endpoints
def test_health(viewer_client):
    body = viewer_client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["subject"] and body["fps"] == 25
    assert 0 <= body["queue"] <= body["max_queue"] and body["clips"] >= 0


def test_config_lists_emotions_and_examples(viewer_client):
    body = viewer_client.get("/api/config").json()
    assert body["emotions"] == [*EMOTIONS, "auto"]
    names = {e["name"]: e["duration"] for e in body["examples"]}
    assert "hello" in names
    assert names["hello"] == pytest.approx(
        sf.info(REPO / "examples" / "hello.wav").duration, abs=1e-3
    )
    assert body["max_upload_mb"] == 20.0 and body["fps"] == 25
    assert len(body["background"]) == 3 and all(0.0 <= c <= 1.0 for c in body["background"])


# ---------------------------------------------------------------------------- a clip end to end
def test_clip_info(example_clip, reference):
    duration = len(reference["samples"]) / 16_000
    assert example_clip["duration"] == pytest.approx(duration)
    assert example_clip["num_frames"] == math.ceil(duration * 25) == len(reference["means"])
    assert example_clip["num_gaussians"] == reference["means"].shape[1]
    assert example_clip["progress"] == 1.0 and example_clip["error"] is None
    assert example_clip["emotion"].startswith("happy")


def test_clip_audio_is_the_decoded_input_as_16bit_wav(viewer_client, example_clip, reference):
    response = viewer_client.get(f"/api/clips/{example_clip['id']}/audio")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(response.content))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV",
        "PCM_16",
        16_000,
        1,
    )
    assert info.duration == pytest.approx(example_clip["duration"], abs=1e-4)
    pcm, _ = sf.read(io.BytesIO(response.content), dtype="float32")
    np.testing.assert_allclose(pcm, np.clip(reference["samples"], -1, 1), atol=2.0 / 32768)


def test_canonical_binary_layout_and_values(viewer_client, reference):
    response = viewer_client.get("/api/canonical.bin")
    assert response.status_code == 200 and "max-age" in response.headers["cache-control"]
    data = response.content
    n = reference["means"].shape[1]
    assert data[:4] == b"E3DC" and struct.unpack_from("<III", data, 4) == (1, n, 0)
    assert len(data) == 16 + 12 * n + 12 * n + 16 * n + 4 * n
    can = decode_canonical(data)
    np.testing.assert_allclose(can.means, reference["canonical_means"], atol=1e-4)
    np.testing.assert_allclose(can.scales, reference["canonical_scales"], rtol=1e-5)
    np.testing.assert_allclose(can.quats, reference["canonical_quats"], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(can.quats, axis=-1), 1.0, atol=1e-5)
    diff = np.abs(can.rgba / 255.0 - reference["canonical_rgba"])
    assert diff.max() <= 0.5 / 255 + 1e-6, diff.max()
    # A revalidation with the ETag is answered 304 without a body.
    again = viewer_client.get(
        "/api/canonical.bin", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304 and not again.content


def test_frames_binary_matches_the_pipeline(viewer_client, example_clip, reference):
    response = viewer_client.get(f"/api/clips/{example_clip['id']}/frames.bin")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    data = response.content
    t, n = reference["means"].shape[:2]
    assert data[:4] == b"E3DF"
    assert struct.unpack_from("<IIII", data, 4) == (1, n, 0, t)
    assert struct.unpack_from("<f", data, 20)[0] == 25.0
    assert len(data) == 32 + t * ((6 * n + 3) // 4 * 4 + 8 * n)
    frames = decode_frames(data)
    means = reference["means"]
    np.testing.assert_allclose(frames.means, means, atol=1e-3, rtol=2.0**-11)
    # The face moves: frames differ by more than f16 rounding.
    assert np.abs(frames.means - frames.means[:1]).max() > 0.05
    quat_err = np.abs(frames.quats / 127.0 - reference["quats"]).max()
    assert quat_err <= 0.5 / 127 + 1e-6, quat_err
    rgba_err = np.abs(frames.rgba / 255.0 - reference["rgba"]).max()
    assert rgba_err <= 0.5 / 255 + 1e-6, rgba_err


def test_frames_range_is_a_slice_and_is_clamped(viewer_client, example_clip):
    cid, total = example_clip["id"], example_clip["num_frames"]
    full = decode_frames(viewer_client.get(f"/api/clips/{cid}/frames.bin").content)
    part = decode_frames(viewer_client.get(f"/api/clips/{cid}/frames.bin?start=5&count=3").content)
    assert (part.start, part.count) == (5, 3)
    np.testing.assert_array_equal(part.means, full.means[5:8])
    np.testing.assert_array_equal(part.rgba, full.rgba[5:8])
    tail = decode_frames(
        viewer_client.get(f"/api/clips/{cid}/frames.bin?start={total - 2}&count=50").content
    )
    assert (tail.start, tail.count) == (total - 2, 2)
    past = decode_frames(
        viewer_client.get(f"/api/clips/{cid}/frames.bin?start={total + 9}").content
    )
    assert past.count == 0
    assert_error(viewer_client.get(f"/api/clips/{cid}/frames.bin?start=-1"), 422, "start")
    assert_error(viewer_client.get(f"/api/clips/{cid}/frames.bin?count=abc"), 422, "count")


def test_same_request_is_cached(viewer_client, example_clip):
    response = viewer_client.post(
        "/api/clips", data={"example": "hello", "emotion": "HAPPY", "intensity": "0.5"}
    )
    assert response.status_code == 200
    assert response.json() == {"id": example_clip["id"], "status": "done"}
    other = viewer_client.post(
        "/api/clips", data={"example": "hello", "emotion": "happy", "intensity": "0.6"}
    )
    assert other.status_code in (200, 202) and other.json()["id"] != example_clip["id"]
    wait_done(viewer_client, other.json()["id"])


def test_upload_is_typed_by_decoding_not_by_name(viewer_client, make_speech):
    flac = wav_upload(make_speech(1.0, seed=3, rate=22_050), rate=22_050, fmt="FLAC")
    response = viewer_client.post(
        "/api/clips",
        files={"audio": ("speech.wav", flac, "audio/wav")},
        data={"emotion": "angry:0.7,sad:0.3"},
    )
    assert response.status_code == 202, response.text
    info = wait_done(viewer_client, response.json()["id"])
    assert info["duration"] == pytest.approx(1.0, abs=1e-3)
    assert info["emotion"] == "angry70-sad30"


def test_auto_emotion_reports_the_decided_one(viewer_client, make_speech):
    response = viewer_client.post(
        "/api/clips",
        files={"audio": ("a.ogg", wav_upload(make_speech(1.0, seed=4)), "audio/ogg")},
        data={"emotion": "auto"},
    )
    assert response.status_code == 202, response.text
    info = wait_done(viewer_client, response.json()["id"])
    assert info["emotion"] in EMOTIONS


# ---------------------------------------------------------------------------- bad requests
def test_non_audio_upload_is_415(viewer_client):
    text = b"this is a text file, not audio\n" * 20
    response = viewer_client.post("/api/clips", files={"audio": ("notes.wav", text, "audio/wav")})
    assert_error(response, 415, "decod")


def test_playlist_upload_cannot_read_a_server_file(viewer_client):
    # an ffconcat script naming a file the server can see is not audio: 415, nothing read
    script = b"ffconcat version 1.0\nfile examples/hello.wav\n"
    response = viewer_client.post("/api/clips", files={"audio": ("a.wav", script, "audio/wav")})
    assert_error(response, 415, "decod")


def test_compressed_hours_are_refused_while_decoding(viewer_client):
    # 200 s of near-silence compresses to a few kB of FLAC; decoding stops at the limit
    buf = io.BytesIO()
    quiet = np.full(200 * 8000, 0.01, dtype=np.float32)
    sf.write(buf, quiet, 8000, format="FLAC")
    assert len(buf.getvalue()) < 50_000
    response = viewer_client.post(
        "/api/clips", files={"audio": ("long.flac", buf.getvalue(), "audio/flac")}
    )
    assert_error(response, 422, "too long", "limit is 120 s")


def test_empty_upload_is_400(viewer_client):
    response = viewer_client.post("/api/clips", files={"audio": ("empty.wav", b"", "audio/wav")})
    assert_error(response, 400, "empty")


def test_unknown_emotion_is_422_listing_the_valid_ones(viewer_client):
    response = viewer_client.post("/api/clips", data={"example": "hello", "emotion": "joy"})
    detail = assert_error(response, 422, "joy")
    for name in (*EMOTIONS, "auto"):
        assert name in detail


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "nan"])
def test_bad_intensity_is_422(viewer_client, value):
    response = viewer_client.post(
        "/api/clips", data={"example": "hello", "emotion": "sad", "intensity": value}
    )
    assert_error(response, 422, "intensity")


def test_missing_or_double_audio_is_422(viewer_client, make_speech):
    assert_error(viewer_client.post("/api/clips", data={"emotion": "sad"}), 422, "missing audio")
    both = viewer_client.post(
        "/api/clips",
        data={"example": "hello"},
        files={"audio": ("a.wav", wav_upload(make_speech()), "audio/wav")},
    )
    assert_error(both, 422, "either")
    assert_error(viewer_client.post("/api/clips", json={"example": "hello"}), 422, "multipart")


@pytest.mark.parametrize("name", ["../examples/hello", "/etc/passwd", "hello.wav", "..", "nope"])
def test_example_is_a_name_from_the_list_never_a_path(viewer_client, name):
    response = viewer_client.post("/api/clips", data={"example": name})
    assert_error(response, 422, "unknown example", "hello")


def test_too_short_and_silent_audio_are_422(viewer_client, make_speech):
    short = wav_upload(make_speech(0.01))
    assert_error(
        viewer_client.post("/api/clips", files={"audio": ("s.wav", short, "audio/wav")}),
        422,
        "too short",
    )
    silent = wav_upload(np.zeros(16_000, dtype=np.float32))
    assert_error(
        viewer_client.post("/api/clips", files={"audio": ("s.wav", silent, "audio/wav")}),
        422,
        "silence",
    )


def test_unknown_clip_ids_are_404(viewer_client):
    assert_error(viewer_client.get("/api/clips/" + "0" * 32), 404, "unknown clip")
    assert_error(viewer_client.get("/api/clips/" + "0" * 32 + "/frames.bin"), 404)
    assert_error(viewer_client.get("/api/clips/" + "0" * 32 + "/audio"), 404)
    assert_error(viewer_client.get("/api/clips/..%2F..%2Fetc"), 404)
    assert_error(viewer_client.get("/api/clips/XYZ"), 404, "hex")
    assert_error(viewer_client.get("/api/nothing-here"), 404)


def test_page_without_a_built_client_is_503_naming_the_fix(viewer_client, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTALK3D_WEB_DIST", str(tmp_path))
    response = viewer_client.get("/")
    assert response.status_code == 503 and "make web" in response.text


# ---------------------------------------------------------------------------- limits and queue
@pytest.fixture()
def small_app(viewer_head):
    """An app on the same head with max_queue=1, a 20 KB upload limit and a 1.5 MB cache."""
    from fastapi.testclient import TestClient

    from emotalk3d.viewer.server import create_app

    app = create_app(
        head=viewer_head, max_queue=1, max_upload_mb=20 / 1024, cache_mb=1.5, examples_dir=None
    )
    yield app, TestClient(app, raise_server_exceptions=False)
    app.state.store.resume()
    app.state.store.close()


def test_oversized_upload_is_413(small_app, make_speech):
    _, client = small_app
    big = wav_upload(make_speech(1.0))  # 32 KB of 16-bit PCM > 20 KB
    response = client.post("/api/clips", files={"audio": ("big.wav", big, "audio/wav")})
    assert_error(response, 413, "too large", "--max-upload-mb")


def test_oversized_streamed_upload_is_413_without_reading_it_all(small_app):
    """A chunked body (no Content-Length) is refused once it passes the limit: the app stops
    asking for body chunks (driven at the ASGI level to count them)."""
    import asyncio

    app, _ = small_app
    chunks_read = []
    sent = []

    async def receive():
        chunks_read.append(1)
        return {"type": "http.request", "body": b"\0" * 65536, "more_body": len(chunks_read) < 1000}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/clips", "raw_path": b"/api/clips", "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"multipart/form-data; boundary=x")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and b"too large" in body
    assert len(chunks_read) <= 3, f"read {len(chunks_read)} chunks of 64 KB past a ~84 KB limit"


def test_full_queue_is_429_with_retry_after(small_app, make_speech):
    app, client = small_app
    store = app.state.store
    store.pause()  # the worker takes no job: the first request stays queued
    files = {"audio": ("a.wav", wav_upload(make_speech(0.5, seed=7)), "audio/wav")}
    first = client.post("/api/clips", files=files)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    cid = first.json()["id"]
    assert client.get("/api/health").json()["queue"] == 1
    assert_error(client.get(f"/api/clips/{cid}/frames.bin"), 409, "queued")
    # The same request again joins its pending clip rather than queueing twice.
    same = client.post("/api/clips", files=files)
    assert same.status_code == 202 and same.json()["id"] == cid
    other = {"audio": ("b.wav", wav_upload(make_speech(0.5, seed=8)), "audio/wav")}
    full = client.post("/api/clips", files=other)
    assert_error(full, 429, "queue is full")
    assert int(full.headers["retry-after"]) >= 1
    store.resume()
    wait_done(client, cid)
    assert client.get("/api/health").json()["queue"] == 0
    assert client.post("/api/clips", files=other).status_code == 202


def test_cache_evicts_least_recently_used_clips_by_size(small_app, make_speech):
    """With a 1.5 MB cache, each 0.6 s clip (about 1 MB) evicts the one before."""
    app, client = small_app
    ids = []
    for seed in (11, 12):
        files = {"audio": ("a.wav", wav_upload(make_speech(0.6, seed=seed)), "audio/wav")}
        response = client.post("/api/clips", files=files)
        assert response.status_code == 202
        ids.append(response.json()["id"])
        wait_done(client, ids[-1])
    store = app.state.store
    size = store.get(ids[1]).nbytes
    assert size >= 15 * frame_stride(store.num_gaussians)
    assert size <= store.cache_bytes < 2 * size, "the sizes this test relies on changed"
    assert_error(client.get(f"/api/clips/{ids[0]}"), 404, "evicted")
    assert client.get(f"/api/clips/{ids[1]}").json()["status"] == "done"
    assert store.cached_bytes <= store.cache_bytes
    assert client.get("/api/health").json()["clips"] == 1
    # Asking for the evicted clip again makes it anew (same id), evicting the other.
    files = {"audio": ("a.wav", wav_upload(make_speech(0.6, seed=11)), "audio/wav")}
    again = client.post("/api/clips", files=files)
    assert again.status_code == 202 and again.json()["id"] == ids[0]
    wait_done(client, ids[0])
    assert_error(client.get(f"/api/clips/{ids[1]}"), 404)


# ---------------------------------------------------------------------------- encoding
def test_frame_records_pad_odd_counts_and_decode_back():
    """N = 3: means take 18 bytes, padded with zeros to 20; the decoder checks all offsets."""
    from emotalk3d.viewer.encode import ViewerFrames

    rng = np.random.default_rng(0)
    t, n = 2, 3
    quats = rng.normal(size=(t, n, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
    frames = ViewerFrames(
        means=rng.normal(0, 80, size=(t, n, 3)).astype(np.float32),
        scales=np.ones((t, n, 3), np.float32),
        quats=quats,
        rgba=rng.uniform(size=(t, n, 4)).astype(np.float32),
    )
    records = encode_frame_records(frames)
    assert frame_stride(n) == 20 + 12 + 12 and len(records) == t * 44
    assert records[18:20] == b"\0\0" and records[44 + 18 : 44 + 20] == b"\0\0"
    decoded = decode_frames(frames_header(n, 7, t, 25.0) + records)
    assert (decoded.start, decoded.count, decoded.fps) == (7, t, 25.0)
    np.testing.assert_allclose(decoded.means, frames.means, rtol=2.0**-11)
    np.testing.assert_array_equal(decoded.quats, np.rint(quats * 127).astype(np.int8))
    np.testing.assert_array_equal(decoded.rgba, np.rint(frames.rgba * 255).astype(np.uint8))
    with pytest.raises(LayoutError, match="magic"):
        decode_frames(b"XXXX" + (frames_header(n, 7, t, 25.0) + records)[4:])
    with pytest.raises(LayoutError, match="bytes"):
        decode_frames(frames_header(n, 7, t, 25.0) + records[:-1])


# ---------------------------------------------------------------------------- live server
def test_live_server_answers_health_and_binaries(viewer_server):
    """The shared `viewer_server` fixture: a real uvicorn on 127.0.0.1."""
    import json
    import urllib.request

    assert viewer_server.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{viewer_server}/api/health", timeout=10) as response:
        assert json.load(response)["status"] == "ok"
    with urllib.request.urlopen(f"{viewer_server}/api/canonical.bin", timeout=10) as response:
        assert decode_canonical(response.read()).num_gaussians > 0


def test_cli_refuses_server_render_without_cuda(capsys):
    from emotalk3d.cli import main

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here, so --server-render would start a server")
    assert main(["viewer", "--server-render", "--port", "0"]) == 2
    assert "--server-render needs a CUDA GPU" in capsys.readouterr().err


def test_cli_names_a_port_in_use_before_loading_the_model(capsys):
    import socket

    from emotalk3d.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # a bundle that does not exist: the port is checked first, so that error never comes
        code = main(["viewer", "--port", str(port), "--checkpoint", "/nonexistent/bundle"])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert "Traceback" not in err and "bundle" not in err


def test_cli_refuses_bad_ports(capsys):
    from emotalk3d.cli import main

    assert main(["viewer", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_cli_serves_on_127_0_0_1_and_prints_the_url(viewer_bundle, tmp_path):
    """`emotalk3d viewer --port 0` prints its URL (127.0.0.1 by default), answers health and
    stops cleanly on SIGINT."""
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    env = dict(os.environ, OMP_NUM_THREADS="1", EMOTALK3D_WEB_DIST=str(tmp_path))
    cmd = [sys.executable, "-m", "emotalk3d.cli", "viewer", "--checkpoint", str(viewer_bundle),
           "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"emotalk3d viewer: (http://127\.0\.0\.1:(\d+))/\n", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{m.group(1)}/api/health", timeout=5) as response:
                    assert json.load(response)["status"] == "ok"
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered health"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{m.group(1)}/", timeout=5)
        assert err.value.code == 503
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read()[-2000:]


def test_clip_larger_than_the_cache_is_422(viewer_head):
    """A clip whose frames cannot fit the cache is refused up front, naming --cache-mb."""
    from fastapi.testclient import TestClient

    from emotalk3d.viewer.server import create_app

    app = create_app(head=viewer_head, cache_mb=0.5, examples_dir=REPO / "examples")
    try:
        client = TestClient(app, raise_server_exceptions=False)
        response = client.post("/api/clips", data={"example": "hello"})
        assert_error(response, 422, "too long for the clip cache", "--cache-mb")
        assert client.get("/api/health").json()["queue"] == 0
    finally:
        app.state.store.close()
