"""UDP connection requests (TR-111 Part 2, TR-069 Annex G) for CPEs behind NAT.

The request is one datagram holding an HTTP request line with no body::

    GET http://host:port?ts=1700000000&id=42&un=user&cn=XTGRWIPC&sig=<40 hex> HTTP/1.1
    Host: host:port

``sig`` is HMAC-SHA1, keyed with the device's ConnectionRequestPassword, of the values of
``ts`` ``id`` ``un`` ``cn`` one after the other. The CPE acts on it only when the signature
holds, ``ts`` is not older than the last one it acted on and ``id`` is new: so ``ts`` never
goes back here (even if the clock does) and each request has a random ``id`` and
``cnonce``. UDP may be lost: each request is sent COPIES times, RETRANSMIT seconds apart,
unchanged (the CPE ignores the copies after the first it gets, by their ``id``).

It goes from the STUN listener's own socket (`StunServer.send`): the NAT's binding lets in
only datagrams from the address it points to; so a binding another node's socket keeps
(``UdpTarget.node``) is sent by that node (`acs.connreq.UdpRelay`). Where: the binding
the device's signed Binding Requests keep (`Store.stun_binding`) while fresh (seen within
STALE_PERIODS keep-alive periods), else the ``UDPConnectionRequestAddress`` the device
reported when the connection-request target policy allows that address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from acs.clock import Clock
from acs.store import Device, Store

COPIES = 3
RETRANSMIT = 1.0
# A binding not renewed for this many keep-alive periods is taken as gone.
STALE_PERIODS = 3

NAT_DETECTED = "ManagementServer.NATDetected"
UDP_ADDRESS = "ManagementServer.UDPConnectionRequestAddress"


def signature(password: str, ts: int, message_id: int, username: str, cnonce: str) -> str:
    text = f"{ts}{message_id}{username}{cnonce}".encode()
    return hmac.new(password.encode("utf-8"), text, hashlib.sha1).hexdigest().upper()


def udp_request(
    host: str, port: int, username: str, password: str, *, ts: int, message_id: int, cnonce: str
) -> bytes:
    """The datagram of one UDP connection request to ``host``:``port``."""
    authority = f"[{host}]" if ":" in host else host
    if port != 80:
        authority = f"{authority}:{port}"
    sig = signature(password, ts, message_id, username, cnonce)
    query = (
        f"ts={ts}&id={message_id}&un={quote(username, safe='')}&cn={quote(cnonce, safe='')}"
        f"&sig={sig}"
    )
    return f"GET http://{authority}?{query} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()


@dataclass(frozen=True)
class UdpTarget:
    host: str
    port: int
    # The device says it is behind NAT (NATDetected, or it reported its UDP address):
    # UDP first, not only once HTTP failed.
    first: bool
    source: str  # "stun_binding" or "reported"
    # The node whose STUN socket the binding goes through (None: any: this one's).
    node: int | None = None


def _split_host_port(text: str) -> tuple[str, int] | None:
    """``host:port`` / ``[v6]:port`` with an IP address, else None."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        return None


class UdpConnectionRequests:
    """Finds where a device's UDP connection requests go and sends them (see the module)."""

    def __init__(
        self,
        send: Callable[[bytes, str, int], bool],
        clock: Clock,
        *,
        keepalive: float,
        allowed: Callable[[str, str | None], str | None],
    ) -> None:
        """``send(data, host, port)``: the STUN listener's. ``allowed(url, informed_from)``:
        why a reported address may not be used (the connection-request target policy)."""
        self._send = send
        self._clock = clock
        self.stale_after = STALE_PERIODS * keepalive
        self._allowed = allowed
        self._last_ts = 0
        self._pending: set[Any] = set()

    def target(self, store: Store, device: Device, *, now: float) -> UdpTarget | None:
        """Where UDP requests for ``device`` go now (None: nowhere); reads ``store``."""
        root = device.data_model_root or "InternetGatewayDevice."
        nat = store.get_parameter(device.id, root + NAT_DETECTED)
        reported = store.get_parameter(device.id, root + UDP_ADDRESS)
        reported_at = _split_host_port(reported.value or "") if reported is not None else None
        first = (nat is not None and (nat.value or "").strip().lower() in ("1", "true")) or (
            reported_at is not None
        )
        binding = store.stun_binding(device.id)
        if (
            binding is not None
            and binding.address is not None
            and binding.port is not None
            and binding.seen is not None
            and now - binding.seen <= self.stale_after
        ):
            return UdpTarget(binding.address, binding.port, first, "stun_binding", binding.node)
        if reported_at is not None:
            host, port = reported_at
            authority = f"[{host}]" if ":" in host else host
            if self._allowed(f"http://{authority}:{port}/", device.address) is None:
                return UdpTarget(host, port, first, "reported")
        return None

    def send(self, target: UdpTarget, username: str, password: str) -> bool:
        """Send one request (its copies follow); False when the listener cannot send."""
        ts = self._last_ts = max(int(self._clock.seconds()), self._last_ts)
        data = udp_request(
            target.host,
            target.port,
            username,
            password,
            ts=ts,
            message_id=secrets.randbelow(2**32),
            cnonce=secrets.token_hex(8),
        )
        if not self._send(data, target.host, target.port):
            return False
        for copy in range(1, COPIES):
            self._later(copy * RETRANSMIT, data, target)
        return True

    def _later(self, delay: float, data: bytes, target: UdpTarget) -> None:
        def again() -> None:
            self._pending.discard(call)
            self._send(data, target.host, target.port)

        call = self._clock.callLater(delay, again)
        self._pending.add(call)

    def stop(self) -> None:
        """Drop the copies not sent yet (the appliance stops)."""
        for call in self._pending:
            if call.active():
                call.cancel()
        self._pending.clear()
