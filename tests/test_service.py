"""The appliance wiring (acs.service) and GET /healthz (api.app), over real loopback HTTP."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

import acs
from acs import stun
from acs.authguard import AuthThrottle
from acs.config import (
    ApiConfig,
    Config,
    ConfigError,
    CwmpConfig,
    FilesConfig,
    StorageConfig,
    StunConfig,
)
from acs.listen import LISTEN_BACKLOG, is_tls, with_backlog
from acs.metrics import Metrics
from acs.service import Appliance, build_service
from acs.store import Store
from acs.version import build_info
from api.app import make_app

LOOPBACK = "tcp:0:interface=127.0.0.1"
reactor: Any = _reactor  # mypy cannot see the reactor's zope interfaces


def _config(tmp: Path, **listen: str) -> Config:
    return Config(
        storage=StorageConfig(
            database=str(tmp / "var" / "acs.db"), files=str(tmp / "var" / "files")
        ),
        cwmp=CwmpConfig(listen=listen.get("cwmp", LOOPBACK), default_organization="Acme"),
        api=ApiConfig(listen=listen.get("api", LOOPBACK)),
        files=FilesConfig(listen=listen.get("files", LOOPBACK)),
        stun=StunConfig(listen=listen.get("stun", "udp:0:interface=127.0.0.1")),
    )


class ApplianceTests(unittest.TestCase):
    def setUp(self) -> None:
        # Not self.mktemp(): under pytest that is relative to the checkout, not a temp dir.
        self.tmp = Path(tempfile.mkdtemp(prefix="acs-test-service-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        agent: Any = Agent(reactor, pool=self.pool)
        self.http = HTTPClient(agent)

    async def start(self, config: Config | None = None) -> Appliance:
        appliance = Appliance(config or _config(self.tmp), reactor, secret=b"k" * 32)
        appliance.service.startService()
        self.addCleanup(
            lambda: appliance.service.stopService() if appliance.service.running else None
        )
        await appliance.when_listening()
        return appliance

    async def get_json(self, url: str) -> tuple[int, Any, str]:
        response = await self.http.get(url)
        body = await response.content()
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0].decode()
        return response.code, json.loads(body), content_type

    async def test_healthz_reports_every_listener_and_the_device_count(self) -> None:
        appliance = await self.start()
        api = appliance.urls()["api"]

        for path in ("healthz", "healthz/"):
            code, body, content_type = await self.get_json(api + path)
            self.assertEqual(code, 200)
            self.assertEqual(content_type, "application/json")
            self.assertEqual(body["status"], "ok")
            self.assertEqual(body["version"], acs.__version__)
            self.assertEqual(body["commit"], build_info()["commit"])
            self.assertEqual(body["node"], appliance.node)
            self.assertEqual(body["devices"], 0)
            ports = appliance.listening()
            for name in ("cwmp", "api", "files"):
                port: Any = ports[name]
                assert port is not None
                self.assertEqual(
                    body["listeners"][name],
                    {"address": f"127.0.0.1:{port.getHost().port}", "listening": True},
                )

    async def stun_exchange(self, interface: str, host: str, port: int, data: bytes) -> Any:
        """``data`` to the STUN listener from a socket on ``interface``; (its answer, the
        socket's own address)."""
        answered: Deferred[bytes] = Deferred()

        class Client(DatagramProtocol):
            def datagramReceived(self, datagram: bytes, addr: Any) -> None:
                if not answered.called:
                    answered.callback(datagram)

        client = reactor.listenUDP(0, Client(), interface=interface)
        self.addCleanup(client.stopListening)
        client.write(data, (host, port))
        answer = await answered.addTimeout(10, reactor)
        return stun.parse(answer), client.getHost()

    async def test_the_stun_listener_answers_on_ipv4_and_ipv6(self) -> None:
        for interface in ("127.0.0.1", "::1"):
            if interface == "::1" and not socket.has_ipv6:
                continue
            tmp = self.tmp / interface.replace(":", "_")
            config = _config(tmp, stun=f"udp:0:interface={interface}")
            appliance = await self.start(config)
            port: Any = appliance.listening()["stun"]
            request = stun.binding_request(b"t" * 12)
            answer, mine = await self.stun_exchange(
                interface, interface, port.getHost().port, request
            )
            self.assertEqual(answer.kind, stun.BINDING_RESPONSE)
            self.assertEqual(stun.mapped_address(answer), (interface, mine.port))
            _code, body, _ = await self.get_json(appliance.urls()["api"] + "healthz")
            bound = f"[{interface}]" if ":" in interface else interface
            self.assertEqual(
                body["listeners"]["stun"],
                {"address": f"{bound}:{port.getHost().port}", "listening": True},
            )
            await appliance.service.stopService()

    async def test_a_stun_port_in_use_fails_the_start_with_a_clear_error(self) -> None:
        taken = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        config = _config(self.tmp, stun=f"udp:{taken.getHost().port}:interface=127.0.0.1")
        appliance = Appliance(config, reactor, secret=b"k" * 32)
        appliance.service.startService()
        self.addCleanup(appliance.service.stopService)
        with self.assertRaises(CannotListenError):
            await appliance.when_listening()

    async def test_healthz_counts_devices(self) -> None:
        appliance = await self.start()
        org = appliance.default_organization
        appliance.store.create_device(
            serial_number="SN1", name="one", organization_id=org.id, now=1.0, actor="test"
        )
        _code, body, _ = await self.get_json(appliance.urls()["api"] + "healthz")
        self.assertEqual(body["devices"], 1)

    async def test_three_distinct_listeners_and_files_answers_404(self) -> None:
        appliance = await self.start()
        urls = appliance.urls()
        self.assertEqual(len(set(urls.values())), 3)
        response = await self.http.get(urls["files"] + "firmware/image.bin")
        await response.content()
        self.assertEqual(response.code, 404)

    @pytest.mark.sqlite_only
    async def test_start_creates_storage_and_the_default_organization(self) -> None:
        appliance = await self.start()
        self.assertTrue((self.tmp / "var" / "acs.db").is_file())
        self.assertTrue((self.tmp / "var" / "files").is_dir())
        self.assertEqual(appliance.default_organization.name, "Acme")
        self.assertIn("Acme", [o.name for o in appliance.store.organizations_page(None)[1]])

    async def test_queued_task_wakes_the_device_through_connection_requests(self) -> None:
        appliance = await self.start()
        device = appliance.store.create_device(
            serial_number="SN1",
            name="one",
            organization_id=appliance.default_organization.id,
            now=1.0,
            actor="test",
        )
        sent: list[Deferred[str]] = []  # the appliance's wakes, to wait for (PostgreSQL)

        def wake(device_id: int) -> Deferred[str]:
            sent.append(appliance.wake(device_id))
            return sent[-1]

        appliance.tasks.set_wake(wake)
        appliance.tasks.queue(device.id, "reboot", actor="test")
        self.assertEqual(await gatherResults(sent), ["no_url"])
        # The device has no ConnectionRequestURL yet: the wake is recorded as no_url.
        entries = [
            e.detail for e in appliance.store.history(device.id) if e.action == "connection_request"
        ]
        self.assertEqual([e["outcome"] for e in entries], ["no_url"])

    async def test_stopping_closes_listeners_and_the_store(self) -> None:
        appliance = await self.start()
        api = appliance.urls()["api"]
        await appliance.service.stopService()

        self.assertEqual(
            appliance.listening(), {"cwmp": None, "api": None, "files": None, "stun": None}
        )
        with self.assertRaises(appliance.store.Error):
            appliance.store.count_devices()
        with self.assertRaises(ConnectionRefusedError):
            await self.http.get(api + "healthz")

    async def test_port_in_use_fails_when_listening(self) -> None:
        taken = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        config = _config(self.tmp, api=f"tcp:{taken.getHost().port}:interface=127.0.0.1")
        appliance = Appliance(config, reactor)
        appliance.service.startService()
        try:
            with self.assertRaises(CannotListenError):
                await appliance.when_listening()
            self.assertIsNone(appliance.listening()["api"])
        finally:
            await appliance.service.stopService()

    def test_bad_listen_description_is_a_config_error_before_opening_the_store(self) -> None:
        with self.assertRaises(ConfigError) as info:
            Appliance(_config(self.tmp, files="nonsense:1"), reactor)
        self.assertIn("[files] listen", str(info.exception))
        self.assertFalse((self.tmp / "var" / "acs.db").exists())

    def test_tcp_listeners_get_a_large_backlog_unless_their_string_sets_one(self) -> None:
        appliance = Appliance(_config(self.tmp, api=LOOPBACK + ":backlog=7"), reactor)
        try:
            # Any: the endpoint's backlog is only visible as its private attribute.
            cwmp: Any = appliance.listeners["cwmp"].endpoint
            api: Any = appliance.listeners["api"].endpoint
            self.assertEqual(cwmp._backlog, LISTEN_BACKLOG)
            self.assertEqual(api._backlog, 7)
            # What the operator wrote is what /healthz shows.
            self.assertEqual(appliance.listeners["cwmp"].description, LOOPBACK)
        finally:
            appliance.close()

    def test_build_service_holds_the_listeners_and_the_sweep(self) -> None:
        service = build_service(_config(self.tmp), reactor)
        try:
            names = {s.name for s in service}
            self.assertEqual(
                names,
                {
                    "cwmp",
                    "api",
                    "files",
                    "peer",
                    "stun",
                    "liveness",
                    "scheduler",
                    "transfer_watch",
                    "campaigns",
                    "webhooks",
                    "storage_maintenance",
                    "overview_series",
                },
            )
        finally:
            service.stopService()  # never started: still closes the store


class _View:
    """A stand-in appliance for /healthz edge cases."""

    def __init__(self, store: Any, ports: Mapping[str, IListeningPort | None]) -> None:
        self.config = Config()
        self.node = "view-node"
        self.store = store
        self._ports = ports
        self.api_auth_throttle = AuthThrottle("API", lambda _: None)
        self.metrics = Metrics()

    def listening(self) -> Mapping[str, IListeningPort | None]:
        return self._ports


def _broken_store() -> Store:
    """A store whose every count fails as a broken disk would."""
    store = Store.open(":memory:")

    def count_devices(*_: object, **__: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    store.count_devices = count_devices  # type: ignore[method-assign]
    return store


class HealthzUnitTests(unittest.TestCase):
    async def _get(self, view: _View, path: str = "/healthz") -> tuple[int, Any]:
        client: Any = StubTreq(make_app(view).resource())
        response = await client.get("http://localhost" + path)
        return response.code, json.loads(await response.content())

    async def test_listener_not_listening_shows_the_configured_endpoint(self) -> None:
        store = Store.open(":memory:")
        self.addCleanup(store.close)
        code, body = await self._get(_View(store, {"cwmp": None, "api": None, "files": None}))
        self.assertEqual(code, 200)
        self.assertEqual(body["listeners"]["cwmp"], {"address": "tcp:7547", "listening": False})
        self.assertEqual(body["listeners"]["files"], {"address": "tcp:7567", "listening": False})

    async def test_store_failure_is_503_json_not_a_traceback(self) -> None:
        store = _broken_store()
        self.addCleanup(store.close)
        code, body = await self._get(_View(store, {}))
        self.assertEqual(code, 503)
        self.assertEqual(body["status"], "error")
        self.flushLoggedErrors(sqlite3.OperationalError)

    async def test_unknown_path_is_404(self) -> None:
        store = _broken_store()
        self.addCleanup(store.close)
        client: Any = StubTreq(make_app(_View(store, {})).resource())
        response = await client.get("http://localhost/nothing-here")
        await response.content()
        self.assertEqual(response.code, 404)


def test_with_backlog_adds_one_only_to_tcp_and_ssl_strings_without_it() -> None:
    assert LISTEN_BACKLOG >= 1024
    assert with_backlog("tcp:7547", 4096) == "tcp:7547:backlog=4096"
    assert with_backlog("TCP:7547", 99) == "TCP:7547:backlog=99"
    ssl = "ssl:7547:privateKey=key.pem:certKey=cert.pem"
    assert with_backlog(ssl, 4096) == ssl + ":backlog=4096"
    assert with_backlog("tcp6:7547:interface=\\:\\:1", 8) == "tcp6:7547:interface=\\:\\:1:backlog=8"
    assert with_backlog("tcp:7547:backlog=10", 4096) == "tcp:7547:backlog=10"
    assert with_backlog("tcp:7547: backlog = 10", 4096) == "tcp:7547: backlog = 10"
    # Behind the PROXY protocol, the inner TCP/SSL listener gets it.
    assert with_backlog("haproxy:tcp:7547", 7) == "haproxy:tcp:7547:backlog=7"
    assert with_backlog("HAProxy:ssl:7547:backlog=3", 7) == "HAProxy:ssl:7547:backlog=3"
    assert is_tls("haproxy:ssl:7547") and is_tls("SSL:1") and not is_tls("haproxy:tcp:1")
    # Not TCP/SSL, or no port: left for the endpoint parser to accept or refuse.
    assert with_backlog("unix:/run/acs.sock", 4096) == "unix:/run/acs.sock"
    assert with_backlog("nonsense", 4096) == "nonsense"
    # An escaped ':' inside a value is not a field separator.
    assert with_backlog("tcp:7547:interface=a\\:backlog=1", 5).endswith(":backlog=5")
