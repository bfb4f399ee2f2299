"""`python -m bench.page` end to end: a real server, headless Chromium, a real job; figures in its report."""

from __future__ import annotations

import json

import pytest

from bench import page as page_bench
from bench.browser import chromium_path

pytestmark = pytest.mark.slow


def test_the_page_benchmark_times_loads_and_progress_of_a_real_job(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="the page benchmark needs Playwright: pip install -e '.[test]'")
    if chromium_path() is None:
        pytest.skip("no Chromium found (apt-get install -y chromium, or set NFRECON_CHROMIUM)")
    assert page_bench.main(["--loads", "2", "--steps", "200", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "page.json").read_text())
    loads = result["first_load_s"]
    assert loads["n"] == 2 and 0 < loads["min"] <= loads["median"] <= loads["max"]
    assert any(path.endswith("/v1/methods/sdf") for path, _ in loads["slowest_resources_ms"])  # the form's schema
    latency = result["progress_latency_ms"]
    assert latency["n"] >= 1 and latency["median"] >= 0
    assert "first load median" in (tmp_path / "page.md").read_text()
