"""Headless Chromium for the page benchmark and the web tests: which binary, and the flags it needs here.

The browser is Debian's `chromium` package (`apt-get install -y chromium`), driven through Playwright's
`executable_path`: Playwright's own browser download is never used. WebGL runs on SwiftShader (software),
which headless Chromium needs on machines without a GPU.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--use-angle=swiftshader",  # WebGL without a GPU
    "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1280, "height": 900}


def chromium_path() -> str | None:
    """The Chromium binary to drive: $NFRECON_CHROMIUM, else the system's; None where there is none."""
    for candidate in (os.environ.get("NFRECON_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None
