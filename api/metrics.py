"""``GET /metrics``: appliance counters in the Prometheus text exposition format (0.0.4).

Served at the root next to ``/healthz`` (not under ``/api/v1``) because that is where
scrapers look. Unlike ``/healthz`` it needs a bearer token (viewer or higher), and one
without organization scope: the figures cover every organization, so a scoped token gets 403.
Exposed: ``acs_devices`` (total), ``acs_devices_by_status{status="up"|"down"}``,
``acs_tasks{state=...}`` (every task state, zeros included), ``acs_cwmp_sessions_active``,
``acs_api_tokens`` (not revoked) and ``acs_info{version}``; counters since start:
``acs_storage_writes_refused_total{storage="database"|"files"}`` (writes refused because the
database or the files directory was full; ``/healthz`` says whether it still is),
``acs_cwmp_busy_rejections_total`` (503s at the session cap),
``acs_cwmp_idle_evictions_total`` (idle sessions ended to admit new ones) and, per
listener (cwmp, api), ``acs_<listener>_auth_failures_total`` and
``acs_<listener>_auth_throttled_total``.
"""

from __future__ import annotations

import acs
from acs.store.health import STORAGES
from acs.store.models import DOWN, UP, DeviceFilter
from api.base import Api, ApiRequest, RawBody, Result, forbidden, route
from api.docs import Doc
from api.schema import JSON, ref, string

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _gauge(
    name: str, help_text: str, samples: list[tuple[str, int]], kind: str = "gauge"
) -> list[str]:
    """One metric family: HELP, TYPE and its samples (``labels`` text without braces)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lines.append(f"{name}{{{labels}}} {value}" if labels else f"{name} {value}")
    return lines


def _counter(name: str, help_text: str, samples: list[tuple[str, int]]) -> list[str]:
    """A counter family (``name`` ends in ``_total``); values only grow while the process runs."""
    return _gauge(name, help_text, samples, kind="counter")


def render_metrics(api: Api) -> str:
    store = api.store
    lines: list[str] = []
    lines += _gauge("acs_info", "The running ACS version.", [(f'version="{acs.__version__}"', 1)])
    lines += _gauge("acs_devices", "Devices known to the ACS.", [("", store.count_devices())])
    lines += _gauge(
        "acs_devices_by_status",
        "Devices by liveness status (spec section 2).",
        [
            ('status="up"', store.count_devices(DeviceFilter(status=UP))),
            ('status="down"', store.count_devices(DeviceFilter(status=DOWN))),
        ],
    )
    lines += _gauge(
        "acs_tasks",
        "Device tasks by state.",
        [(f'state="{state}"', n) for state, n in store.count_tasks_by_state().items()],
    )
    lines += _gauge(
        "acs_cwmp_sessions_active",
        "CWMP sessions in progress.",
        [("", api.appliance.cwmp.active_sessions())],
    )
    lines += _gauge(
        "acs_api_tokens", "API tokens not revoked.", [("", store.count_active_tokens())]
    )
    refused = store.health.refused
    lines += _counter(
        "acs_storage_writes_refused_total",
        "Writes refused because the database or the files directory was full, since start.",
        [(f'storage="{name}"', refused[name]) for name in STORAGES],
    )
    cwmp = api.appliance.cwmp
    lines += _counter(
        "acs_cwmp_busy_rejections_total",
        "New CWMP sessions turned away with 503 at the session cap.",
        [("", cwmp.busy_rejections)],
    )
    lines += _counter(
        "acs_cwmp_idle_evictions_total",
        "CWMP sessions ended at the session cap after idling past [cwmp] idle_grace.",
        [("", cwmp.idle_evictions)],
    )
    for listener, throttle in (
        ("cwmp", cwmp.auth_throttle),
        ("api", api.appliance.api_auth_throttle),
    ):
        lines += _counter(
            f"acs_{listener}_auth_failures_total",
            f"Failed {listener.upper()} authentications (wrong credentials or token).",
            [("", throttle.failures_total)],
        )
        lines += _counter(
            f"acs_{listener}_auth_throttled_total",
            f"{listener.upper()} requests refused while their source backs off after failures.",
            [("", throttle.refused_total)],
        )
    return "\n".join(lines) + "\n"


@route(
    "/metrics",
    methods=("GET",),
    role="viewer",
    prefix="",
    doc=Doc(
        "metrics",
        "Prometheus metrics",
        "meta",
        description="Counters over every organization, so a token scoped to some "
        "organizations gets 403.",
        responses={
            "200": {
                "description": "Prometheus text exposition format 0.0.4.",
                "content": {"text/plain": {"schema": string()}},
            },
            "503": {
                "description": "The store is unavailable.",
                "content": {JSON: {"schema": ref("Error")}},
            },
        },
    ),
)
def metrics(api: Api, req: ApiRequest) -> Result:
    if req.principal.scope is not None:
        raise forbidden("Metrics cover every organization: use a token without scope.")
    try:
        text = render_metrics(api)
    except Exception:
        # A scrape of a broken database is an error answer, not a traceback.
        api.log.failure("metrics: store unavailable")
        return 503, {"detail": "store unavailable"}
    return 200, RawBody(text.encode("utf-8"), CONTENT_TYPE)
