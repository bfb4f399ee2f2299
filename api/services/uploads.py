"""Uploads: stream a raw body to disk with a byte limit and a hash, validate it, record it.

A `.zip` is a shape set (meshes or oriented clouds of one kind) for a meta-train job, checked by
service.shapesets rather than nfcore's input inspection.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio

from api.services.validation import ValidationLimits, validate_file
from nfcore.errors import InputError
from nfcore.vocab import INPUT_EXTENSIONS
from service.context import Services
from service.errors import ProblemError, not_found
from service.shapesets import ShapeSetLimits, inspect_zip
from store import IdempotencyConflict, IdempotencyKey, Upload, utcnow

# Media types a client may send for each extension; generic binary types are always accepted.
_MEDIA = {
    ".xyz": {"text/plain", "chemical/x-xyz", "text/x-xyz"},
    ".ply": {"application/x-ply", "application/ply", "model/ply", "text/plain"},
    ".npy": {"application/x-npy", "application/npy"},
    ".npz": {"application/x-npz", "application/zip"},
    ".obj": {"model/obj", "text/plain", "application/x-tgif"},
    ".off": {"model/off", "text/plain"},
    ".stl": {"model/stl", "application/sla", "application/vnd.ms-pki.stl", "model/x.stl-binary", "model/x.stl-ascii"},
    ".glb": {"model/gltf-binary"},
    ".png": {"image/png"},
    ".jpg": {"image/jpeg"},
    ".jpeg": {"image/jpeg"},
    ".bmp": {"image/bmp", "image/x-ms-bmp"},
    ".tif": {"image/tiff"},
    ".tiff": {"image/tiff"},
    ".webp": {"image/webp"},
    ".zip": {"application/zip", "application/x-zip-compressed", "application/x-zip"},
}
_GENERIC = {"", "application/octet-stream", "binary/octet-stream", "application/x-www-form-urlencoded"}
SCOPE = "POST /v1/uploads"


SHAPE_SET_EXTENSION = ".zip"


def supported_extensions() -> list[str]:
    return sorted({ext for exts in INPUT_EXTENSIONS.values() for ext in exts} | {SHAPE_SET_EXTENSION})


# Names Windows reserves for devices, with any extension (CON.ply opens the console there);
# it counts the superscript digits ¹²³ as digits here too.
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", "conin$", "conout$",
                    *(f"{port}{i}" for port in ("com", "lpt") for i in (*"0123456789", "¹", "²", "³"))}
MAX_FILENAME_BYTES = 255


def clean_filename(name: str | None) -> str:
    """A display name only, never used as a path: safe to show, store and send back.

    Last path component (either slash); Unicode NFC; control, format (bidi overrides, zero-width) and
    other invisible characters removed, so a name cannot forge a header line or read backwards;
    surrounding spaces and trailing dots dropped (Windows drops them itself); a Windows device
    name gets a leading underscore; at most 255 UTF-8 bytes, cut before the extension.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Cc: controls (CR, LF, NUL, ...); Cf: format (U+202E RTL override, U+200B, ...); Cs/Co/Cn:
    # surrogates, private use, unassigned; Zl/Zp: line and paragraph separators.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
    name = re.sub(r"\s+", " ", name).strip().rstrip(". ")
    if name in ("", ".", ".."):
        return ""
    if name.split(".", 1)[0].strip().lower() in _WINDOWS_DEVICES:
        name = "_" + name
    if len(name.encode()) > MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if dot and len(ext.encode()) <= 16 else ""
        stem = name[: len(name) - len(ext)]
        budget = MAX_FILENAME_BYTES - len(ext.encode())
        stem = stem.encode()[:budget].decode("utf-8", errors="ignore")
        name = stem + ext
    return name


