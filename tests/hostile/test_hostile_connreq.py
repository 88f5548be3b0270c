"""SSRF through ConnectionRequestURL (issue 9), against a real ACS on 127.0.0.1: a CPE that
reports one of the ACS's own listeners as its ConnectionRequestURL gets no request sent
there, and history says why instead of what the port answered."""

from __future__ import annotations

from dataclasses import replace

import treq
from cwmpharness import make_inform, wire
from e2eharness import ApplianceWithFleet, bounded
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool

from acs.cwmp import rpc


class OwnListeners(ApplianceWithFleet):
    async def test_a_url_naming_an_acs_listener_is_refused_unsent(self) -> None:
        await self.start_appliance(self.tempdir())
        ports = self.appliance.listening()
        pool = HTTPConnectionPool(reactor, persistent=False)
        for name in ("api", "cwmp", "files"):
            port = ports[name]
            assert port is not None
            url = f"http://127.0.0.1:{port.getHost().port}/api/v1/organization/"
            inform = make_inform(f"SN-{name}")
            params = tuple(
                rpc.ParameterValue(p.name, url) if p.name.endswith("ConnectionRequestURL") else p
                for p in inform.parameters
            )
            body = wire(replace(inform, parameters=params))
            response = await bounded(treq.post(self.acs_url, data=body, pool=pool))
            await bounded(treq.content(response))
            self.assertEqual(response.code, 200)
            device = self.appliance.store.find_device_by_serial(f"SN-{name}")
            assert device is not None and device.connection_request_url == url
            self.assertEqual(device.address, "127.0.0.1")
            self.assertEqual(await bounded(self.appliance.wake(device.id)), "error")
            (entry,) = [
                h
                for h in self.appliance.store.history(device.id)
                if h.action == "connection_request"
            ]
            self.assertIn("the ACS's own listeners", entry.detail["reason"])
