"""The HTTP API (FastAPI): `create_app(settings)` builds the app; routes live under /v1.

`create_app` is loaded on first use so that workers, which only need `api.settings`, never
import FastAPI (and `worker` <-> `api` imports stay acyclic).
"""

from api.settings import Settings, get_settings

__all__ = ["Settings", "create_app", "get_settings"]


def __getattr__(name: str):
    if name == "create_app":
        from api.app import create_app

        return create_app
    raise AttributeError(f"module 'api' has no attribute {name!r}")
