"""nfcore: neural fields for surface reconstruction, usable on its own (no web imports).

Public surface: configuration (`MethodConfig`, `resolve_config`), the entry point `fit`, and the
exceptions `InputError`, `FitCanceled`. Components live in the subpackages (`nfcore.io`,
`nfcore.encodings`, `nfcore.networks`, `nfcore.mesh`, `nfcore.metrics`, ...).
"""

from nfcore.config import MethodConfig, load_config
from nfcore.errors import FitCanceled, InputError

__all__ = ["MethodConfig", "load_config", "InputError", "FitCanceled"]
__version__ = "0.1.0"
