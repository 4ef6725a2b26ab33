"""The viewer's live mode (`WS /api/live`, issue 7) with FastAPI's TestClient on the tiny bundle.

An example clip is streamed in 200 ms float32 chunks; the frame messages are parsed with the
plain-Python reference decoder and compared with what `TalkingHead.stream` / a
`GeometryStreamer` gives for the same chunks, frame for frame and message for message. Every
refusal is a {"detail": ...} text message followed by a close with code 4000 + HTTP status.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import soxr
import torch
from starlette.websockets import WebSocketDisconnect

from emotalk3d.constants import EMOTIONS
from emotalk3d.inference.streaming import split_chunks
from emotalk3d.viewer.encode import DecodedFrames, decode_frames

CHUNK_SECONDS = 0.2
FRONTAL_CAMERA = torch.tensor([0.0, -30.0, 650.0])  # the layout's frontal camera (docs/viewer.md)


def pcm_bytes(samples: np.ndarray) -> bytes:
    return np.ascontiguousarray(samples, dtype="<f4").tobytes()


def chunks_of(samples: np.ndarray, rate: int) -> list[np.ndarray]:
    return [c.numpy() for c in split_chunks(torch.from_numpy(samples), CHUNK_SECONDS, rate)]


def stream(client, chunks: list[np.ndarray], start: dict) -> tuple[dict, list[DecodedFrames], dict]:
    """Runs one live session: (the started answer, one decoded message per chunk + the final
    flush, the done message)."""
    with client.websocket_connect("/api/live") as socket:
        socket.send_json(start)
        started = socket.receive_json()
        assert started.get("started") is True, started
        replies = []
        for chunk in chunks:
            socket.send_bytes(pcm_bytes(chunk))
            replies.append(decode_frames(socket.receive_bytes()))
        socket.send_json({"end": True})
        replies.append(decode_frames(socket.receive_bytes()))
        done = socket.receive_json()
    return started, replies, done


def refused(socket, code: int, *words: str) -> str:
    """The {"detail"} message and the close code of a refused session."""
    body = socket.receive_json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    detail = body["detail"]
    assert "Traceback" not in detail and 'File "' not in detail, detail
    for word in words:
        assert word.lower() in detail.lower(), (word, detail)
    with pytest.raises(WebSocketDisconnect) as err:
        socket.receive_text()
    assert err.value.code == code, (err.value.code, detail)
    return detail


def joined(replies: list[DecodedFrames]) -> DecodedFrames:
    """The messages as one range, checking they follow on from each other."""
    start = 0
    for reply in replies:
        assert reply.start == start and reply.fps == 25.0
        start += reply.count
    return DecodedFrames(
        version=1,
        num_gaussians=replies[0].num_gaussians,
        start=0,
        count=start,
        fps=25.0,
        means=np.concatenate([r.means for r in replies]),
        quats=np.concatenate([r.quats for r in replies]),
        rgba=np.concatenate([r.rgba for r in replies]),
    )


def check_records(frames: DecodedFrames, head, points: torch.Tensor, choice) -> None:
    """The records are the pipeline's Gaussians of `points` within the layout's rounding."""
    from emotalk3d.render.sh import eval_sh

    g = head.gaussians(points, choice)
    np.testing.assert_allclose(frames.means, g.means.numpy(), atol=1e-3, rtol=2.0**-11)
    quats = torch.nn.functional.normalize(g.quats, dim=-1).numpy()
    assert np.abs(frames.quats / 127.0 - quats).max() <= 0.5 / 127 + 1e-6
    rgb = (eval_sh(g.sh_degree, g.means - FRONTAL_CAMERA, g.sh) + 0.5).clamp(0, 1)
    rgba = torch.cat([rgb, torch.sigmoid(g.opacities)[..., None]], -1).numpy()
    assert np.abs(frames.rgba / 255.0 - rgba).max() <= 0.5 / 255 + 1e-6


def test_config_and_health_announce_the_live_mode(viewer_client):
    assert viewer_client.get("/api/config").json()["live"] is True
    assert viewer_client.get("/api/health").json()["live"] == 0


def test_streamed_example_equals_the_pipelines_stream(viewer_client, viewer_app):
    """16 kHz chunks reach the streamer as sent: message k holds exactly the frames push k of a
    `GeometryStreamer` makes, and all frames together are `TalkingHead.stream`'s."""
    head = viewer_app.state.head
    samples = viewer_app.state.examples["hello"].samples.numpy()  # [S] 16 kHz
    chunks = chunks_of(samples, 16_000)
    started, replies, done = stream(
        viewer_client, chunks, {"emotion": "happy", "intensity": 0.5, "sample_rate": 16_000}
    )
    n = head.num_frames(samples.shape[0])
    assert started["emotion"] == "happy50" and started["fps"] == 25
    assert started["num_gaussians"] == replies[0].num_gaussians
    assert done == {"done": True, "frames": n}
    frames = joined(replies)
    assert frames.count == n == math.ceil(samples.shape[0] / 16_000 * 25)

    choice = head.resolve_emotion({"happy": 0.5})
    streamer = head.streamer(choice)
    counts = [streamer.push(torch.from_numpy(c)).shape[0] for c in chunks]
    assert [r.count for r in replies] == [*counts, streamer.finish().shape[0]]
    batches = head.stream(
        (torch.from_numpy(c) for c in chunks), {"happy": 0.5}, render=False, batch_size=64
    )
    points = torch.cat([b.geometry for b in batches])  # [T, P, 3]
    check_records(frames, head, points, choice)
    assert np.abs(frames.means - frames.means[:1]).max() > 0.05  # the face moves


