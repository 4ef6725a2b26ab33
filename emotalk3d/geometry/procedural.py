"""The built-in procedural head: a LinearRig generated from code, no file (DESIGN.md section 4).

Construction (docs/rigs.md has the figures):

- Skin: a latitude-longitude grid (rows from the crown to under the chin, columns around the
  vertical axis, denser on the face) on a superellipsoid-like head, 148 mm wide, ~230 mm tall,
  ~215 mm deep with the nose; the lower front is flattened (n = 3 profile) into a face and the
  jaw narrows toward the chin. Facial features are smooth bumps and hollows along +z: nose
  ridge and wings, eye sockets with eyeballs, brow ridge, cheekbones, lips, chin.
- Mouth: one grid row lies exactly on the lip line; between the mouth corners its vertices are
  duplicated (upper- and lower-lip copies), so the lips can part. Behind them sit a dark mouth
  cavity (a half ellipsoid open to the front), two teeth rows and a tongue, all kept inside the
  skin; the lower half of the cavity, the lower teeth and the tongue move with the jaw.
- Eyes: the eye opening is part of the skin surface (the "eyeballs" region, slightly convex);
  eyeBlink slides the upper lid down onto the lower lid and folds the eye surface under it.
- Expressions are analytic displacement fields in millimetres (ARKit semantics, all 52);
  jawOpen rotates the jaw region 11 degrees about a jaw pivot in front of the ears.
- Identity: 13 smooth shape modes (head width/height/depth, jaw width, face length, nose
  length/width, lip thickness, mouth width, eye spacing, chin, brow ridge, cheekbones).

Everything is numpy, vectorised, deterministic; `small` takes well under a second.
"""

from __future__ import annotations

import numpy as np

from emotalk3d.constants import ARKIT_NAMES
from emotalk3d.geometry.rig import LinearRig, face_normals, origin_offset

# grid rows, grid columns, teeth columns, interior rows, per resolution
RESOLUTIONS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (30, 36, 9, 6),
    "small": (58, 72, 17, 10),
    "full": (118, 150, 33, 18),
}

# design dimensions (mm) before centring; eye centres at y = 0
HALF_WIDTH = 74.0
HALF_HEIGHT = 118.0
FRONT_DEPTH = 95.0
BACK_DEPTH = 105.0
EYE_X = 32.0
NOSE_TIP_Y = -45.0
MOUTH_Y = -68.0
MOUTH_HALF_WIDTH = 24.0
CHIN_Y = -104.0
JAW_PIVOT = (-25.0, -5.0)  # (y, z) of the jaw hinge axis (parallel to x)
JAW_OPEN_DEG = 11.0

IDENTITY_NAMES = (
    "head_width", "head_height", "head_depth", "jaw_width", "face_length", "nose_length",
    "nose_width", "lip_thickness", "mouth_width", "eye_spacing", "chin", "brow_ridge",
    "cheekbones",
)  # fmt: skip


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float):
    return np.exp(-(((x - cx) / sx) ** 2) - ((y - cy) / sy) ** 2)


def _warped(n: int, lo: float, hi: float, centre: float, width: float, gain: float,
            endpoint: bool) -> np.ndarray:  # fmt: skip
    """n samples in [lo, hi] whose density is (1 + gain) times higher around `centre`."""
    t = np.linspace(lo, hi, 4097)
    dens = 1.0 + gain * np.exp(-(((t - centre) / width) ** 2))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(t))])
    cdf /= cdf[-1]
    q = np.linspace(0, 1, n + (0 if endpoint else 1))[: n if not endpoint else None]
    return np.interp(q, cdf, t)


# ------------------------------------------------------------------------------------------
# skin


