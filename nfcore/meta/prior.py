"""A prior: the artifact meta-training produces and a fit starts from.

One safetensors file: tensors `param/<name>` (the initial weights of a NeuralField) and `lr/<name>`
(the per-parameter inner learning rates, same shapes), and string metadata:
    format   "nfrecon-prior"
    version  "1"
    prior    JSON: the field (encoding and network configs), the inner loop the learning rates were
             learned with (steps, batch size, SDF loss weights, preconditioning) and `info` (how it was made)
    sha256   digest of the prior JSON and every tensor's name, shape, dtype and bytes
safetensors holds raw tensors and a JSON header only, so loading never runs pickled code. The
digest turns an edited file (a changed tensor or config) into a clear refusal instead of a
silently different prior; it is an integrity check, not a signature.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError

from nfcore.config import EncodingConfig, NetworkConfig, PreconditionConfig, SDFTaskConfig
from nfcore.errors import InputError
from nfcore.field import NeuralField

PRIOR_FORMAT = "nfrecon-prior"
PRIOR_VERSION = 1
_ENCODING = TypeAdapter(EncodingConfig)
_NETWORK = TypeAdapter(NetworkConfig)
_MAX_HEADER = 10_000_000  # bytes of safetensors header we are willing to parse


@dataclass
class Prior:
    """Initial weights and inner learning rates of a NeuralField SDF (3 -> 1), with the inner loop they go with.

    Attributes:
        encoding, network: the field's configs (`NeuralField(encoding, network, 3, 1, sdf=True)`).
        params: parameter name -> initial value (the field's `named_parameters()` names and shapes).
        lrs: parameter name -> per-entry inner learning rate (same shapes as `params`).
        inner_steps: SGD steps with `lrs` that meta-training took per shape (the adaptation default).
        batch_size: on-surface points per inner step (as many off-surface points are added).
        sdf: the SDF loss weights of the inner loop (the learning rates are scaled to them).
        precondition: stochastic preconditioning of the inner loop (`enabled` resolved to a bool).
        info: how the prior was made (algorithm, meta steps, data); free-form, JSON-ready.
    """

    encoding: Any
    network: Any
    params: dict[str, torch.Tensor]
    lrs: dict[str, torch.Tensor]
    inner_steps: int
    batch_size: int
    sdf: SDFTaskConfig = field(default_factory=SDFTaskConfig)
    precondition: PreconditionConfig = field(default_factory=lambda: PreconditionConfig(enabled=False))
    info: dict = field(default_factory=dict)

    def build_field(self, device: torch.device | str = "cpu") -> NeuralField:
        """A NeuralField on `device` holding the prior's initial weights."""
        net = NeuralField(self.encoding, self.network, 3, 1, sdf=True, device=device,
                          generator=torch.Generator().manual_seed(0))  # every weight is overwritten below
        check_field(self, net)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(self.params[name].to(device=p.device, dtype=p.dtype))
        return net

    def lrs_on(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The inner learning rates on `device`."""
        return {name: lr.to(device) for name, lr in self.lrs.items()}

    def header(self) -> dict:
        """The JSON metadata (everything but the tensors)."""
        return {
            "encoding": self.encoding.model_dump(mode="json"),
            "network": self.network.model_dump(mode="json"),
            "inner_steps": self.inner_steps,
            "batch_size": self.batch_size,
            "sdf": self.sdf.model_dump(mode="json"),
            "precondition": self.precondition.model_dump(mode="json"),
            "info": self.info,
        }


def check_field(prior: Prior, net: torch.nn.Module) -> None:
    """InputError unless `net`'s parameters have exactly the prior's names and shapes."""
    expected = {name: tuple(p.shape) for name, p in net.named_parameters()}
    for kind, tensors in (("weights", prior.params), ("learning rates", prior.lrs)):
        got = {name: tuple(t.shape) for name, t in tensors.items()}
        if got != expected:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            wrong = sorted(n for n in set(got) & set(expected) if got[n] != expected[n])
            detail = "; ".join(
                part for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(extra)}" if extra else "",
                    ", ".join(f"{n} is {got[n]} but the field needs {expected[n]}" for n in wrong),
                ) if part
            )
            raise InputError(f"prior {kind} do not fit the field {prior.encoding.type}+{prior.network.type}: {detail}")


def _digest(header_json: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(header_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_prior(prior: Prior, path: str | Path) -> Path:
    """Write `prior` to `path` (safetensors, atomically: a crash never leaves a half-written prior)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"param/{n}": t.detach().to("cpu", torch.float32).contiguous() for n, t in prior.params.items()}
    tensors.update({f"lr/{n}": t.detach().to("cpu", torch.float32).contiguous() for n, t in prior.lrs.items()})
    header = json.dumps(prior.header(), sort_keys=True)
    metadata = {"format": PRIOR_FORMAT, "version": str(PRIOR_VERSION), "prior": header,
                "sha256": _digest(header, tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def _read_header(path: Path) -> None:
    """InputError unless the file starts like a safetensors file (length-prefixed JSON header)."""
    with path.open("rb") as f:
        head = f.read(9)
        if len(head) < 9:
            raise InputError(f"{path.name} is not a prior file: too short")
        n = int.from_bytes(head[:8], "little")
        if not 2 <= n <= _MAX_HEADER or head[8:9] != b"{":
            raise InputError(f"{path.name} is not a prior file (expected a safetensors file written by "
                             "`nfrecon meta-train`; pickled torch files are never loaded)")


def load_prior(path: str | Path) -> Prior:
    """Read and validate a prior.

    Raises:
        InputError: the file is missing, not a safetensors prior (e.g. a pickle), of another
            version, edited after it was written (digest mismatch), holds non-float or non-finite
            tensors, or its tensors do not fit the field its config describes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"prior file not found: {path}")
    _read_header(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path.name} is not a readable prior file: {exc}") from None
    if metadata.get("format") != PRIOR_FORMAT:
        raise InputError(f"{path.name} is a safetensors file but not an nfrecon prior (format {metadata.get('format')!r})")
    version = metadata.get("version")
    if version != str(PRIOR_VERSION):
        raise InputError(f"{path.name} is a prior of version {version!r}; this nfrecon reads version {PRIOR_VERSION}")
    header_json = metadata.get("prior", "")
    if metadata.get("sha256") != _digest(header_json, tensors):
        raise InputError(f"{path.name} was modified after it was written (its digest does not match its contents)")
    try:
        header = json.loads(header_json)
        prior = Prior(
            encoding=_ENCODING.validate_python(header["encoding"]),
            network=_NETWORK.validate_python(header["network"]),
            params={k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("param/")},
            lrs={k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("lr/")},
            inner_steps=int(header["inner_steps"]),
            batch_size=int(header["batch_size"]),
            sdf=SDFTaskConfig.model_validate(header["sdf"]),
            precondition=PreconditionConfig.model_validate(header["precondition"]),
            info=dict(header.get("info") or {}),
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:  # ValidationError names the field
        raise InputError(f"{path.name} has an invalid prior header: {exc}") from None
    unknown = sorted(k for k in tensors if not k.startswith(("param/", "lr/")))
    if unknown:
        raise InputError(f"{path.name} holds tensors that are no part of a prior: {', '.join(unknown)}")
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            raise InputError(f"{path.name}: tensor {name} is {t.dtype}, a prior holds float32 only")
        if not torch.isfinite(t).all():
            raise InputError(f"{path.name}: tensor {name} has NaN or infinite values")
    if prior.inner_steps < 0 or prior.batch_size < 1:
        raise InputError(f"{path.name}: inner_steps must be >= 0 and batch_size >= 1")
    check_field(prior, NeuralField(prior.encoding, prior.network, 3, 1, sdf=True, device="meta"))
    return prior
