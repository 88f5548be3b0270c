"""Configuration backups of a device in the REST API: list, take, restore, delete.

Owns ``/inventory_device/{id}/backups/``: a backup is the vendor configuration file a CPE sent
to the file server after an ``Upload`` RPC (task kind ``backup``); a restore sends one back with
``Download`` FileType ``3 Vendor Configuration File`` (task kind ``restore``). Taking and
restoring queue a task (202 with the task, the device is woken unless the task is scheduled);
the task engine (``acs.tasks``) runs it. Tenancy comes from :meth:`api.base.Api.device`.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from acs.files import FileStorage
from acs.store import IN_PROGRESS, PENDING
from acs.store.models import Backup, Device
from api.base import (
    Api,
    ApiRequest,
    Result,
    conflict,
    not_found,
    route,
    store_errors,
)
from api.device_children import task_json
from api.docs import WRITE, Doc, device_page
from api.fields import DateTime, Form
from api.resources import paged
from api.schema import SHA256_PATTERN, integer, string
from api.views import Out, View, when

log = Logger(namespace="api.backups")

BACKUP_TASK = "backup"
RESTORE_TASK = "restore"


BACKUP_VIEW = View(
    "Backup",
    {
        "id": Out(integer()),
        "created": when(),
        "size": Out(integer(minimum=0, description="Bytes.")),
        "sha256": Out(string(pattern=SHA256_PATTERN)),
        "task": Out(
            integer(True, description="The backup task that took it (null once deleted)."),
            "task_id",
        ),
    },
    description="A vendor configuration file the CPE uploaded (Upload RPC).",
)
backup_json = BACKUP_VIEW.render


TRANSFER_FORM = Form(
    "TransferRequest",
    {"schedule_at": DateTime(description="Run at the first session after this time.")},
    components={"TransferRequest": "update"},
    notes={"update": "Optional body; an empty body queues the task to run now."},
)


def _schedule(body: dict[str, Any]) -> float | None:
    """``schedule_at`` from the body; 400 for it or for any other key."""
    when: float | None = TRANSFER_FORM.read(body, mode="update").get("schedule_at")
    return when


def _backup(api: Api, device: Device, backup_id: int) -> Backup:
    backup = api.store.get_backup(backup_id)
    if backup is None or backup.device_id != device.id:
        raise not_found("No backup with this id for this device.")
    return backup


def _queue(api: Api, req: ApiRequest, device: Device, kind: str, args: dict[str, Any]) -> Result:
    when = _schedule(req.json_object(optional=True))
    now = api.now()
    with store_errors():
        task = api.tasks.queue(
            device.id, kind, args, actor=req.principal.name, scheduled_at=when, wake=False, now=now
        )
    if when is None or when <= now:
        api.tasks.wake(device.id)
    return 202, task_json(task)


@route(
    "/inventory_device/<int:device_id>/backups/",
    methods=("GET",),
    role="viewer",
    doc=device_page("list_device_backups", "Configuration backups of the device", "BackupPage"),
)
def list_backups(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)
    return paged(
        req,
        lambda limit, offset: api.store.backups_page(device.id, limit=limit, offset=offset),
        backup_json,
    )


def _transfer(op_id: str, summary: str, description: str) -> Doc:
    """A POST queueing a transfer task (optional body: when to run it)."""
    return Doc(
        op_id,
        summary,
        "device_resources",
        "Task",
        202,
        body="TransferRequest",
        body_required=False,
        errors=WRITE,
        description=description,
    )


@route(
    "/inventory_device/<int:device_id>/backups/",
    methods=("POST",),
    role="operator",
    doc=_transfer(
        "create_device_backup",
        "Take a configuration backup",
        "Queues a backup task: the CPE is asked (Upload RPC, FileType '1 Vendor "
        "Configuration File') to send its configuration to a signed URL of the file "
        "server; the task completes on the CPE's TransferComplete once the file is "
        "stored, and the backup then appears in this list.",
    ),
)
def take_backup(api: Api, req: ApiRequest, device_id: int) -> Result:
    """Queue a backup (Upload of the vendor configuration file): 202 with the task."""
    device = api.device(req, device_id)
    return _queue(api, req, device, BACKUP_TASK, {})


@route(
    "/inventory_device/<int:device_id>/backups/<int:backup_id>/restore/",
    methods=("POST",),
    role="operator",
    doc=_transfer(
        "restore_device_backup",
        "Restore a configuration backup to the device",
        "Queues a restore task: Download RPC with FileType '3 Vendor Configuration "
        "File' and a signed URL of this backup; the task completes on the CPE's "
        "TransferComplete (fault code 0), and fails with the CPE's fault otherwise.",
    ),
)
def restore_backup(api: Api, req: ApiRequest, device_id: int, backup_id: int) -> Result:
    """Queue a restore of this backup to the device: 202 with the task."""
    device = api.device(req, device_id)
    backup = _backup(api, device, backup_id)
    return _queue(api, req, device, RESTORE_TASK, {"backup": backup.id})


@route(
    "/inventory_device/<int:device_id>/backups/<int:backup_id>/",
    methods=("DELETE",),
    role="admin",
    doc=Doc(
        "delete_device_backup",
        "Delete a configuration backup and its file",
        "device_resources",
        None,
        204,
        errors=("NotFound", "Conflict"),
        description="409 while a restore of this backup is queued or running.",
    ),
)
def delete_backup(api: Api, req: ApiRequest, device_id: int, backup_id: int) -> Result:
    """Delete the backup and its file (204); 409 while a restore of it is queued or running."""
    device = api.device(req, device_id)
    backup = _backup(api, device, backup_id)
    busy = [
        t.id
        for t in api.store.tasks_for_device(device.id, states=(PENDING, IN_PROGRESS))
        if t.kind == RESTORE_TASK and t.args.get("backup") == backup.id
    ]
    if busy:
        raise conflict(
            f"Backup {backup.id} is being restored by task {busy[0]}; "
            "cancel the task or wait for it to finish."
        )
    # The files layout belongs to acs.files: its storage removes the row, then the file.
    # (The appliance's FileServer owns the storage; acs.service wires it as `files`.)
    storage: FileStorage = api.appliance.storage
    with store_errors():
        storage.delete_backup(backup.id, now=api.now(), actor=req.principal.name)
    return 204, None
