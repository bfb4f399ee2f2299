"""Jobs that list several uploads: an sdf job of several scans of one object, a meta-train job of several shapes.

Such a job gets its own copy of every listed file at submit (`ArtifactStore.link_listed_inputs`, kind
"scans" or "shapes"), so deleting or expiring an upload never reaches it, and a retry starts from the
old job's copies. What each job type accepts in its list is checked where the job type lives
(service/jobs.py for scans, service/metatrain.py for shapes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from service.errors import ProblemError
from store import ArtifactStore, Job, Upload

LISTED_KINDS = ("scans", "shapes")


def upload_files(artifacts: ArtifactStore, uploads: Sequence[Upload]) -> list[Path]:
    """The stored file of each listed upload; 409 `input_missing` naming the one that is gone."""
    files = []
    for i, up in enumerate(uploads):
        path = artifacts.absolute(up.path) if up.path else None
        if path is None or not path.is_file():
            raise ProblemError(409, "input_missing", f"the file of upload {up.id} is gone (expired or deleted)",
                               errors=[{"loc": ["body", "inputs", i], "msg": "file gone"}])
        files.append(path)
    return files


def retry_inputs(store, artifacts: ArtifactStore, owner: str, old: Job, kind: str) -> tuple[list[Upload], list[Path]]:
    """(the uploads `old` listed, its own copies of their files) for a retry; 410 when the copies expired.

    An upload deleted since is rebuilt from the record the job keeps of it (the retry reads the copies).
    """
    files = artifacts.job_listed_inputs(old.id, kind)
    if len(files) != len(old.inputs):
        raise ProblemError(410, "input_expired", f"the inputs of job {old.id} have expired; upload them again")
    uploads = [store.get_upload(inp["upload_id"]) or Upload(
        id=inp["upload_id"], owner=owner, filename=inp["filename"], path="", size=0, sha256=inp.get("sha256") or "",
        media_type="application/octet-stream", format=inp["format"], kind=inp["kind"],
        report={"kind": inp["kind"], "has_normals": inp.get("has_normals"), "n_points": inp.get("n_points")})
        for inp in old.inputs]
    return uploads, files


__all__ = ["LISTED_KINDS", "retry_inputs", "upload_files"]
