"""A hostile API client: numbers past SQLite's integers, Unicode digits, deep JSON, odd
dates. Each answer is a 4xx with a DRF-style message, never a 500, and nothing is stored.

These reproduce what schemathesis found on main (issue 9, defect 4 and 5) in memory, on the
same code path as the real listener.
"""

from __future__ import annotations

from typing import Any, cast

import metricscheck
import pytest
from apiharness import ApiHarness
from twisted.internet.address import IPv6Address

from acs.authguard import AuthThrottle
from acs.config import ConfigError, parse_config
from api.base import ApiRequest

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


@pytest.mark.parametrize(
    "path", ["/organization/", "/location/", "/device_type/"], ids=lambda p: p.strip("/")
)
@pytest.mark.parametrize("name", ["East\nforged", "East\x1b[31m", "East\u202e", "East\u200b"])
def test_control_characters_in_names_are_400(
    harness: ApiHarness, admin: str, path: str, name: str
) -> None:
    reply = harness.call("POST", V1 + path, token=admin, json_body={"name": name})
    assert_clean_4xx(reply, 400)
    assert reply.json == {"name": ["Control characters are not allowed."]}


def test_pagination_links_never_come_from_the_host_header(harness: ApiHarness, admin: str) -> None:
    for name in ("A", "B", "C"):
        harness.store.ensure_organization(name)
    reply = harness.call(
        "GET", f"{V1}/organization/?limit=1", token=admin, headers={"Host": "evil.example"}
    )
    assert reply.json["next"].startswith("http://testserver/api/v1/organization/?")
    assert "evil" not in reply.raw.decode()


def test_without_a_public_url_links_use_the_address_the_connection_reached() -> None:
    class _Raw:
        def isSecure(self) -> bool:
            return False

        def getHeader(self, name: bytes) -> bytes:
            return b"evil.example"

        def getHost(self) -> Any:
            return IPv6Address("TCP", "::1", 7557)

    req = ApiRequest(cast(Any, _Raw()), None)
    assert req.base_url() == "http://[::1]:7557"
    assert ApiRequest(cast(Any, _Raw()), None, public_url="https://acs/").base_url() == (
        "https://acs"
    )


def test_the_api_public_url_must_be_http_when_set() -> None:
    assert parse_config({"api": {"public_url": ""}}).api.public_url == ""
    with pytest.raises(ConfigError, match="public_url"):
        parse_config({"api": {"public_url": "ftp://x"}})


def test_guessing_tokens_is_throttled_per_address_and_counted(
    harness: ApiHarness, admin: str
) -> None:
    throttle = harness.appliance.api_auth_throttle
    guesses = [harness.call("GET", f"{V1}/organization/", token="guess").status for _ in range(9)]
    # A few mistakes cost nothing; then each one blocks the address, doubling.
    assert guesses[: throttle.free + 1] == [401] * (throttle.free + 1)
    assert set(guesses[throttle.free + 1 :]) == {429}
    blocked = harness.call("GET", f"{V1}/organization/", token=admin)
    assert_clean_4xx(blocked, 429)
    assert blocked.header("Retry-After") == "1"
    assert blocked.json["detail"].startswith("Request was throttled.")
    harness.clock.advance(1)
    assert harness.call("GET", f"{V1}/organization/", token=admin).status == 200
    # A success forgets the address's record: the next mistake is a free one again.
    assert harness.call("GET", f"{V1}/organization/", token="guess").status == 401
    metrics = harness.call("GET", "/metrics", token=admin).raw.decode()
    assert metricscheck.types(metrics)["acs_api_auth_failures"] == "counter"
    assert metricscheck.value(metrics, "acs_api_auth_failures_total") == throttle.free + 2
    assert metricscheck.value(metrics, "acs_api_auth_throttled_total") == 4
    assert metricscheck.value(metrics, "acs_cwmp_auth_failures_total") == 0
    assert metricscheck.value(metrics, "acs_cwmp_busy_rejections_total") == 0
    assert metricscheck.value(metrics, "acs_cwmp_idle_evictions_total") == 0


