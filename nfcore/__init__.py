"""nfcore: neural fields for surface reconstruction, usable on its own (no web imports).

Public surface here: the method spec and its resolution (`MethodSpec`, `resolve`), the full
configuration (`MethodConfig`, `load_config`) and the exceptions (`InputError`, `FitCanceled`).
The entry point that trains is `nfcore.fit.fit` (import it from there: this package's namespace
stays free of torch, so the service's worker parent can read the vocabularies without it).
Components live in the subpackages (`nfcore.io`, `nfcore.encodings`, `nfcore.networks`,
`nfcore.tasks`, `nfcore.mesh`, `nfcore.metrics`, ...); the names of tasks, presets, input kinds
and formats in `nfcore.vocab`.
"""

from nfcore.config import MethodConfig, load_config
from nfcore.errors import FitCanceled, InputError
from nfcore.spec import MethodSpec, resolve

__all__ = ["MethodConfig", "MethodSpec", "load_config", "resolve", "InputError", "FitCanceled"]
__version__ = "0.1.0"
