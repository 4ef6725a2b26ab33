"""3DGS .ply export: lossless round trip, standard header, atomic write, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk3d.gaussians.ply import load_ply, ply_property_names, save_ply


def _gaussians(n: int, k: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(n, 3, generator=g) * 100,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.randn(n, 3, generator=g) - 2,
        "opacities": torch.randn(n, generator=g) * 3,
        "sh": torch.randn(n, k, 3, generator=g),
    }


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_lossless(tmp_path, degree):
    k = (degree + 1) ** 2
    gs = _gaussians(57, k, seed=degree)
    path = save_ply(tmp_path / "sub" / "g.ply", **gs)
    back = load_ply(path)
    assert set(back) == set(gs)
    for key, val in gs.items():
        assert back[key].dtype == torch.float32
        assert torch.equal(back[key], val), key  # float32 exact


def test_header_lists_standard_properties_in_order(tmp_path):
    path = save_ply(tmp_path / "g.ply", **_gaussians(4, 16))
    raw = path.read_bytes()
    header = raw[: raw.index(b"end_header\n")].decode("ascii").splitlines()
    assert header[0] == "ply"
    assert header[1] == "format binary_little_endian 1.0"
    assert header[2] == "element vertex 4"
    props = [line.split() for line in header if line.startswith("property")]
    assert all(p[1] == "float" for p in props)
    names = [p[2] for p in props]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(45)]
    expected += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == expected == ply_property_names(16)
    # payload: 4 vertices of 62 float32s; normals zero; f_rest channel-major
    body = np.frombuffer(raw[raw.index(b"end_header\n") + 11 :], dtype="<f4").reshape(4, 62)
    assert (body[:, 3:6] == 0).all()
    gs = _gaussians(4, 16)
    assert np.array_equal(body[:, 9:24], gs["sh"][:, 1:, 0].numpy())  # all red first
    assert np.array_equal(body[:, 24:39], gs["sh"][:, 1:, 1].numpy())  # then green
    assert np.array_equal(body[:, 54], gs["opacities"].numpy())
    assert np.array_equal(body[:, 58:62], gs["quats"].numpy())  # rot_0 = w


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_ply(tmp_path / "g.ply", **_gaussians(3, 1))
    bad = _gaussians(3, 1)
    bad["scales"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"scales must be \[3, 3\]; got \(2, 3\)"):
        save_ply(tmp_path / "g.ply", **bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.ply"]
    assert load_ply(tmp_path / "g.ply")["means"].shape == (3, 3)


def test_bad_sh_and_foreign_files_are_rejected(tmp_path):
    bad = _gaussians(3, 5)
    with pytest.raises(ValueError, match=r"K in 1, 4, 9, 16"):
        save_ply(tmp_path / "g.ply", **bad)
    from plyfile import PlyData, PlyElement

    pts = np.zeros(2, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    PlyData([PlyElement.describe(pts, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(ValueError, match="lacks the 3DGS properties"):
        load_ply(tmp_path / "pts.ply")
