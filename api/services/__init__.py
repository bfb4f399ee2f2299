"""API-only logic called by the routes: upload streaming and validation, the method catalogue.

The job lifecycle lives below the API, in `service.jobs`, because the worker's side shares it.
"""

from api.services import methods, uploads

__all__ = ["methods", "uploads"]
