"""Fleet search and tags through the API (api/search.py, api/tags.py), in memory: every list
filter on both device views, alone and combined, within a token's organizations; bad values
and unknown query parameters refused; tags added, removed and set in bulk; the serial
operation endpoint's tags being the same tags.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from apiharness import ApiHarness

from acs.store import Device

V1 = "/api/v1"
SSID = "Device.WiFi.SSID.1.SSID"


@pytest.fixture
def world(harness: ApiHarness) -> dict[str, Any]:
    """Two organizations, four devices with versions, stored SSIDs and tags."""
    store = harness.store
    now = harness.clock.seconds()
    east = store.ensure_organization("East").id
    west = store.ensure_organization("West").id
    devices: dict[str, Device] = {}
    for serial, org, version, product, ssid, tags in (
        ("HG-1", east, "1.0", "HG-181", "home-1", ["vip", "pilot"]),
        ("HG-2", east, "2.0", "HG-181", "home-2", ["pilot"]),
        ("HG-3", west, "1.0", "HG-181", "office", []),
        ("IG-4", west, "1.0", "IGD-98", None, ["pilot"]),
    ):
        device = store.create_device(
            serial_number=serial, name=serial.lower(), organization_id=org, now=now, actor="t"
        )
        store.update_device(
            device.id, now=now, actor="t", software_version=version, product_class=product
        )
        if ssid is not None:
            store.upsert_parameters(device.id, [(SSID, ssid, "xsd:string", True)], now=now)
        store.set_tags(device.id, tags, now=now, actor="t")
        devices[serial] = device
    return {"east": east, "west": west, "devices": devices}


def listed(harness: ApiHarness, query: str, token: str, view: str = "inventory_device") -> Any:
    reply = harness.call("GET", f"{V1}/{view}/?{query}", token=token)
    assert reply.status == 200, reply.json
    return reply.json


def serials(harness: ApiHarness, query: str, token: str) -> list[str]:
    flat = [d["serial_number"] for d in listed(harness, query, token)["results"]]
    nested = listed(harness, query, token, "inventory_device_serial")["results"]
    assert [d["serial_number"] for d in nested] == flat  # both views, same devices
    return flat


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag=pilot", ["HG-1", "HG-2", "IG-4"]),
        ("tag=pilot&tag=vip", ["HG-1"]),
        ("tag=", ["HG-1", "HG-2", "HG-3", "IG-4"]),
        ("software_version=1.0", ["HG-1", "HG-3", "IG-4"]),
        ("product_class=IGD-98", ["IG-4"]),
        ("manufacturer=Acme", []),
        ("hardware_version=", ["HG-1", "HG-2", "HG-3", "IG-4"]),
        ("q=hg-", ["HG-1", "HG-2", "HG-3"]),
        (f"param.{SSID}=home-2", ["HG-2"]),
        (f"param.{SSID}__startswith=home", ["HG-1", "HG-2"]),
        (f"param.{SSID}__startswith=", ["HG-1", "HG-2", "HG-3"]),
        (f"software_version=1.0&tag=pilot&param.{SSID}__startswith=h", ["HG-1"]),
        ("status=0&tag=pilot&product_class=HG-181", ["HG-1", "HG-2"]),
        ("id=2&id=4", ["HG-2", "IG-4"]),
        ("id=4&id=4&id=999", ["IG-4"]),
        ("id=1&id=2&id=3&tag=pilot", ["HG-1", "HG-2"]),
        (f"id=1&id=3&param.{SSID}__startswith=", ["HG-1", "HG-3"]),
        ("id=", ["HG-1", "HG-2", "HG-3", "IG-4"]),
    ],
)
def test_every_filter_on_both_views(
    harness: ApiHarness, world: dict[str, Any], query: str, expected: list[str]
) -> None:
    assert serials(harness, query, harness.token("viewer")) == expected


def test_filters_stay_inside_the_tokens_organizations(
    harness: ApiHarness, world: dict[str, Any]
) -> None:
    east = harness.token("viewer", [world["east"]], name="east")
    assert serials(harness, "tag=pilot", east) == ["HG-1", "HG-2"]
    assert serials(harness, "software_version=1.0", east) == ["HG-1"]
    reply = harness.call("GET", f"{V1}/inventory_device/?organization={world['west']}", token=east)
    assert reply.status == 403
    west_ids = "&".join(f"id={world['devices'][s].id}" for s in ("HG-1", "HG-3", "IG-4"))
    assert serials(harness, west_ids, east) == ["HG-1"]  # a selection cannot reach past it


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("", ["HG-1", "HG-2", "HG-3", "IG-4"]),
        ("-id", ["IG-4", "HG-3", "HG-2", "HG-1"]),
        ("-serial_number", ["IG-4", "HG-3", "HG-2", "HG-1"]),
        ("software_version", ["HG-1", "HG-3", "IG-4", "HG-2"]),  # then by id, the same way
        ("-software_version", ["HG-2", "IG-4", "HG-3", "HG-1"]),
        ("-product_class", ["IG-4", "HG-3", "HG-2", "HG-1"]),
        ("last_connection", ["HG-2", "HG-3", "HG-1", "IG-4"]),  # never in contact: last
        ("-last_connection", ["HG-3", "HG-2", "IG-4", "HG-1"]),
    ],
)
def test_lists_sort_on_the_server_then_by_id(
    harness: ApiHarness, world: dict[str, Any], ordering: str, expected: list[str]
) -> None:
    store, now = harness.store, harness.clock.seconds()
    for serial, seen in (("HG-2", now - 60), ("HG-3", now - 30)):
        store.update_device(world["devices"][serial].id, now=now, actor="t", last_contact=seen)
    assert serials(harness, f"ordering={ordering}", harness.token("viewer")) == expected
    with_filter = serials(harness, f"ordering={ordering}&tag=pilot", harness.token("viewer"))
    assert with_filter == [s for s in expected if s != "HG-3"]  # the search path sorts too
    page = listed(harness, f"ordering={ordering}&limit=2&offset=1", harness.token("viewer"))
    assert [d["serial_number"] for d in page["results"]] == expected[1:3]
    assert page["count"] == 4 and f"ordering={ordering}" in page["next"]


def test_the_next_page_keeps_every_tag(harness: ApiHarness, world: dict[str, Any]) -> None:
    page = listed(harness, "tag=pilot&tag=vip&limit=1&q=h", harness.token("viewer"))
    assert page["count"] == 1 and page["next"] is None
    page = listed(harness, "tag=pilot&limit=1", harness.token("viewer"))
    assert page["count"] == 3
    assert "tag=pilot" in page["next"] and "offset=1" in page["next"]
    both = listed(harness, "tag=pilot&tag=vip&limit=1", harness.token("viewer"))
    assert both["next"] is None  # one match
    many = listed(harness, "tag=pilot&tag=pilot&limit=1", harness.token("viewer"))
    assert many["next"].count("tag=pilot") == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tagz=1", "tagz"),
        ("page=2", "page"),
        ("tag=%20vip", "tag"),
        ("tag=" + "x" * 65, "tag"),
        ("q=" + "x" * 257, "q"),
        ("q=a%00b", "q"),
        ("software_version=1&software_version=2", "software_version"),
        ("param.Device.X.Password=secret", "param.Device.X.Password"),
        ("param.Device.=x", "param.Device."),
        ("param.Other.X=1", "param.Other.X"),
        ("param.Device.A=1&param.Device.A=2", "param.Device.A"),
        (f"param.{SSID}=" + quote("\u202e"), f"param.{SSID}"),
        ("&".join(f"param.Device.P{i}=1" for i in range(9)), "param"),
        ("&".join("tag=t" for _ in range(17)), "tag"),
        ("id=0", "id"),
        ("id=x", "id"),
        ("id=9223372036854775808", "id"),
        ("&".join(f"id={i}" for i in range(1, 502)), "id"),
        ("ordering=password", "ordering"),
        ("ordering=--id", "ordering"),
        ("ordering=id&ordering=name", "ordering"),
    ],
)
def test_bad_filters_and_unknown_parameters_are_a_400_naming_them(
    harness: ApiHarness, world: dict[str, Any], query: str, field: str
) -> None:
    for view in ("inventory_device", "inventory_device_serial"):
        reply = harness.call("GET", f"{V1}/{view}/?{query}", token=harness.token("viewer"))
        assert reply.status == 400, reply.json
        assert list(reply.json) == [field]


def test_devices_show_their_tags(harness: ApiHarness, world: dict[str, Any]) -> None:
    token = harness.token("viewer")
    device = world["devices"]["HG-1"]
    flat = harness.call("GET", f"{V1}/inventory_device/{device.id}/", token=token).json
    nested = harness.call("GET", f"{V1}/inventory_device_serial/HG-1/", token=token).json
    assert flat["tags"] == nested["tags"] == ["vip", "pilot"]


def test_tags_are_added_and_removed_on_one_device(
    harness: ApiHarness, world: dict[str, Any]
) -> None:
    token = harness.token("operator")
    device = world["devices"]["HG-3"]
    base = f"{V1}/inventory_device/{device.id}/tags/"
    reply = harness.call("POST", base, token=token, json_body={"tags": ["night", "east"]})
    assert (reply.status, reply.json) == (200, {"tags": ["night", "east"]})
    reply = harness.call("POST", base, token=token, json_body={"tags": ["east", "b"]})
    assert reply.json == {"tags": ["night", "east", "b"]}
    assert harness.call("DELETE", f"{base}east/", token=token).status == 204
    assert harness.call("DELETE", f"{base}east/", token=token).status == 404
    assert harness.store.device_tags(device.id) == ["night", "b"]
    for body in ({"tags": [" x"]}, {"tags": "x"}, {}, {"tags": ["x"], "other": 1}):
        assert harness.call("POST", base, token=token, json_body=body).status == 400
    viewer = harness.token("viewer")
    assert harness.call("POST", base, token=viewer, json_body={"tags": ["x"]}).status == 403
    west = harness.token("operator", [world["east"]], name="east-op")
    assert harness.call("POST", base, token=west, json_body={"tags": ["x"]}).status == 403
    full = {"tags": [f"t{i}" for i in range(100)]}
    assert harness.call("POST", base, token=token, json_body=full).status == 409
    assert harness.store.device_tags(device.id) == ["night", "b"]


def test_bulk_tags_follow_the_filter_and_the_scope(
    harness: ApiHarness, world: dict[str, Any]
) -> None:
    east = harness.token("operator", [world["east"]], name="east-op")
    body = {"tags": ["campaign-7"], "filter": {"software_version": "1.0"}}
    reply = harness.call("POST", f"{V1}/tags/", token=east, json_body=body)
    assert (reply.status, reply.json) == (200, {"matched": 1, "changed": 1, "at_limit": 0})
    admin = harness.token("admin")
    assert serials(harness, "tag=campaign-7", admin) == ["HG-1"]
    body = {"tags": ["campaign-7"], "filter": {"tag": ["pilot"], f"param.{SSID}__startswith": ""}}
    reply = harness.call("POST", f"{V1}/tags/", token=admin, json_body=body)
    assert reply.json == {"matched": 2, "changed": 1, "at_limit": 0}
    by_float = {"tags": ["x"], "filter": {"organization": float(world["east"])}}
    assert harness.call("POST", f"{V1}/tags/", token=admin, json_body=by_float).json["matched"] == 2
    picked = [world["devices"][s].id for s in ("HG-2", "HG-3")]
    by_ids = {"tags": ["picked"], "filter": {"id": [float(picked[0]), picked[1]]}}
    assert harness.call("POST", f"{V1}/tags/", token=east, json_body=by_ids).json["matched"] == 1
    assert serials(harness, "tag=picked", admin) == ["HG-2"]
    body = {"tags": ["campaign-7"], "filter": {}, "remove": True}
    reply = harness.call("POST", f"{V1}/tags/", token=east, json_body=body)
    assert reply.json == {"matched": 2, "changed": 2, "at_limit": 0}
    assert serials(harness, "tag=campaign-7", admin) == []
    reply = harness.call(
        "POST",
        f"{V1}/tags/",
        token=east,
        json_body={"tags": ["x"], "filter": {"organization": world["west"]}},
    )
    assert reply.status == 403


@pytest.mark.parametrize(
    "body",
    [
        {"tags": ["x"]},
        {"tags": ["x"], "remove": "yes", "filter": {}},
        {"filter": {}},
        {"tags": ["x"], "filter": {"nope": 1}},
        {"tags": ["x"], "filter": {"type": "1"}},
        {"tags": ["x"], "filter": {"tag": "pilot"}},
        {"tags": ["x"], "filter": {"status": 1}},
        {"tags": ["x"], "filter": {"last_status_change_from": "yesterday"}},
        {"tags": ["x"], "filter": {"last_status_change_from": ""}},
        {"tags": ["x"], "filter": {"q": "\ud800"}},
        {"tags": ["\udfff"], "filter": {}},
        {"tags": ["x"], "filter": {"param.Device.X.WEPKey": "k"}},
        {"tags": ["x"], "filter": []},
        {"tags": ["x"], "filter": {"id": []}},
        {"tags": ["x"], "filter": {"id": 3}},
        {"tags": ["x"], "filter": {"id": [0]}},
        {"tags": ["x"], "filter": {"id": ["3"]}},
        {"tags": ["x"], "filter": {"id": [True]}},
        {"tags": ["x"], "filter": {"id": list(range(1, 502))}},
    ],
)
def test_a_bad_bulk_body_is_a_400_and_tags_nothing(
    harness: ApiHarness, world: dict[str, Any], body: dict[str, Any]
) -> None:
    reply = harness.call("POST", f"{V1}/tags/", token=harness.token("operator"), json_body=body)
    assert reply.status == 400, reply.json
    assert harness.store.device_tags(world["devices"]["HG-3"].id) == []


def test_the_serial_operation_endpoint_edits_the_same_tags(
    harness: ApiHarness, world: dict[str, Any]
) -> None:
    token = harness.token("operator")
    url = f"{V1}/inventory_device_serial_operation/HG-3/"
    reply = harness.call("PUT", url, token=token, json_body={"tags": ["b", "a"]})
    assert (reply.status, reply.json["tags"]) == (200, ["b", "a"])
    assert serials(harness, "tag=a", token) == ["HG-3"]
    reply = harness.call("PUT", url, token=token, json_body={"tags": ["bad\n"]})
    assert reply.status == 422 and list(reply.json) == ["tags"]
    reply = harness.call("PUT", url, token=token, json_body={"tags": []})
    assert reply.json["tags"] == [] and harness.store.device_tags(world["devices"]["HG-3"].id) == []
