"""The device ``settings`` object: a device's effective desired settings, readable and
writable as one TR-069 path -> value map.

``GET /inventory_device/<id>/settings/`` shows every effective setting (the device type's
``default_settings`` overlaid by the device's own settings) with its source (``type`` or
``device``), the value the CPE last reported or accepted, and its state: ``confirmed`` (the
CPE has it), ``pending`` (the next configuration_update pushes it) or ``refused`` (the CPE
refused exactly this value for good; the fault is shown, and it is not pushed again until the
value changes). Credential values are redacted.

``PATCH`` takes ``{path: value}``: a value sets the device's own setting (pending until the
CPE confirms it), ``null`` removes it (the ACS stops managing the path, or the type default
applies again). A change queues one (coalesced) ``configuration_update`` and wakes the device.
Validation is the operation endpoints' (``api.operations``): full parameter names under the
device's data model root, not managed by the ACS, not read-only, values of the right type.
"""

from __future__ import annotations

from typing import Any

from acs.clock import iso
from acs.cwmp.paths import is_setting_name, known_root
from acs.cwmp.redact import REDACTED, is_secret_path
from acs.cwmp.values import type_problem
from acs.store.models import Device
from acs.tasks import EffectiveSetting, model_type
from api.base import Api, ApiError, ApiRequest, Result, route
from api.docs import DETAIL, WRITE, Doc
from api.operations import setting_problem, setting_value

MAX_SETTINGS_PER_REQUEST = 1024


def _state(setting: EffectiveSetting) -> str:
    if not setting.needs_push:
        return "confirmed"
    return "refused" if setting.refused is not None else "pending"


def setting_json(setting: EffectiveSetting) -> dict[str, Any]:
    secret = is_secret_path(setting.path)
    fault = None
    if setting.refused is not None and setting.needs_push:
        fault = {"code": setting.refused[0], "string": setting.refused[1]}
    return {
        "value": REDACTED if secret else setting.value,
        "type": setting.type,
        "source": setting.source,
        "confirmed": setting.confirmed,
        "state": _state(setting),
        "cpe_value": REDACTED if secret and setting.cached is not None else setting.cached,
        "fault": fault,
        "updated": iso(setting.updated),
    }


def settings_json(api: Api, device: Device) -> dict[str, Any]:
    settings = api.tasks.effective_settings(device)
    return {
        "device": device.id,
        "data_model_root": device.data_model_root,
        "device_type": device.type_id,
        "last_configuration": iso(device.last_configuration),
        "pending": sum(1 for s in settings if s.needs_push and s.refused is None),
        "settings": {s.path: setting_json(s) for s in settings},
    }


def _validate(api: Api, device: Device, body: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """(values to set, paths to remove); 400 with every problem, keyed by path."""
    if len(body) > MAX_SETTINGS_PER_REQUEST:
        raise ApiError(
            400, {"detail": f"At most {MAX_SETTINGS_PER_REQUEST} TR-069 parameters per request."}
        )
    root = known_root(device.data_model_root)
    errors: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    removals: list[str] = []
    for key, raw in body.items():
        if not is_setting_name(key):  # even to stop managing it: no such setting can exist
            errors[key] = [
                "Not a TR-069 parameter name (a 'Device.' or 'InternetGatewayDevice.' path "
                "without a trailing '.')."
            ]
            continue
        if raw is None:
            removals.append(key)
            continue
        problem = setting_problem(api, device, root, key, raw) or _model_problem(
            api, device, key, raw
        )
        if problem is not None:
            errors[key] = [problem]
            continue
        values[key] = setting_value(raw)
    if errors:
        raise ApiError(400, errors)
    return values, removals


def _model_problem(api: Api, device: Device, key: str, raw: Any) -> str | None:
    """A value the standard data model's type refuses ("sixty" as PeriodicInformInterval),
    when the cache has not told us the CPE's own type yet."""
    xsd = model_type(key)
    cached = api.store.get_parameter(device.id, key)
    if xsd is None or (cached is not None and cached.type):
        return None
    problem = type_problem(setting_value(raw), xsd)  # setting_problem vetted the value
    return None if problem is None else f"value {problem}"


@route(
    "/inventory_device/<int:device_id>/settings/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "get_device_settings",
        "The device's effective desired settings and their state",
        "device_resources",
        "DeviceSettings",
        errors=DETAIL,
    ),
)
def get_device_settings(api: Api, req: ApiRequest, device_id: int) -> Result:
    return 200, settings_json(api, api.device(req, device_id))


@route(
    "/inventory_device/<int:device_id>/settings/",
    methods=("PATCH",),
    role="operator",
    doc=Doc(
        "patch_device_settings",
        "Set or remove the device's own desired settings",
        "device_resources",
        "DeviceSettings",
        body="DeviceSettingsPatch",
        errors=WRITE,
        description="A change queues one configuration_update and wakes the device. Invalid paths"
        " or values -> 400 keyed by path.",
    ),
)
def patch_device_settings(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)
    body = req.json_object()
    values, removals = _validate(api, device, body)
    store = api.store
    actor = req.principal.name
    now = api.now()
    queued = False
    with store.transaction():
        removed = store.remove_desired_settings(device.id, removals, now=now, actor=actor)
        changed = store.set_desired_settings(device.id, values, now=now, actor=actor)
        if removed or changed:
            # A removal can uncover a type default the CPE does not have yet: push too.
            api.tasks.queue(device.id, "configuration_update", {}, actor=actor, wake=False, now=now)
            queued = True
    if queued:
        api.tasks.wake(device.id)
    current = store.get_device(device.id) or device
    return 200, settings_json(api, current)
