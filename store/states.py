"""Job states, error codes and the transitions between them (service.md §6.3)."""

from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    """Where a job is in its life; `succeeded`, `failed` and `canceled` are terminal."""

    queued = "queued"
    running = "running"
    canceling = "canceling"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


TERMINAL = frozenset({JobStatus.succeeded.value, JobStatus.failed.value, JobStatus.canceled.value})
ACTIVE = frozenset({JobStatus.running.value, JobStatus.canceling.value})


class ErrorCode(str, Enum):
    """Why a job failed. User errors are not retryable; infrastructure errors are."""

    invalid_input = "invalid_input"
    method_diverged = "method_diverged"
    out_of_memory = "out_of_memory"
    timeout = "timeout"
    worker_lost = "worker_lost"
    disk_full = "disk_full"
    internal = "internal"


RETRYABLE = {
    ErrorCode.invalid_input.value: False,
    ErrorCode.method_diverged.value: False,
    ErrorCode.out_of_memory.value: True,
    ErrorCode.timeout.value: True,
    ErrorCode.worker_lost.value: True,
    # The server's condition, not the job's: the same job succeeds once space is freed (POST .../retry).
    ErrorCode.disk_full.value: True,
    ErrorCode.internal.value: True,
}


def job_error(code: str, detail: str, log_tail: list[str] | None = None) -> dict:
    """The `job.error` object: a problem with `code`, `retryable` and the last log lines."""
    return {
        "type": f"https://nfrecon.dev/problems/{code.replace('_', '-')}",
        "title": code.replace("_", " ").capitalize(),
        "code": code,
        "detail": detail[:4000],
        "retryable": RETRYABLE.get(code, True),
        "log_tail": list(log_tail or [])[-20:],
    }
