"""Camera conventions: look-at, the capture arc, orbits, projection, intrinsics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d.render.cameras import (
    DEFAULT_DISTANCE,
    DEFAULT_TARGET,
    arc_cameras,
    camera_center,
    interpolate_orbit,
    intrinsics_from_fov,
    look_at,
    orbit_camera,
    project_points,
    scale_intrinsics,
    yaw_camera,
    yaw_of,
)

K = intrinsics_from_fov(30.0, 200, 160)


def test_look_at_maps_target_to_image_centre_and_up_to_smaller_rows():
    eye, target = np.array([120.0, 40.0, 500.0]), np.array([10.0, -5.0, 20.0])
    m = look_at(eye, target)
    R = m[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(camera_center(m), eye, atol=1e-9)
    uv, z = project_points(np.stack([target, target + [0, 30.0, 0]]), m, K)
    np.testing.assert_allclose(uv[0], [100.0, 80.0], atol=1e-9)
    assert z[0] == pytest.approx(np.linalg.norm(target - eye))
    assert uv[1, 1] < uv[0, 1]  # world up is image up


def test_frontal_camera_sees_subjects_left_on_image_right():
    m = orbit_camera(0.0)
    ty = DEFAULT_TARGET[1]
    np.testing.assert_allclose(camera_center(m), [0, ty, DEFAULT_DISTANCE], atol=1e-9)
    uv, _ = project_points(np.array([[50.0, ty, 0.0]]), m, K)  # +x: the subject's left
    assert uv[0, 0] > 100.0
    assert yaw_of(m) == pytest.approx(0.0, abs=1e-9)


def test_arc_cameras_are_equidistant_on_a_180_degree_arc_at_head_height():
    target = np.array([0.0, 12.0, -5.0])
    cams = arc_cameras(11, 180.0, distance=600.0, target=target, width=128)
    centres = np.stack([camera_center(c.world_to_cam) for c in cams])
    np.testing.assert_allclose(np.linalg.norm(centres - target, axis=1), 600.0)
    np.testing.assert_allclose(centres[:, 1], target[1], atol=1e-9)
    yaws = [yaw_of(c.world_to_cam) for c in cams]
    np.testing.assert_allclose(yaws, np.linspace(-90, 90, 11), atol=1e-9)
    assert yaws[5] == pytest.approx(0.0, abs=1e-9)
    assert centres[-1, 0] == pytest.approx(600.0)  # +90 deg sits on +x
    for c in cams:  # every camera looks at the target
        uv, z = project_points(target[None], c.world_to_cam, c.K)
        np.testing.assert_allclose(uv[0], [64.0, 64.0], atol=1e-9)
        assert z[0] > 0
    assert len({c.id for c in cams}) == 11


def test_orbit_30_equals_arc_camera_at_30_and_yawed_frontal():
    target = (0.0, 5.0, 0.0)
    cams = arc_cameras(7, 180.0, distance=640.0, height=25.0, target=target)
    at30 = cams[4].world_to_cam  # yaws -90, -60, -30, 0, 30, ...
    np.testing.assert_allclose(orbit_camera(30.0, 0.0, 640.0, target, 25.0), at30, atol=1e-9)
    np.testing.assert_allclose(yaw_camera(cams[3].world_to_cam, 30.0, target), at30, atol=1e-9)
    assert yaw_of(at30) == pytest.approx(30.0)


def test_pitch_up_raises_the_camera():
    m = orbit_camera(0.0, 20.0, 500.0, target=(0.0, 0.0, 0.0))
    c = camera_center(m)
    assert c[1] == pytest.approx(500.0 * np.sin(np.radians(20)))


def test_torch_inputs_stay_torch_and_batch_over_cameras():
    pts = torch.randn(5, 3, dtype=torch.float64) * 50
    mats = torch.as_tensor(np.stack([orbit_camera(y) for y in (-30, 0, 30)]))
    ks = torch.as_tensor(np.stack([K] * 3))
    uv, z = project_points(pts, mats, ks)
    assert isinstance(uv, torch.Tensor) and uv.shape == (3, 5, 2) and z.shape == (3, 5)
    uv1, z1 = project_points(pts.numpy(), mats[1].numpy(), K)
    np.testing.assert_allclose(uv[1].numpy(), uv1, atol=1e-9)
    # differentiable in torch: the gradient matches a central finite difference
    eye = torch.tensor([20.0, -10.0, 300.0], dtype=torch.float64, requires_grad=True)
    look_at(eye)[2, 3].backward()
    h = 1e-4
    fd = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(3):
            step = torch.zeros(3, dtype=torch.float64)
            step[i] = h
            fd[i] = (look_at(eye + step)[2, 3] - look_at(eye - step)[2, 3]) / (2 * h)
    assert fd.abs().max() > 0.1  # the check is not vacuous
    torch.testing.assert_close(eye.grad, fd, rtol=1e-6, atol=1e-8)


def test_scale_intrinsics_keeps_the_projected_point_in_proportion():
    m = orbit_camera(20.0)
    p = np.array([[30.0, -20.0, 40.0]])
    uv, _ = project_points(p, m, K)
    uv2, _ = project_points(p, m, scale_intrinsics(K, 0.5, 0.25))
    np.testing.assert_allclose(uv2[0], uv[0] * [0.5, 0.25], atol=1e-9)


def test_interpolate_orbit_passes_through_keys_and_loops():
    path = interpolate_orbit(9, (-30.0, 30.0))
    assert path.shape == (9, 4, 4)
    assert yaw_of(path[0]) == pytest.approx(-30.0)
    assert yaw_of(path[-1]) == pytest.approx(30.0)
    assert yaw_of(path[4]) == pytest.approx(0.0, abs=1e-9)
    loop = interpolate_orbit(8, (0.0, 40.0), loop=True)
    assert yaw_of(loop[0]) == pytest.approx(0.0, abs=1e-9)
    assert yaw_of(loop[4]) == pytest.approx(40.0)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="coincide"):
        look_at((0, 0, 0), (0, 0, 0))
    with pytest.raises(ValueError, match="parallel"):
        look_at((0, 100, 0), (0, 0, 0))
    with pytest.raises(ValueError, match="fov"):
        intrinsics_from_fov(0.0, 10, 10)
