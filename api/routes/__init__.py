"""HTTP routes (thin: parse, call a service, shape the response)."""

from api.routes import artifacts, jobs, methods, system, uploads

__all__ = ["artifacts", "jobs", "methods", "system", "uploads"]
