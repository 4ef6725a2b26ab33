"""Fixtures of the viewer tests: a tiny untrained bundle, the app on it, and a live server.

`viewer_server` (a live uvicorn on a free 127.0.0.1 port, yielding its base URL) is shared
with the browser tests; `viewer_app` / `viewer_client` serve the API tests in-process. All
share one loaded `TalkingHead` of a tiny untrained bundle (the geometry moves with the audio),
and offer the repository's examples/ clips.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # splatref: the browser tests' shared helpers

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def speechlike(seconds: float = 1.2, seed: int = 0, rate: int = 16_000) -> np.ndarray:  # [S]
    """A voiced, syllable-modulated harmonic signal in [-0.5, 0.5] (float32, no espeak needed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t) + rng.uniform(-5, 5)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    out = voice * envelope + 0.01 * rng.standard_normal(t.shape)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="session")
def make_speech():
    """`speechlike` as a fixture (conftest modules are not importable with importlib mode)."""
    return speechlike


@pytest.fixture(scope="session")
def viewer_bundle(tmp_path_factory) -> Path:
    """A tiny untrained bundle (S2GNet's zero head perturbed so the face moves)."""
    from emotalk3d.inference.checkpoint import build_untrained_bundle

    return build_untrained_bundle(
        tmp_path_factory.mktemp("viewer_bundle") / "tiny", num_otf=200, perturb=2.0
    )


@pytest.fixture(scope="session")
def viewer_head(viewer_bundle):
    """The tiny bundle loaded (torch backend, CPU), with random higher SH bands so colours
    depend on the view direction (the frontal-camera colour convention is then tested)."""
    import torch

    from emotalk3d.inference.pipeline import TalkingHead

    head = TalkingHead.from_checkpoints(viewer_bundle, backend="torch")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in head.head.named_parameters():
            if name.endswith("shN"):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return head


@pytest.fixture(scope="session")
def viewer_app(viewer_head):
    """The viewer app on the tiny head with the repository's examples."""
    from emotalk3d.viewer.server import create_app

    if not any(EXAMPLES.glob("*.wav")):
        pytest.skip(f"no example clips in {EXAMPLES} (they are committed with the repo)")
    app = create_app(head=viewer_head, examples_dir=EXAMPLES)
    yield app
    app.state.store.close()


@pytest.fixture(scope="session")
def viewer_client(viewer_app):
    """A TestClient of `viewer_app` that answers server errors as responses (no re-raise)."""
    from fastapi.testclient import TestClient

    return TestClient(viewer_app, raise_server_exceptions=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def viewer_server(viewer_head) -> Iterator[str]:
    """A live viewer (uvicorn in a background thread) on a free 127.0.0.1 port; its base URL.

    Serves the tiny untrained bundle and the repository's examples; the web client from
    `EMOTALK3D_WEB_DIST` or viewer/web/dist (as `emotalk3d viewer` does).
    """
    import uvicorn

    from emotalk3d.viewer.server import create_app

    app = create_app(head=viewer_head, examples_dir=EXAMPLES)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=_free_port(), log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="viewer-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the viewer server did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(timeout=15.0)
