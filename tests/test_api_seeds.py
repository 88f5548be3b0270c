"""Every ``curl`` example of the vendor documentation (tests/seeds/00*.txt) works
against this server with only the host changed: same method, path, query and body, the
documented status code, and a response with the keys and value types of the seed's example.

The garbled seeds (000, 002, 003: older and newer text merged word by word) are read as their
NEWER text (seeds/README.md); 000's newer text is 001. Where a seed and
spec/inventory-api.md disagree, the spec wins, and the example below says so. Each example is
listed under every seed it appears in, and ``test_every_curl_of_every_seed_has_a_test``
counts the curls in the files so none is forgotten; for the clean seeds (001, 004) the
requests below are also checked against the files' text.

The examples use fixed ids (device 1001, organization 5 and 123, type 12, location 25, ...).
A template database with exactly those ids is built once (filler rows are created and
deleted to move the AUTOINCREMENT counters) and copied for each test.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pgserver
import pytest
from apiharness import T0, ApiHarness, Reply
from vendored import seed

from acs.store import Store
from acs.store.models import UP, InformRecord

TOKEN_NAME = "admin@company.com"  # the seed 003 example's updated_by / performed_by
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
LAST_CONFIGURATION = 1705227300.0  # 2024-01-14T10:15:00Z, as in the seed


# --- the template database ------------------------------------------------------------------


def _inform(store: Store, device_id: int, serial: str, **info: Any) -> None:
    values: dict[str, Any] = {
        "manufacturer": "Zequenze Systems",
        "oui": "00D0B7",
        "product_class": "EnterpriseRouter",
        "serial_number": serial,
        "software_version": "2.4.1",
        "hardware_version": "v1.2",
        "connection_request_url": None,
        "data_model_root": "Device.",
        "address": "127.0.0.1",
        "event_codes": ("2 PERIODIC",),
    }
    values.update(info)
    store.record_inform(device_id, InformRecord(**values), now=T0)


def _build_template(path: Path) -> str:
    """Build the template database; returns the plaintext of its admin token."""
    store = Store.open(path)
    now, actor = T0 - 86400 * 5, "seed-setup"
    with store.transaction():
        default = store.ensure_organization("Default")
        orgs = {1: default.id}
        for org_id in range(2, 125):
            name, code = f"Filler organization {org_id}", None
            if org_id == 5:
                name, code = "Zequenze Branch Network", "ZEQ-BR"
            elif org_id == 123:
                name, code = "Acme Corp IT", "ACME-IT"
            elif org_id == 124:
                name = "IT Infrastructure"
            orgs[org_id] = store.ensure_organization(name, code=code).id
        assert orgs[5] == 5 and orgs[123] == 123, orgs

        types = {
            1: ("Router", "router", "Cisco ISR 4331", "Cisco"),
            3: ("Network Switch", "network_switch", "Cisco Catalyst 9300", "Cisco"),
            12: ("Enterprise Router", "enterprise_router", "ZR-500", "Zequenze Systems"),
            15: ("Enterprise Router v2", "enterprise_router_v2", "ZR-600", "Zequenze Systems"),
            16: ("Laptop", "laptop", "Latitude 5520", "Dell"),
        }
        for type_id in range(1, 17):
            name, short, model, maker = types.get(type_id, (f"Filler {type_id}", None, None, None))
            device_type = store.create_device_type(
                now=1.0, actor="t", name=name, short_name=short, model=model, manufacturer=maker
            )
            assert device_type.id == type_id

        for loc_id in range(1, 27):
            if loc_id == 25:
                loc = store.create_location(
                    now=1.0,
                    actor="t",
                    name="New York Branch Office",
                    organization_id=5,
                    short_name="ny_branch",
                    latitude="40.7128",
                    longitude="-74.0060",
                )
            elif loc_id == 26:
                loc = store.create_location(
                    now=1.0, actor="t", name="Data Center A - Rack 15", organization_id=123
                )
            else:
                loc = store.create_location(
                    now=1.0, actor="t", name=f"Filler location {loc_id}", organization_id=None
                )
            assert loc.id == loc_id

        for image_id in range(1, 48):
            image = store.create_firmware_image(
                name=f"firmware-{image_id}",
                version=f"2.{image_id}.0",
                size=1024,
                sha256="0" * 64,
                filename=f"firmware-{image_id}.bin",
                now=now,
            )
            assert image.id == image_id

        fillers = []
        for device_id in range(1, 1002):
            if device_id == 123:
                made = store.create_device(
                    serial_number="NS001-ABC123",
                    name="Network Switch - NS-001",
                    organization_id=124,
                    type_id=3,
                    now=now,
                    actor=actor,
                )
                _inform(store, made.id, "NS001-ABC123", software_version="2.1.4")
                store.update_device(made.id, now=now, actor=actor, operational_status="active")
            elif device_id == 200:
                made = store.create_device(
                    serial_number="SN123456789",
                    name="Core-Switch-01",
                    organization_id=123,
                    type_id=3,
                    location_id=26,
                    description="Primary core switch for data center connectivity",
                    now=now,
                    actor=actor,
                )
                _inform(
                    store,
                    made.id,
                    "SN123456789",
                    manufacturer="Cisco",
                    product_class="C9300",
                    software_version="16.12.05",
                )
                store.upsert_parameters(
                    made.id,
                    [
                        (
                            "Device.Ethernet.Link.1.MACAddress",
                            "00:1B:44:11:3A:B7",
                            "xsd:string",
                            False,
                        )
                    ],
                    now=T0,
                )
            elif 201 <= device_id <= 225:
                # Up devices in organizations 123 and 5: the list examples show a `next` page.
                made = store.create_device(
                    serial_number=f"FILL-{device_id}",
                    name=f"filler-{device_id}",
                    organization_id=123,
                    type_id=3,
                    location_id=26,
                    address="127.0.0.1",
                    now=now,
                    actor=actor,
                )
                store.set_status(made.id, UP, now=T0)
            elif 400 <= device_id <= 422:
                made = store.create_device(
                    serial_number=f"FILL-{device_id}",
                    name=f"filler-{device_id}",
                    organization_id=5,
                    now=now,
                    actor=actor,
                )
                store.set_status(made.id, UP, now=T0)
            elif device_id == 300:
                made = store.create_device(
                    serial_number="ABC123456789",
                    name="Old Laptop Name",
                    organization_id=1,
                    type_id=16,
                    now=now,
                    actor=actor,
                )
                _inform(
                    store,
                    made.id,
                    "ABC123456789",
                    manufacturer="Dell",
                    product_class="Latitude 5520",
                )
            elif device_id == 1001:
                made = store.create_device(
                    serial_number="ZEQ240100001",
                    serial_number_alt="ALT-ZEQ240100001",
                    name="Router-Branch-Office-001",
                    customer_id="CUST-2024-001",
                    organization_id=5,
                    type_id=12,
                    location_id=25,
                    description="Main branch office router",
                    latitude="40.7128",
                    longitude="-74.0060",
                    username="device_admin",
                    password="seed-password-1001",
                    firmware_image_id=45,
                    now=now,
                    actor=actor,
                )
                _inform(store, made.id, "ZEQ240100001")
                store.update_device(
                    made.id, now=T0, actor=actor, last_configuration=LAST_CONFIGURATION
                )
            else:
                made = store.create_device(
                    serial_number=f"GAP-{device_id}",
                    name="gap",
                    organization_id=1,
                    now=now,
                    actor=actor,
                )
                fillers.append(made.id)
            assert made.id == device_id, (made.id, device_id)
        for device_id in fillers:
            store.delete_device(device_id, now=now, actor=actor)
    _, token = store.create_token(TOKEN_NAME, "admin", [], now=now)
    store.close()
    return token


@dataclass(frozen=True)
class Seeded:
    """A harness on a copy of the template, and the template's admin token."""

    h: ApiHarness
    token: str

    def call(self, method: str, path: str, body: Any = None) -> Reply:
        return self.h.call(method, path, token=self.token, json_body=body)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("seed-template") / "acs.db"
    return path, _build_template(path)


