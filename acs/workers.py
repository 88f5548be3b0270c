"""``acs serve --workers N``: N processes accepting on the same listening sockets.

The process started (the supervisor) opens the database once, so the migrations are done
before any worker starts, binds the CWMP, API and files listeners, prints where they are,
and starts N workers: each is ``acs serve`` handed the bound sockets as inherited file
descriptors (the kernel gives each new connection to one of them) and the read end of a
pipe (the *lifeline*) that ends when the supervisor does, however it ends, so no worker
outlives it. Each worker is a whole appliance and a node of the database: a CWMP session's
requests reach the worker running it (``acs.peers``), the cluster-wide jobs run in one of
them (``acs.periodic`` leases).

The supervisor restarts a worker that dies (after a pause that grows while they die young),
stops when one exits with status 2 (a configuration error every restart would repeat), and
on SIGTERM/SIGINT stops them all, waiting for each (SIGKILL after ``STOP_TIMEOUT``).
Listeners are shared as bound TCP sockets; a TLS listener (``ssl:``) is one too, each
worker reading the same endpoint string for its certificate and key and doing the TLS
itself, as Twisted's own SSL listener does over TCP; behind ``haproxy:`` (the PROXY
protocol: the CPE's address from the load balancer in front) each worker reads the header
itself, through Twisted's ``proxyEndpoint`` over the inherited socket.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import stdio
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.protocols.haproxy import proxyEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from acs.clock import Reactor
from acs.config import Config, ConfigError, udp_listen
from acs.listen import behind_proxy, with_backlog

log = Logger(namespace="acs.workers")

# The workers' descriptors: the lifeline, then one socket per listener in this order, then
# the STUN listener's UDP socket when there is one.
LIFELINE_FD = 3
FIRST_SOCKET_FD = 4
SHARED = ("cwmp", "api", "files")
SHAREABLE = ("tcp", "tcp6", "ssl")
# Seconds a stopping worker gets before SIGKILL (its sessions' last transactions).
STOP_TIMEOUT = 30.0
# A worker that dies within this many seconds of its start died young: the pause before
# its restart doubles each time (from RESTART_PAUSE up to MAX_RESTART_PAUSE).
YOUNG = 10.0
RESTART_PAUSE = 1.0
MAX_RESTART_PAUSE = 30.0
# The exit status of a configuration or usage error (systemd's RestartPreventExitStatus).
CONFIG_ERROR = 2


class InheritedEndpoint:
    """A listening socket inherited as file descriptor ``fd``: what a worker listens on (an
    ``IStreamServerEndpoint`` by its ``listen``; Listener only calls that), speaking TLS
    with ``tls`` (an OpenSSL context factory) when given."""

    def __init__(self, reactor: Reactor, fd: int, tls: Any = None) -> None:
        self._reactor = reactor
        self._fd = fd
        self._tls = tls

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        if self._tls is not None:
            factory = TLSMemoryBIOFactory(self._tls, False, factory)
        probe = socket.socket(fileno=self._fd)
        family = probe.family
        probe.detach()  # the descriptor stays open: the reactor adopts (a copy of) it
        reactor: Any = self._reactor
        port: IListeningPort = reactor.adoptStreamPort(self._fd, family, factory)
        os.close(self._fd)  # adoptStreamPort duplicated it
        return succeed(port)


def inherited_endpoints(
    reactor: Reactor, spec: str, config: Config
) -> dict[str, IStreamServerEndpoint]:
    """The endpoints of ``--worker-sockets cwmp=4,api=5,files=6`` (the supervisor's word),
    with TLS where ``config`` has an ``ssl:`` listener (``stun=7``: `inherited_stun`)."""
    endpoints: dict[str, IStreamServerEndpoint] = {}
    for item in spec.split(","):
        name, _, fd = item.partition("=")
        if name == "stun" and fd.isdigit():
            continue
        if name not in SHARED or not fd.isdigit():
            raise ConfigError(f"--worker-sockets: bad item {item!r}")
        endpoint: Any = InheritedEndpoint(reactor, int(fd), _tls(reactor, name, config))
        if behind_proxy(getattr(config, name).listen)[0]:
            endpoint = proxyEndpoint(endpoint)
        endpoints[name] = cast(IStreamServerEndpoint, endpoint)
    if set(endpoints) != set(SHARED):
        raise ConfigError("--worker-sockets must name cwmp, api and files")
    return endpoints


def inherited_stun(spec: str) -> int | None:
    """The STUN listener's socket in ``--worker-sockets`` (None: STUN is off)."""
    for item in spec.split(","):
        name, _, fd = item.partition("=")
        if name == "stun" and fd.isdigit():
            return int(fd)
    return None


def bind_stun(config: Config) -> socket.socket | None:
    """The STUN listener's UDP socket, bound for the workers to share (None: STUN is off):
    one socket, so that whichever worker sends a UDP connection request sends it from the
    address and port the CPE's NAT binding points to."""
    if not config.stun.listen:
        return None
    port, interface = udp_listen(config.stun.listen)
    families = [interface] if interface else ["::", "0.0.0.0"]
    for index, host in enumerate(families):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6 and not interface:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if index + 1 < len(families):
                continue  # a host without IPv6
            raise ConfigError(
                f"[stun] cannot listen on {config.stun.listen!r}: {exc.strerror}"
            ) from None
        sock.setblocking(False)
        return sock
    raise AssertionError("unreachable: the last family returns or raises")


def _endpoint(reactor: Reactor, name: str, config: Config) -> tuple[str, Any]:
    """(the listener's kind, its endpoint: behind ``haproxy:``, the inner one, which the
    supervisor binds) from ``config``; ConfigError for a kind that cannot be shared or a
    string Twisted refuses."""
    description = behind_proxy(getattr(config, name).listen)[1]
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in SHAREABLE:
        raise ConfigError(
            f"[{name}] listen {description!r}: --workers shares TCP and SSL listeners "
            "(also behind haproxy:) only"
        )
    try:
        return kind, serverFromString(reactor, with_backlog(description))
    except Exception as exc:  # endpoint parsers raise ValueError, OSError, SSL errors...
        raise ConfigError(f"[{name}] listen {description!r}: {exc}") from exc


def _tls(reactor: Reactor, name: str, config: Config) -> Any:
    """The OpenSSL context factory of listener ``name`` when it is ``ssl:``, else None."""
    kind, endpoint = _endpoint(reactor, name, config)
    # SSL4ServerEndpoint keeps the context factory it parsed (certificate, key, DH
    # parameters, ciphers) and hands it to listenSSL, which does exactly what
    # InheritedEndpoint does with it.
    return endpoint._sslContextFactory if kind == "ssl" else None


class _Lifeline(Protocol):
    """Stops the worker's reactor when the supervisor's end of the pipe closes."""

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor

    def connectionLost(self, reason: Failure | None = None) -> None:
        reactor: Any = self._reactor
        if reactor.running:
            log.info("The supervisor is gone: stopping this worker")
            reactor.stop()


def watch_lifeline(reactor: Reactor) -> None:
    """In a worker: stop when the supervisor ends (its pipe on ``LIFELINE_FD`` closes)."""
    # StandardIO wants somewhere to write too; never used. Any: zope interfaces.
    sink = os.open(os.devnull, os.O_WRONLY)
    stdio_: Any = stdio
    stdio_.StandardIO(_Lifeline(reactor), stdin=LIFELINE_FD, stdout=sink, reactor=reactor)


class _Refuse(Factory):
    """The supervisor never accepts on the sockets it binds (it stops reading them)."""

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


def bind_shared(reactor: Reactor, config: Config) -> dict[str, IListeningPort]:
    """Bind the listeners the workers share (ConfigError for one that cannot be shared or
    bound); the supervisor itself never accepts on them."""
    ports: dict[str, IListeningPort] = {}
    try:
        for name in SHARED:
            description = getattr(config, name).listen
            _kind, endpoint = _endpoint(reactor, name, config)
            bound: list[Any] = []
            endpoint.listen(_Refuse()).addBoth(bound.append)  # TCP endpoints fire at once
            result = bound[0] if bound else None
            if isinstance(result, Failure):
                raise ConfigError(f"[{name}] cannot listen on {description!r}: "
                                  f"{result.getErrorMessage()}")  # fmt: skip
            assert result is not None, "a TCP endpoint's listen fires synchronously"
            result.stopReading()
            ports[name] = result
    except BaseException:
        for bound_port in ports.values():
            cast(Any, bound_port).stopListening()
        raise
    return ports


def worker_command(config_path: str | None, appliance: bool) -> list[str]:
    """How to run one more ``acs serve`` of this installation (the one-file binary runs
    itself; from source, this interpreter runs the module)."""
    if getattr(sys, "frozen", False):
        argv = [sys.executable, "serve"]
    else:
        argv = [sys.executable, "-m", "acs.cli", "serve"]
    if config_path:
        argv += ["--config", config_path]
    if appliance:
        argv.append("--appliance")
    return argv


class _Worker(ProcessProtocol):
    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = 0.0
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        self.ended.callback(None)
        self.supervisor.ended(self, code, reason.getErrorMessage())


class Supervisor:
    """Runs ``count`` workers over the bound ``ports`` until stopped (see the module)."""

    def __init__(
        self,
        reactor: Reactor,
        ports: dict[str, IListeningPort],
        command: list[str],
        count: int,
        *,
        on_fatal: Callable[[int], None],
        stun: socket.socket | None = None,
    ) -> None:
        self._reactor = reactor
        self._ports = ports
        self._stun = stun
        self._command = command
        self._count = count
        self._on_fatal = on_fatal
        self._workers: dict[int, _Worker] = {}
        self._pause = RESTART_PAUSE
        self._stopping = False
        self._pending: dict[int, Any] = {}

    def start(self) -> None:
        for index in range(self._count):
            self._spawn(index)

    def pids(self) -> list[int]:
        transports: list[Any] = [w.transport for w in self._workers.values()]
        return [int(t.pid) for t in transports if t is not None and t.pid]

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        if self._stopping:
            return
        fds: dict[int, Any] = {0: 0, 1: 1, 2: 2, LIFELINE_FD: "w"}
        spec = []
        for offset, name in enumerate(SHARED):
            fd = FIRST_SOCKET_FD + offset
            port: Any = self._ports[name]
            fds[fd] = port.fileno()
            spec.append(f"{name}={fd}")
        if self._stun is not None:
            fd = FIRST_SOCKET_FD + len(SHARED)
            fds[fd] = self._stun.fileno()
            spec.append(f"stun={fd}")
        worker = _Worker(self, index)
        worker.started = self._reactor.seconds()
        argv = [*self._command, "--worker-sockets", ",".join(spec)]
        reactor: Any = self._reactor
        reactor.spawnProcess(worker, argv[0], argv, env=dict(os.environ), childFDs=fds)
        self._workers[index] = worker
        log.info(
            "worker {index} started pid={pid}", index=index, pid=cast(Any, worker.transport).pid
        )

    def ended(self, worker: _Worker, code: int | None, why: str) -> None:
        if self._workers.get(worker.index) is worker:
            del self._workers[worker.index]
        if self._stopping:
            return
        log.warn("worker {index} ended: {why}", index=worker.index, why=why)
        if code == CONFIG_ERROR:
            self._on_fatal(CONFIG_ERROR)
            return
        if self._reactor.seconds() - worker.started < YOUNG:
            delay, self._pause = self._pause, min(self._pause * 2, MAX_RESTART_PAUSE)
        else:
            delay, self._pause = 0.0, RESTART_PAUSE
        self._pending[worker.index] = self._reactor.callLater(delay, self._spawn, worker.index)

    def stop(self) -> Deferred[Any]:
        """SIGTERM every worker; fires once all have ended (SIGKILL after STOP_TIMEOUT)."""
        self._stopping = True
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        workers = list(self._workers.values())
        for worker in workers:
            _signal(worker, "TERM")

        def kill() -> None:
            for worker in workers:
                if not worker.ended.called:
                    log.warn("worker {index} did not stop: killed", index=worker.index)
                    _signal(worker, "KILL")

        timer = self._reactor.callLater(STOP_TIMEOUT, kill)
        done = DeferredList([w.ended for w in workers])

        def stopped(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            for port in self._ports.values():
                cast(Any, port).stopListening()
            return result

        return done.addBoth(stopped)


def _signal(worker: _Worker, name: str) -> None:
    transport: Any = worker.transport
    with contextlib.suppress(Exception):  # ProcessExitedAlready: it has ended meanwhile
        transport.signalProcess(name)


__all__ = [
    "Supervisor",
    "bind_shared",
    "bind_stun",
    "inherited_endpoints",
    "inherited_stun",
    "watch_lifeline",
    "worker_command",
]
