"""/docs (Swagger UI) and /redoc (ReDoc) served with their assets from the service itself, so they work offline.

FastAPI's own pages load Swagger UI and ReDoc from cdn.jsdelivr.net (and the favicon from
fastapi.tiangolo.com), so they are blank on a machine without internet access. The PyPI package
`fastapi-offline` (MIT; an nfrecon dependency) ships those files: swagger-ui-bundle.js and
swagger-ui.css from the npm package swagger-ui-dist 5 (Apache-2.0), redoc.standalone.js from redoc 2
(MIT) and FastAPI's favicon.png. This module mounts that folder at `/docs-assets` and registers the two
pages (plus Swagger UI's OAuth2 redirect page) with URLs on the same host, honouring `root_path`
behind a proxy. The app must be built with `docs_url=None, redoc_url=None` so these routes replace
the CDN ones.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSET_FILES", "assets_dir", "install_offline_docs"]

ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path:
    """The folder with Swagger UI's and ReDoc's files (fastapi-offline's `static/`); raises if any is missing."""
    try:
        import fastapi_offline
    except ImportError as exc:
        raise RuntimeError("offline /docs and /redoc need the package fastapi-offline: pip install fastapi-offline "
                           "(an nfrecon dependency: pip install -e . installs it)") from exc
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    missing = [name for name in ASSET_FILES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline at {folder.parent} lacks {', '.join(missing)}: reinstall it "
                           "(pip install --force-reinstall 'fastapi-offline>=1.7,<2')")
    return folder


def install_offline_docs(app: FastAPI, *, docs_url: str | None = "/docs", redoc_url: str | None = "/redoc",
                         assets_url: str = "/docs-assets") -> None:
    """Serve Swagger UI at `docs_url` and ReDoc at `redoc_url` from files mounted at `assets_url`.

    Call it on an app created with `docs_url=None, redoc_url=None`; `app.openapi_url` must be set.
    """
    if app.openapi_url is None:
        raise ValueError("the app publishes no OpenAPI document (openapi_url=None): nothing to document")
    app.mount(assets_url, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    if docs_url is not None:

        @app.get(docs_url, include_in_schema=False)
        async def swagger_ui_html(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "").rstrip("/")
            return get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
                init_oauth=app.swagger_ui_init_oauth,
                swagger_js_url=f"{root}{assets_url}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{assets_url}/swagger-ui.css",
                swagger_favicon_url=f"{root}{assets_url}/favicon.png",
                # no badge from validator.swagger.io: the page makes no request to another host
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )

        if oauth2_redirect_url:

            @app.get(oauth2_redirect_url, include_in_schema=False)
            async def swagger_ui_redirect() -> HTMLResponse:
                return get_swagger_ui_oauth2_redirect_html()

    if redoc_url is not None:

        @app.get(redoc_url, include_in_schema=False)
        async def redoc_html(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "").rstrip("/")
            return get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{assets_url}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{assets_url}/favicon.png",
                with_google_fonts=False,
            )
