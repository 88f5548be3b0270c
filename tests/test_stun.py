"""The STUN codec (acs.stun), sans I/O: RFC 5769's sample messages, our own messages
read back, and datagrams that lie."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import random
import struct

import pytest

from acs import stun


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 5769 2.1: a Binding Request with SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
# MESSAGE-INTEGRITY (short-term password) and FINGERPRINT.
SAMPLE_REQUEST = _hex(
    """
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
    """
)
# RFC 5769 2.2: the IPv4 response, XOR-MAPPED-ADDRESS 192.0.2.1:32853.
SAMPLE_IPV4_RESPONSE = _hex(
    """
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
    """
)
PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"


class TestRfc5769:
    def test_sample_request(self) -> None:
        message = stun.parse(SAMPLE_REQUEST)
        assert message.kind == stun.BINDING_REQUEST
        assert not message.classic
        assert message.transaction == _hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")
        assert message.username == "evtj:h6vY"
        assert message.integrity(PASSWORD) == "5389"
        assert message.integrity(b"another password") is None
        assert message.fingerprint_ok() is True
        # PRIORITY (0x0024) is ICE's, comprehension-required, unknown to a Binding server.
        assert message.unknown_required() == [0x0024]

    def test_sample_ipv4_response(self) -> None:
        message = stun.parse(SAMPLE_IPV4_RESPONSE)
        assert message.kind == stun.BINDING_RESPONSE
        assert stun.mapped_address(message) == ("192.0.2.1", 32853)
        assert message.integrity(PASSWORD) == "5389"
        assert message.fingerprint_ok() is True

    def test_a_flipped_bit_breaks_integrity_and_fingerprint(self) -> None:
        tampered = bytearray(SAMPLE_REQUEST)
        tampered[30] ^= 0x01  # inside SOFTWARE
        message = stun.parse(bytes(tampered))
        assert message.integrity(PASSWORD) is None
        assert message.fingerprint_ok() is False


class TestOurMessages:
    def test_tr111_binding_request_reads_back(self) -> None:
        data = stun.binding_request(
            b"t" * 12,
            username="cpe-1",
            key=b"secret",
            connection_request_binding=True,
            binding_change=True,
            fingerprint=True,
        )
        message = stun.parse(data)
        assert message.get(stun.CONNECTION_REQUEST_BINDING) == b"dslforum.org/TR-111 "
        assert message.has(stun.BINDING_CHANGE)
        assert message.username == "cpe-1"
        assert message.integrity(b"secret") == "5389"
        assert message.fingerprint_ok() is True
        assert message.unknown_required() == []

    @pytest.mark.parametrize("source", [("203.0.113.9", 61000), ("2001:db8::9", 1)])
    def test_response_maps_the_source_and_is_signed(self, source: tuple[str, int]) -> None:
        request = stun.parse(stun.binding_request(b"r" * 12, username="u", key=b"k"))
        response = stun.parse(stun.binding_response(request, source, key=b"k"))
        assert response.kind == stun.BINDING_RESPONSE
        assert response.transaction == request.transaction
        assert stun.mapped_address(response) == source
        # Both forms: TR-111 CPEs read MAPPED-ADDRESS, RFC 5389 clients XOR-MAPPED-ADDRESS.
        assert response.get(stun.MAPPED_ADDRESS) == stun.encode_address(source)
        assert response.has(stun.XOR_MAPPED_ADDRESS)
        assert response.integrity(b"k") == "5389"
        assert response.fingerprint_ok() is None  # the request had none

    def test_classic_rfc3489_request(self) -> None:
        # No magic cookie: a 16-byte transaction id; the answer has MAPPED-ADDRESS only.
        request = stun.parse(stun.binding_request(b"c" * 16, username="abcd"))
        assert request.classic and request.transaction == b"c" * 16
        response = stun.parse(stun.binding_response(request, ("198.51.100.1", 4000)))
        assert response.classic and response.transaction == b"c" * 16
        assert not response.has(stun.XOR_MAPPED_ADDRESS)
        assert stun.mapped_address(response) == ("198.51.100.1", 4000)

    def test_classic_integrity_over_zero_padded_text(self) -> None:
        # RFC 3489 11.2.8: the HMAC's text is padded with zeroes to a multiple of 64 bytes.
        unsigned = stun.binding_request(b"p" * 16, username="abcd")
        text = unsigned[:2] + struct.pack("!H", len(unsigned) - 20 + 24) + unsigned[4:]
        padded = text + b"\0" * (-len(text) % 64)
        mac = hmac.new(b"pw", padded, hashlib.sha1).digest()
        message = stun.parse(text + struct.pack("!HH", stun.MESSAGE_INTEGRITY, 20) + mac)
        assert message.integrity(b"pw") == "3489"
        response = stun.parse(
            stun.binding_response(message, ("192.0.2.5", 9), key=b"pw", integrity="3489")
        )
        assert response.integrity(b"pw") == "3489"

    def test_error_response(self) -> None:
        request = stun.parse(stun.binding_request(b"e" * 12))
        error = stun.parse(stun.error_response(request, 420, "Unknown Attribute", [0x0024]))
        assert error.kind == stun.BINDING_ERROR
        assert stun.error_code(error) == 420
        assert error.get(stun.UNKNOWN_ATTRIBUTES) == b"\x00\x24"

    def test_attributes_after_integrity_are_ignored(self) -> None:
        signed = stun.binding_request(b"a" * 12, username="u", key=b"k")
        extra = struct.pack("!HH", stun.USERNAME, 4) + b"evil"
        data = signed[:2] + struct.pack("!H", len(signed) - 20 + 8) + signed[4:] + extra
        message = stun.parse(data)
        assert message.username == "u"
        assert message.integrity(b"k") == "5389"


def _request_header(length: int, *, cookie: bytes = struct.pack("!I", stun.MAGIC_COOKIE)) -> bytes:
    return struct.pack("!HH", stun.BINDING_REQUEST, length) + cookie + b"x" * 12


class TestLies:
    @pytest.mark.parametrize(
        ("data", "why"),
        [
            (b"", "shorter than a STUN header"),
            (b"GET / HTTP/1.1\r\n\r\n", "shorter than a STUN header"),
            (b"\xc0\x01" + b"\0" * 18, "first two bits"),
            (_request_header(4), "does not fit"),  # claims 4 bytes, has none
            (_request_header(2) + b"\0\0", "does not fit"),  # not a multiple of 4
            (_request_header(8) + struct.pack("!HH", stun.USERNAME, 600) + b"abcd", "past the end"),
            (
                _request_header(4) + struct.pack("!HH", stun.MESSAGE_INTEGRITY, 0),
                "MESSAGE-INTEGRITY is not 20 bytes",
            ),
            (_request_header(4) + struct.pack("!HH", stun.FINGERPRINT, 0), "FINGERPRINT"),
            (
                _request_header(12)
                + struct.pack("!HHI", stun.FINGERPRINT, 4, 0)
                + struct.pack("!HH", stun.BINDING_CHANGE, 0),
                "FINGERPRINT is not the last",
            ),
            (_request_header(1300) + b"\0" * 1300, "longer than"),
            (
                _request_header(4 * 33) + struct.pack("!HH", stun.BINDING_CHANGE, 0) * 33,
                "more than 32 attributes",
            ),
            (
                _request_header(520) + struct.pack("!HH", stun.USERNAME, 516) + b"u" * 516,
                "too long",
            ),
        ],
    )
    def test_refused_with_a_reason(self, data: bytes, why: str) -> None:
        with pytest.raises(stun.StunError, match=why):
            stun.parse(data)

    def test_username_not_utf8(self) -> None:
        data = _request_header(8) + struct.pack("!HH", stun.USERNAME, 4) + b"\xff\xfe\xfd\xfc"
        with pytest.raises(stun.StunError, match="UTF-8"):
            _ = stun.parse(data).username

    def test_wrong_magic_cookie_is_a_classic_message(self) -> None:
        # RFC 3489 had no cookie: those 4 bytes are part of its transaction id.
        message = stun.parse(_request_header(0, cookie=b"\xde\xad\xbe\xef"))
        assert message.classic and message.transaction[:4] == b"\xde\xad\xbe\xef"

    def test_fuzzed_datagrams_parse_or_raise_stun_error(self) -> None:
        rng = random.Random(5389)  # the same datagrams every run
        seeds = [
            SAMPLE_REQUEST,
            SAMPLE_IPV4_RESPONSE,
            stun.binding_request(
                b"f" * 12, username="u", key=b"k", connection_request_binding=True
            ),
        ]
        for _ in range(20_000):
            data = bytearray(rng.choice(seeds))
            for _flip in range(rng.randint(1, 8)):
                what = rng.random()
                if what < 0.5 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif what < 0.7:
                    del data[rng.randrange(len(data) + 1) :]
                elif what < 0.85:
                    data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
                else:  # a length field that lies about the rest
                    at = rng.choice([2, 22, 26, 30]) if len(data) > 31 else 2
                    data[at : at + 2] = struct.pack("!H", rng.randrange(65536))
            try:
                message = stun.parse(bytes(data))
            except stun.StunError:
                continue
            # What parses is safe to use as the server does.
            with contextlib.suppress(stun.StunError):
                _ = message.username
            message.integrity(b"k")
            message.fingerprint_ok()
            message.unknown_required()
            stun.mapped_address(message)
