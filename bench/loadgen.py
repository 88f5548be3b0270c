"""The load generator process: ``python -m bench.loadgen '<json spec>'``.

Protocol with the orchestrator (``bench.procs.ClientGroup``): the process prepares its
envelopes, prints ``READY``, waits for one line on stdin (so every generator starts at the
same moment), runs its mode on the reactor within a hard deadline, and prints one JSON
object as its last stdout line. It reports its own CPU time so the bench can say when the
load client, not the server, was the limit.

Modes (``spec["mode"]``):

- ``sessions``: ``concurrency`` CPEs in flight doing back-to-back sessions over ``serials``
  for ``duration`` seconds (ceiling and steady informs); a CPE is never in two sessions.
- ``storm``: every serial informs at once and retries failed sessions with the CWMP back-off
  (TR-069 §3.2.1.1; a 503's ``Retry-After`` is honoured instead) until all succeeded or the
  deadline. A session the ACS opened (it answered the Inform) that never completed is lost;
  CPEs without a successful session by the deadline are unfinished. With ``reconnect``,
  each request of a session goes on a new connection.
- ``api``: GETs of each named path, one at a time on a keep-alive connection.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from collections import Counter
from typing import Any

from acs.clock import Reactor
from bench import envelopes
from bench.httpclient import CwmpAttempt, KeepAliveGetter

HOST = "127.0.0.1"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serials(prefix: str, start: int, count: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(start, start + count)]


def cwmp_backoff(tries: int, rng: random.Random) -> float:
    """TR-069 Table 3 session retry wait: 5-10 s, doubling per failure, capped at 10."""
    factor = 2 ** (min(tries, 10) - 1)
    return rng.uniform(5.0 * factor, 10.0 * factor)


class _Run:
    """Shared bookkeeping of one mode's run."""

    def __init__(self, reactor: Reactor, spec: dict[str, Any]) -> None:
        self.reactor = reactor
        self.spec = spec
        self.port = int(spec["port"])
        self.host_header = b"Host: %s:%d\r\n" % (HOST.encode(), self.port)
        self.request_timeout = float(spec.get("request_timeout", 30.0))
        self.connect_timeout = float(spec.get("connect_timeout", 30.0))
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.backpressure = 0
        self.t_go = 0.0
        self.t_end = 0.0
        self.cpu_go = 0.0
        self.finished = False
        self.result: dict[str, Any] = {}

    def begin(self) -> None:
        self.t_go = time.monotonic()
        self.cpu_go = _cpu()
        self._hard_stop = self.reactor.callLater(float(self.spec["max_time"]), self.deadline)

    def deadline(self) -> None:
        """The hard time bound: subclasses drop what is still in flight."""
        self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.t_end = time.monotonic()
        if self._hard_stop.active():
            self._hard_stop.cancel()
        wall = max(self.t_end - self.t_go, 1e-9)
        cpu = _cpu() - self.cpu_go
        self.result.update(
            mode=self.spec["mode"],
            t_go=self.t_go,
            t_end=self.t_end,
            wall_s=wall,
            cpu_s=cpu,
            cpu_util=cpu / wall,
            errors=dict(self.errors),
            backpressure=self.backpressure,
            latencies=[round(x, 6) for x in self.latencies],
        )
        self.reactor.callLater(0, self.reactor.stop)


