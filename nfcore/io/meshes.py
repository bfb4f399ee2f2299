"""Triangle meshes: read and write through trimesh, sample oriented points from a surface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

import nfcore.io.formats as formats
from nfcore.errors import InputError
from nfcore.vocab import MESH_EXTENSIONS, MESH_FORMATS

WRITE_EXTENSIONS = tuple(f".{fmt}" for fmt in MESH_FORMATS)
"""Extensions `write_mesh` writes."""


def check_file(path: str | Path) -> Path:
    """Return `path` as a Path if it is a readable, non-empty regular file, else raise InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a regular file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"file is empty: {path.name}")
    return path


def read_mesh(path: str | Path) -> trimesh.Trimesh:
    """Read a triangle mesh (.obj .off .stl .ply .glb); scenes are flattened into one mesh.

    Vertices at identical positions are merged (trimesh's default processing), so an STL's
    triangle soup becomes a connected, possibly watertight mesh. Nothing is fetched over the network.
    """
    path = check_file(path)
    ext = path.suffix.lower()
    if ext not in MESH_EXTENSIONS:
        raise InputError(f"unsupported mesh extension {ext!r} ({path.name}); supported: {', '.join(MESH_EXTENSIONS)}")
    check_container(path)
    try:
        # process=False: trimesh's processing silently drops NaN vertices, which must be an error.
        loaded = trimesh.load(path, file_type=ext[1:], force="mesh", allow_remote=False, process=False)
    # trimesh's format parsers raise arbitrary exception types on corrupt data (ValueError,
    # IndexError, KeyError, struct.error, ...); the contract is one InputError naming the file.
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read mesh {path.name}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(loaded, trimesh.Trimesh):
        raise InputError(f"{path.name} holds no triangle mesh (found {type(loaded).__name__})")
    validate_mesh(loaded, path.name)
    loaded.merge_vertices()
    return loaded


def check_container(path: Path, *, max_elements: int | None = None) -> None:
    """Header and container checks per format, before trimesh allocates anything (nfcore.io.formats)."""
    ext = path.suffix.lower()
    if ext == ".glb":
        formats.check_glb(path)
    elif ext == ".stl":
        formats.check_stl(path)
    elif ext == ".ply":
        header = formats.read_ply_header(path, max_elements=max_elements)
        formats.check_ply_properties(header, path.name, "vertex", ("x", "y", "z"))
    elif ext == ".off":
        _check_off(path)


def _check_off(path: Path) -> None:
    # OFF: "OFF" then "nv nf ne"; each vertex needs at least "0 0 0\n" (6 bytes), each face "3 0 0 0\n".
    with path.open("rb") as f:
        head = f.read(4096).decode("ascii", errors="replace")
    tokens = [t for line in head.splitlines() for t in line.split("#", 1)[0].split()]
    if not tokens or not tokens[0].upper().endswith("OFF"):
        raise InputError(f"{path.name} is not an OFF file (missing 'OFF' keyword)")
    counts = tokens[1:4]  # after OFF (or COFF, NOFF, ...): vertices, faces, edges
    if len(counts) < 2 or not all(c.isdigit() for c in counts[:2]):
        raise InputError(f"{path.name}: OFF header needs vertex and face counts, found {' '.join(tokens[1:4])!r}")
    nv, nf = int(counts[0]), int(counts[1])
    size = path.stat().st_size
    if 6 * nv + 8 * nf > size:
        raise InputError(f"{path.name}: OFF header declares {nv} vertices and {nf} faces, more than its {size} "
                         "bytes can hold (truncated?)")


def validate_mesh(mesh: trimesh.Trimesh, name: str = "mesh") -> None:
    """Raise InputError unless the mesh has faces with valid indices, finite vertices and a positive area."""
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise InputError(f"{name} has no triangles ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces)")
    if mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices):
        raise InputError(f"{name} has faces referring to missing vertices (the file has {len(mesh.vertices)})")
    if not np.isfinite(mesh.vertices).all():
        bad = int((~np.isfinite(mesh.vertices).all(axis=1)).sum())
        raise InputError(f"{name} has {bad} vertices with NaN or infinite coordinates")
    largest = float(np.abs(mesh.vertices).max())
    if largest > formats.MAX_COORDINATE:
        raise InputError(f"{name} has vertex coordinates up to {largest:.3g} in magnitude; at most "
                         f"{formats.MAX_COORDINATE:.0e} are accepted: use other units or subtract an offset")
    if not mesh.area > 0:
        raise InputError(f"{name} has zero surface area (all triangles degenerate)")


def sample_surface(mesh: trimesh.Trimesh, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform samples on the surface and their face normals.

    Returns (points (count, 3), normals (count, 3)) as float32; normals are unit length
    (zero-area faces are never drawn because their weight is 0).
    """
    points, face_index = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    normals = mesh.face_normals[face_index]
    return np.asarray(points, dtype=np.float32), np.asarray(normals, dtype=np.float32)


def write_mesh(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write `mesh` in the format named by the extension (.ply binary, .obj, .glb, .stl); returns the path."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise InputError(f"cannot write mesh as {ext!r} ({path.name}); supported: {', '.join(WRITE_EXTENSIONS)}")
    if ext == ".ply":
        data = trimesh.exchange.ply.export_ply(mesh, encoding="binary")
        path.write_bytes(data)
    else:
        mesh.export(path, file_type=ext[1:])
    return path
