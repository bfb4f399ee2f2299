"""/docs and /redoc load every script and stylesheet from the service itself (they work offline)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest


class _AssetLinks(HTMLParser):
    """The URLs a browser would fetch while rendering: <script src>, <link href>, <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img") and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def _asset_urls(html: str) -> list[str]:
    parser = _AssetLinks()
    parser.feed(html)
    return parser.urls


# Minimum sizes: the real bundles are hundreds of kB to MBs; an error page or a stub is far smaller.
MIN_BYTES = {".js": 100_000, ".css": 10_000, ".png": 500}


@pytest.mark.parametrize(("page", "needed"), [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
    ("/redoc", {"redoc.standalone.js"}),
])
def test_docs_pages_use_only_local_assets(client, page, needed):
    resp = client.get(page)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    urls = _asset_urls(html)
    assert {u.rsplit("/", 1)[-1] for u in urls} >= needed, urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = "." + parts.path.rsplit(".", 1)[-1]
        assert len(asset.content) >= MIN_BYTES.get(suffix, 1), (url, len(asset.content))
    # Nothing else in the page (inline script included) points a browser at another host,
    # e.g. Google Fonts, the CDN, or Swagger UI's online validator badge.
    assert not re.search(r"https?://(?!localhost|127\.0\.0\.1|testserver)", html), html
    assert "/openapi.json" in html


def test_asset_types_and_openapi_link(client):
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    css = client.get("/docs-assets/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/docs-assets/nope.js").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    # The docs routes are not part of the published API.
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc")) for p in paths)


def test_oauth2_redirect_page_is_served(client):
    resp = client.get("/docs/oauth2-redirect")
    assert resp.status_code == 200 and "<script" in resp.text
