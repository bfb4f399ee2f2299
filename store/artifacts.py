"""The artifact directory: where inputs, outputs and logs live, written atomically, removed on expiry.

Layout under the data directory (a shared volume when workers run on other hosts):

    uploads/<upload_id>/input.<ext>       an uploaded file (never named after the client's filename)
    uploads/.incoming/<random>.part       an upload being streamed
    jobs/<job_id>/input/input.<ext>       the job's own copy (hard link) of its input
    jobs/<job_id>/input/prior.safetensors the job's own copy (hard link) of the prior its spec names
    jobs/<job_id>/shapes/                 a meta-train job's shapes, extracted from its zip
    jobs/<job_id>/metatrain.ckpt          a meta-train job's checkpoint (kept across attempts)
    priors/<prior_id>/prior.safetensors   a stored prior (uploaded or meta-trained), kept until deleted
    priors/.incoming/<random>.part        a prior being received
    jobs/<job_id>/.attempt-<n>/           outputs being written by attempt n
    jobs/<job_id>/artifacts/              published outputs + manifest.json (renamed in one step)
    jobs/<job_id>/job.log                 the job's log
    jobs/<job_id>/all.zip                 every artifact in one archive (built on first request)
"""

from __future__ import annotations

import errno
import hashlib
import json
import mimetypes
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

MANIFEST = "manifest.json"

_MEDIA_TYPES = {
    ".ply": "application/x-ply",
    ".obj": "model/obj",
    ".glb": "model/gltf-binary",
    ".stl": "model/stl",
    ".json": "application/json",
    ".png": "image/png",
    ".log": "text/plain",
    ".zip": "application/zip",
    ".safetensors": "application/octet-stream",
}


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""A write failed because the filesystem (ENOSPC) or the user's quota on it (EDQUOT) is full."""


