"""The two operation endpoints (spec section 5): partial updates of the operational record,
400 vs 422, operational history, tenancy, idempotency, and configuration keys that become
desired CPE settings with a (coalesced) configuration_update task.
"""

from __future__ import annotations

from typing import Any

import pytest
from apiharness import T0, ApiHarness
from twisted.internet.defer import succeed

from acs.store.models import PENDING, Device, InformRecord

ID_URL = "/api/v1/inventory_device_operation/{}/"
SERIAL_URL = "/api/v1/inventory_device_serial_operation/{}/"
PII = "Device.ManagementServer.PeriodicInformInterval"

# Seed 003, the newer text of each merged pair.
SEED_003_BODY: dict[str, Any] = {
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
    "configuration": {
        "network_profile": "production",
        "monitoring_enabled": True,
        "alert_level": "standard",
    },
    "next_maintenance": "2024-04-15T09:00:00Z",
}

# Seed 004.
SEED_004_BODY: dict[str, Any] = {
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


class Env:
    def __init__(self, harness: ApiHarness) -> None:
        self.h = harness
        self.store = harness.store
        self.org = self.store.ensure_organization("IT Infrastructure")
        self.other_org = self.store.ensure_organization("Elsewhere")
        dtype = self.store.create_device_type(
            now=1.0, actor="t", name="Network Switch", short_name="network_switch"
        )
        self.device = self.store.create_device(
            serial_number="NS001-ABC123",
            name="Network Switch - NS-001",
            organization_id=self.org.id,
            type_id=dtype.id,
            now=T0 - 100,
            actor="setup",
        )
        self.operator = harness.token("operator", name="admin@company.com")
        self.woken: list[int] = []
        harness.appliance.connreq.wake = self._wake  # type: ignore[method-assign]

    def _wake(self, device_id: int) -> Any:
        self.woken.append(device_id)
        return succeed(None)

    def put(self, body: Any, *, device_id: int | None = None, token: str | None = None) -> Any:
        return self.h.call(
            "PUT",
            ID_URL.format(self.device.id if device_id is None else device_id),
            token=token or self.operator,
            json_body=body,
        )

    def put_serial(self, body: Any, *, serial: str | None = None, token: str | None = None) -> Any:
        return self.h.call(
            "PUT",
            SERIAL_URL.format(serial or self.device.serial_number),
            token=token or self.operator,
            json_body=body,
        )

    def inform(self, root: str = "Device.") -> Device:
        return self.store.record_inform(
            self.device.id,
            InformRecord(
                manufacturer="Acme",
                oui="00AABB",
                product_class="Switch",
                serial_number=self.device.serial_number,
                software_version="2.1.4",
                hardware_version="A",
                connection_request_url="http://127.0.0.1:7999/cr",
                data_model_root=root,
                address="127.0.0.1",
                event_codes=("1 BOOT",),
            ),
            now=T0 - 50,
        )

    def config_tasks(self) -> list[Any]:
        return [
            t
            for t in self.store.tasks_for_device(self.device.id)
            if t.kind == "configuration_update"
        ]

    def history_actions(self) -> list[str]:
        return [h.action for h in self.store.history(self.device.id, limit=1000)]


@pytest.fixture
def env(harness: ApiHarness) -> Env:
    return Env(harness)


# --- PUT /inventory_device_operation/{id}/ -------------------------------------------------


def test_seed_003_example_gives_the_documented_response(env: Env) -> None:
    env.inform()
    reply = env.put(SEED_003_BODY)
    assert reply.status == 200, reply.json
    body = reply.json
    assert body["id"] == env.device.id
    assert body["device_name"] == "Network Switch - NS-001"
    assert body["serial_number"] == "NS001-ABC123"
    assert body["device_type"] == "network_switch"
    assert body["operational_status"] == "maintenance"
    assert body["location"] == "Building A - Floor 2"
    assert body["assigned_user"] == "john.doe@company.com"
    assert body["organization"] == "IT Infrastructure"
    assert body["configuration"] == {
        "network_profile": "production",
        "monitoring_enabled": True,
        "alert_level": "standard",
        "firmware_version": "2.1.4",
    }
    assert body["maintenance_notes"] == "Scheduled firmware update completed"
    assert body["next_maintenance"] == "2024-04-15T09:00:00Z"
    assert body["operator_id"] == "OP-456"
    assert body["description"] == "Routine maintenance check performed"
    assert body["last_updated"] == "2024-01-15T09:30:00Z"
    assert body["updated_by"] == "admin@company.com"
    assert body["operational_history"] == [
        {
            "timestamp": "2024-01-15T09:30:00Z",
            "action": "status_change",
            "from_status": "provisioning",
            "to_status": "maintenance",
            "performed_by": "admin@company.com",
        }
    ]
    # Unknown keys are kept as metadata, never confused with the real device id.
    assert body["metadata"] == {"device_id": "DEV-001"}
    assert body["status"] == "completed"
    assert body["started_at"] == "2024-01-15T10:00:00Z"


def test_write_is_audited_with_actor_and_time(env: Env) -> None:
    env.put({"operational_status": "active", "notes": "n"})
    entry = env.store.history(env.device.id, limit=1)[0]
    assert entry.action == "operational_record_updated"
    assert entry.actor == "admin@company.com"
    assert entry.time == T0
    assert entry.detail["from_status"] == "provisioning"
    assert entry.detail["to_status"] == "active"
    assert entry.detail["fields"] == ["notes"]


def test_partial_update_changes_only_the_keys_sent(env: Env) -> None:
    env.put(SEED_003_BODY)
    reply = env.put({"notes": "second visit", "configuration": {"alert_level": "high"}})
    assert reply.status == 200
    body = reply.json
    assert body["notes"] == "second visit"
    assert body["operational_status"] == "maintenance"
    assert body["assigned_user"] == "john.doe@company.com"
    assert body["configuration"]["network_profile"] == "production"
    assert body["configuration"]["alert_level"] == "high"
    assert len(body["operational_history"]) == 1


def test_each_status_change_appends_history_and_same_status_does_not(env: Env) -> None:
    env.put({"operational_status": "active"})
    env.h.clock.advance(60)
    env.put({"operational_status": "active", "notes": "x"})
    other = env.h.token("operator", name="bob")
    env.h.clock.advance(60)
    body = env.put({"operational_status": "decommissioned"}, token=other).json
    assert [
        (e["from_status"], e["to_status"], e["performed_by"]) for e in body["operational_history"]
    ] == [
        ("provisioning", "active", "admin@company.com"),
        ("active", "decommissioned", "bob"),
    ]
    assert body["operational_history"][1]["timestamp"] == "2024-01-15T09:32:00Z"
    assert body["updated_by"] == "bob"


def test_decommissioned_device_is_inactive_and_row_follows(env: Env) -> None:
    env.inform()
    assert env.store.get_device(env.device.id).is_active  # type: ignore[union-attr]
    env.put({"operational_status": "decommissioned"})
    device = env.store.get_device(env.device.id)
    assert device is not None
    assert device.operational_status == "decommissioned"
    assert device.is_active is False


def test_status_set_on_the_device_row_is_the_from_status(env: Env) -> None:
    env.put({"operational_status": "maintenance"})
    env.store.update_device(env.device.id, now=T0, actor="admin", operational_status="active")
    body = env.put({"operational_status": "inactive"}).json
    last = body["operational_history"][-1]
    assert (last["from_status"], last["to_status"]) == ("active", "inactive")


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"{not json", b""])
def test_body_that_is_not_a_json_object_is_400(env: Env, raw: bytes) -> None:
    reply = env.h.call(
        "PUT",
        ID_URL.format(env.device.id),
        token=env.operator,
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 400
    assert "detail" in reply.json


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operational_status": "broken"}, "operational_status"),
        ({"operational_status": None}, "operational_status"),
        ({"assigned_user": "not-an-email"}, "assigned_user"),
        ({"assigned_user": "a@b"}, "assigned_user"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"completed_at": 1705311000}, "completed_at"),
        ({"next_maintenance": "2024-13-45"}, "next_maintenance"),
        ({"notes": ["a"]}, "notes"),
        ({"configuration": "flat"}, "configuration"),
    ],
)
def test_invalid_values_are_422_with_field_errors_and_nothing_changes(
    env: Env, body: dict[str, Any], field: str
) -> None:
    env.put({"notes": "before"})
    before = env.store.get_operational_record(env.device.id)
    reply = env.put({**body, "description": "would change"})
    assert reply.status == 422
    assert list(reply.json) == [field]
    assert isinstance(reply.json[field], list) and reply.json[field]
    assert env.store.get_operational_record(env.device.id) == before


