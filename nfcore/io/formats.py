"""Container checks done before any parser allocates: PLY headers, GLB chunks, binary STL, .npy headers, zip members.

Hostile files declare sizes they do not hold (a .npy header with 10^9 rows, a PLY with 10^12
vertices, a zip member that inflates 10^6-fold). Every check here compares what a header declares
with the bytes the file really has, and with a cap, before anything of that size is allocated,
and raises InputError naming the file and the offending field.
"""

from __future__ import annotations

import bz2
import io
import json
import math
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nfcore.errors import InputError

MAX_ARRAY_BYTES = 1 << 30
"""Largest array (a .npy, or one .npz member, decompressed) the readers allocate."""
MAX_DECOMPRESSED_BYTES = 1 << 30
"""Largest total of decompressed bytes over an .npz's members."""
MAX_COMPRESSION_RATIO = 200
"""Largest decompressed/compressed ratio of a zip member: real float data deflates 1-10x, bombs 1000x+."""
MAX_ZIP_MEMBERS = 64
MAX_COORDINATE = 1e9
"""Largest accepted |coordinate| of a cloud or mesh: beyond it float32 training and the covariance check
lose all precision (a scan in millimetres of a 1000 km object is still inside)."""
MAX_PLY_HEADER_BYTES = 65536
_END_HEADER = re.compile(rb"[\r\n]end_header(?:\r\n|\n|\r)")
"""The end of a PLY header: a line holding only `end_header` (LF, CRLF or CR line ends)."""

# PLY scalar types (both spellings of the spec) -> bytes.
PLY_TYPES = {
    "char": 1, "uchar": 1, "short": 2, "ushort": 2, "int": 4, "uint": 4, "float": 4, "double": 8,
    "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "float32": 4, "float64": 8,
}
PLY_INTEGER_TYPES = {t for t in PLY_TYPES if "float" not in t and t != "double"}
PLY_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")


# ---------------------------------------------------------------------------------------------
# PLY


@dataclass
class PlyProperty:
    name: str
    type: str
    count_type: str | None = None
    """Set for list properties (`property list <count_type> <type> <name>`)."""


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)


@dataclass
class PlyHeader:
    format: str
    elements: list[PlyElement]
    header_bytes: int
    comments: list[str] = field(default_factory=list)
    """`comment` lines' text (ASCII or UTF-8; other bytes are refused)."""
    obj_info: list[str] = field(default_factory=list)
    """`obj_info` lines' text (scanner metadata such as `num_cols 400`)."""
    ascii_header: bool = True
    """False when a comment or obj_info line holds non-ASCII bytes (UTF-8 paths, vendor names): plyfile
    refuses such a header, so the reader hands it a copy with those bytes replaced (same length)."""

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)


