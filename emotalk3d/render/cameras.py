"""Camera maths: intrinsics, look-at extrinsics, the 180-degree capture arc, orbits, projection.

Conventions (see docs/cameras.md):

- Millimetres. OpenCV camera: x right, y down, z forward (the viewing direction).
- A camera is a world-to-camera 4x4 matrix `[R | t]` (x_cam = R x_world + t) and a 3x3 pixel
  intrinsics matrix K, exactly gsplat's `viewmats` and `Ks`. The pixel (row i, column j) has
  its centre at (u, v) = (j + 0.5, i + 0.5).
- Head coordinates: +y up, +z out of the face (the face looks along +z), origin near the head
  centre. The frontal camera sits at (0, y, +D) and looks toward -z.
- Yaw turns a camera around the head's vertical axis (+y) starting from the frontal camera;
  positive yaw moves the camera toward +x, which is the subject's LEFT (the frontal image
  shows the subject's left on the image's right). Pitch moves it up (positive) or down.

Every function is pure. Functions accept numpy arrays, torch tensors or plain sequences; the
result is a torch tensor when the main input is one (same dtype and device, differentiable),
else a float64 numpy array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from emotalk3d.data.format import Camera

# A ~230 mm tall head fills about 2/3 of the image height: the visible height at the target is
# 2 * 650 * tan(15 deg) = 348 mm.
DEFAULT_DISTANCE = 650.0  # mm, camera centre to target
DEFAULT_FOV_DEG = 30.0  # vertical field of view
# The rigs put the origin at eye height, 105 mm behind the nose tip (docs/rigs.md); aiming a
# little lower centres the face from hairline to chin (the nose tip lands near the centre).
DEFAULT_TARGET = (0.0, -30.0, 0.0)  # mm
DEFAULT_NUM_CAMERAS = 11
DEFAULT_ARC_DEG = 180.0

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _as_torch(x: ArrayLike, like: Tensor | None = None) -> Tensor:
    """`x` as a tensor: float64 on CPU unless `like` (a tensor) fixes dtype and device."""
    if isinstance(x, Tensor):
        return x if like is None else x.to(dtype=like.dtype, device=like.device)
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    return t if like is None else t.to(dtype=like.dtype, device=like.device)


def _out(x: Tensor, as_tensor: bool) -> Tensor | np.ndarray:
    return x if as_tensor else x.detach().cpu().numpy().astype(np.float64)


def _check_shape(name: str, x: Tensor, shape: tuple[int, ...], hint: str) -> None:
    if tuple(x.shape[-len(shape) :]) != shape:
        raise ValueError(f"{name} must have shape [..., {', '.join(map(str, shape))}] ({hint}); "
                         f"got {tuple(x.shape)}")  # fmt: skip


# --------------------------------------------------------------------------------------------
# intrinsics


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:  # [3, 3]
    """Pixel intrinsics K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (float64 numpy)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def focal_from_fov(fov_deg: float, size: int) -> float:
    """Focal length in pixels for a field of view `fov_deg` spanning `size` pixels."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must lie in (0, 180) degrees, got {fov_deg}")
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2.0)


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> np.ndarray:  # [3, 3]
    """Intrinsics with square pixels, a vertical field of view `fov_deg` and the principal
    point at the image centre (width / 2, height / 2)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got width={width}, height={height}")
    f = focal_from_fov(fov_deg, height)
    return intrinsics(f, f, width / 2.0, height / 2.0)


def scale_intrinsics(
    K: ArrayLike,  # [..., 3, 3]
    sx: float,
    sy: float | None = None,
) -> Tensor | np.ndarray:  # [..., 3, 3]
    """Intrinsics for an image resized by (sx, sy) (new_width = sx * width).

    With pixel centres at (j + 0.5, i + 0.5), resizing scales u and v exactly, so fx, cx are
    multiplied by sx and fy, cy by sy (no half-pixel shift needed).
    """
    sy = sx if sy is None else sy
    is_t = isinstance(K, Tensor)
    k = _as_torch(K)
    _check_shape("K", k, (3, 3), "pixel intrinsics")
    scale = torch.tensor([sx, sy, 1.0], dtype=k.dtype, device=k.device)
    return _out(k * scale[:, None], is_t)


# --------------------------------------------------------------------------------------------
# extrinsics