@pytest.fixture
def seeded(tmp_path: Path, template: tuple[Path, str]) -> Iterator[Seeded]:
    path, token = template
    if pgserver.ACTIVE is not None:
        pgserver.ACTIVE.copy_file(path, tmp_path / "acs.db")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            shutil.copy(source, tmp_path / f"acs.db{suffix}")
    h = ApiHarness(tmp_path)
    yield Seeded(h, token)
    h.close()


# --- response shapes ----------------------------------------------------------------------


def shape_errors(
    actual: Any, example: Any, at: str = "$", nullable: frozenset[str] = frozenset()
) -> list[str]:
    """Where ``actual`` lacks a key of ``example`` or has another JSON type (datetimes
    included: an ISO ``...Z`` string in the example must be one in the answer)."""
    key = at.rsplit(".", 1)[-1]
    if actual is None and key in nullable:
        return []
    if example is None:
        return [] if actual is None else [f"{at}: {actual!r} where the example has null"]
    if isinstance(example, dict):
        if not isinstance(actual, dict):
            return [f"{at}: {actual!r} is not an object"]
        errors = []
        for name, value in example.items():
            if name not in actual:
                errors.append(f"{at}: missing key {name!r}")
            else:
                errors += shape_errors(actual[name], value, f"{at}.{name}", nullable)
        return errors
    if isinstance(example, list):
        if not isinstance(actual, list):
            return [f"{at}: {actual!r} is not a list"]
        if not example:
            return []  # items checked elsewhere
        if not actual:
            return [f"{at}: empty where the example has items"]
        return [e for item in actual for e in shape_errors(item, example[0], f"{at}[]", nullable)]
    if isinstance(example, bool):
        ok = isinstance(actual, bool)
    elif isinstance(example, int):
        ok = isinstance(actual, int) and not isinstance(actual, bool)
    else:
        ok = isinstance(actual, type(example))
    if not ok:
        return [f"{at}: {actual!r} is not a {type(example).__name__} like {example!r}"]
    if isinstance(example, str) and ISO_Z.match(example) and not ISO_Z.match(actual):
        return [f"{at}: {actual!r} is not an ISO-8601 UTC time like {example!r}"]
    return []


