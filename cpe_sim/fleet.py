"""A fleet of simulated CPEs in one process sharing one connection-request listener.

Every CPE's ``ConnectionRequestURL`` is ``http://<listener>/<serial>``. A GET there is
authenticated with HTTP Digest (MD5, qop=auth) against the CPE's
``ConnectionRequestUsername``/``Password`` once the ACS has set a username (no
authentication while it is empty), answered 200 with an empty body, and then wakes the CPE
for a ``6 CONNECTION REQUEST`` session; several requests before that session share it.

While a CPE is offline (stopped, or in the ``reboot_delay`` after a Reboot or FactoryReset)
its requests get their TCP connection dropped without an answer: one listener serves every
CPE, so a per-device "connection refused" is impossible, and a dropped connection is what an
ACS sees from a device that is down (a 503 would instead say "up but busy").

With ``nat=True`` every CPE is behind its own NAT (``cpe_sim.nat``) and no listener runs.
The ConnectionRequestURLs name a loopback port that the fleet keeps bound but never
listens on, so the ACS's TCP connection is refused as it would be by a NAT. What wakes
such a CPE is a UDP connection request on its own socket, sent through the binding its
STUN client keeps. Each CPE has a socket of its own, so these fleets are at most
MAX_NAT_COUNT CPEs (file descriptors).

With ``xmpp=XmppOptions(...)`` every TR-181 CPE also keeps a TLS connection to that XMPP
server (``cpe_sim.xmpp``) and is woken by TR-069 Annex K connection requests sent through it,
with or without ``nat``; TR-098 CPEs (of a ``mixed`` fleet) have none. One socket each: at
most MAX_XMPP_COUNT CPEs.
"""

from __future__ import annotations

import os
import random
import socket
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from acs import httpdigest
from acs.clock import Reactor
from acs.listen import with_backlog
from cpe_sim.cpe import Profile, SimulatedCPE
from cpe_sim.datamodel import load_template
from cpe_sim.transfers import Faults
from cpe_sim.xmpp import XmppOptions

__all__ = ["Faults", "Fleet", "SimulatedCPE", "XmppOptions"]

MODELS = ("tr181", "tr098", "mixed")
REALM = "cpe-sim"
NONCE_TTL = 300.0  # seconds a connection-request nonce stays valid
MAX_NAT_COUNT = 1000  # CPEs of a ``nat`` fleet: one UDP socket each
MAX_XMPP_COUNT = 1000  # CPEs of an ``xmpp`` fleet: one TLS connection each


class _ConnectionRequests(Resource):
    """GET /<serial>: the connection-request endpoint of every CPE in the fleet."""

    isLeaf = True

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self._fleet = fleet
        # Stateless nonces, so a 10 000-CPE fleet stores nothing.
        self._nonces = httpdigest.NonceSigner(os.urandom(16), NONCE_TTL)

    def _nonce_ok(self, nonce: str) -> bool:
        issued = self._nonces.issued(nonce)
        return issued is not None and self._nonces.fresh(issued, self._fleet.reactor.seconds())

    def render_GET(self, request: Request) -> bytes | int:
        path = [p.decode("utf-8", "replace") for p in request.postpath or []]
        cpe = self._fleet.find(path[0]) if len(path) == 1 else None
        if cpe is None:
            request.setResponseCode(404)
            return b""
        if not cpe.online or cpe.stopped or self._fleet.stopped:
            # Offline: behave like an unreachable device (see the module docstring).
            if request.channel is not None and request.channel.transport is not None:
                request.channel.transport.abortConnection()
            return NOT_DONE_YET
        username, password = cpe.connection_request_credentials
        if username and not self._authorized(request, username, password):
            request.setResponseCode(401)
            request.setHeader(
                b"WWW-Authenticate",
                httpdigest.digest_challenge(
                    REALM, self._nonces.make(self._fleet.reactor.seconds()), opaque=cpe.serial
                ).encode(),
            )
            return b""
        cpe.connection_request()
        request.setResponseCode(200)
        return b""

    def _authorized(self, request: Request, username: str, password: str) -> bool:
        creds = httpdigest.parse_authorization(request.getHeader(b"authorization"))
        if creds is None or creds.scheme != "digest" or creds.username != username:
            return False
        if creds.params.get("uri") != request.uri.decode("latin-1"):
            return False
        if not self._nonce_ok(creds.params.get("nonce", "")):
            return False
        return httpdigest.check_credentials(creds, method="GET", password=password, realm=REALM)


