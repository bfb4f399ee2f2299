"""`MethodSpec`: what a user asks for, and `resolve()`: the full `MethodConfig` it stands for on a device.

A spec is small and device-free: a task, a preset and overrides (a partial `MethodConfig`). The API
stores it exactly as submitted, the queue carries it unchanged, and the worker resolves it for the
device it runs on, because presets differ per device (a GPU trains with far bigger batches). A
retry re-submits the stored spec, so it runs the same method again wherever it lands.

    spec = MethodSpec(task="sdf", preset="fast", overrides={"train": {"steps": 500}})
    spec = MethodSpec(task="sdf", method="kernel")      # the training-free kernel solve
    config = resolve(spec, "cpu")        # MethodConfig; raises pydantic.ValidationError naming a bad field
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_serializer, model_validator

from nfcore.config import MethodConfig
from nfcore.presets import merge, preset_overrides
from nfcore.vocab import DEVICE_KINDS, MethodName, PresetName, TaskName, check_method


class MethodSpec(BaseModel):
    """A method as the user states it: task, preset, and overrides merged on top of the preset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName = "sdf"
    """What to fit: an SDF from a point cloud or mesh, an image, or occupancy from a closed mesh."""
    method: MethodName = "neural"
    """How the field is obtained: `neural` (trained) or `kernel` (training-free kernel solve; sdf only)."""
    preset: PresetName = "balanced"
    """Named settings per task and device (`fast`, `balanced`, `quality`)."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """A partial MethodConfig deep-merged onto the preset, e.g. {"train": {"steps": 3000}}; a section
    naming another `type` (encoding, network, optimizer) replaces the preset's section."""

    @model_serializer(mode="wrap")
    def _as_stated(self, handler):
        # A spec is stored and shown as submitted: one that never named a method (every spec written
        # before methods existed) keeps having no `method` key; an explicit one is kept.
        data = handler(self)
        if "method" not in self.model_fields_set and self.method == "neural" and isinstance(data, dict):
            data.pop("method", None)
        return data

    @field_validator("method")
    @classmethod
    def _method_of_task(cls, method: str, info: ValidationInfo) -> str:
        return check_method(info.data.get("task"), method)

    @model_validator(mode="after")
    def _consistent(self) -> MethodSpec:
        task = self.overrides.get("task")
        if task is not None and task != self.task:
            raise ValueError(f"overrides.task ({task!r}) contradicts task {self.task!r}; leave it out")
        method = self.overrides.get("method")
        if method is not None and method != self.method:
            raise ValueError(f"overrides.method ({method!r}) contradicts method {self.method!r}; leave it out")
        device = self.overrides.get("device", "auto")
        if device not in ("auto", *DEVICE_KINDS):
            raise ValueError(f"overrides.device must be auto, cpu or cuda, got {device!r}")
        return self

    @property
    def requested_device(self) -> str:
        """"cpu", "cuda", or "auto" (the default: wherever the job runs)."""
        return self.overrides.get("device", "auto")

    def devices(self) -> tuple[str, ...]:
        """The devices this spec may be resolved for: the requested one, or every one when "auto"."""
        return DEVICE_KINDS if self.requested_device == "auto" else (self.requested_device,)

    @classmethod
    def json_schema(cls) -> dict:
        """JSON Schema of a spec, with `overrides` described as a partial MethodConfig."""
        schema = cls.model_json_schema()
        config_schema = _partial(MethodConfig.model_json_schema())
        schema.setdefault("$defs", {}).update(config_schema.pop("$defs", {}))
        overrides = schema["properties"]["overrides"]
        schema["properties"]["overrides"] = {**config_schema, "title": "Overrides",
                                             "description": overrides.get("description", ""), "default": {}}
        return schema


def resolve(spec: MethodSpec, device: str) -> MethodConfig:
    """The full MethodConfig of `spec` on `device` ("cpu" or "cuda"): defaults < preset < overrides.

    The result records the device it was resolved for in `config.device`.
    Raises:
        pydantic.ValidationError: an override is invalid (the error names the field).
        ValueError: `device` is unknown, or the spec asks for another device.
    """
    if device not in DEVICE_KINDS:
        raise ValueError(f"device must be one of {', '.join(DEVICE_KINDS)}, got {device!r}")
    if spec.requested_device not in ("auto", device):
        raise ValueError(f"the spec asks for device {spec.requested_device!r}; it cannot run on {device!r}")
    # Start from the full defaults so that every section (with its `type`) exists to merge into.
    data = merge(MethodConfig().model_dump(mode="json"), preset_overrides(spec.task, spec.preset, device, spec.method))
    data = merge(data, spec.overrides)
    # A setting the user states is theirs: the analysis no longer picks it (nfcore.adaptive).
    data["adapt"] = [path for path in data.get("adapt", []) if not _states(spec.overrides, path)]
    data["task"] = spec.task
    data["method"] = spec.method
    data["device"] = device
    return MethodConfig.model_validate(data)


def _states(overrides: dict, path: str) -> bool:
    """Whether `overrides` sets the dotted `path` (e.g. "extraction.resolution")."""
    node: Any = overrides
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _partial(schema: dict) -> dict:
    """A copy of `schema` with every `required` list dropped: overrides name only what they change."""
    schema = copy.deepcopy(schema)

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("required", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    strip(schema)
    return schema


__all__ = ["MethodSpec", "resolve"]
