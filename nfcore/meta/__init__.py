"""Meta-learned priors (MetaSDF): learn an initialisation and inner learning rates from many shapes of one
kind, then fit a new shape of that kind in a few steps.

    from nfcore.meta import MetaTrainConfig, meta_train, save_prior, load_prior, adapt
    shapes = load_shapes(["parts/"])                       # or nfcore.meta.families
    result = meta_train(shapes, MetaTrainConfig(), device="cpu", callback=print, checkpoint_path="ckpt.pt")
    save_prior(result.prior, "prior.safetensors")
    field = adapt(load_prior("prior.safetensors"), points, normals)   # points in the cube [-1, 1]

Modules: config.py (MetaTrainConfig), data.py (shapes: a noisy cloud + ground-truth SDF samples),
functional.py (a NeuralField on given weights), inner.py (the inner SGD loop), metatrain.py (MAML /
Reptile), prior.py (the artifact), adapt.py (using a prior; `fit` with `MethodConfig.prior`),
families.py (generated shape families for tests and the benchmark).
"""

from nfcore.meta.adapt import adapt, config_with_prior, start_from_prior
from nfcore.meta.config import MetaTrainConfig
from nfcore.meta.data import MetaShape, load_shapes, shape_from_mesh
from nfcore.meta.metatrain import MetaTrainResult, meta_train, post_adaptation_loss
from nfcore.meta.prior import PRIOR_VERSION, Prior, load_prior, save_prior

__all__ = [
    "MetaTrainConfig", "MetaShape", "MetaTrainResult", "Prior", "PRIOR_VERSION",
    "meta_train", "post_adaptation_loss", "save_prior", "load_prior", "adapt", "load_shapes", "shape_from_mesh",
    "config_with_prior", "start_from_prior",
]
