"""Issue 14's acceptance: the single-file executable, run alone.

The module builds ``dist/acs`` (packaging/build.py, as ``make dist`` does), copies it alone
into an empty directory and runs it with an environment that holds nothing but ``PATH`` (that
directory: no Python, no virtualenv) and ``TMPDIR``: ``--version``, ``install --root`` (the
unit found inside the bundle), ``serve`` with a config in that directory, ``/healthz``, a
token made by the binary, ``acs sim --count 20`` from the same binary, a reboot through the
API, SIGTERM (status 0, no process and no unpacked files left), a second start. Twice: with
``TMPDIR`` an ordinary directory, and on a ``noexec`` mount (hardened hosts mount /tmp so),
where the patched bootloader unpacks elsewhere by itself. It prints the figures the README
states (size, start-up to listening).

Slow (a build, real processes): ``make test-dist``, which CI runs; the noexec case mounts a
tmpfs, so it needs root (CI is).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procharness import listening, running, sessions_done, stop, write_config

from acs.version import build_info, describe

pytestmark = pytest.mark.dist

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "dist" / "acs"
COUNT = 20
BUDGET = 120.0  # seconds for one run of the scenario


@pytest.fixture(scope="module")
def binary() -> Path:
    subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py")],
        cwd=ROOT,
        check=True,
        timeout=1800,
    )
    return BUILT


@pytest.fixture(params=["exec", "noexec"])
def unpack_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """The TMPDIR the binary runs with: an ordinary directory, or a noexec mount."""
    path = tmp_path / "tmp"
    path.mkdir()
    if request.param == "exec":
        yield path
        return
    if os.geteuid() != 0:
        pytest.skip("mounting a noexec tmpfs needs root (CI runs as root)")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "noexec,nosuid,nodev,size=256m,mode=1777", "tmpfs", path],
        check=True,
        timeout=30,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True, timeout=30)


def http(method: str, url: str, token: str = "", body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data, timeout=150) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (the one-file bootloader's is the Python program)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def unpacked_to(pid: int) -> Path:
    """The directory the bootloader unpacked the program into, read off the mapped files."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1]
        if "/_MEI" in path and "libpython3" in path:
            return Path(path).parent
    raise AssertionError(f"process {pid} maps no libpython from an unpacked bundle")


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_the_binary_alone_runs_the_appliance_and_the_simulator(
    binary: Path, unpack_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deadline = time.monotonic() + BUDGET
    work = tmp_path / "appliance"
    work.mkdir()
    acs = work / "acs"
    shutil.copy2(binary, acs)
    env = {"PATH": str(work), "TMPDIR": str(unpack_dir)}
    noexec = bool(os.statvfs(unpack_dir).f_flag & os.ST_NOEXEC)
    assert shutil.which("python3", path=env["PATH"]) is None
    assert shutil.which("python", path=env["PATH"]) is None
    leftovers = sorted(Path("/tmp").glob("_MEI*"))

    def acs_run(*argv: str) -> str:
        done = subprocess.run(
            [str(acs), *argv], cwd=work, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        return done.stdout

    assert acs_run("--version").strip() == describe()  # the commit this checkout is at
    # acs install finds the unit inside the bundle and lays itself down (staged: --root).
    staged = tmp_path / "root"
    acs_run("install", "--root", str(staged))
    assert (staged / "usr/local/bin/acs").read_bytes() == acs.read_bytes()
    unit = (staged / "etc/systemd/system/acs.service").read_text()
    assert unit == (ROOT / "packaging" / "acs.service").read_text()
    assert (staged / "etc/acs/acs.toml").is_file()
    config = write_config(work).name

    started = time.monotonic()
    with running([str(acs), "serve", "--config", config], work, env) as (serve, out, err):
        urls = listening(out, deadline)
        first_start = time.monotonic() - started
        (program,) = children(serve.pid)
        mei = unpacked_to(program)
        # In TMPDIR, unless it is noexec: then the next candidate, /tmp (no TEMP, no TMP).
        assert mei.parent == (Path("/tmp") if noexec else unpack_dir), mei

        status, health = http("GET", urls["healthz"])
        assert status == 200 and health["status"] == "ok", health
        assert health["commit"] == build_info()["commit"]
        assert set(health["listeners"]) == {"cwmp", "api", "files"}
        assert all(state["listening"] for state in health["listeners"].values()), health

        token = acs_run("token", "create", "--name", "admin", "--role", "admin", "--config", config)
        token = token.strip()
        devices = urls["api"] + "inventory_device/"
        assert http("GET", devices)[0] == 401
        status, listed = http("GET", devices, token)
        assert (status, listed["count"]) == (200, 0), listed

        sim_argv = [str(acs), "sim", "--acs", urls["cwmp"], "--count", str(COUNT)]
        sim_argv += ["--reboot-delay", "0.2", "--duration", str(int(BUDGET)), "--seed", "1"]
        with running(sim_argv, work, env) as (sim, _sim_out, sim_err):
            out.wait_for(sessions_done(COUNT), deadline, f"{COUNT} registered CPEs")
            status, listed = http("GET", devices + "?ordering=serial_number", token)
            assert (status, listed["count"]) == (200, COUNT), listed
            first = listed["results"][0]
            assert first["serial_number"] == "SIM000000"

            # A reboot through the API: the connection request wakes the CPE, it reboots and
            # comes back with "M Reboot"; the call waits for the task's end.
            status, task = http(
                "POST", f"{devices}{first['id']}/tasks/?timeout=100", token, {"kind": "reboot"}
            )
            assert (status, task["state"]) == (200, "done"), task

            assert stop(sim, deadline) == 0
            summary = sim_err.text().splitlines()[-1]
            assert f"CPEs {COUNT} | online {COUNT}" in summary and " failed 0 " in summary

        assert stop(serve, deadline) == 0
        assert gone(program), "the Python process outlived the bootloader"
        assert not mei.exists(), f"{mei} left behind"
        for text in (out.text(), err.text()):
            assert "Traceback" not in text, text

    # A second start (the database exists, migrated): an upgrade is this with a new file.
    started = time.monotonic()
    with running([str(acs), "serve", "--config", config], work, env) as (serve, out, _err):
        listening(out, deadline)
        second_start = time.monotonic() - started
        assert stop(serve, deadline) == 0

    assert sorted(Path("/tmp").glob("_MEI*")) == leftovers
    assert list(unpack_dir.iterdir()) == []
    assert time.monotonic() < deadline
    with capsys.disabled():
        print(
            f"\n{binary}: {binary.stat().st_size / 1e6:.1f} MB; TMPDIR "
            f"{'on a noexec mount' if noexec else 'exec-allowed'}: "
            f"start-up to listening {first_start:.2f} s (first start, empty directory), "
            f"{second_start:.2f} s (second)"
        )