def test_every_invalid_field_is_reported_at_once(env: Env) -> None:
    reply = env.put({"operational_status": "x", "assigned_user": "y", "started_at": "z"})
    assert reply.status == 422
    assert set(reply.json) == {"operational_status", "assigned_user", "started_at"}


def test_null_clears_a_field_and_dates_are_normalised(env: Env) -> None:
    env.put({"assigned_user": "a@example.com", "started_at": "2024-01-15 10:00:00"})
    body = env.put({"assigned_user": None}).json
    assert body["assigned_user"] is None
    assert body["started_at"] == "2024-01-15T10:00:00Z"


def test_unknown_id_is_404(env: Env) -> None:
    reply = env.put({"notes": "x"}, device_id=99999)
    assert reply.status == 404
    assert "detail" in reply.json


def test_device_outside_the_token_scope_is_403(env: Env) -> None:
    scoped = env.h.token("operator", orgs=[env.other_org.id], name="scoped")
    assert env.put({"notes": "x"}, token=scoped).status == 403
    assert env.put_serial({"name": "x"}, token=scoped).status == 403
    assert env.store.get_operational_record(env.device.id).data == {}


def test_viewer_cannot_write_and_anonymous_is_401(env: Env) -> None:
    viewer = env.h.token("viewer", name="viewer")
    assert env.put({"notes": "x"}, token=viewer).status == 403
    reply = env.h.call("PUT", ID_URL.format(env.device.id), json_body={"notes": "x"})
    assert reply.status == 401


