"""The audit log (api/audit.py, Store.audit_page): what tokens and the CLI wrote, newest first,
never the ACS's or the CPEs' own entries; filtered by actor, action, device and time; a
token scoped to organizations sees their devices' entries only; only admins read it.
"""

from __future__ import annotations

from typing import Any

import pytest
from apiharness import T0, ApiHarness

from acs.store import Store

V1 = "/api/v1"


@pytest.fixture
def world(harness: ApiHarness) -> dict[str, Any]:
    store = harness.store
    east = store.ensure_organization("East").id
    west = store.ensure_organization("West").id
    a = store.create_device(serial_number="A", name="a", organization_id=east, now=T0, actor="ops")
    b = store.create_device(serial_number="B", name="b", organization_id=west, now=T0, actor="ops")
    store.update_device(a.id, now=T0 + 10, actor="alice", description="lobby")
    store.set_tags(b.id, ["vip"], now=T0 + 20, actor="bob")
    store.add_history(a.id, "inform", {"events": ["2 PERIODIC"]}, now=T0 + 30, actor="cpe")
    store.add_history(a.id, "status", {"to": "Up"}, now=T0 + 31, actor="acs")
    store.add_history(None, "organization_created", {"id": west}, now=T0 + 40, actor="alice")
    return {"east": east, "west": west, "a": a.id, "b": b.id}


def audit(harness: ApiHarness, query: str = "", token: str | None = None) -> Any:
    reply = harness.call("GET", f"{V1}/audit/?{query}", token=token or harness.token("admin"))
    assert reply.status == 200, reply.json
    return reply.json


def test_the_audit_log_has_what_people_wrote_newest_first(
    harness: ApiHarness, world: dict[str, Any]
) -> None:
    page = audit(harness)
    actors = [(e["actor"], e["action"], e["device"]) for e in page["results"]]
    assert ("cpe", "inform", world["a"]) not in actors and all(
        a not in ("acs", "cpe") for a, _, _ in actors
    )
    assert actors[0] == ("alice", "organization_created", None)
    assert ("alice", "updated", world["a"]) in actors and (
        "bob",
        "tags_changed",
        world["b"],
    ) in actors
    assert [e["id"] for e in page["results"]] == sorted(
        (e["id"] for e in page["results"]), reverse=True
    )
    updated = next(e for e in page["results"] if e["action"] == "updated")
    assert updated["time"] == "2024-01-15T09:30:10Z"


def test_filters_narrow_the_log(harness: ApiHarness, world: dict[str, Any]) -> None:
    assert {e["actor"] for e in audit(harness, "actor=bob")["results"]} == {"bob"}
    assert [e["action"] for e in audit(harness, "action=tags_changed")["results"]] == [
        "tags_changed"
    ]
    assert {e["device"] for e in audit(harness, f"device={world['a']}")["results"]} == {world["a"]}
    window = audit(harness, "since=2024-01-15T09:30:05Z&until=2024-01-15T09:30:25Z")["results"]
    assert [(e["actor"], e["action"]) for e in window] == [
        ("bob", "tags_changed"),
        ("alice", "updated"),
    ]
    for bad in ("since=yesterday", "device=x", "who=alice", "actor=" + "a" * 257, "action=%00"):
        reply = harness.call("GET", f"{V1}/audit/?{bad}", token=harness.token("admin"))
        assert reply.status == 400, bad


def test_scoped_tokens_see_their_devices_entries_and_only_admins_read(
    harness: ApiHarness, world: dict[str, Any]
) -> None:
    east = harness.token("admin", [world["east"]], name="east-admin")
    seen = audit(harness, token=east)["results"]
    assert seen and {e["device"] for e in seen} == {world["a"]}
    operator = harness.token("operator")
    assert harness.call("GET", f"{V1}/audit/", token=operator).status == 403


def test_an_api_write_is_audited_under_the_tokens_name(
    harness: ApiHarness, world: dict[str, Any]
) -> None:
    token = harness.token("operator", name="night-shift")
    body = {"tags": ["x"]}
    assert (
        harness.call(
            "POST", f"{V1}/inventory_device/{world['a']}/tags/", token=token, json_body=body
        ).status
        == 200
    )
    [entry] = audit(harness, "actor=night-shift")["results"]
    assert (entry["action"], entry["device"], entry["detail"]) == (
        "tags_changed", world["a"], {"added": ["x"], "removed": []}
    )  # fmt: skip


@pytest.mark.parametrize("name", ["acs", "cpe", " acs "])
def test_token_names_cannot_pose_as_the_acs_or_a_cpe(store: Store, name: str) -> None:
    with pytest.raises(ValueError):
        store.create_token(name, "admin", [], now=T0)
