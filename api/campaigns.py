"""``/campaign/``: one task over the devices a filter selects, paced, in service windows,
stopped by a rule (the runner: :mod:`acs.campaigns`).

A campaign is created as a draft (``name``, ``filter`` as the device lists take it,
``task`` as the task API takes it, ``window``, ``rate`` in devices per minute,
``max_in_flight``, ``stop_rule``); ``.../preview/`` shows the devices its filter selects
now. ``.../start/`` fixes its devices, once; ``pause/``, ``resume/`` and ``cancel/`` follow.
A campaign shows its progress (devices by task state, failures by fault code, an ETA);
``.../devices/`` lists its devices with their tasks. A token sees the campaigns made
within its organizations; the devices are those of the creating token's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from acs.campaigns import DAYS, MAX_ACTIVE, TIME_PATTERN, ZONES, campaign_eta, window_problem
from acs.clock import iso
from acs.store.campaigns import PROGRESS
from acs.store.models import CAMPAIGN_STATES, Campaign, DeviceFilter
from acs.tasks import validate_args
from api import search
from api.base import Api, ApiError, ApiRequest, Result, conflict, not_found, route, store_errors
from api.device_children import redacted, task_component
from api.device_tasks import API_KINDS, download_problems
from api.docs import DETAIL, PAGE, Doc
from api.fields import Field, Form, Integer, Invalid, JsonObject, Text
from api.resources import paged
from api.schema import Schema, date_time, integer, obj, ref, string, typed
from api.serializers import devices_flat
from api.tags import DeviceFilterField
from api.views import Out, View, when

# Every API task but a cancel_transfer, which names one device's transfer.
CAMPAIGN_KINDS = tuple(k for k in API_KINDS if k != "cancel_transfer")
MAX_WINDOWS = 14
MIN_RATE, MAX_RATE = 0.01, 100_000.0
MAX_IN_FLIGHT = 10_000


@dataclass(frozen=True, kw_only=True)
class _Task(Field):
    """``{"kind": ..., arguments}``, as ``POST .../tasks/`` takes it."""

    nullable: bool = False

    def parse(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid("Expected an object: the task's kind and its arguments.")
        body = dict(value)
        kind = body.pop("kind", None)
        if kind not in CAMPAIGN_KINDS:
            raise Invalid(f"kind: use one of {', '.join(CAMPAIGN_KINDS)}.")
        try:
            args = validate_args(kind, body)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return {"kind": kind, "args": args}

    def schema(self) -> Schema:
        return self._described(
            {
                "oneOf": [ref(task_component(k, "Request")) for k in CAMPAIGN_KINDS],
                "discriminator": {
                    "propertyName": "kind",
                    "mapping": {
                        k: f"#/components/schemas/{task_component(k, 'Request')}"
                        for k in CAMPAIGN_KINDS
                    },
                },
            }
        )


_WINDOW: Schema = obj(
    {
        "start": string(pattern=TIME_PATTERN, description="Local time HH:MM it opens."),
        "end": string(
            pattern=TIME_PATTERN,
            description="Local time HH:MM it closes; not after start: the next day.",
        ),
        "days": {
            "type": "array",
            "items": string(enum=list(DAYS)),
            "minItems": 1,
            "maxItems": 7,
            "description": "The days it opens on (default: every day).",
        },
        "timezone": string(enum=sorted(ZONES), description="IANA zone (default UTC)."),
    },
    ["start", "end"],
    additional=False,
)


@dataclass(frozen=True, kw_only=True)
class _Windows(Field):
    nullable: bool = False
    default: Any = ()

    def parse(self, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list) or len(value) > MAX_WINDOWS:
            raise Invalid(f"Expected a list of at most {MAX_WINDOWS} windows.")
        problems = [p for p in map(window_problem, value) if p is not None]
        if problems:
            raise Invalid(*problems[:3])
        return value

    def schema(self) -> Schema:
        return self._described({"type": "array", "items": _WINDOW, "maxItems": MAX_WINDOWS})


@dataclass(frozen=True, kw_only=True)
class _Rate(Field):
    """Devices per minute: a number above 0."""

    nullable: bool = False

    def parse(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid("A number of devices per minute is required.")
        if not MIN_RATE <= value <= MAX_RATE:
            raise Invalid(f"Ensure this value is from {MIN_RATE} to {MAX_RATE:.0f}.")
        return float(value)

    def schema(self) -> Schema:
        return self._described(typed("number", minimum=MIN_RATE, maximum=MAX_RATE, examples=[60]))


_RULE: Schema = obj(
    {
        "max_failures": integer(
            minimum=0, maximum=search.SQL_INT_MAX, description="Stop past this many failures."
        ),
        "max_failure_ratio": typed(
            "number", minimum=0, maximum=1, description="Stop over failed / finished."
        ),
        "min_sample": integer(
            minimum=1,
            maximum=search.SQL_INT_MAX,
            description="Finished devices before the ratio counts (default 1).",
        ),
    },
    additional=False,
)


@dataclass(frozen=True, kw_only=True)
class _StopRule(JsonObject):
    default: Any = None

    def parse(self, value: Any) -> dict[str, Any]:
        body = super().parse(value)
        unknown = sorted(set(body) - {"max_failures", "max_failure_ratio", "min_sample"})
        if unknown:
            raise Invalid(f"Unknown stop rule {str(unknown[0])[:40]!r}.")
        rule: dict[str, Any] = {}
        for key in ("max_failures", "min_sample"):
            if key in body:
                rule[key] = Integer(minimum=0 if key == "max_failures" else 1).parse(body[key])
        if "max_failure_ratio" in body:
            ratio = body["max_failure_ratio"]
            if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
                raise Invalid("max_failure_ratio: a number from 0 to 1.")
            rule["max_failure_ratio"] = float(ratio)
        return rule

    def schema(self) -> Schema:
        return self._described(_RULE)


CAMPAIGN_FORM = Form(
    "Campaign",
    {
        "name": Text(required=True, description="What it is for."),
        "filter": DeviceFilterField(required=True),
        "task": _Task(required=True, description="The kind and its arguments, as a task."),
        "window": _Windows(description="When it may run (default: any time)."),
        "rate": _Rate(required=True, description="Devices given the task per minute."),
        "max_in_flight": Integer(
            minimum=1, maximum=MAX_IN_FLIGHT, default=100, nullable=False,
            description="Devices (not Down) with an unfinished task at once (default 100).",
        ),
        "stop_rule": _StopRule(description="max_failures and/or max_failure_ratio."),
    },
    components={"CampaignWrite": "create"},
)  # fmt: skip


@dataclass(frozen=True)
class _Shown:
    """A campaign with its progress, as shown."""

    campaign: Campaign
    counts: dict[str, int]
    failures: dict[str, int]
    eta: float | None

    def __getattr__(self, name: str) -> Any:  # the campaign's own fields
        return getattr(self.campaign, name)


def _task(shown: _Shown) -> dict[str, Any]:
    return {"kind": shown.campaign.kind, **redacted(shown.campaign.args)}


_COUNTS = obj({k: integer(minimum=0) for k in (*PROGRESS, "total")}, "*")
campaign_json = View(
    "Campaign",
    {
        "id": Out(integer()),
        "name": Out(string()),
        "state": Out(string(enum=list(CAMPAIGN_STATES))),
        "reason": Out(string(True, description="Why it stopped.")),
        "filter": Out(obj({})),
        "task": Out(obj({"kind": string()}, ["kind"]), _task),
        "window": Out({"type": "array", "items": _WINDOW}, lambda s: list(s.campaign.windows)),
        "rate": Out(typed("number")),
        "max_in_flight": Out(integer(minimum=1)),
        "stop_rule": Out(_RULE),
        "held": Out(
            typed("boolean", description="Its pending tasks wait (paused, or no window open)."),
            lambda s: s.campaign.hold,
        ),
        "progress": Out(
            {**_COUNTS, "description": "Devices: waiting for their task, then by its state."},
            lambda s: {**s.counts, "total": sum(s.counts.values())},
        ),
        "failures": Out(
            obj({}, additional=integer(minimum=1), description="Failed devices by fault code."),
            lambda s: s.failures,
        ),
        "eta": Out(
            date_time(True, description="When every device has its task, at the rate."),
            lambda s: iso(s.eta),
        ),
        "created_by": Out(string(), "actor"),
        "created": when(),
        "started": when(null=True),
        "finished": when(null=True),
    },
).render
campaign_device_json = View(
    "CampaignDevice",
    {
        "device": Out(integer(), lambda r: r["device_id"]),
        "serial_number": Out(string(), lambda r: r["serial_number"]),
        "task": Out(integer(True), lambda r: r["task_id"]),
        "state": Out(string(enum=list(PROGRESS)), lambda r: r["state"]),
        "fault_code": Out(integer(True), lambda r: r["fault_code"]),
        "fault_string": Out(string(True), lambda r: r["fault_string"]),
    },
).render


def _shown(api: Api, campaign: Campaign) -> dict[str, Any]:
    counts, failures = api.store.campaign_progress(campaign.id)
    return campaign_json(
        _Shown(campaign, counts, failures, campaign_eta(campaign, counts, api.now()))
    )


def _campaign(api: Api, req: ApiRequest, campaign_id: int) -> Campaign:
    """A campaign the caller may see (all its organizations are the caller's)."""
    campaign = api.store.get_campaign(campaign_id)
    scope = req.principal.scope
    if campaign is None or (
        scope is not None
        and (campaign.organization_ids is None or not set(campaign.organization_ids) <= set(scope))
    ):
        raise not_found("No campaign with this id.")
    return campaign


def _devices(campaign: Campaign, req: ApiRequest) -> DeviceFilter:
    """The devices its filter selects within the creating token's organizations."""
    filters = search.filter_object(campaign.filter, req.principal)
    if campaign.organization_ids is not None:
        allowed = set(campaign.organization_ids)
        chosen = filters.organization_ids or campaign.organization_ids
        filters = replace(filters, organization_ids=tuple(o for o in chosen if o in allowed))
    return filters


# The state changes take no arguments: an empty body, or none.
ACTION_FORM = Form("CampaignAction", {}, components={"CampaignAction": "update"})


def _action(name: str, summary: str, description: str) -> Doc:
    return Doc(
        f"{name}_campaign", summary, "campaign", "Campaign", errors=(*DETAIL, "Conflict"),
        body="CampaignAction", body_required=False, description=description,
    )  # fmt: skip


@route("/campaign/", methods=("GET",), role="viewer", doc=Doc(
    "list_campaign", "List campaigns, newest first", "campaign", "CampaignPage", params=PAGE,
    errors=("BadRequest",),
))  # fmt: skip
def list_campaigns(api: Api, req: ApiRequest) -> Result:
    def fetch(limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        total, found = api.store.campaigns_page(req.principal.scope, limit=limit, offset=offset)
        return total, [_shown(api, c) for c in found]

    return paged(req, fetch, lambda shown: shown)


@route("/campaign/", methods=("POST",), role="operator", doc=Doc(
    "create_campaign", "Create a campaign (a draft)", "campaign", "Campaign", 201,
    body="CampaignWrite", errors=("BadRequest", "TooLarge"),
    description="Nothing runs before .../start/.",
))  # fmt: skip
def create_campaign(api: Api, req: ApiRequest) -> Result:
    values = CAMPAIGN_FORM.read(req.json_object(), mode="create")
    search.filter_object(values["filter"], req.principal)  # an organization it may not use
    task = values.pop("task")
    if task["kind"] in ("download", "schedule_download"):
        problems = download_problems(api, None, task["args"])
        if problems:
            raise ApiError(400, {"task": [f"{k}: {' '.join(v)}" for k, v in problems.items()]})
    values.update(
        kind=task["kind"],
        args=task["args"],
        windows=values.pop("window") or [],
        stop_rule=values["stop_rule"] or {},
        organization_ids=req.principal.scope,
    )
    with store_errors():
        campaign = api.store.create_campaign(values, now=api.now(), actor=req.principal.name)
    return 201, _shown(api, campaign)


@route("/campaign/<int:campaign_id>/", methods=("GET",), role="viewer", doc=Doc(
    "get_campaign", "One campaign and its progress", "campaign", "Campaign", errors=DETAIL,
))  # fmt: skip
def get_campaign(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    return 200, _shown(api, _campaign(api, req, campaign_id))


@route("/campaign/<int:campaign_id>/", methods=("DELETE",), role="operator", doc=Doc(
    "delete_campaign", "Delete a draft or ended campaign", "campaign", None, 204,
    errors=("NotFound", "Conflict"), description="409 while it runs or is paused.",
))  # fmt: skip
def delete_campaign(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    campaign = _campaign(api, req, campaign_id)
    with store_errors():
        api.store.delete_campaign(campaign.id, now=api.now(), actor=req.principal.name)
    return 204, None


@route("/campaign/<int:campaign_id>/preview/", methods=("GET",), role="viewer", doc=Doc(
    "preview_campaign", "The devices the campaign's filter selects now", "campaign",
    "DevicePage", params=PAGE, errors=DETAIL,
    description="count and the first page; what start would give the campaign.",
))  # fmt: skip
def preview_campaign(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    filters = _devices(_campaign(api, req, campaign_id), req)
    limit, offset = req.page_params()
    total, devices = api.store.devices_page(filters, limit=limit, offset=offset)
    return 200, req.page(
        total, devices_flat(api.store, devices, detailed_pending=False), limit, offset
    )


@route("/campaign/<int:campaign_id>/devices/", methods=("GET",), role="viewer", doc=Doc(
    "list_campaign_devices", "The campaign's devices and their tasks", "campaign",
    "CampaignDevicePage", params=PAGE, errors=DETAIL,
    description="Empty until it starts.",
))  # fmt: skip
def list_campaign_devices(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    campaign = _campaign(api, req, campaign_id)

    def fetch(limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        return api.store.campaign_devices_page(campaign.id, limit=limit, offset=offset)

    return paged(req, fetch, campaign_device_json)


@route("/campaign/<int:campaign_id>/start/", methods=("POST",), role="operator", doc=_action(
    "start", "Start a draft campaign",
    f"Its devices are fixed now; 409 unless a draft, or with {MAX_ACTIVE} running already.",
))  # fmt: skip
def start_campaign(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    campaign = _campaign(api, req, campaign_id)
    ACTION_FORM.read(req.json_object(optional=True), mode="update")
    if campaign.state == "draft" and len(api.store.active_campaigns()) >= MAX_ACTIVE:
        raise conflict(f"At most {MAX_ACTIVE} campaigns run or are paused at once.")
    filters = _devices(campaign, req)
    with store_errors():
        started, _ = api.store.start_campaign(
            campaign.id, filters, now=api.now(), actor=req.principal.name
        )
    return 200, _shown(api, started)


def _move(
    api: Api, req: ApiRequest, campaign_id: int, from_states: tuple[str, ...], to: str
) -> Result:
    campaign = _campaign(api, req, campaign_id)
    ACTION_FORM.read(req.json_object(optional=True), mode="update")
    with store_errors():
        moved = api.store.move_campaign(
            campaign.id, from_states, to, now=api.now(), actor=req.principal.name
        )
    return 200, _shown(api, moved)


@route("/campaign/<int:campaign_id>/pause/", methods=("POST",), role="operator", doc=_action(
    "pause", "Pause a running campaign",
    "No device gets its task, and pending ones wait; running tasks end. 409 unless running.",
))  # fmt: skip
def pause_campaign(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    return _move(api, req, campaign_id, ("running",), "paused")


@route("/campaign/<int:campaign_id>/resume/", methods=("POST",), role="operator", doc=_action(
    "resume", "Resume a paused campaign", "409 unless paused.",
))  # fmt: skip
def resume_campaign(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    return _move(api, req, campaign_id, ("paused",), "running")


@route("/campaign/<int:campaign_id>/cancel/", methods=("POST",), role="operator", doc=_action(
    "cancel", "Cancel a campaign",
    "Its tasks that did not start are cancelled; running ones end. 409 once it ended.",
))  # fmt: skip
def cancel_campaign(api: Api, req: ApiRequest, campaign_id: int) -> Result:
    return _move(api, req, campaign_id, ("draft", "running", "paused"), "cancelled")
