"""Per-subject synthetic appearance: skin, lips, brows, eyes, mouth, hair and clothes colours,
procedural UV-space textures and Lambertian shading (DESIGN.md section 4, "Appearance").

Everything is drawn from a seeded generator, so a subject looks the same in every frame and
every run. Colours are display-space RGB albedos in [0, 1]; shading multiplies them by
`ambient + diffuse * max(0, n . l)` with the key light fixed in world coordinates, so turning
the head changes its shading while the cameras see the same lighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.sparse import coo_matrix
from torch import Tensor

# A plausible range of skin tones, light to dark (display-space RGB albedo).
SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.91, 0.72, 0.58],
        [0.80, 0.60, 0.45],
        [0.66, 0.46, 0.32],
        [0.50, 0.33, 0.22],
        [0.36, 0.24, 0.16],
    ]
)
HAIR_COLOURS = np.array(
    [
        [0.05, 0.04, 0.04],  # black
        [0.16, 0.10, 0.06],  # dark brown
        [0.33, 0.21, 0.12],  # brown
        [0.70, 0.56, 0.34],  # blonde
        [0.50, 0.21, 0.10],  # red
        [0.55, 0.55, 0.56],  # grey
    ]
)
IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.20, 0.35, 0.55], [0.30, 0.40, 0.25]])

# material ids (per triangle)
SKIN, HAIR, CLOTH, PLAIN = 0, 1, 2, 3
MATERIALS = ("skin", "hair", "cloth", "plain")


@dataclass(frozen=True)
class Appearance:
    """One subject's colours, textures and light. Build it with `random_appearance`."""

    skin: np.ndarray  # [3]
    lips: np.ndarray  # [3]
    brows: np.ndarray  # [3]
    hair: np.ndarray  # [3]
    iris: np.ndarray  # [3]
    cloth: np.ndarray  # [3]
    sclera: np.ndarray = field(default_factory=lambda: np.array([0.93, 0.91, 0.88]))  # [3]
    pupil: np.ndarray = field(default_factory=lambda: np.array([0.03, 0.03, 0.03]))  # [3]
    teeth: np.ndarray = field(default_factory=lambda: np.array([0.92, 0.90, 0.82]))  # [3]
    mouth: np.ndarray = field(default_factory=lambda: np.array([0.35, 0.08, 0.08]))  # [3]
    tongue: np.ndarray = field(default_factory=lambda: np.array([0.85, 0.45, 0.47]))  # [3]
    textures: np.ndarray = field(default_factory=lambda: np.ones((4, 8, 8)))  # [M, S, S]
    light_dir: np.ndarray = field(  # [3] unit, world: front, above, subject's left
        default_factory=lambda: np.array([0.35, 0.45, 1.0]) / np.linalg.norm([0.35, 0.45, 1.0])
    )
    ambient: float = 0.4
    diffuse: float = 0.7


def procedural_texture(
    rng: np.random.Generator,
    size: int = 256,
    blotch: float = 0.08,
    pores: float = 0.04,
    streaks: float = 0.0,
) -> np.ndarray:  # [S, S] multiplicative detail around 1
    """A tileable detail map: low-frequency blotches, fine pore-like noise and optional
    vertical streaks (hair strands), as a factor that multiplies the albedo."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size) * size, np.fft.fftfreq(size) * size))
    tex = np.ones((size, size))
    # band-limited noise by filtering white noise in the Fourier domain (tileable by
    # construction): blotches of ~1/4 and ~1/12 of the map, pores near the texel scale
    for cycles, amp in ((4.0, blotch), (12.0, blotch * 0.5), (size / 3.0, pores)):
        if amp == 0:
            continue
        spec = np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-((k / cycles) ** 2))
        field_ = np.fft.ifft2(spec).real
        tex += amp * field_ / (field_.std() + 1e-9)
    if streaks:
        cols = ndimage.gaussian_filter1d(rng.standard_normal(size), 1.0, mode="wrap")
        tex += streaks * cols[None, :] / (cols.std() + 1e-9)
    return np.clip(tex, 0.5, 1.5)


def random_appearance(seed: int | np.random.Generator, texture_size: int = 256) -> Appearance:
    """A subject's appearance drawn from `seed` (an int or a numpy Generator)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    lo = int(np.floor(t))
    hi = min(lo + 1, len(SKIN_TONES) - 1)
    skin = SKIN_TONES[lo] * (1 - (t - lo)) + SKIN_TONES[hi] * (t - lo)
    skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1)
    lips = np.clip(skin * np.array([0.95, 0.62, 0.62]) + np.array([0.06, 0.0, 0.01]), 0, 1)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.9, 1.1)
    brows = np.clip(np.minimum(hair, skin * 0.45) * 0.9, 0, 1)
    iris = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]
    cloth = rng.uniform(0.15, 0.85, 3)
    textures = np.stack(
        [
            procedural_texture(rng, texture_size, blotch=0.05, pores=0.035),  # skin
            procedural_texture(rng, texture_size, blotch=0.1, pores=0.08, streaks=0.15),  # hair
            procedural_texture(rng, texture_size, blotch=0.04, pores=0.02),  # cloth
            np.ones((texture_size, texture_size)),  # plain
        ]
    )
    return Appearance(
        skin=skin, lips=lips, brows=brows, hair=np.clip(hair, 0, 1), iris=iris, cloth=cloth,
        textures=textures,
    )  # fmt: skip


