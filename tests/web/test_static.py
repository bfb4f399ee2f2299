"""The page's files as the API serves them (no browser needed): `/` leads to the page, and every module the
page imports, followed through the import map and relative imports, is served by the service itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.web import STATIC_DIR
from service.settings import Settings
from tests.service_fixtures import embedded_broker, unique_prefix  # noqa: F401 (fixture)

# static `import ... from "x"` / `export ... from "x"` at the start of a statement, and dynamic `import("x")`
# (comments are not statements, so a URL in a comment is not taken for an import)
IMPORT = re.compile(r"""(?:^[ \t]*(?:import|export)\b[^'";]*?\bfrom\s*|^[ \t]*import\s*|\bimport\(\s*)["']([^"']+)["']""",
                    re.M)


@pytest.fixture
def client(tmp_path, embedded_broker):  # noqa: F811
    settings = Settings(data_dir=tmp_path / "data", broker_url=embedded_broker, queue_prefix=unique_prefix(),
                        reaper_enabled=False, republish_on_startup=False)
    with TestClient(create_app(settings)) as c:
        yield c


def test_root_redirects_to_the_page(client):
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in page.text
    # the page is not an API operation
    assert not any(p.startswith("/ui") for p in client.get("/openapi.json").json()["paths"])


def test_every_module_the_page_imports_is_served_locally(client):
    html = client.get("/ui/").text
    import_map = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["imports"]
    base = "http://testserver/ui/"
    todo = [urljoin(base, "js/app.js"), urljoin(base, "css/app.css")]
    seen: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        r = client.get(urlsplit(url).path)
        assert r.status_code == 200, url
        if not url.endswith(".js"):
            continue
        for spec in IMPORT.findall(r.text):
            if spec.startswith((".", "/")):
                todo.append(urljoin(url, spec))
                continue
            # a bare specifier must be mapped (to a vendored file), never fetched from elsewhere
            target = import_map.get(spec) or next((v + spec[len(k):] for k, v in import_map.items()
                                                   if k.endswith("/") and spec.startswith(k)), None)
            assert target is not None, f"{url} imports {spec!r}, which the import map does not name"
            todo.append(urljoin(base, target))
    assert {u.rsplit("/", 1)[-1] for u in seen} >= {"app.js", "viewer.js", "three.module.js", "three.core.js",
                                                    "OrbitControls.js", "GLTFLoader.js", "PLYLoader.js"}
    assert all(urlsplit(u).netloc == "testserver" for u in seen)


def test_vendored_files_have_their_licence_and_version():
    vendor = STATIC_DIR / "vendor"
    versions = (vendor / "VERSIONS").read_text()
    for folder in (p for p in vendor.iterdir() if p.is_dir()):
        assert (folder / "LICENSE").is_file(), folder
        assert re.search(rf"^{folder.name} \d+\.\d+\.\d+ ", versions, re.M), f"{folder.name} not in VERSIONS"
    axe = Path(__file__).resolve().parent / "vendor"
    assert (axe / "axe-core" / "LICENSE").is_file() and "axe-core 4." in (axe / "VERSIONS").read_text()
