"""Connection requests against a real loopback CPE endpoint (twisted.web), no sleeps.

Timeouts are driven by a task.Clock given to the requester while the HTTP runs on the real
reactor.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from acs import httpdigest
from acs.connreq import ConnectionRequester, TargetPolicy, check_url
from acs.store import Store
from acs.store.models import DOWN, UP

reactor: Any = _reactor  # mypy cannot see the reactor's zope interfaces
REALM = "cpe"
USERNAME = "acs-cr"
PASSWORD = "s3cret"


class _TrackingChannel(HTTPChannel):
    """Server-side connection that reports when it is gone (for a clean reactor)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.lost: Deferred[None] = Deferred()
        self.factory.channels.add(self)

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.factory.channels.discard(self)
        self.lost.callback(None)


class _Site(Site):
    protocol = _TrackingChannel  # type: ignore[assignment]

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.channels: set[_TrackingChannel] = set()


class FakeCpe(Resource):
    """A CPE's connection request endpoint.

    mode: "digest" / "basic" (challenge, then 200 on good credentials), "open" (answer
    ``code`` without auth), "hang" (never answer).
    """

    isLeaf = True

    def __init__(self, mode: str = "digest", code: int = 200) -> None:
        super().__init__()
        self.mode = mode
        self.code = code
        self.authorizations: list[str | None] = []
        self.hanging: list[Request] = []
        self.drop_first_authenticated = False
        self.got_request: Deferred[None] = Deferred()

    def render_GET(self, request: Request) -> bytes | int:
        raw = request.getHeader("authorization")
        self.authorizations.append(raw)
        if self.mode == "hang":
            self.hanging.append(request)
        if not self.got_request.called:
            self.got_request.callback(None)
        if self.mode == "hang":
            return NOT_DONE_YET
        if self.mode == "open":
            request.setResponseCode(self.code)
            return b""
        if raw is not None and self.drop_first_authenticated:
            # Like CPEs that close the connection after the challenge exchange.
            self.drop_first_authenticated = False
            assert request.channel is not None
            request.channel.transport.abortConnection()  # type: ignore[union-attr]
            return NOT_DONE_YET
        creds = httpdigest.parse_authorization(raw) if raw else None
        if (
            creds is not None
            and creds.scheme == self.mode
            and creds.username == USERNAME
            and httpdigest.check_credentials(creds, method="GET", password=PASSWORD, realm=REALM)
        ):
            request.setResponseCode(self.code)
            return b""
        request.setResponseCode(401)
        if self.mode == "digest":
            challenge = httpdigest.digest_challenge(REALM, secrets.token_hex(8))
        else:
            challenge = httpdigest.basic_challenge(REALM)
        request.setHeader("WWW-Authenticate", challenge)
        return b""