class _QuietSite(Site):
    noisy = False

    def log(self, request: Any) -> None:
        """No access log: a large fleet would drown the console."""


class Fleet:
    """Many ``SimulatedCPE`` with one connection-request listener (see module docstring)."""

    def __init__(
        self,
        reactor: Reactor,
        *,
        acs_url: str,
        count: int,
        serial_prefix: str = "SIM",
        model: str = "tr181",
        interval: float | None = None,
        jitter: float = 0.1,
        connreq_listen: str = "tcp:0:interface=127.0.0.1",
        acs_username: str = "",
        acs_password: str = "",
        reboot_delay: float = 1.0,
        start_spread: float = 0.0,
        periodic: bool = True,
        seed: int = 0,
        cwmp_version: str | None = None,
        reconnect: bool = False,
        nat: bool = False,
        xmpp: XmppOptions | None = None,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        if not 0 <= count <= 1_000_000:
            raise ValueError(f"count must be between 0 and 1000000, not {count}")
        if nat and count > MAX_NAT_COUNT:
            raise ValueError(f"a nat fleet has at most {MAX_NAT_COUNT} CPEs, not {count}")
        if xmpp is not None and count > MAX_XMPP_COUNT:
            raise ValueError(f"an xmpp fleet has at most {MAX_XMPP_COUNT} CPEs, not {count}")
        if interval is not None and interval < 1:
            raise ValueError(f"interval must be at least 1 second, not {interval}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {jitter}")
        if reboot_delay < 0 or start_spread < 0:
            raise ValueError("reboot_delay and start_spread must not be negative")
        if not acs_url.startswith(("http://", "https://")):
            raise ValueError(f"acs_url must be an http(s) URL, not {acs_url!r}")
        self.reactor = reactor
        self.connreq_listen = connreq_listen
        self.start_spread = start_spread
        self.stopped = False
        self.nat = nat
        self.rng = random.Random(seed)
        self.profile = Profile(
            reactor=reactor,
            acs_url=acs_url,
            acs_username=acs_username,
            acs_password=acs_password,
            interval=None if interval is None else max(1, round(interval)),
            jitter=jitter,
            reboot_delay=reboot_delay,
            periodic=periodic,
            rng=self.rng,
            cwmp_version=cwmp_version,  # validated by Profile: ValueError like the rest
            reconnect=reconnect,
            nat=nat,
            xmpp=xmpp,
            seed=seed,
        )
        tr181, tr098 = load_template("tr181"), load_template("tr098")
        self.cpes: list[SimulatedCPE] = []
        for i in range(count):
            if model == "mixed":
                template = tr181 if i % 2 == 0 else tr098
            else:
                template = tr181 if model == "tr181" else tr098
            self.cpes.append(SimulatedCPE(f"{serial_prefix}{i:06d}", template, self.profile))
        self._by_serial = {c.serial: c for c in self.cpes}
        self._port: Any | None = None
        # nat: the TCP port of the ConnectionRequestURLs, bound and never listened on.
        self._unreachable: socket.socket | None = None
        self.connection_request_base = ""
        self._value_changes: list[Any] = []  # the DelayedCalls of schedule_value_change

    def cpe(self, serial: str) -> SimulatedCPE:
        try:
            return self._by_serial[serial]
        except KeyError:
            raise KeyError(f"no CPE with serial {serial!r} in this fleet") from None

    def find(self, serial: str) -> SimulatedCPE | None:
        return self._by_serial.get(serial)

    def start(self) -> Deferred[None]:
        """Bind the listener, then power every CPE on (first Inform: BOOTSTRAP)."""
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        if self._port is not None or self._unreachable is not None:
            raise RuntimeError("fleet already started")
        self.stopped = False
        if self.nat:
            self.connection_request_base = self._bind_unreachable()
        else:
            self.connection_request_base = await self._listen()
        count = len(self.cpes)
        for i, cpe in enumerate(self.cpes):
            cpe.set_connection_request_url(self.connection_request_base + cpe.serial)
            # Evenly spread with a little noise, so thousands of CPEs don't inform at once.
            delay = 0.0
            if self.start_spread > 0 and count:
                delay = self.start_spread * (i + self.rng.random()) / count
            cpe.start(delay)

    async def _listen(self) -> str:
        """Start the connection-request listener; the base of the CPEs' URLs."""
        # One socket takes every connection request of the fleet: a wake round of thousands
        # overflows Twisted's default backlog of 50 and requests stall in SYN retransmission.
        endpoint = serverFromString(self.reactor, with_backlog(self.connreq_listen))
        self._port = await endpoint.listen(_QuietSite(_ConnectionRequests(self)))
        address = self._port.getHost()
        host = getattr(address, "host", "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{getattr(address, 'port', 0)}/"

    def _bind_unreachable(self) -> str:
        """A loopback TCP port that refuses connections: bound, so no other program takes
        it while the fleet runs, and never listened on."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._unreachable = sock
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"

    def schedule_value_change(self, path: str, value: str, after: float) -> None:
        """Every CPE's ``path`` changes to ``value`` by itself ``after`` seconds from now
        (``SimulatedCPE.change_value``: reported as its notification attribute says).
        ValueError, scheduling nothing, when a CPE has no such parameter."""
        for cpe in self.cpes:
            name = path if path.startswith(cpe.root) else cpe.root + path
            if cpe.model.param_def(name) is None:
                raise ValueError(f"{cpe.serial} has no parameter {name}")
        for cpe in self.cpes:
            self._value_changes.append(
                self.reactor.callLater(after, self._change, cpe, path, value)
            )

    @staticmethod
    def _change(cpe: SimulatedCPE, path: str, value: str) -> None:
        if not cpe.stopped:
            cpe.change_value(path, value)

    def stop(self) -> Deferred[None]:
        """Silence every CPE and the listener; fires once in-flight sessions are over."""
        self.stopped = True
        for call in self._value_changes:
            if call.active():
                call.cancel()
        self._value_changes = []
        waits = [cpe.stop() for cpe in self.cpes]
        if self._port is not None:
            port, self._port = self._port, None
            waits.append(Deferred.fromCoroutine(_stop_listening(port)))
        if self._unreachable is not None:
            self._unreachable.close()
            self._unreachable = None
        if not waits:
            return succeed(None)
        return gatherResults(waits).addCallback(lambda _: None)

    @property
    def faults(self) -> Faults:
        """Fleet-wide transfer fault injection (a CPE's own ``inject`` takes precedence)."""
        return self.profile.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self.profile.faults = value

    @property
    def port(self) -> int | None:
        """The connection-request listener's TCP port (None before ``start``, and in a
        ``nat`` fleet, which has none)."""
        if self._port is None:
            return None
        return int(getattr(self._port.getHost(), "port", 0))

    def summary(self) -> str:
        online = sum(1 for c in self.cpes if c.online)
        ok = sum(c.sessions_ok for c in self.cpes)
        failed = sum(c.sessions_failed for c in self.cpes)
        faults = sum(c.faults for c in self.cpes)
        busy = sum(1 for c in self.cpes if c.busy)
        reboots = sum(c.reboots for c in self.cpes)
        installs = sum(c.installs for c in self.cpes)
        line = (
            f"CPEs {len(self.cpes)} | online {online} | sessions ok {ok} failed {failed} "
            f"| faults {faults} | reboots {reboots} | installs {installs} | in flight {busy}"
        )
        counters = [c.nat.counters for c in self.cpes if c.nat is not None]
        if counters:
            line += (
                f" | udp wakes {sum(n.accepted for n in counters)}"
                f" duplicate {sum(n.duplicate for n in counters)}"
                f" rejected {sum(sum(n.rejected.values()) for n in counters)}"
                f" | stun ok {sum(n.stun_answered for n in counters)}"
                f" 401 {sum(n.stun_unauthorized for n in counters)}"
            )
        clients = [c.xmpp for c in self.cpes if c.xmpp is not None]
        if clients:
            line += (
                f" | xmpp bound {sum(x.jid is not None for x in clients)}/{len(clients)}"
                f" logins {sum(x.counters.bound for x in clients)}"
                f" wakes {sum(x.counters.accepted for x in clients)}"
                f" rejected {sum(sum(x.counters.rejected.values()) for x in clients)}"
            )
        return line


async def _stop_listening(port: Any) -> None:
    await maybeDeferred(port.stopListening)
