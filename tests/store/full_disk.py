"""A real full filesystem for tests: a size-limited tmpfs (needs root, or CAP_SYS_ADMIN), filled to the last byte.

`small_disk(path, mb)` mounts one at `path` or skips the test when mounting is not permitted here;
`fill(dir)` writes a filler file until the filesystem answers ENOSPC and returns it (unlink it to free).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(path: Path, mb: int = 8) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); run as root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Write zeros into `directory/filler` until ENOSPC; the filesystem then has no byte left."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    st = os.statvfs(directory)
    assert st.f_bavail == 0, f"{st.f_bavail} blocks still free"
    return filler
