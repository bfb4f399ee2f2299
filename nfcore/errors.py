"""Exceptions that nfcore raises on purpose."""


class InputError(ValueError):
    """Bad user input (file, point cloud, image, options); the message names the problem.

    The one documented exception type for bad input: the CLI prints it, the API turns it into a
    422 problem, the worker into a failed job with code `invalid_input`.
    """


class FitCanceled(Exception):
    """Training was stopped on request (a progress callback returned False or raised this)."""