# --- the examples, as the seeds show them (newer text) --------------------------------------

LIST_001 = {
    "count": 150,
    "next": "https://control.zequenze.com/api/v1/inventory_device/?limit=25&offset=25"
    "&organization=5&status=1&update_status=true",
    "previous": None,
    "results": [],  # checked on the seed's own device below
}
LIST_ITEM_001 = {
    "id": 1001,
    "uuid": "550e8400-e29b-41d4-a716-446655440001",
    "name": "Router-Branch-Office-001",
    "customer_id": "CUST-2024-001",
    "is_active": True,
    "status": "Up",
    "status_change": "2024-01-15T09:30:15Z",
    "type": 12,
    "type_short_name": "enterprise_router",
    "software_version": "2.4.1",
    "hardware_version": "v1.2",
    "manufacturer": "Zequenze Systems",
    "serial_number": "ZEQ240100001",
    "description": "Main branch office router",
    "organization_id": 5,
    "location_name": "New York Branch Office",
    "location": 25,
    "location_short_name": "ny_branch",
    "latitude": "40.7128",
    "longitude": "-74.0060",
    "address": "192.168.1.1",
    "last_connection": "2024-01-15T14:22:30Z",
    "last_configuration": "2024-01-14T10:15:00Z",
    "created": "2024-01-10T08:00:00Z",
    "pending_settings": "firmware_update,reboot_scheduled",
}
DETAIL_001 = {
    "id": 1001,
    "uuid": "550e8400-e29b-41d4-a716-446655440001",
    "name": "Router-Branch-Office-001",
    "customer_id": "CUST-2024-001",
    "is_active": True,
    "status": "Up",
    "status_change": "2024-01-15T09:30:15Z",
    "type": 12,
    "type_short_name": "enterprise_router",
    "software_version": "2.4.1",
    "hardware_version": "v1.2",
    "manufacturer": "Zequenze Systems",
    "unique_identifier": "ZEQ:ENT:RTR:240100001",
    "product_class": "EnterpriseRouter",
    "serial_number": "ZEQ240100001",
    "serial_number_alt": "ALT-ZEQ240100001",
    "description": "Main branch office router",
    "organization_id": 5,
    "firmware_image": 45,
    "firmware_image_is_pending": True,
    "location_name": "New York Branch Office",
    "location": 25,
    "location_short_name": "ny_branch",
    "latitude": "40.7128",
    "longitude": "-74.0060",
    "username": "device_admin",
    "update_frequency": 300,
    "address": "192.168.1.1",
    "last_connection": "2024-01-15T14:22:30Z",
    "last_configuration": "2024-01-14T10:15:00Z",
    "last_change": "2024-01-15T12:45:20Z",
    "created": "2024-01-10T08:00:00Z",
    "debug": False,
    "pending_settings": "firmware_update:pending,reboot_scheduled:2024-01-16T02:00:00Z",
}
POST_BODY_001 = {
    "name": "Router-Branch-Office-002",
    "customer_id": "CUST-2024-002",
    "serial_number": "ZEQ240100002",
    "type": 12,
    "organization_id": 5,
    "location_name": "Boston Branch Office",
    "description": "Secondary branch office router",
    "username": "device_admin",
    "password": "secure_password_123",
    "update_frequency": 300,
}
POST_FULL_BODY_001 = {
    "name": "Router-Branch-Office-002",
    "customer_id": "CUST-2024-002",
    "serial_number": "ZEQ240100002",
    "serial_number_alt": "ALT-ZEQ240100002",
    "type": 12,
    "organization_id": 5,
    "location_name": "Boston Branch Office",
    "latitude": "42.3601",
    "longitude": "-71.0589",
    "description": "Secondary branch office router",
    "username": "device_admin",
    "password": "secure_password_123",
    "update_frequency": 300,
}
POST_RESPONSE_001 = {
    "id": 1002,
    "uuid": "550e8400-e29b-41d4-a716-446655440002",
    "name": "Router-Branch-Office-002",
    "customer_id": "CUST-2024-002",
    "is_active": False,
    "status": "Down",
    "status_change": "2024-01-15T15:30:00Z",
    "type": 12,
    "type_short_name": "enterprise_router",
    "software_version": None,
    "hardware_version": None,
    "manufacturer": None,
    "serial_number": "ZEQ240100002",
    "serial_number_alt": "ALT-ZEQ240100002",
    "description": "Secondary branch office router",
    "organization_id": 5,
    "location_name": "Boston Branch Office",
    "latitude": "42.3601",
    "longitude": "-71.0589",
    "username": "device_admin",
    "update_frequency": 300,
    "created": "2024-01-15T15:30:00Z",
    "pending_settings": None,
}
PUT_BODY_001 = {
    "name": "Router-Branch-Office-001-Updated",
    "customer_id": "CUST-2024-001",
    "serial_number": "ZEQ240100001",
    "type": 15,
    "organization_id": 5,
    "location_name": "New York Main Office",
    "description": "Updated main office router with new configuration",
    "latitude": "40.7589",
    "longitude": "-73.9851",
    "update_frequency": 180,
}
# Writable flat fields a body may leave out; PUT resets those (section 3), so null is fine.
FLAT_WRITABLE = frozenset(
    {
        "customer_id", "type", "serial_number_alt", "description", "firmware_image",
        "location", "location_name", "location_short_name", "latitude", "longitude",
        "username", "type_short_name", "pending_settings",
    }
)  # fmt: skip