def test_failures_are_logged_once_then_summed_up(harness: ApiHarness) -> None:
    lines: list[str] = []
    throttle = AuthThrottle("API", lines.append, free=100, window=60.0)
    for i in range(50):
        throttle.failed(f"127.0.0.{i % 3}", 1000.0 + i, "bad token")
    assert lines == ["API: authentication failed: bad token (further failures summed)"]
    throttle.failed("127.0.0.9", 1061.0, "bad token")
    assert len(lines) == 3
    assert lines[1].startswith("API: 50 authentication failures from 3 source(s) in 61s (most: ")
    assert lines[2].startswith("API: authentication failed")


def test_throttle_memory_is_bounded_whatever_the_sources() -> None:
    throttle = AuthThrottle("API", lambda _: None, capacity=100)
    for i in range(5000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 1.0, "x")
    assert len(throttle._sources) == 100
    assert len(throttle._window_sources) <= 1000


# --- what `make fuzz` (schemathesis against the live OpenAPI document) found ---------------

BOUNDARY = "fuzzboundary"


def _multipart(fields: dict[str, str], file: bytes = b"image") -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="fw.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + file
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.mark.parametrize("name", ["fw\x1b[31m", "fw\u202e", "fw\u200b", "fw\u2028"])
def test_control_characters_in_firmware_names_are_400(
    harness: ApiHarness, admin: str, name: str
) -> None:
    data, headers = _multipart({"name": name, "version": "1.0"})
    reply = harness.call("POST", f"{V1}/firmware_image/", token=admin, data=data, headers=headers)
    assert_clean_4xx(reply, 400)
    assert reply.json == {"name": ["Control characters are not allowed."]}
    assert harness.store.firmware_images_page(limit=10, offset=0)[0] == 0


def test_a_multipart_upload_takes_its_fields_from_the_form_never_the_query(
    harness: ApiHarness, admin: str
) -> None:
    # The form lacks `version`; the query's used to fill it in.
    data, headers = _multipart({"name": "fw"})
    reply = harness.call(
        "POST", f"{V1}/firmware_image/?version=1.0", token=admin, data=data, headers=headers
    )
    assert_clean_4xx(reply, 400)
    assert reply.json == {"version": ["Send this as a form field of the multipart body."]}
    data, headers = _multipart({"name": "fw"})
    reply = harness.call("POST", f"{V1}/firmware_image/", token=admin, data=data, headers=headers)
    assert_clean_4xx(reply, 400)
    assert reply.json == {"version": ["This field is required."]}
    assert harness.store.firmware_images_page(limit=10, offset=0)[0] == 0


def test_control_characters_in_a_device_name_are_422_on_the_serial_operation_endpoint(
    harness: ApiHarness, admin: str
) -> None:
    org = harness.store.ensure_organization("Default")
    harness.store.create_device(
        serial_number="OP-1", name="clean", organization_id=org.id, now=0.0, actor="t"
    )
    reply = harness.call(
        "PUT",
        f"{V1}/inventory_device_serial_operation/OP-1/",
        token=admin,
        json_body={"name": "evil\u202eexe.txt"},
    )
    assert_clean_4xx(reply, 422)
    assert reply.json == {"name": ["Control characters are not allowed."]}
    device = harness.store.get_device_by_serial_number("OP-1")
    assert device is not None and device.name == "clean"


@pytest.mark.parametrize("name", ["\ue000 private use", "unassigned \U000e0080", "Zürich 😀"])
def test_private_use_and_unassigned_characters_are_names_like_any_other(
    harness: ApiHarness, admin: str, name: str
) -> None:
    # The OpenAPI document can only promise what a regex class can say: the refused
    # characters are the control, format and separator ones (acs.cwmp.identity.printable).
    reply = harness.call("POST", f"{V1}/organization/", token=admin, json_body={"name": name})
    assert reply.status == 201, reply.json
    assert reply.json["name"] == name


