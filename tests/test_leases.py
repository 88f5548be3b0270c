"""Leases of the cluster-wide periodic jobs (acs.store.leases, acs.periodic.share): however
many processes share the database, a shared job runs in one of them per interval, and
another takes it over when the holder stops renewing (killed) or gives it up (closed).

Two "processes" here are two Store connections to one SQLite file, each with its own
PeriodicService, driven by one task.Clock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiharness import ApiHarness
from twisted.internet.task import Clock

from acs.periodic import MIN_LEASE_SECONDS, PeriodicService, node_gone, node_name
from acs.store import Store
from acs.store.health import DATABASE

T0 = 1_700_000_000.0


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    a, b = Store.open(tmp_path / "acs.db"), Store.open(tmp_path / "acs.db")
    yield a, b
    a.close()
    b.close()


def test_a_lease_is_taken_renewed_refused_and_taken_over(stores: tuple[Store, Store]) -> None:
    a, b = stores
    assert a.take_lease("liveness", "node-a", now=T0, seconds=15)
    assert b.lease_holder("liveness", now=T0) == "node-a"
    assert not b.take_lease("liveness", "node-b", now=T0 + 14.9, seconds=15)
    assert a.take_lease("liveness", "node-a", now=T0 + 10, seconds=15)  # renewed: to T0 + 25
    assert not b.take_lease("liveness", "node-b", now=T0 + 24, seconds=15)
    assert b.lease_holder("liveness", now=T0 + 25) is None  # expired
    assert b.take_lease("liveness", "node-b", now=T0 + 25, seconds=15)
    assert not a.take_lease("liveness", "node-a", now=T0 + 26, seconds=15)
    # Other names are other leases; dropping gives only the holder's own up.
    assert a.take_lease("scheduler", "node-a", now=T0 + 26, seconds=15)
    assert a.drop_leases("node-a") == 1
    assert a.lease_holder("liveness", now=T0 + 26) == "node-b"
    assert b.take_lease("scheduler", "node-b", now=T0 + 26, seconds=15)


@pytest.mark.parametrize(
    ("name", "holder", "seconds"),
    [("", "n", 1.0), ("x" * 101, "n", 1.0), ("j", "", 1.0), ("j", 7, 1.0), ("j", "n", 0.0)],
)
def test_bad_lease_arguments_are_refused(
    stores: tuple[Store, Store], name: str, holder: object, seconds: float
) -> None:
    with pytest.raises(ValueError):
        stores[0].take_lease(name, holder, now=T0, seconds=seconds)  # type: ignore[arg-type]


class Job(PeriodicService):
    def __init__(self, clock: Clock, store: Store, node: str, runs: list[str]) -> None:
        super().__init__(clock, 5.0, lambda: runs.append(node))
        self.setName("liveness")
        self.share(store, node)


def test_a_shared_job_runs_once_per_interval_and_moves_when_its_holder_stops(
    stores: tuple[Store, Store],
) -> None:
    clock = Clock()
    clock.advance(T0)
    runs: list[str] = []
    a, b = Job(clock, stores[0], "node-a", runs), Job(clock, stores[1], "node-b", runs)
    assert a.lease_seconds == MIN_LEASE_SECONDS == 15.0
    a.startService()
    b.startService()
    for _ in range(6):
        clock.advance(5)
    assert runs == ["node-a"] * 7  # one run per tick, at start included, all in node-a

    # node-a is killed: its loop stops, its lease is not given up. node-b takes the job
    # once the lease has expired (15 s after node-a's last renewal), not before.
    a.stopService()
    runs.clear()
    clock.advance(5)
    clock.advance(5)
    assert runs == []
    clock.advance(5)
    assert runs == ["node-b"]
    for _ in range(3):
        clock.advance(5)
    assert runs == ["node-b"] * 4
    b.stopService()


def test_a_closing_appliance_hands_its_jobs_over_at_once(tmp_path: Path) -> None:
    first, second = ApiHarness(tmp_path), ApiHarness(tmp_path)
    try:
        now = first.clock.seconds()
        shared = ("liveness", "scheduler", "transfer_watch", "campaigns", "webhooks")
        for job in (first.appliance.liveness, first.appliance.scheduler):
            job._tick()
        assert first.store.lease_holder("liveness", now=now) == first.appliance.node
        assert not second.store.take_lease("liveness", second.appliance.node, now=now, seconds=15)
        first.close()
        for name in shared:
            assert second.store.take_lease(name, second.appliance.node, now=now, seconds=15)
        # The per-process jobs are not shared: each process checkpoints and probes its own.
        for job in (second.appliance.maintenance, second.appliance.series):
            job._tick()
        assert second.store.lease_holder("storage_maintenance", now=now) is None
        assert second.store.lease_holder("overview_series", now=now) is None
        assert first.appliance.node != second.appliance.node
    finally:
        first.close()
        second.close()


def test_retention_runs_in_one_process_and_the_checkpoint_in_each(tmp_path: Path) -> None:
    first, second = ApiHarness(tmp_path), ApiHarness(tmp_path)
    calls: list[tuple[str, str]] = []
    try:
        for harness, who in ((first, "first"), (second, "second")):
            store: Any = harness.store
            for name in ("prune_history", "checkpoint"):
                real = getattr(store, name)

                def spy(*args: Any, _real: Any = real, _call: Any = (who, name), **kw: Any) -> Any:
                    calls.append(_call)
                    return _real(*args, **kw)

                setattr(store, name, spy)
        first.appliance.maintenance.tick()
        second.appliance.maintenance.tick()
        now = first.clock.seconds()
        assert first.store.lease_holder("retention", now=now) == first.appliance.node
        assert calls == [
            ("first", "prune_history"),
            ("first", "checkpoint"),
            ("second", "checkpoint"),
        ]
        first.close()  # gives the lease up: the other prunes from its next run
        calls.clear()
        second.appliance.maintenance.tick()
        assert calls == [("second", "prune_history"), ("second", "checkpoint")]
    finally:
        first.close()
        second.close()


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True, timeout=30)  # fmt: skip
    return int(done.stdout)


def test_node_gone_only_for_a_process_of_this_host_that_no_longer_runs() -> None:
    host = socket.gethostname()[:64]
    assert node_gone(f"{host}-{dead_pid()}-abcdef")
    assert not node_gone(node_name())  # this process
    assert not node_gone(f"{host}-{os.getppid()}-abcdef")  # alive
    assert not node_gone(f"another-host-{dead_pid()}-abcdef")
    for malformed in ("", "x", f"{host}-pid-abc", f"{host}--abc"):
        assert not node_gone(malformed)


def test_a_restarted_node_takes_its_dead_predecessors_jobs_at_once(
    stores: tuple[Store, Store],
) -> None:
    crashed = f"{socket.gethostname()[:64]}-{dead_pid()}-abcdef"
    assert stores[0].take_lease("liveness", crashed, now=T0, seconds=15)
    assert stores[0].take_lease("other", "far-away-1-abcdef", now=T0, seconds=15)
    clock = Clock()
    clock.advance(T0 + 1)
    runs: list[str] = []
    job = Job(clock, stores[1], "restarted", runs)
    job.startService()
    assert runs == ["restarted"]  # at start, not 15 s later
    assert stores[1].lease_holder("liveness", now=T0 + 1) == "restarted"
    # Only a holder known to be gone is replaced.
    assert not stores[1].take_lease(
        "other", "restarted", now=T0 + 1, seconds=15, replaces="somebody-else"
    )
    job.stopService()


def test_a_lease_renewal_does_not_count_as_storage_taking_writes_again(
    stores: tuple[Store, Store],
) -> None:
    a, _b = stores
    assert a.take_lease("liveness", "node-a", now=T0, seconds=15)
    a.health.refused_write(DATABASE)  # a write was refused for lack of space
    # Renewing rewrites the row in place, which a full disk allows: it proves nothing.
    assert a.take_lease("liveness", "node-a", now=T0 + 5, seconds=15)
    assert a.health.is_full(DATABASE)
    assert a.probe_write()  # what does prove it
    assert not a.health.is_full(DATABASE)
