"""`nfrecon serve`: the whole service on one machine; `nfrecon worker`: a worker for a configured broker.

Embedded mode (the default) needs no Redis server: it starts a `redis-server` child on a free
loopback port when the binary is on PATH, else fakeredis' Redis-protocol TCP server in a thread
(service.md §4.2: the same kombu Redis transport as production, with revoke, remote control and
redelivery working), a SQLite job DB (WAL) under the data directory, ONE Celery worker subprocess
with the production flags, and uvicorn serving the API (whose lifespan runs the reaper and
re-publishes queued jobs, since an embedded broker forgets its queue). Ctrl-C or SIGTERM stops the
API, then drains the worker (SIGTERM to its parent: the running job may finish within
--shutdown-grace seconds, else it is handed back to the queue; then SIGKILL of its process group),
then the broker.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger("nfrecon.serve")

BROKER_CHOICES = ("embedded", "redis-server", "fakeredis")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout:g} s")


class EmbeddedBroker:
    """A Redis-protocol server on loopback: `redis-server` child, or fakeredis' TcpFakeServer thread.

    Args:
        kind: "embedded" (redis-server if on PATH, else fakeredis), "redis-server" or "fakeredis".
        state_dir: working directory of redis-server (nothing is persisted: the job DB is the truth).
    """

    def __init__(self, kind: str = "embedded", state_dir: Path | None = None, host: str = "127.0.0.1"):
        if kind not in BROKER_CHOICES:
            raise ValueError(f"broker kind must be one of {', '.join(BROKER_CHOICES)}, got {kind!r}")
        if kind == "embedded":
            kind = "redis-server" if shutil.which("redis-server") else "fakeredis"
        if kind == "redis-server" and not shutil.which("redis-server"):
            raise RuntimeError("--broker redis-server: no redis-server on PATH")
        self.kind, self.host, self.state_dir = kind, host, state_dir
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> str:
        self.port = free_port(self.host)
        if self.kind == "redis-server":
            state = self.state_dir or Path.cwd()
            state.mkdir(parents=True, exist_ok=True)
            self._proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
                 "--dir", str(state), "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, start_new_session=True,
            )
        else:
            from fakeredis import TcpFakeServer

            # fakeredis[lua] is required: kombu's Redis transport uses EVALSHA.
            self._server = TcpFakeServer((self.host, self.port), server_type="redis")
            self._server.daemon_threads = True
            self._thread = threading.Thread(target=self._server.serve_forever, name="fakeredis", daemon=True)
            self._thread.start()
        _wait_port(self.host, self.port, 10.0)
        logger.info("embedded broker (%s) on %s", self.kind, self.url)
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


REQUEUE_WAIT_S = 10.0
"""After the grace period: how long the job's child may take to hand the job back before SIGKILL."""


def _children(pid: int) -> list[int]:
    """The direct children of `pid` (the worker's prefork pool), from /proc."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PPid:"):
                if int(line.split()[1]) == pid:
                    out.append(int(status.parent.name))
                break
    return out


HEADER_TIMEOUT_S = 10.0
"""Longest time from a connection's (or a request's) first byte to the end of its headers."""


def http_protocol(header_timeout_s: float = HEADER_TIMEOUT_S):
    """uvicorn's httptools protocol with a header read timeout, or "auto" where httptools is missing.

    Uvicorn has none: a client that connects and sends half a request line holds the connection
    forever (slowloris). Bodies have their own timeouts in the app (api.app.BodyLimitMiddleware);
    headers never reach the app, so this is the one place to bound them. The connection is closed.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer = None

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that never sends a whole request line

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # the next request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


class WorkerProcess:
    """One Celery worker subprocess (its own process group), restarted if it dies unexpectedly."""

    def __init__(self, argv: list[str], env: dict[str, str], *, restart: bool = True, grace_s: float = 15.0,
                 log_file: Path | None = None):
        self.argv, self.env, self.restart, self.grace_s = argv, env, restart, grace_s
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # spawn (watchdog) vs stop (main thread)
        self._watch: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        if self.proc is None:
            raise RuntimeError("worker was stopped before it started")
        if self.restart:
            self._watch = threading.Thread(target=self._watchdog, name="worker-watchdog", daemon=True)
            self._watch.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._spawn_locked()

    def _spawn_locked(self) -> None:
        # A new session: the terminal's Ctrl-C reaches only the launcher, which then stops the
        # worker in order (and can kill its whole group, pool children included).
        out = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115 (owned by the child)
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True, stdout=out,
                                         stderr=subprocess.STDOUT if out else None)
        finally:
            if out:
                out.close()
        logger.info("worker started (pid %d)", self.proc.pid)

    def _watchdog(self) -> None:
        while not self._stopping.wait(1.0):
            if self.proc is not None and self.proc.poll() is not None and not self._stopping.is_set():
                logger.warning("worker exited with %s; restarting", self.proc.returncode)
                self._kill_group()
                time.sleep(1.0)
                if not self._stopping.is_set():
                    self._spawn()

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """Drain: SIGTERM to the worker's parent only (Celery's warm shutdown lets the running job
        finish); after `grace_s`, SIGTERM to its pool child (the job hands itself back to the queue,
        worker/runner.py); then SIGKILL of the whole group.

        Never SIGTERM the whole group at once: the pool child would get it too and the running job
        would end at once (issue 9: "SIGTERM to nfrecon serve fails the running job").
        """
        with self._lock:
            self._stopping.set()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                children = _children(self.proc.pid)
                logger.warning("worker did not finish its job within %.0f s; requeueing it (SIGTERM to %s)",
                               self.grace_s, children)
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                try:
                    self.proc.wait(REQUEUE_WAIT_S)
                except subprocess.TimeoutExpired:
                    logger.warning("worker did not stop %.0f s after its child; killing it", REQUEUE_WAIT_S)
        self._kill_group()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------------------------------------
