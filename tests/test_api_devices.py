"""The flat device view `/inventory_device/` (spec sections 1-3, seed 001): filters, paging,
tenancy, roles, validation, PUT/PATCH/DELETE semantics and the seed's examples."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from apiharness import HOST, T0, ApiHarness, Reply

import api.devices
from acs.store.models import DOWN, UP, Device

BASE = "/api/v1/inventory_device/"

# Keys of the seed's examples (001_07087fea26765004.txt).
SEED_LIST_ITEM_KEYS = {
    "id", "uuid", "name", "customer_id", "is_active", "status", "status_change", "type",
    "type_short_name", "software_version", "hardware_version", "manufacturer",
    "serial_number", "description", "organization_id", "location_name", "location",
    "location_short_name", "latitude", "longitude", "address", "last_connection",
    "last_configuration", "created", "pending_settings",
}  # fmt: skip
SEED_CREATE_KEYS = {
    "id", "uuid", "name", "customer_id", "is_active", "status", "status_change", "type",
    "type_short_name", "software_version", "hardware_version", "manufacturer",
    "serial_number", "serial_number_alt", "description", "organization_id", "location_name",
    "latitude", "longitude", "username", "update_frequency", "created", "pending_settings",
}  # fmt: skip
SEED_DETAIL_KEYS = SEED_CREATE_KEYS | {
    "unique_identifier", "product_class", "firmware_image", "firmware_image_is_pending",
    "location", "location_short_name", "address", "last_connection", "last_configuration",
    "last_change", "debug",
}  # fmt: skip


def make(h: ApiHarness, serial: str, org: int = 1, **fields: Any) -> Device:
    return h.store.create_device(
        serial_number=serial,
        name=fields.pop("name", f"dev-{serial}"),
        organization_id=org,
        now=h.clock.seconds(),
        actor="test",
        **fields,
    )


def org(h: ApiHarness, name: str) -> int:
    return h.store.ensure_organization(name).id


def ids(reply: Reply) -> list[int]:
    return [d["id"] for d in reply.json["results"]]


def no_secrets(reply: Reply, *secrets: str) -> None:
    """No password key anywhere and no secret value anywhere in the raw body."""

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            assert "password" not in value
            assert "connection_request_password" not in value
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(reply.json)
    for secret in secrets:
        assert secret.encode() not in reply.raw


# --- the seed's examples ----------------------------------------------------------------


@pytest.fixture
def seed_world(harness: ApiHarness) -> ApiHarness:
    """Rows with the seed's ids: organization 5, device types 12 and 15, image 47."""
    h = harness
    n = 0
    while org(h, f"org-{n}") < 5:
        n += 1
    for n in range(1, 16):
        h.store.create_device_type(
            now=1.0, actor="t", name=f"type-{n}", short_name="enterprise_router"
        )
    for n in range(1, 48):
        h.store.create_firmware_image(
            name=f"fw-{n}", version="1", size=1, sha256="0" * 64, filename=f"fw{n}", now=T0
        )
    return h


def test_seed_list_example_answers_with_the_seed_shape(seed_world: ApiHarness) -> None:
    h = seed_world
    device = make(h, "ZEQ240100001", 5, type_id=12)
    h.store.set_status(device.id, UP, now=T0)
    make(h, "OTHER-ORG", 1)
    reply = h.call(
        "GET",
        "/api/v1/inventory_device/?status=1&organization=5&limit=25&update_status=true",
        token=h.token("operator"),
    )
    assert reply.status == 200
    assert set(reply.json) == {"count", "next", "previous", "results"}
    assert reply.json["count"] == 1
    assert set(reply.json["results"][0]) >= SEED_LIST_ITEM_KEYS
    assert reply.json["results"][0]["type_short_name"] == "enterprise_router"


