"""Oriented point clouds: read .xyz .ply .npz .npy (or sample a mesh), validate, estimate normals."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
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
    notes: list[str] = field(default_factory=list, compare=False)
    """What the reader ignored or decided, in words (a PLY's unused elements and vertex properties,
    header metadata, a zero-count `face` element read as a cloud); empty when nothing was left out."""
    outlier_fraction: float | None = field(default=None, compare=False)
    """Estimated fraction of outliers in the file (nfcore.outliers), when they were looked for."""
    outliers_removed: int = field(default=0, compare=False)
    """Points dropped as outliers before normals were estimated."""
    normals_estimated: bool = field(default=False, compare=False)
    """The file had no normals: these were estimated and oriented (nfcore.normals)."""
    normal_check: dict | None = field(default=None, compare=False)
    """Given normals checked against the local geometry (nfcore.normals): agreement, flipped_fraction,
    noisy_fraction, reliable, repaired; None when not checked."""

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
    ignored: list[str] = field(default_factory=list)
    """What the file holds that the reader did not use, one item each: `vertex.<property>`,
    `element <name> (<count> rows)`, `obj_info <text>`, `comment lines (<count>)` (PLY), or
    `array <key>` (.npz)."""
    notes: list[str] = field(default_factory=list)
    """The same in sentences, plus decisions the reader made (a `face` element with no rows read as a cloud)."""


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


class _SplicedHeader(io.RawIOBase):
    """A PLY file as plyfile sees it: `header` (the file's own header bytes, non-ASCII bytes of its
    comment lines replaced by '?', same length) followed by the rest of the open file `f`."""

    def __init__(self, header: bytes, f):
        self._header, self._pos, self._f = header, 0, f
        f.seek(len(header))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._pos < len(self._header):
            piece = self._header[self._pos:self._pos + len(buffer)]
            buffer[:len(piece)] = piece
            self._pos += len(piece)
            return len(piece)
        return self._f.readinto(buffer)


def _ply_header(path: Path, header: formats.PlyHeader | None = None):
    import plyfile

    with path.open("rb") as f:
        stream = f
        if header is not None and not header.ascii_header:
            # plyfile decodes its header as ASCII; a UTF-8 comment (a path, a vendor's name) is not an error.
            raw = f.read(header.header_bytes)
            stream = io.BufferedReader(_SplicedHeader(bytes(b if b < 128 else 63 for b in raw), f))
        try:
            with warnings.catch_warnings():
                # An ASCII element with no rows (`element face 0`) makes numpy warn "input contained no data".
                warnings.filterwarnings("ignore", message=".*input contained no data", category=UserWarning)
                ply = plyfile.PlyData.read(stream)
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
            trailing = len(stream.read())
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


_PLY_NORMAL_KEYS = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))


def _read_ply_vertices(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str], list[str]]:
    """A PLY's vertex positions and normals; the rest (other elements and vertex properties, header
    metadata) is read past and listed: returns (points, normals, ignored items, notes)."""
    header = formats.read_ply_header(path)
    formats.check_ply_properties(header, path.name, "vertex", ("x", "y", "z") + sum(_PLY_NORMAL_KEYS, ()))
    ply, trailing = _ply_header(path, header)
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
    used = {"x", "y", "z"}
    for keys in _PLY_NORMAL_KEYS:
        if set(keys) <= names:
            normals = np.stack([vertex.data[k] for k in keys], axis=1).astype(np.float64)
            used |= set(keys)
            break
    ignored, notes = _ply_ignored(header, used)
    return points, normals, ignored, notes


def _ply_ignored(header: formats.PlyHeader, used: set[str]) -> tuple[list[str], list[str]]:
    """What a PLY cloud's reader did not use, as items and as sentences."""
    ignored: list[str] = []
    notes: list[str] = []
    vertex = header.element("vertex")
    props = [p for p in (vertex.properties if vertex else []) if p.name not in used]
    if props:
        ignored += [f"vertex.{p.name}" for p in props]
        described = ", ".join(f"{p.name} ({'list ' if p.count_type else ''}{p.type})" for p in props)
        notes.append(f"ignored vertex properties: {described}")
    others = [e for e in header.elements if e.name != "vertex"]
    if others:
        ignored += [f"element {e.name} ({e.count} rows)" for e in others]
        notes.append("ignored elements: " + ", ".join(f"{e.name} ({e.count} rows)" for e in others))
    if any(e.name == "face" and e.count == 0 for e in others):
        notes.append("the face element has no rows: read as a point cloud")
    if header.obj_info:
        ignored += [f"obj_info {text}" for text in header.obj_info]
        notes.append("ignored obj_info lines: " + "; ".join(header.obj_info))
    if header.comments:
        ignored.append(f"comment lines ({len(header.comments)})")
        notes.append(f"ignored {len(header.comments)} comment line{'s' if len(header.comments) > 1 else ''}")
    return ignored, notes


