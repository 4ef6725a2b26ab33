"""Gaussians to and from .ply files in the standard 3D Gaussian Splatting layout.

One vertex element, float32, binary little-endian, properties in this order:

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}
    opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

Values are *pre-activation* (what `render_gaussians` takes): logit opacity, log-scales,
unnormalised wxyz quaternion (rot_0 = w), SH coefficients. Normals are written as zeros.
f_rest is channel-major: the K - 1 higher-order coefficients of red, then of green, then of
blue, i.e. f_rest_{c (K-1) + k - 1} = sh[:, k, c] for k >= 1. This is what the reference 3DGS
code, gsplat's exporter and common splat viewers read.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from emotalk3d.render.sh import sh_degree_from_bases


def ply_property_names(num_sh_bases: int) -> list[str]:
    """The standard 3DGS property names, in file order, for K = `num_sh_bases` coefficients."""
    sh_degree_from_bases(num_sh_bases)
    rest = [f"f_rest_{i}" for i in range(3 * (num_sh_bases - 1))]
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + rest
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _as_array(name: str, x: Tensor | np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    ok = arr.ndim == len(shape) and all(
        s is None or s == a for s, a in zip(shape, arr.shape, strict=True)
    )
    if not ok:
        want = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"save_ply: {name} must be {want}; got {tuple(arr.shape)}")
    return arr.astype(np.float32, copy=False)


def save_ply(
    path: str | os.PathLike,
    means: Tensor,  # [N, 3] mm
    quats: Tensor,  # [N, 4] raw wxyz
    scales: Tensor,  # [N, 3] log-scales
    opacities: Tensor,  # [N] logits
    sh: Tensor,  # [N, K, 3] SH coefficients (K = 1, 4, 9, 16)
) -> Path:
    """Write Gaussians as a standard 3DGS .ply (atomically: temp file, then rename).

    Returns:
        The path written.

    Raises:
        ValueError: A tensor has the wrong shape or N differs between them.
    """
    m = _as_array("means", means, (None, 3))
    n = m.shape[0]
    q = _as_array("quats", quats, (n, 4))
    s = _as_array("scales", scales, (n, 3))
    o = _as_array("opacities", opacities, (n,))
    f = _as_array("sh", sh, (n, None, 3))
    k = f.shape[1]
    try:
        sh_degree_from_bases(k)
    except ValueError as e:
        raise ValueError(f"save_ply: sh must be [N, K, 3] with K in 1, 4, 9, 16; {e}") from e
    names = ply_property_names(k)
    rest = f[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # channel-major
    columns = [m, np.zeros((n, 3), np.float32), f[:, 0, :], rest, o[:, None], s, q]
    data = np.concatenate(columns, axis=1)
    assert data.shape == (n, len(names)), data.shape
    vertex = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = data[:, i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_ply(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a standard 3DGS .ply written by `save_ply` or another 3DGS tool.

    Returns:
        float32 tensors, pre-activation: means [N, 3], quats [N, 4] (wxyz), scales [N, 3],
        opacities [N], sh [N, K, 3].

    Raises:
        ValueError: The file lacks a vertex element or a standard property.
    """
    ply = PlyData.read(str(path))
    if "vertex" not in [el.name for el in ply.elements]:
        raise ValueError(f"load_ply: {path} has no 'vertex' element; not a 3DGS .ply")
    v = ply["vertex"].data
    present = set(v.dtype.names)
    n_rest = sum(1 for name in present if name.startswith("f_rest_"))
    if n_rest % 3:
        raise ValueError(f"load_ply: {path} has {n_rest} f_rest_* properties; expected 3(K-1)")
    k = 1 + n_rest // 3
    missing = [p for p in ply_property_names(k) if p not in present and p[0] != "n"]
    if missing:
        raise ValueError(f"load_ply: {path} lacks the 3DGS properties {missing}")

    def cols(*names: str) -> np.ndarray:
        return np.stack([np.asarray(v[name], dtype=np.float32) for name in names], axis=1)

    dc = cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :]  # [N, 1, 3]
    rest = np.zeros((len(v), 0), np.float32)
    if n_rest:
        rest = cols(*[f"f_rest_{i}" for i in range(n_rest)])
    rest = rest.reshape(len(v), 3, k - 1)
    sh = np.concatenate([dc, rest.transpose(0, 2, 1)], axis=1)  # [N, K, 3]
    out = {
        "means": cols("x", "y", "z"),
        "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"),
        "scales": cols("scale_0", "scale_1", "scale_2"),
        "opacities": cols("opacity")[:, 0],
        "sh": sh,
    }
    return {key: torch.from_numpy(np.ascontiguousarray(val)) for key, val in out.items()}