LIST_ITEM_002 = {
    "serial_number": "SN123456789",
    "name": "Core-Switch-01",
    "type": {"id": 3, "name": "Network Switch", "model": "Cisco Catalyst 9300"},
    "organization": {"id": 123, "name": "Acme Corp IT"},
    "status": True,
    "last_status_change": "2024-01-15T14:30:22Z",
    "ip_address": "192.168.1.10",
    "location": "Data Center A - Rack 15",
    "pending_changes": True,
    "created_at": "2024-01-01T09:00:00Z",
    "updated_at": "2024-01-15T14:30:22Z",
}
LIST_002 = {
    "count": 247,
    "next": "https://control.zequenze.com/api/v1/inventory_device_serial/?limit=25&offset=25"
    "&organization=123&status=true&pending=true",
    "previous": None,
    "results": [LIST_ITEM_002],  # every item: the organization's devices all have a type
}
POST_BODY_002 = {
    "serial_number": "SN987654321",
    "name": "Edge-Router-05",
    "type": 1,
    "organization": 123,
    "ip_address": "192.168.2.5",
    "location": "Branch Office B",
    "status": True,
    "description": "Primary edge router for branch connectivity",
}
POST_RESPONSE_002 = {
    "serial_number": "SN987654321",
    "name": "Edge-Router-05",
    "type": {"id": 1, "name": "Router", "model": "Cisco ISR 4331"},
    "organization": {"id": 123, "name": "Acme Corp IT"},
    "ip_address": "192.168.2.5",
    "location": "Branch Office B",
    "status": True,
    "description": "Primary edge router for branch connectivity",
    "pending_changes": False,
    "created_at": "2024-01-16T10:15:30Z",
    "updated_at": "2024-01-16T10:15:30Z",
}
DETAIL_002 = {
    "serial_number": "SN123456789",
    "name": "Core-Switch-01",
    "type": {
        "id": 3,
        "name": "Network Switch",
        "model": "Cisco Catalyst 9300",
        "manufacturer": "Cisco",
    },
    "organization": {"id": 123, "name": "Acme Corp IT", "code": "ACME-IT"},
    "status": True,
    "last_status_change": "2024-01-15T14:30:22Z",
    "ip_address": "192.168.1.10",
    "mac_address": "00:1B:44:11:3A:B7",
    "location": "Data Center A - Rack 15",
    "description": "Primary core switch for data center connectivity",
    "firmware_version": "16.12.05",
    "pending_changes": True,
    "pending_details": {
        "configuration_updates": 3,
        "firmware_update": False,
        "last_pending_change": "2024-01-16T08:45:00Z",
    },
    "created_at": "2024-01-01T09:00:00Z",
    "updated_at": "2024-01-16T08:45:00Z",
}
PUT_BODY_002 = {
    "name": "Core-Switch-01-Updated",
    "type": 3,
    "organization": 123,
    "ip_address": "192.168.1.15",
    "location": "Data Center A - Rack 16",
    "status": True,
    "description": "Updated primary core switch with new configuration",
    "firmware_version": "16.12.06",  # read-only (reported by the CPE): accepted, not applied
}
PUT_RESPONSE_002 = {
    "serial_number": "SN123456789",
    "name": "Core-Switch-01-Updated",
    "type": {"id": 3, "name": "Network Switch", "model": "Cisco Catalyst 9300"},
    "organization": {"id": 123, "name": "Acme Corp IT"},
    "ip_address": "192.168.1.15",
    "location": "Data Center A - Rack 16",
    "status": True,
    "description": "Updated primary core switch with new configuration",
    "firmware_version": "16.12.06",
    "pending_changes": False,
    "updated_at": "2024-01-16T11:20:15Z",
}
PATCH_BODY_002 = {"status": False, "description": "Device offline for scheduled maintenance"}
# The merged text also shows `"pending_settings": false` and an older `last_status_change`
# line here; spec section 4 has no pending_settings in the nested view, so it is not required.
PATCH_RESPONSE_002 = {
    "serial_number": "SN123456789",
    "name": "Core-Switch-01-Updated",
    "type": {"id": 3, "name": "Network Switch", "model": "Cisco Catalyst 9300"},
    "organization": {"id": 123, "name": "Acme Corp IT"},
    "ip_address": "192.168.1.15",
    "location": "Data Center A - Rack 16",
    "status": False,
    "description": "Device offline for scheduled maintenance",
    "firmware_version": "16.12.06",
    "pending_changes": False,
    "created_at": "2024-01-16T12:05:33Z",
    "updated_at": "2024-01-16T12:05:33Z",
}