def test_seed_create_example_returns_201_with_the_seed_shape(seed_world: ApiHarness) -> None:
    h = seed_world
    body = {
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
    reply = h.call("POST", BASE, token=h.token("admin"), json_body=body)
    assert reply.status == 201, reply.json
    assert set(reply.json) >= SEED_CREATE_KEYS
    got = reply.json
    assert (got["status"], got["is_active"], got["pending_settings"]) == ("Down", False, None)
    for key in body.keys() - {"password", "type"}:
        assert got[key] == body[key], key
    assert got["type"] == 12
    assert got["location_name"] == "Boston Branch Office"
    assert got["created"] == "2024-01-15T09:30:00Z"
    no_secrets(reply, "secure_password_123")
    assert h.store.get_device(got["id"]).password == "secure_password_123"  # type: ignore[union-attr]


def _device_1001(h: ApiHarness) -> Device:
    """The seed's device id 1001 (ids are sequential, so 1000 devices come first)."""
    for n in range(1000):
        make(h, f"FILL{n}", 1)
    device = make(h, "ZEQ240100001", 5, type_id=12)
    assert device.id == 1001
    return device


def test_seed_detail_put_patch_delete_examples(seed_world: ApiHarness) -> None:
    h = seed_world
    _device_1001(h)
    admin = h.token("admin")

    reply = h.call(
        "GET", "/api/v1/inventory_device/1001/?pending=true&update_status=true", token=admin
    )
    assert reply.status == 200
    assert set(reply.json) >= SEED_DETAIL_KEYS

    reply = h.call(
        "PUT",
        "/api/v1/inventory_device/1001/",
        token=admin,
        json_body={
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
        },
    )
    assert reply.status == 200, reply.json
    assert (reply.json["type"], reply.json["update_frequency"]) == (15, 180)
    assert reply.json["location_name"] == "New York Main Office"

    reply = h.call(
        "PATCH",
        "/api/v1/inventory_device/1001/",
        token=admin,
        json_body={"reboot": True, "debug": True},
    )
    assert reply.status == 200, reply.json
    assert reply.json["debug"] is True
    assert reply.json["pending_settings"] == "reboot"

    reply = h.call(
        "PATCH",
        "/api/v1/inventory_device/1001/",
        token=admin,
        json_body={"firmware_image": 47, "firmware_image_is_pending": True},
    )
    assert reply.status == 200, reply.json
    assert (reply.json["firmware_image"], reply.json["firmware_image_is_pending"]) == (47, True)
    assert "firmware_update" in reply.json["pending_settings"]

    reply = h.call(
        "PATCH",
        "/api/v1/inventory_device/1001/",
        token=admin,
        json_body={"sync": True, "reconf": True},
    )
    assert reply.status == 200, reply.json
    assert {"sync", "reconf"} <= set(reply.json["pending_settings"].split(","))

    reply = h.call("DELETE", "/api/v1/inventory_device/1001/", token=admin)
    assert (reply.status, reply.raw) == (204, b"")
    assert h.store.get_device(1001) is None


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [("0", DOWN), ("false", DOWN), ("False", DOWN), ("1", UP), ("true", UP), ("True", UP)],
)
def test_status_filter_accepts_each_documented_spelling(
    harness: ApiHarness, spelling: str, expected: str
) -> None:
    up = make(harness, "UP1")
    down = make(harness, "DOWN1")
    harness.store.set_status(up.id, UP, now=T0)
    reply = harness.call("GET", f"{BASE}?status={spelling}", token=harness.token("viewer"))
    assert reply.status == 200
    assert ids(reply) == [up.id if expected == UP else down.id]


@pytest.mark.parametrize("value", ["yes", "TRUE", "2", "up", "Down"])
def test_status_filter_rejects_other_values(harness: ApiHarness, value: str) -> None:
    reply = harness.call("GET", f"{BASE}?status={value}", token=harness.token("viewer"))
    assert reply.status == 400
    assert "status" in reply.json


def test_type_filter_lists_only_devices_of_that_type(harness: ApiHarness) -> None:
    router = harness.store.create_device_type(now=1.0, actor="t", name="router")
    switch = harness.store.create_device_type(now=1.0, actor="t", name="switch")
    a = make(harness, "A", type_id=router.id)
    make(harness, "B", type_id=switch.id)
    make(harness, "C")
    reply = harness.call("GET", f"{BASE}?type={router.id}", token=harness.token("viewer"))
    assert ids(reply) == [a.id]
    bad = harness.call("GET", f"{BASE}?type=router", token=harness.token("viewer"))
    assert bad.status == 400 and "type" in bad.json


