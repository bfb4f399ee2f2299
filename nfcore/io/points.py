"""Oriented point clouds: read .xyz .ply .npz .npy (or sample a mesh), validate, estimate normals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import nfcore.io.formats as formats
from nfcore.errors import InputError
from nfcore.io.meshes import MESH_EXTENSIONS, check_file, read_mesh, sample_surface
from nfcore.vocab import POINT_CLOUD_EXTENSIONS as POINT_EXTENSIONS

"""Point-cloud formats; meshes (`MESH_EXTENSIONS`) are sampled into a cloud."""

SUPPORTED_EXTENSIONS = tuple(sorted(set(POINT_EXTENSIONS) | set(MESH_EXTENSIONS)))

MAX_COORDINATE = formats.MAX_COORDINATE

MIN_RELATIVE_EXTENT = 1e-3
"""A cloud whose smallest principal extent is below this fraction of its largest is flat (no volume to fit)."""

_POINT_KEYS = ("points", "point", "xyz", "positions", "position", "vertices", "verts", "coords", "pts", "p", "v")
_NORMAL_KEYS = ("normals", "normal", "vertex_normals", "n", "nrm", "norms")


@dataclass(frozen=True)
class PointCloud:
    """An (oriented) point cloud in its original coordinates."""

    points: np.ndarray
    """(N, 3) float32 positions."""
    normals: np.ndarray | None
    """(N, 3) float32 unit normals, or None when unknown."""

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class RawCloud:
    """What a reader found, before validation: positions, optional normals, and the source kind."""

    points: np.ndarray
    normals: np.ndarray | None
    kind: str
    """Either pointcloud, or mesh when the points were sampled from a mesh."""
    format: str
    n_vertices: int
    """Points in the file (mesh vertices for a mesh)."""
    n_faces: int = 0


# ---------------------------------------------------------------------------------------------
# Readers: each returns (points (N, 3), normals (N, 3) | None) as float arrays, unvalidated.


def _read_xyz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    # np.loadtxt is a C parser in numpy >= 1.23 (fast), and unlike genfromtxt it fails on ragged rows.
    try:
        data = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=2)
    except ValueError as exc:
        # loadtxt names the row whose column count changed ("... changed from 3 to 4 at row 2").
        raise InputError(f"cannot parse {path.name} as 'x y z [nx ny nz]' text (every line needs the same "
                         f"3 or 6 numbers): {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not a text .xyz file: {exc}") from exc
    if data.size == 0:
        raise InputError(f"{path.name} holds no points")
    if data.shape[1] not in (3, 6):
        raise InputError(
            f"{path.name}: expected 3 (x y z) or 6 (x y z nx ny nz) columns per line, found {data.shape[1]}"
        )
    return data[:, :3], (data[:, 3:6] if data.shape[1] == 6 else None)


def _count_text_rows(path: Path) -> int:
    """Lines that are neither empty nor comments, counted in 1 MiB blocks without parsing (an upper bound:
    runs of several blank lines are partly counted)."""
    lines = skipped = 0
    last = b"\n"  # as if a newline preceded the file, so that its first line counts like the others
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            pairs = last + block  # two-byte patterns across the block boundary
            skipped += pairs.count(b"\n#") + pairs.count(b"\n\n") + pairs.count(b"\n\r\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1  # a last line without a newline
    return lines - skipped


def _ply_header(path: Path):
    import plyfile

    with path.open("rb") as f:
        try:
            ply = plyfile.PlyData.read(f)
        except plyfile.PlyParseError as exc:
            # plyfile reports truncated data as "early end-of-file" on a row past the end.
            raise InputError(
                f"{path.name}: malformed or truncated PLY (the header's counts do not match the data): {exc}"
            ) from exc
        except (ValueError, EOFError, UnicodeDecodeError, MemoryError) as exc:
            raise InputError(f"cannot read {path.name} as PLY: {exc}") from exc
        if ply.text:
            trailing = 0  # plyfile's text reader closes the stream; trailing text lines are ignored.
        else:
            trailing = len(f.read())
    return ply, trailing


def ply_element_counts(path: Path) -> dict[str, int]:
    """Element name -> declared count, from the PLY header only (cheap, before reading any data).

    The header is checked against the PLY spec and the file's size first (formats.read_ply_header),
    so a count no file could hold never reaches a parser.
    """
    header = formats.read_ply_header(Path(path))
    return {e.name: e.count for e in header.elements}


def ply_has_faces(path: Path) -> bool:
    """True when the PLY declares at least one face (read from the header only)."""
    return ply_element_counts(path).get("face", 0) > 0


def _read_ply_cloud(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    header = formats.read_ply_header(path)
    formats.check_ply_properties(header, path.name, "vertex", ("x", "y", "z", "nx", "ny", "nz", "normal_x",
                                                               "normal_y", "normal_z"))
    ply, trailing = _ply_header(path)
    if "vertex" not in ply:
        raise InputError(f"{path.name}: PLY has no 'vertex' element")
    vertex = ply["vertex"]
    names = set(vertex.data.dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise InputError(f"{path.name}: PLY vertices lack x, y, z properties (found {sorted(names)})")
    if len(vertex.data) != vertex.count:
        raise InputError(
            f"{path.name}: PLY header declares {vertex.count} vertices but the file holds {len(vertex.data)}"
        )
    if trailing >= vertex.data.dtype.itemsize:
        extra = trailing // vertex.data.dtype.itemsize
        raise InputError(
            f"{path.name}: PLY header declares {vertex.count} vertices but the file holds data for about {extra} more"
        )
    points = np.stack([vertex.data[k] for k in ("x", "y", "z")], axis=1).astype(np.float64)
    normals = None
    for keys in (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z")):
        if set(keys) <= names:
            normals = np.stack([vertex.data[k] for k in keys], axis=1).astype(np.float64)
            break
    return points, normals


def _pick(arrays: dict[str, np.ndarray], keys: tuple[str, ...]) -> tuple[str, np.ndarray] | None:
    lower = {k.lower(): k for k in arrays}
    for key in keys:
        if key in lower:
            return lower[key], arrays[lower[key]]
    return None


def _split_columns(name: str, array: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    if array.ndim != 2 or array.shape[1] not in (3, 6):
        raise InputError(f"{name}: {what} must have shape (N, 3) or (N, 6), got {array.shape}")
    if array.dtype.names is not None or array.dtype.kind not in "fiu":
        # Complex numbers would be cast to their real part with only a warning.
        raise InputError(f"{name}: {what} must hold real integers or floats, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    return array[:, :3], (array[:, 3:6] if array.shape[1] == 6 else None)


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    # formats.read_npy checks the header's shape x itemsize against the file before allocating.
    return _split_columns(path.name, formats.read_npy(path), "the array")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    # Members are inflated under size and ratio caps (formats.read_npz), never by np.load.
    arrays = formats.read_npz(path)
    found = _pick(arrays, _POINT_KEYS)
    if found is None:
        if len(arrays) == 1:
            found = next(iter(arrays.items()))
        else:
            raise InputError(
                f"{path.name}: no points array; expected one of {list(_POINT_KEYS[:4])}, found {sorted(arrays)}"
            )
    key, array = found
    points, normals = _split_columns(path.name, np.asarray(array), f"array {key!r}")
    found_n = _pick(arrays, _NORMAL_KEYS)
    if found_n is not None:
        nkey, narray = found_n
        if normals is not None:
            raise InputError(f"{path.name}: normals given twice ({key!r} has 6 columns and {nkey!r} exists)")
        narray = np.asarray(narray)
        if narray.dtype.names is not None or narray.dtype.kind not in "fiu":
            raise InputError(f"{path.name}: normals {nkey!r} must hold real integers or floats, got {narray.dtype}")
        if narray.shape != points.shape:
            raise InputError(f"{path.name}: normals {nkey!r} have shape {narray.shape}, points {points.shape}")
        normals = narray.astype(np.float64)
    return points, normals


_READERS: dict[str, Callable[[Path], tuple[np.ndarray, np.ndarray | None]]] = {
    ".xyz": _read_xyz,
    ".ply": _read_ply_cloud,
    ".npy": _read_npy,
    ".npz": _read_npz,
}


def load_raw(
    path: str | Path, *, mesh_samples: int = 100_000, seed: int = 0, max_points: int | None = None
) -> RawCloud:
    """Read a cloud or sample a mesh, without validation or normal estimation (cheap).

    `max_points`, if given, is checked against a PLY header's count before the data is read.
    """
    path = check_file(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(
            f"unsupported file extension {ext or '(none)'!r} ({path.name}); supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if ext in MESH_EXTENSIONS and (ext != ".ply" or ply_has_faces(path)):
        mesh = read_mesh(path)
        points, normals = sample_surface(mesh, mesh_samples, seed=seed)
        return RawCloud(points, normals, "mesh", ext[1:], len(mesh.vertices), len(mesh.faces))
    if ext == ".ply" and max_points is not None:
        declared = ply_element_counts(path).get("vertex", 0)
        if declared > max_points:
            raise InputError(f"{path.name} declares {declared} points; at most {max_points} are allowed")
    if ext == ".xyz" and max_points is not None:
        # Counted before parsing: loadtxt would first build every row of an oversized file.
        rows = _count_text_rows(path)
        if rows > max_points:
            raise InputError(f"{path.name} has {rows} lines of points; at most {max_points} are allowed")
    points, normals = _READERS[ext](path)
    return RawCloud(points, normals, "pointcloud", ext[1:], len(points))


# ---------------------------------------------------------------------------------------------
# Validation


def check_points(points: np.ndarray, name: str, *, min_points: int = 100, max_points: int = 5_000_000) -> None:
    """Raise InputError for too few/many points, NaN/inf, or points without 3D extent."""
    n = len(points)
    if n < min_points:
        raise InputError(f"{name} has {n} points; at least {min_points} are needed")
    if n > max_points:
        raise InputError(f"{name} has {n} points; at most {max_points} are allowed")
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        raise InputError(
            f"{name} has {int((~finite).sum())} points with NaN or infinite coordinates (first at row {int(np.argmin(finite))})"
        )
    largest = float(np.abs(points).max())
    if largest > MAX_COORDINATE:
        row = int(np.argmax(np.abs(points).max(axis=1)))
        raise InputError(f"{name} has coordinates up to {largest:.3g} in magnitude (row {row}); at most "
                         f"{MAX_COORDINATE:.0e} are accepted: use other units or subtract an offset")
    extent = points.max(axis=0) - points.min(axis=0)
    if not extent.max() > 0:
        raise InputError(f"{name}: all {n} points are identical; a surface needs 3D extent")
    # Principal extents catch a tilted plane that an axis-aligned bbox would not. Scaled by the extent
    # first, so that the covariance cannot overflow whatever the units.
    centred = (points - points.mean(axis=0)) / float(extent.max())
    cov = centred.T @ centred / n
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    ratio = float(np.sqrt(eig[0] / eig[-1]))
    if ratio < MIN_RELATIVE_EXTENT:
        raise InputError(
            f"{name}: the points are (nearly) coplanar or collinear (smallest principal extent is {ratio:.1e} "
            f"of the largest); a surface needs 3D extent"
        )


def check_normals(normals: np.ndarray, name: str) -> np.ndarray:
    """Raise InputError for NaN/inf or zero-length normals; return them normalised to unit length."""
    finite = np.isfinite(normals).all(axis=1)
    if not finite.all():
        raise InputError(f"{name} has {int((~finite).sum())} normals with NaN or infinite components")
    length = np.linalg.norm(normals, axis=1)
    zero = length < 1e-12
    if zero.any():
        raise InputError(
            f"{name} has {int(zero.sum())} zero-length normals (first at row {int(np.argmax(zero))}); "
            f"remove the normals to have them estimated"
        )
    return normals / length[:, None]


def estimate_normals(points: np.ndarray, *, neighbors: int = 30) -> np.ndarray:
    """Estimate (PCA over k neighbours) and consistently orient normals with Open3D; (N, 3) float32.

    Orientation is propagated over a k-NN graph (Hoppe et al., Open3D's
    `orient_normals_consistent_tangent_plane`), then flipped as a whole so that normals point
    away from the centroid on average (outward for closed, roughly star-shaped objects).
    """
    from nfcore.open3d_import import import_open3d

    try:
        o3d = import_open3d()
    except ImportError as exc:
        raise InputError(
            f"the point cloud has no normals and estimating them needs Open3D ({exc}) "
            "(or provide normals: x y z nx ny nz)"
        ) from exc
    k = int(min(neighbors, len(points) - 1))
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    try:
        pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=k))
        pcd.orient_normals_consistent_tangent_plane(k)
    except RuntimeError as exc:
        raise InputError(f"normal estimation failed: {exc}") from exc
    normals = np.asarray(pcd.normals, dtype=np.float64)
    if len(normals) != len(points):
        raise InputError("normal estimation failed: Open3D returned no normals")
    if np.sum((points - points.mean(axis=0)) * normals) < 0:
        normals = -normals
    return check_normals(normals, "estimated normals").astype(np.float32)


def read_point_cloud(
    path: str | Path,
    *,
    estimate_normals: bool = True,
    normal_neighbors: int = 30,
    min_points: int = 100,
    max_points: int = 5_000_000,
    mesh_samples: int = 100_000,
    seed: int = 0,
) -> PointCloud:
    """Read an oriented point cloud from a cloud file or a mesh (sampled area-weighted).

    Args:
        estimate_normals: estimate and orient normals (Open3D) when the file has none; if False, fail instead.
        normal_neighbors: k of the k-NN normal estimation.
        min_points, max_points: accepted number of points (mesh samples count too).
        mesh_samples: points drawn from a mesh input; `seed` seeds that draw.
    """
    raw = load_raw(path, mesh_samples=mesh_samples, seed=seed, max_points=max_points)
    name = Path(path).name
    check_points(raw.points, name, min_points=min_points, max_points=max_points)
    points = np.ascontiguousarray(raw.points, dtype=np.float32)
    if raw.normals is not None:
        normals = check_normals(raw.normals, name).astype(np.float32)
    elif estimate_normals:
        normals = _estimate(points, neighbors=normal_neighbors)
    else:
        raise InputError(f"{name} has no normals (expected nx ny nz) and normal estimation is turned off")
    return PointCloud(points, np.ascontiguousarray(normals, dtype=np.float32))


# Indirection so that read_point_cloud's keyword `estimate_normals` does not shadow the function.
_estimate = estimate_normals
