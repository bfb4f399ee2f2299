"""Schema fuzzing: Schemathesis generates requests from the live OpenAPI document of a real server and checks
every answer: no 5xx, status codes, content types, headers and bodies as documented, schema-valid requests
accepted and invalid ones rejected, OPTIONS/unsupported methods answered 405 with Allow.

Bounded for CI (`FUZZ_EXAMPLES` per operation, default 25): about 30 s on two cores.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from api.app import create_app
from tests.api.test_hostile_uploads import _Server, _settings
from tests.service_fixtures import embedded_broker  # noqa: F401 (fixture)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, embedded_broker):  # noqa: F811
    # A short body timeout: some generated requests declare bodies they never send.
    app = create_app(_settings(tmp_path_factory.mktemp("fuzz"), embedded_broker, body_timeout_s=5.0))
    with _Server(app) as srv:
        yield f"http://127.0.0.1:{srv.port}"


# Schema-valid requests the service must still refuse, because what makes them wrong is not expressible
# in a schema: the bytes of an upload (a PNG of 1x1 pixels, a file without a known extension) or of a
# prior, the resolved method (overrides are a partial MethodConfig, checked against presets per device;
# a meta-train config is a partial MetaTrainConfig), or a page token this server did not issue.
_CONTENT_CHECKED = ["2xx", "401", "404", "409", "413", "415", "422", "429"]
CONFIG = {
    "operations": [
        {"include-path": path, "include-method": method,
         "checks": {"positive_data_acceptance": {"expected-statuses": _CONTENT_CHECKED}}}
        for path, method in (("/v1/uploads", "POST"), ("/v1/jobs/form", "POST"), ("/v1/jobs", "POST"),
                             ("/v1/jobs/{job_id}/retry", "POST"), ("/v1/priors", "POST"), ("/v1/priors", "GET"),
                             ("/v1/jobs/meta-train", "POST"))
    ],
}


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json",
                                         config=schemathesis.config.SchemathesisConfig.from_dict(CONFIG))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_matches_its_openapi(case, live_api):
    case.call_and_validate(base_url=live_api, timeout=30)