CONFIGURATION_003 = {
    "network_profile": "production",
    "monitoring_enabled": True,
    "alert_level": "standard",
}
BODY_003 = {
    "operational_status": "maintenance",
    "status": "completed",
    "device_id": "DEV-001",
    "operator_id": "OP-456",
    "description": "Routine maintenance check performed",
    "started_at": "2024-01-15T10:00:00Z",
    "completed_at": "2024-01-15T11:30:00Z",
    "notes": "All systems functioning normally",
    "location": "Building A - Floor 2",
    "assigned_user": "john.doe@company.com",
    "maintenance_notes": "Scheduled firmware update completed",
    "configuration": CONFIGURATION_003,
    "next_maintenance": "2024-04-15T09:00:00Z",
}
RESPONSE_003: dict[str, Any] = {
    "id": 123,
    "device_name": "Network Switch - NS-001",
    "serial_number": "NS001-ABC123",
    "device_type": "network_switch",
    "operational_status": "maintenance",
    "location": "Building A - Floor 2",
    "assigned_user": "john.doe@company.com",
    "organization": "IT Infrastructure",
    "configuration": {**CONFIGURATION_003, "firmware_version": "2.1.4"},
    "maintenance_notes": "Scheduled firmware update completed",
    "next_maintenance": "2024-04-15T09:00:00Z",
    "operator_id": "OP-456",
    "description": "Routine maintenance check performed",
    "last_updated": "2024-01-15T14:30:00Z",
    "updated_by": "admin@company.com",
    "operational_history": [
        {
            "timestamp": "2024-01-15T14:30:00Z",
            "action": "status_change",
            "from_status": "active",
            "to_status": "maintenance",
            "performed_by": "admin@company.com",
        }
    ],
}

CURL_BODY_004 = {
    "name": "Conference Room Laptop",
    "status": "active",
    "location": "Building A - Room 101",
    "assigned_user": "john.doe@company.com",
    "organization_unit": "IT Department",
    "configuration": {
        "auto_update": True,
        "backup_enabled": True,
        "encryption_status": "enabled",
    },
    "tags": ["laptop", "conference-room", "windows"],
}
FULL_BODY_004 = {
    "name": "Conference Room Laptop",
    "status": "active",
    "location": "Building A - Room 101",
    "assigned_user": "john.doe@company.com",
    "organization_unit": "IT Department",
    "device_type": "laptop",
    "manufacturer": "Dell",
    "model": "Latitude 5520",
    "configuration": {
        "auto_update": True,
        "backup_enabled": True,
        "encryption_status": "enabled",
        "compliance_profile": "corporate-standard",
    },
    "custom_fields": {
        "purchase_date": "2024-01-15",
        "warranty_expiry": "2027-01-15",
        "cost_center": "IT-001",
    },
    "tags": ["laptop", "conference-room", "windows"],
}
RESPONSE_004 = {
    "id": 1247,
    "serial_number": "ABC123456789",
    "name": "Conference Room Laptop",
    "status": "active",
    "location": "Building A - Room 101",
    "assigned_user": "john.doe@company.com",
    "organization_unit": "IT Department",
    "device_type": "laptop",
    "manufacturer": "Dell",
    "model": "Latitude 5520",
    "configuration": FULL_BODY_004["configuration"],
    "custom_fields": FULL_BODY_004["custom_fields"],
    "tags": ["laptop", "conference-room", "windows"],
    "created_at": "2024-01-15T10:30:00Z",
    "updated_at": "2024-03-15T14:22:33Z",
    "last_seen": "2024-03-15T14:20:15Z",
}


# --- setups and extra checks used by the examples ------------------------------------------


def pend_firmware_and_scheduled_reboot(s: Seeded) -> None:
    """What the 001 list/detail examples show pending on device 1001."""
    for body in (
        {"firmware_image": 45, "firmware_image_is_pending": True},
        {"reboot": True, "schedule_at": "2024-01-16T02:00:00Z"},
    ):
        reply = s.call("PATCH", "/api/v1/inventory_device/1001/", body)
        assert reply.status == 200, f"setup PATCH {body}: {reply.status} {reply.raw[:300]!r}"


def two_more_up_devices_in_org_5(s: Seeded) -> None:
    """26 Up devices in organization 5: `limit=25` leaves a next page, as in the seed."""
    pend_firmware_and_scheduled_reboot(s)
    for n in (1, 2):
        made = s.h.store.create_device(
            serial_number=f"EXTRA-{n}", name=f"extra-{n}", organization_id=5, now=T0, actor="t"
        )
        s.h.store.set_status(made.id, UP, now=T0)


