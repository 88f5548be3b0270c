"""The nested device view `/inventory_device_serial/` (spec section 4, seed 002's newer
text): representation, writes by serial, renames, status writes, tenancy, seed examples."""

from __future__ import annotations

from typing import Any

import pytest
from apiharness import T0, ApiHarness

from acs.store.models import DOWN, UP, Device

BASE = "/api/v1/inventory_device_serial/"

# Keys of the seed's examples (002_34b9dfd99eaf4d20.txt, newer text).
SEED_LIST_ITEM_KEYS = {
    "serial_number", "name", "type", "organization", "status", "last_status_change",
    "ip_address", "location", "pending_changes", "created_at", "updated_at",
}  # fmt: skip
SEED_DETAIL_KEYS = SEED_LIST_ITEM_KEYS | {
    "mac_address", "description", "firmware_version", "pending_details",
}  # fmt: skip
SEED_WRITE_KEYS = SEED_LIST_ITEM_KEYS | {"description"}


def make(h: ApiHarness, serial: str, org: int = 1, **fields: Any) -> Device:
    return h.store.create_device(
        serial_number=serial,
        name=fields.pop("name", f"dev-{serial}"),
        organization_id=org,
        now=h.clock.seconds(),
        actor="test",
        **fields,
    )


@pytest.fixture
def seed_world(harness: ApiHarness) -> ApiHarness:
    """The seed's rows: organization 123 "Acme Corp IT", device types 1 (Router) and 3
    (Network Switch), device SN123456789 "Core-Switch-01"."""
    h = harness
    n = 0
    while h.store.ensure_organization(f"org-{n}").id < 122:
        n += 1
    acme = h.store.ensure_organization("Acme Corp IT", code="ACME-IT")
    assert acme.id == 123
    h.store.create_device_type(
        now=1.0, actor="t", name="Router", model="Cisco ISR 4331", manufacturer="Cisco"
    )
    h.store.create_device_type(now=1.0, actor="t", name="Firewall")
    h.store.create_device_type(
        now=1.0, actor="t", name="Network Switch", model="Cisco Catalyst 9300", manufacturer="Cisco"
    )
    device = make(h, "SN123456789", 123, name="Core-Switch-01", type_id=3)
    h.store.set_status(device.id, UP, now=T0)
    return h


def test_seed_list_example(seed_world: ApiHarness) -> None:
    h = seed_world
    make(h, "ELSEWHERE", 1)
    reply = h.call(
        "GET",
        "/api/v1/inventory_device_serial/?organization=123&status=true&pending=true&limit=25",
        token=h.token("viewer"),
    )
    assert reply.status == 200
    assert set(reply.json) == {"count", "next", "previous", "results"}
    (item,) = reply.json["results"]
    assert set(item) >= SEED_LIST_ITEM_KEYS
    assert item["type"] == {"id": 3, "name": "Network Switch", "model": "Cisco Catalyst 9300"}
    assert item["organization"] == {"id": 123, "name": "Acme Corp IT"}
    assert (item["status"], item["pending_changes"]) == (True, False)
    assert set(item["pending_details"]) == {
        "configuration_updates",
        "firmware_update",
        "last_pending_change",
    }


def test_seed_create_example(seed_world: ApiHarness) -> None:
    h = seed_world
    reply = h.call(
        "POST",
        "/api/v1/inventory_device_serial/",
        token=h.token("admin", name="provisioner"),
        json_body={
            "serial_number": "SN987654321",
            "name": "Edge-Router-05",
            "type": 1,
            "organization": 123,
            "ip_address": "192.168.2.5",
            "location": "Branch Office B",
            "status": True,
            "description": "Primary edge router for branch connectivity",
        },
    )
    assert reply.status == 201, reply.json
    got = reply.json
    assert set(got) >= SEED_WRITE_KEYS
    assert got["type"]["id"] == 1 and got["type"]["model"] == "Cisco ISR 4331"
    assert got["organization"]["id"] == 123 and got["organization"]["name"] == "Acme Corp IT"
    assert (got["ip_address"], got["location"], got["status"]) == (
        "192.168.2.5",
        "Branch Office B",
        True,
    )
    device = h.store.get_device_by_serial_number("SN987654321")
    assert device is not None and device.status == UP
    status_entry = next(e for e in h.store.history(device.id) if e.action == "status")
    assert (status_entry.actor, status_entry.detail["to"]) == ("provisioner", UP)


