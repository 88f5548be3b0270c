"""Processes of a bench run: the ACS, the ceiling server, load generators; /proc figures.

Everything the orchestrator starts is a child process on 127.0.0.1 with an ephemeral port,
every wait is bounded (a process that does not come up or finish in time is killed and
reported), and CPU and memory are read from ``/proc/<pid>`` of the measured process, not
estimated. Nothing here talks to the ACS's database: seeding goes through ``acs.store`` in
:mod:`bench.scenarios`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PYTHON = sys.executable
START_TIMEOUT = 60.0  # seconds for a server to listen / a generator to be ready
STOP_TIMEOUT = 30.0


class BenchError(RuntimeError):
    """A process of the bench did not behave (did not start, crashed, timed out)."""


def raise_fd_limit() -> None:
    """Children inherit it: the ACS and the generators hold thousands of sockets in a storm."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (from /proc/<pid>/stat)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; fields after the closing paren are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine, all cores (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size (VmHWM) of ``pid`` over its life."""
    return _status_kb(pid, "VmHWM") * 1024


def _children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir() if task_dir.exists() else []:
        children = task / "children"
        if children.exists():
            found += [int(x) for x in children.read_text().split()]
    return found


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int | None:
    """Ask ``proc`` to stop, kill it after STOP_TIMEOUT; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


def _wait_for(path: Path, pattern: re.Pattern[str], proc: subprocess.Popen[Any]) -> re.Match[str]:
    """Poll a log file for ``pattern`` (bounded; the process writes it, we only read)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = pattern.search(text)
        if found:
            return found
        if proc.poll() is not None:
            raise BenchError(f"process exited with {proc.returncode} before listening:\n{text}")
        time.sleep(0.05)  # a start-up poll of a file, not a measurement
    raise BenchError(f"no {pattern.pattern!r} in {path} within {START_TIMEOUT:g}s")


@dataclass
class Acs:
    """The appliance as a separate process (``python -m acs.cli serve``)."""

    workdir: Path
    database: Path | str  # an SQLite file, or a PostgreSQL URL
    name: str
    profile_dir: Path | None = None
    cwmp_backlog: int | None = None  # None: the endpoint's default, as shipped
    workers: int = 1  # `acs serve --workers`: a supervisor and this many workers
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0
    cwmp_port: int = 0
    api_port: int = 0
    log_path: Path = field(default_factory=Path)
    worker_pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        config = self.workdir / f"{self.name}.toml"
        files = self.workdir / "files"
        cwmp = "tcp:0:interface=127.0.0.1"
        if self.cwmp_backlog is not None:
            cwmp += f":backlog={self.cwmp_backlog}"
        config.write_text(
            "[storage]\n"
            f"database = {json.dumps(str(self.database))}\n"
            f"files = {json.dumps(str(files))}\n"
            f"[cwmp]\nlisten = {json.dumps(cwmp)}\n"
            # Each phase starts new simulator processes, whose CPEs have lost the credentials
            # the ACS gave the same serials in an earlier phase.
            "device_credentials = false\n"
            '[api]\nlisten = "tcp:0:interface=127.0.0.1"\n'
            '[files]\nlisten = "tcp:0:interface=127.0.0.1"\n'
            '[stun]\nlisten = "udp:0:interface=127.0.0.1"\n'
        )
        self.log_path = self.workdir / f"{self.name}.log"
        command = [PYTHON, "-m", "acs.cli", "serve", "--config", str(config)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if self.profile_dir is not None and Path(spy).exists():
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            out = self.profile_dir / f"{self.name}.collapsed"
            command = [spy, "record", "--format", "raw", "--rate", "200", "-o", str(out), "--"]
            command += [PYTHON, "-m", "acs.cli", "serve", "--config", str(config)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        found = _wait_for(
            self.log_path,
            re.compile(
                r"CWMP\s+http://127\.0\.0\.1:(\d+)/\s*\n(?:UI .*\n)?API\s+http://127\.0\.0\.1:(\d+)/"
            ),
            self.proc,
        )
        self.cwmp_port, self.api_port = int(found.group(1)), int(found.group(2))
        self.pid = self.proc.pid
        if self.workers > 1:
            listed = _wait_for(
                self.log_path, re.compile(r"workers \d+ \(pids ([\d ]+)\)"), self.proc
            )
            self.worker_pids = [int(p) for p in listed.group(1).split()]
            # Each worker says when it accepts on the shared sockets.
            _wait_for(
                self.log_path,
                re.compile("(?s)" + ".*?".join(["cwmp listening on"] * self.workers)),
                self.proc,
            )
        if command[0] != PYTHON:
            kids = _children(self.proc.pid)
            if kids:
                self.pid = kids[0]  # measure the ACS, not py-spy

    @property
    def pids(self) -> list[int]:
        """Every process of the ACS: the one started, and its workers if any."""
        return [self.pid, *self.worker_pids]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.pid != self.proc.pid:
            # Under py-spy: stop the ACS and let py-spy see it exit, write its profile and
            # exit too; a signal to py-spy itself would lose the profile.
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                stop(self.proc, signal.SIGINT)
        stop(self.proc)
        self.proc = None


@dataclass
class PortServer:
    """A bench server that prints ``LISTENING <port>``: ``python -m <module> <args>`` (the
    bare twisted.web ceiling, the round-robin proxy)."""

    module: str
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    port: int = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", self.module, *self.args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, START_TIMEOUT)
        if not line.startswith("LISTENING "):
            stop(self.proc)
            raise BenchError(f"{self.module} did not start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def _read_line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise BenchError(f"no output within {timeout:g}s")
    return stream.readline().strip()


def run_generators(specs: list[dict[str, Any]], on_go: Any = None) -> list[dict[str, Any]]:
    """Start one load generator per spec, start them together, return their results.

    ``on_go`` is called right before the start signal (to snapshot the server's CPU).
    Each generator bounds itself with ``spec["max_time"]``; the wait here adds a margin and
    kills a generator that overruns it.
    """
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "bench.loadgen", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = _read_line(proc.stdout, START_TIMEOUT)
            if line != "READY":
                raise BenchError(f"load generator did not start: {line!r}")
        if on_go is not None:
            on_go()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.stdin.close()
            proc.stdin = None  # communicate() below must not flush a closed pipe
        results: list[dict[str, Any]] = []
        for proc, spec in zip(procs, specs, strict=True):
            try:
                out, _ = proc.communicate(timeout=float(spec["max_time"]) + START_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                raise BenchError("a load generator overran its deadline") from exc
            lines = [x for x in out.splitlines() if x.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise BenchError(f"load generator failed (exit {proc.returncode})")
            results.append(json.loads(lines[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
