"""STUN messages (RFC 5389, and the RFC 3489 form TR-111 CPEs still send), sans I/O.

`parse` turns one datagram into a `Message` or raises `StunError` saying why it is not one;
`binding_response` / `error_response` build the server's answers, `binding_request` the
client's (the simulator's, and tests'). Only what a Binding server needs is understood:

- the header: type, length, the magic cookie of RFC 5389 (without it the message is RFC
  3489's, whose transaction id is the 16 bytes after the length);
- attributes: MAPPED-ADDRESS / XOR-MAPPED-ADDRESS, USERNAME, MESSAGE-INTEGRITY (HMAC-SHA1,
  the short-term credential's key being the password itself), ERROR-CODE, FINGERPRINT,
  and TR-111's CONNECTION-REQUEST-BINDING and BINDING-CHANGE (TR-069 Annex G).

Every length is checked before it is used: a datagram is at most MAX_DATAGRAM bytes and
MAX_ATTRIBUTES attributes, each inside the message, padded to 4 bytes; nothing is
allocated in proportion to what a length field claims.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC_COOKIE = 0x2112A442
_COOKIE = struct.pack("!I", MAGIC_COOKIE)
HEADER = 20

# Message types (method Binding, classes request / success / error).
BINDING_REQUEST = 0x0001
BINDING_INDICATION = 0x0011
BINDING_RESPONSE = 0x0101
BINDING_ERROR = 0x0111

MAPPED_ADDRESS = 0x0001
RESPONSE_ADDRESS = 0x0002  # RFC 3489; not honoured (it would make us a reflector)
CHANGE_REQUEST = 0x0003  # RFC 3489; one address here: answered from where it came
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
XOR_MAPPED_ADDRESS = 0x0020
FINGERPRINT = 0x8028
# TR-111 Part 2 (TR-069 Annex G).
CONNECTION_REQUEST_BINDING = 0xC001
BINDING_CHANGE = 0xC002
# The value TR-111 gives CONNECTION-REQUEST-BINDING.
CONNECTION_REQUEST_BINDING_VALUE = b"dslforum.org/TR-111 "

# Comprehension-required attributes (type < 0x8000) a request may carry here.
_UNDERSTOOD = frozenset(
    {
        MAPPED_ADDRESS,
        RESPONSE_ADDRESS,
        CHANGE_REQUEST,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
        XOR_MAPPED_ADDRESS,
    }
)
_FINGERPRINT_XOR = 0x5354554E

# Bounds: a Binding Request of TR-111 is ~100 bytes; RFC 5389 keeps messages under the
# path MTU. Anything longer, or with more attributes than any Binding needs, is refused.
MAX_DATAGRAM = 1280
MAX_ATTRIBUTES = 32
MAX_USERNAME = 513  # RFC 5389 15.3


class StunError(ValueError):
    """The datagram is not a well-formed STUN message (``str``: why)."""


@dataclass(frozen=True)
class Message:
    """One parsed message. ``attributes``: (type, value, offset of the attribute in
    ``raw``) in order, those after MESSAGE-INTEGRITY dropped but FINGERPRINT (RFC 5389
    15.4)."""

    kind: int
    transaction: bytes  # 12 bytes (RFC 5389) or 16 (RFC 3489)
    classic: bool  # RFC 3489: no magic cookie
    attributes: tuple[tuple[int, bytes, int], ...]
    raw: bytes

    def get(self, kind: int) -> bytes | None:
        """The value of the first attribute ``kind``, None if there is none."""
        for attr, value, _ in self.attributes:
            if attr == kind:
                return value
        return None

    def has(self, kind: int) -> bool:
        return any(attr == kind for attr, _, _ in self.attributes)

    def unknown_required(self) -> list[int]:
        """Comprehension-required attributes (type < 0x8000) this module does not know."""
        seen: list[int] = []
        for attr, _, _ in self.attributes:
            if attr < 0x8000 and attr not in _UNDERSTOOD and attr not in seen:
                seen.append(attr)
        return seen

    @property
    def username(self) -> str | None:
        """USERNAME as text (None: absent); StunError if it is not UTF-8."""
        value = self.get(USERNAME)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise StunError("USERNAME is not UTF-8") from None

    def integrity(self, key: bytes) -> str | None:
        """Which form of MESSAGE-INTEGRITY ``key`` signs (``"5389"``, or for an RFC 3489
        message ``"3489"`` when its text was zero-padded to 64 bytes as that RFC says);
        None when there is no MESSAGE-INTEGRITY or it does not match."""
        for attr, value, offset in self.attributes:
            if attr != MESSAGE_INTEGRITY:
                continue
            text = _length_to(self.raw[:offset], offset + 24 - HEADER)
            if hmac.compare_digest(_hmac(key, text), value):
                return "5389"
            if self.classic and hmac.compare_digest(_hmac(key, _padded64(text)), value):
                return "3489"
            return None
        return None

    def fingerprint_ok(self) -> bool | None:
        """Whether FINGERPRINT matches (None: there is none)."""
        for attr, value, offset in self.attributes:
            if attr == FINGERPRINT:
                text = _length_to(self.raw[:offset], offset + 8 - HEADER)
                return value == struct.pack("!I", _crc(text))
        return None


def parse(data: bytes) -> Message:
    """``data`` as a STUN message; StunError when it is not one."""
    size = len(data)
    if size < HEADER:
        raise StunError(f"{size} bytes: shorter than a STUN header")
    if size > MAX_DATAGRAM:
        raise StunError(f"{size} bytes: longer than {MAX_DATAGRAM}")
    kind, length = struct.unpack_from("!HH", data)
    if kind & 0xC000:
        raise StunError("the first two bits of a STUN message are zero")
    if length != size - HEADER or length % 4:
        raise StunError(f"length field {length} does not fit a {size}-byte datagram")
    classic = data[4:8] != _COOKIE
    transaction = data[4:20] if classic else data[8:20]
    attributes: list[tuple[int, bytes, int]] = []
    offset = HEADER
    after_integrity = False
    while offset < size:
        if len(attributes) == MAX_ATTRIBUTES:
            raise StunError(f"more than {MAX_ATTRIBUTES} attributes")
        if offset + 4 > size:
            raise StunError("an attribute header runs past the message")
        attr, value_length = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + value_length
        if end > size:
            raise StunError(f"attribute 0x{attr:04x} claims {value_length} bytes past the end")
        value = data[offset + 4 : end]
        if attr == MESSAGE_INTEGRITY and value_length != 20:
            raise StunError("MESSAGE-INTEGRITY is not 20 bytes")
        if attr == FINGERPRINT and value_length != 4:
            raise StunError("FINGERPRINT is not 4 bytes")
        if attr == USERNAME and value_length > MAX_USERNAME:
            raise StunError("USERNAME is too long")
        if not after_integrity or attr == FINGERPRINT:
            attributes.append((attr, value, offset))
        if attr == MESSAGE_INTEGRITY:
            after_integrity = True
        offset = end + (-value_length % 4)
        if attr == FINGERPRINT and offset != size:
            raise StunError("FINGERPRINT is not the last attribute")
    if offset != size:
        raise StunError("attribute padding runs past the message")
    return Message(kind, transaction, classic, tuple(attributes), data)


# --- building ----------------------------------------------------------------------------

Address = tuple[str, int]


def binding_request(
    transaction: bytes,
    *,
    username: str | None = None,
    key: bytes | None = None,
    connection_request_binding: bool = False,
    binding_change: bool = False,
    fingerprint: bool = False,
) -> bytes:
    """A Binding Request (RFC 5389 with a 12-byte ``transaction``, RFC 3489 with 16)."""
    attributes: list[tuple[int, bytes]] = []
    if connection_request_binding:
        attributes.append((CONNECTION_REQUEST_BINDING, CONNECTION_REQUEST_BINDING_VALUE))
    if binding_change:
        attributes.append((BINDING_CHANGE, b""))
    if username is not None:
        attributes.append((USERNAME, username.encode("utf-8")))
    return _message(BINDING_REQUEST, transaction, attributes, key=key, fingerprint=fingerprint)


def binding_response(
    request: Message,
    source: Address,
    *,
    key: bytes | None = None,
    integrity: str = "5389",
) -> bytes:
    """The success response to ``request`` from ``source`` (its address as seen here):
    XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (RFC 5389; TR-111 CPEs read either), MAPPED-
    ADDRESS alone to an RFC 3489 client; signed with ``key`` when given, in the form the
    request's was (``integrity``), with a FINGERPRINT when the request had one."""
    attributes: list[tuple[int, bytes]] = []
    if not request.classic:
        attributes.append((XOR_MAPPED_ADDRESS, _xor_address(source, request.transaction)))
    attributes.append((MAPPED_ADDRESS, encode_address(source)))
    return _message(
        BINDING_RESPONSE,
        request.transaction,
        attributes,
        key=key,
        classic_integrity=integrity == "3489",
        fingerprint=request.fingerprint_ok() is not None,
    )