def three_pending_settings_on_sn123456789(s: Seeded) -> None:
    """What the 002 examples show pending on SN123456789 (three configuration updates)."""
    reply = s.call(
        "PUT",
        "/api/v1/inventory_device_operation/200/",
        {
            "configuration": {
                "Device.ManagementServer.PeriodicInformInterval": "600",
                "Device.Time.NTPServer1": "127.0.0.1",
                "Device.DeviceInfo.ProvisioningCode": "ACME-CORE",
            }
        },
    )
    assert reply.status == 200, f"setup PUT operation: {reply.status} {reply.raw[:300]!r}"


def _pending(reply: Reply) -> str:
    return reply.json.get("pending_settings") or ""


def check_list_001(s: Seeded, reply: Reply) -> list[str]:
    items = {item["serial_number"]: item for item in reply.json["results"]}
    if "ZEQ240100001" not in items:
        return ["device 1001 (organization 5, Up) missing from the list"]
    errors = shape_errors(items["ZEQ240100001"], LIST_ITEM_001, "$.results[1001]")
    for serial, item in items.items():
        errors += [f"{serial}: missing {k}" for k in LIST_ITEM_001 if k not in item]
        if item.get("organization_id") != 5 or item.get("status") not in ("Up", "Down"):
            errors.append(f"{serial}: not a device of organization 5: {item}")
    if len(items) != 25 or reply.json["count"] != 26:
        errors.append(f"limit=25 of 26: got {len(items)} of {reply.json['count']}")
    return errors


def check_detail_001(s: Seeded, reply: Reply) -> list[str]:
    expected = "firmware_update:pending,reboot_scheduled:2024-01-16T02:00:00Z"
    if reply.json.get("pending_settings") != expected:
        return [f"pending_settings {reply.json.get('pending_settings')!r} != {expected!r}"]
    return []


def check_post_001(s: Seeded, reply: Reply) -> list[str]:
    body = reply.json
    errors = [
        f"{k}: {body.get(k)!r} != {v!r}" for k, v in echo(POST_BODY_001).items() if body.get(k) != v
    ]
    if "password" in body:
        errors.append("the password is returned")
    device = s.h.store.get_device_by_serial_number("ZEQ240100002")
    if device is None or device.password != "secure_password_123":
        errors.append("the password was not stored for Digest")
    return errors


def check_put_001(s: Seeded, reply: Reply) -> list[str]:
    body = reply.json
    errors = [
        f"{k}: {body.get(k)!r} != {v!r}" for k, v in echo(PUT_BODY_001).items() if body.get(k) != v
    ]
    if body.get("type_short_name") != "enterprise_router_v2":
        errors.append(f"type_short_name {body.get('type_short_name')!r}")
    return errors


def check_reboot_001(s: Seeded, reply: Reply) -> list[str]:
    errors = [] if reply.json.get("debug") is True else ["debug not switched on"]
    if "reboot" not in _pending(reply).split(","):
        errors.append(f"reboot not pending: {_pending(reply)!r}")
    return errors


def check_firmware_001(s: Seeded, reply: Reply) -> list[str]:
    body = reply.json
    errors = []
    if body.get("firmware_image") != 47 or body.get("firmware_image_is_pending") is not True:
        errors.append(f"firmware fields: {body.get('firmware_image')!r}")
    if "firmware_update" not in _pending(reply).split(","):
        errors.append(f"firmware_update not pending: {_pending(reply)!r}")
    return errors


def check_sync_001(s: Seeded, reply: Reply) -> list[str]:
    pending = _pending(reply).split(",")
    return [f"{op} not pending: {pending}" for op in ("sync", "reconf") if op not in pending]


def check_deleted(path: str) -> Callable[[Seeded, Reply], list[str]]:
    def check(s: Seeded, reply: Reply) -> list[str]:
        errors = [] if not reply.raw else [f"204 with a body: {reply.raw[:100]!r}"]
        after = s.call("GET", path)
        if after.status != 404:
            errors.append(f"GET after DELETE: {after.status}")
        return errors

    return check


def check_list_002(s: Seeded, reply: Reply) -> list[str]:
    first = reply.json["results"][0] if reply.json["results"] else {}
    errors = []
    if first.get("serial_number") != "SN123456789":
        errors.append(f"first result {first.get('serial_number')!r}, not SN123456789")
    results = reply.json["results"]
    if any(item["organization"]["id"] != 123 or item["status"] is not True for item in results):
        errors.append("the organization/status filters were not applied")
    return errors


def check_detail_002(s: Seeded, reply: Reply) -> list[str]:
    details = reply.json.get("pending_details") or {}
    if details.get("configuration_updates") != 3:
        return [f"configuration_updates {details.get('configuration_updates')!r} != 3"]
    return []


def check_echo(body: dict[str, Any], *skip: str) -> Callable[[Seeded, Reply], list[str]]:
    def check(s: Seeded, reply: Reply) -> list[str]:
        got = reply.json
        return [
            f"{k}: {got.get(k)!r} != {v!r}"
            for k, v in body.items()
            if k not in skip and got.get(k) != v
        ]

    return check


