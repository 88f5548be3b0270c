"""The fuzz database: a little of everything, so requests reach more than 404s.

Two organizations (the scoped operator gets the first), two device types, locations in each
organization and one shared, devices in both organizations (one has informed and has cached
parameters and a configuration backup), a firmware image with its file, and the two tokens.
Written through :class:`acs.store.Store` and :class:`acs.files.FileStorage` before the ACS
starts, so no request of the fuzzer's depends on another's. No device has a
ConnectionRequestURL (operations queue work and send nothing anywhere), nor a data model
root (a setting's root must match the device's, which a schema cannot say).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from acs.files import FileStorage
from acs.store import Store
from acs.store.models import InformRecord

NOW = 1_764_000_000.0  # fixed, so two runs seed the same rows


@dataclass(frozen=True)
class Seeded:
    admin_token: str
    operator_token: str
    operator_organization: int


def seed(database: Path | str, files: Path) -> Seeded:
    store = Store.open(database)
    try:
        return _seed(store, files)
    finally:
        store.close()


def _seed(store: Store, files: Path) -> Seeded:
    a = store.create_organization(name="Fuzz A", code="A", now=NOW, actor="fuzz")
    b = store.create_organization(name="Fuzz B", code=None, now=NOW, actor="fuzz")
    router = store.create_device_type(
        now=NOW,
        actor="fuzz",
        name="Router",
        short_name="rt",
        model="R1",
        manufacturer="Acme",
        product_class="Router",
        default_settings={"Device.ManagementServer.PeriodicInformInterval": "600"},
        update_frequency=600,
    )
    store.create_device_type(now=NOW, actor="fuzz", name="Switch", short_name="sw")
    lab = store.create_location(
        now=NOW, actor="fuzz", name="Lab", organization_id=a.id, latitude="40.7128"
    )
    store.create_location(
        now=NOW, actor="fuzz", name="Rack 1", organization_id=a.id, parent_id=lab.id
    )
    store.create_location(now=NOW, actor="fuzz", name="Depot", organization_id=b.id)
    store.create_location(now=NOW, actor="fuzz", name="Shared", organization_id=None)

    informed = store.create_device(
        serial_number="FUZZ-A-1",
        name="gateway a1",
        organization_id=a.id,
        now=NOW,
        actor="fuzz",
        type_id=router.id,
        location_id=lab.id,
    )
    store.record_inform(
        informed.id,
        InformRecord(
            manufacturer="Acme",
            oui="00AABB",
            product_class="Router",
            serial_number="FUZZ-A-1",
            software_version="1.0",
            hardware_version="A",
            connection_request_url=None,
            data_model_root=None,
            address="127.0.0.1",
            event_codes=("1 BOOT",),
        ),
        now=NOW + 1,
    )
    store.upsert_parameters(
        informed.id,
        [
            ("Device.DeviceInfo.SoftwareVersion", "1.0", "xsd:string", False),
            ("Device.ManagementServer.PeriodicInformInterval", "300", "xsd:unsignedInt", True),
        ],
        now=NOW + 1,
    )
    store.create_device(
        serial_number="FUZZ-A-2", name="gateway a2", organization_id=a.id, now=NOW, actor="fuzz"
    )
    store.create_device(
        serial_number="FUZZ-B-1", name="gateway b1", organization_id=b.id, now=NOW, actor="fuzz"
    )

    storage = FileStorage(files, store)
    image_bytes = b"ACMEFW1 version=2.0\nfuzz image\n"
    image = store.create_firmware_image(
        name="gateway",
        version="2.0",
        size=len(image_bytes),
        sha256=hashlib.sha256(image_bytes).hexdigest(),
        filename="gateway-2.0.bin",
        now=NOW,
        device_type_id=router.id,
    )
    storage.firmware_path(image).write_bytes(image_bytes)
    config_bytes = b"<config>fuzz</config>\n"
    backup = store.create_backup(
        informed.id,
        task_id=None,
        filename="gateway-a1.cfg",
        size=len(config_bytes),
        sha256=hashlib.sha256(config_bytes).hexdigest(),
        now=NOW + 2,
    )
    storage.backup_path(backup).write_bytes(config_bytes)
    web_bytes = b"<html>fuzz</html>\n"
    web = store.create_file(
        name="portal",
        file_type="2 Web Content",
        size=len(web_bytes),
        sha256=hashlib.sha256(web_bytes).hexdigest(),
        filename="portal.html",
        now=NOW,
    )
    storage.stored_path(web).write_bytes(web_bytes)
    # A transfer under way on every device, for cancel_transfer to name.
    for device_id in _device_ids(store):
        store.queue_task(
            device_id, "upload", {"file_type": "2 Vendor Log File"}, now=NOW, actor="fuzz"
        )

    _row, admin = store.create_token("fuzz-admin", "admin", [], now=NOW)
    _row, operator = store.create_token("fuzz-operator", "operator", [a.id], now=NOW)
    return Seeded(admin_token=admin, operator_token=operator, operator_organization=a.id)


def _device_ids(store: Store) -> list[int]:
    _total, devices = store.devices_page(limit=100)
    return [d.id for d in devices]
