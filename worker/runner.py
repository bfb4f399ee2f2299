"""`run_job(job_id, ctx)`: run one job from the job table, Celery-agnostic (testable without a broker).

The runner claims the job with a conditional transition, resolves its stored method spec for the
device this worker runs on (presets differ per device) and records that config and device on the
job, runs `nfcore.fit` in a fresh attempt
directory, writes progress at most every `progress_interval_s`, keeps a heartbeat from a
background thread (so a long marching-cubes pass is not mistaken for a dead worker), stops
cooperatively when the job is set to `canceling`, publishes the outputs with one rename, and ends
with a conditional terminal transition (a duplicate or a lost attempt changes nothing). When the
worker itself goes away (SIGTERM to the child: shutdown), the job is handed back to the queue
without using up an attempt; a claim never takes attempt past max_attempts.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from service.metatrain import META_TRAIN, MetaTrainSpec
from service.settings import Settings
from store import ArtifactStore, JobStatus, JobStore, disk_full_error, free_bytes, job_error, make_engine, utcnow
from worker.output import RunOutput

logger = logging.getLogger("nfrecon.worker")


class JobLog:
    """Append-only job log (`job.log`); keeps the last lines for `error.log_tail`."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self.tail: deque[str] = deque(maxlen=20)
        self.write_error: OSError | None = None
        self.name = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "a", encoding="utf-8", buffering=1)
        except OSError as exc:
            # No log file (a full disk): the job still runs and ends with a reason; its lines stay in the tail.
            logger.warning("job log %s not opened: %s", path, exc)
            self._f = None
            self.write_error = exc

    def write(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        with self._lock:
            for line in message.rstrip("\n").splitlines() or [""]:
                text = f"{stamp} {line}"
                self.tail.append(text)
                if self._f is None:
                    continue
                try:
                    self._f.write(text + "\n")
                except OSError as exc:
                    # A full disk must not turn a clean job failure into a stuck job: the line
                    # stays in the tail (it reaches error.log_tail) and the run goes on.
                    if not self.write_error:
                        logger.warning("job log %s not written: %s", self.name, exc)
                    self.write_error = exc

    def close(self) -> None:
        if self._f is None:
            return
        try:
            self._f.close()
        except OSError:  # the buffered rest could not be written (disk full): already reported
            pass


class _LogHandler(logging.Handler):
    def __init__(self, log: JobLog):
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.write(f"[{record.levelname.lower()}] {record.name}: {record.getMessage()}")


@dataclass
class RunContext:
    """What a run needs from its host: stores, settings, its name, and which exceptions mean timeout."""

    store: JobStore
    artifacts: ArtifactStore
    settings: Settings
    worker: str = "local"
    timeout_errors: tuple[type[BaseException], ...] = ()
    device: str | None = None
    """Force a device ("cpu"/"cuda"); None = `settings.worker_device` (auto: CUDA when available, else CPU)."""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs) -> RunContext:
        store = JobStore(make_engine(settings.resolved_database_url))
        return cls(store=store, artifacts=ArtifactStore(settings.data_dir), settings=settings, **kwargs)


class _Heartbeat(threading.Thread):
    """Touches the heartbeat every interval; flags a cancel request or a lost claim."""

    def __init__(self, store: JobStore, job_id: str, attempt: int, interval: float):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.store, self.job_id, self.attempt, self.interval = store, job_id, attempt, interval
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()

    def beat(self) -> None:
        try:
            status = self.store.heartbeat(self.job_id, self.attempt)
        except Exception:  # a DB hiccup must not kill the job; the next beat retries
            logger.exception("heartbeat failed for %s", self.job_id)
            return
        if status is None:
            self.lost.set()
        elif status == JobStatus.canceling.value:
            self.cancel.set()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop.set()


def pick_device(ctx: RunContext, requested: str) -> str:
    """The device a job runs on here: forced by the worker, else what the spec asks, else CUDA when present."""
    forced = ctx.device or (ctx.settings.worker_device if ctx.settings.worker_device != "auto" else None)
    if forced:
        return forced
    if requested != "auto":
        return requested
    import torch

    # CPU-only machines run gpu-queue jobs on CPU rather than failing them.
    return "cuda" if torch.cuda.is_available() else "cpu"


DISK_FULL_FREE_BYTES = 1 << 20
"""Free space under which a write error without an errno (torch.save's RuntimeError, say) counts as a full disk."""


