"""Webhooks (acs/webhooks.py, acs/store/webhooks.py, api/webhooks.py) against a real HTTP
receiver on loopback: events are POSTed signed, in order; a receiver that fails three times
still gets every event, once it answers; an appliance restarted meanwhile resumes from its
outbox; the API creates, lists, shows the delivery log and deletes them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2eharness import ApplianceWithFleet, bounded, now
from twisted.internet import defer, reactor
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from acs.events import EVENT_TYPES
from acs.webhooks import signature

SECRET = "s3cret"


class Receiver(Resource):
    """Answers ``fail`` times with 503, then 204; keeps what arrived (headers, JSON)."""

    isLeaf = True

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.fail = fail
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.attempts = 0
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []

    def render_POST(self, request: Request) -> bytes:
        self.attempts += 1
        assert request.content is not None
        body = request.content.read()
        headers = {
            k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()
        }
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if headers.get("x-acs-signature") != expected:
            request.setResponseCode(401)
            return b""
        if self.fail > 0:
            self.fail -= 1
            request.setResponseCode(503)
            return b""
        self.received.append((headers, json.loads(body)))
        for pair in list(self._waiting):
            if len(self.received) >= pair[0]:
                self._waiting.remove(pair)
                pair[1].callback(None)
        request.setResponseCode(204)
        return b""

    def wait(self, count: int) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if len(self.received) >= count:
            d.callback(None)
        else:
            self._waiting.append((count, d))
        return d


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"id":1}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


class WebhookDeliveries(ApplianceWithFleet):
    async def start_quick(self, tmp: Path) -> None:
        await self.start_appliance(tmp)
        service = self.appliance.webhooks
        await defer.maybeDeferred(service.stopService)
        service.interval, service.retry_base = 0.05, 0.05  # seconds, not the shipped 1 and 5
        service.startService()

    def serve(self, receiver: Receiver) -> str:
        port: Any = reactor.listenTCP(0, Site(receiver), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/hook"

    def events(self, org: int, serials: list[str]) -> list[int]:
        store = self.appliance.store
        return [
            store.create_device(
                serial_number=s, name=s, organization_id=org, now=now(), actor="ops"
            ).id
            for s in serials
        ]

    async def test_a_receiver_failing_three_times_still_gets_every_event_in_order(self) -> None:
        await self.start_quick(self.tempdir())
        receiver = Receiver(fail=3)
        code, created = await self.api(
            "POST", "/webhook/",
            {"url": self.serve(receiver), "event_types": ["device.registered"], "secret": SECRET},
            role="admin",
        )  # fmt: skip
        self.assertEqual(code, 201, created)
        self.assertEqual(created["secret"], SECRET)
        org = self.appliance.store.ensure_organization("East").id
        devices = self.events(org, ["W-1", "W-2", "W-3"])
        self.appliance.store.set_status(devices[0], "Up", now=now())  # not asked for
        await bounded(receiver.wait(3))
        got = [
            (h["x-acs-event"], b["device"], b["detail"]["serial_number"])
            for h, b in receiver.received
        ]
        self.assertEqual(
            got,
            [
                ("device.registered", d, s)
                for d, s in zip(devices, ["W-1", "W-2", "W-3"], strict=True)
            ],
        )
        self.assertEqual(receiver.attempts, 6)  # 3 refused, then one each
        self.assertEqual(
            [h["x-acs-event-id"] for h, b in receiver.received],
            [str(b["id"]) for _, b in receiver.received],
        )
        code, log = await self.api("GET", f"/webhook/{created['id']}/deliveries/", role="admin")
        self.assertEqual(code, 200)
        first = log["results"][-1]  # newest first
        self.assertEqual(
            (first["state"], first["attempts"], first["last_status"]), ("delivered", 4, 204)
        )

    async def test_the_outbox_survives_a_restart(self) -> None:
        tmp = self.tempdir()
        await self.start_quick(tmp)
        receiver = Receiver(fail=10**6)  # down until told otherwise
        url = self.serve(receiver)
        hook = self.appliance.store.create_webhook(
            url, SECRET, ["device.registered"], now=now(), actor="t"
        )
        org = self.appliance.store.ensure_organization("East").id
        self.events(org, ["X-1", "X-2"])
        await eventually(lambda: receiver.attempts >= 2)  # the first delivery refused, twice
        await defer.maybeDeferred(self.appliance.service.stopService)
        receiver.fail = 0
        await self.start_quick(tmp)  # a new appliance on the same database
        await bounded(receiver.wait(2))
        self.assertEqual(
            [b["detail"]["serial_number"] for _, b in receiver.received], ["X-1", "X-2"]
        )
        await eventually(lambda: self.appliance.store.next_delivery(hook.id) is None)

    async def test_the_api_refuses_bad_webhooks_and_hides_the_secret(self) -> None:
        await self.start_appliance(self.tempdir())
        for body in (
            {"url": "ftp://127.0.0.1/x"},
            {"url": "http://127.0.0.1/x", "event_types": ["device.exploded"]},
            {"event_types": []},
        ):
            code, _ = await self.api("POST", "/webhook/", body, role="admin")
            self.assertEqual(code, 400, body)
        code, created = await self.api(
            "POST", "/webhook/", {"url": "http://127.0.0.1:9/x"}, role="admin"
        )
        self.assertEqual(code, 201)
        self.assertEqual(len(created["event_types"]), len(EVENT_TYPES))
        code, shown = await self.api("GET", f"/webhook/{created['id']}/", role="admin")
        self.assertNotIn("secret", shown)
        code, _ = await self.api("GET", "/webhook/", role="operator")
        self.assertEqual(code, 403)
        self.assertEqual(
            (await self.api("DELETE", f"/webhook/{created['id']}/", role="admin"))[0], 204
        )
        self.assertEqual(
            (await self.api("GET", f"/webhook/{created['id']}/", role="admin"))[0], 404
        )


async def eventually(done: Callable[[], bool], *, rounds: int = 200) -> None:
    """Wait (real time, bounded) until ``done()``: what the appliance does on its own."""
    for _ in range(rounds):
        if done():
            return
        await _later(0.05)
    raise AssertionError("still not done after 10 s")


def _later(seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    return d
