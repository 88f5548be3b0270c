"""Software modules (CWMP 1.2, TR-069 Annex A.4.1.10 and TR-157): the ``change_du_state``
kind and what the ACS does with a CPE's DUStateChangeComplete and
AutonomousDUStateChangeComplete.

A ``change_du_state`` task sends one ChangeDUState of up to ``MAX_OPERATIONS`` install,
update and uninstall operations under the task's CommandKey and waits, like a transfer
(completion ``TRANSFER``: the same ``[cwmp] transfer_timeout`` watch), for the
DUStateChangeComplete carrying that key. Its result lists each operation's outcome in order;
an operation the CPE failed fails the task with that fault, for good (the others may have
been applied: running the whole request again could install a unit twice). Either report
writes what changed into the stored tree, under each result's DeploymentUnitRef.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from acs.cwmp import rpc
from acs.store.models import DONE, FAILED, IN_PROGRESS, PENDING
from acs.tasks import args as a
from acs.tasks import results as r
from acs.tasks.run import (
    ACKNOWLEDGED,
    Steps,
    TaskRun,
    WaitForTransfer,
    log_task,
    task_id_of_key,
    task_key,
)

if TYPE_CHECKING:
    from acs.tasks.engine import TaskEngine

KIND = "change_du_state"
# The Inform event announcing a DUStateChangeComplete for our CommandKey (TR-069 3.7.1.5).
EVENT = "M ChangeDUState"
MAX_OPERATIONS = 16
MAX_URL = 1024  # cwmp-1-2.xsd: the operations' URL is an anyURI(1024)
UUID_PATTERN = r"^[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$"
_STATES = ("Installed", "Uninstalled", "Failed")

_FIELDS: dict[str, dict[str, Any]] = {
    "url": {
        "type": "string",
        "maxLength": MAX_URL,
        "pattern": r"^https?://[!-~]+$",
        "description": "HTTP or HTTPS URL of the deployment unit.",
    },
    "uuid": {
        "type": "string",
        "maxLength": 36,
        "pattern": UUID_PATTERN,
        "description": "The deployment unit's UUID (TR-069 Annex H).",
    },
    "version": {
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "pattern": a.ASCII_TEXT_PATTERN,
        "description": "The deployment unit version.",
    },
    "execution_env": {
        "type": "string",
        "maxLength": 256,
        "pattern": r"^(Device|InternetGatewayDevice)\.SoftwareModules\.ExecEnv"
        r"\.[1-9][0-9]{0,8}\.?$",
        "description": "The execution environment (SoftwareModules.ExecEnv.<i>); default: "
        "the CPE's choice.",
    },
}
# Each operation type: its fields, the required ones, and the alternatives it needs one of.
_OPERATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "install": (("url", "uuid", "execution_env"), ("url",), ()),
    "update": (("uuid", "url", "version"), (), ("uuid", "url")),
    "uninstall": (("uuid", "version", "execution_env"), ("uuid",), ()),
}
_FIELD_RES = {key: re.compile(schema["pattern"][1:-1]) for key, schema in _FIELDS.items()}


def _operation_schema(kind: str) -> dict[str, Any]:
    fields, required, one_of = _OPERATIONS[kind]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"type": {"const": kind}, **{key: _FIELDS[key] for key in fields}},
        "required": ["type", *required],
        "additionalProperties": False,
    }
    if one_of:
        schema["anyOf"] = [{"required": [key]} for key in one_of]
    return schema


SCHEMA = a.arguments_schema(
    {
        "operations": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_OPERATIONS,
            "items": {"oneOf": [_operation_schema(kind) for kind in _OPERATIONS]},
            "description": "Done in order: install {url, uuid?, execution_env?}, update "
            "{uuid and/or url, version?}, uninstall {uuid, version?, execution_env?}.",
        }
    },
    ["operations"],
)
_OP_RESULT = r.result(
    {
        "type": {"type": "string", "enum": list(_OPERATIONS)},
        "uuid": {"type": "string"},
        "deployment_unit": {"type": "string", "description": "Its path on the CPE."},
        "version": {"type": "string"},
        "state": {"type": "string", "enum": list(_STATES)},
        "resolved": {"type": "boolean"},
        "execution_units": {**r.STRINGS, "description": "Paths of its execution units."},
        "start_time": {"type": "string"},
        "complete_time": {"type": "string"},
        "fault_code": {"type": "integer", "minimum": 0},
        "fault_string": {"type": "string"},
    }
)
RESULT_SCHEMA = r.result(
    {"operations": {"type": "array", "maxItems": MAX_OPERATIONS, "items": _OP_RESULT}}
)


def _problem(index: int) -> str:
    return (
        f"operations[{index}] must be one of install {{url, uuid?, execution_env?}}, update "
        "{uuid and/or url, version?} or uninstall {uuid, version?, execution_env?}: url "
        f"http(s) of at most {MAX_URL} characters, uuid as 8-4-4-4-12 hex digits, version 1 "
        "to 32 printable ASCII characters, execution_env a SoftwareModules.ExecEnv.<i> path"
    )


def _valid(key: str, value: Any) -> bool:
    schema = _FIELDS[key]
    return (
        isinstance(value, str)
        and schema.get("minLength", 0) <= len(value) <= schema["maxLength"]
        and _FIELD_RES[key].fullmatch(value) is not None
    )


def check(args: Mapping[str, Any]) -> dict[str, Any]:
    operations = args.get("operations")
    if not isinstance(operations, list) or not 1 <= len(operations) <= MAX_OPERATIONS:
        raise ValueError(f"operations must be a list of 1 to {MAX_OPERATIONS} operations")
    clean: list[dict[str, Any]] = []
    for index, op in enumerate(operations):
        kind = op.get("type") if isinstance(op, Mapping) else None
        declared = _OPERATIONS.get(kind) if isinstance(kind, str) else None
        if declared is None:
            raise ValueError(_problem(index))
        assert isinstance(op, Mapping)
        fields, required, one_of = declared
        keys = set(op) - {"type"}
        if (
            not keys <= set(fields)
            or not set(required) <= keys
            or (one_of and not keys & set(one_of))
            or not all(_valid(key, op[key]) for key in keys)
        ):
            raise ValueError(_problem(index))
        clean.append({"type": kind, **{key: op[key] for key in fields if key in op}})
    return {"operations": clean}


def _rpc_operation(op: Mapping[str, Any]) -> rpc.DUOperation:
    if op["type"] == "install":
        return rpc.InstallOp(
            url=op["url"], uuid=op.get("uuid", ""), execution_env_ref=op.get("execution_env", "")
        )
    if op["type"] == "update":
        return rpc.UpdateOp(
            uuid=op.get("uuid", ""), version=op.get("version", ""), url=op.get("url", "")
        )
    return rpc.UninstallOp(
        uuid=op["uuid"],
        version=op.get("version", ""),
        execution_env_ref=op.get("execution_env", ""),
    )


def change_du_state(run: TaskRun) -> Steps:
    """ChangeDUState (CWMP 1.2) of the task's operations; the DUStateChangeComplete ends it."""
    operations = run.task.args["operations"]
    yield from run.call(
        rpc.ChangeDUState(
            operations=tuple(_rpc_operation(op) for op in operations),
            command_key=task_key(run.task),
        )
    )
    return WaitForTransfer({})