def _read_ply_cloud(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    points, normals, _, _ = _read_ply_vertices(path)
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
    ignored: list[str] = []
    notes: list[str] = []
    if ext == ".ply":
        points, normals, ignored, notes = _read_ply_vertices(path)
    else:
        points, normals = _READERS[ext](path)
    return RawCloud(points, normals, "pointcloud", ext[1:], len(points), ignored=ignored, notes=notes)


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
    """Estimate (PCA over k neighbours) and consistently orient normals; (N, 3) float32.

    `nfcore.normals.estimate_oriented_normals`: visibility votes from viewpoints around the cloud
    give confident points their sign, a minimum spanning tree of the k-NN graph carries it to the
    rest; outward on closed shapes, one consistent side on open sheets (see nfcore/normals.py).
    """
    from nfcore.normals import estimate_oriented_normals

    try:
        normals = estimate_oriented_normals(np.asarray(points, dtype=np.float64), neighbors=neighbors)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"normal estimation failed: {exc}") from exc
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
    outliers: str = "off",
    outlier_min_fraction: float = 0.005,
    verify_normals: str = "off",
) -> PointCloud:
    """Read an oriented point cloud from a cloud file or a mesh (sampled area-weighted).

    Args:
        estimate_normals: estimate and orient normals (Open3D) when the file has none; if False, fail instead.
        normal_neighbors: k of the k-NN normal estimation.
        min_points, max_points: accepted number of points (mesh samples count too).
        mesh_samples: points drawn from a mesh input; `seed` seeds that draw.
        outliers: "auto" removes statistical outliers (nfcore.outliers) when their estimated fraction
            is at least `outlier_min_fraction`, "on" always, "off" never. Removal comes before normal
            estimation, which outliers would otherwise bend. Never applied to points sampled from a mesh.
        verify_normals: "on" checks given normals against the local geometry and repairs them when they
            are unreliable (`normals_unreliable`); "auto" does so up to `CHECK_NORMALS_MAX_POINTS`; "off" never.
    """
    raw = load_raw(path, mesh_samples=mesh_samples, seed=seed, max_points=max_points)
    name = Path(path).name
    check_points(raw.points, name, min_points=min_points, max_points=max_points)
    points = np.ascontiguousarray(raw.points, dtype=np.float32)
    raw_normals = check_normals(raw.normals, name).astype(np.float32) if raw.normals is not None else None
    notes = list(raw.notes)
    fraction, removed = None, 0
    if outliers != "off" and raw.kind == "pointcloud":
        points, raw_normals, fraction, removed = drop_outliers(
            points, raw_normals, always=outliers == "on", min_fraction=outlier_min_fraction, min_points=min_points,
            seed=seed)
        if removed:
            points = np.ascontiguousarray(points, dtype=np.float32)
            notes.append(f"removed {removed} outlier points ({removed / len(raw.points):.1%}; estimated "
                         f"outlier fraction {fraction:.1%})")
    normal_check = None
    if raw_normals is not None and raw.kind == "pointcloud" and (
        verify_normals == "on" or (verify_normals == "auto" and len(points) <= CHECK_NORMALS_MAX_POINTS)
    ):
        verified = check_given_normals(points, raw_normals, seed=seed)
        normal_check = verified.record
        if verified.repaired is not None:
            raw_normals = verified.repaired
            notes.append(verified.note)
    if raw_normals is not None:
        normals = raw_normals
    elif estimate_normals:
        normals = _estimate(points, neighbors=normal_neighbors)
    else:
        raise InputError(f"{name} has no normals (expected nx ny nz) and normal estimation is turned off")
    return PointCloud(points, np.ascontiguousarray(normals, dtype=np.float32), notes=notes,
                      outlier_fraction=fraction, outliers_removed=removed, normal_check=normal_check,
                      normals_estimated=raw_normals is None)


