"""SimulatedCPE behaviour: RPC handling, events, and every timer driven by ``task.Clock``.

HTTP is replaced by a scripted in-memory ACS (a ``SessionClient`` answering synchronously),
so a whole session runs inside one ``clock.advance`` and scheduling is exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.trial import unittest

from acs.cwmp import rpc, soap
from cpe_sim.cpe import (
    HttpResponse,
    Profile,
    SimulatedCPE,
    jittered,
    parse_retry_after,
    retry_delay,
)
from cpe_sim.datamodel import load_template

NS = "urn:dslforum-org:cwmp-1-2"
PERIODIC_ENABLE = "Device.ManagementServer.PeriodicInformEnable"
INTERVAL = "Device.ManagementServer.PeriodicInformInterval"


@dataclass
class ScriptedAcs:
    """Answers CPE POSTs in memory: InformResponse, the scripted RPCs, then 204."""

    clock: task.Clock
    up: bool = True
    script: list[rpc.Message] = field(default_factory=list)
    informs: list[tuple[float, rpc.Inform]] = field(default_factory=list)
    answers: list[rpc.Message] = field(default_factory=list)
    cpe_requests: list[rpc.Message] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    file_status: int = 200
    _queue: list[rpc.Message] = field(default_factory=list)

    def client(self) -> ScriptedClient:
        return ScriptedClient(self)

    def answer(self, method: str, url: str, body: bytes | None) -> HttpResponse:
        if method == "GET":
            self.downloads.append(url)
            return HttpResponse(self.file_status, {}, b"firmware")
        if not body:
            return self._next(NS)
        envelope = soap.parse(body)
        m = envelope.message
        if isinstance(m, rpc.Inform):
            self.informs.append((self.clock.seconds(), m))
            self._queue = list(self.script)
            reply: rpc.Message = rpc.InformResponse(1)
        elif isinstance(m, rpc.TransferComplete):
            self.cpe_requests.append(m)
            reply = rpc.TransferCompleteResponse()
        else:
            self.answers.append(m)
            return self._next(envelope.ns)
        return self._envelope(reply, envelope.header.id, envelope.ns)

    def _next(self, ns: str) -> HttpResponse:
        if not self._queue:
            return HttpResponse(204, {}, b"")
        return self._envelope(self._queue.pop(0), "acs", ns)

    @staticmethod
    def _envelope(m: rpc.Message, cwmp_id: str | None, ns: str) -> HttpResponse:
        return HttpResponse(200, {}, soap.serialize(soap.Envelope(m, soap.Header(id=cwmp_id), ns)))

    def events(self, index: int = -1) -> list[str]:
        return [e.code for e in self.informs[index][1].events]


class ScriptedClient:
    def __init__(self, acs: ScriptedAcs) -> None:
        self.acs = acs

    def request(
        self, method: str, url: str, body: bytes | None, headers: object
    ) -> Deferred[HttpResponse]:
        if not self.acs.up:
            return fail(ConnectionRefusedError("ACS down"))
        return succeed(self.acs.answer(method, url, body))

    def close(self) -> Deferred[None]:
        return succeed(None)


def next_call(clock: task.Clock) -> float:
    calls: Sequence[Any] = clock.getDelayedCalls()
    return min(c.getTime() for c in calls)


class ClockTestCase(unittest.TestCase):
    def make(
        self, *, model: str = "tr181", interval: int | None = 100, jitter: float = 0.1, **kw: object
    ) -> tuple[task.Clock, ScriptedAcs, SimulatedCPE]:
        clock = task.Clock()
        acs = ScriptedAcs(clock)
        profile = Profile(
            reactor=clock,
            acs_url="http://127.0.0.1:7547/",
            interval=interval,
            jitter=jitter,
            rng=random.Random(7),
            client_factory=acs.client,
            **kw,  # type: ignore[arg-type]
        )
        cpe = SimulatedCPE("CLK000001", load_template(model), profile)
        self.addCleanup(cpe.stop)
        return clock, acs, cpe

    @staticmethod
    def fired(d: Deferred[None]) -> bool:
        out: list[object] = []
        d.addBoth(out.append)
        return bool(out)


class HandleTests(ClockTestCase):
    def test_unsupported_rpc_is_fault_9000(self) -> None:
        _, _, cpe = self.make()
        reply = cpe.handle(rpc.RequestDownload("1 Firmware Upgrade Image"))
        assert isinstance(reply, rpc.Fault)
        self.assertEqual(reply.code, 9000)
        self.assertEqual(cpe.faults, 1)

    def test_model_faults_become_rpc_faults_and_are_recorded(self) -> None:
        _, _, cpe = self.make()
        reply = cpe.handle(rpc.GetParameterValues(("Device.Nope",)))
        assert isinstance(reply, rpc.Fault)
        self.assertEqual((reply.code, reply.faultcode), (9005, "Client"))
        self.assertEqual(cpe.received, [rpc.GetParameterValues(("Device.Nope",))])

    def test_get_rpc_methods_lists_what_is_handled(self) -> None:
        _, _, cpe = self.make()
        reply = cpe.handle(rpc.GetRPCMethods())
        assert isinstance(reply, rpc.GetRPCMethodsResponse)
        self.assertIn("SetParameterValues", reply.methods)
        self.assertIn("Upload", reply.methods)
        self.assertNotIn("RequestDownload", reply.methods)

    def test_uptime_counts_from_boot(self) -> None:
        clock, _, cpe = self.make()
        clock.advance(42)
        reply = cpe.handle(rpc.GetParameterValues(("Device.DeviceInfo.UpTime",)))
        assert isinstance(reply, rpc.GetParameterValuesResponse)
        self.assertEqual(
            reply.parameters[0],
            rpc.ParameterValue("Device.DeviceInfo.UpTime", "42", "xsd:unsignedInt"),
        )

    def test_inform_carries_identity_forced_parameters_and_retry_count(self) -> None:
        _, _, cpe = self.make(model="tr098")
        inform = cpe.build_inform()
        self.assertEqual(
            inform.device_id, rpc.DeviceId("Acme Networks", "00D09E", "HG-098", "CLK000001")
        )
        names = {p.name for p in inform.parameters}
        self.assertIn("InternetGatewayDevice.DeviceSummary", names)
        self.assertIn("InternetGatewayDevice.ManagementServer.ParameterKey", names)
        self.assertEqual([e.code for e in inform.events], ["0 BOOTSTRAP"])
        self.assertEqual(inform.retry_count, 0)

    def test_schedule_inform_with_zero_delay_is_invalid(self) -> None:
        _, _, cpe = self.make()
        reply = cpe.handle(rpc.ScheduleInform(0, "k"))
        assert isinstance(reply, rpc.Fault)
        self.assertEqual(reply.code, 9003)


class PeriodicTests(ClockTestCase):
    def test_bootstrap_then_periodic_informs_within_the_jitter_window(self) -> None:
        clock, acs, cpe = self.make(interval=100, jitter=0.1)
        cpe.start()
        clock.advance(0)
        self.assertEqual(acs.events(), ["0 BOOTSTRAP"])
        gaps = []
        for n in range(2, 8):
            gap = next_call(clock) - clock.seconds()
            gaps.append(gap)
            self.assertTrue(90 <= gap <= 110, gap)
            clock.advance(gap - 0.01)
            self.assertEqual(len(acs.informs), n - 1)
            clock.advance(0.01)
            self.assertEqual(len(acs.informs), n)
            self.assertEqual(acs.events(), ["2 PERIODIC"])
        self.assertGreater(len(set(gaps)), 1)  # jittered, not a fixed beat

    def test_interval_provisioned_by_the_acs_reschedules_periodic_informs(self) -> None:
        clock, acs, cpe = self.make(interval=100, jitter=0)
        acs.script = [
            rpc.SetParameterValues((rpc.ParameterValue(INTERVAL, "1000", "xsd:unsignedInt"),))
        ]
        cpe.start()
        clock.advance(0)
        acs.script = []
        clock.advance(999)
        self.assertEqual(len(acs.informs), 1)
        clock.advance(1)
        self.assertEqual(len(acs.informs), 2)
        self.assertEqual(acs.informs[1][0], 1000)

    def test_periodic_inform_disabled_by_the_acs_stops_periodic_informs(self) -> None:
        clock, acs, cpe = self.make(interval=100, jitter=0)
        acs.script = [rpc.SetParameterValues((rpc.ParameterValue(PERIODIC_ENABLE, "false"),))]
        cpe.start()
        clock.advance(0)
        clock.advance(10_000)
        self.assertEqual(len(acs.informs), 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stop_cancels_every_timer(self) -> None:
        clock, acs, cpe = self.make()
        cpe.start(5)
        self.fired(cpe.stop())
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(1000)
        self.assertEqual(acs.informs, [])


class RetryTests(ClockTestCase):
    def test_failed_sessions_back_off_keep_events_and_count_retries(self) -> None:
        clock, acs, cpe = self.make(interval=None, periodic=False)
        acs.up = False
        cpe.start()
        done = cpe.next_session()
        clock.advance(0)
        self.assertTrue(self.fired(done))  # a failed session still fires next_session()
        self.assertEqual((cpe.sessions_failed, cpe.retry_count), (1, 1))
        first = next_call(clock) - clock.seconds()
        self.assertTrue(5 <= first <= 10, first)
        clock.advance(first)
        self.assertEqual(cpe.retry_count, 2)
        second = next_call(clock) - clock.seconds()
        self.assertTrue(10 <= second <= 20, second)
        acs.up = True
        clock.advance(second)
        self.assertEqual(cpe.sessions_ok, 1)
        _, inform = acs.informs[0]
        self.assertEqual(inform.retry_count, 2)
        self.assertEqual([e.code for e in inform.events], ["0 BOOTSTRAP"])
        self.assertEqual((cpe.retry_count, cpe.pending_events), (0, ()))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_503_with_retry_after_retries_after_that_delay_keeping_events(self) -> None:
        clock, acs, cpe = self.make(interval=None, periodic=False)
        busy = {"left": 2}
        answer = acs.answer

        def busy_then_ok(method: str, url: str, body: bytes | None) -> HttpResponse:
            if busy["left"] and body and isinstance(soap.parse(body).message, rpc.Inform):
                busy["left"] -= 1
                return HttpResponse(503, {"retry-after": ["3"]}, b"busy\n")
            return answer(method, url, body)

        acs.answer = busy_then_ok  # type: ignore[method-assign]
        cpe.start()
        clock.advance(0)
        self.assertEqual((cpe.sessions_failed, cpe.retry_count), (1, 1))
        self.assertIn("503", cpe.last_error or "")
        # The ACS's delay, not the 5-10 s back-off window (nor its doubling).
        self.assertEqual(next_call(clock) - clock.seconds(), 3)
        clock.advance(3)
        self.assertEqual((cpe.sessions_failed, cpe.sessions_busy), (2, 2))
        self.assertEqual(next_call(clock) - clock.seconds(), 3)
        clock.advance(3)
        self.assertEqual(cpe.sessions_ok, 1)
        _, inform = acs.informs[0]
        self.assertEqual([e.code for e in inform.events], ["0 BOOTSTRAP"])
        self.assertEqual(inform.retry_count, 2)
        self.assertEqual(cpe.pending_events, ())

    def test_503_without_retry_after_is_an_ordinary_failure(self) -> None:
        clock, acs, cpe = self.make(interval=None, periodic=False)
        acs.answer = lambda method, url, body: HttpResponse(503, {}, b"")  # type: ignore[method-assign]
        cpe.start()
        clock.advance(0)
        self.assertEqual((cpe.sessions_failed, cpe.sessions_busy), (1, 0))
        self.assertTrue(5 <= next_call(clock) - clock.seconds() <= 10)

    def test_retry_after_is_read_as_seconds_or_http_date(self) -> None:
        self.assertEqual(parse_retry_after("7", 0.0), 7.0)
        self.assertEqual(parse_retry_after(" 0 ", 0.0), 0.0)
        self.assertEqual(parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0), 60.0)
        self.assertEqual(parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 500.0), 0.0)
        for bad in (None, "", "soon", "-5", "1.5e3"):
            self.assertIsNone(parse_retry_after(bad, 0.0), bad)

    def test_retry_window_doubles_and_is_capped(self) -> None:
        rng = random.Random(1)
        for n, low in [(1, 5), (2, 10), (3, 20), (10, 2560), (25, 2560)]:
            for _ in range(20):
                delay = retry_delay(n, rng)
                self.assertTrue(low <= delay <= 2 * low, (n, delay))

    def test_jitter_stays_within_bounds(self) -> None:
        rng = random.Random(3)
        values = [jittered(300, 0.2, rng) for _ in range(200)]
        self.assertTrue(all(240 <= v <= 360 for v in values))
        self.assertEqual(jittered(300, 0, rng), 300)


class RebootTests(ClockTestCase):
    def test_reboot_goes_offline_then_informs_boot_and_m_reboot(self) -> None:
        clock, acs, cpe = self.make(interval=None, reboot_delay=30)
        cpe.start()
        clock.advance(0)
        acs.script = [rpc.Reboot("cmd-7")]
        cpe.inform(rpc.EventStruct("6 CONNECTION REQUEST"))
        self.assertEqual(acs.answers, [rpc.RebootResponse()])
        acs.script = []
        self.assertFalse(cpe.online)
        self.assertFalse(cpe.connection_request())
        clock.advance(29.9)
        self.assertEqual(len(acs.informs), 2)
        clock.advance(0.1)
        self.assertTrue(cpe.online)
        self.assertEqual(len(acs.informs), 3)
        self.assertEqual(acs.events(), ["1 BOOT", "M Reboot"])
        self.assertEqual(acs.informs[-1][1].events[1].command_key, "cmd-7")
        self.assertEqual(cpe.reboots, 1)
        # Uptime restarted at the reboot.
        clock.advance(5)
        self.assertEqual(cpe.build_inform().current_time, "1970-01-01T00:00:35Z")
        uptime = cpe.handle(rpc.GetParameterValues(("Device.DeviceInfo.UpTime",)))
        assert isinstance(uptime, rpc.GetParameterValuesResponse)
        self.assertEqual(uptime.parameters[0].value, "5")

    def test_factory_reset_restores_the_template_and_bootstraps(self) -> None:
        clock, acs, cpe = self.make(interval=None, reboot_delay=1)
        ssid = "Device.WiFi.SSID.1.SSID"
        acs.script = [rpc.SetParameterValues((rpc.ParameterValue(ssid, "Mine"),), "k")]
        cpe.start()
        clock.advance(0)
        self.assertEqual(cpe.value(ssid), "Mine")
        acs.script = [rpc.FactoryReset()]
        cpe.inform()
        acs.script = []
        clock.advance(1)
        self.assertEqual(cpe.factory_resets, 1)
        self.assertEqual(acs.events(), ["0 BOOTSTRAP", "1 BOOT"])
        self.assertEqual(cpe.value(ssid), "Acme-2G")
        self.assertEqual(cpe.value("Device.DeviceInfo.SerialNumber"), "CLK000001")
        self.assertEqual(cpe.value("Device.ManagementServer.ParameterKey"), "")


class EventTests(ClockTestCase):
    def test_connection_requests_before_the_session_share_one_session(self) -> None:
        clock, acs, cpe = self.make(interval=None)
        cpe.start()
        clock.advance(0)
        for _ in range(3):
            self.assertTrue(cpe.connection_request())
        self.assertEqual(len(acs.informs), 1)  # the session opens on the next reactor turn
        clock.advance(0)
        self.assertEqual(len(acs.informs), 2)
        self.assertEqual(acs.events(), ["6 CONNECTION REQUEST"])

    def test_inform_during_a_session_runs_right_after_it(self) -> None:
        _, acs, cpe = self.make(interval=None)
        first = cpe.inform()
        # Synchronous scripted HTTP: the first session already completed.
        self.assertTrue(self.fired(first))
        second = cpe.inform(rpc.EventStruct("4 VALUE CHANGE"))
        self.assertTrue(self.fired(second))
        self.assertEqual(acs.events(), ["4 VALUE CHANGE"])

    def test_m_events_are_kept_per_command_key(self) -> None:
        _, _, cpe = self.make()
        cpe.add_event(rpc.EventStruct("M Reboot", "a"))
        cpe.add_event(rpc.EventStruct("M Reboot", "a"))
        cpe.add_event(rpc.EventStruct("M Reboot", "b"))
        cpe.add_event(rpc.EventStruct("0 BOOTSTRAP"))
        self.assertEqual(len(cpe.pending_events), 3)

    def test_schedule_inform_fires_after_its_delay(self) -> None:
        clock, acs, cpe = self.make(interval=None)
        acs.script = [rpc.ScheduleInform(60, "sched")]
        cpe.start()
        clock.advance(0)
        acs.script = []
        clock.advance(59)
        self.assertEqual(len(acs.informs), 1)
        clock.advance(1)
        self.assertEqual(acs.events(), ["3 SCHEDULED", "M ScheduleInform"])

    def test_acs_url_change_triggers_a_bootstrap(self) -> None:
        clock, acs, cpe = self.make(interval=None)
        url = "Device.ManagementServer.URL"
        acs.script = [rpc.SetParameterValues((rpc.ParameterValue(url, "http://127.0.0.1:9/"),))]
        cpe.inform()
        acs.script = []
        clock.advance(0)
        self.assertEqual(acs.events(), ["0 BOOTSTRAP"])
        self.assertEqual(len(acs.informs), 2)


class DownloadTests(ClockTestCase):
    def test_firmware_download_reports_transfer_complete_and_upgrades(self) -> None:
        clock, acs, cpe = self.make(interval=None, reboot_delay=2)
        acs.script = [
            rpc.Download(
                "fw-1",
                "1 Firmware Upgrade Image",
                "http://127.0.0.1:7567/f/hg-2.1.0.bin",
                file_size=8,
            )
        ]
        cpe.inform()
        acs.script = []
        self.assertEqual(acs.answers, [rpc.DownloadResponse(1)])
        clock.advance(0)  # the download starts after the session
        self.assertEqual(acs.downloads, ["http://127.0.0.1:7567/f/hg-2.1.0.bin"])
        self.assertFalse(cpe.online)  # installing
        clock.advance(2)
        self.assertEqual(acs.events(), ["7 TRANSFER COMPLETE", "M Download", "1 BOOT"])
        [tc] = acs.cpe_requests
        assert isinstance(tc, rpc.TransferComplete)
        self.assertEqual((tc.command_key, tc.fault.code), ("fw-1", 0))
        self.assertEqual(cpe.value("Device.DeviceInfo.SoftwareVersion"), "2.1.0")

    def test_failed_download_reports_the_fault_without_upgrading(self) -> None:
        clock, acs, cpe = self.make(interval=None)
        acs.file_status = 404
        acs.script = [
            rpc.Download("fw-2", "1 Firmware Upgrade Image", "http://127.0.0.1/x-9.9.bin")
        ]
        cpe.inform()
        acs.script = []
        clock.advance(0)
        [tc] = acs.cpe_requests
        assert isinstance(tc, rpc.TransferComplete)
        self.assertEqual(tc.fault.code, 9016)
        self.assertEqual(cpe.value("Device.DeviceInfo.SoftwareVersion"), "1.0.0")
        self.assertTrue(cpe.online)


class ValueChangeTests(ClockTestCase):
    """A parameter changing by itself is reported as its notification attribute says."""

    CODE = "Device.DeviceInfo.Description"

    def started(self, notification: int | None) -> tuple[task.Clock, ScriptedAcs, SimulatedCPE]:
        clock, acs, cpe = self.make(interval=100, jitter=0)
        if notification is not None:
            acs.script = [
                rpc.SetParameterAttributes(
                    (rpc.SetParameterAttributesStruct(self.CODE, True, notification),)
                )
            ]
        cpe.start()
        clock.advance(0)
        acs.script = []
        return clock, acs, cpe

    def reported(self, acs: ScriptedAcs) -> dict[str, str]:
        return {p.name: p.value for p in acs.informs[-1][1].parameters}

    def test_an_active_notification_informs_at_once_with_the_value(self) -> None:
        clock, acs, cpe = self.started(2)
        cpe.change_value("DeviceInfo.Description", "NEW")  # relative to the root
        clock.advance(1)
        self.assertEqual(len(acs.informs), 2)
        self.assertEqual(acs.events(), ["4 VALUE CHANGE"])
        self.assertEqual(self.reported(acs)[self.CODE], "NEW")
        clock.advance(100)  # reported once: the next periodic Inform carries it no more
        self.assertEqual(acs.events(), ["2 PERIODIC"])
        self.assertNotIn(self.CODE, self.reported(acs))

    def test_a_change_while_the_inform_is_on_its_way_is_reported_after_it(self) -> None:
        clock, acs, cpe = self.started(2)
        answer = acs.answer
        changes = ["NEWER"]

        def change_meanwhile(method: str, url: str, body: bytes | None) -> Any:
            if changes and body and isinstance(soap.parse(body).message, rpc.Inform):
                cpe.change_value(self.CODE, changes.pop())  # after the Inform was built
            return answer(method, url, body)

        acs.answer = change_meanwhile  # type: ignore[method-assign]
        cpe.change_value(self.CODE, "NEW")
        clock.advance(1)
        # Bootstrap, "NEW", then "NEWER" in a VALUE CHANGE Inform of its own.
        third = acs.informs[2][1]
        self.assertEqual([e.code for e in third.events], ["4 VALUE CHANGE"])
        self.assertEqual({p.name: p.value for p in third.parameters}[self.CODE], "NEWER")
        self.assertEqual(cpe.pending_events, ())

    def test_a_passive_notification_waits_for_the_next_inform(self) -> None:
        clock, acs, cpe = self.started(1)
        cpe.change_value(self.CODE, "NEW")
        clock.advance(99)
        self.assertEqual(len(acs.informs), 1)
        clock.advance(1)
        self.assertEqual(sorted(acs.events()), ["2 PERIODIC", "4 VALUE CHANGE"])
        self.assertEqual(self.reported(acs)[self.CODE], "NEW")

    def test_without_a_notification_the_change_is_not_reported(self) -> None:
        clock, acs, cpe = self.started(None)
        cpe.change_value(self.CODE, "NEW")
        clock.advance(100)
        self.assertEqual(acs.events(), ["2 PERIODIC"])
        self.assertNotIn(self.CODE, self.reported(acs))
        self.assertEqual(cpe.model.get_raw(self.CODE), "NEW")

    def test_an_unknown_parameter_is_an_error(self) -> None:
        _, _, cpe = self.started(None)
        with self.assertRaises(ValueError):
            cpe.change_value("DeviceInfo.NoSuchThing", "x")


class QueuedTransferTests(ClockTestCase):
    def test_accepted_transfers_are_listed_until_they_complete(self) -> None:
        _, _, cpe = self.make()
        self.assertEqual(cpe.handle(rpc.GetQueuedTransfers()), rpc.GetQueuedTransfersResponse(()))
        download = rpc.Download("dl-1", "1 Firmware Upgrade Image", "http://127.0.0.1:1/fw")
        self.assertEqual(cpe.handle(download), rpc.DownloadResponse(1))
        self.assertEqual(
            cpe.handle(rpc.GetQueuedTransfers()),
            rpc.GetQueuedTransfersResponse((rpc.QueuedTransfer("dl-1", 1),)),
        )