# --- the CPE's reports ------------------------------------------------------------------


# Bounds of what a CPE's report puts in the history and the task result (its strings come
# from an 8 MiB envelope): a path, a version, a fault string, the times.
_MAX_REF, _MAX_VERSION, _MAX_FAULT, _MAX_TIME = 256, 64, 256, 64


def _outcome(result: rpc.OpResult, kind: str) -> dict[str, Any]:
    units = [ref.strip()[:_MAX_REF] for ref in result.execution_unit_refs.split(",")]
    return {
        "type": kind,
        "uuid": result.uuid[:36],
        "deployment_unit": result.deployment_unit_ref[:_MAX_REF],
        "version": result.version[:_MAX_VERSION],
        "state": result.current_state if result.current_state in _STATES else "Failed",
        "resolved": result.resolved,
        "execution_units": [u for u in units if u][:MAX_OPERATIONS],
        "start_time": result.start_time[:_MAX_TIME],
        "complete_time": result.complete_time[:_MAX_TIME],
        "fault_code": result.fault.code,
        "fault_string": result.fault.string[:_MAX_FAULT],
    }


_UNIT_PATH = re.compile(
    r"(Device|InternetGatewayDevice)\.SoftwareModules\.DeploymentUnit\.[1-9][0-9]{0,8}"
)