def test_seed_detail_example(seed_world: ApiHarness) -> None:
    h = seed_world
    reply = h.call(
        "GET",
        "/api/v1/inventory_device_serial/SN123456789/?update_status=true&pending=true",
        token=h.token("operator"),
    )
    assert reply.status == 200
    got = reply.json
    assert set(got) >= SEED_DETAIL_KEYS
    assert got["type"] == {
        "id": 3,
        "name": "Network Switch",
        "model": "Cisco Catalyst 9300",
        "manufacturer": "Cisco",
    }
    assert got["organization"] == {"id": 123, "name": "Acme Corp IT", "code": "ACME-IT"}
    assert set(got["pending_details"]) == {
        "configuration_updates",
        "firmware_update",
        "last_pending_change",
    }


def test_seed_put_patch_delete_examples(seed_world: ApiHarness) -> None:
    h = seed_world
    token = h.token("admin", name="noc")
    reply = h.call(
        "PUT",
        "/api/v1/inventory_device_serial/SN123456789/",
        token=token,
        json_body={
            "name": "Core-Switch-01-Updated",
            "type": 3,
            "organization": 123,
            "ip_address": "192.168.1.15",
            "location": "Data Center A - Rack 16",
            "status": True,
            "description": "Updated primary core switch with new configuration",
            "firmware_version": "16.12.06",
        },
    )
    assert reply.status == 200, reply.json
    assert set(reply.json) >= SEED_WRITE_KEYS
    assert reply.json["name"] == "Core-Switch-01-Updated"
    assert reply.json["location"] == "Data Center A - Rack 16"
    # firmware_version is reported by the CPE: read-only, accepted and ignored.
    assert reply.json["firmware_version"] is None

    reply = h.call(
        "PATCH",
        "/api/v1/inventory_device_serial/SN123456789/",
        token=token,
        json_body={"status": False, "description": "Device offline for scheduled maintenance"},
    )
    assert reply.status == 200, reply.json
    assert reply.json["status"] is False
    assert reply.json["name"] == "Core-Switch-01-Updated"
    assert reply.json["description"] == "Device offline for scheduled maintenance"
    device = h.store.get_device_by_serial_number("SN123456789")
    assert device is not None and device.status == DOWN
    entry = next(e for e in h.store.history(device.id) if e.action == "status")
    assert (entry.actor, entry.detail["from"], entry.detail["to"]) == ("noc", UP, DOWN)

    reply = h.call("DELETE", "/api/v1/inventory_device_serial/SN123456789/", token=token)
    assert (reply.status, reply.raw) == (204, b"")
    assert h.store.get_device_by_serial_number("SN123456789") is None


# --- addressing by serial -----------------------------------------------------------------


def test_serials_with_punctuation_are_addressable_and_case_sensitive(
    harness: ApiHarness,
) -> None:
    make(harness, "AB.c-D_e:F")
    token = harness.token("viewer")
    assert harness.call("GET", f"{BASE}AB.c-D_e:F/", token=token).status == 200
    assert harness.call("GET", f"{BASE}AB.c-D_e:F", token=token).status == 200
    assert harness.call("GET", f"{BASE}ab.c-d_e:f/", token=token).status == 404
    missing = harness.call("GET", f"{BASE}NOPE/", token=token)
    assert missing.status == 404 and "detail" in missing.json


def test_duplicate_serial_on_create_is_409(harness: ApiHarness) -> None:
    make(harness, "DUP")
    reply = harness.call(
        "POST",
        BASE,
        token=harness.token("admin"),
        json_body={"serial_number": "DUP", "name": "x", "organization": 1},
    )
    assert reply.status == 409 and set(reply.json) == {"detail"}
    assert harness.store.count_devices() == 1


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_body_serial_differing_from_the_path_renames(harness: ApiHarness, method: str) -> None:
    device = make(harness, "OLD")
    token = harness.token("operator")
    reply = harness.call(
        method, f"{BASE}OLD/", token=token, json_body={"serial_number": "NEW", "name": "n"}
    )
    assert reply.status == 200 and reply.json["serial_number"] == "NEW"
    assert harness.call("GET", f"{BASE}OLD/", token=token).status == 404
    assert harness.call("GET", f"{BASE}NEW/", token=token).status == 200
    assert harness.store.get_device(device.id).serial_number == "NEW"  # type: ignore[union-attr]


def test_rename_to_a_taken_serial_is_409_and_changes_nothing(harness: ApiHarness) -> None:
    make(harness, "TAKEN")
    device = make(harness, "MINE")
    reply = harness.call(
        "PATCH",
        f"{BASE}MINE/",
        token=harness.token("operator"),
        json_body={"serial_number": "TAKEN", "description": "x"},
    )
    assert reply.status == 409
    assert harness.store.get_device(device.id) == device


# --- writes -------------------------------------------------------------------------------


