"""acs.maintenance: retention of history, transcripts and finished tasks, on a task.Clock.

Every test drives the job the way the appliance does (a PeriodicService on the clock: one
tick per 5 s advanced) and checks what the database holds afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

import acs.maintenance
from acs.config import RetentionConfig
from acs.files import FileStorage
from acs.maintenance import CAP_DEVICES, DAY, HISTORY_BATCH, INTERVAL, StorageMaintenance
from acs.store import Store

T0 = 1_700_000_000.0


class Job:
    """A store, a clock at T0 and the maintenance service, not yet started."""

    def __init__(self, tmp: Path, retention: RetentionConfig) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = Store.open(":memory:")
        self.org = self.store.ensure_organization("Default")
        self.service = StorageMaintenance(
            self.store, FileStorage(tmp / "files", self.store), self.clock, retention
        )

    def device(self, serial: str) -> int:
        return self.store.create_device(
            serial_number=serial,
            name=serial,
            organization_id=self.org.id,
            now=self.now,
            actor="test",
        ).id

    @property
    def now(self) -> float:
        return float(self.clock.seconds())

    def later(self, seconds: float) -> None:
        """Time passes: nothing is pruned meanwhile unless the job was started (then it runs
        once, as a LoopingCall does for the runs a long pause skipped)."""
        self.clock.advance(seconds)

    def start(self) -> None:
        self.service.startService()

    def tick(self) -> None:
        """One run of the job, as the reactor would make it."""
        self.clock.advance(INTERVAL)

    def count(self, table: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> int:
        return int(
            self.store.db.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[
                0
            ]
        )

    def close(self) -> None:
        if self.service.running:
            self.service.stopService()
        self.store.close()


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    j = Job(tmp_path, RetentionConfig())
    yield j
    j.close()


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Job]:
    j = Job(tmp_path, RetentionConfig(history_per_device=100))
    yield j
    j.close()


def finished_task(job: Job, device: int, kind: str, how: str, result: Any = None) -> int:
    store = job.store
    t = store.queue_task(device, kind, {}, now=job.now, actor="test")
    if how == "cancelled":
        store.cancel_task(t.id, now=job.now, actor="test")
        return t.id
    store.start_task(t.id, now=job.now)
    if how == "done":
        store.complete_task(t.id, now=job.now, result=result)
    else:
        store.fail_task(
            t.id, now=job.now, fault_code=9002, fault_string="x", retry_at=None, result=result
        )
    return t.id


def test_old_rows_go_and_recent_pending_and_running_ones_stay(job: Job) -> None:
    store = job.store
    device = job.device("SN1")
    store.add_history(device, "old", {}, now=job.now)
    store.add_history(None, "old_audit", {}, now=job.now)
    store.add_session_transcript(device, "old transcript", started=job.now)
    old_finished = [
        finished_task(job, device, "reboot", how) for how in ("done", "failed", "cancelled")
    ]
    pending = store.queue_task(device, "reboot", {}, now=job.now, actor="test").id
    running = store.queue_task(device, "factory_reset", {}, now=job.now, actor="test").id
    store.start_task(running, now=job.now)

    job.later(31 * DAY)
    store.add_history(device, "recent", {}, now=job.now)
    store.add_session_transcript(device, "recent transcript", started=job.now - 6 * DAY)
    recent_done = finished_task(job, device, "reboot", "done")
    job.start()
    job.tick()

    assert "recent" in [e.action for e in store.history(device)]
    assert {e.time for e in store.history(device)} == {job.now - INTERVAL}
    assert store.history(None) == []
    assert [t.transcript for t in store.session_transcripts(device)] == ["recent transcript"]
    left = {t.id: t.state for t in store.tasks_for_device(device)}
    assert left == {pending: "pending", running: "in_progress", recent_done: "done"}
    assert not set(old_finished) & set(left)


def test_nothing_younger_than_the_limits_goes(job: Job) -> None:
    store = job.store
    device = job.device("SN1")
    store.add_session_transcript(device, "t", started=job.now)
    finished_task(job, device, "reboot", "done")
    history = job.count("history")
    job.later(6 * DAY)
    job.start()
    job.tick()
    # History 30 days, transcripts 7, finished tasks 30: six days old is kept.
    assert job.count("history") == history
    assert job.count("cwmp_sessions") == 1
    assert job.count("tasks") == 1


def test_each_run_deletes_a_bounded_batch_oldest_first(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acs.maintenance, "TASK_BATCH", 7)
    store = job.store
    device = job.device("SN1")
    for i in range(2 * HISTORY_BATCH + 500 - 1):  # + device_created = 2,500 old rows
        store.add_history(device, f"old{i}", {}, now=job.now)
    for _ in range(acs.maintenance.TRANSCRIPT_BATCH + 5):
        store.add_session_transcript(device, "t", started=job.now)
    with store.transaction():
        for _ in range(10):
            t = store.queue_task(device, "reboot", {}, now=job.now, actor="test")
            store.cancel_task(t.id, now=job.now, actor="test")
    history = job.count("history")  # the 20 rows of the tasks too
    assert history == 2 * HISTORY_BATCH + 500 + 20
    job.later(31 * DAY)
    job.start()

    job.tick()
    assert job.count("history") == history - HISTORY_BATCH
    assert job.count("cwmp_sessions") == 5
    assert job.count("tasks") == 3
    first_left = store.db.execute("SELECT min(id) FROM history").fetchone()[0]
    assert first_left == HISTORY_BATCH + 1  # the oldest went first

    job.tick()
    assert job.count("history") == history - 2 * HISTORY_BATCH
    assert (job.count("cwmp_sessions"), job.count("tasks")) == (0, 0)
    job.tick()
    assert job.count("history") == 0


def test_a_fast_informing_device_is_cut_to_its_newest_rows_in_rotation(capped: Job) -> None:
    job, store = capped, capped.store
    devices = [job.device(f"SN{i}") for i in range(CAP_DEVICES + 2)]
    quiet = job.device("QUIET")
    with store.transaction():
        for device in devices:
            for i in range(149):
                store.add_history(device, f"inform{i}", {}, now=job.now)
        for i in range(40):
            store.add_history(quiet, f"inform{i}", {}, now=job.now)
    job.start()

    job.tick()
    per_device = {d: store.count_history(d) for d in [*devices, quiet]}
    assert per_device == {
        **dict.fromkeys(devices[:CAP_DEVICES], 100),
        **dict.fromkeys(devices[CAP_DEVICES:], 150),
        quiet: 41,
    }
    job.tick()
    assert {store.count_history(d) for d in devices} == {100}
    assert store.count_history(quiet) == 41
    # The newest stay: the last 100 written.
    assert [e.action for e in store.history(devices[0], limit=100)][::-1] == [
        f"inform{i}" for i in range(49, 149)
    ]


def test_one_run_deletes_at_most_a_batch_of_a_devices_excess(capped: Job) -> None:
    job, store = capped, capped.store
    device = job.device("FAST")
    with store.transaction():
        for i in range(2699):  # + device_created: 2,700 rows, 2,600 over the cap of 100
            store.add_history(device, f"inform{i}", {}, now=job.now)
    job.start()
    assert HISTORY_BATCH == 1000
    for expected in (1700, 700, 100, 100):
        job.tick()
        assert store.count_history(device) == expected
    assert store.history(device, limit=1)[0].action == "inform2698"


def test_finished_tasks_the_engine_still_reads_are_kept(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acs.maintenance, "TASK_BATCH", 2)
    store = job.store
    device = job.device("SN1")
    unchecked = finished_task(job, device, "firmware_update", "done", {"version_check": "pending"})
    job.later(1)
    finished_task(job, device, "reconf", "done", {"refused": {}})  # an older push
    job.later(1)
    cancelled = finished_task(job, device, "reboot", "cancelled")
    job.later(1)
    refused = {"Device.X": {"fp": "a", "code": 9007, "string": "bad value"}}
    latest_push = finished_task(job, device, "reconf", "failed", {"refused": refused})
    job.later(31 * DAY)
    job.start()

    job.tick()  # looks at the unchecked firmware update and the old push
    assert {t.id for t in store.tasks_for_device(device)} == {unchecked, cancelled, latest_push}
    job.tick()  # then the cancelled task and the latest push, from where it stopped
    job.tick()
    assert {t.id for t in store.tasks_for_device(device)} == {unchecked, latest_push}

    # A newer firmware update makes the unchecked one deletable once its check is done.
    newest_firmware = finished_task(job, device, "firmware_update", "failed")
    store.update_task_result(unchecked, {"version_check": "ok"})
    job.later(31 * DAY)  # a new pass from the oldest, then on from where it stopped
    job.tick()
    assert {t.id for t in store.tasks_for_device(device)} == {latest_push, newest_firmware}
    # What the engine reads from it still answers: the CPE is not asked again.
    assert store.refused_settings(device) == {"Device.X": ("a", 9007, "bad value")}


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("prune_history", {"before": T0, "limit": -1}),
        ("prune_transcripts", {"before": "yesterday", "limit": 10}),
        ("prune_finished_tasks", {"before": T0, "limit": 1.5}),
        ("cap_device_history", {"after_device": 0, "devices": -1, "keep": 10, "limit": 10}),
    ],
)
def test_bad_arguments_are_value_errors(store: Store, method: str, kwargs: Any) -> None:
    with pytest.raises(ValueError):
        getattr(store, method)(**kwargs)


def test_each_devices_newest_firmware_and_settings_tasks_are_kept_for_pending_settings(
    job: Job,
) -> None:
    # pending_settings shows firmware_update:failed (and a failed settings push) from them.
    store = job.store
    device, other = job.device("SN1"), job.device("SN2")
    old_firmware = finished_task(job, device, "firmware_update", "failed")
    firmware = finished_task(job, device, "firmware_update", "failed", {"report_failed": True})
    old_settings = finished_task(job, device, "configuration_update", "failed")
    settings = finished_task(job, device, "configuration_update", "failed")
    elsewhere = finished_task(job, other, "firmware_update", "cancelled")
    job.later(31 * DAY)
    job.start()
    job.tick()
    left = {t.id for t in store.tasks_for_device(device)}
    assert left == {firmware, settings}
    assert not {old_firmware, old_settings} & left
    assert [t.id for t in store.tasks_for_device(other)] == [elsewhere]
