"""Effective settings: a device's type default_settings overlaid by its own desired settings,
each compared with the parameter cache (what the CPE last reported or accepted). After every
Inform the differing ones are pushed by a configuration_update (`acs.tasks.engine`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from acs.cwmp.paths import ACS_MANAGED_SUFFIXES, ROOTS, is_setting_name, known_root
from acs.cwmp.values import infer_type, values_equal
from acs.store import Store
from acs.store.models import Device

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


def model_type(path: str) -> str | None:
    """The xsd type of a well-known standard parameter, None when the path is not one."""
    for root in ROOTS:
        if path.startswith(root):
            return _MODEL_TYPES.get(_INSTANCE_SEGMENT.sub(".{i}", path[len(root) :]))
    return None


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


def effective(store: Store, device: Device, *, refusals: bool) -> list[EffectiveSetting]:
    """The device's effective settings (one query; a second one with `refusals`)."""
    root = known_root(device.data_model_root)
    refused = store.refused_settings(device.id) if refusals else {}
    out: list[EffectiveSetting] = []
    for source, setting, cached in store.effective_setting_rows(device.id):
        path, value = setting.path, setting.value
        if source == "type" and (
            (root is not None and not path.startswith(root))
            # Never pushed from type defaults (the API refuses them as device settings),
            # or a typo in a default could cut the whole type off.
            or path.endswith(ACS_MANAGED_SUFFIXES)
            or not is_setting_name(path)
        ):
            continue  # a default for the other data model, or one the ACS owns
        xsd = (
            (cached.type if cached is not None and cached.type else None)
            or model_type(path)
            or setting.type
            or infer_type(value)
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
