"""A device's sub-resources: parameters, tasks (and cancelling them), history, session
transcripts; and ``/metrics``. Through the in-memory harness (Clock time at T0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import metricscheck
from apiharness import T0, ApiHarness
from treq.testing import StubTreq

from acs.clock import iso
from acs.config import XmppConfig
from acs.cwmp import rpc, soap
from acs.cwmp.redact import REDACTED, is_secret_path, redact_transcript
from acs.store.models import Device

NS = "urn:dslforum-org:cwmp-1-0"


def device(h: ApiHarness, serial: str = "SN1", org_id: int = 1, **fields: Any) -> Device:
    return h.store.create_device(
        serial_number=serial, name=serial, organization_id=org_id, now=T0, actor="test", **fields
    )


def url(device_id: int, child: str) -> str:
    return f"/api/v1/inventory_device/{device_id}/{child}/"


def xml(message: rpc.Message) -> str:
    return soap.serialize(soap.Envelope(message, soap.Header(id="1"), NS)).decode()


# --- tenancy shared by every child endpoint ------------------------------------------------


def test_children_of_unknown_or_foreign_devices_are_404_or_403(harness: ApiHarness) -> None:
    other = harness.store.ensure_organization("Other").id
    foreign = device(harness, "F1", other)
    scoped = harness.token("viewer", orgs=[1])
    for child in ("parameters", "tasks", "history", "sessions", "reachability"):
        assert harness.call("GET", url(999, child), token=scoped).status == 404, child
        assert harness.call("GET", url(foreign.id, child), token=scoped).status == 403, child
        assert harness.call("GET", url(foreign.id, child)).status == 401, child
        unscoped = harness.call("GET", url(foreign.id, child), token=harness.token("viewer"))
        assert unscoped.status == 200, child


# --- parameters -----------------------------------------------------------------------------


def test_parameters_are_paginated_in_path_order_with_prefix_filter(harness: ApiHarness) -> None:
    d = device(harness)
    harness.store.upsert_parameters(
        d.id,
        [
            ("Device.DeviceInfo.SoftwareVersion", "2.1", "xsd:string", False),
            ("Device.DeviceInfo.HardwareVersion", "hw3", "xsd:string", False),
            ("Device.ManagementServer.PeriodicInformInterval", "300", "xsd:unsignedInt", True),
            ("Device.DeviceInfoX.Other", "x", None, None),
        ],
        now=T0,
    )
    token = harness.token("viewer")
    page = harness.call("GET", url(d.id, "parameters") + "?limit=2", token=token).json
    assert page["count"] == 4
    assert page["results"][0] == {
        "path": "Device.DeviceInfo.HardwareVersion",
        "value": "hw3",
        "type": "xsd:string",
        "writable": False,
        "updated": "2024-01-15T09:30:00Z",
    }
    assert page["next"].endswith("?limit=2&offset=2")
    filtered = harness.call(
        "GET", url(d.id, "parameters") + "?path=Device.DeviceInfo.", token=token
    ).json
    assert [p["path"] for p in filtered["results"]] == [
        "Device.DeviceInfo.HardwareVersion",
        "Device.DeviceInfo.SoftwareVersion",
    ]
    assert (
        "path=Device.DeviceInfo."
        in (
            harness.call(
                "GET", url(d.id, "parameters") + "?path=Device.DeviceInfo.&limit=1", token=token
            ).json["next"]
        )
    )


def test_secret_parameter_values_are_never_returned(harness: ApiHarness) -> None:
    d = device(harness)
    secrets = {
        "Device.ManagementServer.ConnectionRequestPassword": "crpass-123",
        "Device.ManagementServer.Password": "acspass-123",
        "Device.WiFi.AccessPoint.1.Security.KeyPassphrase": "wifi-pass-123",
        "Device.WiFi.AccessPoint.1.Security.PreSharedKey": "psk-123",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.WEPKey.1.WEPKey": "wep-123",
        "Device.Users.User.1.password": "user-123",
    }
    harness.store.upsert_parameters(
        d.id,
        [(p, v, "xsd:string", True) for p, v in secrets.items()]
        + [("Device.ManagementServer.Username", "cpe", "xsd:string", True)],
        now=T0,
    )
    reply = harness.call("GET", url(d.id, "parameters"), token=harness.token("admin"))
    values = {p["path"]: p["value"] for p in reply.json["results"]}
    assert values == {**dict.fromkeys(secrets), "Device.ManagementServer.Username": "cpe"}
    for secret in secrets.values():
        assert secret.encode() not in reply.raw


def test_secret_path_detection() -> None:
    assert is_secret_path("Device.ManagementServer.ConnectionRequestPassword")
    assert is_secret_path("X.PreSharedKey.1.KeyPassphrase")
    assert not is_secret_path("Device.WiFi.AccessPoint.1.Security.PreSharedKey.")
    assert not is_secret_path("Device.ManagementServer.PasswordHint.Text")
    assert not is_secret_path("Device.DeviceInfo.SerialNumber")


# --- tasks -----------------------------------------------------------------------------------


def test_tasks_list_in_creation_order_with_state_filter(harness: ApiHarness) -> None:
    d = device(harness)
    first = harness.store.queue_task(d.id, "reboot", {}, now=T0, actor="ops")
    second = harness.store.queue_task(
        d.id, "refresh", {"parameter_path": "Device."}, now=T0, actor="ops", scheduled_at=T0 + 3600
    )
    provision = harness.store.queue_task(d.id, "provision", {}, now=T0, actor="acs", front=True)
    harness.store.start_task(first.id, now=T0 + 1)
    harness.store.fail_task(
        first.id, now=T0 + 2, fault_code=9002, fault_string="Internal", retry_at=None
    )
    token = harness.token("viewer")
    listed = harness.call("GET", url(d.id, "tasks"), token=token).json
    assert [t["id"] for t in listed["results"]] == [first.id, second.id, provision.id]
    assert listed["results"][0] == {
        "id": first.id,
        "kind": "reboot",
        "state": "failed",
        "created": "2024-01-15T09:30:00Z",
        "scheduled_at": None,
        "started": "2024-01-15T09:30:01Z",
        "finished": "2024-01-15T09:30:02Z",
        "fault_code": 9002,
        "fault_string": "Internal",
        "attempts": 1,
        "next_attempt_at": None,
        "actor": "ops",
        "campaign": None,
        "arguments": {},
        "result": None,
    }
    assert listed["results"][1]["scheduled_at"] == "2024-01-15T10:30:00Z"
    assert "args" not in listed["results"][1]
    pending = harness.call("GET", url(d.id, "tasks") + "?state=pending", token=token).json
    assert [t["id"] for t in pending["results"]] == [second.id, provision.id]
    both = harness.call("GET", url(d.id, "tasks") + "?state=failed,pending&limit=1", token=token)
    assert both.json["count"] == 3
    bad = harness.call("GET", url(d.id, "tasks") + "?state=running", token=token)
    assert bad.status == 400 and list(bad.json) == ["state"]
    detail = harness.call("GET", url(d.id, "tasks") + f"{second.id}/", token=token)
    assert detail.json["kind"] == "refresh"


def test_operator_cancels_a_pending_task_and_history_records_it(harness: ApiHarness) -> None:
    d = device(harness)
    task = harness.store.queue_task(d.id, "reboot", {}, now=T0, actor="ops")
    harness.clock.advance(5)
    operator = harness.token("operator", name="olga")
    reply = harness.call("DELETE", url(d.id, "tasks") + f"{task.id}/", token=operator)
    assert (reply.status, reply.raw) == (204, b"")
    cancelled = harness.store.get_task(task.id)
    assert cancelled is not None
    assert (cancelled.state, cancelled.finished) == ("cancelled", T0 + 5)
    entry = harness.store.history(d.id)[0]
    assert (entry.action, entry.actor, entry.time) == ("task_cancelled", "olga", T0 + 5)
    assert harness.store.next_task(d.id, now=T0 + 10) is None
    again = harness.call("DELETE", url(d.id, "tasks") + f"{task.id}/", token=operator)
    assert again.status == 409 and "cancelled" in again.json["detail"]


def test_cancelling_the_firmware_task_clears_firmware_image_is_pending(
    harness: ApiHarness,
) -> None:
    d = device(harness, firmware_image_is_pending=True)
    reboot = harness.store.queue_task(d.id, "reboot", {}, now=T0, actor="ops")
    firmware = harness.store.queue_task(d.id, "firmware_update", {}, now=T0, actor="ops")
    operator = harness.token("operator")
    harness.call("DELETE", url(d.id, "tasks") + f"{reboot.id}/", token=operator)
    assert harness.store.get_device(d.id).firmware_image_is_pending  # type: ignore[union-attr]
    reply = harness.call("DELETE", url(d.id, "tasks") + f"{firmware.id}/", token=operator)
    assert reply.status == 204
    assert not harness.store.get_device(d.id).firmware_image_is_pending  # type: ignore[union-attr]


def test_cancelling_a_started_task_is_409_and_changes_nothing(harness: ApiHarness) -> None:
    d = device(harness)
    task = harness.store.queue_task(d.id, "reboot", {}, now=T0, actor="ops")
    harness.store.start_task(task.id, now=T0)
    reply = harness.call("DELETE", url(d.id, "tasks") + f"{task.id}/", token=harness.token("admin"))
    assert reply.status == 409
    assert harness.store.get_task(task.id).state == "in_progress"  # type: ignore[union-attr]


def test_cancel_needs_operator_and_a_task_of_this_device(harness: ApiHarness) -> None:
    d, other = device(harness, "SN1"), device(harness, "SN2")
    task = harness.store.queue_task(other.id, "reboot", {}, now=T0, actor="ops")
    operator = harness.token("operator")
    assert harness.call("DELETE", url(d.id, "tasks") + f"{task.id}/", token=operator).status == 404
    assert harness.call("DELETE", url(d.id, "tasks") + "999/", token=operator).status == 404
    viewer = harness.token("viewer")
    assert (
        harness.call("DELETE", url(other.id, "tasks") + f"{task.id}/", token=viewer).status == 403
    )
    assert harness.store.get_task(task.id).state == "pending"  # type: ignore[union-attr]


# --- reachability ----------------------------------------------------------------------------


def test_reachability_says_how_a_connection_request_would_go(harness: ApiHarness) -> None:
    d = device(harness, connection_request_url="http://10.1.2.3:7547/cr", address="10.1.2.3")
    reach = harness.call("GET", url(d.id, "reachability"), token=harness.token("viewer"))
    assert reach.status == 200, reach.json
    assert reach.json == {
        "methods": [{"via": "http", "target": "http://10.1.2.3:7547/cr"}],
        "stun_binding": None,
    }
    # Behind NAT by its own word, with a fresh binding: UDP first, to the binding.
    harness.store.set_stun_credentials(d.id, "stun-1", "pw")
    harness.store.record_stun_binding(d.id, "203.0.113.9", 40000, now=T0)
    harness.store.upsert_parameters(
        d.id, [("Device.ManagementServer.NATDetected", "true", "xsd:boolean", False)], now=T0
    )
    harness.store.update_device(d.id, now=T0, actor="t", data_model_root="Device.")
    body = harness.call("GET", url(d.id, "reachability"), token=harness.token("viewer")).json
    assert body["methods"] == [
        {"via": "udp", "target": "203.0.113.9:40000"},
        {"via": "http", "target": "http://10.1.2.3:7547/cr"},
    ]
    stun = body["stun_binding"]
    assert (stun["address"], stun["port"], stun["seen"]) == ("203.0.113.9", 40000, iso(T0))
    assert "password" not in stun and "username" not in stun
    # The device type's order rules.
    kind = harness.store.create_device_type(
        name="t", connection_request_order=["http"], now=T0, actor="t"
    )
    harness.store.update_device(d.id, now=T0, actor="t", type_id=kind.id)
    body = harness.call("GET", url(d.id, "reachability"), token=harness.token("viewer")).json
    assert [m["via"] for m in body["methods"]] == ["http"]


def test_reachability_puts_xmpp_first_for_a_device_with_a_jid(tmp_path: Path) -> None:
    xmpp = XmppConfig(server="xmpp.example.net", jid="acs@xmpp.example.net", password="pw")
    h = ApiHarness(tmp_path, xmpp=xmpp)
    d = device(h, data_model_root="Device.")
    h.store.upsert_parameters(
        d.id,
        [("Device.ManagementServer.ConnReqJabberID", "cpe@xmpp.example.net/cwmp", None, None)],
        now=T0,
    )
    body = h.call("GET", url(d.id, "reachability"), token=h.token("viewer")).json
    assert body["methods"] == [{"via": "xmpp", "target": "cpe@xmpp.example.net/cwmp"}]


# --- history ---------------------------------------------------------------------------------


def test_history_is_newest_first_and_paginated(harness: ApiHarness) -> None:
    d = device(harness)  # "created" at T0 by "test"
    for i in range(3):
        harness.store.add_history(d.id, "note", {"n": i}, now=T0 + 60 * (i + 1), actor="bob")
    token = harness.token("viewer")
    page = harness.call("GET", url(d.id, "history") + "?limit=2", token=token).json
    assert page["count"] == 4
    assert [e["detail"] for e in page["results"]] == [{"n": 2}, {"n": 1}]
    assert page["results"][0]["time"] == "2024-01-15T09:33:00Z"
    assert page["results"][0]["actor"] == "bob"
    assert set(page["results"][0]) == {"id", "time", "actor", "action", "detail"}
    rest = harness.call("GET", page["next"], token=token).json
    assert [e["action"] for e in rest["results"]] == ["note", "created"]
    assert rest["next"] is None


# --- session transcripts ---------------------------------------------------------------------


def test_session_transcripts_are_newest_first_with_credentials_redacted(
    harness: ApiHarness,
) -> None:
    d = device(harness, debug=True)
    provisioning = xml(
        rpc.SetParameterValues(
            parameters=(
                rpc.ParameterValue(
                    "Device.ManagementServer.ConnectionRequestUsername", "cr-user", "xsd:string"
                ),
                rpc.ParameterValue(
                    "Device.ManagementServer.ConnectionRequestPassword", "s3cret-cr", "xsd:string"
                ),
            ),
            parameter_key="k1",
        )
    )
    harness.store.add_session_transcript(d.id, f"--- acs\n{provisioning}", started=T0)
    harness.store.add_session_transcript(d.id, "--- cpe\n<second/>", started=T0 + 60)
    reply = harness.call("GET", url(d.id, "sessions"), token=harness.token("viewer"))
    results = reply.json["results"]
    assert [s["started"] for s in results] == ["2024-01-15T09:31:00Z", "2024-01-15T09:30:00Z"]
    text = results[1]["transcript"]
    assert b"s3cret-cr" not in reply.raw
    assert REDACTED in text
    assert "cr-user" in text and "ConnectionRequestPassword" in text


def test_redaction_covers_prefixes_reverse_order_cdata_and_password_elements() -> None:
    text = (
        "<cwmp:Name>Device.X.KeyPassphrase</cwmp:Name>\n  <cwmp:Value>p1</cwmp:Value>"
        "<Value xsi:type='xsd:string'>p2</Value><Name>Device.Y.PreSharedKey</Name>"
        "<Name>Device.Z.Password</Name><Value><![CDATA[p<3]]></Value>"
        "<Name>Device.Z.Empty.Password</Name><Value/>"
        "<Username>fw</Username><Password>p4</Password>"
        "<Name>Device.DeviceInfo.SerialNumber</Name><Value>SN1</Value>"
    )
    redacted = redact_transcript(text)
    for secret in ("p1", "p2", "p<3", "p4"):
        assert secret not in redacted, secret
    assert "SN1" in redacted and "<Username>fw</Username>" in redacted
    assert redacted.count(REDACTED) == 4
    assert "<Name>Device.Z.Empty.Password</Name><Value/>" in redacted


def test_redacting_a_large_transcript_is_fast() -> None:
    values = "".join(
        f"<ParameterValueStruct><Name>Device.P.{i}.Value</Name><Value>v{i}</Value>"
        "</ParameterValueStruct>"
        for i in range(20000)
    )
    # Quadratic scanning would take minutes here; linear takes milliseconds.
    assert redact_transcript(values) == values


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_report_devices_tasks_sessions_and_tokens(harness: ApiHarness) -> None:
    up, down = device(harness, "SN1"), device(harness, "SN2")
    device(harness, "SN3")
    harness.store.set_status(up.id, "Up", now=T0)
    harness.store.queue_task(down.id, "reboot", {}, now=T0, actor="ops")
    done = harness.store.queue_task(down.id, "refresh", {}, now=T0, actor="ops")
    harness.store.complete_task(done.id, now=T0)
    token = harness.token("viewer")
    revoked, _ = harness.store.create_token("old", "viewer", [], now=T0)
    harness.store.revoke_token(revoked.id)
    reply = harness.call("GET", "/metrics", token=token)
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    text = reply.raw.decode()
    assert metricscheck.types(text)["acs_devices"] == "gauge"
    assert metricscheck.types(text)["acs_storage_writes_refused"] == "counter"
    for name, labels, expected in (
        ("acs_devices", {}, 3),
        ("acs_devices_by_status", {"status": "up"}, 1),
        ("acs_devices_by_status", {"status": "down"}, 2),
        ("acs_tasks", {"state": "pending"}, 1),
        ("acs_tasks", {"state": "done"}, 1),
        ("acs_tasks", {"state": "cancelled"}, 0),
        ("acs_cwmp_sessions_active", {}, 0),
        ("acs_api_tokens", {}, 1),
        ("acs_storage_writes_refused_total", {"storage": "database"}, 0),
        ("acs_storage_writes_refused_total", {"storage": "files"}, 0),
        ("acs_tasks_finished_total", {"kind": "refresh", "state": "done"}, 1),
    ):
        assert metricscheck.value(text, name, **labels) == expected, (name, labels)

    # A CPE mid-session (Inform answered, session open) is an active session.
    inform = rpc.Inform(
        device_id=rpc.DeviceId("Acme", "00AABB", "HomeRouter", "SN3"),
        events=(rpc.EventStruct("2 PERIODIC"),),
        current_time="2024-01-15T09:30:00Z",
        parameters=(),
    )
    cwmp: Any = StubTreq(harness.appliance.cwmp)  # Any: treq.testing is untyped
    codes: list[int] = []
    cwmp.post("http://127.0.0.1/", data=xml(inform).encode()).addCallback(
        lambda r: codes.append(r.code)
    )
    cwmp.flush()
    assert codes == [200]
    later = harness.call("GET", "/metrics", token=token).raw.decode()
    assert metricscheck.value(later, "acs_cwmp_sessions_active") == 1
    assert metricscheck.value(later, "acs_devices_by_status", status="up") == 2
    assert metricscheck.value(later, "acs_cwmp_cpe_requests_total", method="Inform") == 1
    # And the scrapes themselves were counted, by route.
    scrapes = metricscheck.value(
        later, "acs_api_requests_total", route="/metrics", method="GET", status="200"
    )
    assert scrapes == 1
    assert (
        metricscheck.value(later, "acs_api_request_duration_seconds_count", route="/metrics") == 1
    )


def test_metrics_need_an_unscoped_token(harness: ApiHarness) -> None:
    anonymous = harness.call("GET", "/metrics")
    assert anonymous.status == 401
    assert anonymous.header("WWW-Authenticate") == "Bearer"
    assert harness.call("GET", "/metrics", token="nope").status == 401
    scoped = harness.call("GET", "/metrics", token=harness.token("admin", orgs=[1]))
    assert scoped.status == 403 and "detail" in scoped.json
