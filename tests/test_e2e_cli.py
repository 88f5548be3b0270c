"""Acceptance through the real commands: ``acs serve`` plus ``cpe-sim --count 20``.

"``make run`` starts the appliance and ``cpe-sim --acs http://127.0.0.1:<port>/ --count 20``
registers 20 devices that stay Up": both console scripts run as subprocesses (the ones next to
``sys.executable``), on loopback, with a temporary config and database. Synchronisation reads
the processes' output (the ACS's banner and its per-session log lines); every wait is bounded
so a broken build fails within the test's time budget instead of hanging.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from procharness import listening, running, sessions_done, stop, write_config

from acs.store import Store
from acs.store.models import UP

COUNT = 20
BUDGET = 20.0  # seconds for the whole test
BIN = Path(sys.executable).parent


def test_cpe_sim_registers_twenty_devices_that_stay_up(tmp_path: Path) -> None:
    acs_cmd, sim_cmd = BIN / "acs", BIN / "cpe-sim"
    if not (acs_cmd.exists() and sim_cmd.exists()):
        pytest.skip("console scripts not installed next to the interpreter (pip install -e .)")
    deadline = time.monotonic() + BUDGET
    config = write_config(tmp_path)

    with running([str(acs_cmd), "serve", "--config", str(config)], tmp_path) as (
        acs,
        acs_out,
        acs_err,
    ):
        urls = listening(acs_out, deadline)
        sim_argv = [str(sim_cmd), "--acs", urls["cwmp"], "--count", str(COUNT)]
        # --duration only bounds the run if the test dies; the test stops it with SIGTERM.
        sim_argv += ["--duration", str(int(BUDGET)), "--seed", "1"]
        with running(sim_argv, tmp_path) as (sim, _sim_out, sim_err):
            # Every CPE's bootstrap session ends with one "Session done" line from the ACS.
            acs_out.wait_for(sessions_done(COUNT), deadline, f"{COUNT} completed sessions")

            with urllib.request.urlopen(urls["healthz"], timeout=5) as response:
                health = json.loads(response.read())
            assert health["status"] == "ok"
            assert health["devices"] == COUNT

            assert stop(sim, deadline) == 0
            summary = sim_err.text().splitlines()[-1]
            assert summary.startswith(f"CPEs {COUNT} | online {COUNT} | sessions ok "), summary
            assert " failed 0 " in summary and summary.endswith("in flight 0"), summary

        # The store, read by this process while the appliance still runs (WAL: no conflict).
        store = Store.open(tmp_path / "acs.db")
        try:
            assert store.count_devices() == COUNT
            for i in range(COUNT):
                device = store.find_device_by_serial(f"SIM{i:06d}")
                assert device is not None, f"SIM{i:06d} not registered"
                assert device.status == UP, device
                assert device.provisioned, device
        finally:
            store.close()

        assert stop(acs, deadline) == 0
        for text in (acs_out.text(), acs_err.text()):
            assert "Traceback" not in text, text
    assert time.monotonic() < deadline
