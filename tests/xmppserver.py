"""A real XMPP server for the XMPP connection-request tests (TR-069 Annex K): Debian's
``prosody``, started on loopback with a throwaway configuration, certificate and data
directory, and stopped with the test.

``.ci/run`` installs prosody; without it the tests that need one skip, unless
``ACS_XMPP_REQUIRED`` is set (CI sets it): then they fail.

The server's one virtual host is ``DOMAIN``, with a self-signed certificate for it
(``XmppServer.ca``: the PEM clients trust). Clients must use TLS (c2s_require_encryption);
in-band registration (XEP-0077) is open, so simulated CPEs create their own accounts, as
a CPE would have one from its vendor. ``register`` creates one with prosodyctl.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from procharness import running
from selfsigned import self_signed

from bench.pgcluster import fixed_port

DOMAIN = "acs.test"
PROSODY = shutil.which("prosody")
PROSODYCTL = shutil.which("prosodyctl")
START_BUDGET = 20.0  # seconds for prosody to listen


@dataclass(frozen=True)
class XmppServer:
    host: str
    port: int
    domain: str
    ca: bytes  # the PEM certificate of the server (self-signed): what clients trust
    ca_file: Path
    config: Path

    def register(self, user: str, password: str) -> None:
        """Create the account ``user@domain`` (prosodyctl, on the server's data)."""
        assert PROSODYCTL is not None
        subprocess.run(
            [PROSODYCTL, "--config", str(self.config), "register", user, self.domain, password],
            check=True,
            capture_output=True,
            timeout=30,
        )


def require_prosody() -> None:
    if PROSODY is None or PROSODYCTL is None:
        reason = "XMPP tests need prosody (apt-get install prosody)"
        if os.environ.get("ACS_XMPP_REQUIRED"):
            pytest.fail(reason)
        pytest.skip(reason)


def _certificate(tmp: Path) -> tuple[Path, Path, bytes]:
    key, pem = self_signed(DOMAIN)
    key_file, cert_file = tmp / "server.key", tmp / "server.crt"
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    cert_file.write_bytes(pem)
    return key_file, cert_file, pem


def _config(tmp: Path, port: int, key: Path, cert: Path) -> str:
    data = tmp / "data"
    data.mkdir()
    return f"""
run_as_root = true
daemonize = false
pidfile = "{tmp / "prosody.pid"}"
data_path = "{data}"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = true
allow_registration = true
min_seconds_between_registrations = 0
-- Fifty simulated CPEs on one loopback address are no flood.
limits = {{ c2s = {{ rate = "100mb/s" }} }}
authentication = "internal_hashed"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "register" }}
modules_disabled = {{ "s2s"; "posix" }}
log = {{ {{ levels = {{ min = "info" }}, to = "console" }} }}
ssl = {{ key = "{key}"; certificate = "{cert}" }}
VirtualHost "{DOMAIN}"
"""


@contextmanager
def prosody(tmp: Path) -> Iterator[XmppServer]:
    """A prosody server on 127.0.0.1 for the duration of the block."""
    require_prosody()
    assert PROSODY is not None
    home = tmp.resolve() / "prosody"
    home.mkdir()
    key, cert, pem = _certificate(home)
    port = fixed_port()
    config = home / "prosody.cfg.lua"
    config.write_text(_config(home, port, key, cert))
    with running([PROSODY, "--config", str(config), "-F"], home) as (proc, out, _err):
        listening = f"[127.0.0.1]:{port}"
        out.wait_for(
            lambda lines: any("c2s" in line and listening in line for line in lines),
            time.monotonic() + START_BUDGET,
            f"prosody's c2s listener on {listening}",
        )
        yield XmppServer("127.0.0.1", port, DOMAIN, pem, cert, config)
        proc.terminate()
        proc.wait(timeout=10)
