"""A device's sub-resources (spec section 7): cached parameters, tasks (with cancel), history,
debug session transcripts and how connection requests would reach it (``reachability``),
all under ``/inventory_device/<id>/``.

Tenancy comes from :meth:`api.base.Api.device` (404 unknown, 403 outside the token's scope).
Order: parameters by path; tasks by ascending id (creation order; ``?state=`` filters);
history and session transcripts newest first.

Secrets never leave through here: a parameter whose name marks a credential
(:func:`is_secret_path`) is listed with ``value: null``, task arguments and results (which may
carry SetParameterValues values) are not exposed, and session transcripts have the values of
such parameters and any password-like element replaced by ``[redacted]`` — a transcript of
the provisioning session holds the connection-request password the ACS chose.
"""

from __future__ import annotations

from typing import Any

from acs.cwmp.redact import REDACTED, is_secret_path, redact_transcript
from acs.store.models import (
    CONNECTION_REQUEST_METHODS,
    PENDING,
    TASK_STATES,
    HistoryEntry,
    Parameter,
    SessionTranscript,
    Task,
)
from acs.tasks import KINDS
from api.base import (
    Api,
    ApiError,
    ApiRequest,
    Result,
    conflict,
    not_found,
    route,
    store_errors,
)
from api.docs import DETAIL, Doc, device_page
from api.resources import paged
from api.schema import integer, obj, ref, string, typed
from api.views import Out, View, when


def _redacted_value(param: Parameter) -> str | None:
    return None if is_secret_path(param.path) else param.value


def _redacted_transcript(transcript: SessionTranscript) -> str:
    return redact_transcript(transcript.transcript)


def task_component(kind: str, what: str) -> str:
    """The OpenAPI component of a kind's request or result: TaskRequestGetRpcMethods..."""
    return f"Task{what}" + "".join(part.capitalize() for part in kind.split("_"))


def redacted(data: Any) -> Any:
    """``data`` with the value of every ``{"name": <credential path>, "value": ...}`` item
    (and every credential-path key) hidden, however deep."""
    if isinstance(data, list):
        return [redacted(item) for item in data]
    if not isinstance(data, dict):
        return data
    name = data.get("name")
    secret = isinstance(name, str) and is_secret_path(name)
    return {
        key: REDACTED
        if (secret and key == "value" and value is not None)
        or (is_secret_path(key) and value is not None)
        else redacted(value)
        for key, value in data.items()
    }


def _args(task: Task) -> Any:
    return redacted(task.args)


def _result(task: Task) -> Any:
    return None if task.result is None else redacted(task.result)


parameter_json = View(
    "Parameter",
    {
        "path": Out(string()),
        "value": Out(string(True), _redacted_value),
        "type": Out(string(True, examples=["xsd:string"])),
        "writable": Out(typed("boolean", null=True)),
        "updated": when(),
    },
).render
task_json = View(
    "Task",
    {
        "id": Out(integer()),
        "kind": Out(string(examples=["reboot"])),
        "state": Out(string(enum=list(TASK_STATES))),
        "created": when(),
        "scheduled_at": when(null=True),
        "started": when(null=True),
        "finished": when(null=True),
        "fault_code": Out(integer(True)),
        "fault_string": Out(string(True)),
        "attempts": Out(integer(minimum=0)),
        "next_attempt_at": when(null=True, description="When a failed attempt is retried."),
        "actor": Out(string(description="Who queued it: a token name, 'acs' or 'campaign:<id>'.")),
        "campaign": Out(integer(True, description="The campaign that queued it."), "campaign_id"),
        "arguments": Out(obj({}, description="As queued (credential values redacted)."), _args),
        "result": Out(
            {
                "anyOf": [
                    {"type": "null"},
                    *(ref(task_component(k, "Result")) for k, d in KINDS.items() if d.api_task),
                    obj({}, description="Of an internal kind."),
                ],
                "description": "What the CPE answered, once done (credential values redacted).",
            },
            _result,
        ),
    },
).render
history_json = View(
    "HistoryEntry",
    {
        "id": Out(integer()),
        "time": when(),
        "actor": Out(string(description="Token name, 'acs' or 'cpe'.")),
        "action": Out(string(examples=["updated", "status", "task_queued"])),
        "detail": Out(obj({})),
    },
    description="One audit entry: API change, operation, status transition, CWMP fault.",
    page="HistoryPage",
).render
session_json = View(
    "SessionTranscript",
    {
        "id": Out(integer()),
        "started": when(),
        "transcript": Out(string(), _redacted_transcript),
    },
    description="A CWMP session's SOAP transcript (kept while the device's debug is on).",
).render


def _states(req: ApiRequest) -> tuple[str, ...] | None:
    """``?state=pending,failed``: None when absent; 400 naming an unknown state."""
    raw = req.query().get("state")
    if raw is None or not raw.strip():
        return None
    states = tuple(s.strip() for s in raw.split(",") if s.strip())
    unknown = [s for s in states if s not in TASK_STATES]
    if unknown:
        raise ApiError(
            400,
            {"state": [f"Unknown task state {unknown[0]!r}; use one of {', '.join(TASK_STATES)}."]},
        )
    return states


