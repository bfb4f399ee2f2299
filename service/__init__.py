"""The service core, below `api` (HTTP) and `worker` (Celery), which import it and never each other.

- `settings`: every `NFRECON_*` knob (pydantic-settings);
- `broker`: the Celery configuration both sides share, queue names;
- `queue`: `JobQueue`, publishing job ids and revoking them;
- `jobs`: the job lifecycle (create from a method spec, read, cancel, retry, delete, logs, artifacts);
- `priors`: meta-learned priors as a resource, and naming one in a job by id;
- `metatrain`: meta-train jobs' spec and submit limits; `shapesets`: the zips of shapes they take;
- `pages`: keyset page tokens of the lists;
- `reaper`: recovers lost jobs, forces stuck cancels, expires data;
- `webhooks`: Standard Webhooks signing and the dispatcher of the job-table outbox;
- `presence`: workers announcing themselves in the broker;
- `errors`: `ProblemError`, the problem a service function reports;
- `context`: `Services`, what service functions are given.
Persistence (tables, conditional state transitions, artifact directories) is the `store` package below.
"""

from service.errors import ProblemError, not_found
from service.settings import Settings, get_settings

__all__ = ["ProblemError", "Settings", "get_settings", "not_found"]
