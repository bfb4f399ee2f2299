"""The vocabularies in nfcore.vocab are the ones the readers, the CLI and the config actually use."""

from __future__ import annotations

import typing

from nfcore import vocab
from nfcore.config import ExtractionConfig, MethodConfig
from nfcore.io import SUPPORTED_EXTENSIONS, WRITE_EXTENSIONS
from nfcore.io.images import PIL_FORMATS


def test_readers_accept_exactly_the_advertised_extensions():
    clouds_and_meshes = set(vocab.POINT_CLOUD_EXTENSIONS) | set(vocab.MESH_EXTENSIONS)
    assert set(SUPPORTED_EXTENSIONS) == clouds_and_meshes
    assert set(PIL_FORMATS) == set(vocab.IMAGE_EXTENSIONS)
    assert set(WRITE_EXTENSIONS) == {f".{f}" for f in vocab.MESH_FORMATS}


def test_config_and_cli_use_the_same_names():
    from nfrecon.cli import build_parser

    assert typing.get_args(MethodConfig.model_fields["task"].annotation) == vocab.TASKS
    fmt = ExtractionConfig.model_fields["formats"].annotation
    assert typing.get_args(typing.get_args(fmt)[0]) == vocab.MESH_FORMATS
    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    choices = {a.dest: a.choices for a in fit._actions}
    assert tuple(choices["task"]) == vocab.TASKS and tuple(choices["preset"]) == vocab.PRESETS
    assert tuple(choices["method"]) == vocab.METHODS
    assert typing.get_args(MethodConfig.model_fields["method"].annotation) == vocab.METHODS
    assert set(vocab.TASK_METHODS) == set(vocab.TASKS) and all(
        set(m) <= set(vocab.METHODS) and m[0] == "neural" for m in vocab.TASK_METHODS.values())


def test_task_extensions_and_the_default_task():
    assert ".tif" in vocab.task_extensions("image") and ".xyz" in vocab.task_extensions("sdf")
    assert ".xyz" not in vocab.task_extensions("occupancy")
    assert vocab.default_task_for("scan.PNG") == "image" and vocab.default_task_for("scan.ply") == "sdf"


def test_every_task_in_the_vocabulary_is_registered():
    # /v1/methods advertises every vocabulary task as available without importing torch to check.
    from nfcore.tasks import TASK_TYPES

    assert set(TASK_TYPES) == set(vocab.TASKS)
