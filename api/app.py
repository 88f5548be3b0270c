"""The API listener's Klein application: ``/healthz`` plus every ``/api/v1`` route.

Route modules register themselves on :class:`api.base.Api` when imported; importing them
here is what puts them on the listener. ``/healthz`` needs no token: 200 ``ok``, or 503
``degraded`` while the database or the files directory refuses writes for lack of space
(``storage_full`` names which), or 503 ``error`` when the store cannot even be read.
"""

from __future__ import annotations

from typing import Any

from klein import Klein

from acs.version import build_info
from api import (
    audit,
    auth,
    backups,
    campaigns,
    dashboard,
    device_children,
    device_csv,
    device_settings,
    device_tasks,
    devices,
    events,
    files,
    firmware,
    metrics,
    openapi,
    operations,
    overview,
    resources,
    serial,
    tags,
    tokens,
    users,
    webhooks,
)
from api.base import Api, ApiRequest, ApplianceView, Result, route
from api.docs import Doc
from api.schema import JSON, ref
from api.site import port_address

# Importing a route module registers its routes on Api.app; naming them here makes that
# dependency explicit (and keeps the imports from looking unused).
ROUTE_MODULES = (
    dashboard,
    auth,
    devices,
    serial,
    operations,
    resources,
    device_children,
    device_tasks,
    device_settings,
    device_csv,
    tags,
    campaigns,
    audit,
    events,
    webhooks,
    backups,
    files,
    firmware,
    metrics,
    openapi,
    overview,
    users,
    tokens,
)


def listener_states(appliance: ApplianceView) -> dict[str, dict[str, Any]]:
    """Per listener: the bound address when listening, else the configured endpoint."""
    configured = {
        "cwmp": appliance.config.cwmp.listen,
        "api": appliance.config.api.listen,
        "files": appliance.config.files.listen,
    }
    if appliance.config.stun.listen:
        configured["stun"] = appliance.config.stun.listen
    states: dict[str, dict[str, Any]] = {}
    ports = appliance.listening()
    for name, endpoint in configured.items():
        port = ports.get(name)
        states[name] = {
            "address": port_address(port) if port is not None else endpoint,
            "listening": port is not None,
        }
    return states


@route(
    "/healthz",
    methods=("GET", "HEAD"),
    auth=False,
    prefix="",
    doc=Doc(
        "healthz",
        "Liveness of the appliance (no token needed)",
        "meta",
        responses={
            "200": {"description": "Healthy.", "content": {JSON: {"schema": ref("Health")}}},
            "503": {
                "description": "Degraded: storage is full and writes are refused (status "
                "degraded, storage_full names the database and/or the files directory; clears "
                "once a write succeeds again), or the store is unavailable (status error).",
                "content": {JSON: {"schema": ref("Health")}},
            },
        },
    ),
)
def healthz(api: Api, req: ApiRequest) -> Result:
    try:
        devices = api.store.count_devices()
    except Exception:
        # A health check reports a broken database; it does not crash with a traceback.
        api.log.failure("healthz: store unavailable")
        return 503, {**_identity(api), "status": "error", "detail": "store unavailable"}
    body: dict[str, Any] = {
        "status": "ok",
        **_identity(api),
        "storage": "ok",
        "listeners": listener_states(api.appliance),
        "devices": devices,
    }
    full = api.store.health.full
    if full:
        # Writes are being refused (503) until space is freed: not healthy, but not broken
        # either. Clears by itself at the next write that succeeds (or the maintenance probe).
        body.update(status="degraded", storage="full", storage_full=list(full))
        return 503, body
    return 200, body


def _identity(api: Api) -> dict[str, Any]:
    """Which program answers, built from which commit, in which process."""
    info = build_info()
    return {"version": info["version"], "commit": info["commit"], "node": api.appliance.node}


def make_app(appliance: ApplianceView) -> Klein:
    """The Klein app of the API listener, bound to ``appliance``."""
    bound: Klein = Api(appliance).app
    return bound
