"""No API response ever contains a secret: device passwords (current and past), the
connection-request credentials' password, cached ``...Password`` parameter values, API
tokens or their stored hashes, web UI users' passwords or their stored hashes.

A populated world (:func:`build_world`) is created through the API and the store; then every
GET route of the app's url_map is called (so a new GET route is checked automatically; a
route this test cannot fill in fails instead of being skipped), and every write response
made while building the world is checked too. :func:`build_world` is also used by
tests/test_api_openapi.py to validate real responses against the documented schemas.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from apiharness import ApiHarness, Reply

from acs.store.models import InformRecord
from api.base import Api

_RULE_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")

DEVICE_PASSWORDS = ("dev-pass-S3CR3T-create", "dev-pass-S3CR3T-patch", "dev-pass-S3CR3T-put")
CR_PASSWORD = "cr-pass-S3CR3T-acs-generated"
CACHED_PASSWORD = "cached-param-S3CR3T-value"
SERIAL = "SECRETS-01"


@dataclass
class World:
    device_id: int
    serial: str
    task_id: int
    organization_id: int
    device_type_id: int
    location_id: int
    admin_token: str
    tokens: list[str]
    replies: list[tuple[str, Reply]] = field(default_factory=list)
    firmware_image_id: int = 0
    file_id: int = 0
    webhook_id: int = 0
    campaign_id: int = 0
    user_id: int = 0
    token_id: int = 0
    user_password_hash: str = ""

    def secrets(self) -> dict[str, str]:
        """label -> secret text that must never appear in a response."""
        found = {f"device password {p}": p for p in DEVICE_PASSWORDS}
        found["connection-request password"] = CR_PASSWORD
        found["cached ...Password parameter"] = CACHED_PASSWORD
        found["webhook secret"] = WEBHOOK_SECRET
        found["campaign password"] = CAMPAIGN_PASSWORD
        found["user password"] = USER_PASSWORD
        found["user password hash"] = self.user_password_hash
        for i, token in enumerate(self.tokens):
            found[f"token {i}"] = token
            found[f"token hash {i}"] = hashlib.sha256(token.encode()).hexdigest()
        return found


def _ok(world: World, harness: ApiHarness, method: str, path: str, body: object) -> Reply:
    reply = harness.call(method, path, token=world.admin_token, json_body=body)
    world.replies.append((f"{method} {path}", reply))
    assert reply.status in (200, 201), f"{method} {path}: {reply.status} {reply.raw[:300]!r}"
    return reply


WEBHOOK_SECRET = "webhook-secret-never-shown"
CAMPAIGN_PASSWORD = "campaign-set-S3CR3T-password"
USER_PASSWORD = "user-pass-S3CR3T-login"


def build_world(harness: ApiHarness) -> World:
    """Organizations, a type, a location, a provisioned device with every kind of secret,
    queued tasks, history from password changes, operational records and a transcript."""
    store = harness.store
    now = harness.clock.seconds()
    tokens = [
        harness.token("admin", name="world-admin"),
        harness.token("operator", name="world-operator"),
        harness.token("viewer", name="world-viewer"),
    ]
    org = store.ensure_organization("Secrets Org", code="SEC")
    tokens.append(harness.token("viewer", orgs=[org.id], name="world-scoped"))
    device_type = store.create_device_type(
        now=1.0,
        actor="t",
        name="Gateway",
        short_name="gateway",
        model="GW-1",
        manufacturer="Acme",
        product_class="GW",
        default_settings={"Device.ManagementServer.PeriodicInformInterval": "300"},
        update_frequency=300,
    )
    location = store.create_location(
        now=1.0, actor="t", name="Lab", organization_id=org.id, short_name="lab"
    )
    world = World(0, SERIAL, 0, org.id, device_type.id, location.id, tokens[0], tokens)
    world.token_id = store.list_tokens()[-1].id
    account = {"username": "alice", "password": USER_PASSWORD, "role": "viewer"}
    world.user_id = _ok(world, harness, "POST", "/api/v1/user/", account).json["id"]
    world.user_password_hash = store.password_hash("alice") or ""
    assert world.user_password_hash
    world.firmware_image_id = store.create_firmware_image(
        name="Gateway firmware",
        version="2.0.0",
        size=3,
        sha256="0" * 64,
        filename="gw-2.0.0.bin",
        device_type_id=device_type.id,
        now=now,
    ).id
    stored = store.create_file(
        name="Web content",
        file_type="2 Web Content",
        size=3,
        sha256="0" * 64,
        filename="web.tar",
        now=now,
    )
    harness.appliance.storage.stored_path(stored).write_bytes(b"web")
    world.file_id = stored.id
    world.webhook_id = store.create_webhook(
        "http://127.0.0.1:9/hook", WEBHOOK_SECRET, ["task.done"], now=now, actor="t"
    ).id

    created = _ok(
        world,
        harness,
        "POST",
        "/api/v1/inventory_device/",
        {
            "name": "secret-cpe",
            "serial_number": SERIAL,
            "organization_id": org.id,
            "type": device_type.id,
            "location_name": "Lab",
            "username": "cpe-user",
            "password": DEVICE_PASSWORDS[0],
        },
    )
    world.device_id = device_id = created.json["id"]
    # What the ACS generates and keeps for connection requests (tasks.provision does this).
    store.update_device(
        device_id,
        now=now,
        actor="acs",
        connection_request_username="cr-user",
        connection_request_password=CR_PASSWORD,
        provisioned=True,
    )
    store.record_inform(
        device_id,
        InformRecord(
            manufacturer="Acme",
            oui="00AA11",
            product_class="GW",
            serial_number=SERIAL,
            software_version="1.0.0",
            hardware_version="hw1",
            connection_request_url=None,
            data_model_root="Device.",
            address="127.0.0.1",
            event_codes=("2 PERIODIC",),
        ),
        now=now,
    )
    store.upsert_parameters(
        device_id,
        [
            ("Device.ManagementServer.ConnectionRequestUsername", "cr-user", "xsd:string", True),
            ("Device.ManagementServer.ConnectionRequestPassword", CR_PASSWORD, "xsd:string", True),
            ("Device.ManagementServer.Password", CACHED_PASSWORD, "xsd:string", True),
            ("Device.Users.User.1.Password", CACHED_PASSWORD, "xsd:string", True),
            ("Device.Ethernet.Link.1.MACAddress", "00:11:22:33:44:55", "xsd:string", False),
        ],
        now=now,
    )
    # A debug transcript of the provisioning session: the SPV carries the CR password.
    store.add_session_transcript(
        device_id,
        "--- out\n<cwmp:SetParameterValues><ParameterList><ParameterValueStruct>"
        "<Name>Device.ManagementServer.ConnectionRequestPassword</Name>"
        f'<Value xsi:type="xsd:string">{CR_PASSWORD}</Value>'
        "</ParameterValueStruct></ParameterList></cwmp:SetParameterValues>",
        started=now,
    )
    device_url = f"/api/v1/inventory_device/{device_id}/"
    _ok(
        world,
        harness,
        "PATCH",
        device_url,
        {"password": DEVICE_PASSWORDS[1], "debug": True, "reboot": True, "description": "d"},
    )
    _ok(
        world,
        harness,
        "PUT",
        device_url,
        {
            "name": "secret-cpe",
            "serial_number": SERIAL,
            "organization_id": org.id,
            "type": device_type.id,
            "location_name": "Lab",
            "username": "cpe-user",
            "password": DEVICE_PASSWORDS[2],
            "debug": True,
        },
    )
    _ok(world, harness, "PATCH", f"/api/v1/inventory_device_serial/{SERIAL}/", {"name": "s2"})
    _ok(
        world,
        harness,
        "PUT",
        f"/api/v1/inventory_device_operation/{device_id}/",
        {
            "operational_status": "active",
            "configuration": {"Device.ManagementServer.PeriodicInformInterval": "600"},
        },
    )
    _ok(
        world,
        harness,
        "PUT",
        f"/api/v1/inventory_device_serial_operation/{SERIAL}/",
        {"status": "maintenance", "tags": ["lab"], "custom_fields": {"rack": "1"}},
    )
    tasks = store.tasks_for_device(device_id)
    assert tasks, "PATCH reboot=true queued no task"
    world.task_id = tasks[0].id
    password = "Device.ManagementServer.ConnectionRequestPassword"
    campaign = _ok(
        world,
        harness,
        "POST",
        "/api/v1/campaign/",
        {
            "name": "rotate",
            "filter": {"tag": ["lab"]},
            "task": {
                "kind": "set_parameter_values",
                "parameters": [{"name": password, "value": CAMPAIGN_PASSWORD}],
            },
            "rate": 60,
        },
    )
    world.campaign_id = campaign.json["id"]
    _ok(world, harness, "POST", f"/api/v1/campaign/{world.campaign_id}/start/", None)
    return world


# Which world object fills a route's path parameter, by the URL segment before it.
def _fill(world: World, segment: str) -> str | None:
    return {
        "inventory_device": str(world.device_id),
        "inventory_device_operation": str(world.device_id),
        "inventory_device_serial": world.serial,
        "inventory_device_serial_operation": world.serial,
        "organization": str(world.organization_id),
        "device_type": str(world.device_type_id),
        "location": str(world.location_id),
        "firmware_image": str(world.firmware_image_id),
        "file": str(world.file_id),
        "webhook": str(world.webhook_id),
        "campaign": str(world.campaign_id),
        "tasks": str(world.task_id),
        "user": str(world.user_id),
        "token": str(world.token_id),
        "ui": "app.js",
    }.get(segment)


def get_urls(world: World) -> list[str]:
    """A concrete URL for every GET rule of the app; AssertionError for one it can't fill."""
    urls = []
    for rule in Api.app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        url = rule.rule
        if url == "/api/v1/events/":
            continue  # an endless stream, read by tests/test_api_events.py
        for match in _RULE_PARAM.finditer(rule.rule):
            before = rule.rule[: match.start()].rstrip("/").rsplit("/", 1)[-1]
            value = _fill(world, before)
            assert value is not None, (
                f"cannot exercise GET {rule.rule}: teach tests/test_api_secrets.py what "
                f"fills <{match.group(2)}> after /{before}/"
            )
            url = url.replace(match.group(0), value, 1)
        urls.append(url)
    return urls


