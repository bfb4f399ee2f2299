"""Readers and writers by extension: point clouds, meshes, images; cheap upload inspection.

`read_image`, `write_image` and `probe_image` live in `nfcore.io.images` and are imported on
first use, so that reading a point cloud never imports Pillow.
"""

from nfcore.io.inspect import IMAGE_EXTENSIONS, InputReport, inspect_input
from nfcore.io.meshes import MESH_EXTENSIONS, WRITE_EXTENSIONS, read_mesh, sample_surface, write_mesh
from nfcore.io.points import (
    POINT_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    PointCloud,
    estimate_normals,
    read_point_cloud,
)

__all__ = [
    "PointCloud",
    "read_point_cloud",
    "estimate_normals",
    "read_mesh",
    "write_mesh",
    "sample_surface",
    "inspect_input",
    "InputReport",
    "read_image",
    "write_image",
    "probe_image",
    "POINT_EXTENSIONS",
    "MESH_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
]


def __getattr__(name: str):
    if name in ("read_image", "write_image", "probe_image"):
        from nfcore.io import images

        return getattr(images, name)
    raise AttributeError(f"module 'nfcore.io' has no attribute {name!r}")
