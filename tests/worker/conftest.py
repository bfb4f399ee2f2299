"""Worker fixtures: an API app (for creating jobs the way clients do) and a runner context on its stores."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from service.settings import Settings
from tests.service_fixtures import embedded_broker, sphere_file, unique_prefix  # noqa: F401 (fixtures)
from worker.runner import RunContext


@pytest.fixture
def settings(tmp_path, embedded_broker):  # noqa: F811
    return Settings(data_dir=tmp_path / "data", broker_url=embedded_broker, queue_prefix=unique_prefix(),
                    reaper_enabled=False, republish_on_startup=False, heartbeat_interval_s=0.3,
                    progress_interval_s=0.2, stale_after_s=1.0, cancel_grace_s=0.0)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def services(client):
    return client.app.state.services


@pytest.fixture
def ctx(services):
    return RunContext(store=services.store, artifacts=services.artifacts, settings=services.settings, worker="test",
                      device="cpu")
