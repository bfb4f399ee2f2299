"""Shape sets: a zip of meshes (or oriented clouds) of one kind, the input of a meta-train job.

Checked when uploaded (`inspect_zip`: a readable zip, every member's CRC, at least 2 and at most
`meta_max_shapes` shape files, stored or deflated only, bounded decompressed size and ratio) and extracted by the worker
(`extract_shapes`) under names of our own, never the members' (a member named `../../x` must not
write outside the job). Whether each file parses as a mesh is nfcore's to say when the job runs
(`load_shapes`); a file it cannot read fails the job with `invalid_input` naming the member.
Raises nfcore's InputError for bad input, which the API turns into 422 and the worker into a failed job.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nfcore.errors import InputError
from nfcore.vocab import MESH_EXTENSIONS, POINT_CLOUD_EXTENSIONS

SHAPE_EXTENSIONS = tuple(sorted(set(MESH_EXTENSIONS) | set(POINT_CLOUD_EXTENSIONS)))
MIN_SHAPES = 2  # nfcore.meta.load_shapes needs two
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ShapeSetLimits:
    """What a shape set may hold; from Settings (`meta_max_shapes`, `validation_max_decompressed_bytes`, ...)."""

    max_shapes: int = 1000
    max_total_bytes: int = 1 << 30
    max_ratio: float = 200.0

    @classmethod
    def from_settings(cls, s) -> ShapeSetLimits:
        return cls(max_shapes=s.meta_max_shapes, max_total_bytes=s.validation_max_decompressed_bytes,
                   max_ratio=s.validation_max_compression_ratio)


def _is_shape(info: zipfile.ZipInfo) -> bool:
    p = PurePosixPath(info.filename.replace("\\", "/"))
    # macOS archives carry resource forks (__MACOSX/, ._name) beside every file: not shapes.
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in p.parts)
    return not info.is_dir() and not hidden and p.suffix.lower() in SHAPE_EXTENSIONS


def _shape_members(path: Path, display_name: str, limits: ShapeSetLimits) -> tuple[zipfile.ZipFile, list, list]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{display_name} is not a readable zip archive ({exc})") from None
    members = [i for i in zf.infolist() if _is_shape(i)]
    ignored = [i.filename for i in zf.infolist() if not i.is_dir() and not _is_shape(i)]
    try:
        if len(members) < MIN_SHAPES:
            raise InputError(f"{display_name} holds {len(members)} shape file(s); meta-training needs at least "
                             f"{MIN_SHAPES} (meshes or oriented clouds: {' '.join(SHAPE_EXTENSIONS)})")
        if len(members) > limits.max_shapes:
            raise InputError(f"{display_name} holds {len(members)} shape files; the limit is {limits.max_shapes}")
        total = sum(i.file_size for i in members)
        if total > limits.max_total_bytes:
            raise InputError(f"{display_name} decompresses to {total} bytes; the limit is {limits.max_total_bytes}")
        for i in members:
            if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # zipfile bounds a deflate read by the size asked for, but hands bzip2 and lzma input to
                # the decompressor whole: a 2 KB bzip2 member with a lying header would inflate to GBs.
                raise InputError(f"{display_name}: member {i.filename} uses compression method {i.compress_type}; "
                                 "shape sets must be stored or deflated (what every zip tool writes by default)")
            if i.flag_bits & 0x1:
                raise InputError(f"{display_name}: member {i.filename} is encrypted")
            if i.file_size > limits.max_ratio * max(i.compress_size, 1):
                raise InputError(f"{display_name}: member {i.filename} expands {i.file_size / max(i.compress_size, 1):.0f}"
                                 f" times (limit {limits.max_ratio:g}): refused as a decompression bomb")
    except BaseException:
        zf.close()
        raise
    return zf, members, ignored


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dst, display_name: str) -> None:
    """Stream one member into `dst` (a file object or None to only read it); its CRC is checked at the end."""
    try:
        with zf.open(info) as f:
            while block := f.read(_CHUNK):
                if dst is not None:
                    dst.write(block)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        # zipfile reads at most the declared size, so a lying header cannot make this unbounded.
        raise InputError(f"{display_name}: member {info.filename} is corrupt ({exc})") from None


def inspect_zip(path: Path, display_name: str, limits: ShapeSetLimits) -> dict:
    """The upload report of a shape set: kind "shapes", format "zip", its shape files and what is ignored.

    Blocking: call it from a worker thread. Raises InputError naming the problem.
    """
    zf, members, ignored = _shape_members(path, display_name, limits)
    with zf:
        for info in members:
            _copy_member(zf, info, None, display_name)
    return {"kind": "shapes", "format": "zip", "n_shapes": len(members),
            "shapes": [i.filename for i in members[:100]], "uncompressed_bytes": sum(i.file_size for i in members),
            "ignored": ignored[:100]}


def extract_shapes(path: Path, dest: Path, limits: ShapeSetLimits) -> dict[str, str]:
    """Extract the shape files of the zip at `path` into a fresh `dest` as shape-0000.<ext>, ...

    Returns {extracted file name: member name}. Raises InputError (see `inspect_zip`).
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    zf, members, _ = _shape_members(path, path.name, limits)
    names = {}
    with zf:
        for k, info in enumerate(members):
            name = f"shape-{k:04d}{PurePosixPath(info.filename).suffix.lower()}"
            with open(dest / name, "wb") as out:
                _copy_member(zf, info, out, path.name)
            names[name] = info.filename
    return names


__all__ = ["SHAPE_EXTENSIONS", "ShapeSetLimits", "extract_shapes", "inspect_zip"]
