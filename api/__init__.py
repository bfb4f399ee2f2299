"""The HTTP API (FastAPI): `create_app(settings)` builds the app; routes under /v1 call the service core (service/)."""

from api.app import create_app

__all__ = ["create_app"]