def error_response(request: Message, code: int, reason: str, unknown: Iterable[int] = ()) -> bytes:
    """The error response ``code`` (400, 401, 420...) to ``request``, unsigned."""
    phrase = reason.encode("utf-8")[:128]
    value = struct.pack("!HBB", 0, code // 100, code % 100) + phrase
    attributes = [(ERROR_CODE, value)]
    listed = list(unknown)
    if listed:
        attributes.append((UNKNOWN_ATTRIBUTES, b"".join(struct.pack("!H", a) for a in listed)))
    return _message(BINDING_ERROR, request.transaction, attributes)


def mapped_address(message: Message) -> Address | None:
    """The address a Binding Response maps to (XOR-MAPPED-ADDRESS first), None if none."""
    value = message.get(XOR_MAPPED_ADDRESS)
    if value is not None and not message.classic:
        return _decode_address(bytes(_xored(value, message.transaction)))
    value = message.get(MAPPED_ADDRESS)
    return _decode_address(value) if value is not None else None


def error_code(message: Message) -> int | None:
    value = message.get(ERROR_CODE)
    if value is None or len(value) < 4:
        return None
    return (value[2] & 0x07) * 100 + value[3]


def encode_address(address: Address) -> bytes:
    host, port = address
    ip = ipaddress.ip_address(host)
    family = 0x01 if ip.version == 4 else 0x02
    return struct.pack("!BBH", 0, family, port) + ip.packed


def _decode_address(value: bytes) -> Address | None:
    if len(value) == 8 and value[1] == 0x01:
        return str(ipaddress.IPv4Address(value[4:])), struct.unpack_from("!H", value, 2)[0]
    if len(value) == 20 and value[1] == 0x02:
        return str(ipaddress.IPv6Address(value[4:])), struct.unpack_from("!H", value, 2)[0]
    return None


def _xor_address(address: Address, transaction: bytes) -> bytes:
    return bytes(_xored(encode_address(address), transaction))


def _xored(value: bytes, transaction: bytes) -> bytearray:
    """XOR-MAPPED-ADDRESS <-> MAPPED-ADDRESS (the operation is its own inverse)."""
    out = bytearray(value)
    mask = (_COOKIE + transaction)[: len(value) - 4]
    out[2] ^= _COOKIE[0]
    out[3] ^= _COOKIE[1]
    for i, byte in enumerate(mask):
        out[4 + i] ^= byte
    return out


def _message(
    kind: int,
    transaction: bytes,
    attributes: list[tuple[int, bytes]],
    *,
    key: bytes | None = None,
    classic_integrity: bool = False,
    fingerprint: bool = False,
) -> bytes:
    if len(transaction) not in (12, 16):
        raise ValueError("a transaction id is 12 bytes (RFC 5389) or 16 (RFC 3489)")
    head = struct.pack("!HH", kind, 0) + (
        transaction if len(transaction) == 16 else _COOKIE + transaction
    )
    body = b"".join(_attribute(attr, value) for attr, value in attributes)
    message = head + body
    if key is not None:
        text = _length_to(message, len(body) + 24)
        signed = _hmac(key, _padded64(text) if classic_integrity else text)
        message = text + _attribute(MESSAGE_INTEGRITY, signed)
    if fingerprint:
        text = _length_to(message, len(message) - HEADER + 8)
        message = text + _attribute(FINGERPRINT, struct.pack("!I", _crc(text)))
    return _length_to(message, len(message) - HEADER)


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _length_to(message: bytes, length: int) -> bytes:
    return message[:2] + struct.pack("!H", length) + message[4:]


def _hmac(key: bytes, text: bytes) -> bytes:
    return hmac.new(key, text, hashlib.sha1).digest()


def _padded64(text: bytes) -> bytes:
    return text + b"\0" * (-len(text) % 64)


def _crc(text: bytes) -> int:
    return (zlib.crc32(text) ^ _FINGERPRINT_XOR) & 0xFFFFFFFF
