"""``POST /inventory_device/<id>/tasks/``: any CWMP RPC the task registry offers, as a task.

The body names the ``kind`` (every ``acs.tasks.kinds`` declaration with ``api_task``: the
RPCs in snake_case, ``get_parameter_values``, ``set_parameter_values``, ``add_object``...)
and carries its arguments beside it; the kind's own validator checks them, and a refusal is
a 400 before anything is queued. The task is queued with the token's name as actor and the
device is woken with a connection request unless ``connection_request=false``. With
``timeout=S`` (0-120) the answer waits up to S seconds for the task to end: 200 with the
finished task (its ``result``, or its fault), else 202 with the task as it stands, which
``GET .../tasks/<task_id>/`` shows later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from acs.cwmp.paths import known_root
from acs.cwmp.values import type_problem
from acs.store.models import FAILED, IN_PROGRESS, PENDING, Device, Task
from acs.tasks import KINDS, model_type, validate_args
from acs.tasks.kinds import TRANSFER_KINDS
from api.base import Api, ApiError, ApiRequest, Result, conflict, route, store_errors
from api.device_children import device_task, task_component, task_json
from api.docs import MAX_TASK_TIMEOUT, WRITE, Doc
from api.fields import Form, does_not_exist
from api.schema import JSON, Schema, obj, ref

# The retry takes no arguments: an empty body, or none.
RETRY_FORM = Form("TaskRetry", {}, components={"TaskRetry": "update"})
API_KINDS = tuple(name for name, kind in KINDS.items() if kind.api_task)


def _request(kind: str) -> Schema:
    """One kind's body: its name and, beside it, its declared arguments."""
    arguments = KINDS[kind].arguments_schema
    body = obj(
        {"kind": {"const": kind}, **arguments["properties"]},
        ["kind", *arguments.get("required", ())],
        additional=False,
    )
    if "anyOf" in arguments:  # which combinations of arguments it takes
        body["anyOf"] = arguments["anyOf"]
    return body


# components/schemas: one body per kind (TaskRequest<Kind>), and TaskRequest, any of them
# by its `kind`.
TASK_SCHEMAS: dict[str, Schema] = {
    task_component(kind, "Request"): _request(kind) for kind in API_KINDS
}
TASK_SCHEMAS["TaskRequest"] = {
    "oneOf": [ref(task_component(kind, "Request")) for kind in API_KINDS],
    "discriminator": {
        "propertyName": "kind",
        "mapping": {
            kind: f"#/components/schemas/{task_component(kind, 'Request')}" for kind in API_KINDS
        },
    },
    "description": "The RPC (kind, in snake_case) and, beside it, its arguments.",
}
# ... and the result a done task of each kind carries (TaskResult<Kind>).
TASK_SCHEMAS.update(
    {task_component(kind, "Result"): dict(KINDS[kind].result_schema or {}) for kind in API_KINDS}
)


def _check_for_device(api: Api, device: Device, kind: str, args: Mapping[str, Any]) -> None:
    """What only the device can tell: its paths are under its data model's root, and a
    value sent without a type suits the type the CPE reported (or the data model's)."""
    root = known_root(device.data_model_root)
    errors: dict[str, list[str]] = {}
    if root is not None:
        for key, path in _paths(args):
            if not path.startswith(root):
                errors.setdefault(key, []).append(
                    f"{path!r}: this device's data model root is {root}"
                )
    for item in args.get("parameters", ()) if kind == "set_parameter_values" else ():
        if "type" in item:
            continue
        cached = api.store.get_parameter(device.id, item["name"])
        xsd = (cached.type if cached is not None else None) or model_type(item["name"])
        problem = None if xsd is None else type_problem(item["value"], xsd)
        if problem is not None:
            errors.setdefault("parameters", []).append(f"{item['name']}: value {problem}")
    if kind in ("download", "schedule_download"):
        errors.update(download_problems(api, device, args))
    if kind == "cancel_transfer":
        errors.update(_cancel_problems(api, device, args["task"]))
    if errors:
        raise ApiError(400, errors)


def download_problems(
    api: Api, device: Device | None, args: Mapping[str, Any]
) -> dict[str, list[str]]:
    """The file or image a download names must exist; a file a CPE uploaded goes only to
    devices of that CPE's organization (``device`` None, to many devices: not at all)."""
    if "firmware_image" in args:
        if api.store.get_firmware_image(args["firmware_image"]) is None:
            return {"firmware_image": [does_not_exist(args["firmware_image"])]}
        return {}
    stored = api.store.get_file(args["file"])
    if stored is not None and stored.device_id is not None:
        owner = api.store.get_device(stored.device_id)
        if device is None or owner is None or owner.organization_id != device.organization_id:
            stored = None
    if stored is None:
        return {"file": [does_not_exist(args["file"])]}
    return {}