def _classify(exc: BaseException, ctx: RunContext) -> str:
    from nfcore.errors import InputError

    if isinstance(exc, InputError):
        return "invalid_input"
    if ctx.timeout_errors and isinstance(exc, ctx.timeout_errors):
        return "timeout"
    if disk_full_error(exc) is not None:  # ENOSPC/EDQUOT, itself or behind a library's own error
        return "disk_full"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "out_of_memory"
    if type(exc).__name__ == "DivergedError" or isinstance(exc, FloatingPointError):
        return "method_diverged"
    if isinstance(exc, (OSError, RuntimeError)):
        # A write error that lost its errno on the way (torch.save: "file write failed") while the
        # data directory has next to nothing left.
        free = free_bytes(ctx.artifacts.root)
        if free is not None and free < DISK_FULL_FREE_BYTES:
            return "disk_full"
    return "internal"


def _host_going_away(exc: BaseException) -> bool:
    """A stop of the process running the job (SIGTERM -> SystemExit, Ctrl-C), not an error of the job."""
    return isinstance(exc, (SystemExit, KeyboardInterrupt))


def run_job(job_id: str, ctx: RunContext) -> str:
    """Run job `job_id` to a terminal state and return that state.

    Returns "skipped" when there is nothing to do (finished, canceled, deleted) and "busy" when the
    job is running with a live heartbeat (a duplicate delivery, or our own child just died).
    """
    store, settings = ctx.store, ctx.settings
    stale_before = utcnow() - timedelta(seconds=settings.stale_after)
    job = store.claim(job_id, ctx.worker, stale_before=stale_before)
    if job is None:
        current = store.get_job(job_id)
        if current is not None and current.attempt >= current.max_attempts and store.fail_exhausted(
                job_id, f"worker lost {current.attempt} times (max_attempts={current.max_attempts})",
                stale_before=stale_before, expires_at=utcnow() + timedelta(seconds=settings.job_ttl_s)):
            # Every attempt was used by a lost worker: end it here rather than run attempt max + 1.
            log = JobLog(ctx.artifacts.log_path(job_id))
            log.write(f"giving up: the worker was lost {current.attempt} times (max_attempts={current.max_attempts})")
            log.close()
            return JobStatus.failed.value
        if current is not None and current.status in (JobStatus.running.value, JobStatus.canceling.value):
            # Running with a live heartbeat: a duplicate delivery, or a redelivery right after
            # our own child died. The caller may look again once the heartbeat could be stale.
            logger.info("job %s is running elsewhere (heartbeat alive)", job_id)
            return "busy"
        logger.info("job %s not claimable (finished, canceled or deleted); skipping", job_id)
        return "skipped"
    attempt = job.attempt
    expires = utcnow() + timedelta(seconds=settings.job_ttl_s)
    log = JobLog(ctx.artifacts.log_path(job_id))
    log.write(f"attempt {attempt}/{job.max_attempts} on {ctx.worker}")

    heartbeat = _Heartbeat(store, job_id, attempt, settings.heartbeat_interval_s)
    heartbeat.start()
    handler = _LogHandler(log)
    nfcore_logger = logging.getLogger("nfcore")
    nfcore_logger.addHandler(handler)
    started = time.perf_counter()
    last_progress_log = [-1.0]
    try:
        # Imported here, in the job's child process, never in the worker parent (CUDA + fork).
        from nfcore.errors import FitCanceled
        from nfcore.progress import describe_progress

        try:
            def on_progress(p) -> bool:
                if heartbeat.lost.is_set():
                    return False
                data = p.to_dict() if hasattr(p, "to_dict") else dict(p)
                store.set_progress(job_id, attempt, data.get("phase") or "train", data)
                if time.perf_counter() - last_progress_log[0] >= 5.0 or data.get("fraction", 0) >= 1.0:
                    last_progress_log[0] = time.perf_counter()
                    log.write(describe_progress(data))
                return not heartbeat.cancel.is_set()

            if job.task == META_TRAIN:
                from worker.metatrain import run_meta_train

                device = pick_device(ctx, MetaTrainSpec.model_validate(job.spec).requested_device)
                run = run_meta_train(job, ctx, attempt, log, on_progress, device)
            else:
                run = _run_fit(job, ctx, attempt, log, on_progress)
            if heartbeat.cancel.is_set():
                raise FitCanceled("canceled after the fit finished")
            entries = ctx.artifacts.publish(job_id, run.out_dir)
            run_seconds = time.perf_counter() - started
            metrics = dict(run.metrics)
            metrics.update(
                run_seconds=round(run_seconds, 3),
                fit_seconds=round(float(run.seconds), 3),
                steps=int(run.steps),
                device=run.device,
                queue_seconds=round((job.started_at - job.created_at).total_seconds(), 3) if job.started_at else None,
                artifacts=[e["name"] for e in entries],
            )
            registered = run.on_published(metrics) if run.on_published else None
            log.write(f"succeeded in {run_seconds:.1f} s; artifacts: {', '.join(e['name'] for e in entries)}")
            if store.finish(job_id, attempt, JobStatus.succeeded, metrics=_jsonable(metrics), expires_at=expires):
                return JobStatus.succeeded.value
            if registered is not None:
                registered()  # the job is no longer ours (canceled or deleted): its result is not kept either
            log.write("job changed under us (canceled or deleted); result discarded")
            return "skipped"
        except FitCanceled:
            log.write("canceled")
            store.finish(job_id, attempt, JobStatus.canceled, expires_at=expires)
            return JobStatus.canceled.value
    except BaseException as exc:
        if _host_going_away(exc):
            # SIGTERM reached this child (billiard turns it into SystemExit(-241)): the worker is
            # shutting down, or Celery cancels tasks after losing the broker. Not the job's fault:
            # hand it back to the queue (the reaper re-publishes it) instead of failing it.
            try:
                outcome = store.release(job_id, attempt)
            except Exception:  # the DB is out of reach too: the heartbeat stops and the reaper requeues
                logger.exception("could not hand job %s back to the queue", job_id)
                outcome = None
            log.write(f"worker going away ({type(exc).__name__}: {exc}); "
                      + ("job requeued, this attempt not counted" if outcome == JobStatus.queued.value
                         else f"job {outcome or 'no longer ours'}"))
            raise
        code = _classify(exc, ctx)
        detail = f"{type(exc).__name__}: {exc}"
        if code == "disk_full":
            free = free_bytes(ctx.artifacts.root)
            detail = ("the server's data directory is full: this job's outputs could not be written "
                      f"({detail}; {free if free is not None else 'unknown'} bytes free). Nothing of this attempt "
                      "is kept or served; retry the job once space has been freed.")
        log.write(f"failed ({code}): {detail}")
        if code == "internal":
            log.write(traceback.format_exc())
        store.finish(job_id, attempt, JobStatus.failed, error=job_error(code, detail, list(log.tail)),
                     expires_at=expires)
        # The unpublished outputs of this attempt are never served; free their space (a full disk).
        shutil.rmtree(ctx.artifacts.job_dir(job_id) / f".attempt-{attempt}", ignore_errors=True)
        if not isinstance(exc, Exception):
            raise  # SystemExit / KeyboardInterrupt: let the worker shut down
        return JobStatus.failed.value
    finally:
        heartbeat.stop()
        nfcore_logger.removeHandler(handler)
        log.close()