def sample_texture(
    texture: Tensor | np.ndarray,  # [S, S] (row 0 is v = 0)
    uv: Tensor,  # [N, 2] in [0, 1], wrapping
) -> Tensor:  # [N]
    """Bilinear lookup of a tileable texture at UV coordinates (u along columns, v along rows)."""
    tex = torch.as_tensor(np.asarray(texture) if not isinstance(texture, Tensor) else texture)
    tex = tex.to(torch.float32)
    padded = torch.cat([tex, tex[:1]], 0)
    padded = torch.cat([padded, padded[:, :1]], 1)  # wrap by one texel
    uvw = torch.remainder(uv.to(torch.float32), 1.0)
    # grid_sample, align_corners=True: -1..1 maps to texel centres 0..S (the wrapped copy)
    grid = uvw * 2 - 1  # texel k sits at u = k / S
    out = F.grid_sample(padded[None, None], grid[None, None], mode="bilinear", align_corners=True)
    return out[0, 0, 0]


def vertex_normals(
    vertices: Tensor,  # [P, 3]
    faces: Tensor,  # [F, 3]
) -> Tensor:  # [P, 3] unit (zero for unused vertices)
    """Area-weighted vertex normals; the face normal is (v1 - v0) x (v2 - v0)."""
    v = vertices
    f = faces.long()
    n = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # [F, 3]
    out = torch.zeros_like(v)
    out.index_add_(0, f.reshape(-1), n.repeat_interleave(3, 0))
    return out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def lambert(
    albedo: Tensor,  # [..., 3]
    normals: Tensor,  # [..., 3] unit, facing the viewer
    light_dir: Tensor | np.ndarray,  # [3] unit, toward the light
    ambient: float = 0.4,
    diffuse: float = 0.7,
) -> Tensor:  # [..., 3]
    """Lambertian shading with an ambient term: albedo * (ambient + diffuse * max(0, n . l))."""
    light = torch.as_tensor(np.asarray(light_dir), dtype=albedo.dtype)
    cos = (normals * light).sum(-1, keepdim=True).clamp(min=0.0)
    return albedo * (ambient + diffuse * cos)


# --------------------------------------------------------------------------------------------
# per-vertex face materials


def _smooth(values: np.ndarray, faces: np.ndarray, rounds: int = 1) -> np.ndarray:  # [P, D]
    """Average each vertex with its one-ring neighbours `rounds` times (soft region edges)."""
    P = values.shape[0]
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1], np.stack([np.arange(P)] * 2, 1)])
    A = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(P, P)).tocsr()
    A.data[:] = 1.0
    deg = np.asarray(A.sum(1)).ravel()
    out = values.astype(np.float64)
    for _ in range(rounds):
        out = (A @ out) / deg[:, None]
    return out


@dataclass(frozen=True)
class EyeModel:
    """Iris placement for the per-pixel eye overlay, in template (canonical) coordinates."""

    poles: np.ndarray  # [2, 3] front-most point of each eye region
    iris_radius: float  # mm
    pupil_radius: float  # mm


def eye_model(
    template_vertices: np.ndarray,  # [P, 3]
    eyes: np.ndarray,  # [P] bool eye region
) -> EyeModel | None:
    """Split the eye region into the two eyes (by x) and place an iris on the front of each.

    Works for eyeballs (spheres) and flat eye patches alike: the iris radius is 0.42 of the
    smaller half-extent of each eye's region (6 mm on a 12 mm eyeball), the pupil 0.4 of it.
    """
    if eyes is None or eyes.sum() < 6:
        return None
    v = template_vertices[eyes]
    cx = 0.5 * (v[:, 0].min() + v[:, 0].max())
    poles, radii = [], []
    for side in (v[:, 0] < cx, v[:, 0] >= cx):
        s = v[side]
        if len(s) < 3:
            return None
        front = s[:, 2].max()
        ext = 0.5 * min(np.ptp(s[:, 0]), np.ptp(s[:, 1]))
        c = 0.5 * (s.min(0) + s.max(0))
        poles.append([c[0], c[1], front])
        radii.append(ext)
    r = 0.42 * float(min(radii))
    return EyeModel(poles=np.array(poles), iris_radius=r, pupil_radius=0.4 * r)


