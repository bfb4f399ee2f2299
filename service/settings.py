"""Service settings from `NFRECON_*` environment variables (pydantic-settings), shared by API and worker."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nfcore.vocab import PresetName

GiB = 1 << 30
MiB = 1 << 20


class Settings(BaseSettings):
    """Every knob of the service; invalid values fail at startup, not at the first request."""

    model_config = SettingsConfigDict(env_prefix="NFRECON_", extra="ignore", validate_assignment=True,
                                      use_attribute_docstrings=True)

    data_dir: Path = Path("./data")
    """Uploads, job inputs, artifacts and logs (a shared volume when workers run elsewhere)."""
    database_url: str | None = None
    """SQLAlchemy URL of the job store; default: SQLite (WAL) at `<data_dir>/nfrecon.db`."""
    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker (Redis)."""
    queue_prefix: str = ""
    """Prefix of the Celery queue names (`<prefix>gpu`, `<prefix>cpu`) and control exchange, to share one Redis."""
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated bearer tokens; empty = no authentication. Each key sees only its own jobs and uploads."""

    max_upload_bytes: int = Field(1 * GiB, ge=1)
    """Largest raw upload (POST /v1/uploads); enforced while streaming."""
    max_form_bytes: int = Field(64 * MiB, ge=1)
    """Largest one-shot multipart job request (POST /v1/jobs with files)."""
    body_timeout_s: float = Field(30.0, gt=0)
    """Longest wait for the next piece of a request body; then 408 and the connection is closed."""
    min_body_rate_bytes_s: int = Field(4096, ge=0)
    """Slowest accepted average upload rate once `body_rate_grace_s` has passed (0: no minimum); slower gets 408."""
    body_rate_grace_s: float = Field(10.0, ge=0)
    validation_timeout_s: float = Field(60.0, gt=0)
    """Wall-clock limit of one upload's validation (a child process, killed after it)."""
    validation_memory_bytes: int = Field(2 * GiB, ge=64 * MiB)
    """Memory a validation child may allocate (RLIMIT_AS on top of its start size); more is a 422."""
    validation_concurrency: int = Field(2, ge=1)
    """Validation children running at once (each up to validation_memory_bytes)."""
    validation_max_points: int = Field(5_000_000, ge=1)
    """Most points a cloud (or vertices a PLY header) may declare."""
    validation_max_pixels: int = Field(89_478_485, ge=1)
    """Most pixels an image may have (decompression-bomb limit)."""
    validation_max_array_bytes: int = Field(1 * GiB, ge=1)
    """Largest array an .npy header or .npz member may declare (rows x columns x itemsize)."""
    validation_max_decompressed_bytes: int = Field(1 * GiB, ge=1)
    """Largest total an .npz may decompress to."""
    validation_max_compression_ratio: float = Field(200.0, gt=1)
    """Largest decompressed/compressed ratio of an .npz member (real float data: 1-10)."""
    max_prior_bytes: int = Field(256 * MiB, ge=1024)
    """Largest prior file (POST /v1/priors), and the largest prior a meta-train job may make (8 bytes per
    parameter: weights and learning rates)."""
    meta_max_steps: int = Field(20_000, ge=1)
    """Most outer steps a meta-train job may ask for."""
    meta_max_shapes: int = Field(1000, ge=2)
    """Most shapes (files) in a meta-training zip."""
    meta_max_inputs: int = Field(100, ge=2)
    """Most uploads a meta-train job may list as its shapes (each a mesh or an oriented cloud), and at most
    `meta_max_shapes`."""
    meta_max_points: int = Field(100_000, ge=16)
    """Most scan points per shape (`shapes.n_points`) and SDF samples per shape (`shapes.n_sdf`) of a meta-train job."""
    max_queue: int = Field(1000, ge=1)
    """Queued jobs over all keys before POST /v1/jobs answers 429."""
    max_queue_per_key: int = Field(100, ge=1)
    """Queued jobs per API key before 429."""
    max_attempts: int = Field(2, ge=1, le=10)
    """Runs of a job whose worker was lost before it fails with `worker_lost`."""
    max_runtime_s: int = Field(4 * 3600, ge=10)
    """Hard time limit of one job; the soft limit (error code `timeout`) is `soft_time_margin_s` earlier."""
    soft_time_margin_s: int = Field(120, ge=1)
    job_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    """Artifacts of finished jobs are deleted this long after the job ended (the record stays)."""
    upload_ttl_s: int = Field(24 * 3600, ge=1)
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)

    heartbeat_interval_s: float = Field(2.0, gt=0)
    """How often a running job touches its heartbeat (and notices a cancel request)."""
    progress_interval_s: float = Field(1.0, ge=0)
    """Minimum seconds between progress writes of a running job."""
    stale_after_s: float | None = Field(None, gt=0)
    """Heartbeat age after which a running job counts as lost; default 5 x heartbeat_interval_s."""
    reaper_enabled: bool = True
    """Run the reaper loop inside the API (requeue/fail lost jobs, cancel fallback, expiry)."""
    reaper_interval_s: float = Field(10.0, gt=0)
    republish_on_startup: bool = True
    """Re-send every queued job to the broker when the API starts (an embedded broker forgets its queue)."""
    cancel_grace_s: float = Field(30.0, ge=0)
    """How long a cooperative cancel may take before the worker child is killed (revoke terminate)."""

    job_device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where jobs run unless their spec names a device: `cpu` sends them to the cpu queue, `auto`/`cuda` to
    the gpu queue. Workers resolve each spec for their own device."""
    worker_device: Literal["auto", "cpu", "cuda"] = "auto"
    """The device a worker runs jobs on (and resolves presets for): `auto` = CUDA when available, else CPU."""
    default_preset: PresetName = "balanced"
    retry_after_s: int = Field(30, ge=1)
    """Retry-After sent with 429 and with non-terminal job reads."""
    sse_poll_s: float = Field(0.5, gt=0)

    worker_presence_interval_s: float = Field(5.0, gt=0)
    """How often a worker refreshes its presence key (GET /v1/info lists workers seen within 3 intervals)."""

    webhooks_enabled: bool = True
    """Run the webhook dispatcher inside the API (it sends the jobs' `start`/`completed` events)."""
    webhook_secret: str | None = None
    """Standard Webhooks signing secret (`whsec_<base64>`); default: generated once, kept in `<data_dir>/webhook_secret`."""
    webhook_interval_s: float = Field(1.0, gt=0)
    """How often the dispatcher looks for new events and due retries."""
    webhook_timeout_s: float = Field(5.0, gt=0)
    """A receiver must answer within this many seconds, or the attempt counts as failed."""
    webhook_max_attempts: int = Field(5, ge=1, le=20)
    webhook_allow_private: bool = True
    """Allow webhook URLs whose host is (or resolves to) a loopback, private or link-local address.
    Turn off on a public deployment so that clients cannot make the server call its own network."""
    webhook_retry_base_s: float = Field(5.0, gt=0)
    """Retry k waits base * 4^(k-1) seconds (5 s, 20 s, 80 s, 320 s by default), at most an hour."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v):
        if isinstance(v, str):
            return [k.strip() for k in v.split(",") if k.strip()]
        return v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.soft_time_margin_s >= self.max_runtime_s:
            raise ValueError("soft_time_margin_s must be smaller than max_runtime_s")
        if not self.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
            raise ValueError(f"broker_url must be a Redis URL, got {self.broker_url!r}")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'nfrecon.db').resolve()}"

    @property
    def stale_after(self) -> float:
        return self.stale_after_s if self.stale_after_s is not None else 5 * self.heartbeat_interval_s

    @property
    def gpu_queue(self) -> str:
        return f"{self.queue_prefix}gpu"

    @property
    def cpu_queue(self) -> str:
        return f"{self.queue_prefix}cpu"

    @property
    def visibility_timeout_s(self) -> int:
        # Above the longest job, or Redis redelivers a running job to a second worker (celery#5306).
        return self.max_runtime_s + 3600


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