def test_44k_chunks_are_resampled_like_a_stream(viewer_client, viewer_app):
    """44.1 kHz chunks: the server's frames are those of a `GeometryStreamer` fed by soxr's
    streaming resampler with the same chunks; the count is the clip's."""
    head = viewer_app.state.head
    clip = viewer_app.state.examples["complaint"].samples.numpy()  # [S] 16 kHz
    samples = soxr.resample(clip, 16_000, 44_100, quality="HQ").astype(np.float32)
    chunks = chunks_of(samples, 44_100)
    assert len(chunks[0]) == 8820
    start = {"emotion": "angry:0.7,sad:0.3", "intensity": None, "sample_rate": 44_100}
    _, replies, done = stream(viewer_client, chunks, start)
    frames = joined(replies)
    assert frames.count == done["frames"] == head.num_frames(clip.shape[0])

    choice = head.resolve_emotion({"angry": 0.7, "sad": 0.3})
    streamer = head.streamer(choice)
    resampler = soxr.ResampleStream(44_100, 16_000, 1, dtype="float32", quality="HQ")
    points = [streamer.push(torch.from_numpy(resampler.resample_chunk(c).copy())) for c in chunks]
    tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True).copy()
    points += [torch.cat([streamer.push(torch.from_numpy(tail)), streamer.finish()])]
    assert [r.count for r in replies] == [p.shape[0] for p in points]
    check_records(frames, head, torch.cat(points), choice)


@pytest.mark.parametrize(
    ("first", "code", "words"),
    [
        ("hello", 4400, ["first message", "sample_rate"]),
        (b"\0\0\0\0", 4400, ["first message"]),
        ('{"emotion": "happy", "sample_rate": 16000, "x": 1}', 4400, ["unknown keys"]),
        ('{"emotion": "auto", "sample_rate": 16000}', 4422, ["auto", "whole clip"]),
        ('{"emotion": "joy", "sample_rate": 16000}', 4422, ["joy", *EMOTIONS]),
        ('{"emotion": "sad", "intensity": 1.5, "sample_rate": 16000}', 4422, ["intensity"]),
        ('{"emotion": "sad", "sample_rate": 1000}', 4422, ["sample_rate"]),
        ('{"emotion": "sad", "sample_rate": "48000"}', 4422, ["sample_rate"]),
        ('{"emotion": "sad"}', 4422, ["sample_rate"]),
    ],
)
def test_bad_start_messages_are_refused(viewer_client, first, code, words):
    with viewer_client.websocket_connect("/api/live") as socket:
        socket.send_bytes(first) if isinstance(first, bytes) else socket.send_text(first)
        detail = refused(socket, code, *words)
    if "joy" in words:
        assert "auto" not in detail  # the live mode does not offer it


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        (pcm_bytes(np.zeros(int(1.5 * 16_000))), 4413, ["too large", "1 s"]),
        (b"\0\0\0", 4400, ["float32"]),
        (pcm_bytes(np.array([0.0, np.nan])), 4400, ["nan"]),
        ('{"stop": true}', 4400, ['{"end": true}']),
    ],
)
def test_bad_chunks_are_refused(viewer_client, message, code, words):
    with viewer_client.websocket_connect("/api/live") as socket:
        socket.send_json({"emotion": "sad", "intensity": 0.5, "sample_rate": 16_000})
        assert socket.receive_json()["started"] is True
        socket.send_bytes(message) if isinstance(message, bytes) else socket.send_text(message)
        refused(socket, code, *words)
    assert viewer_client.get("/api/health").json()["live"] == 0  # the slot is free again