def _unit_path(ref: str) -> str | None:
    """A DeploymentUnitRef as the object path of the stored tree, None when it names no
    deployment unit instance."""
    ref = ref.strip().removesuffix(".")
    return ref + "." if _UNIT_PATH.fullmatch(ref) else None


def write_units(
    engine: TaskEngine, device_id: int, results: Sequence[rpc.OpResult], now: float
) -> None:
    """The stored tree after these operations: an installed or updated unit's UUID,
    Version, Status, Resolved and ExecutionUnitList; an uninstalled unit's subtree gone."""
    for result in results[:MAX_OPERATIONS]:
        path = _unit_path(result.deployment_unit_ref)
        if path is None or result.fault.code:
            continue
        if result.current_state == "Uninstalled":
            engine.store.delete_parameters(device_id, path)
        elif result.current_state == "Installed":
            rows: list[tuple[str, str | None, str | None, bool | None]] = [
                (path + "UUID", result.uuid[:36], "xsd:string", False),
                (path + "Version", result.version[:_MAX_VERSION], "xsd:string", False),
                (path + "Status", "Installed", "xsd:string", False),
                (path + "Resolved", "true" if result.resolved else "false", "xsd:boolean", False),
                (
                    path + "ExecutionUnitList",
                    result.execution_unit_refs[: _MAX_REF * MAX_OPERATIONS],
                    "xsd:string",
                    False,
                ),
            ]
            engine.store.upsert_parameters(device_id, rows, now=now)


def report(results: Sequence[rpc.OpResult]) -> list[dict[str, Any]]:
    """What the history entry of a report lists (autonomous ones name the operation)."""
    return [
        _outcome(result, result.operation_performed[:_MAX_VERSION])
        for result in results[:MAX_OPERATIONS]
    ]


def on_complete(
    engine: TaskEngine, device_id: int, message: rpc.DUStateChangeComplete, now: float
) -> dict[str, Any]:
    """End the change_du_state task named by the CommandKey; returns what to add to the
    history entry. The tree follows the CPE even for a report no task waits for."""
    write_units(engine, device_id, message.results, now)
    task_id = task_id_of_key(message.command_key)
    store = engine.store
    task = store.get_task(task_id) if task_id is not None else None
    if task is None or task.device_id != device_id or task.kind != KIND:
        return {}
    if task.state not in (PENDING, IN_PROGRESS):
        return {"task_id": task.id, "task_state": task.state, "late": True}
    kinds = [op["type"] for op in task.args["operations"]]
    outcomes = [
        _outcome(result, kinds[i] if i < len(kinds) else "")
        for i, result in enumerate(message.results[:MAX_OPERATIONS])
    ]
    result = {key: value for key, value in (task.result or {}).items() if key != ACKNOWLEDGED}
    result["operations"] = outcomes
    failed = [(i, o) for i, o in enumerate(outcomes) if o["fault_code"] or o["state"] == "Failed"]
    if failed:
        index, first = failed[0]
        code = first["fault_code"] or None
        text = first["fault_string"] or (f"CPE fault {code}" if code else "it failed")
        problem = f"operation {index + 1} ({first['type']}): {text}"
    elif len(outcomes) != len(kinds):
        code, problem = (
            None,
            f"the CPE reported {len(outcomes)} results for {len(kinds)} operations",
        )
    else:
        store.complete_task(task.id, now=now, result=result)
        return {"task_id": task.id, "task_state": DONE}
    log_task(task, "software modules change failed ({problem})", problem=problem)
    store.fail_task(
        task.id, now=now, fault_code=code, fault_string=problem, retry_at=None, result=result
    )
    return {"task_id": task.id, "task_state": FAILED}


def on_autonomous(
    engine: TaskEngine, device_id: int, message: rpc.AutonomousDUStateChangeComplete, now: float
) -> dict[str, Any]:
    """A change the CPE made on its own (or another party asked for): into the tree."""
    write_units(engine, device_id, message.results, now)
    return {}
