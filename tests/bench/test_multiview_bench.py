"""bench.multiview: the synthetic range scans (views, misregistration) and the gauge-free misregistration measure."""

import numpy as np
import pytest
import trimesh

from bench.multiview import make_scans, misregistration, view_directions
from nfcore.open3d_import import open3d_available


@pytest.mark.skipif(not open3d_available(), reason="the scans are raycast with Open3D")
def test_scans_see_the_mesh_from_their_views_and_carry_the_known_misregistration():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    views = make_scans(mesh, "no-underside", pixels=48, noise=0.0, rot_deg=0.3, shift=0.003, seed=0)
    assert len(views) == len(view_directions("no-underside")) == 8
    diag = float(np.linalg.norm(mesh.bounds[1] - mesh.bounds[0]))
    for v in views:
        assert len(v["true"]) > 200
        assert np.abs(np.linalg.norm(v["true"], axis=1) - 0.5).max() < 0.01  # hits on the sphere
        assert v["true"][:, 1].min() > -0.45  # nothing seen from below
        p = v["perturb"]
        np.testing.assert_allclose(v["points"], v["true"] @ p[:3, :3].T + p[:3, 3], atol=1e-9)  # no noise asked
        angle = np.degrees(np.arccos((np.trace(p[:3, :3]) - 1) / 2))
        assert abs(angle - 0.3) < 1e-6
    before = misregistration(views, None, diag)
    assert 0.1 < before < 0.6  # % of the diagonal: a 0.3% shift and a 0.3 degree turn, less the common motion
    undone = [np.linalg.inv(v["perturb"]) for v in views]
    assert misregistration(views, undone, diag) < 1e-4  # float32 rays
    common = np.eye(4)
    common[:3, 3] = [0.01, 0.0, 0.0]  # a motion of all views together is not a misregistration
    assert misregistration(views, [common @ u for u in undone], diag) < 1e-4
    assert len(view_directions("all-round")) == 8
