"""Upload validation out of the API's process (nfcore.io.isolated), with its outcomes as problem+json.

A parser's crash, hang or out-of-memory on a hostile file happens in a child process with its own
limits and becomes a 422 naming what went wrong; the API process only waits on a pipe.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from nfcore.io.isolated import Inspector
from service.errors import ProblemError

_lock = threading.Lock()
_inspectors: dict[int, Inspector] = {}


@dataclass(frozen=True)
class ValidationLimits:
    """What one validation may use; from Settings (`validation_*`, see service/settings.py)."""

    timeout_s: float = 60.0
    memory_bytes: int = 2 << 30
    max_points: int = 5_000_000
    max_pixels: int | None = None
    max_array_bytes: int = 1 << 30
    max_decompressed_bytes: int = 1 << 30
    max_compression_ratio: float = 200.0
    concurrency: int = 2

    @classmethod
    def from_settings(cls, s) -> ValidationLimits:
        return cls(timeout_s=s.validation_timeout_s, memory_bytes=s.validation_memory_bytes,
                   max_points=s.validation_max_points, max_pixels=s.validation_max_pixels,
                   max_array_bytes=s.validation_max_array_bytes,
                   max_decompressed_bytes=s.validation_max_decompressed_bytes,
                   max_compression_ratio=s.validation_max_compression_ratio,
                   concurrency=s.validation_concurrency)

    def child_limits(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpu_s": int(self.timeout_s) + 5, "max_points": self.max_points,
                "max_pixels": self.max_pixels, "max_array_bytes": self.max_array_bytes,
                "max_decompressed_bytes": self.max_decompressed_bytes,
                "max_compression_ratio": self.max_compression_ratio}


def inspector(concurrency: int) -> Inspector:
    """The process's pool of fork servers for this concurrency (started on first use, kept: a server
    costs one interpreter start; each validation then costs one fork)."""
    with _lock:
        if concurrency not in _inspectors:
            _inspectors[concurrency] = Inspector(concurrency)
        return _inspectors[concurrency]


def close_inspectors() -> None:
    """Stop the fork servers (the API's shutdown); the next validation starts new ones."""
    with _lock:
        pools = list(_inspectors.values())
        _inspectors.clear()
    for pool in pools:
        pool.close()


def validate_file(path: Path, display_name: str, limits: ValidationLimits) -> dict:
    """The InputReport of `path` as a dict, or ProblemError(422) naming the problem.

    Blocking: call it from a worker thread (anyio.to_thread). At most `limits.concurrency` children
    run at once (the others wait), so that a burst of uploads cannot multiply the memory budget.
    """

    def clean(text: str) -> str:
        # Name the client's file, never our storage path.
        return str(text).replace(str(path), display_name).replace(path.name, display_name)

    out = inspector(max(1, limits.concurrency)).inspect(path, limits.child_limits(), limits.timeout_s)
    if out.status == "ok":
        return out.payload
    if out.status == "invalid":
        raise ProblemError(422, "invalid_input", clean(out.payload))
    if out.status == "memory":
        raise ProblemError(422, "validation_out_of_memory",
                           f"{display_name} needs more than {limits.memory_bytes} bytes of memory to validate (the "
                           "validation limit); send a smaller or simpler file")
    if out.status == "error":
        raise ProblemError(422, "invalid_input", f"{display_name} could not be parsed: {clean(out.payload)}")
    code = out.exitcode
    if out.timed_out or code == -signal.SIGXCPU:
        raise ProblemError(422, "validation_timeout",
                           f"validating {display_name} took longer than {limits.timeout_s:g} s (the validation "
                           "limit); send a smaller or simpler file")
    how = f"exit code {code}"
    if code is not None and code < 0:
        try:
            how = f"signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"signal {-code}"
    raise ProblemError(422, "validation_crashed",
                       f"the parser stopped on {display_name} ({how}); the file is malformed in a way its reader "
                       "cannot handle")


__all__ = ["ValidationLimits", "validate_file", "close_inspectors"]
