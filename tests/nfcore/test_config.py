import json

import pytest
from pydantic import ValidationError

from nfcore.config import MethodConfig, load_config
from nfcore.presets import merge, preset_overrides
from nfcore.spec import MethodSpec, resolve
from nfcore.vocab import PRESETS


def test_defaults_round_trip_json_and_schema():
    cfg = MethodConfig()
    again = load_config(cfg.model_dump_json())
    assert again == cfg
    schema = MethodConfig.model_json_schema()
    assert "encoding" in schema["properties"]
    # every field documented, so the API's schema is readable
    hashgrid = schema["$defs"]["HashGridEncodingConfig"]["properties"]
    assert "description" in hashgrid["backend"]


def test_unknown_key_and_bad_value_name_the_field():
    with pytest.raises(ValidationError) as e:
        MethodConfig.model_validate({"train": {"stepz": 10}})
    assert "stepz" in str(e.value)
    with pytest.raises(ValidationError) as e:
        MethodConfig.model_validate({"train": {"steps": -1}})
    assert "steps" in str(e.value)
    with pytest.raises(ValidationError) as e:
        MethodConfig.model_validate({"encoding": {"type": "octree"}})
    assert "octree" in str(e.value)


@pytest.mark.parametrize("task", ["sdf", "image", "occupancy"])
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_preset_validates(task, preset, device):
    cfg = resolve(MethodSpec(task=task, preset=preset), device)
    assert cfg.task == task
    json.loads(cfg.model_dump_json())


def test_presets_grow_in_cost():
    # On the CPU a finer, larger field per tier (`balanced` runs fewer steps than `fast`: it starts from the
    # kernel warm start); on CUDA more samples.
    cpu = [resolve(MethodSpec(task="sdf", preset=p), "cpu") for p in PRESETS]
    tables = [c.encoding.log2_hashmap_size for c in cpu]
    assert tables == sorted(tables) and len(set(tables)) == 3
    assert [c.encoding.finest_resolution for c in cpu] == sorted(c.encoding.finest_resolution for c in cpu)
    cuda = [resolve(MethodSpec(task="sdf", preset=p), "cuda").train for p in PRESETS]
    samples = [t.steps * t.batch_size for t in cuda]
    assert samples == sorted(samples) and samples[2] > samples[0]


def test_cpu_default_preset_is_warm_started_from_the_kernel_solve():
    config = resolve(MethodSpec(task="sdf"), "cpu")
    assert config.init.kind == "kernel" and config.kernel.max_depth <= 8
    assert resolve(MethodSpec(task="sdf", preset="fast"), "cpu").init.kind == "default"
    assert resolve(MethodSpec(task="sdf", overrides={"init": {"kind": "default"}}), "cpu").init.kind == "default"


def test_overrides_merge_and_union_replacement():
    cfg = resolve(MethodSpec(task="sdf", preset="fast", overrides={"train": {"steps": 7}}), "cpu")
    assert cfg.train.steps == 7
    assert cfg.train.batch_size == preset_overrides("sdf", "fast")["train"]["batch_size"]
    cfg = resolve(MethodSpec(task="sdf", preset="fast", overrides={"encoding": {"type": "fourier", "n_frequencies": 6}}), "cpu")
    assert cfg.encoding.type == "fourier" and cfg.encoding.n_frequencies == 6
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_unknown_preset_or_task():
    with pytest.raises(ValueError, match="preset"):
        resolve(MethodSpec(task="sdf", preset="ultra"), "cpu")
    with pytest.raises(ValueError, match="task"):
        resolve(MethodSpec(task="nerf", preset="fast"), "cpu")
