"""acs.workers.Supervisor on a Clock: restarts paced while workers die young, a
configuration error stops everything, stop() signals and waits (SIGKILL after the timeout).
Processes are fakes; tests/test_e2e_workers.py runs real ones."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from acs import workers


class FakeTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[int, Any]]] = []

    def spawnProcess(self, protocol: Any, _exe: str, argv: list[str], **kw: Any) -> None:
        protocol.transport = FakeTransport(1000 + len(self.spawned))
        self.spawned.append((protocol, argv, kw["childFDs"]))


class FakePort:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stopped = False

    def fileno(self) -> int:
        return self.fd

    def stopListening(self) -> None:
        self.stopped = True


def _supervisor(count: int) -> tuple[FakeReactor, workers.Supervisor, list[int], dict[str, Any]]:
    reactor = FakeReactor()
    fatal: list[int] = []
    ports = {name: FakePort(10 + i) for i, name in enumerate(workers.SHARED)}
    supervisor = workers.Supervisor(
        cast(Any, reactor), cast(Any, ports), ["acs", "serve"], count, on_fatal=fatal.append
    )
    supervisor.start()
    return reactor, supervisor, fatal, ports


def _end(protocol: Any, code: int) -> None:
    protocol.processEnded(Failure(ProcessTerminated(exitCode=code)))


def test_workers_get_the_sockets_and_the_lifeline() -> None:
    reactor, supervisor, _fatal, _ports = _supervisor(2)
    assert supervisor.pids() == [1000, 1001]
    _protocol, argv, fds = reactor.spawned[0]
    assert argv == ["acs", "serve", "--worker-sockets", "cwmp=4,api=5,files=6"]
    assert fds == {0: 0, 1: 1, 2: 2, 3: "w", 4: 10, 5: 11, 6: 12}


def test_restarts_wait_longer_while_workers_die_young() -> None:
    reactor, supervisor, fatal, _ports = _supervisor(1)
    delays = []
    for _ in range(7):
        protocol = reactor.spawned[-1][0]
        reactor.advance(1)  # dies a second after its start: young
        _end(protocol, 1)
        before = len(reactor.spawned)
        waited = 0.0
        while len(reactor.spawned) == before:
            reactor.advance(0.5)
            waited += 0.5
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # One that lived long is restarted at once, and the pause starts over.
    reactor.advance(workers.YOUNG + 1)
    _end(reactor.spawned[-1][0], 1)
    reactor.advance(0)
    assert len(reactor.spawned) == 9
    reactor.advance(1)
    _end(reactor.spawned[-1][0], 1)
    reactor.advance(workers.RESTART_PAUSE)
    assert len(reactor.spawned) == 10
    assert fatal == [] and supervisor.pids() == [1009]


def test_a_configuration_error_stops_everything() -> None:
    reactor, _, fatal, _ports = _supervisor(2)
    _end(reactor.spawned[0][0], workers.CONFIG_ERROR)
    reactor.advance(60)
    assert fatal == [workers.CONFIG_ERROR]
    assert len(reactor.spawned) == 2  # not restarted


def test_stop_signals_every_worker_and_kills_the_one_that_lingers() -> None:
    reactor, supervisor, _fatal, ports = _supervisor(2)
    first, second = (entry[0] for entry in reactor.spawned)
    stopped = supervisor.stop()
    assert first.transport.signals == ["TERM"] and second.transport.signals == ["TERM"]
    _end(first, 0)
    assert not stopped.called
    reactor.advance(workers.STOP_TIMEOUT)
    assert second.transport.signals == ["TERM", "KILL"]
    assert first.transport.signals == ["TERM"]
    _end(second, -9)
    assert stopped.called
    assert all(port.stopped for port in ports.values())
    reactor.advance(60)
    assert len(reactor.spawned) == 2  # nobody restarted while stopping