def leaks(world: World, label: str, reply: Reply) -> list[str]:
    text = reply.raw.decode("utf-8", "replace")
    for name, value in reply.headers.items():
        text += f"\n{name}: {' '.join(value)}"
    return [
        f"{label} leaks the {what}" for what, secret in world.secrets().items() if secret in text
    ]


def test_no_get_response_contains_a_secret(harness: ApiHarness) -> None:
    world = build_world(harness)
    urls = get_urls(world)
    assert len(urls) >= 10  # the walk found the API
    found: list[str] = []
    for url in urls:
        for query in ("", "?pending=true", "?update_status=true&pending=true"):
            reply = harness.call("GET", url + query, token=world.admin_token)
            if query and reply.status == 400 and {"pending", "update_status"} & set(reply.json):
                continue  # a route that takes no such option says so (the audit log)
            assert reply.status == 200, f"GET {url}{query}: {reply.status} {reply.raw[:300]!r}"
            found += leaks(world, f"GET {url}{query}", reply)
    assert not found, "\n".join(found)


def test_parameter_filter_and_single_task_views_hide_secrets_too(harness: ApiHarness) -> None:
    world = build_world(harness)
    base = f"/api/v1/inventory_device/{world.device_id}"
    found: list[str] = []
    for url in (
        f"{base}/parameters/?path=Device.ManagementServer.",
        f"{base}/parameters/?path=Device.Users.User.1.Password",
        f"{base}/history/?limit=100",
        f"{base}/sessions/?limit=100",
    ):
        reply = harness.call("GET", url, token=world.admin_token)
        assert reply.status == 200, f"GET {url}: {reply.status}"
        found += leaks(world, f"GET {url}", reply)
    assert not found, "\n".join(found)


