"""Synthetic appearance, scene proxies, the frame renderer and contact sheets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d.data.synth import appearance as ap
from emotalk3d.data.synth.preview import contact_sheet
from emotalk3d.data.synth.scene import build_scene, kabsch, render_views
from emotalk3d.render.cameras import arc_cameras, project_points


def _egg_head(r: float = 90.0, nlat: int = 32, nlon: int = 48):  # ([P,3], [F,3], [P,2], regions)
    """A UV-sphere head stretched to a head's proportions, with eye and lip patches."""
    th = np.linspace(0, np.pi, nlat + 1)
    ph = np.linspace(-np.pi, np.pi, nlon + 1)
    t, p = np.meshgrid(th, ph, indexing="ij")
    v = np.stack([np.sin(t) * np.sin(p) * 0.8, np.cos(t) * 1.2, np.sin(t) * np.cos(p)], -1)
    v = (r * v).reshape(-1, 3)
    i, j = np.mgrid[0:nlat, 0:nlon]
    a, b = i * (nlon + 1) + j, i * (nlon + 1) + j + 1
    c, d = a + nlon + 1, b + nlon + 1
    f = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)]).reshape(-1, 3)
    uv = np.stack([(p + np.pi) / (2 * np.pi), t / np.pi], -1).reshape(-1, 2)
    front = v[:, 2] > 40
    regions = {
        "face": v[:, 2] > 0,
        "eyes": front & (np.abs(np.abs(v[:, 0]) - 30) < 12) & (np.abs(v[:, 1] - 20) < 9),
        "lips": front & (np.abs(v[:, 0]) < 25) & (np.abs(v[:, 1] + 50) < 9),
        "mouth_interior": np.zeros(len(v), bool),
    }
    return v, f, uv, regions


@pytest.fixture(scope="module")
def egg():
    return _egg_head()


@pytest.fixture(scope="module")
def scene(egg):
    v, f, uv, regions = egg
    return build_scene(v, f, regions, 3, uvs=uv)


def _pixel(points: np.ndarray, cam) -> np.ndarray:  # [N, 3] -> [N, 2] int (row, col)
    uv, _ = project_points(points, cam.world_to_cam, cam.K)
    return np.floor(uv[:, ::-1]).astype(int)


def test_appearance_is_seeded_and_skin_tones_are_plausible():
    a, b, c = ap.random_appearance(7), ap.random_appearance(7), ap.random_appearance(8)
    np.testing.assert_array_equal(a.skin, b.skin)
    np.testing.assert_array_equal(a.textures, b.textures)
    assert not np.allclose(a.skin, c.skin)
    skins = np.stack([ap.random_appearance(s, texture_size=8).skin for s in range(40)])
    lo, hi = ap.SKIN_TONES.min(0) * 0.94, ap.SKIN_TONES.max(0) * 1.06
    assert ((skins >= lo) & (skins <= hi)).all()
    assert skins[:, 0].std() > 0.1  # a real range, not one tone
    assert (skins[:, 0] >= skins[:, 2]).all()  # skin is warmer than it is blue
    lips = np.stack([ap.random_appearance(s, texture_size=8).lips for s in range(40)])
    assert (lips[:, 0] / lips[:, 1] > skins[:, 0] / skins[:, 1]).all()  # lips are redder


def test_lambert_facing_the_light_is_brighter_than_facing_away():
    light = np.array([0.0, 0.0, 1.0])
    albedo = torch.full((3, 3), 0.8)
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.7071, 0.7071], [0.0, 0.0, -1.0]])
    out = ap.lambert(albedo, n, light, ambient=0.3, diffuse=0.6)
    np.testing.assert_allclose(out[:, 0].numpy(), [0.8 * 0.9, 0.8 * (0.3 + 0.6 * 0.7071), 0.24],
                               rtol=1e-4)  # fmt: skip


def test_turning_the_head_toward_the_fixed_light_brightens_the_face(egg, scene):
    v = egg[0]
    cam = arc_cameras(1, width=96)[0]  # frontal
    light = scene.appearance.light_dir
    yaw = np.degrees(np.arctan2(light[0], light[2]))  # light's azimuth: toward +x
    brightness = {}
    for name, angle in (("toward", yaw), ("away", -yaw - 40.0)):
        a = np.radians(angle)
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        vr = v @ R.T
        img, _ = render_views(scene, vr, [cam])
        # the surface point at the front of the face, rotated with the head
        front = vr[np.argmax(v[:, 2] - 0.01 * np.abs(v[:, 1] + 20))][None]
        i, j = _pixel(front, cam)[0]
        brightness[name] = img[0, i - 1 : i + 2, j - 1 : j + 2].astype(float).mean()
    assert brightness["toward"] > brightness["away"] + 20


