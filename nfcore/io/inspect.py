"""Cheap validation of an uploaded file: what it is and whether nfcore can use it (no normal estimation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from nfcore.analysis import MIN_POINTS, CloudAnalysis, analyze_cloud
from nfcore.errors import InputError
from nfcore.io.meshes import MESH_EXTENSIONS, check_file, read_mesh
from nfcore.io.points import SUPPORTED_EXTENSIONS as CLOUD_EXTENSIONS
from nfcore.io.points import check_given_normals, check_normals, check_points, drop_outliers, load_raw, ply_has_faces
from nfcore.normals import OPEN3D_MIN_POINTS
from nfcore.vocab import IMAGE_EXTENSIONS, InputKind


class InputReport(BaseModel):
    """What an input file holds, as the API reports it after upload."""

    kind: InputKind
    format: str
    """Lower-case extension without the dot (xyz, ply, npz, npy, obj, off, stl, glb, png, ...)."""
    size_bytes: int
    n_points: int | None = None
    """Points of a cloud, vertices of a mesh."""
    n_faces: int | None = None
    has_normals: bool = False
    """Clouds: whether the file carries normals (meshes: always, from the faces)."""
    watertight: bool | None = None
    """Meshes: closed, consistently wound surface (volumetric IoU is defined)."""
    bbox_min: list[float] | None = None
    bbox_max: list[float] | None = None
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    bit_depth: int | None = None
    """Bits per channel as read_image decodes it (8 or 16)."""
    analysis: CloudAnalysis | None = None
    """Clouds: spacing, noise, outliers, closed or open, normal reliability (nfcore.analysis), in input units."""
    ignored: list[str] = []
    """Clouds: what the file holds that is not used, one item each: `vertex.<property>` (confidence,
    intensity, colour...), `element <name> (<count> rows)` (range_grid, a face element with no rows),
    `obj_info <text>`, `comment lines (<count>)`. Empty when everything was used."""


def _bbox(points: np.ndarray) -> tuple[list[float], list[float]]:
    return points.min(axis=0).astype(float).tolist(), points.max(axis=0).astype(float).tolist()


def _inspect_image(path: Path, max_pixels: int) -> InputReport:
    # Header facts come from nfcore.io.images (the same limits and channel rules as read_image);
    # verify_image then decodes every pixel, to catch data that is corrupt or truncated behind an
    # intact header (Pillow's verify() only walks PNG chunk CRCs and misses a JPEG cut mid-scan).
    from nfcore.io.images import probe_image, verify_image

    header = probe_image(path, max_pixels=max_pixels)
    verify_image(path, max_pixels=max_pixels)
    fmt = header.format.lower()
    return InputReport(
        kind="image",
        format="jpg" if fmt == "jpeg" else fmt,
        size_bytes=path.stat().st_size,
        width=header.width,
        height=header.height,
        channels=header.channels,
        bit_depth=header.bit_depth,
    )


def inspect_input(
    path: str | Path,
    *,
    min_points: int = 100,
    max_points: int = 5_000_000,
    max_pixels: int | None = None,
) -> InputReport:
    """Identify and validate a point cloud, mesh or image without heavy work; raises InputError.

    `max_pixels` defaults to nfcore.io.images.DEFAULT_MAX_PIXELS (larger images are decompression bombs).
    """
    path = check_file(path)
    ext = path.suffix.lower()
    size = path.stat().st_size
    if ext in IMAGE_EXTENSIONS:
        from nfcore.io.images import DEFAULT_MAX_PIXELS

        return _inspect_image(path, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    if ext not in CLOUD_EXTENSIONS:
        supported = sorted(set(CLOUD_EXTENSIONS) | set(IMAGE_EXTENSIONS))
        raise InputError(
            f"unsupported file extension {ext or '(none)'!r} ({path.name}); supported: {', '.join(supported)}"
        )
    if ext in MESH_EXTENSIONS and (ext != ".ply" or ply_has_faces(path)):
        mesh = read_mesh(path)
        lo, hi = _bbox(np.asarray(mesh.vertices))
        return InputReport(
            kind="mesh",
            format=ext[1:],
            size_bytes=size,
            n_points=len(mesh.vertices),
            n_faces=len(mesh.faces),
            has_normals=True,
            watertight=bool(mesh.is_watertight),
            bbox_min=lo,
            bbox_max=hi,
        )
    raw = load_raw(path, max_points=max_points)
    check_points(raw.points, path.name, min_points=min_points, max_points=max_points)
    if raw.normals is not None:
        check_normals(raw.normals, path.name)
    lo, hi = _bbox(raw.points)
    return InputReport(
        kind="pointcloud",
        format=ext[1:],
        size_bytes=size,
        n_points=len(raw.points),
        has_normals=raw.normals is not None,
        bbox_min=lo,
        bbox_max=hi,
        ignored=list(raw.ignored),
        analysis=cloud_analysis(raw.points, raw.normals),
    )


def cloud_analysis(points: np.ndarray, normals: np.ndarray | None) -> CloudAnalysis:
    """The full analysis of an uploaded cloud (input units); InputError if degenerate.

    As a fit sees it (`InputConfig.outliers` "auto"): when outliers are found, the other figures are
    measured without them (outliers look like surface boundaries and inflate the spacing). Linear in
    N apart from the k-d tree: neighbourhood figures are measured on a bounded sample.
    """
    from nfcore.config import InputConfig

    points, normals, fraction, _ = drop_outliers(points, normals, min_fraction=InputConfig().outlier_min_fraction,
                                                 min_points=MIN_POINTS)
    analysis = analyze_cloud(points, normals)
    analysis.require_surface()
    update: dict = {"outlier_fraction": fraction}
    if normals is not None and len(points) < OPEN3D_MIN_POINTS:
        # Larger clouds are checked in the fit only: there the check uses Open3D, whose native threads
        # crash under the validation child's address-space limit (seen as SIGSEGV).
        update["normals"] = check_given_normals(points, normals).check
    return analysis.model_copy(update=update)
