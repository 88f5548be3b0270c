"""What the ACS does about a CPE's own requests beyond recording them (the session driver,
`acs.tasks.session`, answers and records every one): a RequestDownload queues a download of
the newest stored file that matches, or is refused with the ACS fault that says why; an
AutonomousTransferComplete of a configuration file makes the stored tree read again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acs.cwmp import rpc
from acs.store.models import IN_PROGRESS, PENDING
from acs.tasks.filekinds import CONFIG_DOWNLOAD_FILE_TYPE, FIRMWARE_FILE_TYPE, download_file_type

if TYPE_CHECKING:
    from acs.tasks.engine import TaskEngine

# ACS fault codes (TR-069 A.5.1) a RequestDownload may get.
REQUEST_DENIED = 8001
INVALID_ARGUMENTS = 8003


def request_download(
    engine: TaskEngine, device_id: int, message: rpc.RequestDownload, now: float
) -> tuple[rpc.Message, dict[str, Any]]:
    """(the answer, what to add to the history entry). The file: for a firmware image, the
    newest image of the device's type unless the CPE already runs its version; for any other
    FileType, the newest operator file of that type meant for the CPE's OUI and product
    class (``Store.newest_file``). A download already queued for it is not queued twice; the
    task runs in this very session, after the CPE's requests."""
    store = engine.store
    device = store.get_device(device_id)
    file_type = message.file_type
    if device is None:
        return _refused(REQUEST_DENIED, "Request denied: unknown device")
    if not download_file_type(file_type):
        return _refused(INVALID_ARGUMENTS, f"Invalid arguments: FileType {file_type[:64]!r}")
    args: dict[str, Any]
    if file_type == FIRMWARE_FILE_TYPE:
        image = store.newest_firmware_image(device.type_id)
        if image is None:
            return _refused(REQUEST_DENIED, "Request denied: no firmware image for this CPE")
        if image.version == device.software_version:
            return _refused(REQUEST_DENIED, "Request denied: the CPE runs the newest firmware")
        args = {"firmware_image": image.id}
    else:
        stored = store.newest_file(file_type, oui=device.oui, product_class=device.product_class)
        if stored is None:
            return _refused(REQUEST_DENIED, f"Request denied: no {file_type!r} file for this CPE")
        args = {"file": stored.id}
    queued = [
        t
        for t in store.tasks_for_device(device_id, states=(PENDING, IN_PROGRESS))
        if t.kind == "download" and t.args == args
    ]
    task = (
        queued[0]
        if queued
        else engine.queue(device_id, "download", args, actor="cpe", wake=False, now=now)
    )
    return rpc.RequestDownloadResponse(), {"task_id": task.id, **args}


def autonomous_transfer(
    engine: TaskEngine, device_id: int, message: rpc.AutonomousTransferComplete, now: float
) -> dict[str, Any]:
    """What to add to the history entry of a transfer the CPE made on its own. A firmware
    image it installed shows in this session's Inform (the device's software_version, and
    the Inform's values in the stored tree); a configuration file it applied changed
    parameters nobody can name, so a sync (run in this session, one queued at a time) reads
    the whole tree again."""
    if message.fault.code or not message.is_download:
        return {}
    store = engine.store
    if message.file_type == FIRMWARE_FILE_TYPE:
        device = store.get_device(device_id)
        return {"software_version": device.software_version if device is not None else None}
    if message.file_type != CONFIG_DOWNLOAD_FILE_TYPE:
        return {}
    queued = [t for t in store.tasks_for_device(device_id, states=(PENDING,)) if t.kind == "sync"]
    task = (
        queued[0]
        if queued
        else engine.queue(device_id, "sync", {}, actor="cpe", wake=False, now=now)
    )
    return {"task_id": task.id}


def _refused(code: int, text: str) -> tuple[rpc.Message, dict[str, Any]]:
    faultcode = "Client" if code == INVALID_ARGUMENTS else "Server"
    return rpc.Fault(code=code, string=text, faultcode=faultcode), {
        "fault_code": code,
        "fault_string": text,
    }