# --- configuration -> desired settings -----------------------------------------------------


def test_tr069_configuration_keys_become_desired_settings_and_queue_one_task(env: Env) -> None:
    env.inform()
    reply = env.put({"configuration": {PII: 60, "Device.WiFi.Radio.1.Enable": True, "team": "x"}})
    assert reply.status == 200, reply.json
    settings = {s.path: (s.value, s.type) for s in env.store.desired_settings(env.device.id)}
    assert settings == {
        PII: ("60", "xsd:unsignedInt"),
        "Device.WiFi.Radio.1.Enable": ("true", "xsd:boolean"),
    }
    # Metadata stays metadata; the response shows both.
    record = env.store.get_operational_record(env.device.id)
    assert record.data["configuration"] == {"team": "x"}
    assert reply.json["configuration"][PII] == "60"
    assert reply.json["configuration"]["team"] == "x"
    (task,) = env.config_tasks()
    assert (task.state, task.actor) == (PENDING, "admin@company.com")
    assert env.woken == [env.device.id]
    assert "settings_changed" in env.history_actions()


def test_changing_settings_again_coalesces_into_the_pending_task(env: Env) -> None:
    env.put({"configuration": {PII: "60"}})
    env.put({"configuration": {PII: "120"}})
    assert len(env.config_tasks()) == 1
    assert env.store.unconfirmed_settings_count(env.device.id) == 1
    assert env.store.desired_settings(env.device.id)[0].value == "120"


def test_unchanged_settings_queue_nothing(env: Env) -> None:
    env.put({"configuration": {PII: "60"}})
    env.store.confirm_settings(env.device.id, [PII], now=T0)
    for task in env.config_tasks():
        env.store.cancel_task(task.id, now=T0, actor="test")
    env.put({"configuration": {PII: "60"}})
    assert [t.state for t in env.config_tasks()] == ["cancelled"]


def test_object_paths_are_plain_metadata(env: Env) -> None:
    body = env.put({"configuration": {"Device.WiFi.": "x"}}).json
    assert env.store.desired_settings(env.device.id) == []
    assert body["configuration"]["Device.WiFi."] == "x"
    assert env.config_tasks() == []


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("Device.A B", "x", "not a valid"),
        ("InternetGatewayDevice.ManagementServer.PeriodicInformInterval", "60", "root is Device."),
        ("Device.ManagementServer.ConnectionRequestPassword", "x", "managed by the ACS"),
        ("Device.DeviceInfo.SerialNumber", "x", "read-only"),
        ("Device.Cached.Port", "abc", "not an integer"),
        ("Device.X", {"nested": 1}, "string, number or boolean"),
    ],
)
def test_bad_tr069_settings_are_422_and_store_nothing(
    env: Env, key: str, value: Any, needle: str
) -> None:
    env.inform(root="Device.")
    env.store.upsert_parameters(
        env.device.id,
        [
            ("Device.DeviceInfo.SerialNumber", "NS001", "xsd:string", False),
            ("Device.Cached.Port", "80", "xsd:unsignedInt", True),
        ],
        now=T0,
    )
    reply = env.put({"configuration": {key: value, "Device.Good": "1"}, "notes": "n"})
    assert reply.status == 422
    assert needle in reply.json["configuration"][0]
    assert env.store.desired_settings(env.device.id) == []
    assert env.store.get_operational_record(env.device.id).data == {}
    assert env.config_tasks() == []


def test_null_removes_a_setting_and_a_metadata_key(env: Env) -> None:
    env.put({"configuration": {PII: "60", "team": "x", "keep": 1}})
    body = env.put({"configuration": {PII: None, "team": None}}).json
    assert env.store.desired_settings(env.device.id) == []
    assert body["configuration"] == {"keep": 1, "firmware_version": None}


