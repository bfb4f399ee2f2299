"""MethodSpec and resolve(): the user's statement of a method, and the full config it stands for per device."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nfcore.config import MethodConfig
from nfcore.presets import preset_overrides
from nfcore.spec import MethodSpec, resolve
from nfcore.vocab import DEVICE_KINDS, PRESETS, TASKS


@pytest.mark.parametrize("device", DEVICE_KINDS)
@pytest.mark.parametrize("task", TASKS)
def test_every_task_and_preset_resolves_on_every_device(task, device):
    for preset in PRESETS:
        config = resolve(MethodSpec(task=task, preset=preset), device)
        assert isinstance(config, MethodConfig) and config.task == task and config.device == device


def test_presets_differ_per_device_and_overrides_win_on_both():
    spec = MethodSpec(task="sdf", preset="fast", overrides={"train": {"steps": 7}, "precondition": {"initial_scale": 0.05}})
    cpu, cuda = resolve(spec, "cpu"), resolve(spec, "cuda")
    assert cpu.train.batch_size == preset_overrides("sdf", "fast", "cpu")["train"]["batch_size"]
    assert cuda.train.batch_size == preset_overrides("sdf", "fast", "cuda")["train"]["batch_size"]
    assert cpu.train.batch_size != cuda.train.batch_size
    assert cpu.train.steps == cuda.train.steps == 7
    assert cpu.precondition.initial_scale == cuda.precondition.initial_scale == 0.05


def test_a_union_section_of_another_type_replaces_the_presets():
    config = resolve(MethodSpec(overrides={"encoding": {"type": "fourier", "n_frequencies": 6}}), "cpu")
    assert config.encoding.type == "fourier" and config.encoding.n_frequencies == 6


def test_bad_overrides_name_the_field():
    with pytest.raises(ValidationError) as info:
        resolve(MethodSpec(overrides={"train": {"steps": 0}, "sdf": {"bogus": 1}}), "cpu")
    locs = {tuple(e["loc"]) for e in info.value.errors()}
    assert ("train", "steps") in locs and ("sdf", "bogus") in locs


def test_the_spec_checks_itself():
    with pytest.raises(ValidationError, match="contradicts"):
        MethodSpec(task="sdf", overrides={"task": "image"})
    with pytest.raises(ValidationError, match="device"):
        MethodSpec(overrides={"device": "tpu"})
    with pytest.raises(ValidationError):
        MethodSpec(task="nerf")
    with pytest.raises(ValidationError):
        MethodSpec(preset="ultra")
    with pytest.raises(ValidationError):
        MethodSpec(extra=1)


def test_a_pinned_device_resolves_only_there():
    spec = MethodSpec(overrides={"device": "cpu"})
    assert spec.devices() == ("cpu",) and MethodSpec().devices() == DEVICE_KINDS
    assert resolve(spec, "cpu").device == "cpu"
    with pytest.raises(ValueError, match="cannot run on 'cuda'"):
        resolve(spec, "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve(MethodSpec(), "tpu")


def test_the_spec_round_trips_through_json_unchanged():
    spec = MethodSpec(task="image", preset="quality", overrides={"image": {"output_scale": 2.0}})
    again = MethodSpec.model_validate_json(spec.model_dump_json())
    assert again == spec and resolve(again, "cpu") == resolve(spec, "cpu")


def test_the_json_schema_describes_overrides_as_a_partial_config():
    schema = MethodSpec.json_schema()
    assert set(schema["properties"]) == {"task", "method", "preset", "overrides"}
    assert schema["properties"]["task"]["enum"] == list(TASKS)
    assert schema["properties"]["method"]["enum"] == ["neural", "kernel"]
    overrides = schema["properties"]["overrides"]
    assert {"encoding", "network", "precondition", "train", "extraction"} <= set(overrides["properties"])
    assert "required" not in str(overrides)  # any subset of fields may be given
    refs = {v.split("/")[-1] for v in _refs(schema)}
    assert refs <= set(schema["$defs"])  # every $ref resolves


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_kernel_method_resolves_to_its_presets_and_only_for_sdf():
    config = resolve(MethodSpec(task="sdf", method="kernel", preset="fast"), "cpu")
    assert config.method == "kernel" and config.kernel.voxel_per_spacing == 1.8
    assert config.extraction.largest_component is False  # open scans must stay open
    assert resolve(MethodSpec(method="kernel"), "cuda").kernel.max_depth > config.kernel.max_depth
    assert resolve(MethodSpec(), "cpu").method == "neural"  # the default is unchanged
    for task in ("image", "occupancy"):
        with pytest.raises(ValidationError) as info:
            MethodSpec(task=task, method="kernel")
        assert info.value.errors()[0]["loc"] == ("method",) and "not available for task" in str(info.value)
    with pytest.raises(ValidationError, match="overrides.method"):
        MethodSpec(method="kernel", overrides={"method": "neural"})
    with pytest.raises(ValidationError) as info:
        resolve(MethodSpec(method="kernel", overrides={"kernel": {"levels": 0}}), "cpu")
    assert info.value.errors()[0]["loc"] == ("kernel", "levels")


def test_a_spec_is_dumped_as_stated_with_or_without_a_method():
    assert "method" not in MethodSpec(task="sdf", preset="fast").model_dump(mode="json")  # as before methods existed
    assert MethodSpec(method="neural").model_dump()["method"] == "neural"  # named explicitly: kept
    kernel = MethodSpec(method="kernel", overrides={"kernel": {"depth": 6}})
    again = MethodSpec.model_validate_json(kernel.model_dump_json())
    assert again == kernel and again.method == "kernel" and resolve(again, "cpu").kernel.depth == 6