def test_put_resets_descriptive_fields_and_keeps_live_state(harness: ApiHarness) -> None:
    kind = harness.store.create_device_type(now=1.0, actor="t", name="router")
    device = make(harness, "A", type_id=kind.id, description="d", address="10.0.0.1")
    harness.store.set_status(device.id, UP, now=T0)
    token = harness.token("operator")
    harness.call("PATCH", f"{BASE}A/", token=token, json_body={"location": "Rack 1"})
    reply = harness.call("PUT", f"{BASE}A/", token=token, json_body={"name": "only-name"})
    assert reply.status == 200, reply.json
    got = reply.json
    assert (got["type"], got["location"], got["description"]) == (None, None, None)
    assert (got["status"], got["ip_address"], got["organization"]["id"]) == (True, "10.0.0.1", 1)
    missing = harness.call("PUT", f"{BASE}A/", token=token, json_body={"description": "x"})
    assert missing.status == 400 and "name" in missing.json


def test_a_returned_representation_can_be_written_back(harness: ApiHarness) -> None:
    kind = harness.store.create_device_type(now=1.0, actor="t", name="router", model="R1")
    make(harness, "A", type_id=kind.id, description="d")
    token = harness.token("operator")
    body = harness.call("GET", f"{BASE}A/", token=token).json
    body["name"] = "renamed"
    reply = harness.call("PUT", f"{BASE}A/", token=token, json_body=body)
    assert reply.status == 200, reply.json
    assert (reply.json["name"], reply.json["type"]["id"], reply.json["description"]) == (
        "renamed",
        kind.id,
        "d",
    )


def test_operator_marking_a_device_up_is_recorded_as_a_transition(harness: ApiHarness) -> None:
    device = make(harness, "A")
    harness.clock.advance(120)
    reply = harness.call(
        "PATCH", f"{BASE}A/", token=harness.token("operator", name="carol"), json_body={"status": 1}
    )
    assert reply.status == 200 and reply.json["status"] is True
    assert reply.json["last_status_change"] == "2024-01-15T09:32:00Z"
    entry = harness.store.history(device.id)[0]
    assert (entry.action, entry.actor, entry.detail["to"]) == ("status", "carol", UP)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ip_address", "999.1.1.1"),
        ("ip_address", 17),
        ("status", "maybe"),
        ("type", 999),
        ("organization", None),
        ("name", ""),
        ("serial_number", "a/b"),
        ("location", 5),
        ("customer_id", "flat-view-only"),
        ("bogus", 1),
    ],
)
def test_invalid_or_unknown_fields_are_400_for_that_field(
    harness: ApiHarness, field: str, value: Any
) -> None:
    device = make(harness, "A")
    reply = harness.call(
        "PATCH", f"{BASE}A/", token=harness.token("operator"), json_body={field: value}
    )
    assert reply.status == 400
    assert field in reply.json
    assert harness.store.get_device(device.id) == device


def test_ipv6_address_is_accepted_and_normalised(harness: ApiHarness) -> None:
    make(harness, "A")
    reply = harness.call(
        "PATCH",
        f"{BASE}A/",
        token=harness.token("operator"),
        json_body={"ip_address": "2001:DB8:0:0::1"},
    )
    assert reply.status == 200 and reply.json["ip_address"] == "2001:db8::1"


def test_mac_address_comes_from_the_cached_parameter_tree(harness: ApiHarness) -> None:
    igd = make(harness, "IGD")
    harness.store.upsert_parameters(
        igd.id,
        [
            (
                "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.MACAddress",
                "00:D0:9E:00:00:01",
                "xsd:string",
                False,
            ),
            (
                "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
                ".MACAddress",
                "00:D0:9E:00:00:10",
                "xsd:string",
                False,
            ),
        ],
        now=T0,
    )
    tr181 = make(harness, "TR181")
    harness.store.upsert_parameters(
        tr181.id,
        [("Device.Ethernet.Interface.1.MACAddress", "00:D0:9E:00:00:31", "xsd:string", False)],
        now=T0,
    )
    make(harness, "BLANK")
    token = harness.token("viewer")
    assert harness.call("GET", f"{BASE}IGD/", token=token).json["mac_address"] == (
        "00:D0:9E:00:00:10"
    )
    assert harness.call("GET", f"{BASE}TR181/", token=token).json["mac_address"] == (
        "00:D0:9E:00:00:31"
    )
    assert harness.call("GET", f"{BASE}BLANK/", token=token).json["mac_address"] is None