def drop_outliers(
    points: np.ndarray,
    normals: np.ndarray | None,
    *,
    always: bool = False,
    min_fraction: float = 0.005,
    min_points: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, float, int]:
    """Points and normals without statistical outliers (nfcore.outliers), the estimated fraction, the count removed.

    Removes them when `always` or when the estimated fraction is at least `min_fraction`, and only if
    at least `min_points` remain; otherwise returns the arrays unchanged with 0 removed.
    """
    from nfcore.outliers import estimate_outlier_fraction, remove_outliers

    fraction = estimate_outlier_fraction(points, rng=np.random.default_rng(seed))
    if always or fraction >= min_fraction:
        result = remove_outliers(points, normals)
        if result.n_removed and len(points) - result.n_removed >= min_points:
            return result.points, result.normals, fraction, int(result.n_removed)
    return points, normals, fraction, 0


CHECK_NORMALS_MAX_POINTS = 500_000
"""`verify_normals="auto"` checks clouds up to this size (the check costs about 3 s per 100k points)."""
FLIPPED_LIMIT = 0.02
NOISY_LIMIT = 0.05


@dataclass(frozen=True)
class GivenNormals:
    """What `check_given_normals` found: the JSON record, the repaired normals (None: used as given), a note."""

    record: dict
    repaired: np.ndarray | None
    note: str | None

    @property
    def check(self):
        """The record as the cloud analysis's `NormalCheck`."""
        from nfcore.analysis import NormalCheck

        return NormalCheck(agreement=self.record["agreement"], flipped_fraction=self.record["flipped_fraction"],
                           reliable=self.record["reliable"])


def check_given_normals(points: np.ndarray, normals: np.ndarray, *, seed: int = 0) -> GivenNormals:
    """Check (N, 3) given normals against the local geometry (nfcore.normals); repair them when unreliable."""
    from nfcore.normals import normal_reliability

    rel = normal_reliability(points, normals, rng=np.random.default_rng(seed))
    repair = normals_unreliable(rel.flipped_fraction, rel.noisy_fraction)
    record = {"agreement": rel.median_abs_cos, "flipped_fraction": rel.flipped_fraction,
              "noisy_fraction": rel.noisy_fraction, "reliable": not repair, "repaired": repair}
    if not repair:
        return GivenNormals(record, None, None)
    return GivenNormals(record, rel.repaired, f"given normals re-oriented where flipped ({rel.flipped_fraction:.1%}) "
                        f"and re-estimated where noisy ({rel.noisy_fraction:.1%})")


def normals_unreliable(flipped_fraction: float, noisy_fraction: float) -> bool:
    """Whether given normals need repair: more flipped or noisy ones than correct normals of noisy scans show.

    True normals of the shared sparse-noisy clouds (position noise 0.5% of the diagonal) read up to
    1.0% flipped (the armadillo's thin parts, where neighbours on both sides vote) and 1.1% noisy (where the
    local plane misleads), so repairs start at
    `FLIPPED_LIMIT` flipped or `NOISY_LIMIT` noisy: below that, repairing would replace more good
    normals than bad ones.
    """
    return flipped_fraction >= FLIPPED_LIMIT or noisy_fraction >= NOISY_LIMIT


# Indirection so that read_point_cloud's keyword `estimate_normals` does not shadow the function.
_estimate = estimate_normals