class ConnectionRequestTests(unittest.TestCase):
    def setUp(self) -> None:
        self.store = Store.open(":memory:")
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.requester = ConnectionRequester(reactor, self.store, timeout=5, clock=self.clock)
        self.addCleanup(self.requester.stop)
        org = self.store.ensure_organization("Default")
        self.device = self.store.create_device(
            serial_number="SN0001",
            name="cpe one",
            organization_id=org.id,
            now=self.clock.seconds(),
            actor="test",
        )

    def serve(self, cpe: FakeCpe, interface: str = "127.0.0.1") -> str:
        site = _Site(cpe)
        port = reactor.listenTCP(0, site, interface=interface)

        async def close() -> None:
            for request in cpe.hanging:
                if not request.finished and not request._disconnected:
                    request.setResponseCode(503)
                    request.finish()
            for channel in list(site.channels):
                channel.transport.abortConnection()  # type: ignore[union-attr]
            await gatherResults([c.lost for c in list(site.channels)])
            await port.stopListening()

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))
        return f"http://{interface}:{port.getHost().port}/cr?x=1"

    def point_device_at(self, url: str | None, *, credentials: bool = True) -> None:
        # As if the CPE had informed from 127.0.0.1, where its URL points.
        fields: dict[str, Any] = {"connection_request_url": url, "address": "127.0.0.1"}
        if credentials:
            fields["connection_request_username"] = USERNAME
            fields["connection_request_password"] = PASSWORD
        self.store.update_device(self.device.id, now=self.clock.seconds(), actor="test", **fields)

    def last_entry(self) -> dict[str, Any]:
        entries = [
            e for e in self.store.history(self.device.id) if e.action == "connection_request"
        ]
        assert entries, "no connection_request history entry"
        return entries[0].detail

    def status(self) -> str:
        device = self.store.get_device(self.device.id)
        assert device is not None
        return device.status

    async def test_digest_challenge_is_answered_and_device_goes_up(self) -> None:
        cpe = FakeCpe("digest", code=200)
        self.point_device_at(self.serve(cpe))
        self.assertEqual(self.status(), DOWN)

        outcome = await self.requester.wake(self.device.id)

        self.assertEqual(outcome, "answered")
        self.assertEqual(len(cpe.authorizations), 2)
        self.assertIsNone(cpe.authorizations[0])
        assert cpe.authorizations[1] is not None
        self.assertTrue(cpe.authorizations[1].startswith("Digest "))
        self.assertIn('uri="/cr?x=1"', cpe.authorizations[1])
        self.assertEqual(self.status(), UP)
        self.assertEqual(self.last_entry()["outcome"], "answered")
        self.assertEqual(self.last_entry()["http_status"], 200)
        transitions = [e.detail for e in self.store.history(self.device.id) if e.action == "status"]
        self.assertEqual(transitions[0]["to"], UP)
        self.assertEqual(transitions[0]["reason"], "connection request")

    # --- where a request may go (SSRF): issue 9 ---------------------------------------------

    async def assert_refused_unsent(self, cpe: FakeCpe, why: str) -> None:
        self.assertEqual(await self.requester.wake(self.device.id), "error")
        self.assertEqual(cpe.authorizations, [])  # nothing was sent
        entry = self.last_entry()
        self.assertIn(why, entry["reason"])
        self.assertIsNone(entry["http_status"])

    async def test_only_the_address_the_device_informed_from_is_contacted(self) -> None:
        cpe = FakeCpe("open", code=200)
        url = self.serve(cpe, interface="127.0.0.2")
        self.point_device_at(url)  # informed from 127.0.0.1
        await self.assert_refused_unsent(cpe, "not the address the device informed from")
        self.store.update_device(self.device.id, now=1.0, actor="t", address="127.0.0.2")
        self.assertEqual(await self.requester.wake(self.device.id), "answered")

    async def test_configured_networks_are_allowed_too(self) -> None:
        cpe = FakeCpe("open", code=200)
        self.point_device_at(self.serve(cpe, interface="127.0.0.2"))
        self.requester.policy = TargetPolicy(networks=(ipaddress.ip_network("127.0.0.0/30"),))
        self.assertEqual(await self.requester.wake(self.device.id), "answered")
        self.requester.policy = TargetPolicy(networks=(ipaddress.ip_network("10.0.0.0/8"),))
        cpe.authorizations.clear()
        await self.assert_refused_unsent(cpe, "connection_request_networks")

    async def test_the_acs_own_listeners_are_never_contacted(self) -> None:
        cpe = FakeCpe("open", code=200)
        url = self.serve(cpe)
        self.point_device_at(url)
        port = int(url.split(":")[2].split("/")[0])
        self.requester.policy = TargetPolicy(
            networks=(ipaddress.ip_network("127.0.0.0/8"),),
            own_listeners=lambda: [("0.0.0.0", 7547), ("127.0.0.1", port)],
        )
        await self.assert_refused_unsent(cpe, "the ACS's own listeners")

    async def test_host_names_and_non_hosts_are_refused_without_a_lookup(self) -> None:
        cpe = FakeCpe("open", code=200)
        port = self.serve(cpe).split(":")[2]
        for host, why in (
            ("localhost", "must name an IP address"),
            ("0.0.0.0", "which is no host"),
            ("224.0.0.1", "which is no host"),
        ):
            self.point_device_at(f"http://{host}:{port}")
            await self.assert_refused_unsent(cpe, why)

    def test_an_ipv4_mapped_informing_address_matches_its_ipv4_url(self) -> None:
        policy = TargetPolicy()
        self.assertIsNone(policy.refusal("http://127.0.0.1:7/", "::ffff:127.0.0.1"))
        self.assertIsNone(policy.refusal("http://[::1]:7/", "::1"))
        self.assertIsNotNone(policy.refusal("http://[::1]:7/", "127.0.0.1"))
        self.assertIsNotNone(policy.refusal("http://127.0.0.1:7/", None))

    async def test_204_without_challenge_counts_as_answered(self) -> None:
        self.point_device_at(self.serve(FakeCpe("open", code=204)))
        self.assertEqual(await self.requester.wake(self.device.id), "answered")
        self.assertEqual(self.last_entry()["http_status"], 204)

    async def test_basic_is_used_only_when_the_cpe_challenges_with_basic(self) -> None:
        cpe = FakeCpe("basic", code=200)
        self.point_device_at(self.serve(cpe))
        self.requester.policy = TargetPolicy(allow_basic=True)
        self.assertEqual(await self.requester.wake(self.device.id), "answered")
        assert cpe.authorizations[1] is not None
        self.assertTrue(cpe.authorizations[1].startswith("Basic "))

    async def test_basic_over_plain_http_is_refused_unless_configured(self) -> None:
        cpe = FakeCpe("basic", code=200)
        self.point_device_at(self.serve(cpe))
        self.assertEqual(await self.requester.wake(self.device.id), "auth_failed")
        # The challenge was fetched, but no password went out in clear.
        self.assertEqual(cpe.authorizations, [None])
        self.assertIn("allow_basic_auth", self.last_entry()["reason"])

    async def test_wrong_password_is_auth_failed_and_leaves_status_alone(self) -> None:
        self.point_device_at(self.serve(FakeCpe("digest")))
        self.store.update_device(
            self.device.id, now=self.clock.seconds(), actor="t", connection_request_password="no"
        )
        self.store.set_status(self.device.id, UP, now=self.clock.seconds())

        self.assertEqual(await self.requester.wake(self.device.id), "auth_failed")

        self.assertEqual(self.status(), UP)
        self.assertEqual(self.last_entry()["outcome"], "auth_failed")
        self.assertEqual(self.last_entry()["http_status"], 401)

    async def test_missing_credentials_is_auth_failed_without_a_second_request(self) -> None:
        cpe = FakeCpe("digest")
        self.point_device_at(self.serve(cpe), credentials=False)
        self.assertEqual(await self.requester.wake(self.device.id), "auth_failed")
        self.assertEqual(len(cpe.authorizations), 1)
        self.assertIn("credentials", self.last_entry()["reason"])

    async def test_busy_cpe_503_is_an_error_outcome_with_the_status(self) -> None:
        self.point_device_at(self.serve(FakeCpe("open", code=503)))
        self.assertEqual(await self.requester.wake(self.device.id), "error")
        self.assertEqual(self.last_entry()["http_status"], 503)
        self.assertEqual(self.status(), DOWN)

    async def test_connection_closed_after_challenge_is_retried_once(self) -> None:
        cpe = FakeCpe("digest")
        cpe.drop_first_authenticated = True
        self.point_device_at(self.serve(cpe))
        self.assertEqual(await self.requester.wake(self.device.id), "answered")
        self.assertEqual(len(cpe.authorizations), 3)

    async def test_closed_port_is_refused_and_marks_device_down(self) -> None:
        port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        self.point_device_at(f"http://127.0.0.1:{number}/")
        self.store.set_status(self.device.id, UP, now=self.clock.seconds())

        self.assertEqual(await self.requester.wake(self.device.id), "refused")

        self.assertEqual(self.status(), DOWN)
        self.assertEqual(self.last_entry()["outcome"], "refused")
        self.assertIsNone(self.last_entry()["http_status"])

    async def test_unanswered_request_times_out_on_the_clock(self) -> None:
        cpe = FakeCpe("hang")
        self.point_device_at(self.serve(cpe))
        self.store.set_status(self.device.id, UP, now=self.clock.seconds())
        result = self.requester.wake(self.device.id)
        await cpe.got_request

        self.clock.advance(4.9)
        self.assertFalse(result.called)
        self.clock.advance(0.2)
        outcome = await result

        self.assertEqual(outcome, "timeout")
        self.assertEqual(self.status(), DOWN)
        self.assertEqual(self.last_entry()["outcome"], "timeout")
        self.assertFalse(self.clock.getDelayedCalls())

    async def test_stopping_records_a_request_in_flight_as_cancelled_without_a_traceback(
        self,
    ) -> None:
        cpe = FakeCpe("hang")
        self.point_device_at(self.serve(cpe))
        critical: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") in (LogLevel.critical, LogLevel.error):
                critical.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        result = self.requester.wake(self.device.id)
        await cpe.got_request
        stopped = self.requester.stop()
        self.assertEqual(await result, "cancelled")
        await stopped  # fired once the outcome was recorded: the store may close now
        self.assertEqual(self.last_entry()["outcome"], "cancelled")
        self.assertEqual(critical, [])
        # A wake once stopped sends nothing and records nothing.
        self.assertEqual(await self.requester.wake(self.device.id), "cancelled")
        self.assertEqual(len(cpe.authorizations), 1)
        entries = [
            e for e in self.store.history(self.device.id) if e.action == "connection_request"
        ]
        self.assertEqual(len(entries), 1)

    async def test_concurrent_wakes_share_one_request(self) -> None:
        cpe = FakeCpe("hang")
        self.point_device_at(self.serve(cpe))
        first = self.requester.wake(self.device.id)
        second = self.requester.wake(self.device.id)
        await cpe.got_request
        self.assertTrue(self.requester.in_flight(self.device.id))

        request = cpe.hanging[0]
        request.setResponseCode(204)
        request.finish()
        outcomes = await gatherResults([first, second])

        self.assertEqual(outcomes, ["answered", "answered"])
        self.assertEqual(len(cpe.authorizations), 1)
        self.assertFalse(self.requester.in_flight(self.device.id))
        entries = [
            e for e in self.store.history(self.device.id) if e.action == "connection_request"
        ]
        self.assertEqual(len(entries), 1)

    async def test_a_wake_after_completion_sends_a_new_request(self) -> None:
        cpe = FakeCpe("open", code=200)
        self.point_device_at(self.serve(cpe))
        await self.requester.wake(self.device.id)
        await self.requester.wake(self.device.id)
        self.assertEqual(len(cpe.authorizations), 2)

    async def test_a_caller_cancelling_its_wake_does_not_affect_the_other(self) -> None:
        cpe = FakeCpe("hang")
        self.point_device_at(self.serve(cpe))
        first = self.requester.wake(self.device.id)
        second = self.requester.wake(self.device.id)
        first.addErrback(lambda _f: "cancelled")
        first.cancel()
        await cpe.got_request
        cpe.hanging[0].setResponseCode(200)
        cpe.hanging[0].finish()
        self.assertEqual(await second, "answered")
        self.assertEqual(await first, "cancelled")

    async def test_requests_beyond_the_global_bound_wait_and_time_out_from_dispatch(self) -> None:
        requester = ConnectionRequester(
            reactor, self.store, timeout=5, clock=self.clock, max_concurrent=1
        )
        self.addCleanup(requester.stop)
        first_cpe, second_cpe = FakeCpe("hang"), FakeCpe("hang")
        self.point_device_at(self.serve(first_cpe))
        org = self.store.ensure_organization("Default")
        other = self.store.create_device(
            serial_number="SN0002", name="two", organization_id=org.id, now=0.0, actor="test"
        )
        self.store.update_device(
            other.id,
            now=0.0,
            actor="test",
            connection_request_url=self.serve(second_cpe),
            address="127.0.0.1",
        )
        first = requester.wake(self.device.id)
        second = requester.wake(other.id)
        await first_cpe.got_request
        self.assertEqual(second_cpe.hanging, [])  # waiting for the one slot
        self.assertTrue(requester.in_flight(other.id))
        # Four seconds in, the first is answered; the second is sent only now...
        self.clock.advance(4)
        first_cpe.hanging[0].setResponseCode(204)
        first_cpe.hanging[0].finish()
        self.assertEqual(await first, "answered")
        await second_cpe.got_request
        # ...so its own 5 s have not run out when 5 s have passed since the wake.
        self.clock.advance(2)
        self.assertFalse(second.called)
        self.clock.advance(3)
        self.assertEqual(await second, "timeout")

    async def test_device_without_url_is_no_url(self) -> None:
        self.assertEqual(await self.requester.wake(self.device.id), "no_url")
        self.assertEqual(self.last_entry()["outcome"], "no_url")

    async def test_non_http_url_is_an_error_and_nothing_is_contacted(self) -> None:
        self.point_device_at("https://127.0.0.1:1/")
        self.assertEqual(await self.requester.wake(self.device.id), "error")
        self.assertIn("http", self.last_entry()["reason"])
        self.assertFalse(self.clock.getDelayedCalls())

    async def test_unknown_device_is_an_error_without_history(self) -> None:
        self.assertEqual(await self.requester.wake(999_999), "error")


def test_check_url_accepts_only_plain_http_with_a_host() -> None:
    assert check_url("http://127.0.0.1:7547/cr") is None
    assert check_url("http://[::1]:7547/") is None
    assert check_url("https://127.0.0.1/") is not None
    assert check_url("ftp://127.0.0.1/") is not None
    assert check_url("http:///nohost") is not None
    assert check_url("http://127.0.0.1:99999/") is not None
    assert check_url("http://127.0.0.1/a b") is not None
    assert check_url("127.0.0.1:7547") is not None
