"""Linear blendshape face rigs (DESIGN.md section 4, "Face rig"): the ICT Face Model Light and
the built-in procedural head, behind one `LinearRig` type.

A mesh of a rig is `neutral + a @ identity_deltas + w @ expression_deltas`, with identity
weights `a` [K_id] and expression weights `w` [K] (ARKit-named, ICT spelling `mouthSmile_L`).

Conventions shared by every rig (docs/rigs.md):

- Millimetres. +x is the subject's LEFT, +y up, +z out of the face (the face looks along +z).
- Origin "near the head centre", fixed by landmarks so every rig agrees and cameras frame both
  the same way: x = 0 on the midline, y = 0 at the height of the eye centres, z = 0 at
  `NOSE_TIP_DEPTH` (105 mm) behind the nose tip.
- Triangles are counter-clockwise seen from outside (outward normals).
- Region masks (name -> [P] bool): at least "face" (the front of the face, forehead to chin),
  "lips", "eyes" (eyes, eyelids and brows: the emotional part the EVE metric measures),
  "mouth_interior" (teeth, tongue, mouth cavity); plus "eyeballs" (the eye surfaces
  themselves), "brows", "teeth", "tongue", "skin" and "head_back" where the rig has them.
- Landmarks (name -> vertex index): nose_tip, lip_upper_mid, lip_lower_mid (inner lip line),
  mouth_corner_L, mouth_corner_R, chin, and eye/brow points where present.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from emotalk3d.constants import ARKIT_NAMES

NOSE_TIP_DEPTH = 105.0  # mm: the origin lies this far behind the nose tip (along -z)
ICT_ENV_VAR = "EMOTALK3D_ICT_MODEL"
ICT_FILE = "ict_facekit_light.npz"
ICT_DEFAULT_REGIONS = (
    "face",
    "head_neck",
    "mouth_socket",
    "gums_tongue",
    "teeth",
    "eyeball_left",
    "eyeball_right",
)
# Vertex budgets of the synthetic-data sizes (ICT is decimated to them; see docs/rigs.md).
SIZE_MAX_VERTICES: dict[str, int | None] = {"tiny": 1500, "small": 5000, "full": None}
REQUIRED_LANDMARKS = ("nose_tip", "lip_upper_mid", "lip_lower_mid", "mouth_corner_L",
                      "mouth_corner_R")  # fmt: skip

ArrayOrTensor = np.ndarray | Tensor


def _arkit_identity_map(names: Sequence[str]) -> dict[str, tuple[tuple[str, float], ...]]:
    """ARKit name -> ((rig expression, coefficient), ...): an ARKit shape at weight w sets each
    listed rig expression to coefficient * w. Split shapes (browInnerUp_L/_R) both take w."""
    have = set(names)
    out: dict[str, tuple[tuple[str, float], ...]] = {}
    for a in ARKIT_NAMES:
        if a in have:
            out[a] = ((a, 1.0),)
        elif f"{a}_L" in have and f"{a}_R" in have:
            out[a] = ((f"{a}_L", 1.0), (f"{a}_R", 1.0))
        else:
            out[a] = ()
    return out


@dataclass
class LinearRig:
    """A linear blendshape face model (DESIGN.md section 4, "Face rig").

    Attributes:
        neutral: Neutral vertices [P, 3] float32, millimetres.
        faces: Triangles [F, 3] int32, counter-clockwise seen from outside.
        uvs: Per-vertex texture coordinates [P, 2] float32 in [0, 1].
        expression_deltas: Offsets at weight 1 [K, P, 3] float32.
        expression_names: K names, ARKit names in ICT spelling (`mouthSmile_L`).
        identity_deltas: Identity modes [K_id, P, 3] float32, or None.
        identity_names: K_id names.
        regions: name -> [P] bool masks (see the module docstring).
        landmarks: name -> vertex index.
        identity_scale: Standard deviation used by `sample_identity` (weights ~ N(0, s^2)).
        name: A short label ("ict", "builtin-small", ...).
    """

    neutral: np.ndarray  # [P, 3]
    faces: np.ndarray  # [F, 3]
    uvs: np.ndarray  # [P, 2]
    expression_deltas: np.ndarray  # [K, P, 3]
    expression_names: tuple[str, ...]
    identity_deltas: np.ndarray | None = None  # [K_id, P, 3]
    identity_names: tuple[str, ...] = ()
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks: dict[str, int] = field(default_factory=dict)
    identity_scale: float = 1.0
    name: str = "rig"
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.neutral = np.ascontiguousarray(self.neutral, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32)
        self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32)
        self.expression_deltas = np.ascontiguousarray(self.expression_deltas, dtype=np.float32)
        self.expression_names = tuple(str(n) for n in self.expression_names)
        if self.identity_deltas is not None and len(self.identity_deltas) == 0:
            self.identity_deltas = None
        if self.identity_deltas is not None:
            self.identity_deltas = np.ascontiguousarray(self.identity_deltas, dtype=np.float32)
        self.identity_names = tuple(str(n) for n in self.identity_names)
        self.regions = {k: np.asarray(m, dtype=bool) for k, m in self.regions.items()}
        self.landmarks = {k: int(i) for k, i in self.landmarks.items()}
        self.validate()

    # ---------------------------------------------------------------------------------------
    # validation and sizes

    def validate(self) -> None:
        """Check shapes, index ranges and names; raise ValueError naming the problem."""
        P = self.neutral.shape[0]
        if self.neutral.ndim != 2 or self.neutral.shape[1] != 3:
            raise ValueError(f"neutral must be [P, 3], got {list(self.neutral.shape)}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be [F, 3] triangles, got {list(self.faces.shape)}; "
                             "split quads into two triangles first")  # fmt: skip
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= P):
            raise ValueError(f"faces index vertices outside [0, {P}): "
                             f"min {self.faces.min()}, max {self.faces.max()}")  # fmt: skip
        if self.uvs.shape != (P, 2):
            raise ValueError(f"uvs must be [P={P}, 2], got {list(self.uvs.shape)}")
        K = len(self.expression_names)
        if self.expression_deltas.shape != (K, P, 3):
            raise ValueError(f"expression_deltas must be [K={K}, P={P}, 3] (one per name), "
                             f"got {list(self.expression_deltas.shape)}")  # fmt: skip
        if len(set(self.expression_names)) != K:
            raise ValueError("expression_names must be unique")
        if self.identity_deltas is not None:
            Ki = len(self.identity_names)
            if self.identity_deltas.shape != (Ki, P, 3):
                raise ValueError(f"identity_deltas must be [K_id={Ki}, P={P}, 3], "
                                 f"got {list(self.identity_deltas.shape)}")  # fmt: skip
        for k, m in self.regions.items():
            if m.shape != (P,):
                raise ValueError(f"region {k!r} must be a [P={P}] bool mask, got {list(m.shape)}")
        for k, i in self.landmarks.items():
            if not 0 <= i < P:
                raise ValueError(f"landmark {k!r} index {i} outside [0, {P})")

    @property
    def num_vertices(self) -> int:
        """P."""
        return int(self.neutral.shape[0])

    @property
    def num_faces(self) -> int:
        """F."""
        return int(self.faces.shape[0])

    @property
    def num_expressions(self) -> int:
        """K."""
        return len(self.expression_names)

    @property
    def num_identities(self) -> int:
        """K_id (0 when the rig has no identity modes)."""
        return 0 if self.identity_deltas is None else int(self.identity_deltas.shape[0])

    # ---------------------------------------------------------------------------------------
    # names and weights

    def expression_index(self, names: str | Iterable[str]) -> int | list[int]:
        """Index of one expression name, or a list of indices for several.

        Raises:
            ValueError: for an unknown name, listing close names and where the full list is.
        """
        if isinstance(names, str):
            return self._index_one(names)
        return [self._index_one(n) for n in names]

    def _index_one(self, name: str) -> int:
        try:
            return self.expression_names.index(name)
        except ValueError:
            close = difflib.get_close_matches(name, self.expression_names, n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown expression {name!r} for rig {self.name!r}{hint} "
                f"(the rig has {self.num_expressions}: see rig.expression_names)"
            ) from None

    def arkit_map(self) -> dict[str, tuple[tuple[str, float], ...]]:
        """ARKit name -> ((rig expression, coefficient), ...); empty for shapes the rig lacks.

        ICT splits browInnerUp and cheekPuff into _L/_R: ARKit weight w drives both halves."""
        return _arkit_identity_map(self.expression_names)

    def arkit_to_rig_matrix(self) -> np.ndarray:  # [52, K]
        """M with rig_weights = arkit_weights @ M (ARKIT_NAMES order)."""
        M = np.zeros((len(ARKIT_NAMES), self.num_expressions), np.float32)
        for a, parts in self.arkit_map().items():
            for n, c in parts:
                M[ARKIT_NAMES.index(a), self.expression_names.index(n)] = c
        return M

    def rig_to_arkit_matrix(self) -> np.ndarray:  # [K, 52]
        """M with arkit_weights = rig_weights @ M: split halves are averaged, shapes the rig
        lacks are 0, rig shapes outside ARKit are dropped."""
        M = self.arkit_to_rig_matrix().T.copy()  # [K, 52]
        cols = M.sum(0, keepdims=True)
        return np.divide(M, cols, out=np.zeros_like(M), where=cols > 0)

    def weights_from_dict(self, weights: Mapping[str, float]) -> np.ndarray:  # [K]
        """Expression weights [K] float32 from {"jawOpen": 0.5, ...}.

        Accepts the rig's own names and ARKit names the rig splits (browInnerUp on ICT sets
        browInnerUp_L and browInnerUp_R). Unknown names raise a ValueError."""
        w = np.zeros(self.num_expressions, np.float32)
        amap = self.arkit_map()
        for n, v in weights.items():
            if n in self.expression_names:
                w[self.expression_names.index(n)] += float(v)
            elif n in amap and amap[n]:
                for part, c in amap[n]:
                    w[self.expression_names.index(part)] += c * float(v)
            else:
                self._index_one(n)  # raises with close names
        return w

    # ---------------------------------------------------------------------------------------
    # evaluation

    def _deltas_torch(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        key = (dtype, str(device))
        if key not in self._torch_cache:
            P = self.num_vertices
            e = torch.as_tensor(self.expression_deltas.reshape(-1, P * 3))
            i = None
            if self.identity_deltas is not None:
                i = torch.as_tensor(self.identity_deltas.reshape(-1, P * 3))
                i = i.to(device=device, dtype=dtype)
            n = torch.as_tensor(self.neutral.reshape(P * 3))
            self._torch_cache[key] = (n.to(device=device, dtype=dtype),
                                      e.to(device=device, dtype=dtype), i)  # fmt: skip
        return self._torch_cache[key]

    def evaluate(
        self,
        expression_weights: ArrayOrTensor,  # [B, K] or [K]
        identity_weights: ArrayOrTensor | None = None,  # [B, K_id], [K_id] or None
    ) -> ArrayOrTensor:  # [B, P, 3] or [P, 3]
        """Meshes for batches of weights in one matmul: neutral + a @ id + w @ expr.

        Args:
            expression_weights: [..., K] (any leading dims, or none). Torch in, torch out
                (its dtype and device); numpy in, float32 numpy out.
            identity_weights: [..., K_id] broadcast against the expression batch, or None.

        Returns:
            Vertices [..., P, 3] in millimetres.
        """
        K, P = self.num_expressions, self.num_vertices
        is_torch = isinstance(expression_weights, Tensor) or isinstance(identity_weights, Tensor)
        if expression_weights.shape[-1] != K:
            raise ValueError(f"expression_weights must be [..., K={K}] in the order of "
                             f"rig.expression_names, got {list(expression_weights.shape)}; "
                             "build one with rig.weights_from_dict({...})")  # fmt: skip
        if identity_weights is not None:
            if self.identity_deltas is None:
                raise ValueError(f"rig {self.name!r} has no identity modes; pass "
                                 "identity_weights=None")  # fmt: skip
            if identity_weights.shape[-1] != self.num_identities:
                raise ValueError(f"identity_weights must be [..., K_id={self.num_identities}], "
                                 f"got {list(identity_weights.shape)}")  # fmt: skip
        if is_torch:
            ref = expression_weights if isinstance(expression_weights, Tensor) else identity_weights
            dtype = ref.dtype if ref.is_floating_point() else torch.float32
            w = torch.as_tensor(expression_weights, dtype=dtype, device=ref.device)
            n, e, i = self._deltas_torch(dtype, ref.device)
            out = n + w @ e
            if identity_weights is not None:
                a = torch.as_tensor(identity_weights, dtype=dtype, device=ref.device)
                out = out + a @ i
            return out.reshape(*out.shape[:-1], P, 3)
        w = np.asarray(expression_weights, dtype=np.float32)
        out = self.neutral.reshape(P * 3) + w @ self.expression_deltas.reshape(K, P * 3)
        if identity_weights is not None:
            a = np.asarray(identity_weights, dtype=np.float32)
            out = out + a @ self.identity_deltas.reshape(-1, P * 3)
        return out.reshape(*out.shape[:-1], P, 3).astype(np.float32, copy=False)

    def identity_neutral(
        self,
        identity_weights: ArrayOrTensor | None = None,  # [K_id]
    ) -> np.ndarray:  # [P, 3]
        """The neutral mesh of one identity (the rig's neutral for None)."""
        if identity_weights is None:
            return self.neutral.copy()
        w = np.zeros(self.num_expressions, np.float32)
        return np.asarray(self.evaluate(w, np.asarray(identity_weights, np.float32)))

    def sample_identity(
        self, seed: int | np.random.Generator | None = None, scale: float | None = None
    ) -> np.ndarray:  # [K_id]
        """Identity weights ~ N(0, scale^2) (scale defaults to `identity_scale`)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        s = self.identity_scale if scale is None else float(scale)
        return (rng.standard_normal(self.num_identities) * s).astype(np.float32)

    # ---------------------------------------------------------------------------------------
    # topology

    def subset(self, vertex_mask: ArrayOrTensor) -> LinearRig:
        """A new rig on the vertices where `vertex_mask` [P] is True (or on the given indices).

        Faces touching a removed vertex are dropped; the rest are re-indexed. Landmarks on
        removed vertices are dropped."""
        m = np.asarray(vertex_mask.cpu() if isinstance(vertex_mask, Tensor) else vertex_mask)
        P = self.num_vertices
        if m.dtype != bool:
            idx = m.astype(np.int64).ravel()
            m = np.zeros(P, bool)
            m[idx] = True
        if m.shape != (P,):
            raise ValueError(f"vertex_mask must be [P={P}] bool or vertex indices, "
                             f"got {list(m.shape)}")  # fmt: skip
        new_index = np.full(P, -1, np.int64)
        new_index[m] = np.arange(int(m.sum()))
        keep = m[self.faces].all(1)
        faces = new_index[self.faces[keep]].astype(np.int32)
        ident = None if self.identity_deltas is None else self.identity_deltas[:, m]
        return replace(
            self,
            neutral=self.neutral[m],
            faces=faces,
            uvs=self.uvs[m],
            expression_deltas=self.expression_deltas[:, m],
            identity_deltas=ident,
            regions={k: r[m] for k, r in self.regions.items()},
            landmarks={k: int(new_index[i]) for k, i in self.landmarks.items() if m[i]},
            _torch_cache={},
        )

    def vertex_normals(self, vertices: np.ndarray | None = None) -> np.ndarray:  # [P, 3]
        """Area-weighted unit vertex normals of `vertices` [P, 3] (the neutral by default)."""
        v = self.neutral if vertices is None else np.asarray(vertices, np.float64)
        return vertex_normals(v, self.faces)

    def to_template(self, identity_weights: np.ndarray | None = None):
        """The dataset format's Template (vertices, faces, uvs, regions) of one identity."""
        from emotalk3d.data.format import Template

        return Template(
            vertices=self.identity_neutral(identity_weights).astype(np.float32),
            faces=self.faces.copy(),
            uvs=self.uvs.copy(),
            regions={k: m.copy() for k, m in self.regions.items()},
        )


# -------------------------------------------------------------------------------------------
# pure mesh helpers


def face_normals(
    vertices: np.ndarray,  # [P, 3]
    faces: np.ndarray,  # [F, 3]
) -> np.ndarray:  # [F, 3] unnormalised (length = 2 x area)
    """Cross-product normals of counter-clockwise triangles."""
    v = np.asarray(vertices, np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return np.cross(b - a, c - a)


def vertex_normals(
    vertices: np.ndarray,  # [P, 3]
    faces: np.ndarray,  # [F, 3]
) -> np.ndarray:  # [P, 3]
    """Area-weighted unit vertex normals (zero for vertices in no triangle)."""
    fn = face_normals(vertices, faces)
    n = np.zeros((len(vertices), 3))
    for j in range(3):
        np.add.at(n, faces[:, j], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def origin_offset(
    nose_tip: np.ndarray,  # [3]
    eye_centres_y: float,
) -> np.ndarray:  # [3]
    """The point that becomes the origin under the shared convention (module docstring)."""
    return np.array([0.0, eye_centres_y, float(nose_tip[2]) - NOSE_TIP_DEPTH])


def decimate_rig(
    rig: LinearRig,
    max_vertices: int,
    groups: Sequence[str] = (),
    detail: Mapping[str, float] | None = None,
) -> LinearRig:
    """Reduce a rig to at most `max_vertices` by vertex clustering; the result is an exact
    sub-rig (every kept vertex is an original vertex with its own deltas).

    Vertices are clustered on a grid in a 6-D space (neutral position, and position with the
    mouth and eyes opened by jawOpen + eyeWide) so the two lips never merge; vertices in
    different `groups` regions (e.g. teeth vs lips) never merge either. `detail` scales the
    density per region (default: the "face" twice as dense, "head_back" 0.6). Each cluster keeps the
    vertex nearest its mean (landmarks are always kept); triangles are re-indexed to the kept
    vertices, degenerate and duplicate triangles dropped, unreferenced vertices removed.
    """
    P = rig.num_vertices
    if P <= max_vertices:
        return rig
    if max_vertices < 50:
        raise ValueError(f"max_vertices must be at least 50 for a usable mesh, got {max_vertices}")
    open_delta = np.zeros((P, 3), np.float32)
    for n, c in (("jawOpen", 1.0), ("eyeWide_L", 2.0), ("eyeWide_R", 2.0)):
        if n in rig.expression_names:
            open_delta += c * rig.expression_deltas[rig.expression_names.index(n)]
    feats = np.concatenate([rig.neutral, rig.neutral + open_delta], 1).astype(np.float64)
    density = np.ones(P)
    for r, k in (detail if detail is not None else {"face": 2.0, "head_back": 0.6}).items():
        if r in rig.regions:
            density[rig.regions[r]] = k
    feats = feats * density[:, None]
    group = np.zeros(P, np.int64)
    for gi, g in enumerate(groups):
        if g in rig.regions:
            group[rig.regions[g]] = gi + 1
    used = np.zeros(P, bool)
    used[rig.faces.ravel()] = True

    def cluster(h: float) -> tuple[np.ndarray, int]:
        cells = np.floor(feats / h).astype(np.int64)
        key = np.concatenate([cells, group[:, None]], 1)
        _, labels = np.unique(key[used], axis=0, return_inverse=True)
        return labels.ravel(), int(labels.max()) + 1

    lo, hi = 0.1, float(np.ptp(rig.neutral, 0).max())
    for _ in range(30):  # bisection on the cell size for the largest count <= max_vertices
        mid = np.sqrt(lo * hi)
        if cluster(mid)[1] > max_vertices:
            lo = mid
        else:
            hi = mid
    labels, n = cluster(hi)
    idx_used = np.flatnonzero(used)
    f = feats[idx_used]
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    mean = np.stack([np.bincount(labels, f[:, j], n) for j in range(6)], 1) / counts[:, None]
    d = np.linalg.norm(f - mean[labels], axis=1)
    order = np.lexsort((d, labels))  # per cluster, nearest first
    first = np.ones(len(order), bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    rep = np.empty(n, np.int64)
    rep[labels[order][first]] = idx_used[order][first]
    for i in rig.landmarks.values():  # landmarks represent their own cluster
        if used[i]:
            rep[labels[np.searchsorted(idx_used, i)]] = i
    vmap = np.full(P, -1, np.int64)
    vmap[idx_used] = rep[labels]
    tri = vmap[rig.faces]
    ok = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    tri = tri[ok]
    _, first_tri = np.unique(np.sort(tri, 1), axis=0, return_index=True)
    tri = tri[np.sort(first_tri)]
    keep = np.zeros(P, bool)
    keep[tri.ravel()] = True
    for i in rig.landmarks.values():
        keep[i] |= used[i]
    new_index = np.full(P, -1, np.int64)
    new_index[keep] = np.arange(int(keep.sum()))
    sub = rig.subset(keep)
    sub.faces = new_index[tri].astype(np.int32)
    sub.validate()
    return sub


# -------------------------------------------------------------------------------------------
# the ICT Face Model Light


def find_ict_model() -> Path | None:
    """Path of the ICT Face Model Light archive, or None.

    Looks at $EMOTALK3D_ICT_MODEL, then `<repo>/../shared/assets/ict-facekit/`, then
    `../shared/assets/ict-facekit/` relative to the working directory."""
    env = os.environ.get(ICT_ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            p = p / ICT_FILE
        return p if p.is_file() else None
    repo = Path(__file__).resolve().parents[2]
    for base in (repo / "..", Path.cwd() / ".."):
        p = (base / "shared" / "assets" / "ict-facekit" / ICT_FILE).resolve()
        if p.is_file():
            return p
    return None


def _points_in_polygon(
    pts: np.ndarray,  # [N, 2]
    poly: np.ndarray,  # [M, 2]
) -> np.ndarray:  # [N] bool
    """Even-odd ray casting, vectorised over points."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[None, :, 0], poly[None, :, 1]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    cross = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return ((cross & (x < xi)).sum(1) % 2) == 1


def _polyline_distance(
    pts: np.ndarray,  # [N, 2]
    line: np.ndarray,  # [M, 2]
    samples: int = 8,
) -> np.ndarray:  # [N]
    """Distance from points to a densely resampled polyline (xy)."""
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    dense = np.concatenate([line[i] * (1 - t) + line[i + 1] * t for i in range(len(line) - 1)]
                           + [line[-1:]])  # fmt: skip
    return np.sqrt(((pts[:, None, :] - dense[None]) ** 2).sum(-1)).min(1)


def load_ict_rig(
    path: str | os.PathLike | None = None,
    regions: Sequence[str] = ICT_DEFAULT_REGIONS,
    max_vertices: int | None = None,
    num_identities: int | None = None,
    identity_scale: float = 0.8,
) -> LinearRig:
    """The ICT Face Model Light as a LinearRig in millimetres, centred by the shared convention.

    Args:
        path: The .npz archive (or its folder); `find_ict_model()` when None.
        regions: ICT regions to keep (vertex ranges of its `region_names`). The default keeps
            the skin (face, head_neck), the mouth interior (mouth_socket, gums_tongue, teeth)
            and the eyeballs; eyelashes, occlusion, blend and lacrimal shells are dropped.
        max_vertices: Decimate (vertex clustering, an exact sub-rig) to at most this many
            vertices; `SIZE_MAX_VERTICES` gives the synthetic-data sizes.
        num_identities: Keep only the first identity modes (all 100 when None).
        identity_scale: Standard deviation for `sample_identity`.

    Raises:
        FileNotFoundError: when no archive is found, naming where it was looked for.
        ValueError: for an unknown region name.
    """
    p = Path(path) if path is not None else find_ict_model()
    if p is not None and p.is_dir():
        p = p / ICT_FILE
    if p is None or not p.is_file():
        raise FileNotFoundError(
            f"ICT Face Model Light not found (looked at {path or 'the default places'}): set "
            f"${ICT_ENV_VAR} to {ICT_FILE}, put it in ../shared/assets/ict-facekit/, "
            "or use the built-in rig (--rig builtin)"
        )
    d = np.load(p)
    region_names = [str(r) for r in d["region_names"]]
    ranges = d["region_vertex_ranges"]
    P0 = d["neutral"].shape[0]
    sel = np.zeros(P0, bool)
    rmask: dict[str, np.ndarray] = {}
    for r, (a, b) in zip(region_names, ranges, strict=True):
        rmask[r] = np.zeros(P0, bool)
        rmask[r][a:b] = True
    for r in regions:
        if r not in rmask:
            raise ValueError(
                f"unknown ICT region {r!r}; expected some of: {', '.join(region_names)}"
            )
        sel |= rmask[r]

    neutral = d["neutral"].astype(np.float64) * 10.0  # cm -> mm
    lm68 = d["landmarks68"].astype(np.int64)
    nose = neutral[lm68[30]]
    eye_y = float(neutral[lm68[36:48], 1].mean())
    neutral = neutral - origin_offset(nose, eye_y)

    # triangles: quads -> (a, b, c), (a, c, d); -1 padded triangles -> (a, b, c)
    poly = d["faces"].astype(np.int64)
    quad = poly[:, 3] >= 0
    tris = np.concatenate([poly[:, [0, 1, 2]], poly[quad][:, [0, 2, 3]]])
    # per-vertex UVs: the first UV each vertex is used with (fractional part: UDIM tiles)
    fuv = d["face_uvs"].astype(np.int64)
    flat_v, flat_uv = poly.ravel(), fuv.ravel()
    valid = flat_v >= 0
    uvs = np.zeros((P0, 2), np.float64)
    vids, first = np.unique(flat_v[valid], return_index=True)
    uv_all = d["uvs"].astype(np.float64)
    uvs[vids] = uv_all[flat_uv[valid][first]]
    uvs = np.clip(uvs - np.floor(uvs), 0.0, 1.0)

    names = tuple(str(n) for n in d["expression_names"])
    expr = d["expression_deltas"].astype(np.float32) * 10.0
    ident_names = tuple(str(n) for n in d["identity_names"])
    ident = d["identity_deltas"]
    if num_identities is not None:
        ident, ident_names = ident[:num_identities], ident_names[:num_identities]
    ident = ident.astype(np.float32) * 10.0

    # regions of the rig (on the full model, then subset)
    xy = neutral[:, :2]
    skin = rmask["face"] | rmask["head_neck"]
    interior = rmask["mouth_socket"] | rmask["gums_tongue"] | rmask["teeth"]
    eyeballs = rmask["eyeball_left"] | rmask["eyeball_right"]
    lips_poly = neutral[lm68[48:60], :2]
    lip_z = neutral[lm68[48:68], 2].min()
    lips = rmask["face"] & _points_in_polygon(xy, lips_poly) & (neutral[:, 2] > lip_z - 15.0)
    brows = np.zeros(P0, bool)
    eyes = eyeballs.copy()
    for brow, eye in ((lm68[17:22], lm68[36:42]), (lm68[22:27], lm68[42:48])):
        bl = neutral[brow, :2]
        brows |= rmask["face"] & (_polyline_distance(xy, bl) < 6.0)
        pts = neutral[np.concatenate([brow, eye])]
        lo, hi = pts.min(0), pts.max(0)
        box = (xy[:, 0] > lo[0] - 6) & (xy[:, 0] < hi[0] + 6)
        box &= (xy[:, 1] > lo[1] - 10) & (xy[:, 1] < hi[1] + 10)
        eyes |= rmask["face"] & box & (neutral[:, 2] > lo[2] - 15)
    eyes |= brows
    region_out = {
        "face": rmask["narrow_face"].copy(),
        "skin": skin,
        "head_back": rmask["head_neck"].copy(),
        "lips": lips,
        "eyes": eyes,
        "eyeballs": eyeballs,
        "brows": brows,
        "mouth_interior": interior,
        "teeth": rmask["teeth"].copy(),
        "tongue": rmask["gums_tongue"].copy(),
    }
    landmarks = {
        "nose_tip": lm68[30], "chin": lm68[8],
        "lip_upper_mid": lm68[62], "lip_lower_mid": lm68[66],
        "lip_upper_outer": lm68[51], "lip_lower_outer": lm68[57],
        "mouth_corner_R": lm68[48], "mouth_corner_L": lm68[54],
        "eye_upper_R": lm68[37], "eye_lower_R": lm68[41],
        "eye_upper_L": lm68[44], "eye_lower_L": lm68[46],
        "brow_outer_R": lm68[17], "brow_inner_R": lm68[21],
        "brow_inner_L": lm68[22], "brow_outer_L": lm68[26],
    }  # fmt: skip
    full = LinearRig(
        neutral=neutral.astype(np.float32),
        faces=tris,
        uvs=uvs.astype(np.float32),
        expression_deltas=expr,
        expression_names=names,
        identity_deltas=ident,
        identity_names=ident_names,
        regions=region_out,
        landmarks={k: int(v) for k, v in landmarks.items()},
        identity_scale=identity_scale,
        name="ict",
    )
    rig = full.subset(sel)
    # drop vertices no kept triangle uses (none in the default selection)
    used = np.zeros(rig.num_vertices, bool)
    used[rig.faces.ravel()] = True
    if not used.all():
        rig = rig.subset(used)
    if max_vertices is not None:
        rig = decimate_rig(rig, max_vertices, groups=("mouth_interior", "eyeballs", "teeth"))
        rig.name = f"ict-{max_vertices}"
    return rig


# -------------------------------------------------------------------------------------------
# one entry point for both sources


def load_rig(
    kind: str = "builtin",
    size: str = "small",
    path: str | os.PathLike | None = None,
    seed: int | None = None,
) -> LinearRig:
    """The rig the synthetic data uses: `kind` "builtin" (procedural head) or "ict", at
    `size` "tiny", "small" or "full" (vertex budgets in `SIZE_MAX_VERTICES`)."""
    if size not in SIZE_MAX_VERTICES:
        raise ValueError(f"size must be one of {', '.join(SIZE_MAX_VERTICES)}, got {size!r}")
    if kind == "builtin":
        from emotalk3d.geometry.procedural import procedural_head_rig

        return procedural_head_rig(resolution=size, seed=seed)
    if kind == "ict":
        return load_ict_rig(path, max_vertices=SIZE_MAX_VERTICES[size])
    raise ValueError(f"rig kind must be 'builtin' or 'ict', got {kind!r}")


def __getattr__(name: str):  # lazy re-export: procedural_head_rig lives in procedural.py
    if name == "procedural_head_rig":
        from emotalk3d.geometry.procedural import procedural_head_rig

        return procedural_head_rig
    raise AttributeError(name)
