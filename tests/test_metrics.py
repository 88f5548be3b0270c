"""The appliance's Prometheus metrics (acs/metrics.py) move as CWMP traffic happens: sessions
by outcome and their duration, RPCs and CPE faults by method and code, the CPE's own
requests, 503s at the session cap, tasks by kind and state; the exposition text is read with
``prometheus_client``'s own parser (tests/metricscheck.py). Real HTTP on loopback, a Clock
for the resource's time.
"""

from __future__ import annotations

import metricscheck
from cwmpharness import CwmpResourceCase, make_inform, wire

from acs.config import CwmpConfig
from acs.cwmp import rpc
from acs.metrics import fault_label, session_outcome


def test_fault_codes_outside_the_cwmp_ranges_are_one_label() -> None:
    assert [fault_label(c) for c in (9005, 8002, 9899, 9900, 0, -1, 10**12)] == [
        "9005", "8002", "9899", "other", "other", "other", "other"
    ]  # fmt: skip


def test_session_outcomes() -> None:
    assert [
        session_outcome(r)
        for r in (None, "timeout", "protocol error: x", "RPC cap per session reached", "x")
    ] == ["done", "timeout", "protocol_error", "rpc_cap", "aborted"]


class CwmpMetrics(CwmpResourceCase):
    def scrape(self, name: str, **labels: str) -> float | None:
        text = self.resource.metrics.render().decode()
        return metricscheck.value(text, name, **labels)

    async def test_a_session_with_a_fault_moves_its_counters(self) -> None:
        device = self.provisioned_device()
        self.engine.queue(
            device.id, "get_parameter_values", {"parameter_names": ["Device.X."]}, actor="op",
            wake=False,
        )  # fmt: skip
        reply = await self.start_session()
        cookie = reply.cookie
        done = await self.request(wire(rpc.TransferComplete("k")), cookie=cookie)
        assert done.code == 200
        request = (await self.request(cookie=cookie)).envelope()  # the CPE has no more
        assert isinstance(request.message, rpc.GetParameterValues)
        self.clock.advance(2)
        fault = rpc.Fault(9005, "Invalid parameter name")
        end = await self.request(wire(fault, request.header.id), cookie=cookie)
        assert end.code == 204  # nothing more to ask: the session ends
        self.assertEqual(self.scrape("acs_cwmp_sessions_total", outcome="done"), 1)
        self.assertEqual(self.scrape("acs_cwmp_session_duration_seconds_count"), 1)
        self.assertEqual(self.scrape("acs_cwmp_session_duration_seconds_sum"), 2)
        self.assertEqual(self.scrape("acs_cwmp_rpcs_total", method="GetParameterValues"), 1)
        self.assertEqual(
            self.scrape("acs_cwmp_faults_total", method="GetParameterValues", code="9005"), 1
        )
        self.assertEqual(self.scrape("acs_cwmp_cpe_requests_total", method="Inform"), 1)
        self.assertEqual(self.scrape("acs_cwmp_cpe_requests_total", method="TransferComplete"), 1)

    async def test_a_timed_out_session_is_counted_as_such(self) -> None:
        self.provisioned_device()
        await self.start_session()
        self.clock.advance(self.config.session_timeout + 1)
        self.assertEqual(self.scrape("acs_cwmp_sessions_total", outcome="timeout"), 1)
        self.assertEqual(self.scrape("acs_cwmp_sessions_total", outcome="done"), 0)

    async def test_503s_at_the_session_cap_are_counted(self) -> None:
        self.serve(CwmpConfig(max_sessions=1))
        self.provisioned_device("SN0001")
        self.provisioned_device("SN0002")
        await self.start_session("SN0001")
        self.assertEqual(self.scrape("acs_cwmp_busy_rejections_total"), 0)
        self.assertEqual(self.scrape("acs_cwmp_sessions_active"), 1)
        self.assertEqual((await self.request(wire(make_inform("SN0002")))).code, 503)
        self.assertEqual(self.scrape("acs_cwmp_busy_rejections_total"), 1)
