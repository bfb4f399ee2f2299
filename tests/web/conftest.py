"""Fixtures for the web page tests: a real `nfrecon serve` and headless Chromium driven by Playwright.

The browser and its flags come from `bench.browser` (Debian's `chromium`, which `.ci/run` installs). Where
no Chromium can be launched the tests skip saying why, except with NFRECON_REQUIRE_BROWSER=1 (CI), where
they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.browser import CHROMIUM_ARGS, VIEWPORT, chromium_path
from nfrecon.serve import free_port
from tests.service_fixtures import wait_for

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


def _unavailable(reason: str):
    if os.environ.get("NFRECON_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (NFRECON_REQUIRE_BROWSER=1: the browser tests must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the web page tests need Playwright for Python: pip install -e '.[test]'")
    path = chromium_path()
    if path is None:
        _unavailable("no Chromium found (apt-get install -y chromium, or set NFRECON_CHROMIUM)")
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            _unavailable(f"Chromium at {path} cannot be launched: {str(exc).splitlines()[0]}")
        yield b
        b.close()


@dataclass
class Served:
    base: str  # http://127.0.0.1:<port>
    data_dir: Path
    log: Path

    @property
    def api(self) -> str:
        return f"{self.base}/v1"


def _serve(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """`python -m nfrecon serve --broker fakeredis` on a free port, stopped with SIGTERM afterwards."""
    port = free_port()
    env = dict(os.environ)
    env.pop("NFRECON_API_KEYS", None)  # keys only where a fixture asks for them
    env.update(NFRECON_HEARTBEAT_INTERVAL_S="0.5", NFRECON_PROGRESS_INTERVAL_S="0.5",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
               **(extra_env or {}))
    log_path = tmp / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "nfrecon", "serve", "--port", str(port), "--data-dir",
                             str(tmp / "data"), "--broker", "fakeredis"],
                            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", tmp / "data", log_path)
    try:
        def ready():
            try:
                return httpx.get(f"{served.api}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 90, interval=0.5, what="nfrecon serve to be ready")
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def served_with_keys(tmp_path_factory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("serve-keys"), {"NFRECON_API_KEYS": "alice-key,bob-key"})


@dataclass
class Console:
    """Console errors and uncaught exceptions of one page; tests name the few they expect."""

    errors: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def expect(self, fragment: str) -> None:
        """Allow errors containing `fragment` (Chromium logs every 4xx answer, e.g. an expected 422)."""
        self.expected.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(f in e for f in self.expected)]


@pytest.fixture
def page(browser):
    """A fresh browser context and page (no cache, no storage); fails the test on console errors."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = context.new_page()
    console = Console()
    pg.on("console", lambda m: m.type == "error" and console.errors.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    pg.console = console
    yield pg
    context.close()
    assert console.unexpected() == [], "the page logged errors"


def run_axe(pg) -> list[dict]:
    """axe-core (vendored, tests/web/vendor) on the current page: the serious and critical violations."""
    pg.add_script_tag(path=str(AXE_JS))
    result = pg.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def save_screenshot(target, name: str, **kwargs) -> None:
    """Refresh docs/screenshots/<name>.png (of a page or one element) when NFRECON_UPDATE_SCREENSHOTS=1; tests
    never write the repository otherwise."""
    if os.environ.get("NFRECON_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **kwargs)
