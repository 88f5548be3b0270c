"""The ceiling: a bare ``twisted.web`` resource answering POSTs (``python -m bench.ceiling``).

It does what the CWMP listener does minus the appliance: a ``Site`` without access log, a
leaf resource that reads the body and answers a non-empty POST with a fixed
InformResponse and an empty one with 204. Driven by the same load generator with the same
sessions, its requests/s is the physical limit of our stack on this machine. It listens
on an ephemeral 127.0.0.1 port (with the ACS's listen backlog, ``acs.listen.LISTEN_BACKLOG``)
and prints ``LISTENING <port>``.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from acs.clock import Reactor
from acs.listen import LISTEN_BACKLOG
from bench import envelopes

XML_CONTENT_TYPE = b'text/xml; charset="utf-8"'


class BareCwmp(Resource):
    isLeaf = True

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self._answer = answer

    def render_POST(self, request: Request) -> bytes:
        data = request.content.read() if request.content is not None else b""
        if not data:
            request.setResponseCode(204)
            return b""
        request.setHeader(b"Content-Type", XML_CONTENT_TYPE)
        return self._answer


class QuietSite(Site):
    noisy = False

    def log(self, request: Any) -> None:
        """No access log, like ``acs.cwmp_http.CwmpSite``."""


def main() -> int:
    from twisted.internet import reactor as _reactor

    reactor: Reactor = _reactor
    site = QuietSite(BareCwmp(envelopes.build(envelopes.PERIODIC).inform_response))
    port = reactor.listenTCP(0, site, backlog=LISTEN_BACKLOG, interface="127.0.0.1")
    print(f"LISTENING {port.getHost().port}", flush=True)
    reactor.run()  # stopped by SIGTERM from the orchestrator
    return 0


if __name__ == "__main__":
    sys.exit(main())
