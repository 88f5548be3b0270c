"""Onboarding: which devices may start a CWMP session, with which credentials, and what an
admitted Inform records. The CWMP resource (``acs.cwmp_http``) does the HTTP around it.

- ``admission(serial)``: the device of a serial, or why its Inform is refused (a
  decommissioned device; an unknown serial with ``[cwmp] auto_register`` off).
- ``accepted_credentials(device)``: a device's own credentials once the ACS assigned (or an
  operator set) them, else the first-contact ones (``[cwmp] username/password``, or none);
  ``readmission_credential(device)``: the first-contact ones too while a factory reset the
  ACS ordered is under way (the CPE lost what it was given).
- ``admit(...)``: in the caller's transaction, registers an unknown serial (auto-registration
  into ``[cwmp] default_organization``, its device type found by manufacturer and product
  class), forgets the credentials of a device re-admitted at first contact (provisioning
  assigns new ones), records the Inform and hands it to the task engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from acs.config import CwmpConfig
from acs.cwmp import rpc
from acs.cwmp.identity import bounded
from acs.cwmp.paths import ROOTS
from acs.store.models import Device, InformRecord

if TYPE_CHECKING:
    from acs.store import Store
    from acs.tasks import TaskEngine


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    first_contact: bool  # shared or no credentials, not the device's own


# First contact without any credentials (no [cwmp] username/password configured).
NO_CREDENTIALS = Credential("", "", first_contact=True)


@dataclass(frozen=True)
class Refusal:
    """An Inform refused before authentication: answer 403 with ``reason``."""

    reason: str
    log: str


@dataclass(frozen=True)
class Admitted:
    """An Inform recorded: its device, the organization's name when it was auto-registered
    just now, whether the session may have tasks to run (`TaskEngine.on_inform`), and
    whether its session lease was taken with the record."""

    device: Device
    registered_in: str | None
    may_run: bool
    leased: bool


class Onboarding:
    def __init__(self, store: Store, tasks: TaskEngine, config: CwmpConfig) -> None:
        self._store = store
        self._tasks = tasks
        self._config = config

    def admission(self, serial: str) -> Device | Refusal | None:
        """The device of ``serial`` (None: unknown, to be registered), or a Refusal."""
        device = self._store.find_device_by_serial(serial)
        if device is not None and device.operational_status == "decommissioned":
            return Refusal("Device is decommissioned", f"decommissioned device_id={device.id}")
        if device is None and not self._config.auto_register:
            return Refusal("Unknown device", f"unknown serial {serial}")
        return device

    def accepted_credentials(self, device: Device | None) -> list[Credential]:
        """The device's own credentials, or the first-contact ones while it has none."""
        if device is None or not device.username:
            return [self._first_contact()]
        return [Credential(device.username, device.password or "", first_contact=False)]

    def readmission_credential(self, device: Device | None) -> Credential | None:
        """The first-contact credentials for a device with its own, while a factory reset the
        ACS ordered is under way (asked only once its own did not authenticate it: a query
        no Inform with the right credentials pays for)."""
        if device is None or not device.username:
            return None
        if not self._tasks.factory_reset_under_way(device.id):
            return None
        return self._first_contact()

    def _first_contact(self) -> Credential:
        config = self._config
        if config.username or config.password:
            return Credential(config.username, config.password, first_contact=True)
        return NO_CREDENTIALS

    def admit(
        self,
        device: Device | None,
        inform: rpc.Inform,
        *,
        address: str | None,
        first_contact: bool,
        now: float,
        lease: tuple[int, float] | None = None,
    ) -> Admitted:
        """Record an authenticated Inform (in the caller's transaction), taking the session
        lease ``(node_id, until)`` of a known device with it where it can."""
        registered_in: str | None = None
        if device is None:
            device, registered_in = self._register(inform, now)
        elif first_contact and device.username:
            self._store.update_device(
                device.id, now=now, actor="cwmp", username=None, password=None
            )
        device, leased = self._store.record_inform_leased(
            device.id,
            inform_record(inform, address),
            now=now,
            lease=lease if registered_in is None else None,
        )
        may_run = self._tasks.on_inform(device, inform, now=now)
        return Admitted(device, registered_in, may_run, leased)

    def _register(self, inform: rpc.Inform, now: float) -> tuple[Device, str]:
        ident = inform.device_id
        org = self._store.ensure_organization(self._config.default_organization)
        type_id = self._store.find_device_type(ident.manufacturer, ident.product_class)
        serial = ident.serial_number.strip()
        device = self._store.create_device(
            serial_number=serial,
            name=serial,
            organization_id=org.id,
            now=now,
            actor="cwmp",
            type_id=type_id,
        )
        return device, org.name


def _data_model_root(inform: rpc.Inform) -> str | None:
    for param in inform.parameters:
        for root in ROOTS:
            if param.name.startswith(root):
                return root
    return None


def inform_record(inform: rpc.Inform, address: str | None) -> InformRecord:
    ident = inform.device_id  # its fields were checked by the session (acs.cwmp.identity)
    # Every other string the CPE sends is stored only within its data model's bounds
    # (TR-181 string(64) versions, string(256) URL, TR-069 event codes of 64).
    return InformRecord(
        manufacturer=ident.manufacturer,
        oui=ident.oui,
        product_class=ident.product_class,
        serial_number=ident.serial_number.strip(),
        # Suffixes start with "." so "Device." and "InternetGatewayDevice." both match.
        software_version=bounded(inform.parameter(".DeviceInfo.SoftwareVersion"), 64),
        hardware_version=bounded(inform.parameter(".DeviceInfo.HardwareVersion"), 64),
        connection_request_url=bounded(
            inform.parameter(".ManagementServer.ConnectionRequestURL"), 256
        ),
        data_model_root=_data_model_root(inform),
        address=address,
        event_codes=tuple(c for c in (bounded(e.code, 64) for e in inform.events) if c),
    )