class SessionsRun(_Run):
    """Back-to-back sessions by ``concurrency`` CPEs for ``duration`` seconds."""

    def __init__(self, reactor: Reactor, spec: dict[str, Any]) -> None:
        super().__init__(reactor, spec)
        self.messages = envelopes.build(spec.get("event", envelopes.PERIODIC))
        self.serials = serials(spec["prefix"], int(spec["start"]), int(spec["count"]))
        self.concurrency = max(1, min(int(spec["concurrency"]), len(self.serials)))
        self.duration = float(spec["duration"])
        self.ok = 0
        self.rpcs = 0
        self._active = 0
        self._next: list[int] = []
        self._attempts: list[CwmpAttempt] = []
        self._waits: list[Any] = []

    def begin(self) -> None:
        super().begin()
        self._stop_at = self.t_go + self.duration
        for worker in range(self.concurrency):
            attempt = CwmpAttempt(
                self.reactor, self, self.messages, worker, self.host_header, self.request_timeout
            )
            self._attempts.append(attempt)
            self._next.append(worker)
            self._active += 1
            self._launch(attempt)

    def _launch(self, attempt: CwmpAttempt) -> None:
        if self.finished:
            return
        if time.monotonic() >= self._stop_at:
            self._active -= 1
            if self._active == 0:
                self.finish()
            return
        worker = attempt.cpe
        # Worker w owns serials w, w+C, w+2C...: no CPE is ever in two sessions at once.
        index = self._next[worker]
        nxt = index + self.concurrency
        self._next[worker] = nxt if nxt < len(self.serials) else worker
        attempt.start(HOST, self.port, self.serials[index], self.connect_timeout)

    def attempt_done(self, attempt: CwmpAttempt) -> None:
        self.ok += 1
        self.rpcs += attempt.rpcs
        self.latencies.append(time.monotonic() - attempt.started)
        self._launch(attempt)

    def attempt_failed(self, attempt: CwmpAttempt, kind: str, retry_after: float | None) -> None:
        if retry_after is not None:
            self.backpressure += 1
            delay = min(max(retry_after, 0.05), 1.0)  # bounded: the run is short
            self._waits.append(self.reactor.callLater(delay, self._launch, attempt))
            return
        self.errors[kind] += 1
        self._launch(attempt)

    def deadline(self) -> None:
        for attempt in self._attempts:
            attempt.cancel()
        self.errors["cut_by_deadline"] += self._active
        self.finish()

    def finish(self) -> None:
        for wait in self._waits:
            if wait.active():
                wait.cancel()
        self.result.update(sessions=self.ok, rpcs=self.rpcs, concurrency=self.concurrency)
        super().finish()


class StormRun(_Run):
    """Every CPE informs at once; retries until it has had one successful session."""

    def __init__(self, reactor: Reactor, spec: dict[str, Any]) -> None:
        super().__init__(reactor, spec)
        self.messages = envelopes.build(spec.get("event", envelopes.BOOTSTRAP))
        self.serials = serials(spec["prefix"], int(spec["start"]), int(spec["count"]))
        self.rng = random.Random(int(spec.get("seed", 0)))
        self.tries = [0] * len(self.serials)
        self.done = 0
        self.rpcs = 0
        self.retries = 0
        self.lost = 0  # sessions the ACS opened (answered the Inform) that never completed
        self.t_last_done = 0.0
        self._attempts: list[CwmpAttempt] = []
        self._waits: dict[int, Any] = {}

    def begin(self) -> None:
        super().begin()
        if not self.serials:
            self.finish()
            return
        for i, serial in enumerate(self.serials):
            attempt = CwmpAttempt(
                self.reactor,
                self,
                self.messages,
                i,
                self.host_header,
                self.request_timeout,
                reconnect=bool(self.spec.get("reconnect", False)),
            )
            self._attempts.append(attempt)
            attempt.start(HOST, self.port, serial, self.connect_timeout)

    def attempt_done(self, attempt: CwmpAttempt) -> None:
        self.done += 1
        self.rpcs += attempt.rpcs
        self.t_last_done = time.monotonic()
        self.latencies.append(self.t_last_done - attempt.started)
        if self.done == len(self.serials):
            self.finish()

    def attempt_failed(self, attempt: CwmpAttempt, kind: str, retry_after: float | None) -> None:
        i = attempt.cpe
        self.tries[i] += 1
        if attempt.informed:
            self.lost += 1
        if retry_after is not None:
            self.backpressure += 1
            delay = retry_after + self.rng.uniform(0.0, 1.0)
        else:
            self.errors[kind] += 1
            delay = cwmp_backoff(self.tries[i], self.rng)
        self.retries += 1
        self._waits[i] = self.reactor.callLater(delay, self._retry, attempt)

    def _retry(self, attempt: CwmpAttempt) -> None:
        self._waits.pop(attempt.cpe, None)
        if not self.finished:
            attempt.start(HOST, self.port, self.serials[attempt.cpe], self.connect_timeout)

    def finish(self) -> None:
        for wait in self._waits.values():
            if wait.active():
                wait.cancel()
        self._waits.clear()
        for attempt in self._attempts:
            if attempt.cancel():
                self.lost += 1
        self.result.update(
            cpes=len(self.serials),
            sessions=self.done,
            lost=self.lost,
            unfinished=len(self.serials) - self.done,
            rpcs=self.rpcs,
            retries=self.retries,
            t_last_done=self.t_last_done,
        )
        super().finish()


