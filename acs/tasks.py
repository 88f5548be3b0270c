"""The persistent task engine: device operations -> CWMP RPC sequences, RPC results -> store.

Owns the meaning of every task kind (`TASK_KINDS`): how its arguments are validated, which
RPCs it sends, what the CPE's answers change in the store, and how faults, aborted sessions
and retries end a task. Tasks live in the store (`acs.store`), so a restart loses nothing;
the only in-memory state is the cursor of the task a live session is running
(`SessionTasks`). Nothing here blocks or touches SQL directly; the reactor is used only for
`seconds()` when a caller does not pass `now`.

A task kind is a generator method of `_TaskRun`: it yields the RPCs to send and receives the
CPE's answers, so a multi-RPC task (refresh, add_object) keeps its cursor in a plain local
variable. A CPE Fault is thrown into the generator as `_CpeFault` (a kind may catch it), and
the generator's return value decides the end: a result dict completes the task,
`_WaitForInform` leaves it in progress until a later Inform confirms it (reboot,
factory_reset), `_WaitForTransfer` until the CPE's TransferComplete (firmware_update, backup,
restore: see `SessionTasks.on_cpe_request`). A transfer never confirmed fails after
`transfer_timeout`, checked at the device's Informs and by `TransferWatch`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs.cwmp import rpc
from acs.periodic import PeriodicService
from acs.store import NotFound, Store
from acs.store.health import is_storage_full
from acs.store.models import (
    DONE,
    FAILED,
    IN_PROGRESS,
    PENDING,
    Backup,
    Device,
    FirmwareImage,
    Task,
)

log = Logger(namespace="acs.tasks")

TASK_KINDS = (
    "provision",
    "reboot",
    "factory_reset",
    "refresh",
    "set_parameters",
    "add_object",
    "delete_object",
    "get_parameter_attributes",
    "set_parameter_attributes",
    # sync = read the whole tree; device_factory_reset = FactoryReset keeping stored settings;
    # firmware_update = Download of a firmware image (args {"firmware_image": id}).
    "sync",
    "device_factory_reset",
    "firmware_update",
    # configuration_update = push the device's unconfirmed desired settings (args
    # {"all": true} = every stored one); reconf = re-push every stored setting.
    "configuration_update",
    "reconf",
    # backup = Upload of the vendor configuration file into a stored backup; restore =
    # Download of a stored backup back to the CPE (args {"backup": id}).
    "backup",
    "restore",
)

# Kinds whose acknowledged RPC is confirmed only by a later Inform ("M Reboot", "0 BOOTSTRAP").
_WAITS_FOR_INFORM = ("reboot", "factory_reset", "device_factory_reset")
# Kinds whose acknowledged RPC (Download/Upload status 1) is confirmed by a TransferComplete.
TRANSFER_KINDS = ("firmware_update", "backup", "restore")
# Everything else found in_progress at an Inform was stranded by a dead session: run it again.
_REQUEUE_KINDS = tuple(
    k for k in TASK_KINDS if k not in _WAITS_FOR_INFORM and k not in TRANSFER_KINDS
)
# FileType values of TR-069 Download (A.3.2.8) and Upload (A.4.1.5).
FIRMWARE_FILE_TYPE = "1 Firmware Upgrade Image"
CONFIG_UPLOAD_FILE_TYPE = "1 Vendor Configuration File"
CONFIG_DOWNLOAD_FILE_TYPE = "3 Vendor Configuration File"
# Keys of a transfer task's result (JSON in the store) that the engine itself reads back.
_ACKNOWLEDGED = "awaiting_transfer_complete"  # Download/Upload answered status 1
_ACKNOWLEDGED_RPC = "acknowledged"  # the CPE answered a reboot's or reset's RPC
_VERSION_CHECK = "version_check"  # firmware: "pending" until an Inform reports the version
REPORT_FAILED = "report_failed"  # firmware: failure still shown in pending_settings

# At most one pending task of these kinds per device: a second queue() returns the first.
_COALESCED_KINDS = ("configuration_update", "reconf")
# Desired settings per SetParameterValues: big pushes are split so no envelope gets huge.
SPV_BATCH = 64

# CPE faults that will not go away by asking again (TR-069 A.5.1 codes).
PERMANENT_FAULTS = frozenset({9000, 9003, 9005, 9006, 9007, 9008})
# TransferComplete faults that will not go away by transferring again (authentication,
# protocol, no such file, corrupted or unauthenticated file); anything else (9010/9011
# generic failures, 9015 file server unreachable, 9017 incomplete, e.g. across the ACS's own
# restart) is retried with the usual backoff.
PERMANENT_TRANSFER_FAULTS = frozenset({9012, 9013, 9016, 9018, 9019})

DEFAULT_ROOT = "Device."
_ROOTS = ("Device.", "InternetGatewayDevice.")

# What the ACS tells a CPE it supports (answer to the CPE's GetRPCMethods).
ACS_METHODS = (
    "Inform",
    "GetRPCMethods",
    "TransferComplete",
    "AutonomousTransferComplete",
    "RequestDownload",
    "Kicked",
)

XSD_TYPES = (
    "xsd:string",
    "xsd:int",
    "xsd:unsignedInt",
    "xsd:long",
    "xsd:unsignedLong",
    "xsd:boolean",
    "xsd:dateTime",
    "xsd:base64",
    "xsd:hexBinary",
    "xsd:decimal",
)
_INT_RANGES = {
    "xsd:int": (-(2**31), 2**31 - 1),
    "xsd:unsignedInt": (0, 2**32 - 1),
    "xsd:long": (-(2**63), 2**63 - 1),
    "xsd:unsignedLong": (0, 2**64 - 1),
}

# Limits from cwmp-1-2.xsd (Name <= 256, CommandKey/ParameterKey <= 32); the others keep one
# API call from building an envelope no CPE will swallow.
MAX_PATH = 256
MAX_VALUE = 65535
MAX_LIST = 1024
MAX_ACCESS_ENTRY = 64

# Path segments: names, instance numbers, and alias-based addressing "[alias]".
_SEGMENT = r"(?:[A-Za-z0-9_\-]+|\[[A-Za-z0-9_\-.:]+\])"
_PATH_RE = re.compile(rf"^[A-Za-z_][A-Za-z0-9_\-]*(?:\.{_SEGMENT})*\.?$")
_INSTANCE_RE = re.compile(r"\.(?:\d+|\[[A-Za-z0-9_\-.:]+\])\.$")

# When an automatic provisioning failed for good, don't queue another one at every Inform
# (it would fail the same way each session); try again after this long, or on BOOTSTRAP.
REPROVISION_AFTER = 3600.0


def task_key(task: Task) -> str:
    """The CommandKey / ParameterKey the ACS sends for `task` (<= 32 chars, stable)."""
    return f"acs-task-{task.id}"


def task_id_of_key(key: str) -> int | None:
    """The task id a CommandKey made by `task_key` names; None for any other key."""
    prefix = "acs-task-"
    if not key.startswith(prefix):
        return None
    digits = key[len(prefix) :]
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        return None
    return int(digits)


class TransferUrls(Protocol):
    """Where a CPE fetches or sends a task's file: `acs.files.UrlSigner` (signed, expiring).

    A Protocol so the engine does not import the file server and tests can pass a fake."""

    def firmware_url(self, task_id: int, image: FirmwareImage) -> str: ...

    def backup_upload_url(self, task_id: int) -> str: ...

    def backup_download_url(self, task_id: int, backup: Backup) -> str: ...


def _resolve_root(device: Device | None) -> str:
    root = device.data_model_root if device is not None else None
    return root if root in _ROOTS else DEFAULT_ROOT


# --- argument validation -----------------------------------------------------------------


def _check_path(value: Any, what: str, *, object_path: bool | None = None) -> str:
    """A full parameter path; object_path True = must end with ".", False = must not."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > MAX_PATH:
        raise ValueError(f"{what} is longer than {MAX_PATH} characters")
    if not _PATH_RE.match(value):
        raise ValueError(f"{what} {value!r} is not a valid parameter path")
    if object_path is True and not value.endswith("."):
        raise ValueError(f"{what} {value!r} must be an object path ending with '.'")
    if object_path is False and value.endswith("."):
        raise ValueError(f"{what} {value!r} must be a parameter name, not an object path")
    return value


def _check_keys(args: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(args) - set(allowed))
    if extra:
        raise ValueError(f"unknown argument(s) for {where}: {', '.join(extra)}")


def _check_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{what} must be a non-empty list")
    if len(value) > MAX_LIST:
        raise ValueError(f"{what} has more than {MAX_LIST} entries")
    return list(value)


def _normalize_type(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string such as 'xsd:string'")
    xsd = value if value.startswith("xsd:") else f"xsd:{value}"
    if xsd not in XSD_TYPES:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(XSD_TYPES)}")
    return xsd


