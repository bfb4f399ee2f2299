"""The web page: static files (plain ES modules, vendored three.js) served by the API at /ui.

The page talks to the same /v1 API as every other client (same process, same port), so it needs no
routes of its own: this module only mounts `static/` and sends `/` to it. All its URLs are
relative, so it also works behind a proxy that serves the API under a prefix (`root_path`).
Vendored libraries and their versions: `static/vendor/VERSIONS`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "mount_web_page"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_web_page(app: FastAPI, *, url: str = "/ui") -> None:
    """Serve the page's files at `url`/ (index.html at `url`/) and redirect `/` there."""
    if not (STATIC_DIR / "index.html").is_file():
        # package data missing (a wheel built without it): fail at startup, not with 404s later
        raise RuntimeError(f"the web page's files are missing from {STATIC_DIR}: reinstall nfrecon")
    app.mount(url, StaticFiles(directory=STATIC_DIR, html=True), name="web")

    @app.get("/", include_in_schema=False)
    async def web_root(request: Request) -> RedirectResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{root}{url}/", status_code=307)