@route(
    "/inventory_device/<int:device_id>/parameters/",
    methods=("GET",),
    role="viewer",
    doc=device_page(
        "list_device_parameters",
        "The device's cached parameter tree",
        "ParameterPage",
        params=("path_prefix",),
    ),
)
def list_parameters(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)
    prefix = req.query().get("path", "")
    return paged(
        req,
        lambda limit, offset: api.store.parameters_page(
            device.id, prefix, limit=limit, offset=offset
        ),
        parameter_json,
    )


@route(
    "/inventory_device/<int:device_id>/tasks/",
    methods=("GET",),
    role="viewer",
    doc=device_page(
        "list_device_tasks",
        "Queued and finished tasks of the device",
        "TaskPage",
        params=("task_state",),
    ),
)
def list_tasks(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)
    states = _states(req)
    return paged(
        req,
        lambda limit, offset: api.store.tasks_page(
            device.id, states=states, limit=limit, offset=offset
        ),
        task_json,
    )


def device_task(api: Api, req: ApiRequest, device_id: int, task_id: int) -> Task:
    """A task of a device the caller may read: 404 unknown or another device's."""
    device = api.device(req, device_id)
    task = api.store.get_task(task_id)
    if task is None or task.device_id != device.id:
        raise not_found("No task with this id for this device.")
    return task


@route(
    "/inventory_device/<int:device_id>/tasks/<int:task_id>/",
    methods=("GET",),
    role="viewer",
    doc=Doc("get_device_task", "One task of the device", "device_resources", "Task", errors=DETAIL),
)
def get_task(api: Api, req: ApiRequest, device_id: int, task_id: int) -> Result:
    return 200, task_json(device_task(api, req, device_id, task_id))


@route(
    "/inventory_device/<int:device_id>/tasks/<int:task_id>/",
    methods=("DELETE",),
    role="operator",
    doc=Doc(
        "cancel_device_task",
        "Cancel a pending task",
        "device_resources",
        None,
        204,
        errors=("NotFound", "Conflict"),
        description="409 when the task is no longer pending.",
    ),
)
def cancel_task(api: Api, req: ApiRequest, device_id: int, task_id: int) -> Result:
    """Cancel a pending task (204); 409 once it has started or finished."""
    task = device_task(api, req, device_id, task_id)
    if task.state != PENDING:
        raise conflict(f"Task {task.id} is {task.state}; only pending tasks can be cancelled.")
    with store_errors():
        api.tasks.cancel(task, now=api.now(), actor=req.principal.name)
    return 204, None


@route(
    "/inventory_device/<int:device_id>/history/",
    methods=("GET",),
    role="viewer",
    doc=device_page("list_device_history", "The device's audit trail", "HistoryPage"),
)
def list_history(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)

    def fetch(limit: int, offset: int) -> tuple[int, list[HistoryEntry]]:
        with api.store.transaction():  # count and page from one snapshot
            return api.store.count_history(device.id), api.store.history(
                device.id, limit=limit, offset=offset
            )

    return paged(req, fetch, history_json)


_REACH_VIA = string(enum=list(CONNECTION_REQUEST_METHODS))
stun_binding_json = View(
    "StunBinding",
    {
        "address": Out(string(True, description="The public address of the NAT's binding.")),
        "port": Out(integer(True)),
        "seen": when(null=True, description="The last signed Binding Request that kept it."),
        "changed": when(null=True, description="When address or port last changed."),
    },
    page=None,
    description="The device's binding at the STUN listener (TR-111): where UDP connection "
    "requests go while it is fresh.",
).render
reach_schema = obj(
    {
        "methods": {
            "type": "array",
            "items": obj(
                {"via": _REACH_VIA, "target": string(examples=["cpe@xmpp.example.net/cwmp"])},
                "*",
            ),
            "description": "How the next connection request would try to reach the device, "
            "in order (its device type's connection_request_order, else the default), each "
            "with where it would go; methods it has nowhere for are left out.",
        },
        "stun_binding": {"anyOf": [ref("StunBinding"), {"type": "null"}]},
    },
    "*",
)


@route(
    "/inventory_device/<int:device_id>/reachability/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "get_device_reachability",
        "How connection requests would reach the device",
        "device_resources",
        reach_schema,
        errors=DETAIL,
    ),
)
def get_reachability(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)
    with api.store.transaction():  # one snapshot
        reach = api.appliance.connreq.reach(device)
        binding = api.store.stun_binding(device.id)
    methods = [{"via": via, "target": target} for via, target in reach.targets()]
    bound = binding is not None and binding.address is not None
    return 200, {"methods": methods, "stun_binding": stun_binding_json(binding) if bound else None}


@route(
    "/inventory_device/<int:device_id>/sessions/",
    methods=("GET",),
    role="viewer",
    doc=device_page(
        "list_device_sessions",
        "SOAP transcripts of the device's sessions (debug on)",
        "SessionTranscriptPage",
    ),
)
def list_sessions(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)

    def fetch(limit: int, offset: int) -> tuple[int, list[SessionTranscript]]:
        with api.store.transaction():
            return api.store.count_session_transcripts(device.id), api.store.session_transcripts(
                device.id, limit=limit, offset=offset
            )

    return paged(req, fetch, session_json)
