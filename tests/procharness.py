"""Real processes for end-to-end tests: ``acs serve`` and ``cpe-sim`` as subprocesses.

``running(argv)`` starts one and drains its output on threads (``Output.wait_for`` waits,
bounded, for a condition on the lines so far); ``write_config`` writes a loopback config.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pgserver import database_setting


class Output:
    """Drains one pipe of a subprocess on a thread, so the process never blocks on a full
    pipe, and lets the test wait (bounded) for a condition on the lines read so far."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, done: Callable[[list[str]], bool], deadline: float, what: str) -> None:
        with self._changed:
            while not done(self.lines):
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(f"no {what} (closed={self.closed}):\n{tail}")
                self._changed.wait(remaining)

    def text(self) -> str:
        self._thread.join(timeout=5)
        with self._changed:
            return "\n".join(self.lines)


@contextmanager
def running(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], Output, Output]]:
    """Start ``argv`` (in this environment, or ``env`` alone); on the way out make sure it
    is gone (killed only if still running)."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        # Log lines arrive as they are written.
        env={**os.environ, "PYTHONUNBUFFERED": "1"} if env is None else env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield proc, Output(proc.stdout), Output(proc.stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


# The lines `acs serve` prints once listening (acs.cli.banner), each listener's URL.
BANNER = {
    "cwmp": re.compile(r"^CWMP +(http://127\.0\.0\.1:\d+/)$", re.MULTILINE),
    "ui": re.compile(r"^UI +(http://127\.0\.0\.1:\d+)/$", re.MULTILINE),
    "api": re.compile(r"^API +(http://127\.0\.0\.1:\d+/api/v1/) ", re.MULTILINE),
    "healthz": re.compile(r"\(healthz: (http://127\.0\.0\.1:\d+/healthz)\)"),
    "files": re.compile(r"^files (http://127\.0\.0\.1:\d+/)$", re.MULTILINE),
}


def listening(out: Output, deadline: float) -> dict[str, str]:
    """Wait (bounded) for the banner of `acs serve` on ``out``; the URL of each listener:
    cwmp, ui (no trailing slash), api (…/api/v1/), healthz and files."""
    out.wait_for(
        lambda lines: any(line.startswith("API token:") for line in lines),
        deadline,
        "the banner of acs serve",
    )
    text = "\n".join(out.lines)
    found = {name: pattern.search(text) for name, pattern in BANNER.items()}
    missing = [name for name, match in found.items() if match is None]
    assert not missing, (missing, text)
    return {name: match.group(1) for name, match in found.items() if match is not None}


# The ACS's log line at the end of each CWMP session (acs.cwmp_http).
SESSION_DONE = re.compile(r"Session done device_id=(\d+) ")


def sessions_done(count: int) -> Callable[[list[str]], bool]:
    """For ``Output.wait_for``: ``count`` devices have each finished a CWMP session (the
    ACS logs it after the session's store transaction, provisioning included, committed)."""

    def done(lines: list[str]) -> bool:
        return len({m.group(1) for m in map(SESSION_DONE.search, lines) if m}) >= count

    return done


def stop(proc: subprocess.Popen[str], deadline: float) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=max(0.1, deadline - time.monotonic()))


def write_config(
    tmp: Path, *, cwmp: str = "", ports: dict[str, int] | None = None, stun: bool = False
) -> Path:
    """A config under ``tmp``; ``cwmp`` is extra ``[cwmp]`` lines. Port 0 (the default) lets
    the OS pick a free loopback port for each listener, race-free; the real addresses are
    read from the banner `acs serve` prints once listening. ``stun``: with the STUN
    listener (off by default, see e2eharness.loopback_config)."""
    port = (ports or {}).get
    # CPEs fetch firmware from the files URL: known only when the files port is fixed.
    files_url = f'public_url = "http://127.0.0.1:{port("files")}"' if port("files") else ""
    stun_listen = f"udp:{port('stun', 0)}:interface=127.0.0.1" if stun else ""
    path = tmp / "acs.toml"
    path.write_text(
        f"""
[storage]
database = "{database_setting(tmp / "acs.db")}"
files = "{tmp / "files"}"

[cwmp]
listen = "tcp:{port("cwmp", 0)}:interface=127.0.0.1"
{cwmp}
[api]
listen = "tcp:{port("api", 0)}:interface=127.0.0.1"

[files]
listen = "tcp:{port("files", 0)}:interface=127.0.0.1"
{files_url}
[stun]
listen = "{stun_listen}"
""",
        encoding="utf-8",
    )
    return path
