"""POST /inventory_device/<id>/tasks/ (api/device_tasks.py): any offered task kind by name,
its arguments refused before anything is queued, ?connection_request and ?timeout.

In memory (tests/apiharness.py): the task's end is played on the store, as the session
driver would write it; tests/test_e2e_api_tasks.py runs the kinds against cpe_sim.
"""

from __future__ import annotations

from typing import Any

import pytest
from apiharness import T0, ApiHarness
from factories import informed_device
from test_api_device_ops import FakeConnreq, connreq, make_device

from acs.cwmp.redact import REDACTED
from acs.store.models import StoredFile
from acs.tasks import KINDS, validate_args
from api.device_tasks import API_KINDS
from api.docs import MAX_TASK_TIMEOUT

__all__ = ["connreq"]

# Arguments each offered kind refuses (one case each; a new kind must add its own).
BAD_ARGUMENTS: dict[str, dict[str, Any]] = {
    "get_parameter_values": {"parameter_names": []},
    "get_parameter_names": {"parameter_path": "Device.", "next_level": "yes"},
    "set_parameter_values": {"parameters": [{"name": "Device.X.Y", "value": "x", "type": "int"}]},
    "get_parameter_attributes": {"parameter_names": "Device."},
    "set_parameter_attributes": {"parameters": [{"name": "Device.X.Y", "notification": 7}]},
    "add_object": {"object_name": "Device.NAT.PortMapping"},
    "delete_object": {"object_name": "Device.NAT.PortMapping."},
    "refresh": {"parameter_path": 5},
    "reboot": {"delay": 1},
    "factory_reset": {"keep": True},
    "schedule_inform": {"delay_seconds": 0},
    "get_rpc_methods": {"methods": []},
    "get_queued_transfers": {"all": True},
    "download": {"file": 1, "firmware_image": 1},
    "upload": {"file_type": "3 Vendor Configuration File 0"},
    "schedule_download": {"file": 1, "time_windows": []},
    "cancel_transfer": {"task": "1"},
    "get_all_queued_transfers": {"transfers": []},
    "diagnostics": {"test": "ip_ping", "host": "h", "url": "http://127.0.0.1/"},
    "change_du_state": {"operations": [{"type": "uninstall", "url": "http://127.0.0.1/du"}]},
}


def stored_file(harness: ApiHarness, device_id: int | None = None) -> StoredFile:
    """A file of /api/v1/file/ (uploaded by `device_id`, when given); its row only."""
    return harness.store.create_file(
        name="web", file_type="2 Web Content", size=1, sha256="0" * 64, filename="web.tar",
        now=T0, device_id=device_id, task_id=None if device_id is None else 99,
    )  # fmt: skip


def url(device_id: int, query: str = "") -> str:
    return f"/api/v1/inventory_device/{device_id}/tasks/{query}"


def test_every_offered_kind_has_a_refused_case() -> None:
    assert set(BAD_ARGUMENTS) == set(API_KINDS)
    assert {"get_parameter_values", "set_parameter_values", "get_rpc_methods"} <= set(API_KINDS)
    assert "provision" not in API_KINDS  # internal kinds are not offered


@pytest.mark.parametrize("kind", API_KINDS)
def test_each_kind_is_queued_with_its_arguments_and_wakes_the_device(
    harness: ApiHarness, connreq: FakeConnreq, kind: str
) -> None:
    device = make_device(harness)
    example = dict(KINDS[kind].example)
    if kind in ("download", "schedule_download"):
        example["file"] = stored_file(harness).id
    if kind == "cancel_transfer":
        transfer = harness.store.queue_task(
            device.id, "upload", {"file_type": "2 Vendor Log File"}, now=T0, actor="t"
        )
        example["task"] = transfer.id
    reply = harness.call(
        "POST", url(device.id), token=harness.token("operator", name="ops"),
        json_body={"kind": kind, **example},
    )  # fmt: skip
    assert reply.status == 202, reply.json
    assert reply.json["kind"] == kind
    assert reply.json["state"] == "pending"
    assert reply.json["arguments"] == validate_args(kind, example)
    assert reply.json["actor"] == "ops"
    assert connreq.woken == [device.id]
    assert reply.json["id"] == harness.store.tasks_for_device(device.id)[-1].id


