"""Optional server-side rendering (`emotalk3d viewer --server-render`, CUDA): JPEG frames over a
websocket, for clients without WebGL2.

The server renders exactly what the browser draws: the clip's frame records (f16 means, i8
quaternions, u8 colour and opacity) with the canonical scales, colour as a DC-only SH
coefficient, through `emotalk3d.render.rasterize.render_gaussians` (gsplat on CUDA). Protocol
(docs/viewer.md, "Server-rendered frames"): the client sends JSON text messages
`{"frame": k, "yaw": deg, "pitch": deg, "distance": mm, "size": px, "quality": q}` (all but
`frame` optional) and gets one binary message per request, a JPEG; a bad request gets a text
message `{"detail": "..."}` and the socket stays open.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emotalk3d.render.cameras import intrinsics_from_fov, orbit_camera
from emotalk3d.render.rasterize import render_gaussians
from emotalk3d.render.sh import rgb_to_sh0
from emotalk3d.viewer.clips import Clip, ClipStore
from emotalk3d.viewer.encode import align4, decode_canonical, frame_stride

MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 32, 1024, 512
DEFAULT_QUALITY = 85


class RenderRequestError(ValueError):
    """A render request that cannot be served (the message says why)."""


@dataclass
class RenderRequest:
    """One validated render request."""

    frame: int
    yaw: float = 0.0
    pitch: float = 0.0
    distance: float | None = None
    size: int = DEFAULT_SIZE
    quality: int = DEFAULT_QUALITY


def parse_render_request(message: Any, num_frames: int) -> RenderRequest:
    """Validate a decoded JSON message into a `RenderRequest`.

    Raises:
        RenderRequestError: not an object, unknown keys, wrong types or values out of range.
    """
    if not isinstance(message, dict):
        raise RenderRequestError('send a JSON object such as {"frame": 0, "yaw": 30}')
    allowed = {"frame", "yaw", "pitch", "distance", "size", "quality"}
    unknown = sorted(set(message) - allowed)
    if unknown:
        raise RenderRequestError(f"unknown keys {unknown}; allowed: {sorted(allowed)}")

    def number(key: str, default: float | None, lo: float, hi: float) -> float | None:
        value = message.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RenderRequestError(f"{key} must be a number, got {value!r}")
        if not (math.isfinite(value) and lo <= value <= hi):
            raise RenderRequestError(f"{key} must lie in [{lo:g}, {hi:g}], got {value!r}")
        return float(value)

    frame = message.get("frame")
    if isinstance(frame, bool) or not isinstance(frame, int):
        raise RenderRequestError(f"frame must be an integer frame index, got {frame!r}")
    if not 0 <= frame < num_frames:
        raise RenderRequestError(f"frame {frame} is outside the clip's 0..{num_frames - 1}")
    size = number("size", DEFAULT_SIZE, MIN_SIZE, MAX_SIZE)
    quality = number("quality", DEFAULT_QUALITY, 1, 95)
    return RenderRequest(
        frame=frame,
        yaw=number("yaw", 0.0, -360.0, 360.0),
        pitch=number("pitch", 0.0, -89.0, 89.0),
        distance=number("distance", None, 50.0, 10_000.0),
        size=int(size),
        quality=int(quality),
    )


class FrameRenderer:
    """Renders clip frames from their stored records (one render at a time)."""

    def __init__(self, store: ClipStore, render_settings: dict, background: torch.Tensor,
                 device: str | torch.device) -> None:  # fmt: skip
        """
        Args:
            store: The clip store (records and the canonical binary).
            render_settings: The bundle's render settings (distance, target, height, fov_deg).
            background: [3] RGB in [0, 1].
            device: Where to render ("cuda" for gsplat; "cpu" renders with the torch backend).
        """
        self.store = store
        self.device = torch.device(device)
        self.settings = dict(render_settings)
        self.background = background.float().to(self.device)  # [3]
        canonical = decode_canonical(store.canonical)
        self.log_scales = torch.from_numpy(np.log(canonical.scales)).to(self.device)  # [N, 3]
        self.n = canonical.num_gaussians
        self._lock = threading.Lock()

    def gaussians(self, clip: Clip, frame: int) -> dict[str, torch.Tensor]:
        """Raw render parameters of one frame decoded from the clip's records."""
        n, stride, pad = self.n, frame_stride(self.n), align4(6 * self.n)
        record = np.frombuffer(clip.records, dtype=np.uint8, count=stride, offset=frame * stride)
        means = record[: 6 * n].view("<f2").astype(np.float32).reshape(n, 3)
        quats = record[pad : pad + 4 * n].view(np.int8).astype(np.float32).reshape(n, 4) / 127.0
        rgba = record[pad + 4 * n :].astype(np.float32).reshape(n, 4) / 255.0
        alpha = np.clip(rgba[:, 3], 1e-4, 1.0 - 1e-4)

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        return {
            "means": tensor(means),  # [N, 3]
            "quats": tensor(quats),  # [N, 4]
            "scales": self.log_scales,  # [N, 3]
            "opacities": tensor(np.log(alpha / (1.0 - alpha))),  # [N]
            "colors": rgb_to_sh0(tensor(rgba[:, :3]))[:, None, :],  # [N, 1, 3]
        }

    @torch.no_grad()
    def render(self, clip: Clip, request: RenderRequest) -> bytes:
        """One frame as JPEG bytes, seen from the orbit camera of `request`."""
        from PIL import Image

        rs = self.settings
        distance = (
            float(rs.get("distance", 650.0)) if request.distance is None else request.distance
        )
        target = rs.get("target", (0.0, -30.0, 0.0))
        height = float(rs.get("height", 0.0))
        view = orbit_camera(request.yaw, request.pitch, distance, target, height)
        K = intrinsics_from_fov(float(rs.get("fov_deg", 30.0)), request.size, request.size)
        with self._lock:
            g = self.gaussians(clip, request.frame)
            out = render_gaussians(
                **g,
                viewmats=torch.tensor(view, dtype=torch.float32, device=self.device)[None],
                Ks=torch.tensor(K, dtype=torch.float32, device=self.device)[None],
                width=request.size,
                height=request.size,
                background=self.background,
                sh_degree=0,
                render_depth=False,
            )
            pixels = (out.image[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=request.quality)
        return buffer.getvalue()