def check_003(s: Seeded, reply: Reply) -> list[str]:
    got = reply.json
    # Echoed keys of the seed's response (the others are kept too, not shown in the seed).
    shown = {k: v for k, v in BODY_003.items() if k in RESPONSE_003 and k != "configuration"}
    errors = check_echo(shown)(s, reply)
    if got.get("configuration") != RESPONSE_003["configuration"]:
        errors.append(f"configuration {got.get('configuration')!r}")
    if got.get("updated_by") != TOKEN_NAME:
        errors.append(f"updated_by {got.get('updated_by')!r}")
    history = got.get("operational_history") or [{}]
    last = {k: history[-1].get(k) for k in RESPONSE_003["operational_history"][0]}
    wanted = {**RESPONSE_003["operational_history"][0], "timestamp": "2024-01-15T09:30:00Z"}
    if last != wanted:
        errors.append(f"operational_history[-1] {last} != {wanted}")
    return errors


def check_004(body: dict[str, Any]) -> Callable[[Seeded, Reply], list[str]]:
    def check(s: Seeded, reply: Reply) -> list[str]:
        errors = check_echo(body, "configuration", "custom_fields")(s, reply)
        for key in ("configuration", "custom_fields"):
            stored = reply.json.get(key) or {}
            sent = body.get(key, {})
            if {k: stored.get(k) for k in sent} != sent:
                errors.append(f"{key} {stored!r} does not hold {sent!r}")
        return errors

    return check


def echo(body: dict[str, Any]) -> dict[str, Any]:
    """The body's values a flat representation shows back (password never; type as id)."""
    return {k: v for k, v in body.items() if k != "password"}


@dataclass(frozen=True)
class Example:
    seeds: tuple[str, ...]
    name: str
    method: str
    path: str
    body: dict[str, Any] | None
    status: int
    response: Any = None
    curl: bool = True  # False: the seed's "Example Request Body" rather than a curl command
    nullable: frozenset[str] = frozenset()
    setup: Callable[[Seeded], None] | None = None
    check: Callable[[Seeded, Reply], list[str]] | None = None
    note: str = field(default="", compare=False)


FLAT = ("000", "001")
EXAMPLES = [
    Example(
        FLAT, "list", "GET",
        "/api/v1/inventory_device/?status=1&organization=5&limit=25&update_status=true",
        None, 200, LIST_001, setup=two_more_up_devices_in_org_5, check=check_list_001,
    ),
    Example(
        FLAT, "create", "POST", "/api/v1/inventory_device/", POST_BODY_001, 201,
        POST_RESPONSE_001, check=check_post_001,
        # The curl omits serial_number_alt/latitude/longitude that the example response shows
        # (they come from the "Example Request Body", tested below).
        nullable=frozenset({"serial_number_alt", "latitude", "longitude"}),
    ),
    Example(
        FLAT, "create-full-body", "POST", "/api/v1/inventory_device/", POST_FULL_BODY_001, 201,
        POST_RESPONSE_001, curl=False, check=check_echo(echo(POST_FULL_BODY_001)),
    ),
    Example(
        FLAT, "detail", "GET", "/api/v1/inventory_device/1001/?pending=true&update_status=true",
        None, 200, DETAIL_001, setup=pend_firmware_and_scheduled_reboot, check=check_detail_001,
    ),
    Example(
        FLAT, "replace", "PUT", "/api/v1/inventory_device/1001/", PUT_BODY_001, 200, DETAIL_001,
        nullable=FLAT_WRITABLE - set(PUT_BODY_001), check=check_put_001,
        note="no example response in the newer text: the flat representation is expected",
    ),
    Example(
        FLAT, "patch-reboot", "PATCH", "/api/v1/inventory_device/1001/",
        {"reboot": True, "debug": True}, 200, DETAIL_001, check=check_reboot_001,
    ),
    Example(
        FLAT, "patch-firmware", "PATCH", "/api/v1/inventory_device/1001/",
        {"firmware_image": 47, "firmware_image_is_pending": True}, 200, DETAIL_001,
        check=check_firmware_001,
    ),
    Example(
        FLAT, "patch-sync", "PATCH", "/api/v1/inventory_device/1001/",
        {"sync": True, "reconf": True}, 200, DETAIL_001, check=check_sync_001,
    ),
    Example(
        FLAT, "delete", "DELETE", "/api/v1/inventory_device/1001/", None, 204,
        check=check_deleted("/api/v1/inventory_device/1001/"),
    ),
    Example(
        ("002",), "list", "GET",
        "/api/v1/inventory_device_serial/?organization=123&status=true&pending=true&limit=25",
        None, 200, LIST_002, setup=three_pending_settings_on_sn123456789, check=check_list_002,
    ),
    Example(
        ("002",), "create", "POST", "/api/v1/inventory_device_serial/", POST_BODY_002, 201,
        POST_RESPONSE_002, check=check_echo(POST_BODY_002, "type", "organization"),
    ),
    Example(
        ("002",), "detail", "GET",
        "/api/v1/inventory_device_serial/SN123456789/?update_status=true&pending=true",
        None, 200, DETAIL_002, setup=three_pending_settings_on_sn123456789,
        check=check_detail_002,
    ),
    Example(
        ("002",), "replace", "PUT", "/api/v1/inventory_device_serial/SN123456789/",
        PUT_BODY_002, 200, {**PUT_RESPONSE_002, "firmware_version": "16.12.05"},
        check=check_echo(PUT_BODY_002, "type", "organization", "firmware_version"),
        note="firmware_version is read-only (the CPE reports it): accepted in the body",
    ),
    Example(
        ("002",), "patch", "PATCH", "/api/v1/inventory_device_serial/SN123456789/",
        PATCH_BODY_002, 200, {**PATCH_RESPONSE_002, "name": "Core-Switch-01",
                              "ip_address": "127.0.0.1",
                              "location": "Data Center A - Rack 15",
                              "firmware_version": "16.12.05"},
        check=check_echo(PATCH_BODY_002),
    ),
    Example(
        ("002",), "delete", "DELETE", "/api/v1/inventory_device_serial/SN123456789/", None, 204,
        check=check_deleted("/api/v1/inventory_device_serial/SN123456789/"),
    ),
    Example(
        ("003",), "put", "PUT", "/api/v1/inventory_device_operation/123/", BODY_003, 200,
        RESPONSE_003, check=check_003,
    ),
    Example(
        ("004",), "put", "PUT", "/api/v1/inventory_device_serial_operation/ABC123456789/",
        CURL_BODY_004, 200,
        {**RESPONSE_004, "configuration": CURL_BODY_004["configuration"], "custom_fields": {}},
        check=check_004(CURL_BODY_004),
    ),
    Example(
        ("004",), "put-full-body", "PUT",
        "/api/v1/inventory_device_serial_operation/ABC123456789/", FULL_BODY_004, 200,
        RESPONSE_004, curl=False, check=check_004(FULL_BODY_004),
    ),
]  # fmt: skip

