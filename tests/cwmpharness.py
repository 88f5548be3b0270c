"""A CWMP resource over real HTTP on 127.0.0.1, for the CWMP-resource and hostile-CPE tests.

The resource gets a ``task.Clock`` as its reactor (session timers, "now", nonce times) while
the HTTP traffic runs on the real reactor; what the ACS answers goes through the conformance
tap (tests/wirecheck.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import treq
from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IReactorTime
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.server import Site
from wirecheck import ConformanceTap, SessionConformance

from acs.config import CwmpConfig
from acs.cwmp import rpc, soap
from acs.cwmp_http import CwmpResource
from acs.store import Device, Store
from acs.tasks import TaskEngine

NS = "urn:dslforum-org:cwmp-1-0"
T0 = 1_700_000_000.0
SECRET = b"s" * 32
REACTOR: Any = reactor


@dataclass
class Reply:
    code: int
    headers: Headers
    body: bytes
    # The Content-Length the server sent (Twisted's client keeps it out of `headers`);
    # None when the response was chunked or unframed.
    length: int | None

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def envelope(self) -> soap.Envelope:
        assert self.code == 200, (self.code, self.body)
        return soap.parse(self.body)

    @property
    def cookie(self) -> str:
        raw = self.header("set-cookie")
        assert raw is not None
        return raw.split(";")[0]


def make_inform(
    serial: str = "SN0001",
    events: tuple[str, ...] = ("2 PERIODIC",),
    root: str = "Device.",
) -> rpc.Inform:
    return rpc.Inform(
        device_id=rpc.DeviceId("Acme", "00AABB", "HomeRouter", serial),
        events=tuple(rpc.EventStruct(code) for code in events),
        current_time="2024-01-01T00:00:00Z",
        parameters=(
            rpc.ParameterValue(f"{root}DeviceInfo.SoftwareVersion", "2.1"),
            rpc.ParameterValue(f"{root}DeviceInfo.HardwareVersion", "hw3"),
            rpc.ParameterValue(
                f"{root}ManagementServer.ConnectionRequestURL", "http://127.0.0.1:7548/cr"
            ),
        ),
    )


def wire(message: rpc.Message, cwmp_id: str | None = "1", ns: str = NS, **header: Any) -> bytes:
    return soap.serialize(soap.Envelope(message, soap.Header(id=cwmp_id, **header), ns))


class CwmpResourceCase(unittest.TestCase):
    """A CwmpResource on 127.0.0.1 (real store and engine, a Clock as its reactor). On
    PostgreSQL the store runs the resource's units of work in its pool of threads, as the
    appliance does."""

    store_class: type[Store] = Store

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = self.store_class.open(":memory:")
        self.addCleanup(self.store.close)
        self.store.start_pool(REACTOR, 4)
        self.engine = TaskEngine(self.store, cast(IReactorTime, self.clock))
        self.pool = HTTPConnectionPool(REACTOR, persistent=False)
        self.serve(CwmpConfig())

    def serve(
        self,
        config: CwmpConfig,
        *,
        max_rpcs: int = 500,
        threads: Callable[..., defer.Deferred[Any]] | None = None,
    ) -> None:
        self.config = config
        self.resource = CwmpResource(
            store=self.store,
            tasks=self.engine,
            config=config,
            reactor=cast(IReactorTime, self.clock),
            secret=SECRET,
            max_rpcs_per_session=max_rpcs,
            threads=threads,
        )
        self.addCleanup(self.resource.stop)
        # What the ACS answers is checked against the XSDs; the CPE side is hostile on purpose.
        self.conformance = SessionConformance(check_cpe=False)
        self.addCleanup(self.conformance.assert_clean)
        tap = ConformanceTap(self.resource, self.conformance)
        port: Any = REACTOR.listenTCP(0, Site(tap), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}/"

    async def request(
        self,
        body: bytes = b"",
        *,
        method: str = "POST",
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
        pool: HTTPConnectionPool | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if cookie is not None:
            hdrs["Cookie"] = cookie
        response = await treq.request(
            method,
            self.url,
            data=body if method == "POST" else None,
            headers=Headers({k.encode(): [v.encode()] for k, v in hdrs.items()}),
            pool=pool or self.pool,
        )
        content = await treq.content(response)
        length = response.length if isinstance(response.length, int) else None
        return Reply(response.code, response.headers, content, length)

    # --- helpers --------------------------------------------------------------------------

    def provisioned_device(self, serial: str = "SN0001", **fields: Any) -> Device:
        org = self.store.ensure_organization("Default")
        return self.store.create_device(
            serial_number=serial,
            name=serial,
            organization_id=org.id,
            now=T0,
            actor="test",
            provisioned=True,
            **fields,
        )

    def snapshot(self) -> Any:
        devices = [self.store.get_device(i) for i in range(1, 20)]
        return (
            self.store.count_devices(),
            devices,
            [self.store.history(i) for i in range(1, 20)],
            [self.store.tasks_for_device(d.id) for d in devices if d is not None],
        )

    async def start_session(self, serial: str = "SN0001", **kw: Any) -> Reply:
        reply = await self.request(wire(make_inform(serial), **kw))
        assert reply.code == 200, (reply.code, reply.body)
        assert isinstance(reply.envelope().message, rpc.InformResponse)
        return reply