def brow_weights(
    template_vertices: np.ndarray,  # [P, 3]
    regions: dict[str, np.ndarray],  # name -> [P] bool
) -> np.ndarray:  # [P] float in [0, 1]
    """Brow weight per vertex: the rig's "brows" region if it has one, else a band above each
    eye (8 to 16 mm above the eye centre, as wide as the eye plus 20%, on the face's front)."""
    P = len(template_vertices)
    if "brows" in regions:
        return regions["brows"].astype(np.float64)
    eyes = regions.get("eyes")
    if eyes is None or eyes.sum() < 6:
        return np.zeros(P)
    v = template_vertices
    e = v[eyes]
    cx = 0.5 * (e[:, 0].min() + e[:, 0].max())
    w = np.zeros(P)
    face = regions.get("face", np.ones(P, bool))
    for side in (e[:, 0] < cx, e[:, 0] >= cx):
        s = e[side]
        c = 0.5 * (s.min(0) + s.max(0))
        half_w = 0.6 * np.ptp(s[:, 0])
        half_h = max(0.5 * np.ptp(s[:, 1]), 6.0)
        dy = v[:, 1] - (c[1] + half_h + 7.0)  # band centre above the eye
        # the brow arches: lower toward the temples
        dy = dy + 0.15 * np.abs(v[:, 0] - c[0]) * np.sign(v[:, 0] - c[0]) * np.sign(c[0] - cx)
        inside = (np.abs(v[:, 0] - c[0]) < half_w) & (np.abs(dy) < 4.0)
        inside &= v[:, 2] > s[:, 2].min() - 5.0
        w = np.maximum(w, inside & face & ~eyes)
    return w.astype(np.float64)


def face_vertex_albedo(
    template_vertices: np.ndarray,  # [P, 3]
    faces: np.ndarray,  # [F, 3]
    regions: dict[str, np.ndarray],  # name -> [P] bool
    app: Appearance,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # ([P, 3] albedo, [P] eye weight, [P] skin tex)
    """Per-vertex albedo of the face mesh from its regions, the weight of the eye material
    (where the per-pixel iris overlay applies) and how much skin texture applies (1 on skin,
    0 on eyes, teeth and mouth interior)."""
    P = len(template_vertices)
    v = template_vertices
    get = lambda name: regions.get(name, np.zeros(P, bool)).astype(bool)  # noqa: E731
    lips, interior = get("lips"), get("mouth_interior")
    # the eye surfaces: "eyeballs" when the rig has them ("eyes" also holds lids and brows)
    eyes = get("eyeballs") if get("eyeballs").any() else np.zeros(P, bool)
    teeth, tongue = get("teeth"), get("tongue")
    if interior.any() and not teeth.any() and not tongue.any():
        # no finer regions: the front of the interior is teeth, its lower back the tongue
        z = v[interior, 2]
        y = v[interior, 1]
        zt = np.quantile(z, 0.7)
        teeth = interior & (v[:, 2] >= zt)
        tongue = interior & ~teeth & (v[:, 1] < np.median(y))
    teeth &= interior | teeth
    brows = brow_weights(v, regions)
    w = _smooth(np.stack([lips, brows > 0.5], 1).astype(np.float64), faces, rounds=1)
    albedo = np.tile(app.skin, (P, 1))
    albedo = albedo * (1 - w[:, :1]) + app.lips * w[:, :1]
    albedo = albedo * (1 - w[:, 1:2]) + app.brows * w[:, 1:2]
    albedo[interior] = app.mouth
    albedo[tongue] = app.tongue
    albedo[teeth] = app.teeth
    albedo[eyes] = app.sclera
    tex = 1.0 - (interior | teeth | tongue | eyes).astype(np.float64)
    eye_w = eyes.astype(np.float64)
    if not eyes.any() and get("eyes").any():
        # no eyeballs: the overlay paints a dark iris/eye-line on the eye region's centres
        eye_w = get("eyes").astype(np.float64)
    return albedo, eye_w, tex


def eye_overlay(
    albedo: Tensor,  # [N, 3]
    canonical: Tensor,  # [N, 3] template-space position of each pixel's surface point
    eye: Tensor,  # [N] eye-material weight
    model: EyeModel | None,
    app: Appearance,
) -> Tensor:  # [N, 3]
    """Paint iris and pupil disks (seen along +z) onto eye pixels, per pixel."""
    if model is None:
        return albedo
    out = albedo.clone()
    on_eye = eye > 0.5
    poles = torch.as_tensor(model.poles, dtype=canonical.dtype)
    d = (canonical[:, None, :2] - poles[None, :, :2]).norm(dim=-1).amin(1)  # [N]
    iris = on_eye & (d < model.iris_radius)
    pupil = on_eye & (d < model.pupil_radius)
    ring = (d / model.iris_radius).clamp(0, 1)[:, None]  # darker rim (limbus)
    iris_col = torch.as_tensor(app.iris, dtype=albedo.dtype) * (1.1 - 0.5 * ring**4)
    out = torch.where(iris[:, None], iris_col, out)
    out = torch.where(pupil[:, None], torch.as_tensor(app.pupil, dtype=albedo.dtype), out)
    return out