def test_a_malformed_location_id_is_400_even_beside_a_location_name(
    harness: ApiHarness, admin: str
) -> None:
    org = harness.store.ensure_organization("Default")
    body = {
        "serial_number": "LOC-1",
        "name": "l",
        "organization_id": org.id,
        "location_name": "Lab",
        "location": {"id": ""},
    }
    reply = harness.call("POST", f"{V1}/inventory_device/", token=admin, json_body=body)
    assert_clean_4xx(reply, 400)
    assert list(reply.json) == ["location"]
    assert harness.store.count_devices() == 0


@pytest.mark.parametrize("value", ["1e1", " 5", "4_0", "+.5", "5."])
@pytest.mark.parametrize("path", ["/location/", "/inventory_device/"], ids=lambda p: p.strip("/"))
def test_coordinates_are_plain_decimals(
    harness: ApiHarness, admin: str, path: str, value: str
) -> None:
    org = harness.store.ensure_organization("Default")
    body: dict[str, Any] = {"name": "c", "latitude": value, "organization_id": org.id}
    if path == "/inventory_device/":
        body["serial_number"] = "COORD-1"
    reply = harness.call("POST", V1 + path, token=admin, json_body=body)
    assert_clean_4xx(reply, 400)
    assert reply.json == {"latitude": ["A valid number is required."]}


def test_integers_sent_as_integral_json_numbers_are_integers(
    harness: ApiHarness, admin: str
) -> None:
    # JSON has one number type; JSON Schema's integer is any number with a zero fraction.
    reply = harness.call(
        "POST",
        f"{V1}/device_type/",
        token=admin,
        json_body={"name": "t", "update_frequency": 180.0},
    )
    assert reply.status == 201, reply.json
    assert reply.json["update_frequency"] == 180
    org = harness.store.ensure_organization("Default")
    body = {
        "serial_number": "F-1",
        "name": "f",
        "organization_id": float(org.id),
        "type": float(reply.json["id"]),
        "update_frequency": 7450.0,
    }
    reply = harness.call("POST", f"{V1}/inventory_device/", token=admin, json_body=body)
    assert reply.status == 201, reply.json
    assert reply.json["update_frequency"] == 7450
    reply = harness.call(
        "POST",
        f"{V1}/device_type/",
        token=admin,
        json_body={"name": "u", "update_frequency": 180.5},
    )
    assert_clean_4xx(reply, 400)
    assert reply.json == {"update_frequency": ["A valid integer is required."]}


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize(
    "template",
    ["/device_type/{n}/", "/organization/{n}/", "/location/{n}/", "/inventory_device/{n}/"],
)
def test_path_ids_out_of_range_are_404_for_every_method(
    harness: ApiHarness, admin: str, template: str, method: str
) -> None:
    # Not 405: werkzeug noted the other rules' methods before the converter refused the id.
    reply = harness.call(method, V1 + template.format(n=HUGE), token=admin, json_body={})
    assert_clean_4xx(reply, 404)
    reply = harness.call("POST", f"{V1}/inventory_device/{HUGE}/backups/", token=admin)
    assert_clean_4xx(reply, 404)


def test_a_status_change_filter_of_white_space_control_characters_is_400(
    harness: ApiHarness, admin: str
) -> None:
    # str.strip() takes "\x1e" for white space: it must not make the filter absent.
    for value in ("%1E", "%20"):
        reply = harness.call(
            "GET", f"{V1}/inventory_device_serial/?last_status_change_from={value}", token=admin
        )
        assert_clean_4xx(reply, 400)


@pytest.mark.parametrize(
    "query",
    ["limit=1&limit=2", "status=x&status=1", "last_status_change_from=x&last_status_change_from="],
)
def test_a_query_parameter_given_twice_is_400(harness: ApiHarness, admin: str, query: str) -> None:
    reply = harness.call("GET", f"{V1}/inventory_device_serial/?{query}", token=admin)
    assert_clean_4xx(reply, 400)
    assert reply.json[query.split("=")[0]] == ["Give this query parameter once."]
