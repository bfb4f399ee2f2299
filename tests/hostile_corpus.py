"""A corpus of malformed and hostile uploads, generated in memory (every file is small: at most ~100 KiB).

Each `Case` is one file a client might send to `POST /v1/uploads`: its name, bytes, and what the
service must answer (the problem `code`, and words the `detail` must contain, so that the answer
names what is wrong). The bombs are small on the wire and huge when trusted: an .npy header
declaring 10^9 rows, zip members that inflate to 2 GiB, a PNG declaring 10^10 pixels, PLY/OFF/STL
headers declaring more elements than their bytes can hold.

`python -m tests.hostile_corpus DIR` writes the corpus to DIR (for trying it on a live server).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    make: Callable[[], bytes]
    code: str | tuple[str, ...] = "invalid_input"
    says: tuple[str, ...] = ()
    """Case-insensitive fragments the problem's `detail` must contain."""
    status: int = 422
    bomb: bool = False
    """Bombs: the test records the API's peak RSS while the service answers."""

    def data(self) -> bytes:
        return self.make()


# ---------------------------------------------------------------------------------------------
# Valid building blocks


def sphere(n: int = 400, radius: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return normals * radius, normals


def xyz_text(points: np.ndarray, normals: np.ndarray | None = None) -> bytes:
    rows = points if normals is None else np.hstack([points, normals])
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def raw_zip(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip written byte by byte: (name, method, compressed data, crc32, declared uncompressed size).

    zipfile would compress (slowly, for a bomb) and write true sizes; a hostile archive need not.
    """
    out, central = io.BytesIO(), io.BytesIO()
    for name, method, data, crc, size in members:
        offset = out.tell()
        fname = name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(fname), 0))
        out.write(fname)
        out.write(data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), size,
                                  len(fname), 0, 0, 0, 0, 0, offset))
        central.write(fname)
    cd = central.getvalue()
    start = out.tell()
    out.write(cd)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd), start, 0))
    return out.getvalue()


def npz_of(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


# A bzip2 stream of an .npy header declaring (2^28, 1) float64 followed by 2 GiB of zeros: 1,630
# bytes. Made once with bz2.BZ2Compressor(9) over npy_header("<f8", (2**28, 1)) + 128 x 16 MiB of
# zeros (13 s of CPU); kept as text so that the test does not spend that time again.
BZIP2_2GIB = (
    "QlpoOTFBWSZTWTSh3wkFfkFfoOAQQOU/VAEDQiCvRd0KCAAACCAAlIZTSnqHqepoMR+qA00D9SfpQRVT1MjTIGjACBkAh+UQBVUS"
    "ACgCqomn3AFAEkkgjnR9IvsEERIXtjCTwNu6S3SF3HUqxRfU6ATwr3w8Njw+ulHjkPmaLBrUy61qErOxgroASAASSon8xQVkmU1k"
    "OCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAA"
    "ACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCW"
    "pCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4"
    "J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAA"
    "IIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJak"
    "KgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgn"
    "i3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAg"
    "gADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQq"
    "AlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeL"
    "fAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCA"
    "AMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoC"
    "XMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8"
    "BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAA"
    "wgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJc"
    "xQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wF"
    "fjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADC"
    "ATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzF"
    "BWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+"
    "OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIB"
    "NRkKgJakKgJcxQVkmU1kiGbXZARStwIDAAAAEAAggADDMBSmmpSRIbBUkSHi7kinChIOyP9coA=="
)


def bzip2_2gib() -> bytes:
    return base64.b64decode(BZIP2_2GIB)


def ply_ascii(header_lines: list[str], body: str) -> bytes:
    return ("ply\nformat ascii 1.0\n" + "\n".join(header_lines) + "\nend_header\n" + body).encode()


def ply_cloud(points: np.ndarray, normals: np.ndarray) -> bytes:
    head = [f"element vertex {len(points)}"] + [f"property float {p}" for p in ("x", "y", "z", "nx", "ny", "nz")]
    return ply_ascii(head, xyz_text(points, normals).decode())


def tetra_obj(extra: str = "") -> bytes:
    return (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n" + extra.encode())


def glb(doc: dict, binary: bytes = b"", *, length_delta: int = 0, json_chunk: bytes | None = None) -> bytes:
    js = json_chunk if json_chunk is not None else json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js
    if binary:
        body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body) + length_delta) + body


def tetra_glb(**kwargs) -> bytes:
    import trimesh

    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    data = mesh.export(file_type="glb")
    if not kwargs:
        return data
    # Re-pack the real JSON and BIN chunks with the requested damage.
    (jlen,) = struct.unpack_from("<I", data, 12)
    doc = json.loads(data[20:20 + jlen])
    binary = data[20 + jlen + 8:]
    patch = kwargs.pop("patch", None)
    if patch:
        patch(doc)
    return glb(doc, binary, **kwargs)


def image(fmt: str, size=(48, 40), mode="RGB") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(1)
    a = (rng.random((size[1], size[0], len(mode))) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a[:, :, 0] if mode == "L" else a, mode).save(buf, fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def tiff_strip_past_end() -> bytes:
    data = bytearray(image("TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (n,) = struct.unpack_from("<H", data, ifd)
    for i in range(n):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into("<I", data, entry + 8, len(data) + 100_000)
    return bytes(data)


def _flip(data: bytes, at: float) -> bytes:
    b = bytearray(data)
    b[int(len(b) * at)] ^= 0xFF
    return bytes(b)


# ---------------------------------------------------------------------------------------------
# The corpus


def _cases() -> list[Case]:
    pts, nrm = sphere()
    good_xyz = xyz_text(pts, nrm)
    f8 = pts.astype(np.float64)
    zeros_64m = b"\0" * (64 << 20)
    return [
        # ---- point clouds: .xyz
        Case("xyz_ragged_columns", "ragged.xyz", lambda: good_xyz + b"1 2 3 4\n" + good_xyz,
             says=("columns",)),
        Case("xyz_two_columns", "flat.xyz", lambda: b"".join(b"%d %d\n" % (i, i * 2) for i in range(200)),
             says=("found 2",)),
        Case("xyz_coordinates_1e308", "huge.xyz", lambda: xyz_text(pts * 1e308 / 2, nrm),
             says=("coordinates up to", "magnitude")),
        Case("xyz_coordinates_1e12", "far.xyz", lambda: xyz_text(pts + 1e12, nrm), says=("coordinates up to",)),
        Case("xyz_nan", "nan.xyz", lambda: good_xyz + b"nan 0 0 0 0 1\n", says=("NaN",)),
        Case("xyz_inf_overflow", "inf.xyz", lambda: good_xyz + b"1e999 0 0 0 0 1\n", says=("infinite",)),
        Case("xyz_binary_garbage", "bin.xyz", lambda: bytes(range(256)) * 20, says=("xyz",)),
        Case("xyz_words", "words.xyz", lambda: b"x y z\n" * 300, says=("cannot parse",)),
        Case("xyz_too_few_points", "few.xyz", lambda: xyz_text(pts[:20], nrm[:20]), says=("at least",)),
        Case("xyz_coplanar", "plane.xyz", lambda: xyz_text(pts * [1, 1, 0], nrm), says=("coplanar",)),
        Case("xyz_zero_normals", "zeron.xyz", lambda: xyz_text(pts, nrm * 0), says=("zero-length normals",)),
        Case("xyz_utf16", "utf16.xyz", lambda: good_xyz.decode().encode("utf-16"), says=("xyz",)),
        # ---- .ply clouds and meshes
        Case("ply_list_coordinate", "listx.ply",
             lambda: ply_ascii(["element vertex 200", "property list uchar float x", "property float y",
                                "property float z"], "".join(f"1 {i} {i} {i}\n" for i in range(200))),
             says=("vertex.x", "list")),
        Case("ply_float_list_count", "floatcount.ply",
             lambda: ply_ascii(["element vertex 4", "property float x", "property float y", "property float z",
                                "element face 4", "property list float int vertex_indices"],
                               "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3.5 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"),
             says=("count type 'float'",)),
        Case("ply_declares_1e12_vertices", "manyverts.ply",
             lambda: ply_ascii(["element vertex 1000000000000", "property float x", "property float y",
                                "property float z"], "0 0 0\n"),
             says=("1000000000000",), bomb=True),
        Case("ply_binary_truncated", "cut.ply",
             lambda: b"ply\nformat binary_little_endian 1.0\nelement vertex 5000\nproperty float x\n"
                     b"property float y\nproperty float z\nend_header\n" + np.zeros((100, 3), "<f4").tobytes(),
             says=("needs at least", "truncated")),
        Case("ply_bad_property_type", "f128.ply",
             lambda: ply_ascii(["element vertex 3", "property float128 x"], "0\n1\n2\n"), says=("bad property",)),
        Case("ply_no_end_header", "noend.ply", lambda: b"ply\nformat ascii 1.0\nelement vertex 3\n" + b"0 0 0\n" * 3,
             says=("end_header",)),
        Case("ply_bad_format", "fmt.ply", lambda: ply_ascii(["element vertex 0"], "").replace(b"ascii", b"utf8"),
             says=("format",)),
        Case("ply_negative_count", "neg.ply",
             lambda: ply_ascii(["element vertex -5", "property float x"], ""), says=("element count",)),
        Case("ply_non_ascii_header", "latin.ply",
             lambda: ply_cloud(pts, nrm).replace(b"format", b"comment \xff\xfe\nformat", 1),
             says=("not ASCII",)),
        Case("ply_fewer_rows", "short.ply",
             lambda: ply_cloud(pts, nrm).replace(b"element vertex 400", b"element vertex 401"),
             says=("truncated",)),
        Case("ply_face_index_out_of_range", "badface.ply",
             lambda: ply_ascii(["element vertex 4", "property float x", "property float y", "property float z",
                                "element face 2", "property list uchar int vertex_indices"],
                               "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 99\n"),
             says=("missing vertices",)),
        # ---- .npy
        Case("npy_declares_1e9_rows", "rows.npy", lambda: npy_header("<f8", (10**9, 3)) + f8[:10].tobytes(),
             says=("1000000000 x 3", "bytes"), bomb=True),
        Case("npy_truncated", "cut.npy", lambda: npy_bytes(f8)[:-100], says=("but the data is",)),
        Case("npy_trailing_data", "long.npy", lambda: npy_bytes(f8) + b"\0" * 64, says=("but the data is",)),
        Case("npy_complex", "complex.npy", lambda: npy_bytes(f8.astype(np.complex128)), says=("complex128",)),
        Case("npy_object_pickle", "pickle.npy", lambda: npy_header("|O", (3,)) + b"\x80\x04N.", says=("object",)),
        Case("npy_strings", "str.npy", lambda: npy_bytes(np.array([["a", "b", "c"]] * 200)), says=("dtype",)),
        Case("npy_structured", "rec.npy",
             lambda: npy_bytes(np.zeros(200, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])), says=("dtype",)),
        Case("npy_3d_shape", "cube.npy", lambda: npy_bytes(np.zeros((10, 10, 3))), says=("shape",)),
        Case("npy_bad_header", "hdr.npy", lambda: b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n" + b"\0" * 64,
             says=("header",)),
        Case("npy_not_npy", "text.npy", lambda: good_xyz, says=("not a .npy",)),
        # ---- .npz
        Case("npz_is_npy", "named.npz", lambda: npy_bytes(f8), says=(".npy array, not an .npz",)),
        Case("npz_complex", "complex.npz", lambda: npz_of({"points": f8.astype(np.complex64)}), says=("complex64",)),
        Case("npz_object", "obj.npz",
             lambda: raw_zip([("points.npy", 0, npy_header("|O", (2,)) + b"\x80\x04N.",
                               zlib.crc32(npy_header("|O", (2,)) + b"\x80\x04N."),
                               len(npy_header("|O", (2,))) + 4)]), says=("object",)),
        Case("npz_garbage", "junk.npz", lambda: b"PK\x03\x04" + bytes(range(256)) * 4, says=("npz",)),
        Case("npz_not_zip", "text.npz", lambda: good_xyz, says=("not an .npz",)),
        Case("npz_truncated", "cut.npz", lambda: npz_of({"points": f8}, compressed=True)[:-200], says=("npz",)),
        Case("npz_member_not_npy", "txt.npz", lambda: _zip_stored({"points.txt": good_xyz}), says=("not an .npy",)),
        Case("npz_many_members", "many.npz", lambda: npz_of({f"a{i}": np.zeros(1) for i in range(100)}),
             says=("at most 64",)),
        Case("npz_lzma_member", "lzma.npz", lambda: _zip_lzma({"points.npy": npy_bytes(f8)}),
             says=("compression method 14",)),
        Case("npz_bad_crc", "crc.npz", lambda: _bad_crc(npz_of({"points": f8})), says=("CRC",)),
        Case("npz_bzip2_bomb_2gib_declared", "bomb.npz",
             lambda: raw_zip([("points.npy", 12, bzip2_2gib(), 0, (1 << 31) + 128)]),
             code="invalid_input", says=("decompressed", "limit"), bomb=True),
        Case("npz_bzip2_bomb_2gib_lying", "bomb2.npz",
             lambda: raw_zip([("points.npy", 12, bzip2_2gib(), 0, 4800)]),
             says=("decompress",), bomb=True),
        Case("npz_deflate_bomb", "zbomb.npz",
             lambda: _deflate_bomb(zeros_64m), says=("decompresses more than",), bomb=True),
        Case("npz_header_bomb", "rows.npz",
             lambda: _zip_stored({"points.npy": npy_header("<f8", (10**9, 3)) + f8[:10].tobytes()}),
             says=("1000000000 x 3",), bomb=True),
        # ---- meshes
        Case("glb_length_mismatch", "len.glb", lambda: tetra_glb(length_delta=4096), says=("GLB header declares",)),
        Case("glb_truncated", "cut.glb", lambda: tetra_glb()[:-40], says=("GLB",)),
        Case("glb_chunk_past_end", "chunk.glb",
             lambda: _patch(tetra_glb(), 12, struct.pack("<I", 1 << 30)), says=("chunk",)),
        Case("glb_bad_json", "json.glb", lambda: tetra_glb(json_chunk=b"{not json"), says=("JSON",)),
        Case("glb_external_uri", "uri.glb",
             lambda: tetra_glb(patch=lambda d: d["buffers"][0].update(uri="file:///etc/passwd")),
             says=("external",)),
        Case("glb_view_out_of_bounds", "view.glb",
             lambda: tetra_glb(patch=lambda d: d["bufferViews"][0].update(byteLength=1 << 30)),
             says=("outside its buffer",)),
        Case("glb_not_glb", "text.glb", lambda: good_xyz, says=("not a GLB",)),
        Case("stl_count_mismatch", "count.stl",
             lambda: b"\0" * 80 + struct.pack("<I", 10**8) + b"\0" * 500, says=("declares 100000000 triangles",),
             bomb=True),
        Case("stl_short", "short.stl", lambda: b"\x01\x02garbage", says=("84-byte",)),
        Case("off_counts_too_large", "big.off", lambda: b"OFF\n100000000 200000000 0\n0 0 0\n",
             says=("OFF header declares",), bomb=True),
        Case("off_no_counts", "nocount.off", lambda: b"OFF\nx y\n", says=("counts",)),
        Case("obj_missing_vertices", "idx.obj", lambda: tetra_obj("f 1 2 99\n"), says=("obj",)),
        Case("obj_nan_vertex", "nan.obj", lambda: tetra_obj().replace(b"v 0 0 1", b"v nan 0 1"), says=("NaN",)),
        Case("obj_no_faces", "nofaces.obj", lambda: b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", says=("obj",)),
        Case("obj_huge_coordinates", "far.obj", lambda: tetra_obj().replace(b"v 1 0 0", b"v 1e300 0 0"),
             says=("coordinates up to",)),
        # ---- images
        Case("jpeg_truncated_mid_scan", "cut.jpg", lambda: image("JPEG")[:-300], says=("truncated",)),
        Case("tiff_strip_past_end", "strip.tif", tiff_strip_past_end, says=("truncated",)),
        Case("png_bad_crc", "crc.png", lambda: _png_bad_crc(image("PNG")), says=("corrupt",)),
        Case("png_truncated", "cut.png", lambda: image("PNG")[:-60], says=("png",)),
        Case("png_pixel_bomb", "bomb.png", lambda: _png_header_only(100_000, 100_000), says=("pixels", "limit"),
             bomb=True),
        Case("png_not_image", "text.png", lambda: good_xyz, says=("not a readable image",)),
        Case("gif_named_png", "anim.png", lambda: image("GIF"), says=("not a readable image",)),
        Case("bmp_truncated", "cut.bmp", lambda: image("BMP")[:-500], says=("truncated",)),
        Case("webp_truncated", "cut.webp", lambda: image("WEBP")[: len(image("WEBP")) // 2], says=("webp",)),
        Case("jpeg_garbage_after_header", "noise.jpg", lambda: image("JPEG")[:200] + bytes(range(256)) * 4,
             says=("jpg",)),
        # ---- empty
        Case("empty_xyz", "empty.xyz", lambda: b"", code="empty_file", says=("empty",)),
    ]


def _zip_stored(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_lzma(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _bad_crc(data: bytes) -> bytes:
    # Flip a byte of the first member's data (stored): the sizes still agree, only the CRC does not.
    b = bytearray(data)
    (name_len, extra_len) = struct.unpack_from("<HH", b, 26)
    b[30 + name_len + extra_len + 200] ^= 0xFF
    return bytes(b)


def _deflate_bomb(payload: bytes) -> bytes:
    header = npy_header("<f8", (len(payload) // 8, 1))
    body = header + payload
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = comp.compress(body) + comp.flush()
    return raw_zip([("points.npy", 8, data, zlib.crc32(body), len(body))])


def _patch(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


def _png_bad_crc(data: bytes) -> bytes:
    i = data.find(b"IDAT")
    (n,) = struct.unpack(">I", data[i - 4:i])
    return _flip(data, (i + 4 + n) / len(data))


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        png_chunk(b"IEND", b"")


CASES: list[Case] = _cases()


# Filenames a client might send: (as sent, what the service must keep).
UNSAFE_FILENAMES = [
    ("a\r\nX-Injected: 1.xyz", "aX-Injected: 1.xyz"),
    ("evil\u202egnp.xyz", "evilgnp.xyz"),
    ("con.xyz", "_con.xyz"),
    ("LPT1.xyz", "_LPT1.xyz"),
    ("cloud.xyz. . .", "cloud.xyz"),
    ("..\\..\\windows\\cloud.xyz", "cloud.xyz"),
    ("zero\u200bwidth.xyz", "zerowidth.xyz"),
    ("nul\x00byte.xyz", "nulbyte.xyz"),
    ("x" * 400 + ".xyz", "x" * 251 + ".xyz"),
]


def write_corpus(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in CASES:
        path = directory / f"{case.id}__{case.filename}"
        path.write_bytes(case.data())
        paths.append(path)
    return paths


if __name__ == "__main__":
    out = write_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus"))
    print(f"wrote {len(out)} files")