@pytest.mark.parametrize("kind", API_KINDS)
def test_bad_arguments_are_a_400_and_queue_nothing(
    harness: ApiHarness, connreq: FakeConnreq, kind: str
) -> None:
    device = make_device(harness)
    reply = harness.call(
        "POST", url(device.id), token=harness.token("operator"),
        json_body={"kind": kind, **BAD_ARGUMENTS[kind]},
    )  # fmt: skip
    assert reply.status == 400, reply.json
    [(field, messages)] = reply.json.items()
    assert field in (*KINDS[kind].arguments, "non_field_errors")
    assert messages and all(isinstance(m, str) for m in messages)
    assert harness.store.tasks_for_device(device.id) == []
    assert connreq.woken == []


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ({}, ""),
        ({"kind": "provision"}, ""),
        ({"kind": "no_such_rpc"}, ""),
        ({"kind": ["reboot"]}, ""),
        ({"kind": "reboot"}, f"?timeout={MAX_TASK_TIMEOUT + 1}"),
        ({"kind": "reboot"}, "?timeout=-1"),
        ({"kind": "reboot"}, "?timeout=soon"),
        ({"kind": "reboot"}, "?connection_request=maybe"),
    ],
)
def test_bad_requests_are_a_400_and_queue_nothing(
    harness: ApiHarness, connreq: FakeConnreq, body: dict[str, Any], query: str
) -> None:
    device = make_device(harness)
    reply = harness.call(
        "POST", url(device.id, query), token=harness.token("operator"), json_body=body
    )
    assert reply.status == 400, reply.json
    assert harness.store.tasks_for_device(device.id) == []


