"""The event stream (api/events.py): Server-Sent Events over real HTTP on loopback from a
running appliance: what happens to devices and tasks arrives as typed events, a scoped token
hears of its organizations only, ``types`` narrows it, ``Last-Event-ID`` resumes after a
disconnection with the events missed meanwhile, and bad requests are 400s.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from e2eharness import ApplianceWithFleet, bounded, now
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool


class _Events:
    """The events read so far from one stream; ``wait(n)`` fires once n have arrived."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while b"\n\n" in self.buffer:
            frame, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in frame.decode().splitlines() if ": " in line
            )
            if "data" in fields:
                event = json.loads(fields["data"])
                assert fields["event"] == event["type"] and fields["id"] == str(event["id"])
                self.events.append(event)
                self.ids.append(fields["id"])
        for pair in list(self._waiting):
            if len(self.events) >= pair[0]:
                self._waiting.remove(pair)
                pair[1].callback(None)

    def wait(self, count: int) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((count, d))
        self.feed(b"")
        return d

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


class _Reader(Protocol):
    """The response body, fed to the events as it comes; ``stop`` cuts the stream."""

    def __init__(self, events: _Events) -> None:
        self.events = events
        self.ended: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.events.feed(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.ended.callback(None)

    def stop(self) -> defer.Deferred[None]:
        if self.transport is not None and not self.ended.called:
            self.transport.stopProducing()  # the body's producer: aborts the connection
        return self.ended


class EventStream(ApplianceWithFleet):
    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self.start_appliance(self.tempdir()))

    async def listen(
        self, query: str = "", token: str | None = None, last: str | None = None
    ) -> _Events:
        if token is None:
            _, token = self.appliance.store.create_token(f"t{now()}", "viewer", [], now=now())
        headers = {"Authorization": f"Bearer {token}"}
        if last is not None:
            headers["Last-Event-ID"] = last
        response = await bounded(
            treq.get(f"{self.api_url}/events/{query}", headers=headers, unbuffered=True)
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["text/event-stream; charset=utf-8"]
        )
        events = _Events()
        reader = _Reader(events)
        response.deliverBody(reader)
        self.addCleanup(reader.stop)
        return events

    def device(self, serial: str, org: int) -> int:  # type: ignore[override]
        store = self.appliance.store
        return store.create_device(
            serial_number=serial, name=serial, organization_id=org, now=now(), actor="ops"
        ).id

    async def test_device_and_task_events_arrive_in_order(self) -> None:
        store = self.appliance.store
        east = store.ensure_organization("East").id
        events = await self.listen()
        device = self.device("EV-1", east)
        self.appliance.tasks.queue(device, "reboot", actor="ops", wake=False)
        store.set_status(device, "Up", now=now())
        await bounded(events.wait(3))
        self.assertEqual(
            events.types()[:3], ["device.registered", "task.queued", "device.status_changed"]
        )
        first = events.events[0]
        self.assertEqual(
            (first["device"], first["organization"], first["actor"]), (device, east, "ops")
        )
        self.assertEqual(first["detail"]["serial_number"], "EV-1")
        self.assertEqual(events.events[2]["detail"]["to"], "Up")

    async def test_scope_and_types_narrow_the_stream(self) -> None:
        store = self.appliance.store
        east = store.ensure_organization("East").id
        west = store.ensure_organization("West").id
        _, scoped = store.create_token("east", "viewer", [east], now=now())
        mine = await self.listen(token=scoped)
        statuses = await self.listen("?types=device.status_changed")
        other = self.device("W-1", west)
        own = self.device("E-1", east)
        store.set_status(other, "Up", now=now())
        store.set_status(own, "Up", now=now())
        await bounded(mine.wait(2))
        await bounded(statuses.wait(2))
        self.assertEqual({e["organization"] for e in mine.events}, {east})
        self.assertEqual(set(statuses.types()), {"device.status_changed"})
        self.assertEqual([e["device"] for e in statuses.events[:2]], [other, own])

    async def test_a_reconnection_resumes_after_the_last_event_seen(self) -> None:
        org = self.appliance.store.ensure_organization("East").id
        first = await self.listen()
        self.device("R-1", org)
        await bounded(first.wait(1))
        seen = first.ids[-1]
        self.device("R-2", org)  # while "disconnected": the new stream must still send it
        self.device("R-3", org)
        resumed = await self.listen(last=seen)
        await bounded(resumed.wait(2))
        self.assertEqual([e["detail"]["serial_number"] for e in resumed.events[:2]], ["R-2", "R-3"])

    async def test_bad_requests_are_400s(self) -> None:
        _, token = self.appliance.store.create_token("v", "viewer", [], now=now())
        pool = HTTPConnectionPool(reactor, persistent=False)
        for query, headers in (
            ("?types=device.exploded", {}),
            ("?since=1", {}),
            ("", {"Last-Event-ID": "x"}),
        ):
            response = await bounded(
                treq.get(
                    f"{self.api_url}/events/{query}",
                    headers={"Authorization": f"Bearer {token}", **headers},
                    pool=pool,
                )
            )
            self.assertEqual(response.code, 400, query)
            await bounded(treq.content(response))