@pytest.mark.parametrize(
    ("value", "included"),
    [
        ("2024-01-15", True),
        ("2024-01-15 10:00:00", True),
        ("2024-01-15 10:00:01", False),
        ("2024-01-15T10:00:00", True),
        ("2024-01-15T10:00:01", False),
        ("2024-01-15T10:00:00+00:00", True),
        ("2024-01-15T12:00:00+02:00", True),  # = 10:00:00Z
        ("2024-01-15T12:00:01+02:00", False),
        ("2024-01-15T10:00:00Z", True),
        ("2024-01-15 10:00:00 00:00", True),  # an unencoded "+" decodes to a space
    ],
)
def test_last_status_change_from_accepts_each_format(
    harness: ApiHarness, value: str, included: bool
) -> None:
    old = make(harness, "OLD")  # status_change = T0 = 09:30:00Z
    harness.clock.advance(30 * 60)  # 10:00:00Z
    new = make(harness, "NEW")
    reply = harness.call(
        "GET",
        f"{BASE}?last_status_change_from={quote(value)}",
        token=harness.token("viewer"),
    )
    assert reply.status == 200, reply.json
    assert ids(reply) == (
        [old.id, new.id] if value == "2024-01-15" else [new.id] if included else []
    )


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "2024-01-15T25:00:00", "15/01/2024"])
def test_last_status_change_from_rejects_garbage(harness: ApiHarness, value: str) -> None:
    reply = harness.call(
        "GET", f"{BASE}?last_status_change_from={quote(value)}", token=harness.token("viewer")
    )
    assert reply.status == 400
    assert "last_status_change_from" in reply.json


def test_organization_filter_and_bad_organization(harness: ApiHarness) -> None:
    other = org(harness, "Other")
    make(harness, "A", 1)
    b = make(harness, "B", other)
    token = harness.token("viewer")
    assert ids(harness.call("GET", f"{BASE}?organization={other}", token=token)) == [b.id]
    assert harness.call("GET", f"{BASE}?organization=x", token=token).status == 400


def test_pending_flag_gives_the_detailed_form(harness: ApiHarness) -> None:
    device = make(harness, "A")
    harness.store.queue_task(device.id, "reboot", {}, now=T0, actor="t", scheduled_at=T0 + 3600)
    token = harness.token("viewer")
    plain = harness.call("GET", BASE, token=token).json["results"][0]
    detailed = harness.call("GET", f"{BASE}?pending=true", token=token).json["results"][0]
    assert plain["pending_settings"] == "reboot_scheduled"
    assert detailed["pending_settings"] == "reboot_scheduled:2024-01-15T10:30:00Z"
    assert harness.call("GET", f"{BASE}?pending=maybe", token=token).status == 400


def test_list_page_shows_each_device_its_own_type_location_and_pending_work(
    harness: ApiHarness,
) -> None:
    # A page reads related rows for all its devices at once: each must still get its own.
    store = harness.store
    kinds = [
        store.create_device_type(now=1.0, actor="t", name=f"T{i}", short_name=f"t{i}").id
        for i in range(2)
    ]
    places = [
        store.create_location(now=1.0, actor="t", name=f"L{i}", organization_id=1).id
        for i in range(2)
    ]
    devices = [
        make(harness, f"D{i}", type_id=kinds[i % 2], location_id=places[i % 2] if i else None)
        for i in range(4)
    ]
    store.queue_task(devices[0].id, "reboot", {}, now=T0, actor="t", scheduled_at=T0 + 3600)
    store.queue_task(devices[1].id, "sync", {}, now=T0, actor="t")
    store.set_desired_settings(devices[2].id, {"Device.X": "1"}, now=T0, actor="t")
    token = harness.token("viewer")
    for query in ("", "?pending=true"):
        listed = harness.call("GET", BASE + query, token=token).json["results"]
        singles = [harness.call("GET", f"{BASE}{d.id}/{query}", token=token).json for d in devices]
        assert [{k: d[k] for k in item} for item, d in zip(listed, singles, strict=True)] == listed
    listed = harness.call("GET", BASE, token=token).json["results"]
    assert [d["pending_settings"] for d in listed] == [
        "reboot_scheduled",
        "sync",
        "configuration_update",
        None,
    ]
    assert [d["type_short_name"] for d in listed] == ["t0", "t1", "t0", "t1"]
    assert [d["location_name"] for d in listed] == [None, "L1", "L0", "L1"]