def read_ply_header(path: Path, *, max_elements: int | None = None) -> PlyHeader:
    """Parse and check a PLY header against the spec and the file's size; InputError naming the problem.

    Checks: magic, format, element counts (non-negative integers), property types (PLY scalar types),
    list count types (integers only: a float count is not a count), and that the declared elements
    fit in the bytes after the header (each binary row at least its fixed part; each ASCII value at
    least one character and a separator). `max_elements` caps every element's count.
    """
    name = path.name
    with path.open("rb") as f:
        head = f.read(MAX_PLY_HEADER_BYTES)
    if not head.startswith(b"ply"):
        raise InputError(f"{name} is not a PLY file (missing 'ply' magic)")
    # The line that is `end_header` (a comment may mention the word: "comment written before end_header").
    match = _END_HEADER.search(head)
    if match is None:
        if head.find(b"end_header") >= 0:
            raise InputError(f"{name}: PLY 'end_header' line is not terminated")
        raise InputError(f"{name}: PLY header has no 'end_header' line within {MAX_PLY_HEADER_BYTES} bytes")
    end = match.start() + 1
    header_bytes = match.end()
    fmt = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    obj_info: list[str] = []
    ascii_header = True
    lines = head[:end].splitlines(keepends=True)
    start = len(lines[0])  # byte offset of the line
    for lineno, line in enumerate(lines[1:], start=2):
        start += len(line)
        first = line.split(None, 1)
        if first and first[0] in (b"comment", b"obj_info"):
            # Free text: scanners write UTF-8 (file paths, vendor names) although the spec says ASCII.
            # Bytes that are not even UTF-8 are refused like any other binary junk in a header.
            try:
                body = line[len(first[0]):].strip().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}: PLY header is not ASCII text (line {lineno}, byte "
                                 f"{start - len(line) + exc.start}): a {first[0].decode()} line may hold UTF-8 "
                                 "text, this one holds bytes that are not UTF-8 either") from exc
            (comments if first[0] == b"comment" else obj_info).append(body)
            ascii_header = ascii_header and line.isascii()
            continue
        try:
            raw = line.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: PLY header is not ASCII text (line {lineno}, byte "
                             f"{start - len(line) + exc.start}); only comment and obj_info lines may hold "
                             "other characters") from exc
        parts = raw.split()
        if not parts:
            continue
        key = parts[0]
        if key == "format":
            if len(parts) != 3 or parts[1] not in PLY_FORMATS:
                raise InputError(f"{name}: PLY header line {lineno}: bad format line {raw.strip()!r}; "
                                 f"expected 'format <{'|'.join(PLY_FORMATS)}> 1.0'")
            fmt = parts[1]
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise InputError(f"{name}: PLY header line {lineno}: bad element count in {raw.strip()!r} "
                                 "(expected 'element <name> <non-negative integer>')")
            elements.append(PlyElement(parts[1], int(parts[2])))
        elif key == "property":
            if not elements:
                raise InputError(f"{name}: PLY header line {lineno}: property before any element")
            if len(parts) >= 2 and parts[1] == "list":
                if len(parts) != 5:
                    raise InputError(f"{name}: PLY header line {lineno}: bad list property {raw.strip()!r}")
                count_type, item_type, prop = parts[2], parts[3], parts[4]
                if count_type not in PLY_INTEGER_TYPES:
                    raise InputError(f"{name}: PLY header line {lineno}: list property {prop!r} has count type "
                                     f"{count_type!r}; a list count must be an integer type "
                                     f"({', '.join(sorted(PLY_INTEGER_TYPES))})")
                if item_type not in PLY_TYPES:
                    raise InputError(f"{name}: PLY header line {lineno}: unknown item type {item_type!r} of "
                                     f"list property {prop!r}")
                elements[-1].properties.append(PlyProperty(prop, item_type, count_type))
            else:
                if len(parts) != 3 or parts[1] not in PLY_TYPES:
                    raise InputError(f"{name}: PLY header line {lineno}: bad property {raw.strip()!r}; "
                                     f"types are {', '.join(sorted(PLY_TYPES))}")
                elements[-1].properties.append(PlyProperty(parts[2], parts[1]))
        elif key != "ply":
            raise InputError(f"{name}: PLY header line {lineno}: unknown keyword {key!r}")
    if fmt is None:
        raise InputError(f"{name}: PLY header has no 'format' line")
    data_bytes = path.stat().st_size - header_bytes
    needed = 0
    for el in elements:
        if max_elements is not None and el.count > max_elements:
            raise InputError(f"{name} declares {el.count} {el.name} elements; at most {max_elements} are allowed")
        if fmt == "ascii":
            # Every value is at least one character and one separator.
            per_row = 2 * max(1, len(el.properties))
        else:
            per_row = sum(PLY_TYPES[p.count_type or p.type] for p in el.properties)
        needed += el.count * per_row
    if needed > data_bytes + 1:  # +1: the last ASCII value needs no separator
        raise InputError(f"{name}: PLY header declares "
                         f"{', '.join(f'{e.count} {e.name}' for e in elements)}, which needs at least {needed} "
                         f"bytes of data, but the file has {max(data_bytes, 0)} after its header (truncated?)")
    return PlyHeader(fmt, elements, header_bytes, comments, obj_info, ascii_header)