def look_at(
    eye: ArrayLike,  # [3]
    target: ArrayLike = (0.0, 0.0, 0.0),  # [3]
    up: ArrayLike = (0.0, 1.0, 0.0),  # [3]
) -> Tensor | np.ndarray:  # [4, 4] world_to_cam
    """World-to-camera matrix of a camera at `eye` looking at `target` (OpenCV convention).

    The camera's z axis points from eye to target; world `up` maps to -y in the camera (up in
    the image, since image rows grow downward); x = z cross up points to the image's right.

    Raises:
        ValueError: if eye equals target or the view direction is parallel to `up`.
    """
    is_t = isinstance(eye, Tensor)
    e = _as_torch(eye)
    t = _as_torch(target, like=e)
    u = _as_torch(up, like=e)
    for name, v in (("eye", e), ("target", t), ("up", u)):
        if v.shape != (3,):
            raise ValueError(f"look_at: {name} must be a 3-vector, got shape {tuple(v.shape)}")
    fwd = t - e
    n = torch.linalg.norm(fwd)
    if float(n.detach()) < 1e-9:
        raise ValueError("look_at: eye and target coincide; place the camera away from target")
    z = fwd / n
    x = torch.linalg.cross(z, u)
    nx = torch.linalg.norm(x)
    if float(nx.detach()) < 1e-9 * float(torch.linalg.norm(u).detach()):
        raise ValueError("look_at: view direction is parallel to `up`; pass another up vector")
    x = x / nx
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    m = torch.eye(4, dtype=e.dtype, device=e.device)
    m = torch.cat([torch.cat([R, (-(R @ e))[:, None]], 1), m[3:]], 0)
    return _out(m, is_t)


def camera_center(world_to_cam: ArrayLike) -> Tensor | np.ndarray:  # [..., 3]
    """World position of the camera centre, -R^T t."""
    is_t = isinstance(world_to_cam, Tensor)
    m = _as_torch(world_to_cam)
    _check_shape("world_to_cam", m, (4, 4), "world-to-camera matrix")
    R, t = m[..., :3, :3], m[..., :3, 3]
    return _out(-(R.transpose(-1, -2) @ t[..., None])[..., 0], is_t)


def view_direction(world_to_cam: ArrayLike) -> Tensor | np.ndarray:  # [..., 3]
    """World direction the camera looks along (its +z axis)."""
    is_t = isinstance(world_to_cam, Tensor)
    m = _as_torch(world_to_cam)
    _check_shape("world_to_cam", m, (4, 4), "world-to-camera matrix")
    return _out(m[..., 2, :3], is_t)


def yaw_of(world_to_cam: ArrayLike) -> float:
    """Yaw in degrees of a camera's viewing direction: 0 for a camera looking along -z (the
    frontal camera), positive when the camera sits toward +x and looks back toward -x.

    It depends on the viewing direction only, so any camera on the arc, whatever its distance
    or height, has the yaw it was placed at.
    """
    d = np.asarray(_out(_as_torch(view_direction(world_to_cam)), False))
    if d.shape != (3,):
        raise ValueError(f"yaw_of takes one [4, 4] matrix, got batch shape {d.shape[:-1]}")
    return math.degrees(math.atan2(-d[0], -d[2]))


def pitch_of(world_to_cam: ArrayLike) -> float:
    """Pitch in degrees: positive when the camera looks down (sits above its target)."""
    d = np.asarray(_out(_as_torch(view_direction(world_to_cam)), False))
    return math.degrees(math.asin(float(np.clip(-d[1], -1.0, 1.0))))


