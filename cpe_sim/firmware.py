"""The simulator's firmware image format: one header line, then the payload.

An image is ``ACMEFW1 version=<v> sha256=<hex of the payload>\\n`` followed by the payload
bytes. The header is how a simulated CPE learns the version it installs and checks that the
download arrived intact (a real device checks a vendor signature; a hash is enough to make
corruption detectable). Tests and tools build images with ``make_image``; files without the
header are still accepted as firmware, their version then comes from the file name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAGIC = b"ACMEFW1"
MAX_HEADER = 512  # a header line longer than this is not ours: no unbounded scan for "\n"
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")
_HEADER = re.compile(rb"ACMEFW1 version=(\S+) sha256=([0-9a-f]{64})")
_NAME_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)*)")


class ImageError(ValueError):
    """The file has our header but is not a valid image (bad header or wrong hash)."""


@dataclass(frozen=True)
class Image:
    version: str
    payload: bytes


def make_image(version: str, payload_size: int, *, seed: int = 0) -> bytes:
    """A valid image of ``version`` with ``payload_size`` deterministic payload bytes."""
    if not _VERSION.fullmatch(version):
        raise ValueError(f"not a usable firmware version: {version!r}")
    if payload_size < 0:
        raise ValueError("payload_size must not be negative")
    block = hashlib.sha256(f"{version}/{seed}".encode()).digest()
    payload = (block * (payload_size // len(block) + 1))[:payload_size]
    return build_image(version, payload)


def build_image(version: str, payload: bytes) -> bytes:
    """Header + ``payload`` (the hash is computed here, so the result always verifies)."""
    if not _VERSION.fullmatch(version):
        raise ValueError(f"not a usable firmware version: {version!r}")
    digest = hashlib.sha256(payload).hexdigest()
    return MAGIC + f" version={version} sha256={digest}\n".encode() + payload


def has_header(data: bytes) -> bool:
    return data.startswith(MAGIC + b" ")


def parse_image(data: bytes) -> Image | None:
    """The image in ``data``; None when there is no header; ImageError when it is damaged."""
    if not has_header(data):
        return None
    end = data.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        raise ImageError("firmware header line is not terminated")
    match = _HEADER.fullmatch(data[:end])
    if match is None:
        raise ImageError("malformed firmware header")
    try:
        version = match.group(1).decode("ascii")
    except UnicodeDecodeError:
        raise ImageError("malformed firmware version") from None
    if not _VERSION.fullmatch(version):
        raise ImageError(f"malformed firmware version {version!r}")
    payload = data[end + 1 :]
    if hashlib.sha256(payload).hexdigest() != match.group(2).decode("ascii"):
        raise ImageError("firmware payload does not match its sha256")
    return Image(version, payload)


def version_from_name(name: str) -> str | None:
    """The first dotted number in a file name (``hg-2.1.0.bin`` -> ``2.1.0``), if any."""
    match = _NAME_VERSION.search(name)
    return match.group(1) if match else None
