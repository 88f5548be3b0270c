"""Two real ``acs serve`` processes on one SQLite file: the cluster-wide periodic jobs run in
one of them, and when it is killed with ``kill -9`` the other takes them over at its next
run (a holder of this host whose process is gone needs no waiting for its leases to
expire; tests/test_leases.py covers the expiry), which it says in its log. Slow: real
time passes."""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from procharness import listening, running, stop, write_config

from acs.periodic import MIN_LEASE_SECONDS
from acs.store import Store

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# The shared jobs that run every 5 s (the transfer watch, also shared, runs every minute:
# its lease is 3 minutes, which tests/test_leases.py's Clock covers instead).
SHARED = ("liveness", "scheduler", "campaigns", "webhooks")
INTERVAL = 5.0


def node_of(healthz: str) -> str:
    with urllib.request.urlopen(healthz, timeout=10) as response:
        return str(json.loads(response.read())["node"])


def took(name: str, node: str) -> Callable[[list[str]], bool]:
    line = f"{name}: this node runs it now node={node}"
    return lambda lines: any(line in text for text in lines)


def test_a_killed_nodes_jobs_move_to_the_other_within_the_lease(tmp_path: Path) -> None:
    deadline = time.monotonic() + 90
    config = str(write_config(tmp_path))  # both on one database, each its own free ports
    argv = [str(BIN / "acs"), "serve", "--config", config]
    with running(argv, tmp_path) as (first, first_out, _):
        a = node_of(listening(first_out, deadline)["healthz"])
        for name in SHARED:  # the first node takes every shared job at its start
            first_out.wait_for(took(name, a), deadline, f"{name} taken by the first node")
        with running(argv, tmp_path) as (second, second_out, _):
            b = node_of(listening(second_out, deadline)["healthz"])
            assert a != b
            store = Store.open(tmp_path / "acs.db")
            try:
                assert {store.lease_holder(n, now=time.time()) for n in SHARED} == {a}

                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                killed = time.monotonic()
                for name in SHARED:
                    second_out.wait_for(took(name, b), deadline, f"{name} taken over")
                moved = time.monotonic() - killed
                # At the next run, well before the lease would have expired.
                assert moved <= INTERVAL + 2 < MIN_LEASE_SECONDS, moved
                assert {store.lease_holder(n, now=time.time()) for n in SHARED} == {b}

                assert stop(second, deadline) == 0
                # A clean stop gives the leases up at once.
                assert {store.lease_holder(n, now=time.time()) for n in SHARED} == {None}
            finally:
                store.close()