def orbit_eye(
    yaw_deg: float,
    pitch_deg: float = 0.0,
    distance: float = DEFAULT_DISTANCE,
    target: ArrayLike = DEFAULT_TARGET,  # [3]
    height: float = 0.0,
) -> np.ndarray:  # [3]
    """Camera centre at `yaw_deg`/`pitch_deg` on a sphere of radius `distance` around `target`,
    raised by `height` mm: target + distance * (cos p sin y, sin p, cos p cos y) + (0, h, 0)."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    d = np.array([math.cos(p) * math.sin(y), math.sin(p), math.cos(p) * math.cos(y)])
    return np.asarray(target, dtype=np.float64) + distance * d + np.array([0.0, height, 0.0])


def orbit_camera(
    yaw_deg: float,
    pitch_deg: float = 0.0,
    distance: float = DEFAULT_DISTANCE,
    target: ArrayLike = DEFAULT_TARGET,  # [3]
    height: float = 0.0,
) -> np.ndarray:  # [4, 4] world_to_cam
    """World-to-camera matrix of a camera orbiting `target` and looking at it.

    Yaw turns around +y starting from the frontal camera (yaw 0 sits on +z); positive yaw
    moves the camera toward +x, the subject's left. Positive pitch raises the camera. `height`
    raises the camera without tilting the orbit, as `arc_cameras` does; the camera still
    looks at `target`.
    """
    if distance <= 0:
        raise ValueError(f"orbit distance must be positive (mm), got {distance}")
    return np.asarray(look_at(orbit_eye(yaw_deg, pitch_deg, distance, target, height), target))


def yaw_camera(
    world_to_cam: ArrayLike,  # [4, 4]
    yaw_deg: float,
    pivot: ArrayLike = (0.0, 0.0, 0.0),  # [3]
) -> Tensor | np.ndarray:  # [4, 4]
    """Turn a camera by `yaw_deg` around the vertical (+y) axis through `pivot`.

    This is `--view 30`: the frontal camera turned 30 degrees around the head, keeping its
    distance, height and aim relative to the head. Positive yaw moves the camera toward +x.
    """
    is_t = isinstance(world_to_cam, Tensor)
    m = _as_torch(world_to_cam)
    _check_shape("world_to_cam", m, (4, 4), "world-to-camera matrix")
    a = math.radians(yaw_deg)
    c, s = math.cos(a), math.sin(a)
    rot = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=m.dtype)
    p = _as_torch(pivot, like=m)
    # world point -> rotate back by -yaw around pivot -> old camera
    # x_cam = R (rot^T (x - p) + p) + t
    R, t = m[..., :3, :3], m[..., :3, 3]
    rot = rot.to(m.device)
    R_new = R @ rot.T
    t_new = t + (R @ p[:, None])[..., 0] - (R_new @ p[:, None])[..., 0]
    out = m.clone()
    out[..., :3, :3] = R_new
    out[..., :3, 3] = t_new
    return _out(out, is_t)


def arc_yaws(num: int = DEFAULT_NUM_CAMERAS, arc_deg: float = DEFAULT_ARC_DEG) -> np.ndarray:
    """Yaws in degrees of `num` cameras spread evenly over an arc centred on the frontal view
    (from -arc/2 to +arc/2; a single camera is frontal)."""
    if num < 1:
        raise ValueError(f"need at least one camera, got num={num}")
    if num == 1:
        return np.zeros(1)
    return np.linspace(-arc_deg / 2.0, arc_deg / 2.0, num)  # [C]


def arc_cameras(
    num: int = DEFAULT_NUM_CAMERAS,
    arc_deg: float = DEFAULT_ARC_DEG,
    distance: float = DEFAULT_DISTANCE,
    height: float = 0.0,
    target: ArrayLike = DEFAULT_TARGET,  # [3]
    width: int = 256,
    height_px: int | None = None,
    fov_deg: float = DEFAULT_FOV_DEG,
    focal: float | None = None,
    ids: Sequence[str] | None = None,
) -> list[Camera]:
    """`num` calibrated cameras on a horizontal arc around `target`, all looking at it.

    Args:
        num: number of cameras (11 in the EmoTalk3D capture).
        arc_deg: span of the arc in degrees, centred on the frontal view (yaw 0).
        distance: horizontal distance from `target` to every camera centre (mm).
        height: camera height above the target (mm); 0 puts the arc at head height.
        target: the point the cameras look at (mm), normally the head centre.
        width: image width in pixels.
        height_px: image height in pixels (default: square, equal to `width`).
        fov_deg: vertical field of view, used when `focal` is not given.
        focal: focal length in pixels (square pixels); overrides `fov_deg`.
        ids: camera ids (default "cam00", "cam01", ... from yaw -arc/2 to +arc/2).

    Returns:
        Cameras ordered by increasing yaw; the middle one (odd `num`) is frontal.
    """
    h_px = width if height_px is None else height_px
    K = (intrinsics_from_fov(fov_deg, width, h_px) if focal is None
         else intrinsics(focal, focal, width / 2.0, h_px / 2.0))  # fmt: skip
    yaws = arc_yaws(num, arc_deg)
    if ids is None:
        ids = [f"cam{i:02d}" for i in range(num)]
    if len(ids) != num:
        raise ValueError(f"got {len(ids)} camera ids for {num} cameras")
    return [
        Camera(
            id=str(cid),
            K=K.copy(),
            world_to_cam=orbit_camera(float(y), 0.0, distance, target, height),
            width=int(width),
            height=int(h_px),
        )
        for cid, y in zip(ids, yaws, strict=True)
    ]


def interpolate_orbit(
    num_frames: int,
    yaw_keys_deg: Sequence[float] = (-30.0, 30.0),
    pitch_keys_deg: Sequence[float] | None = None,
    distance: float = DEFAULT_DISTANCE,
    target: ArrayLike = DEFAULT_TARGET,  # [3]
    height: float = 0.0,
    loop: bool = False,
) -> np.ndarray:  # [T, 4, 4]
    """A moving camera for videos: one world-to-camera matrix per frame.

    The camera passes through the yaw (and pitch) keyframes at evenly spaced times, easing in
    and out of each (cosine ease), always looking at `target`. With `loop`, it returns to the
    first keyframe at the end, so a looping video has no jump.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    yaws = list(yaw_keys_deg)
    pitches = [0.0] * len(yaws) if pitch_keys_deg is None else list(pitch_keys_deg)
    if not yaws or len(pitches) != len(yaws):
        raise ValueError(f"need matching non-empty yaw/pitch keys, got {len(yaws)} yaws and "
                         f"{len(pitches)} pitches")  # fmt: skip
    if loop:
        yaws.append(yaws[0])
        pitches.append(pitches[0])
    keys_y, keys_p = np.asarray(yaws, float), np.asarray(pitches, float)
    if len(keys_y) == 1:
        ys, ps = np.full(num_frames, keys_y[0]), np.full(num_frames, keys_p[0])
    else:
        denom = num_frames if loop else max(num_frames - 1, 1)
        s = np.arange(num_frames) / denom * (len(keys_y) - 1)  # segment coordinate
        k = np.minimum(np.floor(s).astype(int), len(keys_y) - 2)
        f = s - k
        w = 0.5 - 0.5 * np.cos(np.pi * f)  # ease in/out
        ys = keys_y[k] * (1 - w) + keys_y[k + 1] * w
        ps = keys_p[k] * (1 - w) + keys_p[k + 1] * w
    return np.stack(
        [
            orbit_camera(float(y), float(p), distance, target, height)
            for y, p in zip(ys, ps, strict=True)
        ]
    )