def disk_full_error(exc: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind `exc` (itself, or in its cause/context chain), else None.

    Libraries often wrap the OSError of a failed write in an error of their own; the chain keeps it.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (None when unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def media_type(name: str) -> str:
    ext = Path(name).suffix.lower()
    return _MEDIA_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file so that readers see the old content or the new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Paths and atomic operations on the data directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        (self.root / "uploads" / ".incoming").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        (self.root / "priors" / ".incoming").mkdir(parents=True, exist_ok=True)

    # uploads --------------------------------------------------------------------------------
    def incoming_path(self) -> Path:
        fd, tmp = tempfile.mkstemp(dir=self.root / "uploads" / ".incoming", suffix=".part")
        os.close(fd)
        return Path(tmp)

    def upload_path(self, upload_id: str, ext: str) -> Path:
        return self.root / "uploads" / upload_id / f"input{ext}"

    def remove_upload(self, upload_id: str) -> None:
        shutil.rmtree(self.root / "uploads" / upload_id, ignore_errors=True)

    def relative(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root))

    def absolute(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if self.root not in path.parents:
            raise ValueError(f"path escapes the data directory: {rel}")
        return path

    # priors ---------------------------------------------------------------------------------
    def prior_incoming_path(self) -> Path:
        fd, tmp = tempfile.mkstemp(dir=self.root / "priors" / ".incoming", suffix=".part")
        os.close(fd)
        return Path(tmp)

    def prior_path(self, prior_id: str) -> Path:
        return self.root / "priors" / prior_id / "prior.safetensors"

    def store_prior(self, src: Path, prior_id: str, *, move: bool) -> Path:
        """Put a validated prior file in place under its id (rename, or hard link/copy then rename: atomic)."""
        dst = self.prior_path(prior_id)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(src, dst)
            return dst
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return dst

    def remove_prior(self, prior_id: str) -> None:
        shutil.rmtree(self.root / "priors" / prior_id, ignore_errors=True)

    # jobs -----------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def job_input(self, job_id: str, ext: str) -> Path:
        return self.job_dir(job_id) / "input" / f"input{ext}"

    def find_job_input(self, job_id: str) -> Path | None:
        files = sorted((self.job_dir(job_id) / "input").glob("input.*"))
        return files[0] if files else None

    def link_input(self, src: Path, job_id: str) -> Path:
        """Give the job its own copy of the input (hard link when possible), so that deleting or
        expiring the upload never touches the job."""
        return _link_or_copy(src, self.job_input(job_id, src.suffix.lower()))

    def job_listed_inputs(self, job_id: str, kind: str) -> list[Path]:
        """A job's own copies of the several inputs it lists, in order (`link_listed_inputs`); kind "scans" or "shapes"."""
        d = self.job_dir(job_id) / "input" / kind
        files = [p for p in d.glob(f"{kind[:-1]}-*") if p.is_file()] if d.is_dir() else []
        return sorted(files, key=lambda p: int(p.stem.split("-", 1)[1]))

    def link_listed_inputs(self, files: Sequence[Path], job_id: str, kind: str) -> list[Path]:
        """Give a job of several inputs its own copy of each (hard links when possible), in order, as
        `input/<kind>/<kind minus s>-NNNN.<ext>` (under `input/`: expired with the job's input)."""
        d = self.job_dir(job_id) / "input" / kind
        return [_link_or_copy(Path(src), d / f"{kind[:-1]}-{k:04d}{Path(src).suffix.lower()}")
                for k, src in enumerate(files)]

    def job_prior(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "input" / "prior.safetensors"

    def link_prior(self, src: Path, job_id: str) -> Path:
        """Give the job its own copy of a prior (hard link when possible): deleting the stored prior
        while the job waits or runs never touches it."""
        return _link_or_copy(src, self.job_prior(job_id))

    def shapes_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "shapes"

    def metatrain_checkpoint(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "metatrain.ckpt"

    def log_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "job.log"

    def artifacts_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "artifacts"

    def attempt_dir(self, job_id: str, attempt: int) -> Path:
        """A fresh, empty directory for one attempt's outputs (leftovers of lost attempts are removed)."""
        job = self.job_dir(job_id)
        for old in job.glob(".attempt-*"):
            shutil.rmtree(old, ignore_errors=True)
        path = job / f".attempt-{attempt}"
        path.mkdir(parents=True)
        return path

    def publish(self, job_id: str, tmp_dir: Path) -> list[dict]:
        """Write the manifest into `tmp_dir` and rename it to the job's artifacts directory in one step."""
        entries = []
        for f in sorted(p for p in tmp_dir.rglob("*") if p.is_file()):
            name = str(f.relative_to(tmp_dir))
            entries.append({"name": name, "size": f.stat().st_size, "sha256": file_sha256(f),
                            "media_type": media_type(name)})
        write_atomic(tmp_dir / MANIFEST, json.dumps(entries, indent=2))
        final = self.artifacts_dir(job_id)
        if final.exists():
            # A lost earlier attempt published before dying; keep exactly one set of artifacts.
            old = final.with_name(f".old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp_dir, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, final)
        (self.job_dir(job_id) / "all.zip").unlink(missing_ok=True)
        return entries

    def manifest(self, job_id: str) -> list[dict] | None:
        path = self.artifacts_dir(job_id) / MANIFEST
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def artifact_path(self, job_id: str, name: str) -> Path | None:
        """The file for a manifest entry; names not in the manifest (e.g. '../x') are refused."""
        entries = self.manifest(job_id) or []
        if name not in {e["name"] for e in entries}:
            return None
        return self.artifacts_dir(job_id) / name

    def zip_path(self, job_id: str) -> Path | None:
        """all.zip of the artifacts and the log, built once, atomically."""
        entries = self.manifest(job_id)
        if entries is None:
            return None
        path = self.job_dir(job_id) / "all.zip"
        if path.is_file():
            return path
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".all.zip.")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for e in entries:
                    zf.write(self.artifacts_dir(job_id) / e["name"], e["name"])
                zf.write(self.artifacts_dir(job_id) / MANIFEST, MANIFEST)
                if self.log_path(job_id).is_file():
                    zf.write(self.log_path(job_id), "job.log")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def remove_artifacts(self, job_id: str) -> None:
        """Expire a job: drop outputs and inputs, keep the log (the record stays queryable)."""
        job = self.job_dir(job_id)
        for sub in ("artifacts", "input", "shapes"):
            shutil.rmtree(job / sub, ignore_errors=True)
        (job / "all.zip").unlink(missing_ok=True)
        (job / "metatrain.ckpt").unlink(missing_ok=True)

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> Path:
    """A hard link to `src` at `dst` (no bytes copied), or a copy where the filesystem refuses links."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst
