"""A round-robin TCP proxy for the bench: ``python -m bench.rrproxy PORT [PORT ...]``.

Listens on a free port of 127.0.0.1 (printed as ``LISTENING <port>``) and sends each new
connection to the next of the given ports of 127.0.0.1 in turn, bytes untouched: the
simplest load balancer in front of several ACS nodes. With CPEs that open a connection per
request, each CPE's requests alternate between the nodes. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import sys
from itertools import cycle
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.protocols.portforward import ProxyFactory, ProxyServer

HOST = "127.0.0.1"


class RoundRobin(ProxyFactory):
    """A ProxyFactory whose target port changes at every connection."""

    noisy = False

    def __init__(self, ports: list[int]) -> None:
        super().__init__(HOST, ports[0])
        self._ports = cycle(ports)

    def buildProtocol(self, addr: Any) -> ProxyServer | None:
        self.port = next(self._ports)  # read by the ProxyServer's connectionMade, right after
        return super().buildProtocol(addr)


def main(argv: list[str]) -> int:
    ports = [int(p) for p in argv]
    if not ports:
        print("usage: python -m bench.rrproxy PORT [PORT ...]", file=sys.stderr)
        return 2
    reactor: Any = _reactor
    listening = reactor.listenTCP(0, RoundRobin(ports), backlog=4096, interface=HOST)
    print(f"LISTENING {listening.getHost().port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
