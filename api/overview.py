"""``GET /overview/``: the fleet at a glance, for the dashboard's first page: how many
devices, by status, the commonest product classes and software versions (top 20, the rest
summed as ``others``), and the devices that went Down last. Within the caller's scope.

And ``series``, the appliance's activity over the last ``hours`` (default 6, at most 24): a
point per minute (:mod:`acs.series`) with the CWMP sessions ended, the 503s, the CPE
faults, the tasks that ended and those open then; beyond 6 hours a point per ``interval``
seconds (a multiple of the minute: 24 hours, 4 minutes), so an answer holds at most 361
points. Those counters are appliance-wide, not per organization: a caller scoped to
organizations gets ``series: null`` (other organizations' activity is not theirs to see).
Minutes the appliance was not running have no point; a point's ``seconds`` is the time its
samples cover (shorter for the first after a start, longer if a sample could not be
written), for rates."""

from __future__ import annotations

import math
from typing import Any

from acs.clock import iso
from acs.series import INTERVAL, RETENTION
from acs.store.models import FINISHED_STATES, OPEN_STATES, SESSION_OUTCOMES, SeriesSample
from api.base import Api, ApiRequest, Result, route
from api.docs import READ, Doc, query_param
from api.schema import integer, nullable, obj, string, typed

TOP = 20
RECENT = 10
DEFAULT_HOURS = 6
MAX_HOURS = int(RETENTION // 3600)
# Points per answer at most (and one more: the window's ends cut two buckets): a sample each
# up to 6 hours, then buckets of several summed (24 hours: 4 minutes a point).
MAX_POINTS = 360
CAUSES = ("session_cap", "storage_full")

_GROUP = obj(
    {
        "values": {
            "type": "array",
            "items": obj({"value": nullable(string()), "count": integer(minimum=1)}, "*"),
            "maxItems": TOP,
        },
        "others": integer(minimum=0, description="Devices with any other value."),
    },
    "*",
)
_COUNT = integer(minimum=0)


def _counts(names: tuple[str, ...], description: str) -> dict[str, Any]:
    return obj(dict.fromkeys(names, _COUNT), "*", description=description)


_POINT = obj(
    {
        "at": string(format="date-time", description="When its last sample was taken."),
        "seconds": typed(
            "number", minimum=0, description="The time its samples cover, up to `at`."
        ),
        "sessions": integer(minimum=0, description="CWMP sessions that ended."),
        "sessions_by_outcome": _counts(SESSION_OUTCOMES, "`sessions` by outcome."),
        "rejected_503": integer(
            minimum=0, description="503s: new sessions at the cap, writes refused (full storage)."
        ),
        "rejected_503_by_cause": _counts(CAUSES, "`rejected_503` by cause."),
        "faults": integer(minimum=0, description="CPE faults answering the ACS's RPCs."),
        "tasks": _counts(OPEN_STATES, "Tasks open at `at`."),
        "tasks_ended": _counts(FINISHED_STATES, "Tasks that ended in the span, by state."),
    },
    "*",
)
SERIES = obj(
    {
        "interval": integer(
            minimum=1,
            description="Seconds each point sums: the sampling interval (60) up to 6 hours, "
            "a multiple beyond (24 hours: 240).",
        ),
        "hours": integer(minimum=1, maximum=MAX_HOURS),
        "points": {"type": "array", "items": _POINT, "maxItems": MAX_POINTS + 1},
    },
    "*",
    description="The appliance's activity, a point per `interval` (oldest first; none while "
    "it was not running); appliance-wide, so null for a caller scoped to organizations.",
)
HOURS = query_param(
    "hours",
    integer(minimum=1, maximum=MAX_HOURS, default=DEFAULT_HOURS),
    f"Hours of `series` (1-{MAX_HOURS}, default {DEFAULT_HOURS}); anything else -> 400.",
    empty=True,
)
OVERVIEW = obj(
    {
        "devices": integer(minimum=0),
        "by_status": obj({"Up": integer(minimum=0), "Down": integer(minimum=0)}, "*"),
        "by_product_class": _GROUP,
        "by_software_version": _GROUP,
        "recently_down": {
            "type": "array",
            "maxItems": RECENT,
            "items": obj(
                {
                    "id": integer(),
                    "serial_number": string(),
                    "name": string(),
                    "status_change": string(format="date-time"),
                },
                "*",
            ),
        },
        "series": nullable(SERIES),
    },
    "*",
)


def _group(rows: list[tuple[str | None, int]], total: int) -> dict[str, Any]:
    values = [{"value": value, "count": count} for value, count in rows]
    return {"values": values, "others": total - sum(count for _, count in rows)}


def _point(sample: SeriesSample) -> dict[str, Any]:
    c = sample.counts
    sessions = {outcome: c[f"sessions_{outcome}"] for outcome in SESSION_OUTCOMES}
    rejected = {cause: c[f"rejected_{cause}"] for cause in CAUSES}
    return {
        "at": iso(sample.at),
        "seconds": round(sample.seconds, 3),
        "sessions": sum(sessions.values()),
        "sessions_by_outcome": sessions,
        "rejected_503": sum(rejected.values()),
        "rejected_503_by_cause": rejected,
        "faults": c["faults"],
        "tasks": {state: c[f"tasks_{state}"] for state in OPEN_STATES},
        "tasks_ended": {state: c[f"tasks_{state}"] for state in FINISHED_STATES},
    }


def series(api: Api, hours: int) -> dict[str, Any]:
    """The ``series`` of the last ``hours``: at most MAX_POINTS + 1 points."""
    step = int(INTERVAL) * math.ceil(hours * 3600 / INTERVAL / MAX_POINTS)
    now = api.now()
    samples = api.store.series_samples(now - hours * 3600, now, step=step)
    return {"interval": step, "hours": hours, "points": [_point(s) for s in samples]}


@route(
    "/overview/",
    methods=("GET",),
    doc=Doc("overview", "The fleet at a glance: counts by status, model, firmware; activity",
            "meta", OVERVIEW, params=(HOURS,), errors=READ,
            description="`series` is appliance-wide: null for a caller scoped to "
            "organizations."),
)  # fmt: skip
def overview(api: Api, req: ApiRequest) -> Result:
    hours = req.query_int("hours", minimum=1, maximum=MAX_HOURS) or DEFAULT_HOURS
    scope = req.principal.scope
    found = api.store.device_overview(scope, top=TOP, recent=RECENT)
    total = found["total"]
    return 200, {
        "devices": total,
        "by_status": {
            "Up": found["by_status"].get("Up", 0),
            "Down": found["by_status"].get("Down", 0),
        },
        "by_product_class": _group(found["product_class"], total),
        "by_software_version": _group(found["software_version"], total),
        "recently_down": [
            {**row, "status_change": iso(row["status_change"])} for row in found["recently_down"]
        ],
        "series": series(api, hours) if scope is None else None,
    }
