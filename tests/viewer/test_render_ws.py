"""The optional server-rendered mode (`--server-render`): JPEG frames over a websocket.

It is CUDA-only for users; here it runs on the CPU (`render_device="cpu"`, torch backend) at a
small size so the protocol and the pictures are tested on any machine.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

SIZE = 96


@pytest.fixture(scope="module")
def render_app(viewer_head):
    from fastapi.testclient import TestClient

    from emotalk3d.viewer.server import create_app

    app = create_app(head=viewer_head, server_render=True, render_device="cpu")
    client = TestClient(app, raise_server_exceptions=False)
    yield app, client
    app.state.store.close()


@pytest.fixture(scope="module")
def done_clip(render_app) -> dict:
    _, client = render_app
    response = client.post("/api/clips", data={"example": "hello", "emotion": "sad"})
    assert response.status_code in (200, 202), response.text
    cid = response.json()["id"]
    deadline = time.monotonic() + 120
    while (info := client.get(f"/api/clips/{cid}").json())["status"] not in ("done", "error"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert info["status"] == "done", info
    return info


def jpeg_pixels(data: bytes) -> np.ndarray:  # [H, W, 3] uint8
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_config_says_server_render(render_app, viewer_client):
    _, client = render_app
    assert client.get("/api/config").json()["server_render"] is True
    assert viewer_client.get("/api/config").json()["server_render"] is False


def test_frames_match_the_pipelines_own_render(render_app, done_clip, viewer_head):
    """Frame k from the frontal camera equals the pipeline's render of frame k (quantisation
    and JPEG aside) better than a render from 8 degrees off; yaw 60 gives another picture."""
    app, client = render_app
    samples = app.state.examples["hello"].samples
    choice = viewer_head.resolve_emotion("sad")
    points = viewer_head.geometry(samples, choice, sample_rate=16_000)  # [T, P, 3]
    k = 40
    expected = {}
    for yaw in (0.0, 8.0):
        cameras = viewer_head.cameras(yaw, resolution=SIZE)
        image = viewer_head.render(viewer_head.gaussians(points[k : k + 1], choice), cameras)
        expected[yaw] = (image[0, 0] * 255 + 0.5).to(torch.uint8).numpy()
    with client.websocket_connect(f"/api/clips/{done_clip['id']}/render.ws") as socket:
        socket.send_json({"frame": k, "size": SIZE, "quality": 95})
        got = jpeg_pixels(socket.receive_bytes())
        socket.send_json({"frame": k, "size": SIZE, "yaw": 60})
        turned = jpeg_pixels(socket.receive_bytes())
    assert got.shape == (SIZE, SIZE, 3)
    assert psnr(got, expected[0.0]) > 30.0, psnr(got, expected[0.0])
    assert psnr(got, expected[0.0]) > psnr(got, expected[8.0]) + 3.0
    assert psnr(got, turned) < 25.0


def test_renderer_reads_the_requested_frame(render_app, done_clip):
    """The renderer's decoded frame k is the k-th record of frames.bin (f16 means exactly)."""
    from emotalk3d.viewer.encode import decode_frames
    from emotalk3d.viewer.render_ws import FrameRenderer

    app, client = render_app
    store = app.state.store
    clip = store.get(done_clip["id"])
    renderer = FrameRenderer(store, {}, torch.ones(3), "cpu")
    frames = decode_frames(client.get(f"/api/clips/{clip.id}/frames.bin").content)
    for k in (0, 17, clip.num_frames - 1):
        g = renderer.gaussians(clip, k)
        np.testing.assert_array_equal(g["means"].numpy(), frames.means[k])
        np.testing.assert_allclose(g["quats"].numpy(), frames.quats[k] / 127.0, atol=1e-7)
        alpha = torch.sigmoid(g["opacities"]).numpy()
        np.testing.assert_allclose(alpha, np.clip(frames.rgba[k, :, 3] / 255.0, 1e-4, 1 - 1e-4),
                                   atol=1e-5)  # fmt: skip
    assert not np.array_equal(frames.means[0], frames.means[17])


def test_bad_messages_get_a_detail_and_the_socket_stays_open(render_app, done_clip):
    _, client = render_app
    with client.websocket_connect(f"/api/clips/{done_clip['id']}/render.ws") as socket:
        for message, words in [
            ("not json", "json"),
            ('{"frame": 100000}', "outside"),
            ('{"frame": 0, "size": 5000}', "size"),
            ('{"frame": 0, "zoom": 2}', "unknown keys"),
            ('{"frame": "0"}', "integer"),
            ("[1, 2]", "object"),
        ]:
            socket.send_text(message)
            reply = socket.receive_json()
            assert set(reply) == {"detail"} and words in reply["detail"].lower(), reply
        socket.send_json({"frame": 0, "size": 32})
        assert jpeg_pixels(socket.receive_bytes()).shape == (32, 32, 3)


def test_unknown_clip_closes_the_socket(render_app):
    from starlette.websockets import WebSocketDisconnect

    _, client = render_app
    with client.websocket_connect("/api/clips/" + "0" * 32 + "/render.ws") as socket:
        assert socket.receive_json() == {"detail": "unknown clip"}
        with pytest.raises(WebSocketDisconnect) as err:
            socket.receive_text()
    assert err.value.code == 4404


def test_a_page_of_another_site_is_refused(render_app, done_clip):
    from starlette.websockets import WebSocketDisconnect

    _, client = render_app
    evil = {"origin": "http://evil.example"}
    with client.websocket_connect(f"/api/clips/{done_clip['id']}/render.ws", headers=evil) as ws:
        assert "another site" in ws.receive_json()["detail"]
        with pytest.raises(WebSocketDisconnect) as err:
            ws.receive_text()
    assert err.value.code == 4403


def test_server_render_without_cuda_is_refused(viewer_head):
    from emotalk3d.viewer.server import create_app

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        create_app(head=viewer_head, server_render=True)
