"""Scene proxies around the face (hair cap, neck, shoulders) and the synthetic frame renderer.

The face rig only covers the face; real captures also show hair, neck and shoulders, which
move less than the face and are what EmoTalk3D's head completion (DESIGN.md section 2) must
handle. `build_scene` makes, once per subject:

- a hair cap over the top and back of the head, 10 mm outside the template's skull, in the
  subject's hair colour; it follows the rigid head motion (a Kabsch fit of the upper-head
  vertices), never the jaw;
- a neck (elliptic cylinder under the chin, partly inside the head) whose vertices move by
  0.2 of the weighted motion of their nearest face vertices, decaying as exp(-d / 40 mm);
- a static torso with rounded shoulders, in the subject's clothes colour.

`render_views` draws the face mesh plus the proxies with one z-buffer (the independent
triangle rasterizer of `raster.py`, never the Gaussian renderer) for a list of cameras.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter
from scipy.spatial import cKDTree
from torch import Tensor

from emotalk3d.data.format import Camera
from emotalk3d.data.synth import appearance as ap
from emotalk3d.data.synth.raster import rasterize, shade
from emotalk3d.render.cameras import camera_center, scale_intrinsics, stack_cameras

HAIR_OFFSET = 10.0  # mm outside the skull
NECK_FOLLOW = 0.2  # fraction of the nearest face motion the neck follows
NECK_DECAY = 40.0  # mm


@dataclass
class MeshPart:
    """One mesh of a frame with everything the shader needs per vertex."""

    name: str
    vertices: np.ndarray  # [Pi, 3] world, mm
    faces: np.ndarray  # [Fi, 3]
    albedo: np.ndarray  # [Pi, 3] in [0, 1]
    uv: np.ndarray  # [Pi, 2] texture coordinates (wrapping)
    canonical: np.ndarray  # [Pi, 3] rest position (for per-pixel eye painting)
    eye: np.ndarray  # [Pi] eye-material weight
    tex: np.ndarray  # [Pi] how much of the material's texture applies
    material: int  # one of appearance.SKIN, HAIR, CLOTH, PLAIN


def _grid_faces(rows: int, cols: int, wrap: bool = True) -> np.ndarray:  # [F, 3]
    """Two triangles per cell of a rows x cols vertex grid (columns wrap around)."""
    i, j = np.mgrid[0 : rows - 1, 0 : cols if wrap else cols - 1]
    a = i * cols + j
    b = i * cols + (j + 1) % cols
    c, d = a + cols, b + cols
    return np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)]).reshape(-1, 3)


def kabsch(
    src: np.ndarray,  # [N, 3]
    dst: np.ndarray,  # [N, 3]
) -> tuple[np.ndarray, np.ndarray]:  # ([3, 3] R, [3] t) with dst ~ src @ R.T + t
    """Least-squares rigid transform mapping `src` onto `dst` (no reflection)."""
    cs, cd = src.mean(0), dst.mean(0)
    U, _, Vt = np.linalg.svd((src - cs).T @ (dst - cd))
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    return R, cd - R @ cs


@dataclass
class HeadFrame:
    """Head measurements from the template (mm)."""

    centre: np.ndarray  # [3]
    width: float
    chin_y: float
    eye_y: float
    front_z: float  # forehead front
    back_z: float  # back of the skull (measured or assumed)


def measure_head(
    vertices: np.ndarray,  # [P, 3]
    regions: dict[str, np.ndarray],  # name -> [P] bool
) -> HeadFrame:
    """Centre, width, chin and eye heights of a template (face masks and full heads alike)."""
    P = len(vertices)
    interior = regions.get("mouth_interior", np.zeros(P, bool)).astype(bool)
    v = vertices[~interior] if (~interior).sum() >= 3 else vertices
    lo, hi = v.min(0), v.max(0)
    width = float(hi[0] - lo[0])
    cz = float(np.clip(0.0, lo[2], hi[2]))  # rig convention: origin near the head centre
    eyes = regions.get("eyeballs", np.zeros(P, bool)).astype(bool)
    if not eyes.any():
        eyes = regions.get("eyes", np.zeros(P, bool)).astype(bool)
    eye_y = float(vertices[eyes, 1].mean()) if eyes.any() else float(lo[1] + 0.6 * (hi - lo)[1])
    temples = v[v[:, 1] > eye_y + 15.0]  # above the ears: the skull's width
    if len(temples) >= 3:
        width = float(np.ptp(temples[:, 0]))
    face = regions.get("face", np.ones(P, bool)).astype(bool) & ~interior
    chin_y = float(vertices[face, 1].min()) if face.any() else float(lo[1])
    up = v[v[:, 1] > eye_y + 15.0]
    front_z = float(up[:, 2].max()) if len(up) else float(hi[2])
    back_z = min(float(lo[2]), cz - 0.55 * width)
    centre = np.array([0.5 * (lo[0] + hi[0]), 0.5 * (eye_y + hi[1]) - 0.1 * width, cz])
    return HeadFrame(centre, width, chin_y, eye_y, front_z, back_z)


def hair_cap(
    vertices: np.ndarray,  # [P, 3] template
    regions: dict[str, np.ndarray],  # name -> [P] bool
    head: HeadFrame,
    rng: np.random.Generator,
    rows: int = 18,
    cols: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # ([Q, 3] verts, [Fq, 3] faces, [Q, 2] uv)
    """A cap over the top and back of the head, HAIR_OFFSET mm outside the template (or an
    assumed ellipsoidal skull where the template has no vertices, e.g. a face mask's back)."""
    c = head.centre
    top = float(vertices[:, 1].max())
    a = 0.5 * head.width
    rb, rf, ry = c[2] - head.back_z, max(head.front_z - c[2], 0.6 * a), max(top - c[1], 0.5 * a)
    # 0 = front (+z); the UV seam (duplicated column) sits at the back
    phi = np.linspace(-np.pi, np.pi, cols + 1)
    rel = vertices - c
    rn = np.linalg.norm(rel, axis=1)
    v_elev = np.arcsin(np.clip(rel[:, 1] / np.maximum(rn, 1e-9), -1, 1))
    v_phi = np.arctan2(rel[:, 0], rel[:, 2])
    hair_front = head.eye_y + rng.uniform(0.28, 0.36) * head.width  # hairline height
    e_front = np.arcsin(np.clip((hair_front - c[1]) / ry, -0.9, 0.9))
    e_back = np.radians(rng.uniform(-55, -40))

    def hairline(ph: np.ndarray) -> np.ndarray:  # [n] azimuth -> [n] elevation
        """High at the front, above the ears at the sides, low at the nape."""
        w = np.sqrt(0.5 + 0.5 * np.cos(ph))
        return e_front * w + e_back * (1 - w)

    e0 = hairline(phi)  # [cols + 1]
    t = np.linspace(0.0, 1.0, rows)[:, None]
    elev = e0[None] + t * (np.pi / 2 - e0[None])  # [rows, cols]
    rz = np.where(np.cos(phi) > 0, rf, rb)[None]
    dirs = np.stack(
        [a * np.cos(elev) * np.sin(phi), ry * np.sin(elev), rz * np.cos(elev) * np.cos(phi)], -1
    )  # [rows, cols, 3] points on the unit-scaled skull ellipsoid
    # scale each direction out to the farthest template vertex near it (never inside it)
    unit = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    # only template vertices in the cap region (not ears, not the face) push the cap out
    region = v_elev > hairline(v_phi) - np.radians(4.0)
    rel, rn = rel[region], rn[region]
    cosang = unit.reshape(-1, 3) @ (rel / np.maximum(rn, 1e-9)[:, None]).T  # [Q, P']
    near = cosang > np.cos(np.radians(12.0))
    radial = np.where(near, rn[None] * cosang, 0.0).max(1, initial=0.0)  # farthest per dir
    base = np.linalg.norm(dirs, axis=-1).reshape(-1)
    r = np.maximum(base, radial).reshape(rows, cols + 1)
    # smooth the radius map a little (wrapping in phi) so the cap has no spikes
    r = uniform_filter(r, size=(3, 5), mode=("nearest", "wrap"))
    pts = c + unit * (r + HAIR_OFFSET)[..., None]
    uv = np.stack(np.broadcast_arrays(phi[None] / (2 * np.pi) * 6.0, t * 1.5), -1)
    return pts.reshape(-1, 3), _grid_faces(rows, cols + 1, wrap=False), uv.reshape(-1, 2)


def neck_and_torso(
    head: HeadFrame,
    rows: int = 10,
    cols: int = 40,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """((neck verts [Pn, 3], faces, uv), (torso verts [Pt, 3], faces, uv)) in head units."""
    c, w = head.centre, head.width
    rx, rz = 0.33 * w, 0.36 * w
    nz = c[2] - 0.15 * w
    y_top = head.chin_y + 0.5 * (c[1] - head.chin_y)
    y_sh = head.chin_y - 0.45 * w  # shoulder top
    y_bot = y_sh - 25.0
    th = np.linspace(-np.pi, np.pi, cols + 1)  # 0 = front; UV seam at the back
    ys = np.linspace(y_top, y_bot, rows)[:, None]
    neck = np.stack(np.broadcast_arrays(c[0] + rx * np.sin(th), ys, nz + rz * np.cos(th)), -1)
    neck_uv = np.stack(np.broadcast_arrays(th / (2 * np.pi) * 3, ys / 60.0), -1)
    # torso: upper half of a squashed ellipsoid (rounded shoulders) and a short skirt below
    A, B, D = 1.3 * w, 0.55 * w, 0.7 * w
    el = np.concatenate([np.linspace(np.pi / 2, 0, rows), [0.0]])[:, None]
    x = A * np.cos(el) * np.sin(th)
    y = y_sh - B + B * np.sin(el)
    z = D * np.cos(el) * np.cos(th)
    y = np.broadcast_to(y, x.shape).copy()
    y[-1] -= 1.2 * w  # skirt down out of view
    torso = np.stack([c[0] + x, y, nz + z], -1)
    torso_uv = np.stack(np.broadcast_arrays(th / (2 * np.pi) * 4, y / 80.0), -1)
    return (
        (neck.reshape(-1, 3), _grid_faces(rows, cols + 1, False), neck_uv.reshape(-1, 2)),
        (torso.reshape(-1, 3), _grid_faces(rows + 1, cols + 1, False), torso_uv.reshape(-1, 2)),
    )


@dataclass
class Scene:
    """A subject's renderable scene: face topology, appearance and proxies (rest pose)."""

    template: np.ndarray  # [P, 3]
    faces: np.ndarray  # [F, 3]
    uvs: np.ndarray  # [P, 2]
    appearance: ap.Appearance
    eye_model: ap.EyeModel | None
    face_albedo: np.ndarray  # [P, 3]
    face_eye: np.ndarray  # [P]
    face_tex: np.ndarray  # [P]
    anchors: np.ndarray  # [A] template vertices that define the rigid head motion
    proxies: list[MeshPart]  # rest pose: hair, neck, torso
    neck_idx: np.ndarray  # [Pn, k] nearest template vertices of each neck vertex
    neck_w: np.ndarray  # [Pn, k] weights (sum = NECK_FOLLOW * exp(-d / NECK_DECAY))

    def meshes_for_frame(self, face_vertices: np.ndarray) -> list[MeshPart]:  # [P, 3] in
        """The face at `face_vertices` plus the proxies moved for this frame."""
        fv = np.asarray(face_vertices, dtype=np.float64)
        if fv.shape != self.template.shape:
            raise ValueError(f"face_vertices must be {list(self.template.shape)} like the "
                             f"template, got {list(fv.shape)}")  # fmt: skip
        R, t = kabsch(self.template[self.anchors], fv[self.anchors])
        delta = fv - self.template
        parts = [
            MeshPart("face", fv, self.faces, self.face_albedo, self.uvs, self.template,
                     self.face_eye, self.face_tex, ap.SKIN),
        ]  # fmt: skip
        for p in self.proxies:
            if p.name == "hair":
                v = p.canonical @ R.T + t
            elif p.name == "neck":
                v = p.canonical + (self.neck_w[..., None] * delta[self.neck_idx]).sum(1)
            else:
                v = p.canonical
            parts.append(MeshPart(p.name, v, p.faces, p.albedo, p.uv, p.canonical, p.eye, p.tex,
                                  p.material))  # fmt: skip
        return parts


def build_scene(
    template_vertices: np.ndarray,  # [P, 3]
    faces: np.ndarray,  # [F, 3]
    regions: dict[str, np.ndarray],  # name -> [P] bool (face, lips, eyes, mouth_interior, ...)
    rng: np.random.Generator | int,
    uvs: np.ndarray | None = None,  # [P, 2]
    appearance: ap.Appearance | None = None,
) -> Scene:
    """A subject's scene from its template and a seed (appearance drawn from `rng` unless
    given). `uvs` default to a planar projection of the template (x, y)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    v = np.asarray(template_vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"expected template vertices [P, 3] and faces [F, 3], got "
                         f"{list(v.shape)} and {list(f.shape)}")  # fmt: skip
    P = len(v)
    regions = {k: np.asarray(m, bool) for k, m in regions.items()}
    for k, m in regions.items():
        if m.shape != (P,):
            raise ValueError(f"region {k!r} must be a [P={P}] bool mask, got {list(m.shape)}")
    if uvs is None:
        lo, hi = v.min(0), v.max(0)
        uvs = (v[:, :2] - lo[:2]) / np.maximum(hi[:2] - lo[:2], 1e-9)
    app = appearance if appearance is not None else ap.random_appearance(rng)
    head = measure_head(v, regions)
    albedo, eye, tex = ap.face_vertex_albedo(v, f, regions, app)

    moving = np.zeros(P, bool)
    for k in ("lips", "eyes", "mouth_interior", "teeth", "tongue", "brows"):
        if k in regions:
            moving |= regions[k]
    anchors = np.nonzero(~moving & (v[:, 1] > head.eye_y + 20.0))[0]
    if len(anchors) < 10:
        anchors = np.nonzero(~moving)[0] if (~moving).sum() >= 10 else np.arange(P)

    hv, hf, huv = hair_cap(v, regions, head, rng)
    (nv, nf, nuv), (tv, tf, tuv) = neck_and_torso(head)
    has_neck = v[:, 1].min() < head.chin_y - 40.0  # e.g. ICT's head_neck: no neck proxy

    def part(name, pv, pf, puv, colour, material):
        n = len(pv)
        return MeshPart(name, pv, pf, np.tile(colour, (n, 1)), puv, pv, np.zeros(n),
                        np.ones(n), material)  # fmt: skip

    proxies = [
        part("hair", hv, hf, huv, app.hair, ap.HAIR),
        part("neck", nv, nf, nuv, app.skin, ap.SKIN),
        part("torso", tv, tf, tuv, app.cloth, ap.CLOTH),
    ]
    if has_neck:
        proxies.pop(1)
    interior = regions.get("mouth_interior", np.zeros(P, bool))
    pool = np.nonzero(~interior)[0]
    tree = cKDTree(v[pool])
    k = min(8, len(pool))
    d, idx = tree.query(nv, k=k)
    d, idx = d.reshape(len(nv), k), idx.reshape(len(nv), k)
    wk = 1.0 / np.maximum(d, 1.0)
    wk = wk / wk.sum(1, keepdims=True) * (NECK_FOLLOW * np.exp(-d[:, :1] / NECK_DECAY))
    return Scene(
        template=v, faces=f, uvs=np.asarray(uvs, np.float64), appearance=app,
        eye_model=ap.eye_model(v, eye > 0.5), face_albedo=albedo, face_eye=eye,
        face_tex=tex, anchors=anchors, proxies=proxies, neck_idx=pool[idx], neck_w=wk,
    )  # fmt: skip


def _merge(parts: list[MeshPart]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(vertices [Pm, 3], faces [Fm, 3], attributes [Pm, 16], face materials [Fm])."""
    verts, faces, attrs, mats = [], [], [], []
    off = 0
    for p in parts:
        pv = torch.as_tensor(p.vertices, dtype=torch.float32)
        pf = torch.as_tensor(p.faces, dtype=torch.int64)
        normals = ap.vertex_normals(pv, pf)
        attrs.append(torch.cat([
            torch.as_tensor(p.albedo, dtype=torch.float32), normals, pv,
            torch.as_tensor(p.canonical, dtype=torch.float32),
            torch.as_tensor(p.uv, dtype=torch.float32),
            torch.as_tensor(p.eye, dtype=torch.float32)[:, None],
            torch.as_tensor(p.tex, dtype=torch.float32)[:, None],
        ], 1))  # fmt: skip
        verts.append(pv)
        faces.append(pf + off)
        mats.append(torch.full((len(pf),), p.material, dtype=torch.int64))
        off += len(pv)
    return torch.cat(verts), torch.cat(faces), torch.cat(attrs), torch.cat(mats)


def render_views(
    scene: Scene,
    face_vertices: np.ndarray,  # [P, 3] this frame's face mesh, mm
    cameras: Sequence[Camera],
    background: Sequence[float] = (1.0, 1.0, 1.0),
    ssaa: int = 1,
    camera_batch: int = 4,
) -> tuple[np.ndarray, np.ndarray]:  # ([C, H, W, 3] uint8, [C, H, W] uint8)
    """Render one frame (face + hair cap + neck + torso, one z-buffer) into every camera.

    Args:
        scene: the subject's scene from `build_scene`.
        face_vertices: the frame's face mesh in the template's topology (mm, head coordinates).
        cameras: calibrated cameras sharing one image size (e.g. `arc_cameras(...)`).
        background: RGB in [0, 1] behind the subject.
        ssaa: supersampling factor per axis (2 renders 4 samples per pixel and averages them,
            which anti-aliases edges and gives soft mask edges).
        camera_batch: cameras rasterized together (bounds memory).

    Returns:
        images [C, H, W, 3] uint8 and foreground masks [C, H, W] uint8 (255 = subject; with
        ssaa > 1 edge pixels hold the covered fraction).
    """
    if ssaa < 1:
        raise ValueError(f"ssaa must be a positive integer, got {ssaa}")
    viewmats, Ks, W, H = stack_cameras(list(cameras))
    Ks = np.asarray(scale_intrinsics(Ks, float(ssaa)))
    sW, sH = W * ssaa, H * ssaa
    parts = scene.meshes_for_frame(face_vertices)
    verts, faces, attrs, mats = _merge(parts)
    app = scene.appearance
    bg = torch.tensor(list(background), dtype=torch.float32)
    textures = torch.as_tensor(app.textures, dtype=torch.float32)
    images, masks = [], []
    for s in range(0, len(viewmats), camera_batch):
        vm, kk = viewmats[s : s + camera_batch], Ks[s : s + camera_batch]
        frags = rasterize(verts, faces, vm, kk, sW, sH)
        C = vm.shape[0]
        px = shade(frags, faces, attrs)  # [C, sH, sW, 16]
        fg = frags.tri_id >= 0
        sel = px[fg]  # [M, 16]
        cam_of = torch.arange(C)[:, None, None].expand(C, sH, sW)[fg]
        mat = mats[frags.tri_id[fg]]
        albedo, normal, world = sel[:, 0:3], sel[:, 3:6], sel[:, 6:9]
        canon, uv, eye, tex = sel[:, 9:12], sel[:, 12:14], sel[:, 14], sel[:, 15]
        detail = torch.ones_like(eye)
        for m in range(len(textures)):
            on = (mat == m).nonzero().squeeze(1)
            if on.numel():
                detail[on] = ap.sample_texture(textures[m], uv[on])
        albedo = albedo * (1 + tex[:, None] * (detail[:, None] - 1))
        albedo = ap.eye_overlay(albedo, canon, eye, scene.eye_model, app)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        centres = torch.as_tensor(np.asarray(camera_center(vm)), dtype=torch.float32)
        to_cam = centres[cam_of] - world
        flip = (normal * to_cam).sum(-1, keepdim=True) < 0
        normal = torch.where(flip, -normal, normal)  # two-sided: face the viewer
        rgb = ap.lambert(albedo, normal, app.light_dir, app.ambient, app.diffuse).clamp(0, 1)
        img = bg.expand(C, sH, sW, 3).clone()
        img[fg] = rgb
        alpha = fg.to(torch.float32)
        if ssaa > 1:
            img = F.avg_pool2d(img.permute(0, 3, 1, 2), ssaa).permute(0, 2, 3, 1)
            alpha = F.avg_pool2d(alpha[:, None], ssaa)[:, 0]
        images.append((img * 255 + 0.5).clamp(0, 255).to(torch.uint8))
        masks.append((alpha * 255 + 0.5).clamp(0, 255).to(torch.uint8))
    return torch.cat(images).numpy(), torch.cat(masks).numpy()
