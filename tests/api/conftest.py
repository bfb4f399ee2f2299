"""API fixtures: a fresh app per test on a SQLite store in a tmp dir, publishing to the embedded broker."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from service.settings import Settings
from tests.service_fixtures import embedded_broker, sphere_file, unique_prefix  # noqa: F401 (fixtures)


@pytest.fixture
def make_settings(tmp_path, embedded_broker):  # noqa: F811
    prefix = unique_prefix()

    def make(**overrides) -> Settings:
        values = dict(data_dir=tmp_path / "data", broker_url=embedded_broker, queue_prefix=prefix,
                      reaper_enabled=False, republish_on_startup=False)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def client(make_settings):
    with TestClient(create_app(make_settings())) as c:
        yield c
