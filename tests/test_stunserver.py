"""The STUN server of TR-111 (acs.stunserver): what each datagram gets, what it binds, and
that no datagram stops it or grows its memory. The store is SQLite in memory (units run
at once); datagrams go through a transport that records what is sent back."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from twisted.internet.task import Clock

from acs import stun, stunserver
from acs.store import Store
from acs.stunserver import SourceLimiter, StunServer

T0 = 1_700_000_000.0
CPE = ("198.51.100.7", 40000)
PASSWORD = "stun-secret"


class _Transport:
    """A listening UDP port as the protocol sees it: what it wrote, and to whom."""

    class addressFamily:  # the socket module's enum member, as Twisted gives it
        name = "AF_INET"

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


class Harness:
    def __init__(self, *, limiter: SourceLimiter | None = None) -> None:
        self.store = Store.open(":memory:")
        org = self.store.ensure_organization("Default").id
        self.device = self.store.create_device(
            serial_number="SN1", name="cpe", organization_id=org, now=T0, actor="t"
        ).id
        self.store.set_stun_credentials(self.device, "cpe-1", PASSWORD)
        self.clock = Clock()
        self.clock.advance(T0)
        self.outcomes: list[str] = []
        self.server = StunServer(
            self.store, self.clock, observe=self.outcomes.append, limiter=limiter
        )
        self.transport = _Transport()
        self.server.makeConnection(self.transport)  # type: ignore[arg-type]

    def send(self, data: bytes, source: tuple[str, int] = CPE) -> stun.Message | None:
        """``data`` from ``source``; the answer it got, parsed (None: no answer)."""
        before = len(self.transport.sent)
        self.server.datagramReceived(data, source)
        if len(self.transport.sent) == before:
            return None
        answer, to = self.transport.sent[-1]
        assert to == source
        return stun.parse(answer)


@pytest.fixture
def harness() -> Any:
    made = Harness()
    yield made
    made.store.close()


def signed(*, binding: bool = True, password: str = PASSWORD, user: str = "cpe-1") -> bytes:
    return stun.binding_request(
        random.randbytes(12),
        username=user,
        key=password.encode(),
        connection_request_binding=binding,
    )


def test_an_anonymous_request_learns_its_address_and_binds_nothing(harness: Harness) -> None:
    answer = harness.send(stun.binding_request(b"a" * 12))
    assert answer is not None and answer.kind == stun.BINDING_RESPONSE
    assert stun.mapped_address(answer) == CPE
    assert harness.outcomes == ["anonymous"]
    binding = harness.store.stun_binding(harness.device)
    assert binding is not None and binding.address is None


def test_a_signed_request_binds_the_device_and_is_answered_signed(harness: Harness) -> None:
    answer = harness.send(signed())
    assert answer is not None and answer.kind == stun.BINDING_RESPONSE
    assert answer.integrity(PASSWORD.encode()) == "5389"
    assert stun.mapped_address(answer) == CPE
    binding = harness.store.stun_binding(harness.device)
    assert binding is not None
    assert (binding.address, binding.port, binding.seen) == (*CPE, T0)
    assert harness.outcomes == ["bound"]
    [entry] = [e for e in harness.store.history(harness.device) if e.action == "stun_binding"]
    assert entry.detail == {"address": CPE[0], "port": CPE[1], "previous": None}


def test_an_unchanged_binding_is_written_only_every_refresh(harness: Harness) -> None:
    harness.send(signed())
    harness.clock.advance(stunserver.REFRESH - 1)
    harness.send(signed())
    binding = harness.store.stun_binding(harness.device)
    assert binding is not None and binding.seen == T0  # not written again
    harness.clock.advance(1)
    harness.send(signed())
    binding = harness.store.stun_binding(harness.device)
    assert binding is not None and binding.seen == T0 + stunserver.REFRESH
    moved = ("198.51.100.7", 40001)
    harness.send(signed(), moved)  # the NAT gave a new port: written at once
    binding = harness.store.stun_binding(harness.device)
    assert binding is not None and (binding.address, binding.port) == moved
    assert harness.outcomes == ["bound"] * 4


def test_a_request_without_connection_request_binding_binds_nothing(harness: Harness) -> None:
    answer = harness.send(signed(binding=False))
    assert answer is not None and answer.kind == stun.BINDING_RESPONSE
    binding = harness.store.stun_binding(harness.device)
    assert binding is not None and binding.address is None


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            stun.binding_request(b"u" * 12, username="cpe-1", connection_request_binding=True),
            id="unsigned",
        ),
        pytest.param(signed(password="wrong"), id="wrong-password"),
        pytest.param(signed(user="somebody-else"), id="signed-by-an-unknown-user"),
    ],
)
def test_a_request_naming_a_device_must_be_signed_by_it(
    harness: Harness, request_bytes: bytes
) -> None:
    answer = harness.send(request_bytes)
    assert answer is not None and answer.kind == stun.BINDING_ERROR
    assert stun.error_code(answer) == 401
    assert harness.outcomes == ["unauthenticated"]
    binding = harness.store.stun_binding(harness.device)
    assert binding is not None and binding.address is None  # nobody can move its binding


def test_an_unknown_username_without_integrity_is_answered_and_binds_nothing(
    harness: Harness,
) -> None:
    request = stun.binding_request(
        b"n" * 12, username="vendor-default", connection_request_binding=True
    )
    answer = harness.send(request)
    assert answer is not None and answer.kind == stun.BINDING_RESPONSE
    assert harness.outcomes == ["unknown_username"]


def test_new_credentials_are_found_although_the_old_ones_were_cached(harness: Harness) -> None:
    harness.send(signed())
    harness.store.set_stun_credentials(harness.device, "cpe-1", "provisioned-again")
    answer = harness.send(signed(password="provisioned-again"))
    assert answer is not None and answer.kind == stun.BINDING_RESPONSE
    assert answer.integrity(b"provisioned-again") == "5389"
    assert harness.outcomes == ["bound", "bound"]


def test_unknown_comprehension_required_attributes_get_420(harness: Harness) -> None:
    base = stun.binding_request(b"x" * 12)
    extra = struct.pack("!HH", 0x0024, 4) + b"\0\0\0\1"  # ICE PRIORITY
    data = base[:2] + struct.pack("!H", len(base) - 20 + 8) + base[4:] + extra
    answer = harness.send(data)
    assert answer is not None and stun.error_code(answer) == 420
    assert answer.get(stun.UNKNOWN_ATTRIBUTES) == b"\x00\x24"


def test_what_is_not_a_binding_request_is_dropped_unanswered(harness: Harness) -> None:
    request = stun.parse(stun.binding_request(b"r" * 12))
    response = stun.binding_response(request, CPE)
    for data in (b"", b"GET / HTTP/1.1\r\n\r\n", b"\0" * 2000, response):
        assert harness.send(data) is None
    assert harness.outcomes == ["malformed", "malformed", "malformed", "ignored"]


def test_a_source_over_its_rate_is_dropped() -> None:
    made = Harness(limiter=SourceLimiter(rate=1.0, burst=3.0))
    try:
        answers = [made.send(stun.binding_request(b"b" * 12)) for _ in range(5)]
        assert [a is not None for a in answers] == [True, True, True, False, False]
        other = made.send(stun.binding_request(b"b" * 12), ("203.0.113.1", 1))
        assert other is not None  # each source has its own bucket
        made.clock.advance(1)
        assert made.send(stun.binding_request(b"b" * 12)) is not None
        assert made.outcomes.count("rate_limited") == 2
    finally:
        made.store.close()


def test_fuzzed_datagrams_never_break_the_listener_nor_grow_its_tables(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stunserver, "MAX_ENTRIES", 50)
    rng = random.Random(3478)  # the same datagrams every run
    seeds = [signed(), stun.binding_request(b"s" * 16, username="classic"), signed(binding=False)]
    for i in range(5_000):
        data = bytearray(rng.choice(seeds))
        kind = rng.random()
        if kind < 0.3:
            data = bytearray(rng.randbytes(rng.randint(0, 1400)))
        elif kind < 0.5:
            del data[rng.randrange(len(data)) :]
        elif kind < 0.7:  # a length field that lies
            at = rng.choice([2, 22, 26]) if len(data) > 27 else 2
            data[at : at + 2] = struct.pack("!H", rng.randrange(65536))
        elif kind < 0.8:  # wrong magic cookie
            data[4:8] = rng.randbytes(4)
        elif kind < 0.9:  # an unknown user, a new one each time
            data = bytearray(stun.binding_request(rng.randbytes(12), username=f"user-{i}"))
        else:
            data += rng.randbytes(rng.randint(1, 2000))  # oversized
        source = (f"192.0.2.{rng.randrange(1, 255)}", rng.randrange(1, 65536))
        harness.server.datagramReceived(bytes(data), source)
        harness.clock.advance(0.01)
    assert "error" not in harness.outcomes
    assert set(harness.outcomes) <= {
        "malformed", "ignored", "anonymous", "unknown_username", "unauthenticated",
        "unknown_attribute", "bound", "rate_limited",
    }  # fmt: skip
    tables = (
        harness.server._credentials,
        harness.server._kept,
        harness.server._limiter._buckets,
    )
    assert all(len(table) <= 50 for table in tables)
    # And it still serves.
    assert harness.send(signed()) is not None
