"""A hostile CPE against the CWMP resource on 127.0.0.1 (issue 9, defects 1-3, secrets in
transcripts): every case was reproduced on main, and each test fails without its fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cwmpharness import REACTOR, T0, CwmpResourceCase, make_inform, wire
from twisted.internet import defer
from twisted.web.client import HTTPConnectionPool

from acs.config import CwmpConfig
from acs.cwmp import rpc, soap
from acs.cwmp_http import OFF_THREAD_BYTES
from acs.files import thread_runner


def kept_alive(test: CwmpResourceCase) -> HTTPConnectionPool:
    """One TCP connection for every request (what a CPE's HTTP client does in a session)."""
    pool = HTTPConnectionPool(REACTOR, persistent=True)
    pool.maxPersistentPerHost = 1
    pool.retryAutomatically = False
    test.addCleanup(pool.closeCachedConnections)
    return pool


def with_serial(serial: str, **ident: str) -> bytes:
    inform = make_inform()
    return wire(replace(inform, device_id=replace(inform.device_id, serial_number=serial, **ident)))


class SessionCap(CwmpResourceCase):
    async def test_informs_on_one_connection_cannot_open_sessions_past_the_cap(self) -> None:
        self.serve(CwmpConfig(max_sessions=3))
        pool = kept_alive(self)
        for i in range(10):
            reply = await self.request(wire(make_inform(f"SN-{i}")), pool=pool)
            self.assertEqual(reply.code, 200)
            # Each Inform ends the session its connection had: one live session, not i + 1.
            self.assertEqual(self.resource.active_sessions(), 1)
        self.assertEqual(self.store.count_devices(), 10)

    async def test_a_replacing_inform_still_counts_against_a_full_cap(self) -> None:
        self.serve(CwmpConfig(max_sessions=2))
        pool = kept_alive(self)
        await self.request(wire(make_inform("SN-A")), pool=pool)
        await self.start_session("SN-B")
        # The cap is full with A and B; A's connection informing again replaces A.
        reply = await self.request(wire(make_inform("SN-C")), pool=pool)
        self.assertEqual(reply.code, 200)
        self.assertEqual(self.resource.active_sessions(), 2)
        # Another connection is turned away, as before.
        self.assertEqual((await self.request(wire(make_inform("SN-D")))).code, 503)


class SessionTimeoutBound(CwmpResourceCase):
    async def test_a_huge_session_timeout_is_clamped_and_the_idle_connection_closed(self) -> None:
        self.serve(CwmpConfig(max_sessions=4, max_session_timeout=120))
        pool = kept_alive(self)
        ns = soap.CWMP_NS["1.3"]
        inform = wire(make_inform("SN-T"), ns=ns, session_timeout=2_000_000_000)
        self.assertEqual((await self.request(inform, pool=pool)).code, 200)
        device = self.store.find_device_by_serial("SN-T")
        assert device is not None
        channel = self.resource._by_device[device.id].channel
        self.clock.advance(121)
        await self.resource.settled()
        self.assertFalse(self.resource.in_session(device.id))
        self.assertEqual(self.resource.active_sessions(), 0)
        self.assertTrue(channel.transport.disconnecting)


class DeviceIdRules(CwmpResourceCase):
    async def assert_refused(self, body: bytes) -> None:
        reply = await self.request(body)
        self.assertEqual(reply.code, 200)
        fault = reply.envelope().message
        assert isinstance(fault, rpc.Fault), fault
        self.assertEqual(fault.code, 8003)
        self.assertIn("DeviceId", fault.string)
        self.assertEqual(self.store.count_devices(), 0)
        self.assertEqual(self.resource.active_sessions(), 0)

    async def test_serials_the_api_would_refuse_are_refused_at_the_inform(self) -> None:
        for serial in (
            "S" * 7_000_000,
            "S" * 65,
            "AB/CD",
            "AB CD",
            "AB\tCD",
            "AB\nINFO forged log line",
            "AB\u202eDC",  # right-to-left override
            "AB\u200bCD",  # zero-width space
            "",
        ):
            await self.assert_refused(with_serial(serial))

    async def test_other_device_id_fields_keep_their_schema_lengths(self) -> None:
        await self.assert_refused(with_serial("SN1", manufacturer="M" * 65))
        await self.assert_refused(with_serial("SN1", oui="0" * 7))
        await self.assert_refused(with_serial("SN1", product_class="P\u202eX"))

    async def test_overlong_reported_strings_are_not_stored(self) -> None:
        inform = make_inform("SN-LONG")
        params = (
            rpc.ParameterValue("Device.DeviceInfo.SoftwareVersion", "v" * 100_000),
            rpc.ParameterValue("Device.ManagementServer.ConnectionRequestURL", "http://x/" * 60),
        )
        reply = await self.request(wire(replace(inform, parameters=params)))
        self.assertEqual(reply.code, 200)
        device = self.store.find_device_by_serial("SN-LONG")
        assert device is not None
        self.assertIsNone(device.software_version)
        self.assertIsNone(device.connection_request_url)

    async def test_a_serial_with_blanks_around_it_is_still_accepted_trimmed(self) -> None:
        self.assertEqual((await self.request(with_serial("  SN-PAD  "))).code, 200)
        self.assertIsNotNone(self.store.find_device_by_serial("SN-PAD"))


class TranscriptSecrets(CwmpResourceCase):
    async def test_transcripts_are_stored_redacted_and_bounded(self) -> None:
        device = self.provisioned_device(debug=True)
        secret = "hunter2-wifi-key"
        self.engine.queue(
            device.id,
            "set_parameter_values",
            {
                "parameters": [
                    {
                        "name": "Device.WiFi.AccessPoint.1.Security.KeyPassphrase",
                        "value": secret,
                        "type": "xsd:string",
                    }
                ]
            },
            actor="test",
            wake=False,
            now=T0,
        )
        inform = await self.start_session()
        sent = (await self.request(b"", cookie=inform.cookie)).envelope()
        self.assertIsInstance(sent.message, rpc.SetParameterValues)
        # A big answer: the transcript keeps its first MiB only.
        padding = rpc.SetParameterValuesResponse(0)
        body = wire(padding, sent.header.id).replace(
            b"<Status>", b"<!--" + b"x" * 3_000_000 + b"--><Status>"
        )
        await self.request(body, cookie=inform.cookie)
        await self.resource.settled()
        (stored,) = self.store.session_transcripts(device.id)
        self.assertNotIn(secret, stored.transcript)
        self.assertIn("[redacted]", stored.transcript)
        self.assertLess(len(stored.transcript), 1_100_000)
        self.assertIn("transcript truncated", stored.transcript)


class IdleSessionsAtTheCap(CwmpResourceCase):
    async def test_sessions_idle_past_the_grace_give_their_slot_to_new_informs(self) -> None:
        self.serve(CwmpConfig(max_sessions=3, idle_grace=10))
        a = await self.start_session("SN-A")
        await self.start_session("SN-B")
        await self.start_session("SN-C")
        self.assertEqual((await self.request(wire(make_inform("SN-D")))).code, 503)
        self.clock.advance(6)
        # A keeps working (a CPE request in its session); B and C send nothing more.
        busy = await self.request(wire(rpc.GetRPCMethods()), cookie=a.cookie)
        self.assertIsInstance(busy.envelope().message, rpc.GetRPCMethodsResponse)
        self.clock.advance(5)
        # B and C idle 11 s > 10 s grace: each new Inform takes the idlest one's slot.
        self.assertEqual((await self.request(wire(make_inform("SN-D")))).code, 200)
        self.assertEqual((await self.request(wire(make_inform("SN-E")))).code, 200)
        self.assertEqual(self.resource.idle_evictions, 2)
        self.assertEqual(self.resource.active_sessions(), 3)
        devices = [self.store.find_device_by_serial(s) for s in ("SN-A", "SN-B", "SN-C")]
        self.assertEqual(
            [d.serial_number for d in devices if d and self.resource.in_session(d.id)], ["SN-A"]
        )
        # A (idle 5 s) and the new ones are within the grace: the cap holds.
        self.assertEqual((await self.request(wire(make_inform("SN-F")))).code, 503)
        self.assertEqual(self.resource.busy_rejections, 2)

    async def test_below_the_cap_idle_sessions_keep_their_slot(self) -> None:
        self.serve(CwmpConfig(max_sessions=3, idle_grace=10, session_timeout=30))
        await self.start_session("SN-A")
        self.clock.advance(25)
        await self.start_session("SN-B")
        a = self.store.find_device_by_serial("SN-A")
        assert a is not None
        self.assertTrue(self.resource.in_session(a.id))
        self.assertEqual(self.resource.idle_evictions, 0)


def big_inform(serial: str) -> bytes:
    """An Inform of about 400 KB, past OFF_THREAD_BYTES."""
    inform = make_inform(serial)
    extra = tuple(rpc.ParameterValue(f"Device.X_Test.P{i}", "v" * 200) for i in range(1500))
    body = wire(replace(inform, parameters=inform.parameters + extra))
    assert len(body) > OFF_THREAD_BYTES
    return body


class BigBodiesOffTheReactor(CwmpResourceCase):
    async def test_other_cpes_are_answered_while_a_big_body_is_parsed(self) -> None:
        held: list[tuple[defer.Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []
        arrived: defer.Deferred[None] = defer.Deferred()

        def worker(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
            d: defer.Deferred[Any] = defer.Deferred()
            held.append((d, f, args))
            arrived.callback(None)
            return d

        self.serve(CwmpConfig(), threads=worker)
        big = defer.Deferred.fromCoroutine(self.request(big_inform("SN-BIG")))
        await arrived
        # The big body waits for its worker; a small Inform is parsed inline and answered.
        small = await self.start_session("SN-SMALL")
        self.assertIsInstance(small.envelope().message, rpc.InformResponse)
        self.assertFalse(big.called)
        ((d, f, args),) = held
        d.callback(f(*args))
        reply = await big
        self.assertEqual(reply.code, 200)
        self.assertIsInstance(reply.envelope().message, rpc.InformResponse)
        self.assertIsNotNone(self.store.find_device_by_serial("SN-BIG"))
        self.assertEqual(self.resource.active_sessions(), 2)

    async def test_a_big_body_goes_through_a_real_worker_thread(self) -> None:
        self.serve(CwmpConfig(), threads=thread_runner(REACTOR))
        reply = await self.request(big_inform("SN-BIG"))
        self.assertEqual(reply.code, 200)
        self.assertIsInstance(reply.envelope().message, rpc.InformResponse)
        # A garbled big body is refused as before, from the worker's SoapError.
        garbled = await self.request(b"<x>" + b" " * OFF_THREAD_BYTES)
        self.assertEqual(garbled.code, 400)
        self.assertIn(b"Invalid CWMP message", garbled.body)
        # The session continues inline: its next (empty) POST gets the provisioning RPC.
        following = await self.request(b"", cookie=reply.cookie)
        self.assertIsInstance(following.envelope().message, rpc.SetParameterValues)


class BigBodyWorkerFailure(CwmpResourceCase):
    async def test_a_parse_that_breaks_in_the_worker_is_a_500_not_a_hang(self) -> None:
        def broken(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
            return defer.fail(MemoryError("worker out of memory"))

        self.serve(CwmpConfig(), threads=broken)
        reply = await self.request(big_inform("SN-BIG"))
        self.assertEqual(reply.code, 500)
        self.assertIsNone(self.store.find_device_by_serial("SN-BIG"))
        self.flushLoggedErrors(MemoryError)