def test_viewers_cannot_queue_and_other_tenants_see_nothing(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    other = harness.store.create_organization(name="Other", code=None, now=T0, actor="t")
    body = {"kind": "reboot"}
    assert (
        harness.call("POST", url(device.id), token=harness.token("viewer"), json_body=body).status
        == 403
    )
    scoped = harness.token("operator", orgs=[other.id])
    assert harness.call("POST", url(device.id), token=scoped, json_body=body).status in (403, 404)
    assert (
        harness.call("POST", url(999), token=harness.token("operator"), json_body=body).status
        == 404
    )
    assert harness.store.tasks_for_device(device.id) == []


def test_connection_request_false_only_queues(harness: ApiHarness, connreq: FakeConnreq) -> None:
    device = make_device(harness)
    reply = harness.call(
        "POST", url(device.id, "?connection_request=false"), token=harness.token("operator"),
        json_body={"kind": "get_rpc_methods"},
    )  # fmt: skip
    assert reply.status == 202
    assert connreq.woken == []


def test_timeout_answers_with_the_finished_task_and_its_redacted_result(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    answer = harness.begin(
        "POST", url(device.id, "?timeout=30"), token=harness.token("operator"),
        json_body={"kind": "get_parameter_values", "parameter_names": ["Device.WiFi."]},
    )  # fmt: skip
    with pytest.raises(AssertionError, match="no response"):
        answer()  # still waiting for the task
    [task] = harness.store.tasks_for_device(device.id)
    key = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"
    harness.store.start_task(task.id, now=T0 + 1)
    harness.store.complete_task(
        task.id,
        now=T0 + 2,
        result={"parameters": [
            {"name": "Device.WiFi.SSID.1.SSID", "value": "home", "type": "xsd:string"},
            {"name": key, "value": "hunter22", "type": "xsd:string"},
        ]},
    )  # fmt: skip
    harness.clock.advance(0)
    reply = answer()
    assert reply.status == 200
    assert reply.json["state"] == "done"
    assert reply.json["result"]["parameters"] == [
        {"name": "Device.WiFi.SSID.1.SSID", "value": "home", "type": "xsd:string"},
        {"name": key, "value": REDACTED, "type": "xsd:string"},
    ]
    assert "hunter22" not in reply.raw.decode()
    shown = harness.call("GET", f"{url(device.id)}{task.id}/", token=harness.token("viewer"))
    assert shown.json == reply.json


def test_a_failed_task_ends_the_wait_too(harness: ApiHarness, connreq: FakeConnreq) -> None:
    device = make_device(harness)
    answer = harness.begin(
        "POST", url(device.id, "?timeout=30"), token=harness.token("operator"),
        json_body={"kind": "get_rpc_methods"},
    )  # fmt: skip
    [task] = harness.store.tasks_for_device(device.id)
    harness.store.start_task(task.id, now=T0 + 1)
    harness.store.fail_task(
        task.id, now=T0 + 2, fault_code=9000, fault_string="Method not supported", retry_at=None
    )
    harness.clock.advance(0)
    reply = answer()
    assert (reply.status, reply.json["state"], reply.json["fault_code"]) == (200, "failed", 9000)


def test_without_an_end_within_the_timeout_the_answer_is_202(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    answer = harness.begin(
        "POST", url(device.id, "?timeout=5"), token=harness.token("operator"),
        json_body={"kind": "get_rpc_methods"},
    )  # fmt: skip
    harness.clock.advance(4.9)
    with pytest.raises(AssertionError, match="no response"):
        answer()
    [task] = harness.store.tasks_for_device(device.id)
    harness.store.start_task(task.id, now=T0 + 1)  # in progress, not finished
    harness.clock.advance(0.1)
    reply = answer()
    assert (reply.status, reply.json["state"]) == (202, "in_progress")
    assert harness.appliance.tasks.waiting() == 0


def test_waiting_callers_are_bounded(
    harness: ApiHarness, connreq: FakeConnreq, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("acs.tasks.engine.MAX_WAITERS", 1)
    device = make_device(harness)
    token = harness.token("operator")
    body = {"kind": "get_rpc_methods"}
    first = harness.begin("POST", url(device.id, "?timeout=60"), token=token, json_body=body)
    second = harness.call("POST", url(device.id, "?timeout=60"), token=token, json_body=body)
    assert second.status == 202  # answered at once: one caller waits already
    with pytest.raises(AssertionError, match="no response"):
        first()
    harness.clock.advance(60)
    assert first().status == 202


def test_a_failed_task_can_be_retried_once_it_failed(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    task = harness.store.queue_task(device.id, "get_rpc_methods", {}, now=T0, actor="ops")
    token = harness.token("operator", name="ops2")
    retry = f"{url(device.id)}{task.id}/retry/"
    assert harness.call("POST", retry, token=token).status == 409  # pending
    harness.store.start_task(task.id, now=T0 + 1)
    harness.store.fail_task(task.id, now=T0 + 2, fault_code=9002, fault_string="x", retry_at=None)
    reply = harness.call("POST", retry, token=token)
    assert reply.status == 202, reply.json
    assert (reply.json["id"], reply.json["state"], reply.json["attempts"]) == (
        task.id,
        "pending",
        0,
    )
    assert (reply.json["fault_code"], reply.json["finished"]) == (None, None)
    assert connreq.woken == [device.id]
    actions = [(h.action, h.actor) for h in harness.store.history(device.id)]
    assert ("task_retried", "ops2") in actions
    assert harness.call("POST", retry, token=harness.token("viewer")).status == 403
    assert harness.call("POST", f"{url(device.id)}999/retry/", token=token).status == 404


def test_what_only_the_device_can_tell_is_checked_before_queueing(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = informed_device(harness.store, "SN-ROOT")  # a TR-181 device: root Device.
    harness.store.upsert_parameters(
        device.id, [("Device.X.Flag", "true", "xsd:boolean", True)], now=T0
    )
    token = harness.token("operator")

    def post(body: dict[str, Any]) -> Any:
        return harness.call("POST", url(device.id), token=token, json_body=body)

    wrong_root = post(
        {"kind": "get_parameter_values", "parameter_names": ["InternetGatewayDevice."]}
    )
    assert wrong_root.status == 400
    assert "data model root is Device." in wrong_root.json["parameter_names"][0]
    assert (
        post({"kind": "delete_object", "object_name": "InternetGatewayDevice.X.1."}).status == 400
    )
    # Untyped values must suit the type the CPE reported, else the data model's.
    for name, value in (
        ("Device.X.Flag", "maybe"),
        ("Device.ManagementServer.PeriodicInformInterval", "soon"),
    ):
        reply = post(
            {"kind": "set_parameter_values", "parameters": [{"name": name, "value": value}]}
        )
        assert reply.status == 400, reply.json
        assert reply.json["parameters"][0].startswith(f"{name}: value")
    assert harness.store.tasks_for_device(device.id) == []  # nothing was queued
    typed = {"name": "Device.X.Flag", "value": "maybe", "type": "xsd:string"}
    assert post({"kind": "set_parameter_values", "parameters": [typed]}).status == 202
    suits = {"name": "Device.X.Flag", "value": "false"}
    assert post({"kind": "set_parameter_values", "parameters": [suits]}).status == 202


def test_a_caller_that_goes_away_waits_no_more(harness: ApiHarness) -> None:
    device = make_device(harness)
    engine = harness.appliance.tasks
    task = harness.store.queue_task(device.id, "get_rpc_methods", {}, now=T0, actor="ops")
    gone, staying = engine.wait_finished(task.id, 60), engine.wait_finished(task.id, 60)
    gone.addErrback(lambda failure: None)  # the CancelledError the caller gets
    gone.cancel()
    assert engine.waiting() == 1
    harness.store.start_task(task.id, now=T0 + 1)
    harness.store.complete_task(task.id, now=T0 + 2, result={"methods": []})
    harness.clock.advance(0)
    finished: list[Any] = []
    staying.addCallback(finished.append)
    assert [t.state for t in finished] == ["done"]
    assert engine.waiting() == 0 and harness.clock.getDelayedCalls() == []


def test_a_download_names_a_file_or_image_that_exists_and_may_go_to_the_device(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    token = harness.token("operator")
    other = harness.store.create_organization(name="Other", code=None, now=T0, actor="t")
    foreign = informed_device(harness.store, "SN-FOREIGN")
    harness.store.update_device(foreign.id, now=T0, actor="t", organization_id=other.id)
    own_upload = stored_file(harness, device.id)
    foreign_upload = stored_file(harness, foreign.id)
    for args, field in (
        ({"file": 999}, "file"),
        ({"firmware_image": 999}, "firmware_image"),
        ({"file": foreign_upload.id}, "file"),  # another organization's CPE sent it
    ):
        reply = harness.call(
            "POST", url(device.id), token=token, json_body={"kind": "download", **args}
        )
        assert reply.status == 400, reply.json
        assert list(reply.json) == [field]
    assert harness.store.tasks_for_device(device.id) == []
    reply = harness.call(
        "POST", url(device.id), token=token,
        json_body={"kind": "download", "file": own_upload.id, "file_type": "X 00D09E cfg"},
    )  # fmt: skip
    assert reply.status == 202, reply.json
    assert reply.json["arguments"] == {"file": own_upload.id, "file_type": "X 00D09E cfg"}


def test_a_cancel_names_a_transfer_of_this_device_still_under_way(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    other = informed_device(harness.store, "SN-OTHER", provisioned=True)
    token = harness.token("operator")
    store = harness.store
    upload = {"file_type": "2 Vendor Log File"}
    reboot = store.queue_task(device.id, "reboot", {}, now=T0, actor="t")
    foreign = store.queue_task(other.id, "upload", upload, now=T0, actor="t")
    ended = store.queue_task(device.id, "upload", upload, now=T0, actor="t")
    store.cancel_task(ended.id, now=T0, actor="t")
    for target in (reboot.id, foreign.id, ended.id, 999):
        reply = harness.call(
            "POST",
            url(device.id),
            token=token,
            json_body={"kind": "cancel_transfer", "task": target},
        )
        assert reply.status == 400, reply.json
        assert list(reply.json) == ["task"]
    assert [t.kind for t in store.tasks_for_device(device.id)] == ["reboot", "upload"]
