"""kill -9 under load (issue 9, acceptance 3): a real ``acs serve`` and a ``cpe-sim`` fleet as
subprocesses on 127.0.0.1, the ACS killed at three moments and restarted on the same ports.

1. during registration (the fleet's first Informs and provisioning);
2. during dispatch (reboots queued through the API, their connection requests and sessions
   under way);
3. during firmware transfers (Downloads acknowledged, images being fetched).

After each restart: the database passes ``PRAGMA integrity_check``; every task the API
acknowledged ends done, or failed with a reason; none is executed twice (the simulator
counts the reboots and installs it really did); and pending work gets its connection request
within seconds of the restart, although the CPEs' periodic interval is an hour. Waiting is on
the ACS's log lines (each session logs its end after its transaction committed), bounded.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from procharness import Output, running, stop, write_config

from acs.store import Store
from acs.store.models import DONE, FAILED
from cpe_sim import firmware

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
COUNT = 20
BUDGET = 420.0  # the whole test; transient transfer faults are retried after a minute
# Pending work must be woken this soon after a restart (the CPEs inform hourly).
WAKE_WITHIN = 20.0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Crashes:
    def __init__(self, tmp: Path, stack: contextlib.ExitStack) -> None:
        self.tmp = tmp
        self.stack = stack
        self.deadline = time.monotonic() + BUDGET
        self.ports = dict(zip(("cwmp", "api", "files"), free_ports(3), strict=True))
        self.config = write_config(tmp, ports=self.ports)
        self.db = tmp / "acs.db"
        argv = [str(BIN / "acs"), "token", "create", "--name", "crash", "--role", "admin"]
        made = subprocess.run(
            [*argv, "--config", str(self.config)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        self.token = made.stdout.strip().splitlines()[-1]
        self.acs: subprocess.Popen[str] | None = None
        self.out: Output | None = None
        self.started = 0.0

    # --- the ACS process ---------------------------------------------------------------

    def start(self) -> None:
        proc, out, _err = self.stack.enter_context(
            running([str(BIN / "acs"), "serve", "--config", str(self.config)], self.tmp)
        )
        out.wait_for(
            lambda ls: any(x.startswith("API token:") for x in ls), self.deadline, "banner"
        )
        self.acs, self.out, self.started = proc, out, time.time()

    def kill(self) -> None:
        assert self.acs is not None
        self.acs.send_signal(signal.SIGKILL)
        self.acs.wait(timeout=10)
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    def restart(self) -> None:
        self.kill()
        self.start()

    def wait_for_log(self, pattern: str, count: int = 1) -> None:
        assert self.out is not None
        found = re.compile(pattern)
        self.out.wait_for(
            lambda ls: sum(1 for x in ls if found.search(x)) >= count, self.deadline, pattern
        )

    def wait_until(self, done: Any, what: str) -> None:
        """Until ``done(store)`` holds, checked at each ACS log line (bounded)."""
        assert self.out is not None
        with contextlib.closing(Store.open(self.db)) as store:
            self.out.wait_for(lambda _ls: done(store), self.deadline, what)

    # --- the API -------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, data: bytes | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['api']}/api/v1{path}",
            data=data,
            method=method,
            headers=headers,
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status in (200, 201), response.status
            return json.loads(response.read())


def devices(store: Store) -> list[Any]:
    found = (store.find_device_by_serial(f"SIM{i:06d}") for i in range(COUNT))
    return [d for d in found if d is not None]


def tasks_of(store: Store, kind: str) -> list[Any]:
    return [t for d in devices(store) for t in store.tasks_for_device(d.id) if t.kind == kind]


def settled(store: Store, kind: str) -> bool:
    tasks = tasks_of(store, kind)
    return len(tasks) == COUNT and all(t.state in (DONE, FAILED) for t in tasks)


def woken_after(store: Store, device_ids: set[int], since: float) -> set[int]:
    """Devices with a connection request (or scheduled wake) recorded since ``since``."""
    woke = set()
    for device_id in device_ids:
        for entry in store.history(device_id, limit=200):
            if entry.action in ("scheduled_wake", "connection_request") and entry.time >= since:
                woke.add(device_id)
    return woke


def test_kill_9_at_registration_dispatch_and_transfer(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        run = Crashes(tmp_path, stack)
        run.start()
        acs_url = f"http://127.0.0.1:{run.ports['cwmp']}/"
        sim_argv = [str(BIN / "cpe-sim"), "--acs", acs_url, "--count", str(COUNT)]
        sim_argv += ["--interval", "3600", "--reboot-delay", "0.2", "--seed", "3"]
        sim_argv += ["--start-spread", "2", "--duration", str(int(BUDGET))]
        sim, _sim_out, sim_err = stack.enter_context(running(sim_argv, tmp_path))

        # 1. Registration: killed after the first few Informs, before the fleet is in.
        run.wait_for_log(r"^.*Inform SIM\d{6} ", count=3)
        run.restart()
        run.wait_until(
            lambda s: (
                s.count_devices() == COUNT and all(d.provisioned and d.username for d in devices(s))
            ),
            f"{COUNT} devices registered and provisioned after the restart",
        )

        # 2. Dispatch: a reboot for every device, acknowledged by the API; killed at once.
        with contextlib.closing(Store.open(run.db)) as store:
            ids = {d.id for d in devices(store)}
        for device_id in sorted(ids):
            run.api("PATCH", f"/inventory_device/{device_id}/", {"reboot": True})
        run.restart()
        with contextlib.closing(Store.open(run.db)) as store:
            pending = {t.device_id for t in tasks_of(store, "reboot") if t.state != DONE}
        run.wait_until(
            lambda s: woken_after(s, pending, run.started) == pending,
            "a connection request for every device with a pending reboot",
        )
        assert time.time() - run.started < WAKE_WITHIN
        run.wait_until(lambda s: settled(s, "reboot"), "every reboot task settled")

        # 3. Firmware: an image for every device; killed once Downloads are acknowledged.
        image = firmware.make_image("2.0.0", 2_000_000)
        uploaded = run.api("POST", "/firmware_image/?name=fw&version=2.0.0", data=image)
        for device_id in sorted(ids):
            run.api(
                "PATCH",
                f"/inventory_device/{device_id}/",
                {"firmware_image": uploaded["id"], "firmware_image_is_pending": True},
            )
        run.wait_for_log(r"firmware_update accepted, awaiting TransferComplete")
        run.restart()
        with contextlib.closing(Store.open(run.db)) as store:
            pending = {t.device_id for t in tasks_of(store, "firmware_update") if t.state != DONE}
        run.wait_until(
            lambda s: woken_after(s, pending, run.started) >= pending,
            "a connection request for every device with a pending firmware update",
        )
        run.wait_until(lambda s: settled(s, "firmware_update"), "every firmware task settled")

        with contextlib.closing(Store.open(run.db)) as store:
            reboots = tasks_of(store, "reboot")
            updates = tasks_of(store, "firmware_update")
            for task in reboots + updates:
                assert task.state == DONE or task.fault_string, task
            done_updates = [t for t in updates if t.state == DONE]
            for task in done_updates:
                device = store.get_device(task.device_id)
                assert device is not None and device.software_version == "2.0.0", device
            assert store.count_devices() == COUNT
        assert stop(sim, run.deadline) == 0
        summary = sim_err.text().splitlines()[-1]
        counts = dict(re.findall(r"(reboots|installs) (\d+)", summary))
        # What the CPEs really did, once each: the done tasks and nothing more.
        assert int(counts["reboots"]) == sum(t.state == DONE for t in reboots), summary
        assert int(counts["installs"]) == len(done_updates), summary
        assert run.acs is not None
        assert stop(run.acs, run.deadline) == 0
