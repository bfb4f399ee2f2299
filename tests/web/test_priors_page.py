"""Priors on the web page, in headless Chromium against a real `nfrecon serve`: the priors list (upload, refusal,
delete) and the method form's prior select, which names one of the user's priors in an sdf job that then runs."""

from __future__ import annotations

import httpx
import pytest

from tests.api.priors_util import make_prior_file
from tests.service_fixtures import FINISHED, sphere_xyz, wait_for
from tests.web.conftest import run_axe, save_screenshot
from tests.web.test_page import fill_tiny_options, open_page, upload_with_picker

pytestmark = pytest.mark.slow

PRIOR_SELECT = "[data-path='overrides.prior.id']"


def test_priors_page_and_a_job_started_from_a_prior(page, served, tmp_path):
    prior = make_prior_file(tmp_path / "tiny.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64 + b"not a prior")
    before = {p["id"] for p in httpx.get(f"{served.api}/priors").json()["items"]}

    # the list: upload with a name, listed with its field and inner steps
    open_page(page, served, "/ui/#/priors")
    assert page.locator("nav a[aria-current='page']").inner_text() == "Priors"
    page.set_input_files("#prior-file", str(prior))
    page.fill("#prior-name", "spheres")
    page.click("#upload-prior")
    page.wait_for_selector("#priors-table tr[data-prior]")
    pid = page.locator("#priors-table tr[data-prior]").first.get_attribute("data-prior")
    stored = {p["id"]: p for p in httpx.get(f"{served.api}/priors").json()["items"]}
    assert set(stored) - before == {pid} and stored[pid]["name"] == "spheres"
    row = page.locator(f"#priors-table tr[data-prior='{pid}']").inner_text()
    assert "spheres" in row and "identity + mlp 2x32" in row and "uploaded" in row
    assert pid in page.locator("#prior-status").inner_text()
    # a file that is no prior: the API's reason on the page, nothing stored
    page.console.expect("422")
    page.set_input_files("#prior-file", str(garbage))
    page.click("#upload-prior")
    page.wait_for_selector("#prior-status .problem")
    assert "is not a prior file" in page.locator("#prior-status .problem").inner_text()
    assert len(httpx.get(f"{served.api}/priors").json()["items"]) == len(before) + 1
    assert run_axe(page) == []
    save_screenshot(page, "priors", full_page=True)

    # the method form: a select of the user's priors, for sdf jobs only; no server path field
    page.click("nav a:text-is('New job')")
    page.wait_for_selector(f"{PRIOR_SELECT} option[value='{pid}']", state="attached")
    options = page.locator(f"{PRIOR_SELECT} option").all_inner_texts()
    assert options[0].startswith("(none") and any(pid in o and "spheres" in o for o in options)
    assert page.locator("[data-path='overrides.prior.path']").count() == 0
    assert page.locator("[data-path='overrides.prior.inner_steps']").count() == 1
    page.select_option("[data-path='task']", '"image"')
    page.wait_for_function(f"!document.querySelector(\"{PRIOR_SELECT}\")")
    page.select_option("[data-path='task']", '"sdf"')
    page.wait_for_selector(f"{PRIOR_SELECT} option[value='{pid}']", state="attached")

    upload_with_picker(page, sphere_xyz(tmp_path / "ball.xyz", n=1000))
    page.select_option(PRIOR_SELECT, pid)
    fill_tiny_options(page)
    page.click("#submit-job")
    page.wait_for_url("**/ui/#/jobs/job_*")
    job_id = page.url.rsplit("/", 1)[-1]
    job = httpx.get(f"{served.api}/jobs/{job_id}").json()
    assert job["spec"]["overrides"]["prior"] == {"id": pid}  # only the id: the prior's own inner steps apply
    job = wait_for(lambda: (j := httpx.get(f"{served.api}/jobs/{job_id}").json())["status"] in FINISHED and j, 180,
                   interval=0.5, what="the job with a prior to finish")
    assert job["status"] == "succeeded", job["error"]
    assert job["config"]["prior"]["id"] == pid and job["metrics"]["prior"]["id"] == pid
    assert job["metrics"]["prior"]["inner_steps"] == stored[pid]["inner_steps"]
    page.wait_for_selector("#mesh-view canvas", timeout=60_000)

    # delete asks first; the prior is gone from the API and the list
    page.click("nav a:text-is('Priors')")
    page.wait_for_selector(f"#priors-table tr[data-prior='{pid}']")
    page.once("dialog", lambda d: d.accept())
    page.click(f"#priors-table button[data-delete='{pid}']")
    page.wait_for_selector(f"#priors-table tr[data-prior='{pid}']", state="detached")
    assert httpx.get(f"{served.api}/priors/{pid}").status_code == 404
    # the job made with it keeps its result (it had its own copy)
    assert httpx.get(f"{served.api}/jobs/{job_id}/artifacts/mesh.ply").status_code == 200
