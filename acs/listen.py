"""Listening endpoint strings: every TCP/SSL listener gets a backlog sized for boot storms.

Shared by the appliance's listeners and the CPE simulator's connection-request listener
(one socket for a whole fleet, so it sees the same bursts).
"""

from __future__ import annotations

__all__ = ["LISTEN_BACKLOG", "behind_proxy", "is_tls", "with_backlog"]

# Twisted's TCP/SSL endpoints listen with a backlog of 50: a boot storm's thousands of
# simultaneous SYNs overflow it and CPEs stall in SYN retransmission (1, 3, 7, 15 s...).
# The kernel caps this at net.core.somaxconn (4096 on current kernels).
LISTEN_BACKLOG = 4096
_BACKLOG_TYPES = ("tcp", "tcp6", "ssl")


def _fields(description: str) -> list[str]:
    """The ':'-separated fields of an endpoint string (a backslash escapes a ':')."""
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def behind_proxy(description: str) -> tuple[bool, str]:
    """(whether ``description`` is ``haproxy:<inner>``, the PROXY protocol over another
    endpoint, and that inner endpoint string)."""
    head, sep, inner = description.partition(":")
    if sep and head.strip().lower() == "haproxy":
        return True, inner
    return False, description


def is_tls(description: str) -> bool:
    """Whether the endpoint string listens with TLS (``ssl:``, also behind ``haproxy:``)."""
    return behind_proxy(description)[1].strip().lower().startswith("ssl:")


def with_backlog(description: str, backlog: int = LISTEN_BACKLOG) -> str:
    """``description`` with ``:backlog=<backlog>`` added when it is a TCP/SSL endpoint (also
    behind ``haproxy:``) that doesn't set one itself; any other endpoint string comes back
    unchanged."""
    proxied, inner = behind_proxy(description)
    if proxied:
        return description[: len(description) - len(inner)] + with_backlog(inner, backlog)
    fields = _fields(description)
    if len(fields) < 2 or fields[0].strip().lower() not in _BACKLOG_TYPES:
        return description
    if any(f.partition("=")[0].strip() == "backlog" for f in fields[1:] if "=" in f):
        return description
    return f"{description}:backlog={backlog}"