# --- pagination ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [20, 7])
def test_following_next_visits_every_device_once_and_previous_walks_back(
    harness: ApiHarness, limit: int
) -> None:
    made = [make(harness, f"S{n:03}").id for n in range(45)]
    token = harness.token("viewer")
    seen: list[int] = []
    url: str | None = f"{BASE}?limit={limit}"
    pages = []
    while url is not None:
        reply = harness.call("GET", url, token=token)
        assert reply.status == 200 and reply.json["count"] == 45
        seen += ids(reply)
        pages.append(ids(reply))
        url = reply.json["next"]
    assert seen == made  # each once, ascending id
    back: list[list[int]] = []
    url = f"{BASE}?limit={limit}&offset={limit * (len(pages) - 1)}"
    while url is not None:
        reply = harness.call("GET", url, token=token)
        back.append(ids(reply))
        url = reply.json["previous"]
    assert back == pages[::-1]


def test_limit_is_capped_at_100_and_links_keep_other_parameters(harness: ApiHarness) -> None:
    for n in range(105):
        make(harness, f"S{n:03}")
    reply = harness.call("GET", f"{BASE}?limit=500&status=0", token=harness.token("viewer"))
    assert len(reply.json["results"]) == 100
    nxt = urlsplit(reply.json["next"])
    assert f"{nxt.scheme}://{nxt.netloc}" == HOST
    assert nxt.path == BASE
    assert parse_qs(nxt.query) == {"limit": ["100"], "offset": ["100"], "status": ["0"]}
    assert reply.json["previous"] is None


@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "offset=-5", "offset=x"])
def test_bad_limit_or_offset_is_400(harness: ApiHarness, query: str) -> None:
    reply = harness.call("GET", f"{BASE}?{query}", token=harness.token("viewer"))
    assert reply.status == 400


def test_url_without_trailing_slash_is_served(harness: ApiHarness) -> None:
    device = make(harness, "A")
    token = harness.token("viewer")
    assert harness.call("GET", "/api/v1/inventory_device", token=token).status == 200
    assert harness.call("GET", f"/api/v1/inventory_device/{device.id}", token=token).status == 200


# --- authentication, roles and tenancy --------------------------------------------------


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_missing_or_bad_token_is_401_with_bearer_challenge(
    harness: ApiHarness, token: str | None
) -> None:
    reply = harness.call("GET", BASE, token=token)
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == "Bearer"
    assert "detail" in reply.json


def test_viewer_cannot_write_and_operator_cannot_create_or_delete(harness: ApiHarness) -> None:
    device = make(harness, "A")
    viewer, operator = harness.token("viewer"), harness.token("operator")
    body = {"name": "x", "serial_number": "NEW", "organization_id": 1}
    assert harness.call("POST", BASE, token=viewer, json_body=body).status == 403
    assert harness.call("POST", BASE, token=operator, json_body=body).status == 403
    path = f"{BASE}{device.id}/"
    assert harness.call("PATCH", path, token=viewer, json_body={"name": "y"}).status == 403
    assert harness.call("PUT", path, token=viewer, json_body={"name": "y"}).status == 403
    assert harness.call("DELETE", path, token=operator).status == 403
    assert harness.call("GET", f"{path}?update_status=true", token=viewer).status == 403
    assert harness.call("GET", f"{BASE}?update_status=true", token=viewer).status == 403
    assert harness.store.get_device(device.id) == device
    assert harness.call("PATCH", path, token=operator, json_body={"name": "y"}).status == 200


def test_scoped_token_sees_and_touches_only_its_organization(harness: ApiHarness) -> None:
    a, b = org(harness, "A"), org(harness, "B")
    mine = make(harness, "MINE", a)
    theirs = make(harness, "THEIRS", b)
    token = harness.token("admin", orgs=[a])
    listing = harness.call("GET", f"{BASE}?limit=100", token=token)
    assert ids(listing) == [mine.id] and listing.json["count"] == 1
    assert harness.call("GET", f"{BASE}?organization={b}", token=token).status == 403
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        body = {"name": "x", "serial_number": "THEIRS"} if method in ("PATCH", "PUT") else None
        reply = harness.call(method, f"{BASE}{theirs.id}/", token=token, json_body=body)
        assert reply.status == 403, method
    moved = harness.call(
        "PATCH", f"{BASE}{mine.id}/", token=token, json_body={"organization_id": b}
    )
    assert moved.status == 403
    created = harness.call(
        "POST",
        BASE,
        token=token,
        json_body={"name": "n", "serial_number": "N", "organization_id": b},
    )
    assert created.status == 403
    assert harness.store.get_device(mine.id) == mine
    assert harness.store.get_device(theirs.id) == theirs
    assert harness.store.count_devices() == 2


