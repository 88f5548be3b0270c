"""The file transfer kinds' RPC generators and arguments: Download (or, in time windows,
ScheduleDownload) of a firmware image, a backup or a stored file (``/api/v1/file/``), Upload
of a configuration backup or of any file the CPE offers. Each one hands the CPE a signed,
expiring URL of the file server (`run.signer()`) and ends at the TransferComplete carrying
the task's CommandKey (completion ``TRANSFER``, declared in `acs.tasks.kinds`). Also the
transfer queue's RPCs: CancelTransfer of such a task, GetAllQueuedTransfers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acs.cwmp import rpc
from acs.store.models import IN_PROGRESS, PENDING
from acs.tasks import args as a
from acs.tasks.run import Steps, TaskError, TaskRun, TransferUrls, WaitForTransfer, task_key

# FileType values of TR-069 Download (A.3.2.8) and Upload (A.4.1.5).
FIRMWARE_FILE_TYPE = "1 Firmware Upgrade Image"
CONFIG_UPLOAD_FILE_TYPE = "1 Vendor Configuration File"
CONFIG_DOWNLOAD_FILE_TYPE = "3 Vendor Configuration File"
MAX_FILE_TYPE = 64  # cwmp-1-x.xsd: FileType is a string(64)
MAX_TARGET_FILE_NAME = 256
# A vendor's own type: "X <OUI> <name>", the OUI as six upper-case hex digits.
_VENDOR = r"X [0-9A-F]{6} [ -~]+"
_INSTANCE = r"[1-9][0-9]{0,8}"  # the 1.x forms' instance number
DOWNLOAD_FILE_TYPE_PATTERN = (
    r"^(1 Firmware Upgrade Image|2 Web Content|3 Vendor Configuration File|4 Tone File"
    rf"|5 Ringer File|{_VENDOR})$"
)
# What /api/v1/file/ stores: every Download FileType but firmware (/firmware_image/).
STORED_FILE_TYPE_PATTERN = (
    rf"^(2 Web Content|3 Vendor Configuration File|4 Tone File|5 Ringer File|{_VENDOR})$"
)
UPLOAD_FILE_TYPE_PATTERN = (
    r"^(1 Vendor Configuration File|2 Vendor Log File"
    rf"|3 Vendor Configuration File {_INSTANCE}|4 Vendor Log File {_INSTANCE}|{_VENDOR})$"
)
# A file name on the CPE: printable ASCII, no path separators.
TARGET_FILE_NAME_PATTERN = r"^[ -.0-\[\]-~]+$"
# Seconds a CPE may wait before it starts the transfer (DelaySeconds); the transfer watch
# counts them on top of [cwmp] transfer_timeout.
MAX_TRANSFER_DELAY = 86400
MAX_QUEUED = 16  # AllTransferList holds at most 16

_DOWNLOAD_TYPE = re.compile(DOWNLOAD_FILE_TYPE_PATTERN)
_UPLOAD_TYPE = re.compile(UPLOAD_FILE_TYPE_PATTERN)
_TARGET_NAME = re.compile(TARGET_FILE_NAME_PATTERN)


def download_file_type(value: Any) -> bool:
    """A FileType a Download may carry."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_FILE_TYPE
        and bool(_DOWNLOAD_TYPE.fullmatch(value))
    )