@pytest.fixture()
def live_app(viewer_head):
    """An app with max_seconds=1 (one live session at a time, the default)."""
    from fastapi.testclient import TestClient

    from emotalk3d.viewer.server import create_app

    app = create_app(head=viewer_head, max_seconds=1.0, examples_dir=None)
    yield app, TestClient(app, raise_server_exceptions=False)
    app.state.store.close()


def test_too_long_session_is_refused(live_app, make_speech):
    _, client = live_app
    speech = make_speech(0.45, seed=5)
    with client.websocket_connect("/api/live") as socket:
        socket.send_json({"emotion": "neutral", "sample_rate": 16_000})
        assert socket.receive_json()["max_seconds"] == 1.0
        for _ in range(2):  # 0.9 s: within the limit
            socket.send_bytes(pcm_bytes(speech))
            assert decode_frames(socket.receive_bytes()).start >= 0
        socket.send_bytes(pcm_bytes(speech))
        refused(socket, 4422, "too long", "1 s")


def test_second_session_is_refused_while_one_runs(live_app):
    _, client = live_app
    with client.websocket_connect("/api/live") as first:
        first.send_json({"emotion": "neutral", "sample_rate": 16_000})
        assert first.receive_json()["started"] is True
        assert client.get("/api/health").json()["live"] == 1
        with client.websocket_connect("/api/live") as second:
            refused(second, 4429, "busy", "1 session")
        first.send_json({"end": True})
        assert decode_frames(first.receive_bytes()).count == 0  # no audio, no frames
        assert first.receive_json() == {"done": True, "frames": 0}
    assert client.get("/api/health").json()["live"] == 0


def test_idle_session_is_closed(live_app, monkeypatch):
    from emotalk3d.viewer import live

    _, client = live_app
    monkeypatch.setattr(live, "IDLE_TIMEOUT_S", 0.3)
    with client.websocket_connect("/api/live") as socket:
        refused(socket, 4408, "no message")


def test_a_page_of_another_site_is_refused(viewer_client):
    # browsers let any page open a websocket to 127.0.0.1: the Origin must be this server's
    # (the render socket too: test_render_ws.py)
    evil = {"origin": "http://evil.example"}
    with viewer_client.websocket_connect("/api/live", headers=evil) as socket:
        refused(socket, 4403, "another site", "evil.example")
    # the viewer's own page (the TestClient's host) is served
    with viewer_client.websocket_connect(
        "/api/live", headers={"origin": "http://testserver"}
    ) as ws:
        ws.send_json({"emotion": "happy", "intensity": 0.5, "sample_rate": 16000})
        assert ws.receive_json()["started"] is True
        ws.send_json({"end": True})
        ws.receive_bytes()
        assert ws.receive_json()["done"] is True


def test_live_mode_can_be_turned_off(viewer_head):
    from fastapi.testclient import TestClient

    from emotalk3d.viewer.server import create_app

    app = create_app(head=viewer_head, max_live=0, examples_dir=None)
    try:
        client = TestClient(app, raise_server_exceptions=False)
        assert client.get("/api/config").json()["live"] is False
        with client.websocket_connect("/api/live") as socket:
            refused(socket, 4403, "off", "--max-live")
    finally:
        app.state.store.close()


def test_compute_runs_off_the_event_loop(viewer_server, monkeypatch):
    """On the live uvicorn server: while a chunk's compute is held (the push blocked on an
    event), /api/health still answers at once; the chunk's reply comes after release."""
    import json
    import urllib.request

    from websockets.sync.client import connect

    from emotalk3d.viewer.live import LiveSession

    gate = threading.Event()
    original = LiveSession.push

    def held_push(self, data: bytes) -> bytes:
        assert gate.wait(timeout=30.0)
        return original(self, data)

    monkeypatch.setattr(LiveSession, "push", held_push)
    url = viewer_server.replace("http://", "ws://") + "/api/live"
    with connect(url, open_timeout=10) as socket:
        socket.send(json.dumps({"emotion": "happy", "intensity": 1.0, "sample_rate": 48_000}))
        assert json.loads(socket.recv(timeout=10))["started"] is True
        socket.send(pcm_bytes(np.zeros(int(0.2 * 48_000))))
        time.sleep(0.2)  # the push is now waiting on the gate, in the thread pool
        t0 = time.monotonic()
        with urllib.request.urlopen(f"{viewer_server}/api/health", timeout=5) as response:
            assert json.load(response)["live"] == 1
        assert time.monotonic() - t0 < 2.0
        gate.set()
        reply = decode_frames(socket.recv(timeout=30))
        assert reply.start == 0  # 0.2 s at 48 kHz: not enough for a frame plus look-ahead
        socket.send(json.dumps({"end": True}))
        assert decode_frames(socket.recv(timeout=30)).count >= 1
        assert json.loads(socket.recv(timeout=10))["done"] is True