def test_organization_defaults_to_a_single_scope_and_is_required_otherwise(
    harness: ApiHarness,
) -> None:
    a = org(harness, "A")
    scoped = harness.call(
        "POST",
        BASE,
        token=harness.token("admin", orgs=[a]),
        json_body={"name": "n", "serial_number": "S1"},
    )
    assert scoped.status == 201 and scoped.json["organization_id"] == a
    unscoped = harness.call(
        "POST", BASE, token=harness.token("admin"), json_body={"name": "n", "serial_number": "S2"}
    )
    assert unscoped.status == 400 and "organization_id" in unscoped.json
    missing = harness.call(
        "POST",
        BASE,
        token=harness.token("admin"),
        json_body={"name": "n", "serial_number": "S3", "organization_id": 999},
    )
    assert missing.status == 400 and "organization_id" in missing.json


# --- create / validation --------------------------------------------------------------------


def test_duplicate_serial_or_colliding_alt_serial_is_409(harness: ApiHarness) -> None:
    make(harness, "TAKEN", serial_number_alt="ALT-TAKEN")
    admin = harness.token("admin")
    for body in (
        {"serial_number": "TAKEN"},
        {"serial_number": "FREE", "serial_number_alt": "TAKEN"},
        {"serial_number": "ALT-TAKEN"},
    ):
        reply = harness.call(
            "POST", BASE, token=admin, json_body={"name": "n", "organization_id": 1, **body}
        )
        assert reply.status == 409, body
        assert set(reply.json) == {"detail"}
    assert harness.store.count_devices() == 1


def test_unknown_field_is_400_naming_it_and_changes_nothing(harness: ApiHarness) -> None:
    device = make(harness, "A")
    admin = harness.token("admin")
    reply = harness.call(
        "PATCH", f"{BASE}{device.id}/", token=admin, json_body={"name": "new", "nmae": "typo"}
    )
    assert reply.status == 400
    assert "nmae" in reply.json
    assert harness.store.get_device(device.id) == device
    created = harness.call(
        "POST",
        BASE,
        token=admin,
        json_body={"name": "n", "serial_number": "B", "organization_id": 1, "colour": "red"},
    )
    assert created.status == 400 and "colour" in created.json
    assert harness.store.count_devices() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "x" * 256),
        ("name", 5),
        ("serial_number", "has space"),
        ("serial_number", "a/b"),
        ("serial_number", "x" * 65),
        ("serial_number", ""),
        ("serial_number_alt", "tab\there"),
        ("latitude", "90.5"),
        ("latitude", "north"),
        ("longitude", -180.01),
        ("longitude", "NaN"),
        ("update_frequency", 29),
        ("update_frequency", 86401),
        ("update_frequency", True),
        ("update_frequency", "often"),
        ("debug", "maybe"),
        ("type", 999),
        ("type", "router"),
        ("location", 999),
        ("customer_id", ["x"]),
        ("password", 123),
    ],
)
def test_invalid_field_values_are_400_for_that_field(
    harness: ApiHarness, field: str, value: Any
) -> None:
    device = make(harness, "A")
    reply = harness.call(
        "PATCH", f"{BASE}{device.id}/", token=harness.token("operator"), json_body={field: value}
    )
    assert reply.status == 400
    assert field in reply.json and isinstance(reply.json[field], list)
    assert harness.store.get_device(device.id) == device


def test_every_invalid_field_is_reported_at_once(harness: ApiHarness) -> None:
    reply = harness.call(
        "POST",
        BASE,
        token=harness.token("admin"),
        json_body={"name": "", "serial_number": "a b", "latitude": 100, "organization_id": 1},
    )
    assert reply.status == 400
    assert {"name", "serial_number", "latitude"} <= set(reply.json)


