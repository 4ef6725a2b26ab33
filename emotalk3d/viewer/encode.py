"""The viewer's binary layouts: canonical Gaussians ("E3DC") and per-frame data ("E3DF").

docs/viewer.md documents both byte for byte; the browser client decodes them in
viewer/web/src/decode.ts. All numbers are little-endian and every array starts at a 4-byte
aligned offset.

Canonical, once per server (header 16 bytes)::

    magic b"E3DC" | u32 version = 1 | u32 N | u32 reserved = 0
    means  f32[N*3]   neutral pose, mm, head frame
    scales f32[N*3]   activated (exp of the log-scale), mm
    quats  f32[N*4]   normalised, w x y z
    rgba   u8[N*4]    SH colour seen from the frontal camera, clamped to [0, 1] x 255;
                      alpha = activated opacity x 255

Frames (header 32 bytes)::

    magic b"E3DF" | u32 version = 1 | u32 N | u32 start | u32 count | f32 fps | u32 0 | u32 0
    `count` records back to back, each of align4(6N) + 4N + 4N bytes:
    means f16[N*3] (absolute mm) + zero padding to a multiple of 4 bytes,
    quats i8[N*4] (normalised w x y z x 127, rounded), rgba u8[N*4] (as in canonical).

Encoding is vectorised over all frames and Gaussians (numpy / torch); the activation is
`emotalk3d.render.rasterize.activate`, the same maths the rasterizer uses. `decode_canonical`
and `decode_frames` are a plain-Python reference reader (struct + explicit offsets, no shared
code with the encoder) used by the tests and the load benchmark to check the layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from emotalk3d.render.rasterize import activate

CANONICAL_MAGIC = b"E3DC"
FRAMES_MAGIC = b"E3DF"
VERSION = 1
CANONICAL_HEADER_BYTES = 16
FRAMES_HEADER_BYTES = 32


def align4(n: int) -> int:
    """`n` rounded up to a multiple of 4."""
    return (int(n) + 3) // 4 * 4


def frame_stride(num_gaussians: int) -> int:
    """Bytes of one frame record: align4(6N) + 4N + 4N."""
    n = int(num_gaussians)
    return align4(6 * n) + 8 * n


@dataclass
class ViewerFrames:
    """Activated, quantisable per-frame Gaussians of T frames (what the browser draws).

    Attributes:
        means: [T, N, 3] float32 mm.
        scales: [T, N, 3] float32 mm (standard deviations).
        quats: [T, N, 4] float32 unit quaternions, wxyz.
        rgba: [T, N, 4] float32 in [0, 1]: frontal-view SH colour and opacity.
    """

    means: np.ndarray  # [T, N, 3]
    scales: np.ndarray  # [T, N, 3]
    quats: np.ndarray  # [T, N, 4]
    rgba: np.ndarray  # [T, N, 4]


@torch.no_grad()
def activate_for_viewer(
    gaussians,  # FrameGaussians of T frames (raw parameters)
    viewmat: Tensor,  # [4, 4] world-to-camera of the view the colours are evaluated for
) -> ViewerFrames:
    """Activate raw `FrameGaussians` for the browser: colours seen from `viewmat`'s centre.

    The browser renders from any angle with one colour per Gaussian and frame, so the
    view-dependent SH colour is evaluated once, for the direction from the default frontal
    camera to each mean, and clamped to [0, 1].
    """
    act = activate(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        gaussians.sh,
        viewmat.to(gaussians.means)[None],  # [1, 4, 4]
        gaussians.sh_degree,
    )
    colors = act.colors[..., 0, :, :].clamp(0.0, 1.0)  # [T, N, 3]
    rgba = torch.cat([colors, act.opacities[..., None]], dim=-1)  # [T, N, 4]
    return ViewerFrames(
        means=gaussians.means.float().cpu().numpy(),
        scales=act.scales.float().cpu().numpy(),
        quats=act.quats.float().cpu().numpy(),
        rgba=rgba.float().cpu().numpy(),
    )


def _to_u8(values: np.ndarray) -> np.ndarray:  # [...] in [0, 1] -> [...] uint8
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def encode_canonical(frame: ViewerFrames) -> bytes:
    """The canonical ("E3DC") binary of the first frame of `frame` (the neutral pose)."""
    means = np.ascontiguousarray(frame.means[0], dtype="<f4")  # [N, 3]
    n = means.shape[0]
    header = CANONICAL_MAGIC + struct.pack("<III", VERSION, n, 0)
    return b"".join(
        [
            header,
            means.tobytes(),
            np.ascontiguousarray(frame.scales[0], dtype="<f4").tobytes(),
            np.ascontiguousarray(frame.quats[0], dtype="<f4").tobytes(),
            _to_u8(frame.rgba[0]).tobytes(),
        ]
    )


def encode_frame_records(frames: ViewerFrames) -> bytes:
    """The T frame records of `frames`, back to back (no header), vectorised over T and N."""
    t, n = frames.means.shape[:2]
    pad = align4(6 * n)
    out = np.zeros((t, frame_stride(n)), dtype=np.uint8)  # [T, stride]
    out[:, : 6 * n] = np.ascontiguousarray(frames.means, dtype="<f2").reshape(t, -1).view(np.uint8)
    q = np.clip(np.rint(frames.quats * 127.0), -127, 127).astype(np.int8)  # [T, N, 4]
    out[:, pad : pad + 4 * n] = q.reshape(t, -1).view(np.uint8)
    out[:, pad + 4 * n :] = _to_u8(frames.rgba).reshape(t, -1)
    return out.tobytes()


def frames_header(num_gaussians: int, start: int, count: int, fps: float) -> bytes:
    """The 32-byte "E3DF" header."""
    return FRAMES_MAGIC + struct.pack(
        "<IIIIfII", VERSION, int(num_gaussians), int(start), int(count), float(fps), 0, 0
    )


# ------------------------------------------------------------------ reference decoder
@dataclass
class DecodedCanonical:
    """A parsed "E3DC" binary (see the module docstring)."""

    version: int
    num_gaussians: int
    means: np.ndarray  # [N, 3] float32
    scales: np.ndarray  # [N, 3] float32
    quats: np.ndarray  # [N, 4] float32
    rgba: np.ndarray  # [N, 4] uint8


@dataclass
class DecodedFrames:
    """A parsed "E3DF" binary (see the module docstring)."""

    version: int
    num_gaussians: int
    start: int
    count: int
    fps: float
    means: np.ndarray  # [count, N, 3] float32 (from f16)
    quats: np.ndarray  # [count, N, 4] int8
    rgba: np.ndarray  # [count, N, 4] uint8


class LayoutError(ValueError):
    """Bytes that do not follow the documented layout."""


def decode_canonical(data: bytes) -> DecodedCanonical:
    """Parse a canonical binary, checking magic, version, reserved word, size and alignment."""
    if len(data) < 16:
        raise LayoutError(f"canonical binary too short for its header: {len(data)} bytes")
    magic = bytes(data[0:4])
    if magic != b"E3DC":
        raise LayoutError(f"canonical magic must be b'E3DC', got {magic!r}")
    version, n, reserved = struct.unpack_from("<III", data, 4)
    if version != 1 or reserved != 0:
        raise LayoutError(f"canonical version {version} / reserved {reserved}, expected 1 / 0")
    offsets = {}
    offset = 16
    for name, size in (("means", 12 * n), ("scales", 12 * n), ("quats", 16 * n), ("rgba", 4 * n)):
        if offset % 4:
            raise LayoutError(f"canonical {name} at unaligned offset {offset}")
        offsets[name] = offset
        offset += size
    if len(data) != offset:
        raise LayoutError(f"canonical binary of N={n} must be {offset} bytes, got {len(data)}")

    def f32(name: str, cols: int) -> np.ndarray:
        return np.frombuffer(data, dtype="<f4", count=n * cols, offset=offsets[name]).reshape(
            n, cols
        )

    rgba = np.frombuffer(data, dtype=np.uint8, count=4 * n, offset=offsets["rgba"])
    return DecodedCanonical(
        version=version,
        num_gaussians=n,
        means=f32("means", 3).astype(np.float32),
        scales=f32("scales", 3).astype(np.float32),
        quats=f32("quats", 4).astype(np.float32),
        rgba=rgba.reshape(n, 4).copy(),
    )


def decode_frames(data: bytes) -> DecodedFrames:
    """Parse a frames binary, checking magic, version, reserved words, size and alignment."""
    if len(data) < 32:
        raise LayoutError(f"frames binary too short for its header: {len(data)} bytes")
    magic = bytes(data[0:4])
    if magic != b"E3DF":
        raise LayoutError(f"frames magic must be b'E3DF', got {magic!r}")
    version, n, start, count = struct.unpack_from("<IIII", data, 4)
    (fps,) = struct.unpack_from("<f", data, 20)
    reserved = struct.unpack_from("<II", data, 24)
    if version != 1 or reserved != (0, 0):
        raise LayoutError(f"frames version {version} / reserved {reserved}, expected 1 / (0, 0)")
    means_bytes = 6 * n
    padded = means_bytes + (-means_bytes) % 4
    stride = padded + 4 * n + 4 * n
    if len(data) != 32 + count * stride:
        raise LayoutError(
            f"frames binary of N={n}, count={count} must be {32 + count * stride} bytes "
            f"(stride {stride}), got {len(data)}"
        )
    means = np.empty((count, n, 3), dtype=np.float32)
    quats = np.empty((count, n, 4), dtype=np.int8)
    rgba = np.empty((count, n, 4), dtype=np.uint8)
    for i in range(count):
        base = 32 + i * stride
        if base % 4 or (base + padded) % 4 or (base + padded + 4 * n) % 4:
            raise LayoutError(f"frame {i} has an unaligned array (base offset {base})")
        pad_bytes = bytes(data[base + means_bytes : base + padded])
        if pad_bytes.strip(b"\0"):
            raise LayoutError(f"frame {i}: padding after the means must be zero bytes")
        means[i] = np.frombuffer(data, dtype="<f2", count=3 * n, offset=base).reshape(n, 3)
        quats[i] = np.frombuffer(data, dtype=np.int8, count=4 * n, offset=base + padded).reshape(
            n, 4
        )
        rgba[i] = np.frombuffer(
            data, dtype=np.uint8, count=4 * n, offset=base + padded + 4 * n
        ).reshape(n, 4)
    return DecodedFrames(
        version=version,
        num_gaussians=n,
        start=start,
        count=count,
        fps=float(fps),
        means=means,
        quats=quats,
        rgba=rgba,
    )
