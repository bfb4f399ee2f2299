"""API logic and permission checks, called by the routes."""

from api.services import jobs, methods, uploads

__all__ = ["jobs", "methods", "uploads"]
