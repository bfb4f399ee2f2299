"""Celery configuration for long GPU jobs, and the no-torch-in-the-parent rule."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.broker import make_celery, worker_queues
from service.settings import Settings
from worker.celery_app import worker_argv


def test_long_job_settings():
    s = Settings(max_runtime_s=7200, soft_time_margin_s=100, queue_prefix="p.")
    conf = make_celery(s).conf
    assert conf.task_acks_late is True and conf.worker_prefetch_multiplier == 1
    assert conf.task_reject_on_worker_lost is True
    # A broker outage leaves the running job alone (the job table, not the message, is its state).
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    assert conf.broker_connection_max_retries is None
    assert conf.broker_transport_options["visibility_timeout"] > 7200
    assert conf.visibility_timeout == conf.broker_transport_options["visibility_timeout"]
    assert conf.task_time_limit == 7200 and conf.task_soft_time_limit == 7100
    assert conf.accept_content == ["json"] and conf.task_ignore_result is True
    assert conf.task_default_queue == "p.cpu"


def test_worker_command_line_uses_production_flags():
    s = Settings(queue_prefix="t.")
    argv = worker_argv(s, hostname="gpu0@%h")
    joined = " ".join(argv)
    assert "-P" not in argv  # the pool comes from the app's worker_pool setting
    for flag in ("-c 1", "--max-tasks-per-child=1", "--prefetch-multiplier=1", "-Q t.gpu,t.cpu",
                 "-n gpu0@%h"):
        assert flag in joined
    assert worker_queues(s, "cpu") == "t.cpu"
    with pytest.raises(ValueError):
        worker_queues(s, "tpu")


def test_pool_is_prefork_with_a_prompt_process_check():
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool

    from worker.celery_app import make_worker_app
    from worker.pool import MAINTAIN_INTERVAL_S

    cls = get_implementation(make_worker_app(Settings()).conf.worker_pool)  # how the worker resolves it
    assert issubclass(cls, TaskPool)
    pool = cls.Pool.__new__(cls.Pool)  # the timers property needs no started pool
    (interval,) = pool.timers.values()
    assert interval == MAINTAIN_INTERVAL_S < 5.0


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NFRECON_API_KEYS", " a, b ,,")
    monkeypatch.setenv("NFRECON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NFRECON_HEARTBEAT_INTERVAL_S", "0.5")
    s = Settings()
    assert s.api_keys == ["a", "b"] and s.stale_after == 2.5
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'nfrecon.db'}"
    monkeypatch.setenv("NFRECON_BROKER_URL", "amqp://x")
    with pytest.raises(ValidationError, match="broker_url"):
        Settings()


def test_worker_modules_do_not_import_torch():
    code = ("import sys, worker.tasks, worker.celery_app, service.reaper; "
            "assert 'torch' not in sys.modules and 'fastapi' not in sys.modules, "
            "sorted(m for m in sys.modules if m in ('torch', 'fastapi'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
