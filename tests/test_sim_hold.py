"""The simulator honours the ACS's ``HoldRequests`` header (spec §1.3).

A scripted in-memory ACS (a ``SessionClient`` answering synchronously, time on ``task.Clock``)
marks each of its messages with HoldRequests or not, records what every CPE POST carried, and
flags any CPE request that arrives while its last message said HoldRequests=true.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.trial import unittest

from acs.cwmp import rpc, soap
from cpe_sim.cpe import HttpResponse, Profile, SimulatedCPE
from cpe_sim.datamodel import load_template

NS = soap.CWMP_NS["1.2"]
CONFIG_FILE = "3 Vendor Configuration File"  # no reboot after it, unlike a firmware image


@dataclass
class HoldingAcs:
    """Answers the Inform and TransferComplete, then sends ``script`` RPCs, then 204."""

    hold_on_inform: bool = False
    hold_on_transfer_complete: bool = False
    # ACS RPCs sent after the CPE's empty POST, each with its HoldRequests flag.
    script: list[tuple[rpc.Message, bool]] = field(default_factory=list)
    accepting: bool = True  # False: every POST is answered 503 (file GETs still work)
    faults_for_transfer_complete: int = 0  # answer this many TransferCompletes with a Fault
    posts: list[str] = field(default_factory=list)  # "empty" or the message's class name
    informs: list[rpc.Inform] = field(default_factory=list)
    transfer_completes: list[rpc.TransferComplete] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _hold: bool = False  # HoldRequests of the last message this ACS sent
    _queue: list[tuple[rpc.Message, bool]] = field(default_factory=list)

    def client(self) -> HoldingClient:
        return HoldingClient(self)

    def answer(self, method: str, body: bytes | None) -> HttpResponse:
        if method == "GET":
            return HttpResponse(200, {}, b"config")
        if not self.accepting:
            return HttpResponse(503, {}, b"")
        if not body:
            self.posts.append("empty")
            return self._next()
        envelope = soap.parse(body)
        m = envelope.message
        self.posts.append(type(m).__name__)
        if isinstance(m, rpc.Inform):
            self.informs.append(m)
            self._queue = list(self.script)
            return self._reply(rpc.InformResponse(1), envelope.header.id, self.hold_on_inform)
        if self._hold and type(m) in rpc.CPE_REQUESTS:
            self.violations.append(f"{type(m).__name__} sent while HoldRequests was true")
        if isinstance(m, rpc.TransferComplete):
            self.transfer_completes.append(m)
            if self.faults_for_transfer_complete > 0:
                self.faults_for_transfer_complete -= 1
                return self._reply(rpc.Fault(8002, "Internal error"), envelope.header.id, False)
            return self._reply(
                rpc.TransferCompleteResponse(), envelope.header.id, self.hold_on_transfer_complete
            )
        return self._next()

    def _next(self) -> HttpResponse:
        if not self._queue:
            self._hold = False  # no envelope, no HoldRequests
            return HttpResponse(204, {}, b"")
        message, hold = self._queue.pop(0)
        return self._reply(message, "acs-1", hold)

    def _reply(self, message: rpc.Message, cwmp_id: str | None, hold: bool) -> HttpResponse:
        self._hold = hold
        header = soap.Header(id=cwmp_id, hold_requests=True if hold else None)
        return HttpResponse(200, {}, soap.serialize(soap.Envelope(message, header, NS)))


class HoldingClient:
    def __init__(self, acs: HoldingAcs) -> None:
        self.acs = acs

    def request(
        self, method: str, url: str, body: bytes | None, headers: object
    ) -> Deferred[HttpResponse]:
        return succeed(self.acs.answer(method, body))

    def close(self) -> Deferred[None]:
        return succeed(None)


class HoldRequestsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.acs = HoldingAcs()
        profile = Profile(
            reactor=self.clock,
            acs_url="http://127.0.0.1:7547/",
            periodic=False,
            rng=random.Random(3),
            client_factory=self.acs.client,
        )
        self.cpe = SimulatedCPE("HOLD00001", load_template("tr181"), profile)
        self.addCleanup(self.cpe.stop)

    def downloads(self, *keys: str) -> None:
        """Bootstrap with Download RPCs for ``keys``; leaves the files being fetched."""
        self.acs.script = [
            (rpc.Download(key, CONFIG_FILE, f"http://127.0.0.1:7567/{key}.cfg"), False)
            for key in keys
        ]
        self.cpe.inform()
        self.assertEqual(self.cpe.sessions_ok, 1, self.cpe.last_error)
        self.acs.script = []
        self.acs.posts.clear()

    def test_transfer_complete_goes_right_after_the_inform_without_hold(self) -> None:
        self.downloads("cfg-1")
        self.acs.script = [(rpc.GetRPCMethods(), False)]
        self.clock.advance(0)  # the download finishes and opens a session
        self.assertEqual(
            self.acs.posts, ["Inform", "TransferComplete", "empty", "GetRPCMethodsResponse"]
        )
        self.assertEqual(self.cpe.sessions_ok, 2, self.cpe.last_error)

    def test_hold_on_inform_response_defers_transfer_complete_until_the_hold_is_lifted(
        self,
    ) -> None:
        self.downloads("cfg-1")
        self.acs.hold_on_inform = True
        self.acs.script = [(rpc.GetRPCMethods(), True)]
        self.clock.advance(0)

        # Held: an empty POST, then only the response to the ACS's RPC (which holds again);
        # the 204 carries no HoldRequests, so the TransferComplete goes out after it.
        self.assertEqual(
            self.acs.posts,
            ["Inform", "empty", "GetRPCMethodsResponse", "TransferComplete", "empty"],
        )
        self.assertEqual(self.acs.violations, [])
        self.assertEqual(self.cpe.sessions_ok, 2, self.cpe.last_error)
        [tc] = self.acs.transfer_completes
        self.assertEqual((tc.command_key, tc.fault.code), ("cfg-1", 0))
        self.assertEqual(self.cpe.pending_events, ())

    def test_hold_on_a_transfer_complete_response_holds_the_next_request(self) -> None:
        self.downloads("cfg-1", "cfg-2")
        # Both downloads finish while the ACS refuses sessions: two requests wait.
        self.acs.accepting = False
        self.clock.advance(0)
        self.assertEqual(self.cpe.sessions_failed, 2)
        self.acs.accepting = True
        self.acs.hold_on_transfer_complete = True

        self.cpe.inform()

        self.assertEqual(
            self.acs.posts,
            ["Inform", "TransferComplete", "empty", "TransferComplete", "empty"],
        )
        self.assertEqual(self.acs.violations, [])
        self.assertEqual([tc.command_key for tc in self.acs.transfer_completes], ["cfg-1", "cfg-2"])
        self.assertEqual(self.cpe.sessions_failed, 2)
        self.assertEqual(self.cpe.sessions_ok, 2, self.cpe.last_error)

    def test_undelivered_transfer_complete_keeps_its_events_for_the_next_inform(self) -> None:
        self.downloads("cfg-1")
        self.acs.faults_for_transfer_complete = 1
        self.clock.advance(0)  # delivered Inform, refused TransferComplete: the session fails
        self.assertEqual(self.cpe.sessions_failed, 1)
        first = [e.code for e in self.acs.informs[-1].events]
        self.assertEqual(first, ["7 TRANSFER COMPLETE", "M Download"])

        self.cpe.inform()

        again = [(e.code, e.command_key) for e in self.acs.informs[-1].events]
        self.assertEqual(again, [("7 TRANSFER COMPLETE", ""), ("M Download", "cfg-1")])
        self.assertEqual([tc.command_key for tc in self.acs.transfer_completes], ["cfg-1"] * 2)
        self.assertEqual(self.cpe.pending_events, ())