def check_ply_properties(header: PlyHeader, name: str, element: str, props: tuple[str, ...]) -> None:
    """The named properties of `element`, where present, must be scalars (a list coordinate is not a number)."""
    el = header.element(element)
    if el is None:
        return
    for p in el.properties:
        if p.name in props and p.count_type is not None:
            raise InputError(f"{name}: PLY property {element}.{p.name} is a list ('property list {p.count_type} "
                             f"{p.type} {p.name}'); coordinates and normals must be scalar properties")


# ---------------------------------------------------------------------------------------------
# GLB

_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942


def check_glb(path: Path) -> None:
    """GLB container (glTF 2.0 binary): header length equals the file size, chunks within bounds, JSON first,
    buffers embedded (no external or remote URIs), buffer views inside their buffers."""
    name = path.name
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != _GLB_MAGIC:
        raise InputError(f"{name} is not a GLB file (missing 'glTF' magic)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise InputError(f"{name}: GLB version {version} is not supported (glTF 2.0 only)")
    if length != len(data):
        raise InputError(f"{name}: GLB header declares {length} bytes but the file has {len(data)}")
    pos, chunks = 12, []
    while pos < length:
        if pos + 8 > length:
            raise InputError(f"{name}: GLB chunk header at byte {pos} runs past the end of the file")
        clen, ctype = struct.unpack_from("<II", data, pos)
        if pos + 8 + clen > length:
            raise InputError(f"{name}: GLB chunk at byte {pos} declares {clen} bytes, past the end of the file "
                             f"({length - pos - 8} left)")
        chunks.append((ctype, data[pos + 8:pos + 8 + clen]))
        pos += 8 + clen
    if not chunks or chunks[0][0] != _CHUNK_JSON:
        raise InputError(f"{name}: GLB's first chunk is not JSON")
    try:
        doc = json.loads(chunks[0][1].decode("utf-8").rstrip(" \x00"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{name}: GLB JSON chunk is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{name}: GLB JSON chunk is not an object")
    bin_len = next((len(c) for t, c in chunks[1:] if t == _CHUNK_BIN), 0)
    buffers = doc.get("buffers") or []
    if not isinstance(buffers, list):
        raise InputError(f"{name}: GLB 'buffers' is not a list")
    sizes = []
    for i, buf in enumerate(buffers):
        if not isinstance(buf, dict):
            raise InputError(f"{name}: GLB buffers[{i}] is not an object")
        if "uri" in buf:
            # An upload must be self-contained: a URI would make the reader fetch or open another file.
            raise InputError(f"{name}: GLB buffers[{i}] refers to an external file or URI; embed it (binary glTF)")
        size = buf.get("byteLength")
        if not isinstance(size, int) or size < 0 or size > bin_len:
            raise InputError(f"{name}: GLB buffers[{i}].byteLength {size!r} exceeds the BIN chunk ({bin_len} bytes)")
        sizes.append(size)
    for i, view in enumerate(doc.get("bufferViews") or []):
        if not isinstance(view, dict):
            raise InputError(f"{name}: GLB bufferViews[{i}] is not an object")
        b, off, n = view.get("buffer"), view.get("byteOffset", 0), view.get("byteLength")
        if not (isinstance(b, int) and 0 <= b < len(sizes) and isinstance(off, int) and isinstance(n, int)
                and off >= 0 and n >= 0 and off + n <= sizes[b]):
            raise InputError(f"{name}: GLB bufferViews[{i}] (buffer {b!r}, offset {off!r}, length {n!r}) is "
                             "outside its buffer")


def check_stl(path: Path) -> None:
    """A binary STL's triangle count must match its size (84 + 50 n bytes); ASCII STL starts with 'solid'."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(84)
    if len(head) == 84:
        (n,) = struct.unpack_from("<I", head, 80)
        if 84 + 50 * n == size:
            return
    if head.lstrip().lower().startswith(b"solid"):
        return
    if len(head) < 84:
        raise InputError(f"{path.name}: binary STL is shorter than its 84-byte header ({size} bytes)")
    raise InputError(f"{path.name}: binary STL declares {n} triangles ({84 + 50 * n} bytes) but the file has {size}")


# ---------------------------------------------------------------------------------------------
# .npy and .npz

NPY_MAGIC = b"\x93NUMPY"


def _dtype_ok(dtype: np.dtype) -> bool:
    # Real numbers only: no complex, objects (pickles), strings, dates, structured records.
    return dtype.names is None and dtype.kind in "fiu" and not dtype.hasobject


def read_npy_stream(f, available: int, name: str, *, max_bytes: int | None = None) -> np.ndarray:
    """Read one .npy array from `f`, which holds `available` bytes from its current position.

    The header's shape x itemsize is checked against `available` and `max_bytes` before the array is
    allocated; dtypes other than real integers or floats are refused. Caps default to the module's
    (read at call time, so that a validation process can set them from its settings).
    """
    max_bytes = MAX_ARRAY_BYTES if max_bytes is None else max_bytes
    start = f.tell()
    try:
        major, _minor = np.lib.format.read_magic(f)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif major in (2, 3):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unknown .npy format version {major}")
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError) as exc:
        raise InputError(f"{name}: not a valid .npy array header: {exc}") from exc
    if not _dtype_ok(dtype):
        raise InputError(f"{name}: array dtype {dtype} is not supported; expected real integers or floats "
                         "(float32/float64/int)")
    count = math.prod(int(d) for d in shape)
    nbytes = count * dtype.itemsize
    data_bytes = available - (f.tell() - start)
    dims = " x ".join(str(d) for d in shape) or "scalar"
    if nbytes > max_bytes:
        raise InputError(f"{name}: array header declares {dims} of {dtype} = {nbytes} bytes, more than the limit "
                         f"of {max_bytes} bytes")
    if nbytes != data_bytes:
        raise InputError(f"{name}: array header declares {dims} of {dtype} = {nbytes} bytes but the data is "
                         f"{data_bytes} bytes")
    buf = f.read(nbytes)
    if len(buf) != nbytes:
        raise InputError(f"{name}: array data is truncated ({len(buf)} of {nbytes} bytes)")
    array = np.frombuffer(buf, dtype=dtype)
    if fortran:
        return array.reshape(shape[::-1]).T
    return array.reshape(shape)


def read_npy(path: Path, *, max_bytes: int | None = None) -> np.ndarray:
    with path.open("rb") as f:
        if f.read(6) != NPY_MAGIC:
            raise InputError(f"{path.name} is not a .npy file (missing the \\x93NUMPY magic)")
        f.seek(0)
        return read_npy_stream(f, path.stat().st_size, path.name, max_bytes=max_bytes)


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def _member_bytes(zf: zipfile.ZipFile, fp, info: zipfile.ZipInfo, name: str, cap: int, ratio: float) -> bytes:
    """Decompress one member in bounded steps: never more than `cap` bytes, nor `ratio` x its compressed size.

    zipfile's own reader hands bzip2/LZMA a whole compressed block at once (a few KiB of bzip2 can
    inflate to GBs in one call), so the member is read raw and inflated here with max_length.
    """
    if info.flag_bits & 0x1:
        raise InputError(f"{name}: member {info.filename!r} is encrypted")
    if info.file_size > cap:
        raise InputError(f"{name}: member {info.filename!r} declares {info.file_size} bytes decompressed, more than "
                         f"the limit of {cap} bytes")
    limit = min(cap, int(ratio * max(info.compress_size, 1)) + 4096)
    if info.compress_type == zipfile.ZIP_STORED:
        dec = None
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        dec = zlib.decompressobj(-15)
    elif info.compress_type == zipfile.ZIP_BZIP2:
        dec = bz2.BZ2Decompressor()
    else:
        raise InputError(f"{name}: member {info.filename!r} uses zip compression method {info.compress_type}; "
                         "supported: stored, deflate (numpy.savez_compressed), bzip2")
    fp.seek(info.header_offset)
    head = fp.read(_LOCAL_HEADER.size)
    if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise InputError(f"{name}: member {info.filename!r} has a bad local header (corrupt archive)")
    fields = _LOCAL_HEADER.unpack(head)
    fp.seek(info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10])  # name and extra lengths
    left = info.compress_size
    out = bytearray()

    def grow(piece: bytes) -> None:
        out.extend(piece)
        if len(out) > limit:
            if limit == cap:
                raise InputError(f"{name}: member {info.filename!r} decompresses to more than {cap} bytes (limit)")
            raise InputError(f"{name}: member {info.filename!r} decompresses more than {ratio:g} times its "
                             f"{info.compress_size} compressed bytes (a decompression bomb?)")

    step = 1 << 20  # output per call: memory stays bounded whatever the method's ratio
    if dec is None:
        while left > 0:
            chunk = fp.read(min(left, step))
            if not chunk:
                break
            left -= len(chunk)
            grow(chunk)
    elif isinstance(dec, bz2.BZ2Decompressor):
        while not dec.eof:
            data = b""
            if dec.needs_input:
                if left <= 0:
                    break  # truncated: the length check below names it
                data = fp.read(min(left, 1 << 16))
                if not data:
                    break
                left -= len(data)
            grow(dec.decompress(data, max_length=step))
    else:
        pending = b""
        while not dec.eof:
            if not pending:
                if left <= 0:
                    break
                pending = fp.read(min(left, 1 << 16))
                if not pending:
                    break
                left -= len(pending)
            grow(dec.decompress(pending, step))
            pending = dec.unconsumed_tail
    if len(out) != info.file_size:
        raise InputError(f"{name}: member {info.filename!r} decompresses to {len(out)} bytes but its header says "
                         f"{info.file_size} (corrupt or truncated archive)")
    if zlib.crc32(out) & 0xFFFFFFFF != info.CRC:
        raise InputError(f"{name}: member {info.filename!r} fails its CRC check (corrupt archive)")
    return bytes(out)


def read_npz(
    path: Path,
    *,
    max_bytes: int | None = None,
    max_total: int | None = None,
    max_ratio: float | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an .npz, each decompressed under the caps and checked like a .npy."""
    max_bytes = MAX_ARRAY_BYTES if max_bytes is None else max_bytes
    max_total = MAX_DECOMPRESSED_BYTES if max_total is None else max_total
    max_ratio = MAX_COMPRESSION_RATIO if max_ratio is None else max_ratio
    name = path.name
    with path.open("rb") as fp:
        magic = fp.read(6)
        if magic == NPY_MAGIC:
            raise InputError(f"{name} is a .npy array, not an .npz archive; upload it with a .npy name")
        if magic[:2] != b"PK":
            raise InputError(f"{name} is not an .npz (zip) archive")
        fp.seek(0)
        try:
            zf = zipfile.ZipFile(fp)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise InputError(f"cannot read {name} as .npz (corrupt or truncated archive?): {exc}") from exc
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > MAX_ZIP_MEMBERS:
                raise InputError(f"{name} has {len(infos)} members; at most {MAX_ZIP_MEMBERS} are allowed")
            if not infos:
                raise InputError(f"{name} holds no arrays")
            declared = sum(i.file_size for i in infos)
            if declared > max_total:
                raise InputError(f"{name}: members declare {declared} bytes decompressed, more than the limit of "
                                 f"{max_total} bytes")
            arrays = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise InputError(f"{name}: member {info.filename!r} is not an .npy array")
                try:
                    raw = _member_bytes(zf, fp, info, name, min(max_bytes + 4096, max_total), max_ratio)
                except (OSError, zlib.error, EOFError) as exc:  # bz2 reports bad data as OSError
                    raise InputError(f"{name}: member {info.filename!r} is corrupt: {exc}") from exc
                key = info.filename[:-4]
                arrays[key] = read_npy_stream(io.BytesIO(raw), len(raw), f"{name}[{key}]", max_bytes=max_bytes)
    return arrays


__all__ = [
    "MAX_ARRAY_BYTES", "MAX_DECOMPRESSED_BYTES", "MAX_COMPRESSION_RATIO", "PlyHeader", "read_ply_header",
    "check_ply_properties", "check_glb", "check_stl", "read_npy", "read_npy_stream", "read_npz",
]
