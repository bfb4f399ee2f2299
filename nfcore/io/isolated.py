"""inspect_input in a child process with memory, CPU and time limits (used by the API's upload validation).

Parsers are the code most exposed to hostile bytes (PLY, GLB, zip, JPEG and TIFF decoders, some
in C). Run in a long-lived process, one file that makes a parser allocate 8 GB or crash takes that
process down. Here each file is inspected in a fresh child under RLIMIT_AS (the memory budget on
top of what the child maps when it starts), RLIMIT_CPU, RLIMIT_FSIZE=0 (an inspection writes no
files) and a wall-clock timeout after which it is killed.

The children are forked by a small server process (`python -m nfcore.io.isolated`) that has
nfcore.io imported already, so a validation costs a fork (milliseconds), not a new interpreter
(about a second here). It is our own rather than multiprocessing's forkserver because that one
re-imports the caller's `__main__` in every child (a console script, a test runner), and `fork`
from the caller itself is unsafe when it has threads (a web server does). The server is
single-threaded, reads one JSON request per line on stdin and answers one JSON line on stdout; it
exits when its stdin closes, i.e. when its parent exits, however that happens.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """What happened: status "ok" (payload: the InputReport as a dict), "invalid" (payload: the
    InputError's message), "memory" (MemoryError), "error" (another exception, named in payload),
    or None when the child died or was killed without answering (see `exitcode`, `timed_out`).
    `peak_rss_bytes` is the child's peak resident memory."""

    status: str | None
    payload: object
    exitcode: int | None
    timed_out: bool
    peak_rss_bytes: int | None = None


# ---------------------------------------------------------------------------------------------
# The server side (python -m nfcore.io.isolated)


def _vm_size() -> int:
    """This process's current virtual size in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(fd: int, path: str, limits: dict) -> None:
    """In the forked child: set the limits and the readers' caps, inspect, write one JSON answer to fd."""
    answer: tuple = ("error", "no answer")
    try:
        import resource

        import nfcore.io.formats as formats
        from nfcore.errors import InputError
        from nfcore.io.inspect import inspect_input

        address_space = _vm_size() + int(limits["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        cpu = int(limits["cpu_s"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # A fresh child per file: setting the module's caps here changes nothing for anyone else.
        formats.MAX_ARRAY_BYTES = int(limits["max_array_bytes"])
        formats.MAX_DECOMPRESSED_BYTES = int(limits["max_decompressed_bytes"])
        formats.MAX_COMPRESSION_RATIO = float(limits["max_compression_ratio"])
        try:
            report = inspect_input(Path(path), max_points=int(limits["max_points"]), max_pixels=limits["max_pixels"])
            answer = ("ok", report.model_dump(mode="json"))
        except InputError as exc:
            answer = ("invalid", str(exc))
        except RecursionError:
            answer = ("invalid", f"{Path(path).name} is nested too deeply to parse")
    except MemoryError:
        answer = ("memory", "")
    except BaseException as exc:  # noqa: BLE001 - any parser failure is an answer, never silence
        answer = ("error", f"{type(exc).__name__}: {exc}"[:500])
    data = json.dumps(answer).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _run_one(request: dict, protocol_fds: tuple[int, ...] = ()) -> dict:
    """Fork a child for one request, collect its answer within the timeout, reap it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(r)
            for fd in protocol_fds:
                os.close(fd)
            _child(w, request["path"], request["limits"])
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + float(request["timeout_s"])
    chunks, timed_out = [], False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if ready:
                block = os.read(r, 1 << 16)
                if not block:
                    break  # EOF: the child finished (or died)
                chunks.append(block)
    finally:
        os.close(r)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
    exitcode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    answer = None
    if chunks and not timed_out:
        try:
            answer = json.loads(b"".join(chunks))
        except ValueError:
            answer = None  # a partial answer: the child died while writing
    return {"status": answer[0] if answer else None, "payload": answer[1] if answer else None,
            "exitcode": exitcode, "timed_out": timed_out, "peak_rss_bytes": usage.ru_maxrss * 1024}


def serve() -> None:
    """The fork server's loop: one JSON request per stdin line, one JSON answer per stdout line."""
    import nfcore.io  # noqa: F401 - preloaded, so that every forked child starts with it
    import nfcore.io.images  # noqa: F401
    import nfcore.io.inspect  # noqa: F401

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the parent, which closes our stdin
    # The protocol moves to private descriptors; fd 0 becomes /dev/null and fd 1 stderr, so that
    # nothing a parser (or a C library) prints can corrupt an answer.
    in_fd, out_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    requests, out = os.fdopen(in_fd, "rb"), os.fdopen(out_fd, "wb")
    for line in requests:
        try:
            reply = _run_one(json.loads(line), (in_fd, out_fd))
        except Exception as exc:  # noqa: BLE001 - a bad request gets an answer, the server lives on
            reply = {"status": "error", "payload": f"{type(exc).__name__}: {exc}", "exitcode": None,
                     "timed_out": False, "peak_rss_bytes": None}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# The client side


class _Server:
    def __init__(self):
        # Not in a new session: a terminal's Ctrl-C reaches it too (it ignores SIGINT and leaves on EOF).
        self.proc = subprocess.Popen([sys.executable, "-m", "nfcore.io.isolated"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True)

    def ask(self, request: dict, timeout_s: float) -> dict | None:
        """Send a request and wait for its answer; None if the server died or stopped answering."""
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            # The server enforces the timeout on the child; the margin covers its own start (imports).
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s + 60)
            if not ready:
                return None
            line = self.proc.stdout.readline()
            return json.loads(line) if line else None
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Inspector:
    """A pool of at most `size` fork servers, started on first use; thread-safe."""

    def __init__(self, size: int = 2):
        self.size = size
        self._idle: queue.LifoQueue[_Server] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    def inspect(self, path: str | Path, limits: dict, timeout_s: float) -> Outcome:
        """inspect_input(path) in a limited child. `limits`: memory_bytes, cpu_s, max_points, max_pixels,
        max_array_bytes, max_decompressed_bytes, max_compression_ratio. Blocks until answered."""
        request = {"path": str(path), "limits": dict(limits), "timeout_s": float(timeout_s)}
        with self._slots:
            try:
                server = self._idle.get_nowait()
            except queue.Empty:
                server = _Server()
            reply = server.ask(request, timeout_s)
            with self._lock:
                keep = reply is not None and not self._closed
                if keep:
                    self._idle.put(server)
            if not keep:
                server.close()  # broken (the next request starts a fresh one), or the pool was closed
            if reply is None:
                return Outcome(None, None, None, False)
        return Outcome(reply["status"], reply["payload"], reply["exitcode"], reply["timed_out"],
                       reply.get("peak_rss_bytes"))

    def close(self) -> None:
        """Stop the idle servers now; a busy one stops when its request is answered."""
        with self._lock:
            self._closed = True
            servers = []
            while not self._idle.empty():
                servers.append(self._idle.get_nowait())
        for server in servers:
            server.close()


__all__ = ["Outcome", "Inspector", "serve"]

if __name__ == "__main__":
    serve()