def _skin_point(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:  # [..., 3]
    """Base head surface (before features) at polar angle theta (0 = crown) and azimuth phi
    (0 = front, +pi/2 = subject's left)."""
    c = np.cos(theta)
    y = HALF_HEIGHT * c
    front = np.clip(np.cos(phi), 0.0, 1.0) ** 2
    n = 2.0 + 1.2 * front * _smoothstep(10.0, -50.0, y)  # flatter face below the eyes
    s = np.clip(1.0 - np.abs(c) ** n, 0.0, 1.0) ** (1.0 / n)
    jaw = _smoothstep(-45.0, -112.0, y)
    x = HALF_WIDTH * s * np.sin(phi) * (1.0 - 0.12 * jaw)
    depth = np.where(np.cos(phi) > 0, FRONT_DEPTH, BACK_DEPTH)
    z = s * np.cos(phi) * depth
    return np.stack([x, y, z], -1)


def _features(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # [...] mm along +z
    """Facial relief on the front: nose, sockets, eyeballs, brows, cheeks, lips, chin."""
    d = np.zeros_like(x)
    # nose: a ridge growing from the root (y = 5) to the tip, wings beside the tip
    t = np.clip((5.0 - y) / (5.0 - NOSE_TIP_Y), 0.0, 1.0)
    amp = 5.0 + 17.0 * t**1.5
    amp = np.where(y < NOSE_TIP_Y, 22.0 * np.exp(-(((y - NOSE_TIP_Y) / 5.0) ** 2)), amp)
    amp = np.where(y > 5.0, 5.0 * np.exp(-(((y - 5.0) / 9.0) ** 2)), amp)
    d += amp * np.exp(-((x / (4.5 + 6.0 * t)) ** 2))
    for sx in (-1.0, 1.0):
        d += 6.0 * _gauss(x, y, sx * 13.0, NOSE_TIP_Y + 2.0, 5.5, 5.5)
        d += -9.0 * _gauss(x, y, sx * EYE_X, 0.0, 17.0, 12.0)  # socket
        d += 6.5 * _gauss(x, y, sx * EYE_X, 0.0, 11.0, 7.0)  # eyeball bulge
        d += 4.0 * _gauss(x, y, sx * 30.0, 15.0, 22.0, 6.0)  # brow ridge
        d += 5.0 * _gauss(x, y, sx * 46.0, -24.0, 16.0, 14.0)  # cheekbone
        d += -2.5 * _gauss(x, y, sx * MOUTH_HALF_WIDTH, MOUTH_Y, 5.0, 5.0)  # corner
    d += 3.0 * _gauss(x, y, 0.0, 10.0, 10.0, 8.0)  # glabella
    d += 6.0 * _gauss(x, y, 0.0, MOUTH_Y + 5.0, 20.0, 5.0)  # upper lip
    d += 6.5 * _gauss(x, y, 0.0, MOUTH_Y - 6.0, 18.0, 6.0)  # lower lip
    d += -3.0 * _gauss(x, y, 0.0, MOUTH_Y - 17.0, 14.0, 4.0)  # mentolabial sulcus
    d += 9.0 * _gauss(x, y, 0.0, CHIN_Y + 6.0, 17.0, 10.0)  # chin
    return d


def _eye_frame(x: np.ndarray, y: np.ndarray, side: float):
    """Eye-relative coordinates: (dx, s, y_upper, y_lower) with s = sqrt(1 - (dx/w)^2)."""
    dx = x - side * EYE_X
    s = np.sqrt(np.clip(1.0 - (dx / 14.0) ** 2, 0.0, 1.0))
    return dx, s, 1.0 + 5.0 * s, 1.0 - 5.5 * s


# ------------------------------------------------------------------------------------------
# the generator


def procedural_head_rig(resolution: str = "small", seed: int | None = None) -> LinearRig:
    """The built-in head as a LinearRig (all 52 ARKit expressions, 13 identity modes).

    Args:
        resolution: "tiny" (~1,400 vertices), "small" (~4,900) or "full" (~19,000).
        seed: None gives the canonical head; an integer bakes a random identity
            (weights ~ N(0, 0.8^2)) into the neutral mesh, deterministically.

    Returns:
        A rig in millimetres following the shared conventions of `emotalk3d.geometry.rig`.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    R, NC, NT, NI = RESOLUTIONS[resolution]

    # ---- skin grid: rows theta (0 crown .. pi under the chin), one row on the lip line
    theta_m = np.arccos(MOUTH_Y / HALF_HEIGHT)
    thetas = _warped(R, 0.0, np.pi, 0.58 * np.pi, 0.35, 2.0, endpoint=True)
    r_m = int(np.argmin(np.abs(thetas - theta_m)))
    thetas[r_m] = theta_m
    rows = thetas[1:-1]  # rings; the poles are single vertices
    u = -np.pi + 2 * np.pi * np.arange(NC) / NC
    phis = _warped(NC, -np.pi, np.pi, 0.0, 0.9, 2.2, endpoint=False)
    phis = np.interp(u, np.linspace(-np.pi, np.pi, NC + 1),
                     np.concatenate([phis, [np.pi]]))  # fmt: skip
    phis[NC // 2] = 0.0  # a column on the midline
    TH, PH = np.meshgrid(rows, phis, indexing="ij")  # [R-2, NC]
    ring = _skin_point(TH, PH)
    pts = [_skin_point(np.array(0.0), np.array(0.0))[None], ring.reshape(-1, 3),
           _skin_point(np.array(np.pi), np.array(0.0))[None]]  # fmt: skip
    skin = np.concatenate(pts)
    theta_v = np.concatenate([[0.0], TH.ravel(), [np.pi]])
    phi_v = np.concatenate([[0.0], PH.ravel(), [0.0]])
    n_rings = R - 2

    def vid(i, j):  # ring i in 0..R-3, column j (wraps)
        return 1 + i * NC + (np.asarray(j) % NC)

    top, bottom = 0, 1 + n_rings * NC
    im = r_m - 1  # the lip-line ring
    slit_x = ring[im, :, 0]
    slit_cols = np.flatnonzero((np.abs(slit_x) < MOUTH_HALF_WIDTH) & (np.cos(phis) > 0))
    n_skin0 = len(skin)
    dup = n_skin0 + np.arange(len(slit_cols))  # lower-lip copies of the lip-line vertices
    skin = np.concatenate([skin, skin[vid(im, slit_cols)]])
    theta_v = np.concatenate([theta_v, theta_v[vid(im, slit_cols)]])
    phi_v = np.concatenate([phi_v, phi_v[vid(im, slit_cols)]])
    lower_copy = np.full(NC, -1)
    lower_copy[slit_cols] = dup

    faces = []
    j = np.arange(NC)
    faces.append(np.stack([np.full(NC, top), vid(0, j), vid(0, j + 1)], 1))
    for i in range(n_rings - 1):
        tl, tr = vid(i, j), vid(i, j + 1)
        if i == im:  # the band under the lip line uses the lower-lip copies
            tl = np.where(lower_copy[j] >= 0, lower_copy[j], tl)
            tr = np.where(lower_copy[(j + 1) % NC] >= 0, lower_copy[(j + 1) % NC], tr)
        bl, br = vid(i + 1, j), vid(i + 1, j + 1)
        faces.append(np.stack([tl, bl, br], 1))
        faces.append(np.stack([tl, br, tr], 1))
    faces.append(np.stack([vid(n_rings - 1, j), np.full(NC, bottom), vid(n_rings - 1, j + 1)], 1))
    skin_faces = np.concatenate(faces)

    # relief along +z on the front
    front_w = _smoothstep(0.15, 0.6, np.cos(phi_v)) * (theta_v > 0.15)
    skin[:, 2] += front_w * _features(skin[:, 0], skin[:, 1])
    # eyeballs: the eye opening, slightly convex
    eyeball = np.zeros(len(skin), bool)
    for side in (-1.0, 1.0):
        dx, s, yu, yl = _eye_frame(skin[:, 0], skin[:, 1], side)
        inside = (np.abs(dx) < 14.0) & (skin[:, 1] < yu) & (skin[:, 1] > yl) & (front_w > 0.5)
        eyeball |= inside
    n_skin = len(skin)

    # ---- interior: cavity, teeth, tongue (clamped inside the skin)
    mid = vid(im, NC // 2)
    z_lip = skin[mid, 2]
    interior_parts = []

    # cavity: back half of an ellipsoid, open to the front
    ct, cp = np.linspace(0.15, np.pi - 0.15, NI + 2), np.linspace(-np.pi / 2, np.pi / 2, NI + 4)
    T, P_ = np.meshgrid(ct, cp, indexing="ij")
    cav = np.stack([27.0 * np.sin(T) * np.sin(P_), MOUTH_Y - 3.0 + 24.0 * np.cos(T),
                    z_lip - 14.0 - 34.0 * np.sin(T) * np.cos(P_)], -1)  # fmt: skip
    interior_parts.append(("cavity", cav))
    # teeth: curved strips following the dental arch
    tx = np.linspace(-21.0, 21.0, NT)
    for name, y0, y1, zoff in (("teeth_upper", MOUTH_Y - 0.5, MOUTH_Y + 8.0, 6.0),
                               ("teeth_lower", MOUTH_Y - 8.5, MOUTH_Y + 0.5, 7.5)):  # fmt: skip
        ty = np.linspace(y1, y0, max(3, NI // 3))
        X_, Y_ = np.meshgrid(tx, ty, indexing="ij")
        Z_ = z_lip - zoff - X_**2 / 38.0
        interior_parts.append((name, np.stack([X_, Y_, Z_], -1)))
    # tongue: a flat dome in the lower jaw
    gt, gp = np.linspace(0.0, 0.5 * np.pi, NI // 2 + 2)[1:], np.linspace(-np.pi / 2, np.pi / 2, NI)
    T, P_ = np.meshgrid(gt, gp, indexing="ij")
    tongue = np.stack([19.0 * np.sin(T) * np.sin(P_), MOUTH_Y - 12.0 + 7.0 * np.cos(T),
                       z_lip - 30.0 + 24.0 * np.sin(T) * np.cos(P_)], -1)  # fmt: skip
    interior_parts.append(("tongue", tongue))

    verts = [skin]
    all_faces = [skin_faces]
    part_of = [np.zeros(n_skin, np.int64)]
    uv_list = [np.stack([(phi_v + np.pi) / (2 * np.pi), 1.0 - theta_v / np.pi], 1)]
    offset = n_skin
    for pi_, (_name, grid) in enumerate(interior_parts, start=1):
        a, b = grid.shape[:2]
        idx = offset + np.arange(a * b).reshape(a, b)
        q = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
        tri = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
        verts.append(grid.reshape(-1, 3))
        all_faces.append(tri)
        part_of.append(np.full(a * b, pi_))
        gu, gv = np.meshgrid(np.linspace(0, 1, a), np.linspace(0, 1, b), indexing="ij")
        uv_list.append(np.stack([0.02 * pi_ + 0.015 * gu.ravel(), 0.02 * gv.ravel()], 1))
        offset += a * b
    V = np.concatenate(verts)
    part = np.concatenate(part_of)
    F = np.concatenate(all_faces).astype(np.int64)
    uvs = np.clip(np.concatenate(uv_list), 0.0, 1.0)

    # keep the interior 3.5 mm inside the skin (z of the nearest front skin vertex in x, y)
    fr = (np.arange(n_skin) < n_skin0) & (front_w > 0.3) & (np.abs(skin[:, 1] - MOUTH_Y) < 45)
    ref = skin[fr]
    inner = np.flatnonzero(part > 0)
    for c0 in range(0, len(inner), 512):
        ii = inner[c0 : c0 + 512]
        d2 = ((V[ii, None, :2] - ref[None, :, :2]) ** 2).sum(-1)
        V[ii, 2] = np.minimum(V[ii, 2], ref[d2.argmin(1), 2] - 3.5)

    # orientation: skin outward, cavity toward the mouth (+z), teeth and tongue outward
    centres = {0: np.zeros(3), 1: np.array([0.0, MOUTH_Y, z_lip + 40.0]),
               2: np.array([0.0, MOUTH_Y, z_lip - 60.0]), 3: np.array([0.0, MOUTH_Y, z_lip - 60.0]),
               4: np.array([0.0, MOUTH_Y - 30.0, z_lip - 30.0])}  # fmt: skip
    fn = face_normals(V, F)
    fpart = part[F[:, 0]]
    for p_, c_ in centres.items():
        sel = fpart == p_
        if not sel.any():
            continue
        look = V[F[sel]].mean(1) - c_
        sign = np.einsum("ij,ij->i", fn[sel], look)
        if p_ == 1:
            sign = -sign  # the cavity faces its opening: normals point toward the front centre
        if (sign < 0).mean() > 0.5:
            F[np.flatnonzero(sel)] = F[np.flatnonzero(sel)][:, [0, 2, 1]]

    # ---- masks and weights used by the expressions
    P = len(V)
    X, Y, Z = V[:, 0], V[:, 1], V[:, 2]
    eyeballs = np.pad(eyeball, (0, P - n_skin))
    is_skin = part == 0
    is_dup = np.zeros(P, bool)
    is_dup[dup] = True
    upper_side = np.where(is_dup, 0.0, _smoothstep(MOUTH_Y - 1.5, MOUTH_Y + 1.5, Y))
    slit_upper = np.zeros(P, bool)
    slit_upper[vid(im, slit_cols)] = True
    upper_side[slit_upper] = 1.0
    lower_side = 1.0 - upper_side
    front = np.where(is_skin, np.concatenate([front_w, np.zeros(P - n_skin)]), 0.0)

    # jaw weight: below the lip line at the front, the boundary rising toward the hinge
    pivot_y, pivot_z = MOUTH_Y + 43.0, JAW_PIVOT[1]
    back = np.clip((z_lip - Z) / (z_lip - pivot_z), 0.0, 1.0)
    boundary = MOUTH_Y + (pivot_y - MOUTH_Y) * back
    width = 1.5 + 14.0 * back
    jaw = _smoothstep(boundary + 0.01, boundary - width, Y) * _smoothstep(pivot_z - 25, pivot_z, Z)
    jaw = np.where(is_dup, 1.0, jaw)
    jaw = np.where(slit_upper, 0.0, jaw)
    jaw[part == 1] = _smoothstep(MOUTH_Y + 6.0, MOUTH_Y - 8.0, Y[part == 1])
    jaw[part == 2] = 0.0
    jaw[(part == 3) | (part == 4)] = 1.0
    tooth = (part == 2) | (part == 3)
    lips_w = _gauss(X, Y, 0.0, MOUTH_Y, 24.0, 11.0) * is_skin
    vn = _vertex_normals(V, F)

    def side_mask(sign: float, width: float = 10.0) -> np.ndarray:
        return _smoothstep(-width, width, sign * X)

    E: dict[str, np.ndarray] = {}

    def rot_x(angle_deg: float) -> np.ndarray:  # displacement of rotating about the hinge
        a = np.radians(angle_deg)
        dy, dz = Y - pivot_y, Z - pivot_z
        ny = pivot_y + dy * np.cos(a) - dz * np.sin(a)
        nz = pivot_z + dy * np.sin(a) + dz * np.cos(a)
        return np.stack([np.zeros(P), ny - Y, nz - Z], 1)

    jaw_rot = rot_x(JAW_OPEN_DEG) * jaw[:, None]
    E["jawOpen"] = jaw_rot
    E["jawForward"] = np.stack([0 * X, 0 * X, 6.0 * jaw], 1)
    # sideways jaw shifts also tilt (the far side drops), so jawLeft is not -jawRight
    E["jawLeft"] = np.stack([7.0 * jaw, -1.5 * jaw * np.maximum(-X, 0) / 60.0, 0 * X], 1)
    E["jawRight"] = np.stack([-7.0 * jaw, -1.5 * jaw * np.maximum(X, 0) / 60.0, 0 * X], 1)

    # mouthClose: upper and lower lip meet halfway when the jaw is open (ARKit semantics)
    gap = np.zeros((NC, 3))
    gap[slit_cols] = jaw_rot[dup]
    col_of = np.full(P, -1)
    col_of[:n_skin0] = np.concatenate([[-1], np.tile(np.arange(NC), n_rings), [-1]])
    col_of[dup] = slit_cols
    g = np.where(col_of[:, None] >= 0, gap[np.maximum(col_of, 0)], 0.0)
    dist = np.abs(Y - MOUTH_Y)
    fall = np.clip(1.0 - dist / 14.0, 0.0, 1.0) ** 1.5 * is_skin
    close = 0.5 * g * fall[:, None] * upper_side[:, None]
    close -= 0.5 * g * fall[:, None] * lower_side[:, None]
    E["mouthClose"] = close

    lip_sign = upper_side - lower_side  # +1 upper lip, -1 lower lip
    E["mouthFunnel"] = np.stack([-0.25 * X * lips_w, 3.5 * lip_sign * lips_w, 8.0 * lips_w], 1)
    E["mouthPucker"] = np.stack([-0.4 * X * lips_w, -0.5 * lip_sign * lips_w, 10.0 * lips_w], 1)
    # mouthLeft/Right pull toward one side (their own profiles, so they are not negatives)
    to_l = _gauss(X, Y, 8.0, MOUTH_Y, 24.0, 11.0) * is_skin
    to_r = _gauss(X, Y, -8.0, MOUTH_Y, 24.0, 11.0) * is_skin
    E["mouthLeft"] = np.stack([7.0 * to_l, 0 * X, 0 * X], 1)
    E["mouthRight"] = np.stack([-7.0 * to_r, 0 * X, 0 * X], 1)
    roll = _gauss(X, Y, 0.0, MOUTH_Y, 22.0, 6.0) * is_skin  # the lip margins roll in
    E["mouthRollUpper"] = np.stack([0 * X, -2.0 * roll, -3.0 * roll], 1) * upper_side[:, None]
    E["mouthRollLower"] = np.stack([0 * X, 2.0 * roll, -3.0 * roll], 1) * lower_side[:, None]
    E["mouthShrugUpper"] = np.stack([0 * X, 2.5 * lips_w, 1.5 * lips_w], 1) * upper_side[:, None]
    chin_w = _gauss(X, Y, 0.0, MOUTH_Y - 20.0, 22.0, 16.0) * is_skin
    E["mouthShrugLower"] = np.stack([0 * X, 3.0 * chin_w, 2.0 * chin_w], 1) * lower_side[:, None]
    for sfx, sx in (("_L", 1.0), ("_R", -1.0)):
        corner = _gauss(X, Y, sx * (MOUTH_HALF_WIDTH + 2.0), MOUTH_Y, 14.0, 11.0) * is_skin
        cheek = _gauss(X, Y, sx * 38.0, MOUTH_Y + 26.0, 16.0, 14.0) * is_skin
        half = side_mask(sx, 6.0) * is_skin
        upper_half = _gauss(X, Y, sx * 10.0, MOUTH_Y + 4.0, 11.0, 8.0) * is_skin
        lower_half = _gauss(X, Y, sx * 10.0, MOUTH_Y - 5.0, 11.0, 8.0) * is_skin
        E["mouthSmile" + sfx] = (np.stack([sx * 6.0 * corner, 7.0 * corner, -3.0 * corner], 1)
                                 + np.stack([0 * X, 3.0 * cheek, 2.0 * cheek], 1))  # fmt: skip
        E["mouthFrown" + sfx] = np.stack([sx * 1.0 * corner, -6.0 * corner, -1.0 * corner], 1)
        E["mouthDimple" + sfx] = np.stack([sx * 3.0 * corner, 0 * X, -3.5 * corner], 1)
        E["mouthStretch" + sfx] = np.stack([sx * 7.0 * corner, -3.0 * corner, -2.0 * corner], 1)
        press = _gauss(X, Y, 0.0, MOUTH_Y, 20.0, 4.0) * is_skin * half  # the lip line
        E["mouthPress" + sfx] = np.stack([0 * X, -0.7 * lip_sign * press, -2.0 * press], 1)
        E["mouthUpperUp" + sfx] = (np.stack([0 * X, 5.0 * upper_half, 1.0 * upper_half], 1)
                                   * upper_side[:, None])  # fmt: skip
        E["mouthLowerDown" + sfx] = (np.stack([0 * X, -5.0 * lower_half, 0.5 * lower_half], 1)
                                     * lower_side[:, None])  # fmt: skip
        # brows
        inner = _gauss(X, Y, sx * 14.0, 17.0, 10.0, 10.0) * is_skin
        outer = _gauss(X, Y, sx * 44.0, 15.0, 12.0, 10.0) * is_skin
        brow = _gauss(X, Y, sx * 30.0, 16.0, 20.0, 9.0) * is_skin
        E["browInnerUp" + sfx] = np.stack([0 * X, 6.0 * inner * half, 0.5 * inner * half], 1)
        E["browOuterUp" + sfx] = np.stack([0 * X, 6.0 * outer, 0 * X], 1)
        E["browDown" + sfx] = np.stack([-sx * 2.0 * brow, -5.0 * brow, 1.0 * brow], 1)
        # eyes: lids relative to the eye frame
        dx, s, yu, yl = _eye_frame(X, Y, sx)
        in_eye = (np.abs(dx) < 14.0) & is_skin & (front > 0.5)
        eyeball = eyeballs & in_eye  # this side's eye surface
        lid_up = in_eye & (Y >= yu)
        band_u = np.clip(1.0 - (Y - yu) / 9.0, 0.0, 1.0) * lid_up
        lid_lo = in_eye & (Y <= yl)
        band_l = np.clip(1.0 - (yl - Y) / 7.0, 0.0, 1.0) * lid_lo
        frac = np.clip((Y - yl) / np.maximum(yu - yl, 1e-6), 0.0, 1.0) * eyeball
        y_close = yl + 1.0 * s  # where the lids meet
        blink = np.zeros((P, 3))
        blink[:, 1] = band_u * (y_close - yu) + eyeball * (y_close - Y)
        blink[:, 2] = 2.0 * band_u * s + eyeball * 1.0
        E["eyeBlink" + sfx] = blink
        E["eyeWide" + sfx] = np.stack([0 * X, 3.0 * s * (band_u + frac), 0.5 * band_u], 1)
        sq = np.zeros((P, 3))
        sq[:, 1] = 2.5 * s * (band_l + eyeball * (1 - frac)) - 1.0 * s * (band_u + eyeball * frac)
        E["eyeSquint" + sfx] = sq
        row_eye = eyeball * s * np.clip(1 - np.abs(Y - 1.0) / 5.0, 0, 1) * side_mask(sx, 40)
        look_in = row_eye * _gauss(X, Y, sx * (EYE_X - 5.0), 1.0, 8.0, 50.0)
        look_out = row_eye * _gauss(X, Y, sx * (EYE_X + 5.0), 1.0, 8.0, 50.0)
        E["eyeLookUp" + sfx] = np.stack([0 * X, 1.2 * (band_u + frac * eyeball), 0 * X], 1)
        E["eyeLookDown" + sfx] = np.stack([0 * X, -2.0 * s * (band_u + frac * eyeball), 0 * X], 1)
        E["eyeLookIn" + sfx] = np.stack([-sx * 1.5 * look_in, 0 * X, 0 * X], 1)
        E["eyeLookOut" + sfx] = np.stack([sx * 1.5 * look_out, 0 * X, 0 * X], 1)
        # nose, cheeks
        wing = _gauss(X, Y, sx * 12.0, NOSE_TIP_Y + 6.0, 7.0, 9.0) * is_skin
        E["noseSneer" + sfx] = np.stack([sx * 0.5 * wing, 3.5 * wing, 1.0 * wing], 1)
        cs = _gauss(X, Y, sx * 36.0, -20.0, 13.0, 10.0) * is_skin
        E["cheekSquint" + sfx] = np.stack([0 * X, 3.0 * cs, 1.2 * cs], 1)
    E["browInnerUp"] = E.pop("browInnerUp_L") + E.pop("browInnerUp_R")
    puff = _gauss(np.abs(X), Y, 42.0, MOUTH_Y + 6.0, 16.0, 18.0) * is_skin
    E["cheekPuff"] = 6.0 * puff[:, None] * vn
    tip = _smoothstep(z_lip - 40.0, z_lip - 10.0, Z) * (part == 4)
    E["tongueOut"] = np.stack([0 * X, -4.0 * tip, 22.0 * tip], 1)
    assert set(E) == set(ARKIT_NAMES), set(ARKIT_NAMES) ^ set(E)
    # teeth stay rigid except under jaw motion
    for k in E:
        if not k.startswith("jaw"):
            E[k][tooth] = 0.0

    # ---- identity modes (weight 1 = one standard deviation)
    lower_face = _smoothstep(NOSE_TIP_Y + 10.0, NOSE_TIP_Y - 20.0, Y)
    I: dict[str, np.ndarray] = {}
    zero = 0 * X
    I["head_width"] = np.stack([0.05 * X, zero, zero], 1)
    I["head_height"] = np.stack([zero, 0.045 * np.maximum(Y, 0.0), zero], 1)
    I["head_depth"] = np.stack([zero, zero, 0.06 * np.minimum(Z, 0.0)], 1)
    I["jaw_width"] = np.stack([0.08 * X * _smoothstep(-30.0, -95.0, Y), zero, zero], 1)
    I["face_length"] = np.stack([zero, -0.07 * np.maximum(NOSE_TIP_Y - Y, 0.0), zero], 1)
    nose = _gauss(X, Y, 0.0, NOSE_TIP_Y + 8.0, 9.0, 14.0) * is_skin
    I["nose_length"] = np.stack([zero, -1.5 * nose, 5.0 * nose], 1)
    I["nose_width"] = np.stack([0.18 * X * nose, zero, zero], 1)
    far = np.clip(dist / 5.0, 0.0, 1.0)
    I["lip_thickness"] = np.stack([zero, 1.5 * lip_sign * far * lips_w, 2.0 * lips_w], 1)
    mw = _gauss(X, Y, 0.0, MOUTH_Y, 30.0, 14.0)
    I["mouth_width"] = np.stack([0.12 * X * mw, zero, zero], 1)
    eyes_w = (_gauss(np.abs(X), Y, EYE_X, 3.0, 16.0, 16.0)) * is_skin
    I["eye_spacing"] = np.stack([3.0 * np.sign(X) * eyes_w, zero, zero], 1)
    chin = _gauss(X, Y, 0.0, CHIN_Y + 6.0, 18.0, 12.0) * is_skin
    I["chin"] = np.stack([zero, -3.0 * chin, 5.0 * chin], 1)
    ridge = _gauss(np.abs(X), Y, 28.0, 15.0, 22.0, 7.0) * is_skin
    I["brow_ridge"] = np.stack([zero, 1.0 * ridge, 3.0 * ridge], 1)
    cb = _gauss(np.abs(X), Y, 46.0, -24.0, 16.0, 14.0) * is_skin
    I["cheekbones"] = 4.0 * cb[:, None] * vn
    del lower_face
    identity = np.stack([I[n] for n in IDENTITY_NAMES]).astype(np.float32)

    # ---- regions and landmarks
    face_r = is_skin & (front > 0.35) & (Y > CHIN_Y - 14.0) & (Y < 58.0)
    lip_s = np.sqrt(np.clip(1.0 - (X / (MOUTH_HALF_WIDTH + 1.5)) ** 2, 0.0, 1.0))
    lips_r = is_skin & (front > 0.5) & (lip_s > 0)
    lips_r &= (Y <= MOUTH_Y + 2.0 + 7.0 * lip_s) & (Y >= MOUTH_Y - 2.0 - 9.0 * lip_s)
    eyes_r = np.zeros(P, bool)
    brows_r = np.zeros(P, bool)
    for sx in (-1.0, 1.0):
        eyes_r |= is_skin & (np.abs(X - sx * EYE_X) < 22.0) & (Y > -12.0) & (Y < 26.0)
        yb = 16.0 - 0.004 * (X - sx * 28.0) ** 2
        brows_r |= is_skin & (np.abs(X - sx * 29.0) < 19.0) & (np.abs(Y - yb) < 3.5)
    eyes_r &= front > 0.5
    brows_r &= front > 0.5
    regions = {
        "face": face_r,
        "skin": is_skin,
        "head_back": is_skin & (np.cos(np.concatenate([phi_v, np.zeros(P - n_skin)])) < 0),
        "scalp": is_skin & ((Y > 50.0) | ((front < 0.05) & (Y > -30.0))),
        "lips": lips_r,
        "eyes": eyes_r | eyeballs,
        "eyeballs": eyeballs.copy(),
        "brows": brows_r,
        "nose": is_skin & (nose > 0.3),
        "mouth_interior": part > 0,
        "mouth_cavity": part == 1,
        "teeth": tooth,
        "tongue": part == 4,
    }

    def nearest(mask: np.ndarray, target) -> int:  # nearest in x, y
        cand = np.flatnonzero(mask)
        return int(cand[np.argmin(np.linalg.norm(V[cand, :2] - np.asarray(target), axis=1))])

    ordered = slit_cols[np.argsort(slit_x[slit_cols])]
    nose_cand = is_skin & (np.abs(X) < 2) & (np.abs(Y - NOSE_TIP_Y) < 12)
    landmarks = {
        "nose_tip": int(np.flatnonzero(nose_cand)[np.argmax(Z[nose_cand])]),
        "lip_upper_mid": int(vid(im, NC // 2)),
        "lip_lower_mid": int(lower_copy[NC // 2]),
        "mouth_corner_L": int(vid(im, ordered[-1] + 1)),
        "mouth_corner_R": int(vid(im, ordered[0] - 1)),
        "chin": nearest(is_skin & (front > 0.5) & (Z > 0), (0.0, CHIN_Y)),
    }
    for sfx, sx in (("_L", 1.0), ("_R", -1.0)):
        landmarks["eye_upper" + sfx] = nearest(eyeballs, (sx * EYE_X, 6.0))
        landmarks["eye_lower" + sfx] = nearest(eyeballs, (sx * EYE_X, -4.5))
        landmarks["brow_inner" + sfx] = nearest(brows_r, (sx * 13.0, 16.0))
        landmarks["brow_outer" + sfx] = nearest(brows_r, (sx * 45.0, 14.0))
    if not (lips_r[landmarks["lip_upper_mid"]] and lips_r[landmarks["lip_lower_mid"]]):
        raise AssertionError("lip landmarks must lie in the lips region")

    # ---- centre by the shared convention and assemble
    offset_c = origin_offset(V[landmarks["nose_tip"]], 0.0)
    names = tuple(ARKIT_NAMES)
    rig = LinearRig(
        neutral=(V - offset_c).astype(np.float32),
        faces=F.astype(np.int32),
        uvs=uvs.astype(np.float32),
        expression_deltas=np.stack([E[n] for n in names]).astype(np.float32),
        expression_names=names,
        identity_deltas=identity,
        identity_names=IDENTITY_NAMES,
        regions=regions,
        landmarks=landmarks,
        identity_scale=0.8,
        name=f"builtin-{resolution}",
    )
    if seed is not None:
        rig.neutral = rig.identity_neutral(rig.sample_identity(seed))
        rig.name += f"-seed{seed}"
    return rig


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:  # [P, 3]
    fn = face_normals(v, f)
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