def filename_from_disposition(header: str | None) -> str | None:
    if not header:
        return None
    m = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", header, re.I) or re.search(r'filename="?([^";]+)"?', header, re.I)
    if not m:
        return None
    from urllib.parse import unquote

    return unquote(m.group(1).strip())


def check_format(filename: str, content_type: str | None) -> str:
    """The lower-case extension, or 415 for an unsupported extension or a contradicting media type."""
    ext = Path(filename).suffix.lower()
    supported = supported_extensions()
    if ext not in supported:
        raise ProblemError(415, "unsupported_format",
                           f"unsupported file type {ext or '(no extension)'!r} for {filename!r}; "
                           f"supported: {', '.join(supported)}")
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in _GENERIC and media not in _MEDIA.get(ext, set()):
        raise ProblemError(415, "unsupported_media_type",
                           f"media type {media!r} does not match a {ext} file; send application/octet-stream "
                           f"or one of {', '.join(sorted(_MEDIA.get(ext, set())))}")
    return ext


def upload_public(up: Upload) -> dict:
    return {
        "id": up.id, "filename": up.filename, "size": up.size, "sha256": up.sha256, "media_type": up.media_type,
        "kind": up.kind, "format": up.format, "validation": up.report, "created_at": up.created_at,
        "expires_at": up.expires_at, "links": {"self": f"/v1/uploads/{up.id}"},
    }


async def stream_to_file(chunks: AsyncIterator[bytes], path: Path, limit: int) -> tuple[int, str]:
    """Write chunks to `path`, counting bytes; 413 as soon as the count passes `limit`."""
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as f:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise ProblemError(413, "too_large", f"upload exceeds the limit of {limit} bytes")
                h.update(chunk)
                await anyio.to_thread.run_sync(f.write, chunk)
    except OSError as exc:
        # A full data directory is the server's condition, not the client's fault: 507, and the caller
        # removes the partial file.
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ProblemError(507, "insufficient_storage", "the server has no space left for this upload; "
                               "try again later") from exc
        raise
    return size, h.hexdigest()


def _inspect(path: Path, display_name: str, limits: ValidationLimits, settings) -> dict:
    if path.suffix.lower() == SHAPE_SET_EXTENSION:
        # A shape set: the archive's structure and CRCs here (bounded reads); each mesh is parsed by the job.
        try:
            return inspect_zip(path, display_name, ShapeSetLimits.from_settings(settings))
        except InputError as exc:
            raise ProblemError(422, "invalid_input", str(exc)) from None
    # Out of the API's process, with memory, CPU and time limits (api/services/validation.py).
    return validate_file(path, display_name, limits)


async def receive_upload(
    services: Services,
    owner: str,
    chunks: AsyncIterator[bytes],
    *,
    filename: str | None,
    content_type: str | None,
    content_length: int | None,
    idempotency_key: str | None,
) -> tuple[Upload, bool]:
    """Store, hash and validate one uploaded file. Returns (upload, replayed)."""
    s = services.settings
    name = clean_filename(filename)
    if not name:
        raise ProblemError(422, "filename_required",
                           "name the file with ?filename=... or Content-Disposition: attachment; filename=... "
                           "(its extension says the format)",
                           errors=[{"loc": ["query", "filename"], "msg": "required"}])
    ext = check_format(name, content_type)
    if content_length is not None and content_length > s.max_upload_bytes:
        raise ProblemError(413, "too_large", f"upload of {content_length} bytes exceeds the limit of {s.max_upload_bytes} bytes")
    part = services.artifacts.incoming_path()
    upload_id = f"upl_{uuid.uuid4().hex[:24]}"
    try:
        size, sha = await stream_to_file(chunks, part, s.max_upload_bytes)
        if size == 0:
            raise ProblemError(422, "empty_file", f"{name} is empty")
        fingerprint = hashlib.sha256(f"{name}\n{sha}".encode()).hexdigest()
        if idempotency_key:
            replay = _replay(services, owner, idempotency_key, fingerprint)
            if replay is not None:
                return replay, True
        final = services.artifacts.upload_path(upload_id, ext)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        try:
            report = await anyio.to_thread.run_sync(_inspect, final, name, ValidationLimits.from_settings(s), s)
            media = (content_type or "").split(";")[0].strip().lower()
            up = Upload(
                id=upload_id, owner=owner, filename=name, path=services.artifacts.relative(final), size=size, sha256=sha,
                media_type=media if media not in _GENERIC else "application/octet-stream",
                format=ext.lstrip("."), kind=report.get("kind", "unknown"), report=report,
                created_at=utcnow(), expires_at=utcnow() + timedelta(seconds=s.upload_ttl_s),
            )
            key = _key_row(services, owner, idempotency_key, fingerprint, upload_id)
            try:
                services.store.add_upload(up, key)
            except IdempotencyConflict as exc:
                services.artifacts.remove_upload(upload_id)
                replay = _replay_existing(services, owner, exc.existing, fingerprint)
                return replay, True
            return up, False
        except BaseException:
            services.artifacts.remove_upload(upload_id)
            raise
    finally:
        part.unlink(missing_ok=True)


def _key_row(services: Services, owner: str, key: str | None, fingerprint: str, resource_id: str):
    if not key:
        return None
    if len(key) > 255:
        raise ProblemError(422, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters")
    return IdempotencyKey(owner=owner, scope=SCOPE, key=key, fingerprint=fingerprint, resource_id=resource_id,
                          created_at=utcnow(), expires_at=utcnow() + timedelta(seconds=services.settings.idempotency_ttl_s))


def _replay(services: Services, owner: str, key: str, fingerprint: str) -> Upload | None:
    existing = services.store.get_idempotency(owner, SCOPE, key)
    if existing is None:
        return None
    return _replay_existing(services, owner, existing, fingerprint)


def _replay_existing(services: Services, owner: str, existing: IdempotencyKey, fingerprint: str) -> Upload:
    if existing.fingerprint != fingerprint:
        raise ProblemError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with a different file; use a new key")
    up = services.store.get_upload(existing.resource_id, owner)
    if up is None:
        raise ProblemError(409, "idempotency_key_stale", "the upload made with this Idempotency-Key no longer exists")
    return up


def get_upload(services: Services, owner: str, upload_id: str) -> Upload:
    up = services.store.get_upload(upload_id, owner)
    if up is None:
        raise not_found("upload", upload_id)
    return up


def delete_upload(services: Services, owner: str, upload_id: str) -> None:
    get_upload(services, owner, upload_id)
    services.store.delete_upload(upload_id)
    services.artifacts.remove_upload(upload_id)


async def upload_from_form_file(services: Services, owner: str, file, *, content_type: str | None) -> Upload:
    """The file part of a one-shot multipart job request, stored as an ordinary upload."""

    async def chunks():
        while block := await file.read(1 << 20):
            yield block

    up, _ = await receive_upload(services, owner, chunks(), filename=file.filename, content_type=content_type,
                                 content_length=None, idempotency_key=None)
    return up


__all__ = ["receive_upload", "get_upload", "delete_upload", "upload_public", "upload_from_form_file",
           "supported_extensions"]
