"""Configuration: TOML file -> frozen, validated dataclasses.

Every key has a default equal to `config.example.toml`, so an absent file or an absent
section gives a working appliance. Unknown sections or keys are rejected so that a typo
in a config file is an error at start, not a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.words.protocols.jabber import jid


class ConfigError(ValueError):
    """The configuration file is unreadable or holds an invalid value."""


@dataclass(frozen=True)
class StorageConfig:
    database: str = "var/acs.db"
    files: str = "var/files"
    # PostgreSQL: threads (each with its own connection) that run the units of work (CWMP
    # sessions, REST handlers, periodic jobs) off the reactor thread; the process holds one
    # connection more. SQLite: unused.
    pool_size: int = 4


@dataclass(frozen=True)
class CwmpConfig:
    listen: str = "tcp:7547"
    auto_register: bool = True
    default_organization: str = "Default"
    session_timeout: int = 30
    # Upper bound on the SessionTimeout a CPE asks for in its Inform (seconds).
    max_session_timeout: int = 300
    connection_request_timeout: int = 5
    # First-contact credentials: what a device that has none of its own yet authenticates
    # with (empty: none needed). Provisioning then gives it its own (device_credentials).
    username: str = ""
    password: str = ""
    # Provisioning sets a random ManagementServer.Username/Password per device, and from then
    # on only those authenticate it (device impersonation needs them, not just a serial).
    device_credentials: bool = True
    # Basic authentication over plain HTTP, both ways: CPEs to the ACS, and the ACS answering
    # a CPE's connection-request challenge (either sends a password in clear).
    allow_basic_auth: bool = False
    # Connection requests go only to the address a device informed from, or to these networks
    # (CIDR strings in the file), e.g. for CPEs the ACS reaches behind a proxy.
    connection_request_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Seconds a Download/Upload may stay unconfirmed (no TransferComplete) before it fails.
    transfer_timeout: int = 3600
    # Live CWMP sessions admitted at once; a new session's Inform beyond it gets 503 +
    # Retry-After (a boot storm is paced instead of interleaving thousands of sessions).
    max_sessions: int = 128
    # At the cap, a session whose CPE sent nothing for this many seconds (after the
    # InformResponse or an RPC) gives its slot to a new Inform instead of it getting 503.
    idle_grace: int = 10


@dataclass(frozen=True)
class ApiConfig:
    listen: str = "tcp:7557"
    update_status_timeout: int = 5
    # Base URL clients reach the API at, for the links it writes (pagination, OpenAPI
    # servers); empty: the address of the listener the request came in on.
    public_url: str = ""
    # Seconds a web UI login lasts (the cookie's Max-Age, and checked server-side).
    session_ttl: int = 28800


@dataclass(frozen=True)
class FilesConfig:
    listen: str = "tcp:7567"
    public_url: str = "http://127.0.0.1:7567"
    url_ttl: int = 3600
    # Largest accepted upload in bytes (firmware images via the API, backups from CPEs).
    max_upload: int = 536870912


@dataclass(frozen=True)
class RetentionConfig:
    # Days kept of device history and of the global audit log.
    history_days: int = 30
    # Newest history rows kept per device whatever their age, so a device informing every
    # few seconds cannot fill the disk: 5,000 is ~17 days at the default 300 s interval.
    history_per_device: int = 5000
    # Days kept of debug SOAP transcripts (up to 1 MiB each).
    transcript_days: int = 7
    # Days kept of done, failed and cancelled tasks (pending and running ones are never
    # pruned).
    finished_task_days: int = 30


@dataclass(frozen=True)
class TasksConfig:
    # Attempts of a task before it fails for good (after a transient CPE fault, a session
    # that died, a confirmation that never came).
    max_attempts: int = 3
    # Seconds before the first retry; each further one waits twice as long.
    retry_base: int = 60
    # CPE fault codes that fail a task at once: asking again will not help (TR-069 A.5.1).
    permanent_faults: tuple[int, ...] = (9000, 9003, 9005, 9006, 9007, 9008)


@dataclass(frozen=True)
class ClusterConfig:
    # Where this process takes the CWMP requests other processes (workers, nodes) forward
    # to it: those of the sessions it runs. Loopback serves the workers of one box; nodes
    # on several hosts listen on their private network.
    peer_listen: str = "tcp:0:interface=127.0.0.1"
    # The URL the other processes reach it at; empty: the address it listens on.
    peer_url: str = ""


@dataclass(frozen=True)
class StunConfig:
    # The STUN server CPEs behind NAT keep their binding with (TR-111): "udp:PORT", or
    # "udp:PORT:interface=ADDR" (default: every IPv4 and IPv6 address); "" turns it off,
    # and with it UDP connection requests and the STUN part of provisioning.
    listen: str = "udp:3478"
    # What provisioning sets as ManagementServer.STUNServerAddress; empty: the CPE uses
    # the host of its ACS URL (TR-111), which suits a STUN listener on the ACS's address.
    server_address: str = ""
    # The port given as STUNServerPort; 0: the port the listener is bound to.
    server_port: int = 0
    # Seconds between a CPE's Binding Requests (STUNMinimum/MaximumKeepAlivePeriod): they
    # must keep the NAT's binding open; a binding unseen for 3 periods is stale.
    keepalive: int = 30
    # Datagrams a second one source address may send (a carrier-grade NAT's address
    # carries many CPEs); beyond, dropped.
    rate_per_source: int = 200


@dataclass(frozen=True)
class XmppConfig:
    # The XMPP server the ACS logs in to for connection requests (TR-069 Annex K):
    # "HOST" or "HOST:PORT" (5222); "" turns XMPP off.
    server: str = ""
    # The ACS's account there, "user@domain" or "user@domain/resource". The server's TLS
    # certificate must be valid for the domain (RFC 6120); TLS is required.
    jid: str = ""
    password: str = ""
    # PEM file of the certificates trusted for the server's; "": the system's trust store.
    ca_file: str = ""
    # Provisioning gives each TR-181 CPE an XMPP account of its own on the server (made by
    # the ACS with in-band registration, XEP-0077) and sets its XMPP.Connection.1 to it.
    accounts: bool = False
    # Where CPEs reach the server ("HOST" or "HOST:PORT"); "": as ``server`` says.
    device_server: str = ""


@dataclass(frozen=True)
class Config:
    storage: StorageConfig = field(default_factory=StorageConfig)
    cwmp: CwmpConfig = field(default_factory=CwmpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    files: FilesConfig = field(default_factory=FilesConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    stun: StunConfig = field(default_factory=StunConfig)
    xmpp: XmppConfig = field(default_factory=XmppConfig)


_SECTIONS: dict[str, type] = {
    "storage": StorageConfig,
    "cwmp": CwmpConfig,
    "api": ApiConfig,
    "files": FilesConfig,
    "retention": RetentionConfig,
    "tasks": TasksConfig,
    "cluster": ClusterConfig,
    "stun": StunConfig,
    "xmpp": XmppConfig,
}

_POSITIVE = {
    ("cwmp", "session_timeout"),
    ("cwmp", "connection_request_timeout"),
    ("api", "update_status_timeout"),
    ("files", "url_ttl"),
    ("cwmp", "transfer_timeout"),
    ("cwmp", "max_sessions"),
    ("cwmp", "max_session_timeout"),
    ("cwmp", "idle_grace"),
    ("files", "max_upload"),
}

# Inclusive bounds of keys that need more than "> 0": ten years of days; a per-device cap
# the retention job can check in rotation (its cost per device grows with the cap).
_RANGES = {
    ("api", "session_ttl"): (60, 30 * 86400),
    ("retention", "history_days"): (1, 3650),
    ("retention", "transcript_days"): (1, 3650),
    ("retention", "finished_task_days"): (1, 3650),
    ("retention", "history_per_device"): (100, 100_000),
    ("tasks", "max_attempts"): (1, 100),
    ("tasks", "retry_base"): (1, 86400),
    ("storage", "pool_size"): (1, 64),
    ("stun", "server_port"): (0, 65535),
    ("stun", "keepalive"): (5, 86400),
    ("stun", "rate_per_source"): (1, 1_000_000),
}


# Keys whose empty value can only be a mistake (an empty organization name included).
_NON_EMPTY = ("listen", "peer_listen", "database", "files", "public_url", "default_organization")


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"[{name}] unknown key {key!r}")
        expected = type(getattr(cls(), key))
        if expected is tuple:
            if key == "permanent_faults":
                values[key] = _fault_codes(name, key, value)
            else:
                values[key] = _networks(name, key, value)
            continue
        # bool is a subclass of int: refuse `session_timeout = true` explicitly.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"[{name}] {key} must be {expected.__name__}, not {value!r}")
        if (name, key) in _POSITIVE and value <= 0:
            raise ConfigError(f"[{name}] {key} must be > 0")
        bounds = _RANGES.get((name, key))
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ConfigError(f"[{name}] {key} must be between {bounds[0]} and {bounds[1]}")
        # Empty: the listener's address (STUN: no listener).
        optional = (name, key) in (
            ("api", "public_url"),
            ("cluster", "peer_url"),
            ("stun", "listen"),
        )
        if expected is str and key in _NON_EMPTY and not optional and not value.strip():
            raise ConfigError(f"[{name}] {key} must not be empty")
        if key in ("public_url", "peer_url") and not (optional and not value):
            parts = urlsplit(value)
            # CPEs are handed the files URL in Download RPCs, API clients the API's in links:
            # each must be absolute http(s).
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"[{name}] {key} must be an http:// or https:// URL")
        if (name, key) == ("stun", "listen") and value:
            udp_listen(value)  # ConfigError when it is not a UDP listener
        values[key] = value
    section = cls(**values)
    if isinstance(section, XmppConfig):
        xmpp_account(section)  # ConfigError when it cannot be used
    return section


MAX_JID = 3071  # RFC 7622 §3.1: the bytes of a whole JID


def xmpp_server(config: XmppConfig, *, devices: bool = False) -> tuple[str, int]:
    """``[xmpp] server`` (``devices``: where CPEs reach it, ``device_server`` else
    ``server``) as (host, port): "HOST", "HOST:PORT", "[IPV6]:PORT" or "IPV6"."""
    key = "device_server" if devices and config.device_server.strip() else "server"
    text = getattr(config, key).strip()
    found = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^\s:\[\]/]+)(?::(\d{1,5}))?", text)
    if found is None and text.count(":") > 1:  # a bare IPv6 address: no port
        found = re.fullmatch(r"([0-9A-Fa-f:.]+)()", text)
    if found is None:
        raise ConfigError(f"[xmpp] {key} {text!r}: expected HOST or HOST:PORT")
    groups = [g for g in found.groups() if g is not None]
    host, port = groups[0], int(groups[1]) if len(groups) > 1 and groups[1] else 5222
    if not 0 < port <= 65535:
        raise ConfigError(f"[xmpp] {key} {text!r}: port must be 1-65535")
    return host, port


def xmpp_account(config: XmppConfig) -> None:
    """Check an [xmpp] section that turns XMPP on: its server, JID and password."""
    if not config.server.strip():
        return
    xmpp_server(config)
    xmpp_server(config, devices=True)
    try:
        account = jid.JID(config.jid) if len(config.jid.encode()) <= MAX_JID else None
    except jid.InvalidFormat:
        account = None
    if account is None or not account.user:
        raise ConfigError(f"[xmpp] jid {config.jid!r}: expected user@domain[/resource]")
    if not config.password:
        raise ConfigError("[xmpp] password must not be empty when server is set")


_UDP = re.compile(r"udp:(\d{1,5})(?::interface=([0-9A-Fa-f.:]+))?")


def udp_listen(description: str) -> tuple[int, str]:
    """``[stun] listen`` as (port, interface): "" for every IPv4 and IPv6 address."""
    found = _UDP.fullmatch(description.strip())
    if found is None or int(found[1]) > 65535:
        raise ConfigError(
            f"[stun] listen {description!r}: expected udp:PORT or udp:PORT:interface=ADDRESS"
        )
    interface = found[2] or ""
    if interface:
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise ConfigError(f"[stun] listen: {interface!r} is not an IP address") from None
    return int(found[1]), interface


def _fault_codes(section: str, key: str, value: Any) -> tuple[int, ...]:
    """CPE fault codes (TR-069 A.5.1: 9000..9899, and vendor 9800..9899)."""
    if not isinstance(value, list) or len(value) > 900:
        raise ConfigError(f"[{section}] {key} must be a list of CPE fault codes")
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int) or not 9000 <= code <= 9899:
            raise ConfigError(f"[{section}] {key}: {code!r} is not a CPE fault code (9000-9899)")
    return tuple(sorted(set(value)))


def _networks(
    section: str, key: str, value: Any
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[{section}] {key} must be a list of CIDR strings")
    networks = []
    for text in value:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"[{section}] {key}: {exc}") from None
    return tuple(networks)


# `--appliance` (or ACS_APPLIANCE=1): the configuration file and the state directory of an
# installed appliance (packaging/acs.service), in place of ./var/ under the working directory.
APPLIANCE_CONFIG = "/etc/acs/acs.toml"
APPLIANCE_STATE = "/var/lib/acs"


def appliance_storage(state: str = APPLIANCE_STATE) -> dict[str, str]:
    """The [storage] defaults of an appliance whose state directory is ``state``."""
    return {"database": f"{state}/acs.db", "files": f"{state}/files"}


def parse_config(data: dict[str, Any], *, appliance: bool = False) -> Config:
    """``data`` (a parsed TOML file) as a Config; with ``appliance``, the [storage] paths the
    file does not set are the appliance's (:data:`APPLIANCE_STATE`)."""
    if appliance:
        storage = data.get("storage", {})
        if isinstance(storage, dict):  # else _build_section says what is wrong with it
            data = {**data, "storage": {**appliance_storage(), **storage}}
    sections: dict[str, Any] = {}
    for name, raw in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"unknown section [{name}]")
        sections[name] = _build_section(name, cls, raw)
    return Config(**sections)


def load_config(path: str | os.PathLike[str] | None = None, *, appliance: bool = False) -> Config:
    """Load `path`, else `$ACS_CONFIG`, else (``appliance``) /etc/acs/acs.toml if it exists,
    else the built-in defaults (with ``appliance``, storage under /var/lib/acs)."""
    if path is None:
        path = os.environ.get("ACS_CONFIG") or None
    if path is None and appliance and Path(APPLIANCE_CONFIG).exists():
        path = APPLIANCE_CONFIG
    if path is None:
        return parse_config({}, appliance=appliance)
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        # tomllib decodes the whole file first; a binary file is not a TOML error to it.
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    return parse_config(data, appliance=appliance)