CASES = [
    pytest.param(example, id=f"{seed}-{example.name}")
    for example in EXAMPLES
    for seed in example.seeds
]


@pytest.mark.parametrize("example", CASES)
def test_seed_example(seeded: Seeded, example: Example) -> None:
    if example.setup is not None:
        example.setup(seeded)
    reply = seeded.call(example.method, example.path, example.body)
    assert reply.status == example.status, (
        f"{example.method} {example.path}: {reply.status} {reply.raw[:500]!r}"
    )
    errors: list[str] = []
    if example.response is not None:
        errors += shape_errors(reply.json, example.response, nullable=example.nullable)
    if example.check is not None:
        errors += example.check(seeded, reply)
    assert not errors, "\n".join(errors)


# --- the examples above are the seeds' ------------------------------------------------------


def _curls(text: str) -> list[tuple[str, str, Any]]:
    """(method, path+query, JSON body or None) of each curl command of a clean seed."""
    found = []
    pattern = re.compile(
        r"curl -X (\w+) \"https://control\.zequenze\.com([^\"]+)\"(.*?)(?=curl -X|\Z)", re.S
    )
    for match in pattern.finditer(text):
        body = re.search(r"-d '(.*?)'", match.group(3), re.S)
        found.append((match.group(1), match.group(2), json.loads(body.group(1)) if body else None))
    return found


def _seed_text(prefix: str) -> str:
    return seed(prefix).read_text(encoding="utf-8")


def test_every_curl_of_every_seed_has_a_test() -> None:
    for prefix in ("000", "001", "002", "003", "004"):
        curls = _seed_text(prefix).count("curl -X ")
        mine = [e for e in EXAMPLES if prefix in e.seeds and e.curl]
        assert len(mine) == curls, f"seed {prefix}: {curls} curl examples, {len(mine)} tests"


@pytest.mark.parametrize("prefix", ["001", "004"])
def test_requests_of_the_clean_seeds_are_transcribed_exactly(prefix: str) -> None:
    curls = _curls(_seed_text(prefix))
    mine = [(e.method, e.path, e.body) for e in EXAMPLES if prefix in e.seeds and e.curl]
    assert sorted(curls, key=repr) == sorted(mine, key=repr)


def test_the_shape_check_can_fail() -> None:
    assert shape_errors({"a": 1}, {"a": 1, "b": "x"})  # missing key
    assert shape_errors({"a": True}, {"a": 1})  # bool is not an int
    assert shape_errors({"t": "2024-01-15 09:30"}, {"t": "2024-01-15T09:30:15Z"})
    assert shape_errors({"l": []}, {"l": [{"k": 1}]})
    assert shape_errors({"n": "x"}, {"n": None})
    assert not shape_errors({"n": None}, {"n": "x"}, nullable=frozenset({"n"}))
    assert not shape_errors({"a": 1, "extra": 2}, {"a": 5})
