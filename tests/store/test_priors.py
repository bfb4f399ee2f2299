"""The prior store on SQLite and PostgreSQL: owner scoping, keyset pages, delete; created with the job tables."""

from __future__ import annotations

from datetime import timedelta

from store import Prior, PriorStore, utcnow


def _prior(pid: str, owner: str, created) -> Prior:
    return Prior(id=pid, owner=owner, name=f"{pid}.safetensors", path=f"priors/{pid}/prior.safetensors", size=10,
                 sha256="0" * 64, header={"inner_steps": 5, "info": {"algorithm": "maml"}}, created_at=created)


def test_priors_are_scoped_by_owner_paged_newest_first_and_deleted(store):
    priors = PriorStore(store.engine)  # the JobStore created the table with the others
    t0 = utcnow()
    for k in range(3):
        priors.add(_prior(f"pri_a{k}", "alice", t0 + timedelta(seconds=k)))
    priors.add(_prior("pri_b0", "bob", t0))
    assert priors.get("pri_a1", "alice").header["inner_steps"] == 5
    assert priors.get("pri_a1", "bob") is None and priors.get("pri_a1") is not None
    page = priors.list("alice", limit=2)
    assert [p.id for p in page] == ["pri_a2", "pri_a1"]
    rest = priors.list("alice", limit=2, before=(page[-1].created_at, page[-1].id))
    assert [p.id for p in rest] == ["pri_a0"]
    assert [p.id for p in priors.list("bob")] == ["pri_b0"]
    assert priors.delete("pri_a1") is True and priors.delete("pri_a1") is False
    assert priors.get("pri_a1", "alice") is None and [p.id for p in priors.list("alice")] == ["pri_a2", "pri_a0"]