def test_pending_changes_reflects_queued_work(harness: ApiHarness) -> None:
    device = make(harness, "A")
    token = harness.token("viewer")
    assert harness.call("GET", f"{BASE}A/", token=token).json["pending_changes"] is False
    harness.store.queue_task(device.id, "reboot", {}, now=T0, actor="t")
    got = harness.call("GET", f"{BASE}A/", token=token).json
    assert got["pending_changes"] is True
    assert got["pending_details"]["last_pending_change"] == "2024-01-15T09:30:00Z"


# --- roles and tenancy ----------------------------------------------------------------------


def test_roles_on_the_serial_view(harness: ApiHarness) -> None:
    make(harness, "A")
    viewer, operator = harness.token("viewer"), harness.token("operator")
    body = {"serial_number": "B", "name": "b", "organization": 1}
    assert harness.call("POST", BASE, token=operator, json_body=body).status == 403
    assert harness.call("PATCH", f"{BASE}A/", token=viewer, json_body={"name": "x"}).status == 403
    assert harness.call("DELETE", f"{BASE}A/", token=operator).status == 403
    assert harness.call("GET", f"{BASE}A/?update_status=true", token=viewer).status == 403
    assert harness.call("GET", f"{BASE}A/", token=None).status == 401
    assert harness.store.count_devices() == 1


def test_scoped_token_cannot_reach_or_move_into_another_organization(
    harness: ApiHarness,
) -> None:
    a = harness.store.ensure_organization("A").id
    b = harness.store.ensure_organization("B").id
    mine = make(harness, "MINE", a)
    theirs = make(harness, "THEIRS", b)
    token = harness.token("admin", orgs=[a])
    listing = harness.call("GET", BASE, token=token).json
    assert [d["serial_number"] for d in listing["results"]] == ["MINE"]
    assert harness.call("GET", f"{BASE}?organization={b}", token=token).status == 403
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        assert harness.call(method, f"{BASE}THEIRS/", token=token, json_body=body).status == 403
    moved = harness.call("PATCH", f"{BASE}MINE/", token=token, json_body={"organization": b})
    assert moved.status == 403
    created = harness.call("POST", BASE, token=token, json_body={"serial_number": "N", "name": "n"})
    assert created.status == 201 and created.json["organization"]["id"] == a
    assert harness.store.get_device(mine.id) == mine
    assert harness.store.get_device(theirs.id) == theirs


def test_list_filters_and_paging_apply_to_the_serial_view(harness: ApiHarness) -> None:
    for n in range(5):
        make(harness, f"S{n}")
    up = harness.store.get_device_by_serial_number("S3")
    assert up is not None
    harness.store.set_status(up.id, UP, now=T0)
    token = harness.token("viewer")
    assert [
        d["serial_number"]
        for d in harness.call("GET", f"{BASE}?status=True", token=token).json["results"]
    ] == ["S3"]
    page = harness.call("GET", f"{BASE}?status=false&limit=2&offset=1", token=token).json
    assert page["count"] == 4
    assert [d["serial_number"] for d in page["results"]] == ["S1", "S2"]
    assert "status=false" in page["next"] and "status=false" in page["previous"]
    assert harness.call("GET", f"{BASE}?status=nope", token=token).status == 400


def test_body_over_one_mebibyte_is_413(harness: ApiHarness) -> None:
    make(harness, "A")
    data = b'{"description": "' + b"x" * (1024 * 1024) + b'"}'
    reply = harness.call(
        "PATCH",
        f"{BASE}A/",
        token=harness.token("operator"),
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 413


def test_list_page_shows_each_device_its_own_pending_details(harness: ApiHarness) -> None:
    # Related rows are read once per page: pending work must still land on its own device.
    store = harness.store
    kind = store.create_device_type(now=1.0, actor="t", name="T", model="M").id
    devices = [make(harness, f"P{i}", type_id=kind if i else None) for i in range(3)]
    store.queue_task(devices[0].id, "firmware_update", {}, now=T0, actor="t")
    store.set_desired_settings(devices[1].id, {"Device.X": "1", "Device.Y": "2"}, now=T0, actor="t")
    token = harness.token("viewer")
    listed = harness.call("GET", f"{BASE}?pending=true", token=token).json["results"]
    assert [d["pending_details"]["configuration_updates"] for d in listed] == [0, 2, 0]
    assert [d["pending_details"]["firmware_update"] for d in listed] == [True, False, False]
    assert [d["pending_changes"] for d in listed] == [True, True, False]
    assert [d["type"] and d["type"]["model"] for d in listed] == [None, "M", "M"]
    for item, device in zip(listed, devices, strict=True):
        single = harness.call("GET", f"{BASE}{device.serial_number}/", token=token).json
        assert single["pending_details"] == item["pending_details"]
        assert single["organization"]["name"] == item["organization"]["name"]