# commands


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="uploads, artifacts, logs and the SQLite job DB (default: $NFRECON_DATA_DIR or ./data)")
    parser.add_argument("--broker", default="embedded",
                        help="embedded (redis-server if on PATH, else fakeredis), redis-server, fakeredis, "
                             "or a redis:// URL of an existing broker")
    parser.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite under the data dir)")
    parser.add_argument("--no-worker", action="store_true", help="do not start a worker (workers run elsewhere)")
    parser.add_argument("--shutdown-grace", type=float, default=15.0, metavar="SECONDS",
                        help="on Ctrl-C/SIGTERM, how long the running job may take to finish before it is "
                             "handed back to the queue (default 15)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hostname", default=None, help="Celery node name, e.g. gpu0@%%h")
    parser.add_argument("--queues", default="gpu,cpu",
                        help="gpu,cpu (default; a CPU-only machine runs gpu jobs on its CPU), gpu, or cpu")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def settings_env(settings) -> dict[str, str]:
    """The environment that gives a worker subprocess exactly these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if name == "api_keys":
            value = ",".join(value)
        env[f"NFRECON_{name.upper()}"] = str(value)
    env["NFRECON_DATA_DIR"] = str(settings.data_dir.resolve())
    env["NFRECON_DATABASE_URL"] = settings.resolved_database_url
    # The worker imports `api`, `store` and `worker` from the same tree as the launcher.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def run_serve(args: argparse.Namespace) -> int:
    """Run broker + worker + API until Ctrl-C/SIGTERM; returns the exit status."""
    import uvicorn

    from api.app import create_app
    from service.settings import Settings
    from worker.celery_app import worker_argv

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.database_url:
        overrides["database_url"] = args.database_url
    broker = None
    if args.broker.startswith(("redis://", "rediss://")):
        overrides["broker_url"] = args.broker
    else:
        base = Settings(**overrides)
        broker = EmbeddedBroker(args.broker, state_dir=base.data_dir / "redis")
        overrides["broker_url"] = broker.start()
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = None
    try:
        if not args.no_worker:
            worker = WorkerProcess(worker_argv(settings, hostname=f"embedded-{os.getpid()}@%h",
                                               loglevel=args.log_level.upper()), settings_env(settings),
                                   grace_s=getattr(args, "shutdown_grace", 15.0))
            worker.start()
        app = create_app(settings)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, lifespan="on",
                                http=http_protocol())
        server = uvicorn.Server(config)
        # uvicorn re-raises the signal it caught once it has shut down; with the default handler
        # that would kill this process before the worker and broker are stopped. Our handler is
        # what uvicorn restores, so the re-raised signal only asks for an exit that already happened.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, server.handle_exit)
        logger.info("nfrecon serving on http://%s:%d/v1 (data in %s)", args.host, args.port, settings.data_dir.resolve())
        logger.info("web page: http://%s:%d/ui/", args.host, args.port)
        server.run()  # returns after SIGINT/SIGTERM (uvicorn installs the handlers)
        return 0 if server.started else 1
    finally:
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
        logger.info("stopped")


def run_worker(args: argparse.Namespace) -> int:
    """Replace this process by a Celery worker for NFRECON_BROKER_URL/DATABASE_URL/DATA_DIR (production flags)."""
    from service.settings import get_settings
    from worker.celery_app import worker_argv

    settings = get_settings()
    argv = worker_argv(settings, hostname=args.hostname, loglevel=args.log_level.upper(), queues=args.queues)
    env = settings_env(settings)
    os.execve(argv[0], argv, env)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        parser = argparse.ArgumentParser(prog="python -m nfrecon.serve worker")
        add_worker_arguments(parser)
        return run_worker(parser.parse_args(argv[1:]))
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="python -m nfrecon.serve", description=__doc__.splitlines()[0])
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