def test_no_write_response_contains_a_secret(harness: ApiHarness) -> None:
    world = build_world(harness)
    found = [leak for label, reply in world.replies for leak in leaks(world, label, reply)]
    assert len(world.replies) >= 6
    assert not found, "\n".join(found)


def test_history_records_password_changes_without_their_values(harness: ApiHarness) -> None:
    world = build_world(harness)
    reply = harness.call(
        "GET",
        f"/api/v1/inventory_device/{world.device_id}/history/?limit=100",
        token=world.admin_token,
    )
    assert reply.status == 200, reply.raw
    assert "password" in reply.raw.decode(), "password changes are not in the audit trail"
    assert not leaks(world, "history", reply)


def test_errors_and_unauthenticated_answers_contain_no_secret(harness: ApiHarness) -> None:
    world = build_world(harness)
    found: list[str] = []
    for token in (None, "not-a-token", hashlib.sha256(world.tokens[0].encode()).hexdigest()):
        reply = harness.call("GET", "/api/v1/inventory_device/", token=token)
        assert reply.status == 401
        found += leaks(world, f"401 with {token!r}", reply)
    bad = harness.call(
        "PATCH",
        f"/api/v1/inventory_device/{world.device_id}/",
        token=world.admin_token,
        json_body={"password": 12345, "update_frequency": "x"},
    )
    assert bad.status == 400
    found += leaks(world, "400 on a bad PATCH", bad)
    assert not found, "\n".join(found)


def test_the_leak_check_finds_secrets_in_bodies_and_headers(harness: ApiHarness) -> None:
    world = build_world(harness)
    token_hash = hashlib.sha256(world.tokens[1].encode()).hexdigest()
    in_body = Reply(200, {}, json.dumps({"x": f"..{DEVICE_PASSWORDS[1]}.."}).encode())
    in_header = Reply(200, {"x-debug": [token_hash]}, b"{}")
    assert leaks(world, "body", in_body) == [
        "body leaks the device password " + DEVICE_PASSWORDS[1]
    ]
    assert leaks(world, "header", in_header) == ["header leaks the token hash 1"]
    assert not leaks(world, "clean", Reply(200, {}, b'{"ok": true}'))