# --------------------------------------------------------------------------------------------
# projection


def project_points(
    points: ArrayLike,  # [..., N, 3] world, mm
    world_to_cam: ArrayLike,  # [..., 4, 4]
    K: ArrayLike,  # [..., 3, 3]
) -> tuple[Tensor | np.ndarray, Tensor | np.ndarray]:  # ([..., N, 2] pixels, [..., N] depth)
    """Pixel coordinates (u, v) and camera-space depth z of world points.

    (u, v) follow the pixel-centre convention of the module: pixel (i, j) spans
    [j, j + 1) x [i, i + 1). Points behind the camera get z <= 0 and meaningless (u, v);
    callers test depth. Batched over leading dimensions (e.g. cameras: points [N, 3],
    world_to_cam [C, 4, 4], K [C, 3, 3] -> [C, N, 2], [C, N]).
    """
    is_t = isinstance(points, Tensor)
    p = _as_torch(points)
    m = _as_torch(world_to_cam, like=p)
    k = _as_torch(K, like=p)
    _check_shape("points", p, (3,), "world points")
    _check_shape("world_to_cam", m, (4, 4), "world-to-camera matrix")
    _check_shape("K", k, (3, 3), "pixel intrinsics")
    cam = p @ m[..., :3, :3].transpose(-1, -2) + m[..., None, :3, 3]  # [..., N, 3]
    z = cam[..., 2]
    safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    uv = cam[..., :2] / safe[..., None]
    uv = uv @ k[..., :2, :2].transpose(-1, -2) + k[..., None, :2, 2]
    return _out(uv, is_t), _out(z, is_t)


def stack_cameras(
    cameras: Sequence[Camera],
) -> tuple[np.ndarray, np.ndarray, int, int]:  # ([C, 4, 4], [C, 3, 3], W, H)
    """viewmats, Ks and the common image size of a camera list (gsplat's inputs).

    Raises:
        ValueError: if the list is empty or the cameras differ in image size.
    """
    if not cameras:
        raise ValueError("need at least one camera")
    sizes = {(c.width, c.height) for c in cameras}
    if len(sizes) != 1:
        raise ValueError(f"cameras must share one image size to be batched, got {sorted(sizes)}")
    w, h = sizes.pop()
    viewmats = np.stack([np.asarray(c.world_to_cam, np.float64) for c in cameras])
    Ks = np.stack([np.asarray(c.K, np.float64) for c in cameras])
    return viewmats, Ks, int(w), int(h)
