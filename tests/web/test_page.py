"""The web page in headless Chromium against a real `nfrecon serve`: upload, method form, live progress,
3D result, downloads, errors, API keys and accessibility (the page-load and progress-latency targets are
measured by `python -m bench.page`)."""

from __future__ import annotations

import io
import statistics
import time
import zipfile

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.service_fixtures import TINY_OPTIONS, sphere_xyz, wait_for
from tests.web.conftest import run_axe, save_screenshot

pytestmark = pytest.mark.slow

BACKGROUND = (0xF4, 0xF6, 0xF8)  # the 3D view's clear colour (api/web/static/js/viewer.js)


def open_page(pg, served, path: str = "/") -> float:
    """Load the page (`/` redirects to /ui/); returns seconds from navigation start until it is usable."""
    pg.goto(served.base + path)
    pg.wait_for_function("window.nfrecon && window.nfrecon.ready")
    return pg.evaluate("performance.now()") / 1000


def drawn_fraction(png: bytes) -> float:
    """Fraction of pixels of a screenshot that differ from the view's background."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return float((np.abs(img - np.array(BACKGROUND)).sum(axis=2) > 24).mean())


def fill_tiny_options(pg) -> None:
    pg.fill("[data-path='overrides.train.steps']", str(TINY_OPTIONS["train"]["steps"]))
    pg.fill("[data-path='overrides.train.batch_size']", str(TINY_OPTIONS["train"]["batch_size"]))
    pg.fill("[data-path='overrides.extraction.resolution']", str(TINY_OPTIONS["extraction"]["resolution"]))


def upload_with_picker(pg, path) -> None:
    pg.set_input_files("#file-input", str(path))
    pg.wait_for_selector("#report table")


def test_first_load_is_fast_and_the_form_comes_from_the_schema(page, served):
    # A fresh server answers its first /v1/methods request only after importing torch (seconds, once per
    # process): that is the API's start-up, not the page's load, so it is timed apart and done first.
    t0 = time.monotonic()
    httpx.get(f"{served.api}/methods", timeout=60).raise_for_status()
    print(f"\nserver warm-up (first GET /v1/methods after start): {(time.monotonic() - t0) * 1000:.0f} ms")
    seconds = open_page(page, served)  # a fresh browser context: nothing cached
    timings = page.evaluate("performance.getEntriesByType('resource').map(e => [new URL(e.name).pathname, "
                            "Math.round(e.duration)])")
    print(f"first page load (fresh context, navigation start -> form rendered): {seconds * 1000:.0f} ms; {timings}")
    # The 1 s target is a median measured by `python -m bench.page`; a single load on a shared CI machine varies
    # too much to time here (1.38 s once), so this bound only catches a page that has become unusably slow.
    assert seconds < 5.0, f"first page load took {seconds:.2f} s: {timings}"
    assert page.url.endswith("/ui/")
    # nothing from another host: every request of the page went to the service
    hosts = page.evaluate("[...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).host))]")
    assert hosts == [served.base.removeprefix("http://")] or hosts == []
    # three.js is loaded only when a 3D view is shown
    assert not page.evaluate("performance.getEntriesByType('resource').some(e => e.name.includes('three'))")
    # every top-level spec property and the override sections the issue names are in the form
    schema = httpx.get(f"{served.api}/methods/sdf").json()["spec_schema"]
    for name in schema["properties"]:
        if name != "overrides":
            assert page.locator(f"[data-path='{name}']").count() == 1, name
    for path in ("overrides.precondition.enabled", "overrides.precondition.initial_scale", "overrides.precondition.start",
                 "overrides.precondition.end", "overrides.encoding.type", "overrides.network.type",
                 "overrides.optimizer.type", "overrides.train.steps", "overrides.extraction.resolution"):
        assert page.locator(f"[data-path='{path}']").count() == 1, path
    # defaults shown: the balanced preset's steps on cpu, then the fast preset's after switching
    presets = httpx.get(f"{served.api}/methods/sdf").json()["preset_options"]["cpu"]
    steps = page.locator("[data-path='overrides.train.steps']")
    assert steps.get_attribute("placeholder") == str(presets["balanced"]["train"]["steps"])
    page.select_option("[data-path='preset']", '"fast"')
    assert steps.get_attribute("placeholder") == str(presets["fast"]["train"]["steps"])
    # a union section shows the chosen variant's fields
    page.select_option("[data-path='overrides.encoding.type']", "fourier")
    assert page.locator("[data-path='overrides.encoding.n_frequencies']").count() + \
        page.locator("[data-path^='overrides.encoding.']").count() > 1
    assert page.locator("[data-path='overrides.encoding.log2_hashmap_size']").count() == 0


def test_upload_job_progress_result_and_downloads(page, served, tmp_path):
    cloud = sphere_xyz(tmp_path / "ball.xyz")
    jobs_before = len(httpx.get(f"{served.api}/jobs").json()["items"])
    open_page(page, served)
    upload_with_picker(page, cloud)
    # the validation report, before any job
    report = page.locator("#report").inner_text()
    assert "2,000" in report and "pointcloud" in report and "bounding box" in report
    assert page.locator("#upload-progress").evaluate("p => p.value") == 1
    assert len(httpx.get(f"{served.api}/jobs").json()["items"]) == jobs_before
    # the 3D preview of the uploaded points draws
    page.wait_for_function("document.querySelector('#preview').dataset.frames > 0")
    assert drawn_fraction(page.locator("#preview canvas").screenshot()) > 0.01
    assert run_axe(page) == []
    save_screenshot(page, "upload-and-method", full_page=True)

    fill_tiny_options(page)
    page.fill("#job-name", "web sphere")
    page.click("#submit-job")
    page.wait_for_url("**/ui/#/jobs/job_*")
    job_id = page.url.rsplit("/", 1)[-1]
    job = httpx.get(f"{served.api}/jobs/{job_id}").json()
    assert job["spec"]["overrides"] == TINY_OPTIONS  # only what the user set, as a partial config
    assert job["name"] == "web sphere"

    # live progress over the event stream: phase and step in the text, points on both plots
    page.wait_for_function("document.querySelector('#progress-text').textContent.includes('step')", timeout=120_000)
    page.wait_for_function("document.querySelectorAll('#loss-plot path').length >= 2", timeout=120_000)
    # a data mark on the noise plot: a line once there are two points, a marker for each while few
    page.wait_for_function("document.querySelectorAll('#noise-plot circle, #noise-plot path[d*=\"L\"]').length > 0",
                           timeout=120_000)
    page.wait_for_selector("#mesh-view canvas", timeout=180_000)
    page.wait_for_function("window.nfrecon.meshLoad && document.querySelector('#mesh-view').dataset.frames > 0")
    stats = page.evaluate("({lat: window.nfrecon.progressLatencies, mesh: window.nfrecon.meshLoad})")
    lat = stats["lat"]
    print(f"\nprogress latency (worker's update -> page), {len(lat)} events: median {statistics.median(lat):.0f} ms, "
          f"max {max(lat):.0f} ms; mesh {stats['mesh']}")
    # The 1 s target is measured by `python -m bench.page`; here a median over 1 s means the stream is broken
    # (e.g. the page polling instead), and one late event on a busy 2-core machine is not a failure.
    assert lat and statistics.median(lat) < 1000 and max(lat) < 5000, f"progress events reached the page after {lat} ms"
    assert "succeeded" in page.locator(".job-head").inner_text()
    assert page.locator("#log").inner_text().strip() != ""

    # the mesh is drawn; shading, wireframe and the input points change the picture
    view = page.locator("#mesh-view canvas")
    smooth = view.screenshot()
    assert drawn_fraction(smooth) > 0.02
    save_screenshot(page, "job-result", full_page=True)

    def redraw(action):
        before = int(page.locator("#mesh-view").get_attribute("data-frames"))
        action()
        page.wait_for_function(f"document.querySelector('#mesh-view').dataset.frames > {before}")
        return view.screenshot()

    wire = redraw(lambda: page.check("#wire"))
    assert wire != smooth and drawn_fraction(wire) < drawn_fraction(smooth)
    redraw(lambda: page.uncheck("#wire"))
    flat = redraw(lambda: page.check("#flat"))
    assert flat != smooth
    with_points = redraw(lambda: page.check("#show-points"))
    assert with_points != flat
    # orbit: a drag turns the camera
    box = view.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    turned = redraw(lambda: (page.mouse.move(cx, cy), page.mouse.down(), page.mouse.move(cx + 120, cy + 40, steps=5),
                             page.mouse.up()))
    assert turned != with_points

    # metrics table and downloads of every artifact and the zip
    assert "fit_residuals.mean_abs_sdf" in page.locator("#metrics").inner_text()
    names = [a["name"] for a in httpx.get(f"{served.api}/jobs/{job_id}/artifacts").json()["items"]]
    links = page.locator("#downloads a").all_inner_texts()
    assert sorted(links) == sorted([*names, "all.zip"])
    with page.expect_download() as dl:
        page.click("#downloads a:text-is('mesh.ply')")
    mesh = trimesh.load(dl.value.path(), file_type="ply")
    assert len(mesh.faces) > 100
    with page.expect_download() as dl:
        page.click("#downloads a:text-is('all.zip')")
    assert "mesh.ply" in zipfile.ZipFile(dl.value.path()).namelist()
    assert run_axe(page) == []

    # the jobs list shows it with status, progress and age
    page.click("nav a:text-is('Jobs')")
    row = page.locator(f"tr[data-job='{job_id}']")
    row.wait_for()
    text = row.inner_text()
    assert "succeeded" in text and "100 %" in text and "ago" in text
    assert run_axe(page) == []
    save_screenshot(page, "jobs-list")

    # opened again after it ended, the job still shows its training curve (kept in its progress record)
    row.locator("a").first.click()
    page.wait_for_url(f"**/ui/#/jobs/{job_id}")
    page.wait_for_function("document.querySelectorAll('#loss-plot path').length >= 2")
    assert "no training curve" not in page.locator("#loss-plot").inner_text()


def test_drag_and_drop_upload(page, served, tmp_path):
    data = sphere_xyz(tmp_path / "dropped.xyz", n=500).read_text()
    open_page(page, served)
    page.evaluate("""(text) => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], 'dropped.xyz'));
        document.querySelector('#drop-zone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", data)
    page.wait_for_selector("#report table")
    assert "500" in page.locator("#report").inner_text()
    assert "dropped.xyz" in page.locator("#previous-upload").inner_text()


def test_bad_option_shows_the_apis_error(page, served, tmp_path):
    cloud = sphere_xyz(tmp_path / "ball.xyz", n=300)
    open_page(page, served)
    upload_with_picker(page, cloud)
    before = len(httpx.get(f"{served.api}/jobs").json()["items"])
    page.console.expect("422")  # Chromium logs the refused request; the page shows the API's message
    page.fill("[data-path='overrides.train.steps']", "-5")
    page.select_option("[data-path='overrides.encoding.type']", "hashgrid")
    page.fill("[data-path='overrides.encoding.n_levels']", "99")
    page.click("#submit-job")
    summary = page.locator("#form-errors .problem")
    summary.wait_for()
    assert "invalid method overrides" in summary.inner_text()
    steps_field = page.locator("[data-path='overrides.train.steps']")
    assert steps_field.get_attribute("aria-invalid") == "true"
    # the API's own messages, at their fields (the hash grid's through the union tag in `loc`)
    assert page.locator(".field:has([data-path='overrides.train.steps']) .field-error").inner_text() == \
        "Input should be greater than or equal to 1"
    assert page.locator(".field:has([data-path='overrides.encoding.n_levels']) .field-error").inner_text() == \
        "Input should be less than or equal to 32"
    assert len(httpx.get(f"{served.api}/jobs").json()["items"]) == before  # no job was created
    assert run_axe(page) == []
    save_screenshot(page, "form-error", full_page=True)


def test_api_keys(browser, served_with_keys, tmp_path):
    """A wrong key sees nothing; each key sees only its own uploads and jobs, and downloads with its key."""
    api = served_with_keys.api
    alice = {"Authorization": "Bearer alice-key"}
    cloud = sphere_xyz(tmp_path / "ball.xyz")
    with httpx.Client(base_url=api, timeout=30) as c:
        up = c.post("/uploads", params={"filename": "ball.xyz"}, content=cloud.read_bytes(), headers=alice).json()
        job_id = c.post("/jobs", json={"inputs": [up["id"]], "spec": {"task": "sdf", "preset": "fast",
                                                                      "overrides": TINY_OPTIONS}},
                        headers=alice).json()["id"]
    context = browser.new_context(accept_downloads=True)
    pg = context.new_page()
    errors = []
    # Chromium logs each refused request (401 for a wrong key, 404 for another key's job): those are expected
    pg.on("console", lambda m: m.type == "error" and not ("401" in m.text or "404" in m.text) and errors.append(m.text))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(served_with_keys.base + "/ui/#/jobs")
        pg.wait_for_selector("#api-key")
        assert pg.locator("#jobs-table").count() == 0
        assert run_axe(pg) == []
        save_screenshot(pg, "api-key")
        pg.fill("#api-key", "mallory-key")
        pg.click("button:text-is('Use this key')")
        pg.wait_for_selector(".key-form .problem")
        assert "invalid API key" in pg.locator(".key-form .problem").inner_text()
        assert pg.locator("#jobs-table").count() == 0 and job_id not in pg.content()

        # alice sees her job, follows it and downloads its mesh with her key
        pg.fill("#api-key", "alice-key")
        pg.click("button:text-is('Use this key')")
        pg.wait_for_selector(f"tr[data-job='{job_id}']")
        pg.goto(served_with_keys.base + f"/ui/#/jobs/{job_id}")
        pg.wait_for_selector("#downloads a:text-is('mesh.ply')", timeout=180_000)
        with pg.expect_download() as dl:
            pg.click("#downloads a:text-is('mesh.ply')")
        assert len(trimesh.load(dl.value.path(), file_type="ply").faces) > 100
        # an upload alice makes in this browser...
        pg.goto(served_with_keys.base + "/ui/#/new")
        pg.wait_for_function("window.nfrecon && window.nfrecon.ready")
        pg.set_input_files("#file-input", str(cloud))
        pg.wait_for_selector("#report table")
        mine = pg.evaluate("document.querySelector('#previous-upload').value")

        # ...bob, in the same browser, does not see, nor her job
        pg.click("button:text-is('change key')")
        pg.fill("#api-key", "bob-key")
        pg.click("button:text-is('Use this key')")
        pg.wait_for_selector("#drop-zone")
        time.sleep(1.0)  # the list of earlier uploads fills in from the API
        assert mine not in pg.locator("#previous-upload").inner_html()
        pg.goto(served_with_keys.base + "/ui/#/jobs")
        pg.wait_for_selector("#jobs-table")
        wait_for(lambda: "No jobs yet" in pg.locator("#jobs-table").inner_text(), 10, what="bob's empty list")
        assert job_id not in pg.content()
        pg.goto(served_with_keys.base + f"/ui/#/jobs/{job_id}")  # her job's address: the API answers 404
        pg.wait_for_selector("main .problem")
        assert "404" in pg.locator("main .problem").inner_text() and "mesh.ply" not in pg.content()
    finally:
        context.close()
    assert errors == []


def test_a_million_triangles_load_from_glb_and_stay_interactive(page, served, tmp_path):
    """A real job whose marching cubes (resolution 416 on a sphere) gives over 1M triangles, asked for as glb."""
    cloud = sphere_xyz(tmp_path / "ball.xyz")
    with httpx.Client(base_url=served.api, timeout=30) as c:
        up = c.post("/uploads", params={"filename": "ball.xyz"}, content=cloud.read_bytes()).json()
        overrides = {"train": TINY_OPTIONS["train"], "extraction": {"resolution": 416, "formats": ["glb", "ply"]}}
        job_id = c.post("/jobs", json={"inputs": [up["id"]], "name": "million",
                                       "spec": {"task": "sdf", "preset": "fast", "overrides": overrides}}).json()["id"]
        job = wait_for(lambda: (j := c.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                       600, interval=1.0, what="the 1M-triangle job")
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["n_faces"] >= 1_000_000
    t0 = time.monotonic()
    open_page(page, served, f"/ui/#/jobs/{job_id}")
    page.wait_for_function("window.nfrecon.meshLoad && window.nfrecon.viewer.fullFrameMs !== null", timeout=120_000)
    wall = time.monotonic() - t0
    load = page.evaluate("window.nfrecon.meshLoad")
    assert load["name"] == "mesh.glb" and load["triangles"] == job["metrics"]["n_faces"]
    view = page.evaluate("(() => { const v = window.nfrecon.viewer; return {full: v.fullFrameMs, lod: v.lod, "
                         "proxy: v.proxy && v.proxy.geometry.index.count / 3}; })()")

    def frame_ms(moving: bool) -> float:
        """Median time of a frame, GPU work included (a one-pixel read waits for it)."""
        return page.evaluate("""(moving) => { const v = window.nfrecon.viewer; const gl = v.renderer.getContext();
            v.setMoving(moving); const px = new Uint8Array(4); const ts = [];
            for (let i = 0; i < 5; i++) { const t = performance.now(); v.renderer.render(v.scene, v.camera);
              gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); ts.push(performance.now() - t); }
            v.setMoving(false); return ts.sort((a, b) => a - b)[2]; }""", moving)

    still, moving = frame_ms(False), frame_ms(True)
    print(f"\n1M-triangle mesh: {load['triangles']:,} triangles from {load['name']}: fetched, parsed and set up in "
          f"{load['seconds']:.2f} s (page opened to first frame: {wall:.2f} s); full frame {view['full']:.0f} ms "
          f"(first), {still:.0f} ms (median); while moving ({view['proxy']:,} triangle copy: {view['lod']}) "
          f"{moving:.0f} ms per frame")
    assert load["seconds"] < 10
    # interactive: a frame while the camera moves takes under 0.25 s even on software WebGL
    assert moving < 250, f"{moving:.0f} ms per frame while moving"
    # a drag turns the view (the coarse copy while moving, the full mesh again once the camera stops)
    canvas = page.locator("#mesh-view canvas")
    canvas.scroll_into_view_if_needed()
    before = canvas.screenshot()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 150, cy + 30, steps=10)
    page.mouse.up()
    page.wait_for_function("window.nfrecon.viewer.mesh.visible", timeout=30_000)
    frames = int(page.locator("#mesh-view").get_attribute("data-frames"))
    page.wait_for_function(f"document.querySelector('#mesh-view').dataset.frames > {frames - 1}")
    after = canvas.screenshot()
    assert after != before and drawn_fraction(after) > 0.02
    save_screenshot(page.locator("#result"), "million-triangles")


def test_image_job_shows_input_fitted_slider_and_psnr_curve(page, served, tmp_path):
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "gradient.png")
    open_page(page, served)
    upload_with_picker(page, tmp_path / "gradient.png")
    assert "image" in page.locator("#report").inner_text()
    page.wait_for_selector("#preview img")
    # the task follows the input's kind: the form is the image task's
    page.wait_for_function("document.querySelector(\"[data-path='task']\").value === '\"image\"'")
    page.fill("[data-path='overrides.train.steps']", "30")
    page.click("#submit-job")
    page.wait_for_url("**/ui/#/jobs/job_*")
    page.wait_for_selector("#psnr-plot path", timeout=180_000)
    images = page.locator(".compare img")
    assert images.count() == 2
    wait_for(lambda: all(page.evaluate("[...document.querySelectorAll('.compare img')].map(i => i.naturalWidth)")),
             10, what="both images decoded")
    assert page.evaluate("[...document.querySelectorAll('.compare img')].map(i => i.naturalWidth)") == [64, 64]
    page.locator("#compare").fill("20")
    assert "20%" in page.locator(".compare img.top").get_attribute("style")
    assert "fitted.png" in page.locator("#downloads").inner_text()
    assert run_axe(page) == []
    save_screenshot(page, "image-job", full_page=True)


