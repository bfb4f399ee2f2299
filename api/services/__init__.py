"""API-only logic called by the routes: upload and prior streaming and validation, the method catalogue.

The job lifecycle lives below the API, in `service.jobs`, because the worker's side shares it.
"""

from api.services import methods, priors, uploads

__all__ = ["methods", "priors", "uploads"]