def _run_fit(job, ctx: RunContext, attempt: int, log: JobLog, on_progress) -> RunOutput:
    """A reconstruction: resolve the spec for this worker's device, record it, fit, keep the prior's id."""
    from nfcore.errors import InputError
    from nfcore.fit import fit
    from nfcore.spec import MethodSpec, resolve
    from service.jobs import job_input_files
    from service.priors import resolve_job_prior, with_prior_id

    store, settings, job_id = ctx.store, ctx.settings, job.id
    spec = MethodSpec.model_validate(job.spec)
    device = pick_device(ctx, spec.requested_device)
    try:
        config = resolve(spec, device)
    except ValueError as exc:  # validated at submit for every device; a worker forced elsewhere lands here
        raise InputError(f"the job's method cannot run on this worker's device {device}: {exc}") from exc
    # The service reports progress at its own pace; recorded so that the job shows what ran.
    config.train.progress_interval_s = min(config.train.progress_interval_s, settings.progress_interval_s)
    store.record_config(job_id, attempt, config.model_dump(mode="json"), device)  # names a prior by its id
    # One input, or (sdf) several scans of one object that the fit registers and merges (nfcore.scans).
    input_paths = job_input_files(ctx.artifacts, job)
    if not input_paths:
        raise FileNotFoundError(f"input of job {job_id} is missing from the data directory")
    run_config, prior_id = resolve_job_prior(config, ctx.artifacts, job_id)  # the id -> the job's own copy
    named = input_paths[0].name if len(input_paths) == 1 else f"{len(input_paths)} scans"
    log.write(f"task {spec.task} preset {spec.preset} on {device}; input {named}"
              + (f"; prior {prior_id}" if prior_id else ""))
    out_dir = ctx.artifacts.attempt_dir(job_id, attempt)
    result = fit(input_paths if len(input_paths) > 1 else input_paths[0], run_config, out_dir, device=device,
                 callback=on_progress)
    # What ran: the fit filled in the settings the preset leaves to the data (nfcore.adaptive); the
    # prior is shown by its id, never by the server's path (also in config.json and metrics.json).
    recorded, metrics = with_prior_id(result.config.model_dump(mode="json"), dict(result.metrics or {}), prior_id,
                                      out_dir)
    store.record_config(job_id, attempt, recorded, device)
    return RunOutput(out_dir=out_dir, metrics=metrics, seconds=float(result.seconds), steps=int(result.steps),
                     device=device)


def _jsonable(obj):
    """Metrics as plain JSON (numpy scalars and NaN are not)."""
    import math

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