def test_render_views_shapes_mask_background_and_lips(egg, scene):
    v = egg[0]
    cams = arc_cameras(3, width=64, height_px=48)
    images, masks = render_views(scene, v, cams, background=(0.0, 0.0, 1.0))
    assert images.shape == (3, 48, 64, 3) and images.dtype == np.uint8
    assert masks.shape == (3, 48, 64) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 255}
    bg = masks == 0
    assert bg.any() and (masks == 255).mean() > 0.2
    assert (images[bg] == [0, 0, 255]).all()
    # lips are redder than the cheek in the frontal view
    front = cams[1]
    lips = v[egg[3]["lips"]].mean(0, keepdims=True) + [0, 0, 5.0]
    cheek = np.array([[45.0, -20.0, 70.0]])
    (li, lj), (ci, cj) = _pixel(np.concatenate([lips, cheek]), front)
    lip_rgb, cheek_rgb = images[1, li, lj].astype(float), images[1, ci, cj].astype(float)
    assert lip_rgb[0] / (lip_rgb[1] + 1) > cheek_rgb[0] / (cheek_rgb[1] + 1) * 1.1
    # supersampling keeps the image and softens mask edges
    img2, m2 = render_views(scene, v, cams, ssaa=2)
    assert img2.shape == images.shape
    assert ((m2 > 0) & (m2 < 255)).any()


def test_proxies_follow_the_head_rigidly_neck_partly_shoulders_not(egg, scene):
    v = egg[0]
    rest = {p.name: p.vertices for p in scene.meshes_for_frame(v)}
    shift = np.array([4.0, -3.0, 2.0])
    moved = {p.name: p.vertices for p in scene.meshes_for_frame(v + shift)}
    np.testing.assert_allclose(
        moved["hair"] - rest["hair"], np.broadcast_to(shift, rest["hair"].shape), atol=1e-9
    )  # noqa: E501
    np.testing.assert_array_equal(moved["torso"], rest["torso"])
    neck_motion = moved["neck"] - rest["neck"]
    frac = neck_motion @ shift / (shift @ shift)
    assert (frac > 0).all() and (frac <= 0.2 + 1e-9).all()
    # a jaw-like motion of the lower face leaves the hair cap where it was
    jaw = v.copy()
    low = v[:, 1] < -40
    jaw[low] += [0.0, -8.0, 0.0]
    hair = {p.name: p.vertices for p in scene.meshes_for_frame(jaw)}["hair"]
    np.testing.assert_allclose(hair, rest["hair"], atol=1e-6)
    # the hair cap sits outside the head
    assert np.linalg.norm(rest["hair"], axis=1).min() > 0.8 * 90.0


def test_kabsch_recovers_a_rotation():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((20, 3))
    a = 0.3
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    Rf, t = kabsch(src, src @ R.T + [1, 2, 3])
    np.testing.assert_allclose(Rf, R, atol=1e-9)
    np.testing.assert_allclose(t, [1, 2, 3], atol=1e-9)


def test_contact_sheet_tiles_and_labels(tmp_path):
    imgs = [[np.full((10, 12, 3), 40 * (r + c), np.uint8) for c in range(3)] for r in range(2)]
    sheet = contact_sheet(imgs, ["cam00", "cam01"], ["f0", "f1", "f2"], tmp_path / "s.png")
    assert (tmp_path / "s.png").exists()
    from emotalk3d.data.synth import preview

    assert sheet.size == (preview.LABEL_W + 3 * 12 + 4 * 2, preview.LABEL_H + 2 * 10 + 3 * 2)
    px = np.asarray(sheet)
    assert (px[preview.LABEL_H + 2 + 10 + 2 + 5, preview.LABEL_W + 2 + 12 + 2 + 6] == 80).all()
    with pytest.raises(ValueError, match="row"):
        contact_sheet(imgs, ["only one"])


def _rig_or_skip(kind: str):
    from emotalk3d.geometry.rig import find_ict_model, load_rig

    if kind == "ict" and find_ict_model() is None:
        pytest.skip("ICT Face Model Light not found (../shared/assets or $EMOTALK3D_ICT_MODEL)")
    return load_rig(kind, "tiny")


@pytest.mark.parametrize("kind", ["builtin", "ict"])
def test_rig_head_is_centred_and_inside_every_arc_camera(kind):
    rig = _rig_or_skip(kind)
    v = np.asarray(rig.neutral, np.float64)
    cams = arc_cameras(11, width=128)
    nose = v[rig.landmarks["nose_tip"]][None]  # landmarks are vertex indices
    uv, _ = project_points(nose, cams[5].world_to_cam, cams[5].K)
    assert np.abs(uv[0] - 64.0).max() < 0.1 * 128
    regions = {k: np.asarray(m, bool) for k, m in rig.regions.items()}
    scene = build_scene(v, np.asarray(rig.faces), regions, 0, uvs=np.asarray(rig.uvs))
    hair = scene.meshes_for_frame(v)[1].vertices
    chin_y = v[regions["face"], 1].min()
    head = v[v[:, 1] >= chin_y - 10.0]  # the head, not a rig's neck (ICT has one)
    for c in cams:
        uv, z = project_points(np.concatenate([head, hair]), c.world_to_cam, c.K)
        assert (z > 0).all()
        assert (uv >= 0).all() and (uv <= 128).all(), c.id