def _check_value(value: Any, xsd: str | None, what: str) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"{what} must be a string")
    if len(text) > MAX_VALUE:
        raise ValueError(f"{what} is longer than {MAX_VALUE} characters")
    if xsd == "xsd:boolean" and text not in ("true", "false", "1", "0"):
        raise ValueError(f"{what} {text!r} is not a boolean (true, false, 1 or 0)")
    if xsd in _INT_RANGES:
        low, high = _INT_RANGES[xsd]
        try:
            number = int(text, 10)
        except ValueError:
            raise ValueError(f"{what} {text!r} is not an integer ({xsd})") from None
        if not low <= number <= high:
            raise ValueError(f"{what} {text} is out of range for {xsd}")
    return text


def validate_args(kind: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check `args` for `kind` and return their normalized, JSON-ready form.

    Raises ValueError with a message meant for the API user.
    """
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(TASK_KINDS)}")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ValueError("task arguments must be an object")
    if kind in ("provision", "reboot", "factory_reset", "sync", "device_factory_reset"):
        _check_keys(args, (), kind)
        return {}
    if kind == "firmware_update":
        _check_keys(args, ("firmware_image",), kind)
        image = args.get("firmware_image")
        if isinstance(image, bool) or not isinstance(image, int) or image < 1:
            raise ValueError("firmware_image must be a firmware image id (positive integer)")
        return {"firmware_image": image}
    if kind == "backup":
        _check_keys(args, (), kind)
        return {}
    if kind == "restore":
        _check_keys(args, ("backup",), kind)
        backup = args.get("backup")
        if isinstance(backup, bool) or not isinstance(backup, int) or backup < 1:
            raise ValueError("backup must be a backup id (positive integer)")
        return {"backup": backup}
    if kind == "configuration_update":
        _check_keys(args, ("all",), kind)
        push_all = args.get("all", False)
        if not isinstance(push_all, bool):
            raise ValueError("all must be a boolean")
        return {"all": True} if push_all else {}
    if kind == "reconf":
        _check_keys(args, (), kind)
        return {}
    if kind == "refresh":
        _check_keys(args, ("path",), kind)
        path = args.get("path")
        if path is None or path == "":
            return {}
        return {"path": _check_path(path, "path")}
    if kind == "set_parameters":
        _check_keys(args, ("parameters",), kind)
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, item in enumerate(_check_list(args.get("parameters"), "parameters")):
            where = f"parameters[{i}]"
            if not isinstance(item, Mapping):
                raise ValueError(f"{where} must be an object with name, value and type")
            _check_keys(item, ("name", "value", "type"), where)
            name = _check_path(item.get("name"), f"{where}.name", object_path=False)
            if name in seen:
                raise ValueError(f"{where}.name {name!r} is given twice")
            seen.add(name)
            entry: dict[str, Any] = {"name": name}
            xsd = None
            if item.get("type") is not None:
                xsd = _normalize_type(item["type"], f"{where}.type")
            if "value" not in item or item["value"] is None:
                raise ValueError(f"{where}.value is required")
            entry["value"] = _check_value(item["value"], xsd, f"{where}.value")
            if xsd is not None:
                entry["type"] = xsd
            out.append(entry)
        return {"parameters": out}
    if kind == "add_object":
        _check_keys(args, ("object_name",), kind)
        return {
            "object_name": _check_path(args.get("object_name"), "object_name", object_path=True)
        }
    if kind == "delete_object":
        _check_keys(args, ("object_name",), kind)
        name = _check_path(args.get("object_name"), "object_name", object_path=True)
        if not _INSTANCE_RE.search(name):
            raise ValueError(
                f"object_name {name!r} must name one instance, e.g. '...PortMapping.3.'"
            )
        return {"object_name": name}
    if kind == "get_parameter_attributes":
        _check_keys(args, ("names",), kind)
        names = [
            _check_path(n, f"names[{i}]")
            for i, n in enumerate(_check_list(args.get("names"), "names"))
        ]
        return {"names": names}
    # set_parameter_attributes
    _check_keys(args, ("parameters",), kind)
    attrs: list[dict[str, Any]] = []
    for i, item in enumerate(_check_list(args.get("parameters"), "parameters")):
        where = f"parameters[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be an object with name and notification")
        _check_keys(item, ("name", "notification", "access_list"), where)
        entry = {"name": _check_path(item.get("name"), f"{where}.name")}
        notification = item.get("notification")
        access = item.get("access_list")
        if notification is None and access is None:
            raise ValueError(f"{where} needs a notification (0..6) and/or an access_list")
        if notification is not None:
            if isinstance(notification, bool) or not isinstance(notification, int):
                raise ValueError(f"{where}.notification must be an integer 0..6")
            if not 0 <= notification <= 6:
                raise ValueError(f"{where}.notification must be between 0 and 6")
            entry["notification"] = notification
        if access is not None:
            if not isinstance(access, list | tuple) or len(access) > 16:
                raise ValueError(f"{where}.access_list must be a list of at most 16 strings")
            for entity in access:
                if not isinstance(entity, str) or not entity or len(entity) > MAX_ACCESS_ENTRY:
                    raise ValueError(
                        f"{where}.access_list entries must be non-empty strings "
                        f"of at most {MAX_ACCESS_ENTRY} characters (e.g. 'Subscriber')"
                    )
            entry["access_list"] = list(access)
        attrs.append(entry)
    return {"parameters": attrs}


# --- task runs ---------------------------------------------------------------------------


class _CpeFault(Exception):
    """The CPE answered the task's last RPC with a Fault (thrown into the generator)."""

    def __init__(self, fault: rpc.Fault) -> None:
        super().__init__(fault.code, fault.string)
        self.fault = fault


class _SettingsRefused(_CpeFault):
    """A settings push the CPE refused for good; `extra` (which values were refused, by
    fingerprint) goes in the task result, not in history."""

    def __init__(self, fault: rpc.Fault, extra: dict[str, Any]) -> None:
        super().__init__(fault)
        self.extra = extra


class _TaskError(Exception):
    """A task ends badly for a reason other than a CPE Fault."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class _WaitForInform:
    """Returned by a kind whose RPC was acknowledged but which a later Inform confirms."""


@dataclass(frozen=True)
class _WaitForTransfer:
    """Returned by a transfer kind whose Download/Upload the CPE answered with status 1:
    a TransferComplete carrying the task's CommandKey ends it. `detail` goes in the result."""

    detail: dict[str, Any]


_Steps = Generator[rpc.Message, rpc.Message, dict[str, Any] | _WaitForInform | _WaitForTransfer]


def _fault_summary(fault: rpc.Fault) -> str:
    text = fault.string or f"CPE fault {fault.code}"
    if fault.set_parameter_values_faults:
        details = "; ".join(
            f"{f.name}: {f.code} {f.string}".rstrip() for f in fault.set_parameter_values_faults
        )
        text = f"{text} ({details})"
    return text


class _TaskRun:
    """One attempt at one task inside one session: the generator and what it needs."""

    def __init__(self, engine: TaskEngine, task: Task, device: Device | None, now: float) -> None:
        self.engine = engine
        self.store = engine.store
        self.task = task
        self.device = device
        self.now = now
        self.request: rpc.Message | None = None  # the RPC sent and not yet answered
        # Set once the CPE has applied a non-repeatable change (AddObject): from then on the
        # task must complete with this result, never be retried, even if the session dies.
        self.committed: dict[str, Any] | None = None
        self.steps: _Steps = getattr(self, f"_run_{task.kind}")()

    @property
    def root(self) -> str:
        return _resolve_root(self.device)

    def _expect(self, request: rpc.Message, answer: rpc.Message) -> None:
        expected = rpc.ACS_REQUESTS.get(type(request))
        if expected is not None and not isinstance(answer, expected):
            raise _TaskError(
                f"CPE answered {type(request).__name__} with {type(answer).__name__}",
                permanent=False,
            )

    def _call(self, request: rpc.Message) -> Generator[rpc.Message, rpc.Message, Any]:
        """Yield `request`, check the answer's type, return it (typed by the caller)."""
        answer = yield request
        self._expect(request, answer)
        return answer

    def _fetch_tree(self, path: str) -> Generator[rpc.Message, rpc.Message, int]:
        """GPN + batched GPVs of `path` into the parameter cache; returns the value count."""
        names_answer: rpc.GetParameterNamesResponse = yield from self._call(
            rpc.GetParameterNames(path=path, next_level=False)
        )
        infos = [p for p in names_answer.parameters if p.name]
        device_id = self.task.device_id
        self.store.upsert_parameters(
            device_id, [(p.name, None, None, p.writable) for p in infos], now=self.now
        )
        self._drop_stale(path, {p.name for p in infos})
        leaves = [p.name for p in infos if not p.name.endswith(".")]
        batch = self.engine.gpv_batch
        count = 0
        for start in range(0, len(leaves), batch):
            values: rpc.GetParameterValuesResponse = yield from self._call(
                rpc.GetParameterValues(names=tuple(leaves[start : start + batch]))
            )
            rows = [(p.name, p.value, p.type, None) for p in values.parameters if p.name]
            self.store.upsert_parameters(device_id, rows, now=self.now)
            count += len(rows)
        return count

    def _drop_stale(self, path: str, names: set[str]) -> None:
        """Forget cached parameters under `path` the CPE no longer reports (deleted objects).

        The store deletes by prefix, so a stale path is dropped only when no live name starts
        with it (dropping "X.Name" must not take "X.NameSuffix" with it).
        """
        if not path.endswith("."):
            return
        device_id = self.task.device_id
        dropped: list[str] = []
        for cached in self.store.get_parameters(device_id, path):
            if cached.path in names or any(cached.path.startswith(d) for d in dropped):
                continue
            # Drop the outermost vanished object so its whole subtree goes at once; fall back
            # to the path itself. Some CPEs list no object entries, hence the startswith test.
            parts = cached.path[len(path) :].split(".")
            candidates = [path + ".".join(parts[:i]) + "." for i in range(1, len(parts))]
            for prefix in (*candidates, cached.path):
                if not any(n.startswith(prefix) for n in names):
                    self.store.delete_parameters(device_id, prefix)
                    dropped.append(prefix)
                    break

    # Each kind: yields RPCs, receives answers, returns a result or _WaitForInform.

    def _run_provision(self) -> _Steps:
        device = self.device
        if device is None:
            raise _TaskError("device no longer exists", permanent=True)
        ms = f"{self.root}ManagementServer."
        identity = device.unique_identifier or device.serial_number
        username = device.connection_request_username or identity
        # Fresh secrets each attempt: they only become the device's once the CPE accepted them.
        password = secrets.token_urlsafe(16)
        public = [
            rpc.ParameterValue(f"{ms}PeriodicInformEnable", "true", "xsd:boolean"),
            rpc.ParameterValue(
                f"{ms}PeriodicInformInterval", str(device.update_frequency), "xsd:unsignedInt"
            ),
            rpc.ParameterValue(f"{ms}ConnectionRequestUsername", username, "xsd:string"),
        ]
        secrets_set = [rpc.ParameterValue(f"{ms}ConnectionRequestPassword", password, "xsd:string")]
        own: dict[str, str] = {}
        if self.engine.device_credentials and not device.username:
            # The device's own ACS credentials: from its next session on, only they let a
            # client Inform as this device (TR-069 3.4.4: the CPE authenticates to the ACS).
            own = {"username": identity, "password": secrets.token_urlsafe(24)}
            public.append(rpc.ParameterValue(f"{ms}Username", own["username"], "xsd:string"))
            secrets_set.append(rpc.ParameterValue(f"{ms}Password", own["password"], "xsd:string"))
        answer: rpc.SetParameterValuesResponse = yield from self._call(
            rpc.SetParameterValues(
                parameters=(*public, *secrets_set), parameter_key=task_key(self.task)
            )
        )
        self._check_status(answer.status)
        self.store.update_device(
            device.id,
            now=self.now,
            actor="acs",
            connection_request_username=username,
            connection_request_password=password,
            provisioned=True,
            **own,
        )
        self.store.upsert_parameters(
            device.id, [(p.name, p.value, p.type, None) for p in public], now=self.now
        )
        return {"status": answer.status, "credentials_assigned": bool(own)}

    def _run_reboot(self) -> _Steps:
        yield from self._call(rpc.Reboot(command_key=task_key(self.task)))
        return _WaitForInform()

    def _run_factory_reset(self) -> _Steps:
        yield from self._call(rpc.FactoryReset())
        return _WaitForInform()

    def _run_sync(self) -> _Steps:
        # ACS <- CPE: the whole tree becomes the cached (stored) configuration, and the
        # device's own desired settings take the CPE's values (confirmed), so a reconf right
        # after sends nothing. Type defaults stay type defaults: they are not pinned.
        count = yield from self._fetch_tree(self.root)
        device_id = self.task.device_id
        adopted = {
            s.path: s.value if s.applied else s.cached
            for s in self.engine.effective_settings(device_id, refusals=False)
            if s.source == "device" and s.cached is not None
        }
        self.store.adopt_cpe_settings(device_id, adopted, now=self.now, actor="acs")
        self.store.set_last_configuration(device_id, now=self.now)
        return {"parameters": count}

    def _run_device_factory_reset(self) -> _Steps:
        # Same RPC as factory_reset; the difference is on the ACS side (settings kept and
        # re-applied after the CPE's 0 BOOTSTRAP, see TaskEngine.on_inform).
        yield from self._call(rpc.FactoryReset())
        return _WaitForInform()

    def _signer(self) -> TransferUrls:
        signer = self.engine.signer
        if signer is None:
            raise _TaskError("file transfers are not configured (no URL signer)", permanent=True)
        return signer

    def _transfer_started(
        self, answer: rpc.DownloadResponse | rpc.UploadResponse, detail: dict[str, Any]
    ) -> dict[str, Any] | _WaitForTransfer:
        """Status 1: wait for the TransferComplete; status 0: the transfer is already over."""
        if answer.status == 1:
            return _WaitForTransfer(detail)
        if answer.status != 0:
            raise _TaskError(f"CPE answered with unknown status {answer.status}", permanent=True)
        times = {"start_time": answer.start_time, "complete_time": answer.complete_time}
        return self.engine.transfer_result(self.task, {**detail, "status": 0, **times}, self.now)

    def _run_firmware_update(self) -> _Steps:
        signer = self._signer()
        image_id = self.task.args.get("firmware_image")
        image = self.store.get_firmware_image(image_id) if isinstance(image_id, int) else None
        if image is None:
            raise _TaskError(f"firmware image {image_id} no longer exists", permanent=True)
        answer: rpc.DownloadResponse = yield from self._call(
            rpc.Download(
                command_key=task_key(self.task),
                file_type=FIRMWARE_FILE_TYPE,
                url=signer.firmware_url(self.task.id, image),
                file_size=image.size,
                target_file_name=image.filename,
            )
        )
        return self._transfer_started(answer, {"firmware_image": image.id})

    def _run_backup(self) -> _Steps:
        signer = self._signer()
        answer: rpc.UploadResponse = yield from self._call(
            rpc.Upload(
                command_key=task_key(self.task),
                file_type=CONFIG_UPLOAD_FILE_TYPE,
                url=signer.backup_upload_url(self.task.id),
            )
        )
        return self._transfer_started(answer, {})

    def _run_restore(self) -> _Steps:
        signer = self._signer()
        backup_id = self.task.args.get("backup")
        backup = self.store.get_backup(backup_id) if isinstance(backup_id, int) else None
        if backup is None or backup.device_id != self.task.device_id:
            raise _TaskError(f"backup {backup_id} of this device no longer exists", permanent=True)
        answer: rpc.DownloadResponse = yield from self._call(
            rpc.Download(
                command_key=task_key(self.task),
                file_type=CONFIG_DOWNLOAD_FILE_TYPE,
                url=signer.backup_download_url(self.task.id, backup),
                file_size=backup.size,
            )
        )
        return self._transfer_started(answer, {"backup": backup.id})

    def _run_configuration_update(self) -> _Steps:
        # {"all": true}: every setting the cache does not show applied, even confirmed ones.
        result = yield from self._push_settings(everything=bool(self.task.args.get("all")))
        return result

    def _run_reconf(self) -> _Steps:
        # ACS -> CPE: every stored setting the cache does not show applied, refused ones too
        # (the operator asks again). After a sync nothing differs, so nothing is sent.
        result = yield from self._push_settings(everything=True, retry_refused=True)
        return result

    def _push_settings(
        self, *, everything: bool, retry_refused: bool = False
    ) -> Generator[rpc.Message, rpc.Message, dict[str, Any]]:
        """SPV of the effective settings that differ from the cache, in batches, typed with
        the model's xsd type; each accepted batch is confirmed at once, so a fault in a later
        batch does not resend the earlier ones.

        A permanent fault remembers the refused values (in the task result, by fingerprint)
        so they are not pushed again at every Inform, only once they change; the others are
        pushed by a follow-up configuration_update in the same session.
        """
        device_id = self.task.device_id
        states = self.engine.effective_settings(device_id, refusals=True)
        refused = {
            s.path: {"fp": value_fingerprint(s.value), "code": s.refused[0], "string": s.refused[1]}
            for s in states
            if s.refused is not None
        }
        pending = [
            s
            for s in states
            if (s.needs_push or (everything and not s.applied))
            and (retry_refused or s.refused is None)
        ]
        applied = 0
        status = 0
        sent: set[str] = set()
        for start in range(0, len(pending), SPV_BATCH):
            batch = pending[start : start + SPV_BATCH]
            values = tuple(rpc.ParameterValue(s.path, s.value, s.type) for s in batch)
            try:
                answer: rpc.SetParameterValuesResponse = yield from self._call(
                    rpc.SetParameterValues(parameters=values, parameter_key=task_key(self.task))
                )
            except _CpeFault as exc:
                new = self._refusals(exc.fault, batch)
                if not new:
                    raise
                memo = {p: m for p, m in refused.items() if p not in sent}
                memo.update(new)
                if any(s.path not in sent and s.path not in memo for s in pending):
                    # The SPV was refused as a whole: the acceptable settings go again now.
                    self.engine.queue(
                        device_id, "configuration_update", {}, actor="acs", wake=False, now=self.now
                    )
                raise _SettingsRefused(exc.fault, {"refused": memo}) from None
            self._check_status(answer.status)
            self._settings_applied(values)
            sent.update(v.name for v in values)
            applied += len(values)
            status = max(status, answer.status)
        if applied:
            self.store.set_last_configuration(device_id, now=self.now)
        result: dict[str, Any] = {"parameters": applied, "status": status}
        still = {p: m for p, m in refused.items() if p not in sent}
        if still:
            result["refused"] = still  # carried forward: the latest push holds the memory
        return result

    @staticmethod
    def _refusals(fault: rpc.Fault, batch: list[EffectiveSetting]) -> dict[str, dict[str, Any]]:
        """The settings of `batch` the CPE refused for good (empty: a transient fault)."""
        if fault.code not in PERMANENT_FAULTS:
            return {}
        by_path = {s.path: s for s in batch}
        out: dict[str, dict[str, Any]] = {}
        for f in fault.set_parameter_values_faults:
            s = by_path.get(f.name)
            if s is not None and f.code in _PERMANENT_PARAMETER_FAULTS:
                out[s.path] = {"fp": value_fingerprint(s.value), "code": f.code, "string": f.string}
        if not fault.set_parameter_values_faults:
            # No per-parameter detail: the whole batch is what the CPE will not take.
            for s in batch:
                out[s.path] = {
                    "fp": value_fingerprint(s.value),
                    "code": fault.code,
                    "string": fault.string,
                }
        return out

    def _settings_applied(self, values: tuple[rpc.ParameterValue, ...]) -> None:
        device_id = self.task.device_id
        # Only what the CPE got is confirmed: a value the API changed while this SPV was on
        # the wire stays pending for the next push.
        stored = {s.path: s.value for s in self.store.desired_settings(device_id)}
        self.store.confirm_settings(
            device_id, [v.name for v in values if stored.get(v.name) == v.value], now=self.now
        )
        self.store.upsert_parameters(
            device_id, [(v.name, v.value, v.type, None) for v in values], now=self.now
        )
        # The liveness window follows the CPE's periodic inform interval (spec section 2).
        interval_path = f"{self.root}ManagementServer.PeriodicInformInterval"
        interval = next((v.value for v in values if v.name == interval_path), None)
        if interval is not None and interval.isascii() and interval.isdigit() and int(interval) > 0:
            self.store.update_device(
                device_id, now=self.now, actor="acs", update_frequency=int(interval)
            )

    def _run_refresh(self) -> _Steps:
        path = self.task.args.get("path") or self.root
        count = yield from self._fetch_tree(path)
        return {"parameters": count}

    def _run_set_parameters(self) -> _Steps:
        device_id = self.task.device_id
        values = []
        for item in self.task.args["parameters"]:
            xsd = item.get("type")
            if xsd is None:
                cached = self.store.get_parameter(device_id, item["name"])
                xsd = cached.type if cached is not None and cached.type else "xsd:string"
            values.append(rpc.ParameterValue(item["name"], item["value"], xsd))
        answer: rpc.SetParameterValuesResponse = yield from self._call(
            rpc.SetParameterValues(parameters=tuple(values), parameter_key=task_key(self.task))
        )
        self._check_status(answer.status)
        self.store.upsert_parameters(
            device_id, [(v.name, v.value, v.type, None) for v in values], now=self.now
        )
        return {"status": answer.status}

    def _run_add_object(self) -> _Steps:
        name = self.task.args["object_name"]
        answer: rpc.AddObjectResponse = yield from self._call(
            rpc.AddObject(object_name=name, parameter_key=task_key(self.task))
        )
        self._check_status(answer.status)
        result: dict[str, Any] = {
            "instance_number": answer.instance_number,
            "status": answer.status,
        }
        self.committed = result
        # The object exists now whatever happens next: a failed read-back must not fail the
        # task (a retry would create a second instance), so its fault only goes in the result.
        try:
            result["parameters"] = yield from self._fetch_tree(f"{name}{answer.instance_number}.")
        except _CpeFault as exc:
            result["refresh_fault"] = {"code": exc.fault.code, "string": exc.fault.string}
        except _TaskError as exc:
            result["refresh_fault"] = {"code": None, "string": exc.message}
        return result

    def _run_delete_object(self) -> _Steps:
        name = self.task.args["object_name"]
        answer: rpc.DeleteObjectResponse = yield from self._call(
            rpc.DeleteObject(object_name=name, parameter_key=task_key(self.task))
        )
        self._check_status(answer.status)
        self.store.delete_parameters(self.task.device_id, name)
        return {"status": answer.status}

    def _run_get_parameter_attributes(self) -> _Steps:
        answer: rpc.GetParameterAttributesResponse = yield from self._call(
            rpc.GetParameterAttributes(names=tuple(self.task.args["names"]))
        )
        return {
            "attributes": [
                {"name": a.name, "notification": a.notification, "access_list": list(a.access_list)}
                for a in answer.parameters
            ]
        }

    def _run_set_parameter_attributes(self) -> _Steps:
        structs = tuple(
            rpc.SetParameterAttributesStruct(
                name=item["name"],
                notification_change="notification" in item,
                notification=item.get("notification", 0),
                access_list_change="access_list" in item,
                access_list=tuple(item.get("access_list", ())),
            )
            for item in self.task.args["parameters"]
        )
        yield from self._call(rpc.SetParameterAttributes(parameters=structs))
        return {}

    @staticmethod
    def _check_status(status: int) -> None:
        # 0 = applied, 1 = committed, applied later (e.g. after a reboot): both are success.
        if status not in (0, 1):
            raise _TaskError(f"CPE answered with unknown status {status}", permanent=True)


# --- effective settings ------------------------------------------------------------------
# A device's effective settings are its device type's default_settings overlaid by its own
# desired settings. After every Inform they are compared with the parameter cache (what the
# CPE last reported or accepted); the differing ones are pushed by a configuration_update.

# CPE fault codes of one parameter that asking again with the same value will not fix.
_PERMANENT_PARAMETER_FAULTS = frozenset({9005, 9006, 9007, 9008})
# The ACS's own connection to the CPE: never pushed from type defaults (the API refuses
# them as device settings), or a typo in a default could cut the whole type off.
_ACS_MANAGED_SUFFIXES = (
    "ManagementServer.URL",
    "ManagementServer.Username",
    "ManagementServer.Password",
    "ManagementServer.ConnectionRequestUsername",
    "ManagementServer.ConnectionRequestPassword",
)
# xsd types of common writable TR-181 / TR-098 parameters (root stripped, instance numbers
# as "{i}"), used when the cache has not told us the type: "12345" as an SSID must go as a
# string, not the unsignedInt the value alone suggests.
_MODEL_TYPES = {
    "ManagementServer.PeriodicInformEnable": "xsd:boolean",
    "ManagementServer.PeriodicInformInterval": "xsd:unsignedInt",
    "ManagementServer.PeriodicInformTime": "xsd:dateTime",
    "ManagementServer.UpgradesManaged": "xsd:boolean",
    "ManagementServer.DefaultActiveNotificationThrottle": "xsd:unsignedInt",
    "ManagementServer.CWMPRetryMinimumWaitInterval": "xsd:unsignedInt",
    "ManagementServer.CWMPRetryIntervalMultiplier": "xsd:unsignedInt",
    "DeviceInfo.ProvisioningCode": "xsd:string",
    "Time.Enable": "xsd:boolean",
    "Time.NTPServer1": "xsd:string",
    "Time.NTPServer2": "xsd:string",
    "Time.NTPServer3": "xsd:string",
    "Time.LocalTimeZone": "xsd:string",
    "Time.LocalTimeZoneName": "xsd:string",
    "WiFi.Radio.{i}.Enable": "xsd:boolean",
    "WiFi.Radio.{i}.Channel": "xsd:unsignedInt",
    "WiFi.Radio.{i}.AutoChannelEnable": "xsd:boolean",
    "WiFi.Radio.{i}.TransmitPower": "xsd:int",
    "WiFi.SSID.{i}.Enable": "xsd:boolean",
    "WiFi.SSID.{i}.SSID": "xsd:string",
    "WiFi.AccessPoint.{i}.Enable": "xsd:boolean",
    "WiFi.AccessPoint.{i}.SSIDAdvertisementEnabled": "xsd:boolean",
    "WiFi.AccessPoint.{i}.Security.ModeEnabled": "xsd:string",
    "WiFi.AccessPoint.{i}.Security.KeyPassphrase": "xsd:string",
    "LANDevice.{i}.WLANConfiguration.{i}.Enable": "xsd:boolean",
    "LANDevice.{i}.WLANConfiguration.{i}.RadioEnabled": "xsd:boolean",
    "LANDevice.{i}.WLANConfiguration.{i}.SSID": "xsd:string",
    "LANDevice.{i}.WLANConfiguration.{i}.Channel": "xsd:unsignedInt",
    "LANDevice.{i}.WLANConfiguration.{i}.AutoChannelEnable": "xsd:boolean",
    "LANDevice.{i}.WLANConfiguration.{i}.BeaconType": "xsd:string",
    "LANDevice.{i}.WLANConfiguration.{i}.KeyPassphrase": "xsd:string",
    "LANDevice.{i}.WLANConfiguration.{i}.SSIDAdvertisementEnabled": "xsd:boolean",
}
_INSTANCE_SEGMENT = re.compile(r"\.\d+(?=\.|$)")
_BOOLEAN_TEXT = {"true": True, "1": True, "false": False, "0": False}


def model_type(path: str) -> str | None:
    """The xsd type of a well-known standard parameter, None when the path is not one."""
    for root in _ROOTS:
        if path.startswith(root):
            return _MODEL_TYPES.get(_INSTANCE_SEGMENT.sub(".{i}", path[len(root) :]))
    return None


def values_equal(a: str, b: str, xsd: str) -> bool:
    """Whether the CPE's value `a` is the desired `b` (CPEs report booleans as 1/0 and
    integers in their own spelling; anything else compares as text)."""
    if a == b:
        return True
    if xsd == "xsd:boolean":
        left, right = _BOOLEAN_TEXT.get(a.strip().lower()), _BOOLEAN_TEXT.get(b.strip().lower())
        return left is not None and left == right
    if xsd in _INT_RANGES:
        try:
            return int(a.strip(), 10) == int(b.strip(), 10)
        except ValueError:
            return False
    return False


def value_fingerprint(value: str) -> str:
    """What a refused setting is remembered by: the value may be a secret, so not itself."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class EffectiveSetting:
    """One effective setting of a device and where it stands against the CPE."""

    path: str
    value: str
    type: str  # the xsd type it is (or would be) sent with
    source: str  # "device" (the device's own setting) or "type" (device type default)
    cached: str | None  # the CPE's last reported or accepted value, if known
    applied: bool  # the cache holds this value
    needs_push: bool  # the next configuration_update sends it
    # (code, string) of the CPE's fault when it refused exactly this value for good.
    refused: tuple[int | None, str | None] | None
    updated: float | None  # when the device's own setting last changed (None: type default)

    @property
    def confirmed(self) -> bool:
        return not self.needs_push


def _effective(store: Store, device: Device, *, refusals: bool) -> list[EffectiveSetting]:
    """The device's effective settings (one query; a second one with `refusals`)."""
    root = device.data_model_root if device.data_model_root in _ROOTS else None
    refused = store.refused_settings(device.id) if refusals else {}
    out: list[EffectiveSetting] = []
    for source, setting, cached in store.effective_setting_rows(device.id):
        path, value = setting.path, setting.value
        if source == "type" and (
            (root is not None and not path.startswith(root))
            or path.endswith(_ACS_MANAGED_SUFFIXES)
            or not store.is_setting_path(path)
        ):
            continue  # a default for the other data model, or one the ACS owns
        xsd = (
            (cached.type if cached is not None and cached.type else None)
            or model_type(path)
            or setting.type
            or store.infer_setting_type(value)
        )
        known = cached.value if cached is not None else None
        applied = known is not None and values_equal(known, value, xsd)
        if source == "device":
            # An unconfirmed device setting goes even if the cache agrees (the cache may be
            # stale); a confirmed one only when the CPE reported something else since.
            needs_push = not setting.confirmed or (known is not None and not applied)
        else:
            needs_push = not applied
        memo = refused.get(path)
        out.append(
            EffectiveSetting(
                path=path,
                value=value,
                type=xsd,
                source=source,
                cached=known,
                applied=applied,
                needs_push=needs_push,
                refused=(
                    (memo[1], memo[2])
                    if memo is not None and memo[0] == value_fingerprint(value)
                    else None
                ),
                updated=setting.updated if source == "device" else None,
            )
        )
    return out


# --- the engine and the session driver ---------------------------------------------------


class TaskEngine:
    """Queues tasks (validated) and hands out per-session drivers; reacts to Informs."""

    def __init__(
        self,
        store: Store,
        reactor: IReactorTime,
        *,
        wake: Callable[[int], Deferred[Any]] | None = None,
        gpv_batch: int = 32,
        max_attempts: int = 3,
        retry_base: float = 60.0,
        confirm_timeout: float = 900.0,
        signer: TransferUrls | None = None,
        transfer_timeout: float = 3600.0,
        device_credentials: bool = False,
    ) -> None:
        if gpv_batch < 1:
            raise ValueError("gpv_batch must be >= 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if transfer_timeout <= 0:
            raise ValueError("transfer_timeout must be > 0")
        # Signs the URLs of Download/Upload; None = transfer tasks fail with a clear message.
        self.signer = signer
        # How long an acknowledged Download/Upload may wait for its TransferComplete.
        self.transfer_timeout = transfer_timeout
        # Provisioning gives each device its own ManagementServer.Username/Password.
        self.device_credentials = device_credentials
        self.store = store
        self.reactor: IReactorTime = reactor
        self._wake = wake
        self.gpv_batch = gpv_batch
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        # How long an acknowledged reboot/factory_reset may wait for its confirming Inform
        # before a later Inform without it declares it failed (so it can't hang forever).
        self.confirm_timeout = confirm_timeout

    def set_wake(self, wake: Callable[[int], Deferred[Any]]) -> None:
        self._wake = wake

    def queue(
        self,
        device_id: int,
        kind: str,
        args: Mapping[str, Any] | None = None,
        *,
        actor: str,
        scheduled_at: float | None = None,
        wake: bool = True,
        now: float | None = None,
    ) -> Task:
        """Validate and store a task; wake the device if it can run now.

        Raises ValueError (bad kind/args) or acs.store.NotFound (unknown device). A task
        scheduled in the future does not wake the device now: it runs at the first session
        after `scheduled_at`. configuration_update and reconf are coalesced: while one that
        covers the new request is pending (and due no later), it is returned instead.
        """
        clean = validate_args(kind, args)
        if scheduled_at is not None and (
            isinstance(scheduled_at, bool) or not isinstance(scheduled_at, int | float)
        ):
            raise ValueError("scheduled_at must be a number of seconds since the epoch")
        if now is None:
            # mypy (no zope plugin) can't call methods declared on an Interface.
            now = float(cast(Any, self.reactor).seconds())
        if self.store.get_device(device_id) is None:
            raise NotFound(f"device {device_id} does not exist")
        if kind in _COALESCED_KINDS:
            twin = self._pending_twin(device_id, kind, clean, scheduled_at, now)
            if twin is not None:
                if wake and (scheduled_at is None or scheduled_at <= now):
                    self.wake(device_id)
                return twin
        task = self.store.queue_task(
            device_id,
            kind,
            clean,
            now=now,
            actor=actor,
            scheduled_at=scheduled_at,
            front=kind == "provision",
        )
        log.info(
            "queued task {task_id} {kind} for device {device_id}",
            task_id=task.id,
            kind=kind,
            device_id=device_id,
        )
        if wake and (scheduled_at is None or scheduled_at <= now):
            self.wake(device_id)
        return task

    def _pending_twin(
        self,
        device_id: int,
        kind: str,
        args: Mapping[str, Any],
        scheduled_at: float | None,
        now: float,
    ) -> Task | None:
        """A pending task of `kind` that already does what the new one would, no later."""
        due = now if scheduled_at is None else scheduled_at
        for t in self.store.tasks_for_device(device_id, states=(PENDING,)):
            if (
                t.kind == kind
                and (t.args.get("all") or not args.get("all"))
                and (t.scheduled_at is None or t.scheduled_at <= due)
                and (t.next_attempt_at is None or t.next_attempt_at <= due)
            ):
                return t
        return None

    def wake(self, device_id: int) -> None:
        """Ask the CPE for a session now (a connection request); failures are logged only:
        a CPE that can't be reached gets its work at its next session."""
        if self._wake is None:
            return

        def failed(failure: Failure) -> None:
            log.failure("waking device {device_id} failed", failure=failure, device_id=device_id)

        try:
            d = self._wake(device_id)
        except Exception:
            log.failure("waking device {device_id} failed", device_id=device_id)
            return
        if isinstance(d, Deferred):
            d.addErrback(failed)

    def factory_reset_under_way(self, device_id: int) -> bool:
        """True while a factory reset the ACS ordered waits for the CPE to come back."""
        return any(
            t.kind in ("factory_reset", "device_factory_reset")
            for t in self.store.tasks_for_device(device_id, states=(IN_PROGRESS,))
        )

    def open_session(self, device_id: int) -> SessionTasks:
        return SessionTasks(self, device_id)

    def on_inform(self, device: Device, inform: rpc.Inform, *, now: float) -> None:
        """Session start: confirm waiting tasks, recover stranded ones, queue provisioning,
        and queue a configuration_update when effective settings differ from the cache."""
        store = self.store
        events = [e.code for e in inform.events]
        bootstrap = "0 BOOTSTRAP" in events
        # One query says which checks below can find anything: most Informs come from
        # devices with no task under way and nothing to check, and skip them all.
        work = store.inform_work(device.id)
        if work.active_tasks:
            self._tasks_at_inform(device, inform, events, bootstrap, now)
            self._transfers_at_inform(device, inform, now)
        elif work.version_checks:
            # No transfer is under way (no active task), so only the version check remains.
            self._check_firmware_versions(device, inform, now)

        credentials_due = self.device_credentials and not device.username
        if (bootstrap or not device.provisioned or credentials_due) and self._needs_provision(
            device.id, bootstrap, now
        ):
            store.queue_task(device.id, "provision", {}, now=now, actor="acs", front=True)

        if work.settings:
            self._desired_state_at_inform(device, bootstrap, now)
        if work.interval_drift and not bootstrap:
            self._push_update_frequency(device, work.active_tasks, now)

    def _push_update_frequency(self, device: Device, active_tasks: bool, now: float) -> None:
        """The CPE informs at another interval than the device's update_frequency (changed
        through the API or inherited from its device type): set it, once."""
        path = f"{device.data_model_root or DEFAULT_ROOT}ManagementServer.PeriodicInformInterval"
        if active_tasks and any(
            t.kind == "set_parameters" and any(p["name"] == path for p in t.args["parameters"])
            for t in self.store.tasks_for_device(device.id, states=(PENDING, IN_PROGRESS))
        ):
            return
        value = {"name": path, "value": str(device.update_frequency), "type": "xsd:unsignedInt"}
        self.store.queue_task(
            device.id, "set_parameters", {"parameters": [value]}, now=now, actor="acs"
        )

    def _tasks_at_inform(
        self, device: Device, inform: rpc.Inform, events: list[str], bootstrap: bool, now: float
    ) -> None:
        """Requeue tasks a dead session stranded; confirm or time out the ones waiting for
        this Inform (reboot, factory resets)."""
        store = self.store
        # A task in progress at an Inform was running in a session that died (crash, restart):
        # run it again, except acknowledged reboots/factory resets, which this Inform confirms.
        store.requeue_in_progress(device.id, kinds=_REQUEUE_KINDS, now=now)
        tasks = store.tasks_for_device(device.id, states=(PENDING, IN_PROGRESS))
        done: set[int] = set()

        reboots = [t for t in tasks if t.kind == "reboot"]
        keys = {e.command_key for e in inform.events if e.code == "M Reboot"}
        matched = [
            t
            for t in reboots
            # A pending one was retried after an abort but may have reached the CPE anyway.
            if task_key(t) in keys and (t.state == IN_PROGRESS or t.attempts > 0)
        ]
        waiting = [t for t in reboots if t.state == IN_PROGRESS]
        if not matched and len(waiting) == 1 and (keys or "1 BOOT" in events):
            # Some CPEs echo another (or no) CommandKey, or send only "1 BOOT": with one
            # reboot outstanding there is no ambiguity.
            matched = waiting
        for t in matched:
            self._confirm(t, now, {"events": events})
            done.add(t.id)

        if bootstrap:
            for t in tasks:
                if t.kind == "factory_reset" and t.state == IN_PROGRESS:
                    self._confirm(t, now, {"events": events})
                    done.add(t.id)
            for t in tasks:
                if t.kind == "device_factory_reset" and t.state == IN_PROGRESS:
                    self._confirm(t, now, {"events": events})
                    done.add(t.id)
                    self._reapply_settings(device.id, now)

        for t in tasks:
            if (
                t.kind in _WAITS_FOR_INFORM
                and t.state == IN_PROGRESS
                and t.id not in done
                and not (t.result or {}).get(_ACKNOWLEDGED_RPC)
            ):
                # Sent by a session that died before the CPE answered, and this Inform shows
                # no reboot or reset: the CPE never got it. Run it again (it is not repeated:
                # a CPE that did reboot informs M Reboot / BOOT / BOOTSTRAP, matched above).
                store.fail_task(
                    t.id,
                    now=now,
                    fault_code=None,
                    fault_string=f"the session ended before the CPE acknowledged the {t.kind}",
                    retry_at=now if t.attempts < self.max_attempts else None,
                )
                done.add(t.id)
        for t in tasks:
            if (
                t.kind in _WAITS_FOR_INFORM
                and t.state == IN_PROGRESS
                and t.id not in done
                and (t.started or 0.0) + self.confirm_timeout < now
            ):
                store.fail_task(
                    t.id,
                    now=now,
                    fault_code=None,
                    fault_string=(
                        f"the CPE did not confirm the {t.kind} within "
                        f"{self.confirm_timeout:g}s (Inform events: {', '.join(events) or 'none'})"
                    ),
                    retry_at=None,
                )

    def _reapply_settings(self, device_id: int, now: float) -> None:
        """After a device_factory_reset's BOOTSTRAP: every stored setting is pushed again."""
        self.store.unconfirm_all_settings(device_id, now=now)
        if self.store.unconfirmed_settings_count(device_id):
            self.queue(device_id, "configuration_update", {}, actor="acs", wake=False, now=now)

    # --- effective settings (desired state) ---

    def effective_settings(
        self, device: Device | int, *, refusals: bool = True
    ) -> list[EffectiveSetting]:
        """The device's effective settings (type defaults overlaid by its own), by path,
        each with its state against the parameter cache; [] for an unknown device."""
        found = self.store.get_device(device) if isinstance(device, int) else device
        return [] if found is None else _effective(self.store, found, refusals=refusals)

    def _desired_state_at_inform(self, device: Device, bootstrap: bool, now: float) -> None:
        """Queue (coalesced) a configuration_update when an effective setting differs from
        the cache. One query when nothing differs; a second (the refusal memory) only when
        something does, so a setting the CPE refused for good is not pushed every Inform."""
        if bootstrap:
            # A factory-fresh tree (the cache was wiped too): every stored setting goes again.
            self.store.unconfirm_all_settings(device.id, now=now)
        due = [s for s in _effective(self.store, device, refusals=False) if s.needs_push]
        if not due:
            return
        refused = self.store.refused_settings(device.id)
        if all(s.path in refused and refused[s.path][0] == value_fingerprint(s.value) for s in due):
            return
        self.queue(device.id, "configuration_update", {}, actor="acs", wake=False, now=now)

    def _confirm(self, task: Task, now: float, result: dict[str, Any]) -> None:
        # The store completes from pending too (a retried reboot the CPE did get after all).
        self.store.complete_task(task.id, now=now, result=result)

    def _needs_provision(self, device_id: int, bootstrap: bool, now: float) -> bool:
        provisions = [t for t in self.store.tasks_for_device(device_id) if t.kind == "provision"]
        if any(t.state in (PENDING, IN_PROGRESS) for t in provisions):
            return False  # one is already on its way: never queue it twice
        if bootstrap or not provisions:
            return True
        last = max(provisions, key=lambda t: t.id)
        return not (last.state == FAILED and (last.finished or 0.0) + REPROVISION_AFTER > now)

    # --- transfers (firmware_update, backup, restore) ----------------------------------

    def _transfers_at_inform(self, device: Device, inform: rpc.Inform, now: float) -> None:
        """Recover stranded transfers, time out unconfirmed ones, check installed firmware."""
        store = self.store
        # A TransferComplete announced by this Inform arrives later in this session: the
        # task it names must not time out just before it.
        announced = {e.command_key for e in inform.events if e.code in ("M Download", "M Upload")}
        for t in store.tasks_for_device(device.id, states=(IN_PROGRESS,)):
            if t.kind not in TRANSFER_KINDS or (t.result or {}).get(_ACKNOWLEDGED):
                continue
            # Started but its Download/Upload never answered, and the session is gone (a
            # crash: a clean abort already requeued it). Run it again.
            retry = now if t.attempts < self.max_attempts else None
            self.fail_transfer(
                t, now, None, "session ended before the CPE answered the transfer request", retry
            )
        self.check_transfers(now=now, device_id=device.id, exclude_keys=announced)
        self._check_firmware_versions(device, inform, now)

    def check_transfers(
        self,
        *,
        now: float | None = None,
        device_id: int | None = None,
        exclude_keys: Iterable[str] = (),
    ) -> list[int]:
        """Fail every transfer task still unconfirmed `transfer_timeout` after it started
        (all devices, or one); returns their ids. Tasks whose CommandKey is in
        `exclude_keys` are spared (their TransferComplete is on its way)."""
        if now is None:
            now = float(cast(Any, self.reactor).seconds())
        skip = set(exclude_keys)
        failed: list[int] = []
        overdue = self.store.overdue_transfers(
            TRANSFER_KINDS, started_before=now - self.transfer_timeout, device_id=device_id
        )
        for t in overdue:
            if task_key(t) in skip:
                continue
            self.fail_transfer(
                t,
                now,
                None,
                f"the CPE did not report the {t.kind} transfer complete within "
                f"{self.transfer_timeout:g}s",
                None,
            )
            failed.append(t.id)
        return failed

    def fail_transfer(
        self, task: Task, now: float, code: int | None, message: str, retry_at: float | None
    ) -> None:
        """Fail a transfer task (retry at `retry_at`, None = for good) and react to it."""
        log.info(
            "device {device_id}: transfer task {task_id} {kind} failed ({message})",
            device_id=task.device_id,
            task_id=task.id,
            kind=task.kind,
            message=message,
        )
        row = self.store.fail_task(
            task.id, now=now, fault_code=code, fault_string=message, retry_at=retry_at
        )
        self.after_failure(row, now)

    def after_failure(self, task: Task, now: float) -> None:
        """A task just failed for good (or will retry): a failed firmware upgrade stops
        being pending on the device but stays reported as ``firmware_update:failed``."""
        if task.state != FAILED or task.kind != "firmware_update":
            return
        self._firmware_settled(task, now)
        self.store.update_task_result(task.id, {REPORT_FAILED: True})

    def _firmware_settled(self, task: Task, now: float) -> None:
        # The flag means "an upgrade is queued or in flight": it stays set while another
        # firmware_update (a newer request) is still on its way.
        others = [
            t
            for t in self.store.tasks_for_device(task.device_id, states=(PENDING, IN_PROGRESS))
            if t.kind == "firmware_update" and t.id != task.id
        ]
        if not others:
            self.store.update_device(
                task.device_id, now=now, actor="acs", firmware_image_is_pending=False
            )

    def transfer_result(self, task: Task, detail: dict[str, Any], now: float) -> dict[str, Any]:
        """The result of a transfer the CPE reported successful, after its side effects;
        raises _TaskError when the ACS side shows it did not happen (no backup stored)."""
        result = {**(task.result or {}), **detail}
        result.pop(_ACKNOWLEDGED, None)
        if task.kind == "firmware_update":
            self._firmware_settled(task, now)
            image_id = task.args.get("firmware_image")
            image = self.store.get_firmware_image(image_id) if isinstance(image_id, int) else None
            if image is not None:
                device = self.store.get_device(task.device_id)
                reported = device.software_version if device is not None else None
                result["expected_version"] = image.version
                # Most CPEs send TransferComplete after rebooting into the new image, so this
                # session's Inform may already show it; otherwise the next Inform decides.
                if reported == image.version:
                    result[_VERSION_CHECK] = "ok"
                    result["reported_version"] = reported
                else:
                    result[_VERSION_CHECK] = "pending"
        elif task.kind == "backup":
            stored = self.store.backups_for_task(task.id)
            if not stored:
                raise _TaskError(
                    "the CPE reported the upload complete but no file reached the file server",
                    permanent=True,
                )
            backup = stored[-1]  # a CPE that uploaded twice: the newest file counts
            result.update(backup=backup.id, size=backup.size, sha256=backup.sha256)
        return result

    def on_transfer_complete(
        self, device_id: int, message: rpc.TransferComplete, now: float
    ) -> dict[str, Any]:
        """End the transfer task named by the CommandKey; returns what to add to the
        history entry (the task id and what happened to it)."""
        task_id = task_id_of_key(message.command_key)
        task = self.store.get_task(task_id) if task_id is not None else None
        if task is None or task.device_id != device_id or task.kind not in TRANSFER_KINDS:
            return {}
        if task.state not in (PENDING, IN_PROGRESS):
            # Already timed out (or cancelled): the late report stays in history only.
            return {"task_id": task.id, "task_state": task.state, "late": True}
        code = message.fault.code
        times = {"start_time": message.start_time, "complete_time": message.complete_time}
        if code == 0:
            try:
                result = self.transfer_result(task, {"fault_code": 0, **times}, now)
            except _TaskError as exc:
                self.fail_transfer(task, now, None, exc.message, None)
                return {"task_id": task.id, "task_state": FAILED}
            self.store.complete_task(task.id, now=now, result=result)
            return {"task_id": task.id, "task_state": DONE}
        text = message.fault.string or f"CPE fault {code}"
        self.store.update_task_result(task.id, {"fault_code": code, "fault_string": text, **times})
        retry = None if code in PERMANENT_TRANSFER_FAULTS else self.retry_at(task.attempts, now)
        self.fail_transfer(task, now, code, text, retry)
        return {"task_id": task.id, "task_state": FAILED if retry is None else PENDING}

    def _check_firmware_versions(self, device: Device, inform: rpc.Inform, now: float) -> None:
        """After a completed upgrade, the next Inform's SoftwareVersion must be the image's."""
        reported = inform.parameter("DeviceInfo.SoftwareVersion")
        if reported is None:
            return  # not reported by this Inform: keep waiting
        for t in self.store.firmware_version_checks(device.id):
            expected = (t.result or {}).get("expected_version")
            if reported == expected:
                self.store.update_task_result(
                    t.id, {_VERSION_CHECK: "ok", "reported_version": reported}
                )
                continue
            log.warn(
                "device {device_id}: firmware task {task_id} expected version {expected}, "
                "the CPE reports {reported}",
                device_id=device.id,
                task_id=t.id,
                expected=expected,
                reported=reported,
            )
            self.store.update_task_result(
                t.id,
                {
                    _VERSION_CHECK: "mismatch",
                    "reported_version": reported,
                    "note": f"the CPE reports version {reported}, the image is {expected}",
                },
            )
            self.store.add_history(
                device.id,
                "firmware_version_mismatch",
                {"task_id": t.id, "expected": expected, "reported": reported},
                now=now,
            )

    def retry_at(self, attempts: int, now: float) -> float | None:
        """When a task that failed its `attempts`-th attempt runs again; None = give up."""
        if attempts >= self.max_attempts:
            return None
        return now + self.retry_base * 2 ** max(attempts - 1, 0)


class SessionTasks:
    """Drives the ACS-request phase of one CWMP session for one device.

    One task at a time, in the store's queue order. Every store effect of an answer happens
    in `on_response`, inside the caller's transaction; `next_request` only emits.
    """

    def __init__(self, engine: TaskEngine, device_id: int) -> None:
        self.engine = engine
        self.store = engine.store
        self.device_id = device_id
        self._run: _TaskRun | None = None
        self._next: rpc.Message | None = None  # produced by on_response, emitted next
        self._started: set[int] = set()

    @property
    def current_task_id(self) -> int | None:
        return self._run.task.id if self._run is not None else None

    def next_request(self, *, now: float) -> rpc.Message | None:
        run = self._run
        if run is not None and run.request is not None:
            # Asked for a new request while the last one is unanswered: the exchange broke.
            log.warn(
                "device {device_id}: next request asked before task {task_id} got an answer",
                device_id=self.device_id,
                task_id=run.task.id,
            )
            self.abort(now=now, reason=f"no answer to {type(run.request).__name__}")
        while True:
            run = self._run
            if run is not None:
                if self._next is not None:
                    request, self._next = self._next, None
                    run.request = request
                    return request
                self._run = None  # finished in on_response
                continue
            task = self.store.next_task(self.device_id, now=now)
            if task is None or task.id in self._started:
                # A task that came back runnable in the same session (retry delay 0) waits for
                # the next session rather than looping here.
                return None
            self._start(task, now)

    def _start(self, task: Task, now: float) -> None:
        self._started.add(task.id)
        task = self.store.start_task(task.id, now=now)
        device = self.store.get_device(self.device_id)
        log.info(
            "device {device_id}: starting task {task_id} {kind} (attempt {attempt})",
            device_id=self.device_id,
            task_id=task.id,
            kind=task.kind,
            attempt=task.attempts,
        )
        if task.kind not in TASK_KINDS:
            # A row written by a newer version or by hand: fail it rather than loop on it.
            log.error(
                "device {device_id}: task {task_id} has unknown kind {kind}",
                device_id=self.device_id,
                task_id=task.id,
                kind=task.kind,
            )
            self.store.fail_task(
                task.id,
                now=now,
                fault_code=None,
                fault_string=f"unknown task kind {task.kind!r}",
                retry_at=None,
            )
            return
        run = _TaskRun(self.engine, task, device, now)
        self._run = run
        self._advance(run, None, now)

    def on_response(self, message: rpc.Message, *, now: float) -> None:
        run = self._run
        if run is None or run.request is None:
            log.warn(
                "device {device_id}: unsolicited {message} ignored",
                device_id=self.device_id,
                message=type(message).__name__,
            )
            return
        run.request = None
        self._advance(run, message, now)

    def _advance(self, run: _TaskRun, answer: rpc.Message | None, now: float) -> None:
        """Feed `answer` to the task; store its next RPC in _next or record how it ended."""
        run.now = now
        task = run.task
        try:
            if answer is None:
                request = next(run.steps)
            elif isinstance(answer, rpc.Fault):
                request = run.steps.throw(_CpeFault(answer))
            else:
                request = run.steps.send(answer)
        except StopIteration as stop:
            self._run_ended(run)
            if isinstance(stop.value, _WaitForTransfer):
                # Recorded on the task so an Inform after a crash can tell an acknowledged
                # transfer (wait for its TransferComplete) from a stranded one (run it again).
                self.store.update_task_result(task.id, {**stop.value.detail, _ACKNOWLEDGED: True})
                log.info(
                    "device {device_id}: task {task_id} {kind} accepted, awaiting TransferComplete",
                    device_id=self.device_id,
                    task_id=task.id,
                    kind=task.kind,
                )
            elif isinstance(stop.value, _WaitForInform):
                # Recorded too: after a crash, an Inform without the reboot's events means
                # an unacknowledged RPC never reached the CPE (run it again).
                self.store.update_task_result(task.id, {_ACKNOWLEDGED_RPC: True})
                log.info(
                    "device {device_id}: task {task_id} {kind} acknowledged, awaiting Inform",
                    device_id=self.device_id,
                    task_id=task.id,
                    kind=task.kind,
                )
            else:
                self.store.complete_task(task.id, now=now, result=stop.value)
            return
        except _CpeFault as exc:
            self._run_ended(run)
            self._fail(
                task,
                now,
                exc.fault.code,
                _fault_summary(exc.fault),
                permanent=exc.fault.code in PERMANENT_FAULTS,
                fault=exc.fault,
                extra=exc.extra if isinstance(exc, _SettingsRefused) else None,
            )
            return
        except _TaskError as exc:
            self._run_ended(run)
            self._fail(task, now, None, exc.message, permanent=exc.permanent)
            return
        except Exception as exc:  # a bug or a store error: end the task, don't wedge the session
            if is_storage_full(exc):
                raise  # not the task's fault: the session ends (503) and the task is retried
            log.failure(
                "device {device_id}: task {task_id} crashed",
                device_id=self.device_id,
                task_id=task.id,
            )
            self._run_ended(run)
            self._fail(task, now, None, f"internal error: {exc}", permanent=True)
            return
        self._next = request

    def _run_ended(self, run: _TaskRun) -> None:
        if self._run is run:
            self._run = None
        self._next = None
        run.steps.close()

    def _fail(
        self,
        task: Task,
        now: float,
        code: int | None,
        message: str,
        *,
        permanent: bool,
        fault: rpc.Fault | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        current = self.store.get_task(task.id)
        if current is None or current.state != IN_PROGRESS:
            return  # cancelled/requeued meanwhile (e.g. a newer session took over)
        result: dict[str, Any] | None = None
        if fault is not None and fault.set_parameter_values_faults:
            # Which parameter the CPE refused and why: kept on the task and in history.
            result = {
                "fault_code": fault.code,
                "fault_string": fault.string,
                "parameter_faults": [
                    {"name": f.name, "code": f.code, "string": f.string}
                    for f in fault.set_parameter_values_faults
                ],
            }
            self.store.add_history(
                self.device_id, "task_fault_detail", {"task_id": task.id, **result}, now=now
            )
        if extra:
            # Engine bookkeeping (e.g. refused settings by fingerprint): the result only.
            result = {**(result or {}), **extra}
        retry_at = None if permanent else self.engine.retry_at(current.attempts, now)
        log.info(
            "device {device_id}: task {task_id} {kind} failed ({message}); retry at {retry_at}",
            device_id=self.device_id,
            task_id=task.id,
            kind=task.kind,
            message=message,
            retry_at=retry_at,
        )
        failed = self.store.fail_task(
            task.id,
            now=now,
            fault_code=code,
            fault_string=message,
            retry_at=retry_at,
            result=result,
        )
        self.engine.after_failure(failed, now)

    def abort(self, *, now: float, reason: str) -> None:
        """The session died: retry the in-flight task with backoff (or fail it for good)."""
        run = self._run
        if run is None:
            return
        self._run_ended(run)
        if run.committed is not None:
            result = {**run.committed, "refresh_fault": {"code": None, "string": reason}}
            self.store.complete_task(run.task.id, now=now, result=result)
            return
        self._fail(run.task, now, None, f"session aborted: {reason}", permanent=False)

    def on_cpe_request(self, message: rpc.Message, *, now: float) -> rpc.Message:
        """Answer a CPE-initiated request (other than Inform) and record it in history."""
        response: rpc.Message
        if isinstance(message, rpc.TransferComplete):
            action = "transfer_complete"
            detail: dict[str, Any] = {
                "command_key": message.command_key,
                "fault_code": message.fault.code,
                "fault_string": message.fault.string,
                "start_time": message.start_time,
                "complete_time": message.complete_time,
            }
            detail.update(self._transfer_complete(message, now))
            response = rpc.TransferCompleteResponse()
        elif isinstance(message, rpc.AutonomousTransferComplete):
            action = "autonomous_transfer_complete"
            detail = {
                "announce_url": message.announce_url,
                "transfer_url": message.transfer_url,
                "is_download": message.is_download,
                "file_type": message.file_type,
                "file_size": message.file_size,
                "target_file_name": message.target_file_name,
                "fault_code": message.fault.code,
                "fault_string": message.fault.string,
                "start_time": message.start_time,
                "complete_time": message.complete_time,
            }
            response = rpc.AutonomousTransferCompleteResponse()
        elif isinstance(message, rpc.RequestDownload):
            action = "request_download"
            detail = {
                "file_type": message.file_type,
                "file_type_args": {k: v for k, v in message.file_type_args},
            }
            response = rpc.RequestDownloadResponse()
        elif isinstance(message, rpc.Kicked):
            action = "kicked"
            detail = {
                "command": message.command,
                "referer": message.referer,
                "arg": message.arg,
                "next": message.next,
            }
            response = rpc.KickedResponse(next_url=message.next)
        elif isinstance(message, rpc.GetRPCMethods):
            action = "get_rpc_methods"
            detail = {}
            response = rpc.GetRPCMethodsResponse(ACS_METHODS)
        else:
            log.warn(
                "device {device_id}: unsupported CPE request {message}",
                device_id=self.device_id,
                message=type(message).__name__,
            )
            return rpc.Fault(code=8000, string="Method not supported", faultcode="Server")
        try:
            self.store.add_history(self.device_id, action, detail, now=now)
        except Exception:
            # E.g. the device was deleted mid-session: still answer the CPE, never a 500.
            log.failure(
                "device {device_id}: cannot record {action}",
                device_id=self.device_id,
                action=action,
            )
        return response

    def _transfer_complete(self, message: rpc.TransferComplete, now: float) -> dict[str, Any]:
        # The CPE must get its TransferCompleteResponse whatever happens here: otherwise it
        # resends the report every session. A failure rolls back only this part (savepoint).
        try:
            with self.store.transaction():
                return self.engine.on_transfer_complete(self.device_id, message, now)
        except Exception as exc:
            if is_storage_full(exc):
                raise  # unacknowledged (503), the CPE sends the report again in a later session
            log.failure(
                "device {device_id}: cannot apply TransferComplete {key}",
                device_id=self.device_id,
                key=message.command_key,
            )
            return {"error": f"internal error: {exc}"}


class TransferWatch(PeriodicService):
    """Fails transfers whose TransferComplete never came, even for devices that went quiet
    (the Inform-time check only covers devices that still talk): every `interval` seconds."""

    def __init__(self, engine: TaskEngine, *, interval: float = 60.0) -> None:
        super().__init__(engine.reactor, interval, self.check, run_at_start=False)
        self.setName("transfer_watch")
        self.engine = engine

    def check(self) -> list[int]:
        """Fail every overdue transfer now; returns their task ids."""
        try:
            with self.engine.store.transaction():
                return self.engine.check_transfers()
        except Exception:
            # A locked database must not stop later checks.
            log.failure("transfer watch: cannot check overdue transfers")
            return []
