"""The session-level conformance check itself: it passes valid sessions and names what is
wrong in invalid ones (so the end-to-end tests that rely on it can fail)."""

from __future__ import annotations

from typing import Any

import pytest
import treq
from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from wirecheck import ConformanceTap, SessionConformance

from acs.cwmp import rpc, soap

INFORM = rpc.Inform(
    device_id=rpc.DeviceId("Acme", "00AABB", "Router", "SN1"),
    events=(rpc.EventStruct("2 PERIODIC"),),
    current_time="2024-01-01T00:00:00Z",
    parameters=(rpc.ParameterValue("Device.DeviceInfo.SoftwareVersion", "1.0"),),
)


def body(message: rpc.Message, ns: str, **header: Any) -> bytes:
    return soap.serialize(soap.Envelope(message, soap.Header(id="1", **header), ns))


def session(
    checker: SessionConformance,
    exchanges: list[tuple[bytes, bytes]],
) -> None:
    """Feed (cpe body, acs body) pairs of one session on one connection."""
    channel = object()
    for cpe, acs in exchanges:
        checker.exchange(cpe, acs, acs_xml=bool(acs), cookies=[], set_cookie=None, channel=channel)


def failures(exchanges: list[tuple[bytes, bytes]]) -> str:
    checker = SessionConformance()
    session(checker, exchanges)
    return "\n".join(checker.failures)


NS10, NS12 = soap.CWMP_NS["1.0"], soap.CWMP_NS["1.2"]
FAULT_8006 = rpc.Fault(8006, "ACS version incompatible with CPE", faultcode="Client")


def test_a_valid_session_passes_and_counts_what_it_checked() -> None:
    checker = SessionConformance()
    session(
        checker,
        [
            (body(INFORM, NS10), body(rpc.InformResponse(1), NS10)),
            (b"", body(rpc.GetParameterValues(("Device.",)), NS10)),
            (body(rpc.GetParameterValuesResponse(()), NS10), b""),
        ],
    )
    assert checker.failures == []
    assert checker.checked == {
        "acs": ["InformResponse", "GetParameterValues"],
        "cpe": ["Inform", "GetParameterValuesResponse"],
    }
    checker.assert_clean()


def test_fault_8006_in_a_1_0_session_fails_naming_the_message_and_the_schema_error() -> None:
    found = failures([(body(INFORM, NS10), body(FAULT_8006, NS10))])
    assert "CWMP 1.0), acs Fault" in found
    assert "Element 'FaultCode': '8006' is not a valid value" in found


def test_an_offer_answered_with_use_cwmp_version_makes_the_session_1_4() -> None:
    offer = body(INFORM, NS12, supported_versions="1.2,1.3,1.4")
    negotiated = body(rpc.InformResponse(1), NS12, use_version="1.4")
    assert failures([(offer, negotiated)]) == ""
    assert failures([(body(INFORM, NS12, supported_versions="2.0"), body(FAULT_8006, NS12))]) == ""
    # Without the offer the same answer is a 1.2 session's, which has no UseCWMPVersion.
    found = failures([(body(INFORM, NS12), negotiated)])
    assert "header UseCWMPVersion is not declared by CWMP 1.2" in found


def test_session_timeout_makes_a_1_2_namespace_session_1_3() -> None:
    timed = body(INFORM, NS12, session_timeout=30)
    assert failures([(timed, body(rpc.InformResponse(1), NS12))]) == ""
    # In a 1.1 session, SessionTimeout is not a header the version has.
    ns11 = soap.CWMP_NS["1.1"]
    found = failures([(body(INFORM, ns11, session_timeout=30), body(rpc.InformResponse(1), ns11))])
    assert "cpe Inform" in found and "SessionTimeout is not declared by CWMP 1.1" in found


def test_a_header_the_version_lacks_fails() -> None:
    found = failures([(body(INFORM, NS10), body(rpc.InformResponse(1), NS10, use_version="1.4"))])
    assert "header UseCWMPVersion is not declared by CWMP 1.0" in found


def test_a_header_sent_in_the_wrong_direction_fails() -> None:
    held = body(INFORM, NS10, hold_requests=True)
    assert "HoldRequests may not be sent by the cpe" in failures(
        [(held, body(rpc.InformResponse(1), NS10))]
    )


def test_a_namespace_change_within_the_session_fails() -> None:
    found = failures(
        [
            (body(INFORM, NS10), body(rpc.InformResponse(1), NS10)),
            (b"", body(rpc.Reboot("k"), soap.CWMP_NS["1.1"])),
        ]
    )
    assert "acs Reboot" in found and "not urn:dslforum-org:cwmp-1-0" in found


def test_a_body_the_schema_refuses_fails() -> None:
    broken = body(rpc.InformResponse(1), NS10).replace(b"MaxEnvelopes", b"MaxEnvelope")
    found = failures([(body(INFORM, NS10), broken)])
    assert "acs InformResponse" in found and "MaxEnvelope" in found


def test_a_use_cwmp_version_the_cpe_did_not_offer_fails() -> None:
    offer = body(INFORM, NS12, supported_versions="1.2,1.3")
    found = failures([(offer, body(rpc.InformResponse(1), NS12, use_version="1.4"))])
    assert "UseCWMPVersion '1.4' is not one the CPE offered" in found


@pytest.mark.parametrize("minor", [3, 4])
def test_the_non_normative_1_3_and_1_4_uris_are_validated_as_cwmp_1_2(minor: int) -> None:
    ns = f"urn:dslforum-org:cwmp-1-{minor}"
    assert failures([(body(INFORM, ns), body(rpc.InformResponse(1), ns))]) == ""


def test_xml_outside_any_session_fails() -> None:
    checker = SessionConformance()
    checker.exchange(
        b"", body(rpc.Reboot("k"), NS10), acs_xml=True, cookies=[], set_cookie=None, channel=1
    )
    with pytest.raises(AssertionError, match="outside any session"):
        checker.assert_clean()
    checker.assert_clean()  # each failure is raised once


class _Broken(Resource):
    """Answers every Inform with an InformResponse the schema refuses."""

    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b'text/xml; charset="utf-8"')
        return body(rpc.InformResponse(1), NS10).replace(b"<MaxEnvelopes>1", b"<MaxEnvelopes>x")


class TapTests(unittest.TestCase):
    async def test_the_tap_reports_an_invalid_body_sent_over_http(self) -> None:
        checker = SessionConformance()
        any_reactor: Any = reactor
        port = any_reactor.listenTCP(
            0, Site(ConformanceTap(_Broken(), checker)), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        url = f"http://127.0.0.1:{port.getHost().port}/"
        response = await treq.post(url, data=body(INFORM, NS10), pool=pool)
        await treq.content(response)
        assert checker.checked["cpe"] == ["Inform"]
        assert any("acs InformResponse" in f and "MaxEnvelopes" in f for f in checker.failures)
