"""The supporting REST resources: organizations, device types and locations (spec section 7).

Driven through the in-memory harness (real Appliance, Clock time at T0, StubTreq).
"""

from __future__ import annotations

from typing import Any

from apiharness import T0, ApiHarness
from treq.testing import StubTreq

from acs.cwmp import rpc, soap
from acs.store.models import Device

ORG = "/api/v1/organization/"
TYPE = "/api/v1/device_type/"
LOC = "/api/v1/location/"


def device(h: ApiHarness, serial: str, org_id: int = 1, **fields: Any) -> Device:
    return h.store.create_device(
        serial_number=serial, name=serial, organization_id=org_id, now=T0, actor="test", **fields
    )


def org(h: ApiHarness, name: str) -> int:
    return h.store.ensure_organization(name).id


def global_log(h: ApiHarness) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in h.store.history(None)]


# --- organizations ----------------------------------------------------------------------------


def test_organization_list_is_paginated_in_id_order(harness: ApiHarness) -> None:
    for i in range(4):
        org(harness, f"Org {i}")  # plus "Default" = 5
    viewer = harness.token("viewer")
    first = harness.call("GET", ORG + "?limit=2", token=viewer)
    assert first.status == 200
    body = first.json
    assert body["count"] == 5
    assert [o["name"] for o in body["results"]] == ["Default", "Org 0"]
    assert body["previous"] is None
    assert body["next"] == "http://testserver/api/v1/organization/?limit=2&offset=2"
    last = harness.call("GET", ORG + "?limit=2&offset=4", token=viewer).json
    assert [o["name"] for o in last["results"]] == ["Org 3"]
    assert last["next"] is None
    assert harness.call("GET", ORG + "?limit=x", token=viewer).status == 400
    assert harness.call("GET", ORG + "?offset=-1", token=viewer).status == 400


def test_admin_creates_organization_and_it_is_audited(harness: ApiHarness) -> None:
    admin = harness.token("admin", name="alice")
    reply = harness.call("POST", ORG, token=admin, json_body={"name": "ACME", "code": "AC"})
    assert reply.status == 201
    assert reply.json == {"id": reply.json["id"], "name": "ACME", "code": "AC"}
    assert harness.call("GET", f"{ORG}{reply.json['id']}/", token=admin).json["name"] == "ACME"
    assert ("organization_created", "alice") in global_log(harness)


