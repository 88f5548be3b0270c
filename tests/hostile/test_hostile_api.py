"""A hostile API client: numbers past SQLite's integers, Unicode digits, deep JSON, odd
dates. Each answer is a 4xx with a DRF-style message, never a 500, and nothing is stored.

These reproduce what schemathesis found on main (issue 9, defect 4 and 5) in memory, on the
same code path as the real listener.
"""

from __future__ import annotations

from typing import Any

import pytest
from apiharness import ApiHarness

HUGE = str(2**63)  # one past SQLite's largest INTEGER
HUGER = "9" * 40
V1 = "/api/v1"


@pytest.fixture
def admin(harness: ApiHarness) -> str:
    return harness.token("admin")


def assert_clean_4xx(reply: Any, *statuses: int) -> None:
    assert reply.status in statuses, (reply.status, reply.raw[:300])
    body = reply.json
    assert isinstance(body, dict) and body, reply.raw[:300]
    for key, value in body.items():
        assert isinstance(key, str)
        assert isinstance(value, str | list), body


@pytest.mark.parametrize("number", [HUGE, HUGER, "٣", "²", "-1"])
@pytest.mark.parametrize(
    "template",
    [
        "/inventory_device/{n}/",
        "/inventory_device/{n}/parameters/",
        "/inventory_device/{n}/tasks/",
        "/inventory_device/1/tasks/{n}/",
        "/inventory_device/{n}/history/",
        "/inventory_device/{n}/settings/",
        "/inventory_device/{n}/backups/",
        "/firmware_image/{n}/",
        "/organization/{n}/",
        "/device_type/{n}/",
        "/location/{n}/",
    ],
)
def test_path_ids_out_of_range_or_not_ascii_are_404(
    harness: ApiHarness, admin: str, template: str, number: str
) -> None:
    reply = harness.call("GET", V1 + template.format(n=number), token=admin)
    assert_clean_4xx(reply, 404)


@pytest.mark.parametrize(
    "query",
    [
        f"offset={HUGE}",
        f"limit={HUGER}",
        f"type={HUGE}",
        f"organization={HUGE}",
        "offset=²",
        "limit=٣",
        "type=²",
        f"organization=-{HUGE}",
    ],
)
@pytest.mark.parametrize(
    "path", ["/inventory_device/", "/inventory_device_serial/", "/location/", "/device_type/"]
)
def test_query_numbers_out_of_range_or_not_ascii_are_400(
    harness: ApiHarness, admin: str, path: str, query: str
) -> None:
    reply = harness.call("GET", f"{V1}{path}?{query}", token=admin)
    if reply.status == 200:
        # A list that ignores the parameter (e.g. ?type= on locations) must still be fine.
        assert query.split("=")[0] not in ("offset", "limit")
        return
    assert_clean_4xx(reply, 400)
    assert query.split("=")[0] in reply.json


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("organization_id", 2**63),
        ("organization_id", "²"),
        ("type", 2**70),
        ("type", "٣"),
        ("location", 2**63),
        ("update_frequency", "²"),
        ("update_frequency", 2**63),
        ("firmware_image", 2**63),
        ("firmware_image", "٣"),
    ],
)
def test_json_numbers_out_of_range_or_not_ascii_are_400(
    harness: ApiHarness, admin: str, field: str, value: Any
) -> None:
    body = {"serial_number": "HOSTILE-1", "name": "h", field: value}
    reply = harness.call("POST", f"{V1}/inventory_device/", token=admin, json_body=body)
    assert_clean_4xx(reply, 400)
    assert field in reply.json
    assert harness.store.count_devices() == 0


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_deeply_nested_json_is_400(harness: ApiHarness, admin: str, depth: int) -> None:
    data = b"[" * depth + b"]" * depth
    reply = harness.call(
        "POST",
        f"{V1}/inventory_device/",
        token=admin,
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert_clean_4xx(reply, 400)


def test_a_date_before_year_1000_is_written_in_rfc_3339(harness: ApiHarness, admin: str) -> None:
    org = harness.store.ensure_organization("Default")
    device = harness.store.create_device(
        serial_number="OLD", name="old", organization_id=org.id, now=-50_000_000_000.0, actor="t"
    )
    body = harness.call("GET", f"{V1}/inventory_device/{device.id}/", token=admin).json
    assert body["created"] == "0385-07-25T07:06:40Z"