def upload_file_type(value: Any) -> bool:
    """A FileType an Upload may carry."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_FILE_TYPE
        and bool(_UPLOAD_TYPE.fullmatch(value))
    )


# --- arguments ------------------------------------------------------------------------------

_ID = {"type": "integer", "minimum": 1, "maximum": a.MAX_ID}
_DELAY = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_TRANSFER_DELAY,
    "description": "Seconds the CPE waits before it starts (DelaySeconds); default 0.",
}


def _file_type_schema(pattern: str, description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "maxLength": MAX_FILE_TYPE,
        "pattern": pattern,
        "description": description,
    }


def _only_one(first: str, second: str) -> list[dict[str, Any]]:
    return [
        {"required": [first], "not": {"required": [second]}},
        {"required": [second], "not": {"required": [first]}},
    ]


DOWNLOAD_SCHEMA = a.arguments_schema(
    {
        "file": {**_ID, "description": "Id of a stored file (/api/v1/file/) to send."},
        "firmware_image": {**_ID, "description": "Id of a firmware image to send instead."},
        "file_type": _file_type_schema(
            DOWNLOAD_FILE_TYPE_PATTERN,
            "The Download's FileType; default: the stored file's (a firmware image: "
            f"'{FIRMWARE_FILE_TYPE}').",
        ),
        "delay_seconds": _DELAY,
        "target_file_name": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TARGET_FILE_NAME,
            "pattern": TARGET_FILE_NAME_PATTERN,
            "description": "TargetFileName; default: the stored file's name.",
        },
    },
    extra={"anyOf": _only_one("file", "firmware_image")},
)
UPLOAD_SCHEMA = a.arguments_schema(
    {
        "file_type": _file_type_schema(
            UPLOAD_FILE_TYPE_PATTERN,
            "The Upload's FileType: a configuration or log file, the TR-069 1.x instance "
            "forms ('3 Vendor Configuration File 2'), or 'X <OUI> <name>'.",
        ),
        "delay_seconds": _DELAY,
    },
    ["file_type"],
)


# ScheduleDownload (A.4.1.8): one or two windows, in seconds from the RPC's receipt.
MAX_WINDOW_END = 7 * 86400
MAX_USER_MESSAGE = 256
WINDOW_MODE_PATTERN = (
    rf"^(1 At Any Time|2 Immediately|3 When Idle|4 Confirmation Needed|{_VENDOR})$"
)
_WINDOW_MODE = re.compile(WINDOW_MODE_PATTERN)
_PRINTABLE = re.compile(a.ASCII_TEXT_PATTERN)
_SECONDS = {"type": "integer", "minimum": 0, "maximum": MAX_WINDOW_END}
_WINDOW_KEYS = ("window_start", "window_end", "mode", "user_message", "max_retries")
TIME_WINDOW_SCHEMA = {
    "type": "object",
    "properties": {
        "window_start": {**_SECONDS, "description": "Seconds after the RPC."},
        "window_end": {**_SECONDS, "description": "Seconds after the RPC; >= window_start."},
        "mode": {
            "type": "string",
            "maxLength": MAX_FILE_TYPE,
            "pattern": WINDOW_MODE_PATTERN,
            "description": "WindowMode; default '1 At Any Time'.",
        },
        "user_message": {
            "type": "string",
            "maxLength": MAX_USER_MESSAGE,
            "pattern": a.ASCII_TEXT_PATTERN,
            "description": "Shown to the user ('4 Confirmation Needed').",
        },
        "max_retries": {
            "type": "integer",
            "minimum": -1,
            "maximum": 100,
            "description": "-1 (default): the CPE decides.",
        },
    },
    "required": ["window_start", "window_end"],
    "additionalProperties": False,
}
TIME_WINDOWS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "maxItems": 2,
    "items": TIME_WINDOW_SCHEMA,
    "description": "One or two windows in time order, not overlapping.",
}


_SCHEDULED_PROPERTIES = {
    k: v for k, v in DOWNLOAD_SCHEMA["properties"].items() if k != "delay_seconds"
}
SCHEDULE_DOWNLOAD_SCHEMA = a.arguments_schema(
    {**_SCHEDULED_PROPERTIES, "time_windows": TIME_WINDOWS_SCHEMA},
    ["time_windows"],
    extra={"anyOf": _only_one("file", "firmware_image")},
)
CANCEL_TRANSFER_SCHEMA = a.arguments_schema(
    {"task": {**_ID, "description": "A transfer task of this device still under way."}},
    ["task"],
)


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _integer(value: Any, low: int, high: int) -> bool:
    value = _whole(value)
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= high


def time_windows(value: Any) -> list[dict[str, Any]]:
    """The ``time_windows`` of a schedule_download, normalized."""
    problem = (
        "time_windows must be 1 or 2 objects {window_start, window_end (seconds, 0 to "
        f"{MAX_WINDOW_END}, end >= start), mode?, user_message?, max_retries? (-1 to 100)}} "
        "in time order, not overlapping"
    )
    if not isinstance(value, list) or not 1 <= len(value) <= 2:
        raise ValueError(problem)
    out: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, Mapping) or not set(item) <= set(_WINDOW_KEYS):
            raise ValueError(problem)
        start, end = _whole(item.get("window_start")), _whole(item.get("window_end"))
        if not (_integer(start, 0, MAX_WINDOW_END) and _integer(end, 0, MAX_WINDOW_END)):
            raise ValueError(problem)
        if end < start or (out and start < out[-1]["window_end"]):
            raise ValueError(problem)
        window: dict[str, Any] = {"window_start": start, "window_end": end}
        mode = item.get("mode", "1 At Any Time")
        message = item.get("user_message", "")
        retries = _whole(item.get("max_retries", -1))
        if not (
            isinstance(mode, str) and len(mode) <= MAX_FILE_TYPE and _WINDOW_MODE.fullmatch(mode)
        ):
            raise ValueError(problem)
        if not (
            isinstance(message, str)
            and len(message) <= MAX_USER_MESSAGE
            and _PRINTABLE.fullmatch(message)
        ):
            raise ValueError(problem)
        if not _integer(retries, -1, 100):
            raise ValueError(problem)
        window.update(mode=mode, user_message=message, max_retries=retries)
        out.append(window)
    return out


def _delay(args: Mapping[str, Any]) -> int | None:
    if "delay_seconds" not in args:
        return None
    delay = args["delay_seconds"]
    if isinstance(delay, float) and delay.is_integer():
        delay = int(delay)
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int)
        or not 0 <= delay <= MAX_TRANSFER_DELAY
    ):
        raise ValueError(f"delay_seconds must be an integer from 0 to {MAX_TRANSFER_DELAY}")
    return delay


def download_args(args: Mapping[str, Any]) -> dict[str, Any]:
    present = [key for key in ("file", "firmware_image") if key in args]
    if len(present) != 1:
        raise ValueError("give exactly one of file and firmware_image")
    clean = a.positive_id(args, present[0], present[0].replace("_", " "))
    if "file_type" in args:
        if not download_file_type(args["file_type"]):
            raise ValueError(
                "file_type must be a Download FileType: '1 Firmware Upgrade Image', '2 Web "
                "Content', '3 Vendor Configuration File', '4 Tone File', '5 Ringer File' or "
                "'X <OUI> <name>'"
            )
        clean["file_type"] = args["file_type"]
    delay = _delay(args)
    if delay is not None:
        clean["delay_seconds"] = delay
    if "target_file_name" in args:
        name = args["target_file_name"]
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= MAX_TARGET_FILE_NAME
            or not _TARGET_NAME.fullmatch(name)
        ):
            raise ValueError(
                f"target_file_name must be 1 to {MAX_TARGET_FILE_NAME} printable ASCII "
                "characters without '/' or '\\'"
            )
        clean["target_file_name"] = name
    return clean


def schedule_download_args(args: Mapping[str, Any]) -> dict[str, Any]:
    # The windows say when: ScheduleDownload has no DelaySeconds (the registry refuses it).
    clean = download_args({k: v for k, v in args.items() if k != "time_windows"})
    clean["time_windows"] = time_windows(args.get("time_windows"))
    return clean


def cancel_transfer_args(args: Mapping[str, Any]) -> dict[str, Any]:
    return a.positive_id(args, "task", "transfer task")


def upload_args(args: Mapping[str, Any]) -> dict[str, Any]:
    file_type = args.get("file_type")
    if not upload_file_type(file_type):
        raise ValueError(
            "file_type must be an Upload FileType: '1 Vendor Configuration File', '2 Vendor "
            "Log File', '3 Vendor Configuration File <i>', '4 Vendor Log File <i>' or "
            "'X <OUI> <name>'"
        )
    clean: dict[str, Any] = {"file_type": file_type}
    delay = _delay(args)
    if delay is not None:
        clean["delay_seconds"] = delay
    return clean


# --- the RPC generators ---------------------------------------------------------------------


def firmware_update(run: TaskRun) -> Steps:
    signer = run.signer()
    image_id = run.task.args.get("firmware_image")
    image = run.store.get_firmware_image(image_id) if isinstance(image_id, int) else None
    if image is None:
        raise TaskError(f"firmware image {image_id} no longer exists", permanent=True)
    answer: rpc.DownloadResponse = yield from run.call(
        rpc.Download(
            command_key=task_key(run.task),
            file_type=FIRMWARE_FILE_TYPE,
            url=signer.firmware_url(run.task.id, image),
            file_size=image.size,
            target_file_name=image.filename,
        )
    )
    return run.transfer_started(answer, {"firmware_image": image.id})


def backup(run: TaskRun) -> Steps:
    signer = run.signer()
    answer: rpc.UploadResponse = yield from run.call(
        rpc.Upload(
            command_key=task_key(run.task),
            file_type=CONFIG_UPLOAD_FILE_TYPE,
            url=signer.backup_upload_url(run.task.id),
        )
    )
    return run.transfer_started(answer, {})


def restore(run: TaskRun) -> Steps:
    signer = run.signer()
    backup_id = run.task.args.get("backup")
    stored = run.store.get_backup(backup_id) if isinstance(backup_id, int) else None
    if stored is None or stored.device_id != run.task.device_id:
        raise TaskError(f"backup {backup_id} of this device no longer exists", permanent=True)
    answer: rpc.DownloadResponse = yield from run.call(
        rpc.Download(
            command_key=task_key(run.task),
            file_type=CONFIG_DOWNLOAD_FILE_TYPE,
            url=signer.backup_download_url(run.task.id, stored),
            file_size=stored.size,
        )
    )
    return run.transfer_started(answer, {"backup": stored.id})


@dataclass(frozen=True)
class _Target:
    """What a download sends: its signed URL, size, default name and FileType."""

    url: str
    size: int
    name: str
    file_type: str
    detail: dict[str, Any]  # what the task's result names


def _download_target(run: TaskRun, signer: TransferUrls) -> _Target:
    args = run.task.args
    if "firmware_image" in args:
        image = run.store.get_firmware_image(args["firmware_image"])
        if image is None:
            raise TaskError(
                f"firmware image {args['firmware_image']} no longer exists", permanent=True
            )
        return _Target(
            signer.firmware_url(run.task.id, image),
            image.size,
            image.filename,
            FIRMWARE_FILE_TYPE,
            {"firmware_image": image.id},
        )
    stored = run.store.get_file(args["file"])
    if stored is None:
        raise TaskError(f"file {args['file']} no longer exists", permanent=True)
    return _Target(
        signer.file_url(run.task.id, stored),
        stored.size,
        stored.filename,
        stored.file_type,
        {"file": stored.id},
    )


def download(run: TaskRun) -> Steps:
    """Download of a stored file or a firmware image, of any FileType."""
    signer = run.signer()
    target = _download_target(run, signer)
    file_type = run.task.args.get("file_type", target.file_type)
    answer: rpc.DownloadResponse = yield from run.call(
        rpc.Download(
            command_key=task_key(run.task),
            file_type=file_type,
            url=target.url,
            file_size=target.size,
            target_file_name=run.task.args.get("target_file_name", target.name),
            delay_seconds=run.task.args.get("delay_seconds", 0),
        )
    )
    return run.transfer_started(answer, {**target.detail, "file_type": file_type})


def schedule_download(run: TaskRun) -> Steps:
    """ScheduleDownload (CWMP 1.2) of a stored file or a firmware image, in time windows."""
    signer = run.signer()
    target = _download_target(run, signer)
    file_type = run.task.args.get("file_type", target.file_type)
    windows = tuple(
        rpc.TimeWindow(
            w["window_start"], w["window_end"], w["mode"], w["user_message"], w["max_retries"]
        )
        for w in run.task.args["time_windows"]
    )
    yield from run.call(
        rpc.ScheduleDownload(
            command_key=task_key(run.task),
            file_type=file_type,
            url=target.url,
            time_windows=windows,
            file_size=target.size,
            target_file_name=run.task.args.get("target_file_name", target.name),
        )
    )
    return WaitForTransfer({**target.detail, "file_type": file_type})


def cancel_transfer(run: TaskRun) -> Steps:
    """CancelTransfer (CWMP 1.2) of another task's transfer; that task ends cancelled."""
    target_id = run.task.args["task"]
    target = run.store.get_task(target_id)
    if (
        target is None
        or target.device_id != run.task.device_id
        or target.state
        not in (
            PENDING,
            IN_PROGRESS,
        )
    ):
        raise TaskError(f"task {target_id} is no longer a transfer under way", permanent=True)
    if target.state == PENDING and not target.attempts:
        # Never sent to the CPE: nothing to ask it.
        run.engine.cancel(target, now=run.now, actor="acs")
        return {"task": target.id, "sent": False}
    yield from run.call(rpc.CancelTransfer(command_key=task_key(target)))
    run.store.cancel_task(target.id, now=run.now, actor="acs", started=True)
    return {"task": target.id, "sent": True}


def get_all_queued_transfers(run: TaskRun) -> Steps:
    answer: rpc.GetAllQueuedTransfersResponse = yield from run.call(rpc.GetAllQueuedTransfers())
    return {
        "transfers": [
            {
                "command_key": t.command_key,
                "state": t.state,
                "is_download": t.is_download,
                "file_type": t.file_type,
                "file_size": t.file_size,
                "target_file_name": t.target_file_name,
            }
            for t in answer.transfers[:MAX_QUEUED]
        ]
    }


def upload(run: TaskRun) -> Steps:
    """Upload of the file the CPE offers under a FileType: stored as a file of the device."""
    signer = run.signer()
    file_type = run.task.args["file_type"]
    answer: rpc.UploadResponse = yield from run.call(
        rpc.Upload(
            command_key=task_key(run.task),
            file_type=file_type,
            url=signer.upload_url(run.task.id),
            delay_seconds=run.task.args.get("delay_seconds", 0),
        )
    )
    return run.transfer_started(answer, {"file_type": file_type})