def test_duplicate_organization_name_is_409_on_create_and_rename(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    other = org(harness, "Other")
    assert harness.call("POST", ORG, token=admin, json_body={"name": "Default"}).status == 409
    rename = harness.call("PATCH", f"{ORG}{other}/", token=admin, json_body={"name": "Default"})
    assert rename.status == 409
    assert "detail" in rename.json
    assert harness.store.get_organization(other).name == "Other"  # type: ignore[union-attr]


def test_put_resets_omitted_code_while_patch_keeps_it(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    created = harness.call("POST", ORG, token=admin, json_body={"name": "A", "code": "x"}).json
    url = f"{ORG}{created['id']}/"
    patched = harness.call("PATCH", url, token=admin, json_body={"name": "B"})
    assert patched.json == {"id": created["id"], "name": "B", "code": "x"}
    put = harness.call("PUT", url, token=admin, json_body={"name": "C"})
    assert put.json == {"id": created["id"], "name": "C", "code": None}
    assert harness.call("PUT", url, token=admin, json_body={"code": "y"}).json == {
        "name": ["This field is required."]
    }


def test_organization_write_body_is_validated(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    cases: list[tuple[Any, dict[str, Any]]] = [
        ({"name": ""}, {"name": ["This field may not be blank."]}),
        ({"name": 5}, {"name": ["Not a valid string."]}),
        ({"name": "x", "nmae": "typo"}, {"nmae": ["Unknown field."]}),
        ({"name": "x" * 256}, {"name": ["Ensure this field has no more than 255 characters."]}),
    ]
    for body, expected in cases:
        reply = harness.call("POST", ORG, token=admin, json_body=body)
        assert (reply.status, reply.json) == (400, expected), body
    not_object = harness.call("POST", ORG, token=admin, json_body=["name"])
    assert not_object.status == 400 and "detail" in not_object.json
    broken = harness.call("POST", ORG, token=admin, data=b"{", headers={"Content-Type": "x"})
    assert broken.status == 400
    assert harness.store.count_devices() == 0
    assert harness.store.organizations_page(None)[0] == 1


def test_organization_writes_need_admin_and_reads_need_a_token(harness: ApiHarness) -> None:
    for role in ("viewer", "operator"):
        token = harness.token(role)
        assert harness.call("POST", ORG, token=token, json_body={"name": "N"}).status == 403
        assert harness.call("DELETE", f"{ORG}1/", token=token).status == 403
    anonymous = harness.call("GET", ORG)
    assert anonymous.status == 401
    assert anonymous.header("WWW-Authenticate") == "Bearer"
    assert harness.call("GET", f"{ORG}999/", token=harness.token("viewer")).status == 404


def test_scoped_token_sees_and_manages_only_its_organizations(harness: ApiHarness) -> None:
    mine, theirs = org(harness, "Mine"), org(harness, "Theirs")
    viewer = harness.token("viewer", orgs=[mine])
    listed = harness.call("GET", ORG, token=viewer).json
    assert [o["id"] for o in listed["results"]] == [mine]
    assert listed["count"] == 1
    assert harness.call("GET", f"{ORG}{theirs}/", token=viewer).status == 403
    admin = harness.token("admin", orgs=[mine])
    assert harness.call("POST", ORG, token=admin, json_body={"name": "New"}).status == 403
    assert (
        harness.call("PATCH", f"{ORG}{theirs}/", token=admin, json_body={"code": "z"}).status == 403
    )
    assert (
        harness.call("PATCH", f"{ORG}{mine}/", token=admin, json_body={"code": "z"}).json["code"]
        == "z"
    )


def test_deleting_an_organization_with_devices_is_409(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    busy, empty = org(harness, "Busy"), org(harness, "Empty")
    device(harness, "SN1", busy)
    blocked = harness.call("DELETE", f"{ORG}{busy}/", token=admin)
    assert blocked.status == 409
    assert harness.store.get_organization(busy) is not None
    gone = harness.call("DELETE", f"{ORG}{empty}/", token=admin)
    assert (gone.status, gone.raw) == (204, b"")
    assert harness.call("GET", f"{ORG}{empty}/", token=admin).status == 404
    assert harness.call("DELETE", f"{ORG}{empty}/", token=admin).status == 404


# --- device types ----------------------------------------------------------------------------

ROUTER = {
    "name": "Home Router",
    "short_name": "HR",
    "model": "HR-1",
    "manufacturer": "Acme",
    "product_class": "HomeRouter",
    "default_settings": {
        "Device.ManagementServer.PeriodicInformEnable": True,
        "Device.WiFi.Radio.1.Channel": 6,
        "Device.DeviceInfo.ProvisioningCode": "abc",
    },
    "update_frequency": 600,
}


def test_device_type_crud_with_normalised_default_settings(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    created = harness.call("POST", TYPE, token=admin, json_body=ROUTER)
    assert created.status == 201
    body = created.json
    assert body["default_settings"] == {
        "Device.ManagementServer.PeriodicInformEnable": "true",
        "Device.WiFi.Radio.1.Channel": "6",
        "Device.DeviceInfo.ProvisioningCode": "abc",
    }
    assert {k: body[k] for k in ("name", "short_name", "model", "update_frequency")} == {
        "name": "Home Router",
        "short_name": "HR",
        "model": "HR-1",
        "update_frequency": 600,
    }
    url = f"{TYPE}{body['id']}/"
    viewer = harness.token("viewer", orgs=[1])
    assert harness.call("GET", url, token=viewer).json == body
    assert harness.call("GET", TYPE, token=viewer).json["results"] == [body]
    patched = harness.call("PATCH", url, token=admin, json_body={"model": "HR-2"}).json
    assert patched == {**body, "model": "HR-2"}
    put = harness.call("PUT", url, token=admin, json_body={"name": "Bare"}).json
    assert put == {
        "id": body["id"],
        "name": "Bare",
        "short_name": None,
        "model": None,
        "manufacturer": None,
        "product_class": None,
        "default_settings": {},
        "update_frequency": None,
        "connection_request_order": None,
    }
    assert harness.call("DELETE", url, token=admin).status == 204
    assert harness.call("GET", url, token=admin).status == 404


def test_device_type_connection_request_order(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    body = {"name": "NAT box", "connection_request_order": ["udp", "http"]}
    created = harness.call("POST", TYPE, token=admin, json_body=body)
    assert created.status == 201
    assert created.json["connection_request_order"] == ["udp", "http"]
    url = f"{TYPE}{created.json['id']}/"
    patched = harness.call(
        "PATCH", url, token=admin, json_body={"connection_request_order": ["http"]}
    )
    assert patched.json["connection_request_order"] == ["http"]
    stored = harness.appliance.store.get_device_type(created.json["id"])
    assert stored is not None and stored.connection_request_order == ("http",)
    for bad in ([], ["smtp"], ["udp", "udp"], "udp", [1]):
        reply = harness.call("PATCH", url, token=admin, json_body={"connection_request_order": bad})
        assert reply.status == 400, bad
        assert list(reply.json) == ["connection_request_order"]
    cleared = harness.call("PATCH", url, token=admin, json_body={"connection_request_order": None})
    assert cleared.json["connection_request_order"] is None


def test_device_type_default_settings_need_full_parameter_paths(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    for bad in ("WiFi.Radio.1.Channel", "Device.WiFi.", "Device", "Device..X", "Device.A B"):
        reply = harness.call(
            "POST", TYPE, token=admin, json_body={"name": "T", "default_settings": {bad: "1"}}
        )
        assert reply.status == 400, bad
        assert list(reply.json) == ["default_settings"]
        assert bad in reply.json["default_settings"][0]
    nested = harness.call(
        "POST",
        TYPE,
        token=admin,
        json_body={"name": "T", "default_settings": {"Device.X": {"a": 1}}},
    )
    assert nested.status == 400
    not_object = harness.call(
        "POST", TYPE, token=admin, json_body={"name": "T", "default_settings": ["Device.X"]}
    )
    assert not_object.status == 400
    unsendable = harness.call(
        "POST",
        TYPE,
        token=admin,
        json_body={"name": "T", "default_settings": {"Device.X": "a\u0000"}},
    )
    assert unsendable.status == 400
    assert "U+0000" in unsendable.json["default_settings"][0]
    assert harness.call("GET", TYPE, token=admin).json["count"] == 0


def test_device_type_update_frequency_range_is_enforced(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    for value, message in (
        (29, "Ensure this value is greater than or equal to 30."),
        (86401, "Ensure this value is less than or equal to 86400."),
        (60.5, "A valid integer is required."),
        (True, "A valid integer is required."),
    ):
        reply = harness.call(
            "POST", TYPE, token=admin, json_body={"name": "T", "update_frequency": value}
        )
        assert (reply.status, reply.json) == (400, {"update_frequency": [message]}), value


def test_device_type_delete_while_devices_use_it_is_409(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    type_id = harness.call("POST", TYPE, token=admin, json_body={"name": "T"}).json["id"]
    device(harness, "SN1", type_id=type_id)
    assert harness.call("DELETE", f"{TYPE}{type_id}/", token=admin).status == 409
    assert harness.store.get_device_type(type_id) is not None


def test_two_types_cannot_claim_the_same_manufacturer_and_product_class(
    harness: ApiHarness,
) -> None:
    admin = harness.token("admin")
    assert harness.call("POST", TYPE, token=admin, json_body=ROUTER).status == 201
    assert harness.call("POST", TYPE, token=admin, json_body=ROUTER).status == 409
    other = harness.call(
        "POST", TYPE, token=admin, json_body={"name": "Other", "manufacturer": "Acme"}
    ).json
    clash = harness.call(
        "PATCH", f"{TYPE}{other['id']}/", token=admin, json_body={"product_class": "HomeRouter"}
    )
    assert clash.status == 409
    assert harness.store.get_device_type(other["id"]).product_class is None  # type: ignore[union-attr]


def test_device_type_writes_need_an_unscoped_admin(harness: ApiHarness) -> None:
    for token in (harness.token("operator"), harness.token("admin", orgs=[1])):
        assert harness.call("POST", TYPE, token=token, json_body={"name": "T"}).status == 403
    assert harness.call("GET", TYPE, token=harness.token("admin")).json["count"] == 0


def _inform_body(serial: str) -> bytes:
    inform = rpc.Inform(
        device_id=rpc.DeviceId("Acme", "00AABB", "HomeRouter", serial),
        events=(rpc.EventStruct("0 BOOTSTRAP"),),
        current_time="2024-01-15T09:30:00Z",
        parameters=(rpc.ParameterValue("Device.DeviceInfo.SoftwareVersion", "2.1"),),
    )
    return soap.serialize(soap.Envelope(inform, soap.Header(id="1"), "urn:dslforum-org:cwmp-1-0"))


def test_auto_registered_device_gets_the_type_matching_its_inform(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    type_id = harness.call("POST", TYPE, token=admin, json_body=ROUTER).json["id"]
    harness.call("POST", TYPE, token=admin, json_body={**ROUTER, "product_class": "Other"})
    cwmp: Any = StubTreq(harness.appliance.cwmp)  # Any: treq.testing is untyped
    replies: list[int] = []
    cwmp.post("http://127.0.0.1/", data=_inform_body("NEW-1")).addCallback(
        lambda r: replies.append(r.code)
    )
    cwmp.flush()
    assert replies == [200]
    registered = harness.store.find_device_by_serial("NEW-1")
    assert registered is not None
    assert registered.type_id == type_id


# --- locations -------------------------------------------------------------------------------


def test_location_create_normalises_coordinates_and_links_parent(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    city = harness.call(
        "POST",
        LOC,
        token=admin,
        json_body={
            "name": "Berlin",
            "latitude": 52.52,
            "longitude": "13.405",
        },
    )
    assert city.status == 201
    assert city.json == {
        "id": city.json["id"],
        "name": "Berlin",
        "short_name": None,
        "latitude": "52.52",
        "longitude": "13.405",
        "parent": None,
        "organization_id": None,  # unscoped admin without organization_id: shared
    }
    body = {"name": "DC1", "parent": city.json["id"], "organization_id": 1}
    site = harness.call("POST", LOC, token=admin, json_body=body).json
    assert (site["parent"], site["organization_id"]) == (city.json["id"], 1)
    assert ("location_created", "admin-token") in global_log(harness)


def test_location_coordinates_out_of_range_or_not_numbers_are_400(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    for body, field in (
        ({"latitude": 90.5}, "latitude"),
        ({"latitude": "north"}, "latitude"),
        ({"longitude": -181}, "longitude"),
        ({"longitude": "NaN"}, "longitude"),
        ({"latitude": True}, "latitude"),
    ):
        reply = harness.call("POST", LOC, token=admin, json_body={"name": "X", **body})
        assert reply.status == 400 and list(reply.json) == [field], body
    assert harness.call("GET", LOC, token=admin).json["count"] == 0


def test_location_parent_cycles_and_unknown_parents_are_400(harness: ApiHarness) -> None:
    admin = harness.token("admin")

    def create(name: str, parent: int | None = None) -> int:
        body = {"name": name, "organization_id": 1, "parent": parent}
        return int(harness.call("POST", LOC, token=admin, json_body=body).json["id"])

    a = create("A")
    b = create("B", a)
    c = create("C", b)
    for target, parent in ((a, c), (a, b), (a, a)):
        reply = harness.call("PATCH", f"{LOC}{target}/", token=admin, json_body={"parent": parent})
        assert reply.status == 400 and list(reply.json) == ["parent"], (target, parent)
    assert harness.store.get_location(a).parent_id is None  # type: ignore[union-attr]
    unknown = harness.call("POST", LOC, token=admin, json_body={"name": "D", "parent": 999})
    assert unknown.json == {"parent": ['Invalid pk "999" - object does not exist.']}
    moved = harness.call("PATCH", f"{LOC}{c}/", token=admin, json_body={"parent": a})
    assert moved.status == 200 and moved.json["parent"] == a


def test_location_parent_must_be_in_the_same_organization(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    other = org(harness, "Other")
    theirs = harness.call(
        "POST", LOC, token=admin, json_body={"name": "T", "organization_id": other}
    ).json
    reply = harness.call(
        "POST",
        LOC,
        token=admin,
        json_body={"name": "M", "organization_id": 1, "parent": theirs["id"]},
    )
    assert reply.status == 400 and list(reply.json) == ["parent"]


def test_location_tenancy_follows_the_token_scope(harness: ApiHarness) -> None:
    unscoped = harness.token("admin")
    mine, theirs = org(harness, "Mine"), org(harness, "Theirs")
    shared = harness.call("POST", LOC, token=unscoped, json_body={"name": "Shared"}).json
    foreign = harness.call(
        "POST", LOC, token=unscoped, json_body={"name": "F", "organization_id": theirs}
    ).json
    admin = harness.token("admin", orgs=[mine])
    own = harness.call("POST", LOC, token=admin, json_body={"name": "Own"})
    assert own.status == 201 and own.json["organization_id"] == mine  # the token's only org
    listed = harness.call("GET", LOC, token=admin).json
    assert [loc["name"] for loc in listed["results"]] == ["Shared", "Own"]
    assert harness.call("GET", f"{LOC}{foreign['id']}/", token=admin).status == 403
    assert harness.call("GET", f"{LOC}{shared['id']}/", token=admin).status == 200
    for method, url, body in (
        ("POST", LOC, {"name": "X", "organization_id": theirs}),
        ("POST", LOC, {"name": "X", "organization_id": None}),
        ("PATCH", f"{LOC}{shared['id']}/", {"name": "Mine now"}),
        ("PATCH", f"{LOC}{own.json['id']}/", {"organization_id": theirs}),
        ("DELETE", f"{LOC}{foreign['id']}/", None),
    ):
        assert harness.call(method, url, token=admin, json_body=body).status == 403, (method, url)
    assert harness.store.get_location(own.json["id"]).organization_id == mine  # type: ignore[union-attr]
    assert harness.call("GET", f"{LOC}?organization={theirs}", token=admin).status == 403
    only = harness.call("GET", f"{LOC}?organization={mine}", token=admin).json
    assert [loc["name"] for loc in only["results"]] == ["Own"]
    assert harness.call("GET", f"{LOC}?organization=abc", token=admin).status == 400
    two = harness.token("admin", orgs=[mine, theirs])
    reply = harness.call("POST", LOC, token=two, json_body={"name": "Y"})
    assert reply.json == {"organization_id": ["This field is required."]}


def test_location_delete_is_409_while_used_by_devices_or_children(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    parent = harness.call("POST", LOC, token=admin, json_body={"name": "P", "organization_id": 1})
    child = harness.call(
        "POST",
        LOC,
        token=admin,
        json_body={"name": "C", "organization_id": 1, "parent": parent.json["id"]},
    ).json
    device(harness, "SN1", location_id=child["id"])
    assert harness.call("DELETE", f"{LOC}{parent.json['id']}/", token=admin).status == 409
    assert harness.call("DELETE", f"{LOC}{child['id']}/", token=admin).status == 409
    harness.store.update_device(1, now=T0, actor="test", location_id=None)
    assert harness.call("DELETE", f"{LOC}{child['id']}/", token=admin).status == 204
    assert harness.call("DELETE", f"{LOC}{parent.json['id']}/", token=admin).status == 204
    assert harness.call("GET", LOC, token=admin).json["count"] == 0


def test_location_put_keeps_organization_and_resets_the_rest(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    created = harness.call(
        "POST",
        LOC,
        token=admin,
        json_body={"name": "L", "short_name": "l", "latitude": 1, "organization_id": 1},
    ).json
    put = harness.call("PUT", f"{LOC}{created['id']}/", token=admin, json_body={"name": "M"})
    assert put.json == {**created, "name": "M", "short_name": None, "latitude": None}