def _cancel_problems(api: Api, device: Device, task_id: int) -> dict[str, list[str]]:
    """A cancel_transfer names a transfer task of this device that has not ended."""
    target = api.store.get_task(task_id)
    if target is None or target.device_id != device.id or target.kind not in TRANSFER_KINDS:
        return {"task": [f"Task {task_id} is not a transfer task of this device."]}
    if target.state not in (PENDING, IN_PROGRESS):
        return {"task": [f"Task {task_id} is {target.state}: there is nothing to cancel."]}
    return {}


def _paths(args: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(argument, path) of every parameter path the arguments name."""
    found = [(key, args[key]) for key in ("parameter_path", "object_name") if args.get(key)]
    found += [("parameter_names", name) for name in args.get("parameter_names", ())]
    if "object_name" not in args:  # add_object's are relative to the new instance
        found += [("parameters", item["name"]) for item in args.get("parameters", ())]
    return found


def _arguments_error(kind: str, message: str) -> ApiError:
    """A validator's refusal as DRF field errors, under the argument it names."""
    for name in KINDS[kind].arguments:
        if message.startswith(name):
            return ApiError(400, {name: [message]})
    return ApiError(400, {"non_field_errors": [message]})


@route(
    "/inventory_device/<int:device_id>/tasks/<int:task_id>/retry/",
    methods=("POST",),
    role="operator",
    doc=Doc(
        "retry_device_task",
        "Queue a failed task again",
        "device_resources",
        "Task",
        202,
        body="TaskRetry",
        body_required=False,
        errors=(*WRITE, "Conflict"),
        description="The task runs again from its first attempt (a connection request is "
        "sent); 409 unless it failed.",
    ),
)
def retry_task(api: Api, req: ApiRequest, device_id: int, task_id: int) -> Result:
    task = device_task(api, req, device_id, task_id)
    RETRY_FORM.read(req.json_object(optional=True), mode="update")
    if task.state != FAILED:
        raise conflict(f"Task {task.id} is {task.state}; only failed tasks can be retried.")
    with store_errors():
        retried = api.tasks.retry(task, now=api.now(), actor=req.principal.name)
    return 202, task_json(retried)


@route(
    "/inventory_device/<int:device_id>/tasks/",
    methods=("POST",),
    role="operator",
    doc=Doc(
        "create_device_task",
        "Queue an RPC as a task, and optionally wait for its result",
        "device_resources",
        "Task",
        202,
        params=("connection_request", "task_timeout"),
        body="TaskRequest",
        errors=WRITE,
        responses={
            "200": {
                "description": "The task finished within the timeout.",
                "content": {JSON: {"schema": ref("Task")}},
            }
        },
    ),
)
async def create_task(api: Api, req: ApiRequest, device_id: int) -> Result:
    task, timeout = await api.store.run(_queue_task, api, req, device_id)
    if timeout:
        finished = await api.tasks.wait_finished(task.id, float(timeout))
        if finished is not None:
            return 200, task_json(finished)
    current = await api.store.read(api.store.get_task, task.id)
    return 202, task_json(current if current is not None else task)


def _queue_task(api: Api, req: ApiRequest, device_id: int) -> tuple[Task, int]:
    """The task the request asks for, queued (a unit of work; the device is woken once it
    committed, unless ``?connection_request=false``), and the seconds to wait for its end."""
    device = api.device(req, device_id)
    wake = req.query_bool("connection_request", default=True)
    timeout = req.query_int("timeout", minimum=0, maximum=MAX_TASK_TIMEOUT) or 0
    body: dict[str, Any] = req.json_object()
    kind = body.pop("kind", None)
    if kind not in API_KINDS:
        problem = "This field is required." if kind is None else f"Unknown kind {kind!r:.60}."
        raise ApiError(400, {"kind": [f"{problem} Use one of {', '.join(API_KINDS)}."]})
    try:
        args = validate_args(kind, body)
    except ValueError as exc:
        raise _arguments_error(kind, str(exc)) from None
    _check_for_device(api, device, kind, args)
    with store_errors():
        return api.tasks.queue(device.id, kind, args, actor=req.principal.name, wake=wake), timeout
