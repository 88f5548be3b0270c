"""Tests of api/backups.py: listing a device's configuration backups, queueing a backup or a
restore (202 with the task, device woken unless scheduled), deleting a backup with its file,
roles, tenancy and bad input. Runs against a real Appliance (the `harness` fixture).
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from apiharness import T0, ApiHarness
from twisted.internet.defer import Deferred, succeed

from acs.files import FileStorage
from acs.store import PENDING, Device
from acs.store.models import Backup


class FakeConnreq:
    def __init__(self) -> None:
        self.woken: list[int] = []

    def wake(self, device_id: int) -> Deferred[str]:
        self.woken.append(device_id)
        return succeed("answered")


@pytest.fixture
def connreq(harness: ApiHarness) -> FakeConnreq:
    fake = FakeConnreq()
    harness.appliance.connreq = cast(Any, fake)
    return fake


def make_device(harness: ApiHarness, serial: str = "SN-B1", org: str = "Default") -> Device:
    organization = harness.store.ensure_organization(org)
    return harness.store.create_device(
        serial_number=serial, name=serial, organization_id=organization.id, now=T0, actor="t"
    )


def make_backup(harness: ApiHarness, device: Device, content: bytes = b"cfg") -> Backup:
    task = harness.store.queue_task(device.id, "backup", {}, now=T0, actor="t")
    backup = harness.store.create_backup(
        device.id, task_id=task.id, filename="a.cfg", size=len(content), sha256="ab" * 32, now=T0
    )
    path = storage(harness).backup_path(backup)
    path.write_bytes(content)
    return backup


def storage(harness: ApiHarness) -> FileStorage:
    return FileStorage(harness.appliance.config.storage.files, harness.store)


def url(device: Device, rest: str = "") -> str:
    return f"/api/v1/inventory_device/{device.id}/backups/{rest}"


def test_list_shows_the_devices_backups_only(harness: ApiHarness) -> None:
    device, other = make_device(harness), make_device(harness, "SN-B2")
    empty = harness.call("GET", url(device), token=harness.token("viewer"))
    assert empty.status == 200
    assert empty.json == {"count": 0, "next": None, "previous": None, "results": []}
    backup = make_backup(harness, device)
    make_backup(harness, other)
    reply = harness.call("GET", url(device), token=harness.token("viewer"))
    assert reply.status == 200
    assert reply.json["count"] == 1
    assert reply.json["results"] == [
        {
            "id": backup.id,
            "created": "2024-01-15T09:30:00Z",
            "size": 3,
            "sha256": "ab" * 32,
            "task": backup.task_id,
        }
    ]


def test_post_queues_a_backup_task_and_wakes_the_device(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    reply = harness.call("POST", url(device), token=harness.token("operator", name="ops"))
    assert reply.status == 202, reply.raw
    assert (reply.json["kind"], reply.json["state"], reply.json["actor"]) == (
        "backup",
        PENDING,
        "ops",
    )
    (task,) = harness.store.tasks_for_device(device.id)
    assert (task.id, task.kind, task.args) == (reply.json["id"], "backup", {})
    assert connreq.woken == [device.id]


def test_post_with_future_schedule_does_not_wake(harness: ApiHarness, connreq: FakeConnreq) -> None:
    device = make_device(harness)
    reply = harness.call(
        "POST",
        url(device),
        token=harness.token("operator"),
        json_body={"schedule_at": "2024-01-16T02:00:00Z"},
    )
    assert reply.status == 202, reply.raw
    assert reply.json["scheduled_at"] == "2024-01-16T02:00:00Z"
    assert connreq.woken == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"schedule_at": "tomorrow"}', "schedule_at"),
        (b'{"schedule_at": 5}', "schedule_at"),
        (b'{"when": "2024-01-16T02:00:00Z"}', "when"),
        (b"{not json", "detail"),
        (b"[1]", "detail"),
    ],
)
def test_post_rejects_bad_bodies_and_queues_nothing(
    harness: ApiHarness, connreq: FakeConnreq, body: bytes, field: str
) -> None:
    device = make_device(harness)
    reply = harness.call(
        "POST",
        url(device),
        token=harness.token("operator"),
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 400, reply.raw
    assert field in reply.json
    assert harness.store.tasks_for_device(device.id) == []
    assert connreq.woken == []


def test_restore_queues_a_restore_task_of_that_backup(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    backup = make_backup(harness, device)
    reply = harness.call(
        "POST", url(device, f"{backup.id}/restore/"), token=harness.token("operator")
    )
    assert reply.status == 202, reply.raw
    task = harness.store.get_task(reply.json["id"])
    assert task is not None
    assert (task.kind, task.args, task.state) == ("restore", {"backup": backup.id}, PENDING)
    assert connreq.woken == [device.id]


def test_restore_of_unknown_or_foreign_backup_is_404(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device, other = make_device(harness), make_device(harness, "SN-B2")
    foreign = make_backup(harness, other)
    token = harness.token("operator")
    for backup_id in (foreign.id, 999):
        reply = harness.call("POST", url(device, f"{backup_id}/restore/"), token=token)
        assert reply.status == 404, reply.raw
    assert [t.kind for t in harness.store.tasks_for_device(device.id)] == []


def test_delete_removes_row_and_file(harness: ApiHarness) -> None:
    device = make_device(harness)
    backup = make_backup(harness, device)
    path = storage(harness).backup_path(backup)
    assert path.exists()
    reply = harness.call("DELETE", url(device, f"{backup.id}/"), token=harness.token("admin"))
    assert reply.status == 204, reply.raw
    assert harness.store.get_backup(backup.id) is None
    assert not path.exists()
    again = harness.call("DELETE", url(device, f"{backup.id}/"), token=harness.token("admin"))
    assert again.status == 404


def test_deleting_the_device_removes_its_backup_files(harness: ApiHarness) -> None:
    device = make_device(harness)
    path = storage(harness).backup_path(make_backup(harness, device))
    assert path.exists()
    reply = harness.call(
        "DELETE", f"/api/v1/inventory_device/{device.id}/", token=harness.token("admin")
    )
    assert reply.status == 204, reply.raw
    assert harness.store.list_backups(device.id) == []
    assert not path.exists()


def test_delete_is_refused_while_a_restore_of_it_waits(harness: ApiHarness) -> None:
    device = make_device(harness)
    backup = make_backup(harness, device)
    harness.appliance.tasks.queue(
        device.id, "restore", {"backup": backup.id}, actor="t", wake=False, now=T0
    )
    reply = harness.call("DELETE", url(device, f"{backup.id}/"), token=harness.token("admin"))
    assert reply.status == 409
    assert "restored" in reply.json["detail"]
    assert harness.store.get_backup(backup.id) is not None


def test_roles_viewer_lists_operator_queues_admin_deletes(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    backup = make_backup(harness, device)
    viewer, operator = harness.token("viewer"), harness.token("operator")
    assert harness.call("POST", url(device), token=viewer).status == 403
    assert harness.call("POST", url(device, f"{backup.id}/restore/"), token=viewer).status == 403
    assert harness.call("DELETE", url(device, f"{backup.id}/"), token=operator).status == 403
    assert harness.call("GET", url(device)).status == 401
    # Only make_backup's own task: nothing was queued by the refused calls.
    assert [t.kind for t in harness.store.tasks_for_device(device.id)] == ["backup"]
    assert harness.store.get_backup(backup.id) is not None


def test_tenancy_hides_other_organizations_devices(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    mine = make_device(harness, "SN-MINE", org="Mine")
    theirs = make_device(harness, "SN-THEIRS", org="Theirs")
    backup = make_backup(harness, theirs)
    token = harness.token("admin", orgs=[mine.organization_id])
    assert harness.call("GET", url(mine), token=token).status == 200
    assert harness.call("GET", url(theirs), token=token).status == 403
    assert harness.call("POST", url(theirs), token=token).status == 403
    assert harness.call("DELETE", url(theirs, f"{backup.id}/"), token=token).status == 403
    assert harness.store.get_backup(backup.id) is not None
    assert connreq.woken == []


def test_unknown_device_is_404(harness: ApiHarness) -> None:
    reply = harness.call(
        "GET", "/api/v1/inventory_device/999/backups/", token=harness.token("viewer")
    )
    assert reply.status == 404
