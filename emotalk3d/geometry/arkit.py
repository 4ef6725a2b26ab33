"""ARKit export: fit the 52 ARKit blendshape weights to mesh sequences and write them as the
CSV that Unreal's Live Link Face importer reads, or as JSON (issue 3, "ARKit export").

Fitting is bounded linear least squares per frame against a `LinearRig`:

    min_w || (mesh - base) - w @ deltas ||^2   subject to 0 <= w <= 1

with base = rig.neutral (+ identity offsets, or an explicit neutral). The normal matrix
G = D D^T [K, K] is formed once; each frame then needs only c = D (mesh - base) [K]. Frames whose
unconstrained solution already lies in the box are solved in one batched solve; the others go
to an exact bounded solver (scipy's BVLS on the Cholesky-reduced K x K problem). Rig shapes map
to ARKit columns with `LinearRig.rig_to_arkit_matrix` (ICT's split browInnerUp_L/_R and
cheekPuff_L/_R are averaged; shapes the rig lacks are 0).

Live Link Face CSV (what the iPhone app exports and Unreal's LiveLinkFaceImporter reads):

    Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,...,TongueOut,HeadYaw,HeadPitch,
    HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    00:00:00:00.000,61,0.000000,...

61 values per row: the 52 blendshapes in Live Link Face order (which swaps JawLeft/JawRight
and MouthLeft/MouthRight relative to Apple's list), then 9 head and eye rotations (written as
0). The timecode is HH:MM:SS:FF.mmm with FF the frame within the second at `fps` and mmm the
sub-frame fraction in thousandths.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from emotalk3d.constants import ARKIT_NAMES
from emotalk3d.geometry.rig import LinearRig


def _apple_name(name: str) -> str:
    """ICT spelling -> Apple ARKit spelling: mouthSmile_L -> mouthSmileLeft."""
    if name.endswith("_L"):
        return name[:-2] + "Left"
    if name.endswith("_R"):
        return name[:-2] + "Right"
    return name


APPLE_NAMES: tuple[str, ...] = tuple(_apple_name(n) for n in ARKIT_NAMES)
_LL_FROM_APPLE = {n: n[0].upper() + n[1:] for n in APPLE_NAMES}
# Live Link Face column order: Apple's order with JawRight before JawLeft, MouthRight before
# MouthLeft.
LIVE_LINK_NAMES: tuple[str, ...] = tuple(
    {"JawLeft": "JawRight", "JawRight": "JawLeft", "MouthLeft": "MouthRight",
     "MouthRight": "MouthLeft"}.get(_LL_FROM_APPLE[n], _LL_FROM_APPLE[n])
    for n in APPLE_NAMES
)  # fmt: skip
LIVE_LINK_ROTATIONS: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
LIVE_LINK_HEADER: tuple[str, ...] = (
    ("Timecode", "BlendShapeCount") + LIVE_LINK_NAMES + LIVE_LINK_ROTATIONS
)
# column j of the Live Link block holds ARKIT_NAMES[_LL_PERM[j]]
_APPLE_TO_LL = {a: ll for a, ll in _LL_FROM_APPLE.items()}
_LL_PERM = np.array([[_APPLE_TO_LL[a] for a in APPLE_NAMES].index(ll) for ll in LIVE_LINK_NAMES])


# ------------------------------------------------------------------------------------------
# fitting


def _bounded_solve(
    G: np.ndarray,  # [K, K] symmetric positive definite
    c: np.ndarray,  # [T, K]
    lo: float = 0.0,
    hi: float = 1.0,
    tol: float = 1e-6,
) -> np.ndarray:  # [T, K]
    """argmin_w 0.5 w^T G w - c^T w over the box [lo, hi]^K, for every row of c."""
    L = np.linalg.cholesky(G)
    w = np.linalg.solve(G, c.T).T  # unconstrained, batched
    bad = ((w < lo - tol) | (w > hi + tol)).any(1)
    w = np.clip(w, lo, hi)
    if bad.any():
        from scipy.linalg import solve_triangular
        from scipy.optimize import lsq_linear

        # 0.5 w^T G w - c^T w = 0.5 || L^T w - L^{-1} c ||^2 + const
        A = L.T
        rhs = solve_triangular(L, c[bad].T, lower=True).T
        out = [lsq_linear(A, b, bounds=(lo, hi), method="bvls", tol=1e-12).x for b in rhs]
        w[bad] = np.stack(out)
    return np.clip(w, lo, hi)


def fit_rig_weights(
    rig: LinearRig,
    meshes: np.ndarray | Tensor,  # [T, P, 3] or [P, 3]
    identity_weights: np.ndarray | Tensor | None = None,  # [K_id]
    neutral: np.ndarray | Tensor | None = None,  # [P, 3]
    vertex_mask: np.ndarray | None = None,  # [P] bool
) -> np.ndarray:  # [T, K] (or [K])
    """Per-frame expression weights of `rig` in [0, 1] (the rig's own K shapes).

    Args:
        rig: The rig the meshes follow (same vertex count and order).
        meshes: Mesh sequence in millimetres.
        identity_weights: The subject's identity weights; the base mesh is then
            rig.neutral + identity offsets.
        neutral: An explicit base (neutral) mesh instead; overrides identity_weights.
        vertex_mask: Fit only on these vertices (e.g. rig.regions["face"]).

    Raises:
        ValueError: when the meshes do not have the rig's vertex count.
    """
    m = meshes.detach().cpu().numpy() if isinstance(meshes, Tensor) else np.asarray(meshes)
    single = m.ndim == 2
    if single:
        m = m[None]
    P = rig.num_vertices
    if m.ndim != 3 or m.shape[1:] != (P, 3):
        raise ValueError(
            f"meshes must be [T, P={P}, 3] (vertices of rig {rig.name!r}), got "
            f"{list(np.shape(meshes))}; fit against the rig the meshes came from"
        )
    if neutral is not None:
        base = np.asarray(neutral.detach().cpu() if isinstance(neutral, Tensor) else neutral)
        if base.shape != (P, 3):
            raise ValueError(f"neutral must be [P={P}, 3], got {list(base.shape)}")
    elif identity_weights is not None:
        iw = identity_weights
        iw = np.asarray(iw.detach().cpu() if isinstance(iw, Tensor) else iw, np.float32)
        base = rig.identity_neutral(iw)
    else:
        base = rig.neutral
    base = base.astype(np.float64)
    mask = np.ones(P, bool) if vertex_mask is None else np.asarray(vertex_mask, bool)
    D = rig.expression_deltas[:, mask].reshape(rig.num_expressions, -1).astype(np.float64)
    G = D @ D.T
    G += np.eye(len(G)) * (1e-10 * np.trace(G) / len(G) + 1e-12)
    r = (m[:, mask].astype(np.float64) - base[mask]).reshape(len(m), -1)
    w = _bounded_solve(G, r @ D.T).astype(np.float32)
    return w[0] if single else w


def fit_arkit_weights(
    rig: LinearRig,
    meshes: np.ndarray | Tensor,  # [T, P, 3] or [P, 3]
    identity_weights: np.ndarray | Tensor | None = None,  # [K_id]
    neutral: np.ndarray | Tensor | None = None,  # [P, 3]
    vertex_mask: np.ndarray | None = None,  # [P] bool
) -> np.ndarray | Tensor:  # [T, 52] (or [52])
    """The 52 ARKit weights per frame, in `ARKIT_NAMES` order, each in [0, 1].

    Fits the rig's own shapes (`fit_rig_weights`, same arguments), then maps them to ARKit
    columns: ICT's split halves are averaged, shapes the rig lacks (tongueOut on ICT) are 0.
    Torch in, torch out (float32, same device); numpy in, float32 numpy out.
    """
    w = fit_rig_weights(rig, meshes, identity_weights, neutral, vertex_mask)
    a = np.clip(w @ rig.rig_to_arkit_matrix(), 0.0, 1.0).astype(np.float32)
    if isinstance(meshes, Tensor):
        return torch.from_numpy(a).to(meshes.device)
    return a


def arkit_to_rig_weights(
    rig: LinearRig,
    arkit: np.ndarray,  # [..., 52]
) -> np.ndarray:  # [..., K]
    """Rig expression weights for ARKit weights (split halves both take the ARKit weight)."""
    a = np.asarray(arkit, np.float32)
    if a.shape[-1] != len(ARKIT_NAMES):
        raise ValueError(
            f"ARKit weights must be [..., 52] in ARKIT_NAMES order, got {list(a.shape)}"
        )
    return a @ rig.arkit_to_rig_matrix()


# ------------------------------------------------------------------------------------------
# writers


def _check_weights(weights, fps: float) -> np.ndarray:  # [T, 52]
    w = weights.detach().cpu().numpy() if isinstance(weights, Tensor) else np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES):
        raise ValueError(f"weights must be [T, 52] in ARKIT_NAMES order (fit_arkit_weights "
                         f"gives that), got {list(w.shape)}")  # fmt: skip
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or infinite values")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return w.astype(np.float64)


def _atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def live_link_timecode(frame: int, fps: float) -> str:
    """HH:MM:SS:FF.mmm of frame `frame` at `fps` (FF: frame in the second; mmm: sub-frame)."""
    seconds = frame / fps
    whole = math.floor(seconds + 1e-9)
    frames = (seconds - whole) * fps
    ff = math.floor(frames + 1e-6)
    sub = min(999, max(0, round((frames - ff) * 1000)))
    h, rem = divmod(whole, 3600)
    mnt, sec = divmod(rem, 60)
    return f"{h:02d}:{mnt:02d}:{sec:02d}:{ff:02d}.{sub:03d}"


def write_live_link_csv(path: str | os.PathLike, weights, fps: float) -> Path:
    """Write ARKit weights [T, 52] (ARKIT_NAMES order) as a Live Link Face CSV, atomically.

    Head and eye rotation columns are written as 0. Returns the path."""
    w = _check_weights(weights, fps)
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(LIVE_LINK_HEADER)
    n = len(LIVE_LINK_NAMES) + len(LIVE_LINK_ROTATIONS)
    zeros = ["0.000000"] * len(LIVE_LINK_ROTATIONS)
    for t, row in enumerate(w[:, _LL_PERM]):
        wr.writerow([live_link_timecode(t, fps), n, *(f"{v:.6f}" for v in row), *zeros])
    return _atomic_write_text(path, buf.getvalue())


def read_live_link_csv(path: str | os.PathLike) -> np.ndarray:  # [T, 52]
    """Read the 52 blendshape columns of a Live Link Face CSV back in ARKIT_NAMES order."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["Timecode", "BlendShapeCount"]:
        raise ValueError(f"{path} is not a Live Link Face CSV (header must start with "
                         "Timecode,BlendShapeCount)")  # fmt: skip
    header = rows[0]
    missing = [n for n in LIVE_LINK_NAMES if n not in header]
    if missing:
        raise ValueError(f"{path} lacks blendshape columns: {', '.join(missing)}")
    cols = [header.index(_APPLE_TO_LL[a]) for a in APPLE_NAMES]
    return np.array([[float(r[c]) for c in cols] for r in rows[1:]], np.float32).reshape(-1, 52)


def write_arkit_json(path: str | os.PathLike, weights, fps: float) -> Path:
    """Write ARKit weights [T, 52] as JSON, atomically:
    {"format": "arkit-blendshapes", "version": 1, "fps", "num_frames",
     "names": Apple ARKit names (eyeBlinkLeft, ...), "weights": [[52 floats] per frame]}."""
    w = _check_weights(weights, fps)
    doc = {
        "format": "arkit-blendshapes",
        "version": 1,
        "fps": float(fps),
        "num_frames": int(len(w)),
        "names": list(APPLE_NAMES),
        "weights": [[round(float(v), 6) for v in row] for row in w],
    }
    return _atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