def test_secret_setting_values_are_never_returned(env: Env) -> None:
    key = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"
    reply = env.put({"configuration": {key: "hunter2hunter2"}})
    assert reply.status == 200
    assert "hunter2hunter2" not in reply.raw.decode()
    assert reply.json["configuration"][key] == "[redacted]"
    assert env.store.desired_settings(env.device.id)[0].value == "hunter2hunter2"


# --- PUT /inventory_device_serial_operation/{serial}/ --------------------------------------


def test_seed_004_example_gives_the_documented_response(env: Env) -> None:
    env.inform()
    reply = env.put_serial(SEED_004_BODY)
    assert reply.status == 200, reply.json
    body = reply.json
    for key in (
        "name",
        "status",
        "location",
        "assigned_user",
        "organization_unit",
        "device_type",
        "manufacturer",
        "model",
        "configuration",
        "custom_fields",
        "tags",
    ):
        assert body[key] == SEED_004_BODY[key], key
    assert body["id"] == env.device.id
    assert body["serial_number"] == "NS001-ABC123"
    assert body["created_at"] == "2024-01-15T09:28:20Z"
    assert body["updated_at"] == "2024-01-15T09:30:00Z"
    assert body["last_seen"] == "2024-01-15T09:29:10Z"
    device = env.store.get_device(env.device.id)
    assert device is not None
    assert device.name == "Conference Room Laptop"
    assert device.operational_status == "active"


def test_serial_endpoint_is_idempotent(env: Env) -> None:
    first = env.put_serial(SEED_004_BODY)
    history = env.store.count_history(env.device.id)
    env.h.clock.advance(3600)
    second = env.put_serial(SEED_004_BODY)
    assert second.status == 200
    assert second.json == first.json
    assert env.store.count_history(env.device.id) == history
    assert len(env.store.get_operational_record(env.device.id).history) == 1


def test_custom_fields_merge_and_tags_replace(env: Env) -> None:
    env.put_serial({"custom_fields": {"a": 1, "b": 2}, "tags": ["x", "y"]})
    body = env.put_serial({"custom_fields": {"b": 3, "c": 4}, "tags": ["z"]}).json
    assert body["custom_fields"] == {"a": 1, "b": 3, "c": 4}
    assert body["tags"] == ["z"]
    body = env.put_serial({"custom_fields": {"a": None}}).json
    assert body["custom_fields"] == {"b": 3, "c": 4}
    assert body["tags"] == ["z"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "retired"}, "status"),
        ({"tags": "laptop"}, "tags"),
        ({"tags": ["ok", 3]}, "tags"),
        ({"custom_fields": ["a"]}, "custom_fields"),
        ({"assigned_user": "john.doe"}, "assigned_user"),
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"configuration": {"Device.A B": "x"}}, "configuration"),
    ],
)
def test_serial_invalid_values_are_422(env: Env, body: dict[str, Any], field: str) -> None:
    reply = env.put_serial({**body, "location": "somewhere"})
    assert reply.status == 422
    assert list(reply.json) == [field]
    assert env.store.get_operational_record(env.device.id).data == {}
    assert env.store.get_device(env.device.id).name == env.device.name  # type: ignore[union-attr]


def test_serial_status_change_is_in_operational_history(env: Env) -> None:
    env.put_serial({"status": "maintenance"})
    body = env.put({}).json  # the id endpoint shows the shared record
    (entry,) = body["operational_history"]
    assert (entry["to_status"], entry["performed_by"]) == ("maintenance", "admin@company.com")


def test_serial_configuration_queues_configuration_update(env: Env) -> None:
    env.put_serial({"configuration": {PII: 300}})
    assert len(env.config_tasks()) == 1
    assert env.store.desired_settings(env.device.id)[0].value == "300"


def test_serial_unknown_is_404_and_serials_are_case_sensitive(env: Env) -> None:
    assert env.put_serial({"name": "x"}, serial="ns001-abc123").status == 404
    assert env.put_serial({"name": "x"}, serial="nope").status == 404


def test_serial_with_dots_and_colons(env: Env) -> None:
    device = env.store.create_device(
        serial_number="AB.12-c_d:9", name="odd", organization_id=env.org.id, now=T0, actor="t"
    )
    reply = env.put_serial({"tags": ["t"]}, serial=device.serial_number)
    assert reply.status == 200
    assert reply.json["id"] == device.id


def test_serial_body_that_is_not_an_object_is_400(env: Env) -> None:
    reply = env.h.call(
        "PUT",
        SERIAL_URL.format(env.device.serial_number),
        token=env.operator,
        data=b"[]",
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 400
