"""A throwaway PostgreSQL server on loopback, from Debian's binaries: for the PostgreSQL
pass of the tests (tests/pgserver.py) and ``python -m bench --engine postgresql``.

``started(settings)`` runs ``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/<n>/bin``, or
``$ACS_PG_BIN``) on a fresh data directory: trust authentication for the one superuser
``acs``, a Unix socket in that directory and 127.0.0.1 on a free port below the ephemeral
range. As root (CI) the server runs as the ``postgres`` system user, which PostgreSQL
requires. Stopped (immediate) and its directory removed on exit.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


def bin_dir() -> Path | None:
    """Where the server's programs are, None when PostgreSQL is not installed."""
    if os.environ.get("ACS_PG_BIN"):
        return Path(os.environ["ACS_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts)
    return found[-1].parent if found else None


def fixed_port() -> int:
    """A free loopback port for a listener whose number must be known before it starts.
    Picked below the kernel's ephemeral range, so no outgoing connection and no ``tcp:0``
    listener can take it between now and its bind (a port the kernel picked, freed and
    handed out again is how that raced)."""
    low = 32768
    with suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(10000, max(10001, low))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


@dataclass(frozen=True)
class Cluster:
    directory: Path  # holds the Unix socket
    port: int

    def url(self, database: str) -> str:
        return f"postgresql://acs@/{database}?host={self.directory}&port={self.port}"

    def admin(self, sql: str) -> None:
        """Run ``sql`` (our literal SQL) as the superuser, outside any transaction."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type,unused-ignore]


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def started(settings: Mapping[str, str]) -> Iterator[Cluster]:
    """A running server with these ``-c`` settings, stopped and removed on exit."""
    programs = bin_dir()
    if programs is None:
        raise RuntimeError(
            "PostgreSQL is not installed (Debian: apt-get install postgresql), or set ACS_PG_BIN"
        )
    directory = Path(tempfile.mkdtemp(prefix="acs-pg-"))
    data = directory / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    run = _as_postgres()
    port = fixed_port()
    options = " ".join(f"-c {k}={v}" for k, v in settings.items())
    try:
        subprocess.run(
            [*run, str(programs / "initdb"), "-D", str(data), "-U", "acs", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*run, str(programs / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"),
             "-w", "-t", "60", "start",
             "-o", f"-k {directory} -h 127.0.0.1 -p {port} {options}"],
            check=True, capture_output=True,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = directory / "log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r}\n{tail}") from None
    try:
        yield Cluster(directory, port)
    finally:
        subprocess.run(
            [*run, str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)