def test_boundary_values_are_accepted_and_coordinates_come_back_as_strings(
    harness: ApiHarness,
) -> None:
    reply = harness.call(
        "POST",
        BASE,
        token=harness.token("admin"),
        json_body={
            "name": "x" * 255,
            "serial_number": "A.b-c_d:E" + "x" * 55,
            "organization_id": 1,
            "latitude": -90,
            "longitude": 180.0,
            "update_frequency": 30,
            "debug": "true",
        },
    )
    assert reply.status == 201, reply.json
    assert (reply.json["latitude"], reply.json["longitude"]) == ("-90", "180.0")
    assert (reply.json["update_frequency"], reply.json["debug"]) == (30, True)


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_malformed_or_non_object_body_is_400(harness: ApiHarness, data: bytes) -> None:
    device = make(harness, "A")
    reply = harness.call(
        "PATCH",
        f"{BASE}{device.id}/",
        token=harness.token("operator"),
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 400 and "detail" in reply.json


def test_body_over_one_mebibyte_is_413(harness: ApiHarness) -> None:
    data = json.dumps({"name": "n", "description": "x" * (1024 * 1024)}).encode()
    reply = harness.call(
        "POST",
        BASE,
        token=harness.token("admin"),
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 413
    assert harness.store.count_devices() == 0


def test_location_name_finds_or_creates_a_location_in_the_device_organization(
    harness: ApiHarness,
) -> None:
    other = org(harness, "Other")
    foreign = harness.store.create_location(now=1.0, actor="t", name="HQ", organization_id=other)
    admin = harness.token("admin")
    first = harness.call(
        "POST",
        BASE,
        token=admin,
        json_body={"name": "a", "serial_number": "A", "organization_id": 1, "location_name": "HQ"},
    ).json
    second = harness.call(
        "POST",
        BASE,
        token=admin,
        json_body={"name": "b", "serial_number": "B", "organization_id": 1, "location_name": "HQ"},
    ).json
    assert first["location"] == second["location"] != foreign.id
    assert harness.store.get_location(first["location"]).organization_id == 1  # type: ignore[union-attr]
    # Another organization's location cannot be attached by id.
    reply = harness.call(
        "PATCH", f"{BASE}{first['id']}/", token=admin, json_body={"location": foreign.id}
    )
    assert reply.status == 400 and "location" in reply.json
    cleared = harness.call(
        "PATCH", f"{BASE}{first['id']}/", token=admin, json_body={"location_name": None}
    )
    assert (cleared.json["location"], cleared.json["location_name"]) == (None, None)


# --- PUT / PATCH ----------------------------------------------------------------------------


def test_put_resets_omitted_fields_but_keeps_the_password(harness: ApiHarness) -> None:
    kind = harness.store.create_device_type(now=1.0, actor="t", name="router")
    device = make(
        harness,
        "A",
        customer_id="C1",
        description="desc",
        latitude="1.5",
        longitude="2.5",
        username="cpe",
        password="s3cret-pw",
        update_frequency=600,
        debug=True,
        type_id=kind.id,
        serial_number_alt="ALT",
    )
    path = f"{BASE}{device.id}/"
    operator = harness.token("operator")
    reply = harness.call(
        "PUT", path, token=operator, json_body={"name": "new", "serial_number": "A"}
    )
    assert reply.status == 200, reply.json
    got = reply.json
    assert got["name"] == "new"
    for key in (
        "customer_id",
        "description",
        "latitude",
        "longitude",
        "username",
        "type",
        "serial_number_alt",
        "location",
    ):
        assert got[key] is None, key
    assert (got["update_frequency"], got["debug"], got["organization_id"]) == (300, False, 1)
    no_secrets(reply, "s3cret-pw")
    assert harness.store.get_device(device.id).password == "s3cret-pw"  # type: ignore[union-attr]

    changed = harness.call(
        "PUT",
        path,
        token=operator,
        json_body={"name": "new", "serial_number": "A", "password": "other-pw"},
    )
    assert changed.status == 200
    assert harness.store.get_device(device.id).password == "other-pw"  # type: ignore[union-attr]

    missing = harness.call("PUT", path, token=operator, json_body={"description": "only"})
    assert missing.status == 400 and {"name", "serial_number"} <= set(missing.json)


def test_put_accepts_a_representation_it_returned(harness: ApiHarness) -> None:
    device = make(harness, "A", description="d")
    token = harness.token("operator")
    body = harness.call("GET", f"{BASE}{device.id}/", token=token).json
    body["name"] = "renamed"
    reply = harness.call("PUT", f"{BASE}{device.id}/", token=token, json_body=body)
    assert reply.status == 200, reply.json
    assert (reply.json["name"], reply.json["description"]) == ("renamed", "d")


def test_patch_changes_only_given_fields_and_records_the_actor(harness: ApiHarness) -> None:
    device = make(harness, "A", description="keep", customer_id="C1")
    harness.clock.advance(60)
    token = harness.token("operator", name="noc-alice")
    reply = harness.call("PATCH", f"{BASE}{device.id}/", token=token, json_body={"name": "renamed"})
    assert reply.status == 200
    assert (reply.json["name"], reply.json["description"], reply.json["customer_id"]) == (
        "renamed",
        "keep",
        "C1",
    )
    assert reply.json["last_change"] == "2024-01-15T09:31:00Z"
    entry = harness.store.history(device.id)[0]
    assert (entry.action, entry.actor, entry.time) == ("updated", "noc-alice", T0 + 60)
    assert entry.detail["changes"]["name"] == {"from": "dev-A", "to": "renamed"}


def test_patch_serial_to_a_taken_one_is_409_and_changes_nothing(harness: ApiHarness) -> None:
    make(harness, "TAKEN")
    device = make(harness, "A")
    reply = harness.call(
        "PATCH",
        f"{BASE}{device.id}/",
        token=harness.token("operator"),
        json_body={"serial_number": "TAKEN", "name": "x"},
    )
    assert reply.status == 409
    assert harness.store.get_device(device.id) == device


def test_patch_operation_queues_a_task_by_the_caller(harness: ApiHarness) -> None:
    device = make(harness, "A")
    token = harness.token("operator", name="noc-bob")
    reply = harness.call(
        "PATCH",
        f"{BASE}{device.id}/?pending=true",
        token=token,
        json_body={"reboot": True, "factory": False, "schedule_at": "2024-01-16T02:00:00Z"},
    )
    assert reply.status == 200, reply.json
    assert reply.json["pending_settings"] == "reboot_scheduled:2024-01-16T02:00:00Z"
    (task,) = harness.store.tasks_for_device(device.id)
    assert (task.kind, task.actor, task.scheduled_at) == ("reboot", "noc-bob", 1705370400.0)


def test_invalid_field_next_to_an_operation_queues_nothing(harness: ApiHarness) -> None:
    device = make(harness, "A")
    reply = harness.call(
        "PATCH",
        f"{BASE}{device.id}/",
        token=harness.token("operator"),
        json_body={"reboot": True, "update_frequency": 5},
    )
    assert reply.status == 400 and "update_frequency" in reply.json
    assert harness.store.tasks_for_device(device.id) == []


def test_unknown_firmware_image_is_400(harness: ApiHarness) -> None:
    device = make(harness, "A")
    reply = harness.call(
        "PATCH",
        f"{BASE}{device.id}/",
        token=harness.token("operator"),
        json_body={"firmware_image": 404, "firmware_image_is_pending": True},
    )
    assert reply.status == 400 and "firmware_image" in reply.json
    assert harness.store.get_device(device.id) == device


def test_unknown_id_is_404(harness: ApiHarness) -> None:
    token = harness.token("admin")
    assert harness.call("GET", f"{BASE}12345/", token=token).status == 404
    assert (
        harness.call("PATCH", f"{BASE}12345/", token=token, json_body={"name": "x"}).status == 404
    )
    assert harness.call("DELETE", f"{BASE}12345/", token=token).status == 404


def test_passwords_never_appear_in_any_response(harness: ApiHarness) -> None:
    device = make(harness, "A", username="u", password="cpe-secret")
    harness.store.update_device(
        device.id,
        now=T0,
        actor="acs",
        connection_request_username="cr",
        connection_request_password="cr-secret",
    )
    token = harness.token("admin")
    for reply in (
        harness.call("GET", BASE, token=token),
        harness.call("GET", f"{BASE}{device.id}/", token=token),
        harness.call(
            "PATCH", f"{BASE}{device.id}/", token=token, json_body={"password": "new-secret"}
        ),
        harness.call("GET", "/api/v1/inventory_device_serial/A/", token=token),
    ):
        assert reply.status == 200
        no_secrets(reply, "cpe-secret", "cr-secret", "new-secret")


# --- update_status ----------------------------------------------------------------------------


def test_update_status_refreshes_the_page_before_serialising(
    harness: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = [make(harness, f"S{n}") for n in range(3)]
    asked: list[list[int]] = []

    async def fake_refresh(api: Any, device_ids: list[int]) -> None:
        asked.append(list(device_ids))
        for device_id in device_ids:
            api.store.set_status(device_id, UP, now=api.now(), reason="answered")

    monkeypatch.setattr(api.devices.device_ops, "refresh_status", fake_refresh)
    token = harness.token("operator")
    reply = harness.call("GET", f"{BASE}?limit=2&update_status=true", token=token)
    assert asked == [[devices[0].id, devices[1].id]]
    assert [d["status"] for d in reply.json["results"]] == [UP, UP]
    detail = harness.call("GET", f"{BASE}{devices[2].id}/?update_status=true", token=token)
    assert asked[-1] == [devices[2].id]
    assert detail.json["status"] == UP
    plain = harness.call("GET", f"{BASE}{devices[2].id}/", token=token)
    assert len(asked) == 2 and plain.status == 200


# --- DELETE -------------------------------------------------------------------------------------


def test_delete_removes_device_tasks_and_history_and_keeps_an_audit_entry(
    harness: ApiHarness,
) -> None:
    device = make(harness, "A")
    harness.store.queue_task(device.id, "reboot", {}, now=T0, actor="t")
    token = harness.token("admin", name="ops-admin")
    reply = harness.call("DELETE", f"{BASE}{device.id}/", token=token)
    assert reply.status == 204
    assert harness.store.get_device(device.id) is None
    assert harness.store.tasks_for_device(device.id) == []
    assert harness.store.history(device.id) == []
    audit = harness.store.history(None)[0]
    assert (audit.action, audit.actor, audit.detail["serial_number"]) == (
        "device_deleted",
        "ops-admin",
        "A",
    )
    assert harness.call("GET", f"{BASE}{device.id}/", token=token).status == 404


def test_delete_is_409_during_a_session_unless_forced(
    harness: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = make(harness, "A")
    monkeypatch.setattr(harness.appliance.cwmp, "in_session", lambda i: i == device.id)
    token = harness.token("admin")
    reply = harness.call("DELETE", f"{BASE}{device.id}/", token=token)
    assert reply.status == 409 and "detail" in reply.json
    assert harness.store.get_device(device.id) is not None
    assert harness.call("DELETE", f"{BASE}{device.id}/?force=true", token=token).status == 204


def test_delete_is_409_while_a_firmware_transfer_is_in_flight(harness: ApiHarness) -> None:
    device = make(harness, "A")
    task = harness.store.queue_task(device.id, "firmware_update", {}, now=T0, actor="t")
    token = harness.token("admin")
    pending = harness.call("DELETE", f"{BASE}{device.id}/?force=maybe", token=token)
    assert pending.status == 400
    harness.store.start_task(task.id, now=T0)
    assert harness.call("DELETE", f"{BASE}{device.id}/", token=token).status == 409
    assert harness.call("DELETE", f"{BASE}{device.id}/?force=true", token=token).status == 204


def test_description_may_span_lines_but_names_take_no_control_characters(
    harness: ApiHarness,
) -> None:
    device = make(harness, "A")
    token = harness.token("operator")
    path = f"{BASE}{device.id}/"
    ok = harness.call("PATCH", path, token=token, json_body={"description": "line 1\nline 2"})
    assert ok.status == 200 and ok.json["description"] == "line 1\nline 2"
    for body in ({"name": "bad\nname"}, {"description": "bell\x07"}):
        reply = harness.call("PATCH", path, token=token, json_body=body)
        assert reply.status == 400 and set(reply.json) == set(body)


def test_moving_to_another_organization_drops_a_location_that_cannot_follow(
    harness: ApiHarness,
) -> None:
    other = org(harness, "Other")
    admin = harness.token("admin")
    created = harness.call(
        "POST",
        BASE,
        token=admin,
        json_body={"name": "a", "serial_number": "A", "organization_id": 1, "location_name": "HQ"},
    ).json
    moved = harness.call(
        "PATCH", f"{BASE}{created['id']}/", token=admin, json_body={"organization_id": other}
    )
    assert moved.status == 200
    assert (moved.json["organization_id"], moved.json["location"]) == (other, None)
    relocated = harness.call(
        "PATCH",
        f"{BASE}{created['id']}/",
        token=admin,
        json_body={"organization_id": 1, "location_name": "HQ"},
    )
    assert relocated.json["location"] == created["location"]
