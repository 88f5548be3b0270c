"""Pre-serialized CWMP messages for the load generator, built once through ``acs.cwmp.soap``.

The load client must cost far less per session than the ACS, so it never builds or parses
XML on the hot path: each message is serialized once here with a placeholder, and a session
only substitutes its serial (or the cwmp:ID to echo) with ``bytes.replace``. The Inform comes
from a real ``cpe_sim`` TR-181 CPE, so it carries the same forced parameters as the simulator.
"""

from __future__ import annotations

import dataclasses
import re
import time

from twisted.internet.task import Clock

from acs.cwmp import rpc, soap
from cpe_sim.cpe import Profile, SimulatedCPE
from cpe_sim.datamodel import load_template

SERIAL = b"BENCHSERIALPLACEHOLDER"
CWMP_ID = b"BENCHIDPLACEHOLDER"
BOOTSTRAP = "0 BOOTSTRAP"
PERIODIC = "2 PERIODIC"

# The cwmp:ID of an ACS request, to echo in our response. Only ever applied to the ACS's
# own small envelopes, so a regex is enough (and far cheaper than parsing).
_ID_RE = re.compile(rb"<(?:\w+:)?ID\b[^>]*>([^<]*)</(?:\w+:)?ID>")


@dataclasses.dataclass(frozen=True)
class Messages:
    """Templates for one load generator; ``inform(serial)`` gives the bytes to POST."""

    inform_template: bytes
    spv_response_template: bytes
    inform_response: bytes  # what the bare ceiling server answers to a non-empty POST

    def inform(self, serial: str) -> bytes:
        return self.inform_template.replace(SERIAL, serial.encode("ascii"))

    def spv_response(self, acs_request: bytes) -> bytes:
        """Our SetParameterValuesResponse (status 0) to the ACS's SetParameterValues."""
        found = _ID_RE.search(acs_request)
        return self.spv_response_template.replace(CWMP_ID, found.group(1) if found else b"")


def build(event: str) -> Messages:
    """Messages for CPEs informing ``event`` (``0 BOOTSTRAP`` or ``2 PERIODIC``)."""
    clock = Clock()
    clock.advance(time.time())
    profile = Profile(reactor=clock, acs_url="http://127.0.0.1/")
    placeholder = SERIAL.decode("ascii")
    cpe = SimulatedCPE(placeholder, load_template("tr181"), profile)
    cpe.set_connection_request_url(f"http://127.0.0.1:9/{placeholder}")
    inform = dataclasses.replace(cpe.build_inform(), events=(rpc.EventStruct(event),))
    header = cpe.inform_header()
    inform_bytes = soap.serialize(soap.Envelope(inform, header, cpe.ns))
    spv = soap.serialize(
        soap.Envelope(
            rpc.SetParameterValuesResponse(status=0),
            soap.Header(id=CWMP_ID.decode("ascii")),
            cpe.ns,
        )
    )
    response = soap.serialize(
        soap.Envelope(rpc.InformResponse(max_envelopes=1), soap.Header(id=header.id), cpe.ns)
    )
    return Messages(inform_bytes, spv, response)