def test_cancel_retry_and_delete_buttons(page, served, tmp_path):
    cloud = sphere_xyz(tmp_path / "ball.xyz", n=500)
    with httpx.Client(base_url=served.api, timeout=30) as c:
        up = c.post("/uploads", params={"filename": "ball.xyz"}, content=cloud.read_bytes()).json()
        long_job = {"train": {"steps": 100_000, "batch_size": 512}, "extraction": {"resolution": 32}}
        job_id = c.post("/jobs", json={"inputs": [up["id"]], "name": "to cancel",
                                       "spec": {"task": "sdf", "preset": "fast", "overrides": long_job}}).json()["id"]
    open_page(page, served, f"/ui/#/jobs/{job_id}")
    page.wait_for_function("document.querySelector('#progress-text').textContent.includes('step')", timeout=120_000)
    page.click("#cancel")
    page.wait_for_selector(".job-head .s-canceled", timeout=60_000)
    assert httpx.get(f"{served.api}/jobs/{job_id}").json()["status"] == "canceled"
    # retry: a new job with the same spec, and the page follows it
    page.click("#retry")
    page.wait_for_url(lambda url: "#/jobs/job_" in url and not url.endswith(job_id))
    retried = page.url.rsplit("/", 1)[-1]
    again = httpx.get(f"{served.api}/jobs/{retried}").json()
    assert again["retry_of"] == job_id and again["spec"]["overrides"] == long_job
    page.wait_for_selector("#cancel")
    # delete asks first; the job is gone from the API and the page goes back to the list
    page.once("dialog", lambda d: d.accept())
    page.click("#delete")
    page.wait_for_url("**/ui/#/jobs")
    assert httpx.get(f"{served.api}/jobs/{retried}").status_code == 404
