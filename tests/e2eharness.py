"""End-to-end harness: a real Appliance on loopback, a cpe_sim fleet, and the REST API over HTTP.

Synchronisation is by events (a CPE's `next_session()` Deferred), never by sleeping; every wait
is bounded so a broken build fails instead of hanging.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from wirecheck import ConformanceTap, SessionConformance

from acs.config import (
    ApiConfig,
    Config,
    CwmpConfig,
    FilesConfig,
    StorageConfig,
    StunConfig,
    XmppConfig,
)
from acs.service import Appliance
from acs.store.models import Device
from bench.pgcluster import fixed_port
from cpe_sim.fleet import Fleet, SimulatedCPE

LOOPBACK = "tcp:0:interface=127.0.0.1"
STUN_LOOPBACK = "udp:0:interface=127.0.0.1"
WAIT = 20.0  # upper bound for any single wait; reached only when something is broken


def now() -> float:
    clock: Any = reactor  # mypy (no zope plugin) can't call methods declared on an Interface
    return float(clock.seconds())


def loopback_config(
    tmp: Path,
    *,
    cwmp_listen: str = LOOPBACK,
    connection_request_timeout: int = 2,
    update_status_timeout: int = 5,
    device_credentials: bool = True,
    files_port: int = 0,
    stun: bool = False,
    max_sessions: int = CwmpConfig.max_sessions,
    xmpp: XmppConfig | None = None,
) -> Config:
    """The appliance on loopback; ``stun``: with its STUN listener (off by default: it
    adds a second SetParameterValues to every provisioning, which the fleets' bootstrap
    timing in the other tests was not sized for)."""
    return Config(
        storage=StorageConfig(database=str(tmp / "acs.db"), files=str(tmp / "files")),
        cwmp=CwmpConfig(
            listen=cwmp_listen,
            connection_request_timeout=connection_request_timeout,
            device_credentials=device_credentials,
            max_sessions=max_sessions,
        ),
        api=ApiConfig(listen=LOOPBACK, update_status_timeout=update_status_timeout),
        files=FilesConfig(
            listen=f"tcp:{files_port}:interface=127.0.0.1",
            public_url=f"http://127.0.0.1:{files_port}",
        ),
        stun=StunConfig(listen=STUN_LOOPBACK if stun else ""),
        xmpp=xmpp or XmppConfig(),
    )


async def bounded(d: defer.Deferred[Any], timeout: float = WAIT) -> Any:
    d.addTimeout(timeout, reactor)
    return await d


def check_cwmp_conformance(appliance: Appliance, test: unittest.TestCase) -> SessionConformance:
    """Validate every body of the appliance's CWMP sessions (tests/wirecheck.py); the test
    fails at cleanup, naming each invalid message, if any was not schema-valid."""
    checker = SessionConformance()
    site: Any = appliance.listeners["cwmp"].factory
    site.resource = ConformanceTap(site.resource, checker)
    test.addCleanup(checker.assert_clean)
    return checker


async def until(
    cpe: SimulatedCPE, done: Callable[[], bool], *, sessions: int = 8, wait: float = WAIT
) -> None:
    """Wait, one completed CPE session at a time (each within ``wait`` seconds), until
    `done()` holds (bounded)."""
    for _ in range(sessions):
        if done():
            return
        await bounded(cpe.next_session(), wait)
    if not done():
        raise AssertionError(f"condition still false after {sessions} sessions of {cpe.serial}")


class ApplianceWithFleet(unittest.TestCase):
    """A started appliance and a started fleet of `COUNT` CPEs that completed their bootstrap."""

    COUNT = 20

    async def start_appliance(self, tmp: Path, **config: Any) -> None:
        config.setdefault("files_port", fixed_port())  # the file server's URLs name it
        self.appliance = Appliance(loopback_config(tmp, **config), reactor)
        self.conformance = check_cwmp_conformance(self.appliance, self)
        self.appliance.service.startService()
        self.addCleanup(self.appliance.service.stopService)
        ports = await bounded(self.appliance.when_listening())
        self.acs_url = f"http://127.0.0.1:{ports['cwmp'].getHost().port}/"
        self.api_url = f"http://127.0.0.1:{ports['api'].getHost().port}/api/v1"

    async def start_fleet(self, *, count: int | None = None, **fleet: Any) -> None:
        """A fleet whose CPEs have all finished their first (BOOTSTRAP) session."""
        options: dict[str, Any] = {"model": "mixed", "reboot_delay": 0.05, "periodic": False}
        options.update(fleet)
        self.fleet = Fleet(reactor, acs_url=self.acs_url, count=count or self.COUNT, **options)
        first_sessions = [cpe.next_session() for cpe in self.fleet.cpes]
        await self.fleet.start()
        self.addCleanup(self.fleet.stop)
        await bounded(defer.gatherResults(first_sessions), max(WAIT, len(first_sessions) / 10))
        await self._through_the_session_cap()
        failed = {cpe.serial: cpe.last_error for cpe in self.fleet.cpes if not cpe.sessions_ok}
        self.assertEqual(failed, {}, "bootstrap sessions failed (spread the fleet's start?)")

    async def _through_the_session_cap(self) -> None:
        """A boot storm on a slow box can meet the session cap: the ACS turns CPEs away with
        503 + Retry-After and they come back then (the pacing working as designed). Wait
        (bounded) for those retries; a CPE that failed any other way stays failed."""
        for _ in range(5):
            turned_away = [
                cpe
                for cpe in self.fleet.cpes
                if not cpe.sessions_ok and cpe.sessions_failed == cpe.sessions_busy > 0
            ]
            if not turned_away:
                return
            await bounded(
                defer.gatherResults([cpe.next_session() for cpe in turned_away]), 2 * WAIT
            )

    async def start(self, tmp: Path, **config: Any) -> None:
        await self.start_appliance(tmp, **config)
        await self.start_fleet()

    def tempdir(self) -> Path:
        # trial's mktemp() is relative to the working directory: keep the checkout clean.
        path = Path(tempfile.mkdtemp(prefix="acs-e2e-"))
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    bounded = staticmethod(bounded)

    async def reboot_all(self) -> float:
        """A reboot of every CPE of the fleet through the API, each task waited for there
        (?timeout=30); checks they are all done and returns the seconds it all took."""

        async def reboot(cpe: SimulatedCPE) -> dict[str, Any]:
            code, body = await self.api(
                "POST", f"/inventory_device/{self.device(cpe).id}/tasks/?timeout=30",
                {"kind": "reboot"},
            )  # fmt: skip
            self.assertEqual(code, 200, body)
            return body  # type: ignore[no-any-return]

        started = self.appliance.reactor.seconds()
        tasks = await self.bounded(
            defer.gatherResults([defer.ensureDeferred(reboot(c)) for c in self.fleet.cpes]), 60
        )
        self.assertEqual([t["state"] for t in tasks], ["done"] * len(self.fleet.cpes))
        return float(self.appliance.reactor.seconds() - started)

    def device(self, cpe: SimulatedCPE) -> Device:
        device = self.appliance.store.find_device_by_serial(cpe.serial)
        assert device is not None, f"{cpe.serial} not registered"
        return device

    def task_state(self, task_id: int) -> str:
        t = self.appliance.store.get_task(task_id)
        assert t is not None
        return t.state

    async def api(
        self, method: str, path: str, body: Any = None, *, role: str = "operator"
    ) -> tuple[int, Any]:
        """One REST call with a token of `role` (made once per role); (status, JSON body).
        A bytes `body` is sent raw (an upload); an answer that is not JSON comes as bytes."""
        tokens: dict[str, str] = self.__dict__.setdefault("_tokens", {})
        if role not in tokens:
            _, tokens[role] = self.appliance.store.create_token(f"e2e-{role}", role, [], now=now())
        if "_pool" not in self.__dict__:
            self._pool = HTTPConnectionPool(reactor, persistent=False)
            self.addCleanup(self._pool.closeCachedConnections)
        raw = isinstance(body, bytes)
        headers = {
            "Authorization": f"Bearer {tokens[role]}",
            "Content-Type": "application/octet-stream" if raw else "application/json",
        }
        data = body if raw or body is None else json.dumps(body).encode()
        response = await bounded(
            treq.request(method, self.api_url + path, headers=headers, data=data, pool=self._pool)
        )
        content = await bounded(treq.content(response))
        kind = response.headers.getRawHeaders("content-type", [""])[0]
        if content and kind != "application/json":
            return response.code, content
        return response.code, json.loads(content) if content else None