class ApiRun(_Run):
    """The GETs of each ``(name, paths, times)`` query, one at a time."""

    def __init__(self, reactor: Reactor, spec: dict[str, Any]) -> None:
        super().__init__(reactor, spec)
        headers = self.host_header + b"Authorization: Bearer %s\r\n" % spec["token"].encode()
        self.getter = KeepAliveGetter(
            reactor, HOST, self.port, headers, self._response, self._error, self.request_timeout
        )
        # (name, paths, times): each path GET `times` times in a row.
        self.queries: list[tuple[str, list[str]]] = [
            (name, [path for path in paths for _ in range(times)])
            for name, paths, times in spec["queries"]
        ]
        self.per_query_time = float(spec.get("per_query_time", 30.0))
        self.by_query: dict[str, dict[str, Any]] = {}
        self._q = 0
        self._i = 0
        self._query_started = 0.0

    def begin(self) -> None:
        super().begin()
        self._next()

    def _current(self) -> dict[str, Any]:
        name = self.queries[self._q][0]
        return self.by_query.setdefault(name, {"latencies": [], "status": {}, "errors": {}})

    def _next(self) -> None:
        if self.finished:
            return
        now = time.monotonic()
        if self._i == 0:
            self._query_started = now
        paths = self.queries[self._q][1]
        if self._i >= len(paths) or now - self._query_started > self.per_query_time:
            self._q += 1
            self._i = 0
            if self._q >= len(self.queries):
                self.finish()
                return
            self._next()
            return
        path = paths[self._i]
        self._i += 1
        self.getter.get(path)

    def _response(self, status: int, body: bytes, elapsed: float) -> None:
        entry = self._current()
        entry["latencies"].append(round(elapsed, 6))
        key = str(status)
        entry["status"][key] = entry["status"].get(key, 0) + 1
        self._next()

    def _error(self, kind: str) -> None:
        entry = self._current()
        entry["errors"][kind] = entry["errors"].get(kind, 0) + 1
        self.errors[kind] += 1
        self._next()

    def finish(self) -> None:
        self.getter.close()
        self.result.update(queries=self.by_query)
        super().finish()


MODES: dict[str, type[_Run]] = {"sessions": SessionsRun, "storm": StormRun, "api": ApiRun}


def _raise_fd_limit() -> None:
    # A storm holds thousands of sockets at once.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.loadgen '<json spec>'", file=sys.stderr)
        return 2
    try:
        spec = json.loads(argv[0])
        cls = MODES[spec["mode"]]
    except (ValueError, KeyError) as exc:
        print(f"bench.loadgen: bad spec: {exc}", file=sys.stderr)
        return 2
    _raise_fd_limit()
    from twisted.internet import reactor as _reactor

    reactor: Reactor = _reactor
    run = cls(reactor, spec)
    print("READY", flush=True)
    # Blocking here is fine: the reactor is not running yet. The line is the start signal.
    sys.stdin.readline()
    reactor.callWhenRunning(run.begin)
    reactor.run(installSignalHandlers=False)
    print(json.dumps(run.result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
