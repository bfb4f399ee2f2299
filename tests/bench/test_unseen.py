"""The procedural test shapes of `bench.unseen`: closed meshes of the genus each is built with, in [-1, 1]."""

from __future__ import annotations

import pytest
import trimesh

from bench import unseen


@pytest.mark.parametrize(("name", "genus"), [("torus_knot", 1), ("bumpy_sphere", 0), ("superquadric", 0),
                                             ("revolution", 0)])
def test_each_shape_is_a_closed_mesh_of_its_genus_inside_the_unit_box(tmp_path, name, genus):
    assert unseen.main(["--out", str(tmp_path), "--shapes", name, "--resolution", "96"]) == 0
    mesh = trimesh.load(tmp_path / f"{name}.ply")
    assert mesh.is_watertight and mesh.volume > 0
    assert 1 - mesh.euler_number // 2 == genus
    assert mesh.bounds.min() >= -1.0 and mesh.bounds.max() <= 1.0
    assert max(mesh.extents) == pytest.approx(1.9, rel=1e-6)
