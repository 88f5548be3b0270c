"""The REST layer's Klein application. For now only ``GET /healthz``.

The inventory API (``/api/v1/...``, spec/inventory-api.md) is added to :class:`ApiApp` in a
later issue: routes are methods of ``ApiApp`` registered on its class-level ``app`` so that they
see the appliance (store, task engine, connection requester) through ``self``.

``/healthz`` needs no token. Paths are served with and without a trailing slash alike
(``strict_slashes=False``: no redirect), as the API conventions require.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, cast

from klein import Klein
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.server import Request

import acs
from acs.config import Config
from acs.store import Store


class ApplianceView(Protocol):
    """What the API needs from :class:`acs.service.Appliance` (kept narrow for tests)."""

    config: Config
    store: Store

    def listening(self) -> Mapping[str, IListeningPort | None]: ...


def port_address(port: IListeningPort) -> str:
    """``host:port`` of a listening port (IPv6 hosts in brackets)."""
    host: Any = cast(Any, port).getHost()  # Any: zope interfaces are opaque to mypy
    name = getattr(host, "host", "")
    number = getattr(host, "port", None)
    if number is None:
        return str(host)
    return f"[{name}]:{number}" if ":" in name else f"{name}:{number}"


def listener_states(appliance: ApplianceView) -> dict[str, dict[str, Any]]:
    """Per listener: the bound address when listening, else the configured endpoint."""
    configured = {
        "cwmp": appliance.config.cwmp.listen,
        "api": appliance.config.api.listen,
        "files": appliance.config.files.listen,
    }
    states: dict[str, dict[str, Any]] = {}
    ports = appliance.listening()
    for name, endpoint in configured.items():
        port = ports.get(name)
        states[name] = {
            "address": port_address(port) if port is not None else endpoint,
            "listening": port is not None,
        }
    return states


def _json(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body).encode("utf-8")


class ApiApp:
    """Routes of the API listener; one instance per appliance."""

    app = Klein()
    log = Logger()

    def __init__(self, appliance: ApplianceView) -> None:
        self.appliance = appliance

    @app.route("/healthz", methods=["GET", "HEAD"], strict_slashes=False)
    def healthz(self, request: Request) -> bytes:
        try:
            devices = self.appliance.store.count_devices()
        except Exception:
            # A health check reports a broken database; it does not crash with a traceback.
            self.log.failure("healthz: store unavailable")
            return _json(
                request,
                503,
                {"status": "error", "version": acs.__version__, "detail": "store unavailable"},
            )
        return _json(
            request,
            200,
            {
                "status": "ok",
                "version": acs.__version__,
                "listeners": listener_states(self.appliance),
                "devices": devices,
            },
        )


def make_app(appliance: ApplianceView) -> Klein:
    """The Klein app of the API listener, bound to ``appliance``."""
    bound: Klein = ApiApp(appliance).app
    return bound
