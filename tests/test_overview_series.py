"""The overview's time series: acs.series sampling the in-process counters every minute on
a task.Clock into ``series_samples``, and ``GET /api/v1/overview/``'s ``series``."""

from __future__ import annotations

from typing import Any

import pytest
from apiharness import T0, ApiHarness, harness  # noqa: F401 (fixture)
from schemacheck import schema_errors
from test_api_openapi import response_schema
from twisted.internet import task

import acs.series
from acs.metrics import Metrics, session_outcome
from acs.series import INTERVAL, SeriesSampler
from acs.store import Store
from acs.store.health import DATABASE, FILES
from acs.store.models import SERIES_COUNTERS, SESSION_OUTCOMES, SeriesSample
from api.openapi import openapi_document

MINUTE = INTERVAL


class Cwmp:
    """The CWMP resource's counter the sampler reads."""

    busy_rejections = 0


class Job:
    """A store with one device, fresh metrics, a clock at T0 and the sampler (not started)."""

    def __init__(self, store: Store | None = None, **options: Any) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = store if store is not None else Store.open(":memory:")
        self.metrics = Metrics()
        self.metrics.watch_tasks(self.store)
        self.cwmp = Cwmp()
        org = self.store.ensure_organization("Default")
        self.device_id = self.store.create_device(
            serial_number=f"S{id(self)}", name="d", organization_id=org.id, now=T0, actor="t"
        ).id
        self.sampler = SeriesSampler(self.store, self.metrics, self.clock, self.cwmp, **options)

    @property
    def now(self) -> float:
        return float(self.clock.seconds())

    def rows(self) -> list[SeriesSample]:
        return self.store.series_samples(0.0)

    def task(self, state: str) -> None:
        """A task that ends up ``state`` (pending, in_progress, done, failed, cancelled)."""
        queued = self.store.queue_task(self.device_id, "reboot", {}, now=self.now, actor="t")
        if state == "cancelled":
            self.store.cancel_task(queued.id, now=self.now, actor="t")
        if state in ("pending", "cancelled"):
            return
        self.store.start_task(queued.id, now=self.now)
        if state == "done":
            self.store.complete_task(queued.id, now=self.now)
        elif state == "failed":
            self.store.fail_task(
                queued.id, now=self.now, fault_code=9002, fault_string="x", retry_at=None
            )


def _counts(**given: int) -> dict[str, int]:
    return {name: given.get(name, 0) for name in SERIES_COUNTERS}


def test_three_minutes_give_three_rows_of_what_was_counted_in_each() -> None:
    job = Job()
    job.sampler.startService()
    # Minute 1: two sessions done, one timed out, a fault, four 503s at the cap.
    job.metrics.session_ended(None, 0.1)
    job.metrics.session_ended(None, 0.1)
    job.metrics.session_ended("timeout", 30.0)
    job.metrics.rpc_answered("GetParameterValues", 9005)
    job.metrics.rpc_answered("GetParameterValues", None)  # an answer, not a fault
    job.cwmp.busy_rejections += 4
    job.task("pending")
    job.clock.advance(MINUTE)
    # Minute 2: a protocol error, a refused write, tasks ending each way.
    job.metrics.session_ended("protocol error: no Inform", 0.2)
    job.store.health.refused_write(FILES)
    job.task("done")
    job.task("failed")
    job.task("cancelled")
    job.task("in_progress")
    job.clock.advance(MINUTE)
    # Minute 3: nothing happened.
    job.clock.advance(MINUTE)

    rows = job.rows()
    assert [r.at for r in rows] == [T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    assert [r.seconds for r in rows] == [MINUTE] * 3
    assert rows[0].counts == _counts(
        sessions_done=2,
        sessions_timeout=1,
        faults=1,
        rejected_session_cap=4,
        tasks_pending=1,
    )
    assert rows[1].counts == _counts(
        sessions_protocol_error=1,
        rejected_storage_full=1,
        tasks_pending=1,
        tasks_in_progress=1,
        tasks_done=1,
        tasks_failed=1,
        tasks_cancelled=1,
    )
    assert rows[2].counts == _counts(tasks_pending=1, tasks_in_progress=1)  # gauges stay
    job.sampler.stopService()
    job.clock.advance(10 * MINUTE)
    assert len(job.rows()) == 3  # stopped: no more samples


def test_rows_older_than_the_retention_or_beyond_its_count_are_deleted() -> None:
    job = Job(retention=3 * MINUTE)
    assert job.sampler.max_rows == 3
    old = SeriesSample(at=T0 - 86400.0, seconds=MINUTE, counts=_counts(faults=7))
    job.store.add_series_sample(old, keep_after=0.0, keep=10)
    job.sampler.startService()
    job.clock.advance(MINUTE)
    assert [r.at for r in job.rows()] == [T0 + MINUTE]  # the day-old row went
    for _ in range(4):
        job.clock.advance(MINUTE)
    assert [r.at for r in job.rows()] == [T0 + 3 * MINUTE, T0 + 4 * MINUTE, T0 + 5 * MINUTE]
    # Restarts every few seconds (a crash loop) still keep at most max_rows rows.
    for _ in range(5):
        job.sampler.stopService()
        job.sampler.startService()
        job.clock.advance(1.0)
        job.sampler.tick()
    assert len(job.rows()) == 3
    assert job.store.db.execute("SELECT count(*) FROM series_samples").fetchone()[0] == 3
    job.sampler.stopService()


def test_the_default_keeps_a_day_of_minutes() -> None:
    job = Job()
    assert (job.sampler.interval, job.sampler.max_rows) == (60.0, 1440)
    job.sampler.startService()
    for _ in range(1450):
        job.clock.advance(MINUTE)
    rows = job.rows()
    assert len(rows) == 1440 and rows[0].at == T0 + 11 * MINUTE
    job.sampler.stopService()


def test_a_restart_starts_from_the_counters_at_start_never_a_negative_or_huge_delta() -> None:
    job = Job()
    # Traffic before the sampler starts (or counted by an earlier process) is not a sample's.
    for _ in range(500):
        job.metrics.session_ended(None, 0.1)
    job.cwmp.busy_rejections = 1000
    job.clock.advance(30.0)
    job.sampler.startService()
    job.metrics.session_ended(None, 0.1)
    job.clock.advance(MINUTE)
    first = job.rows()[-1]
    assert first.counts["sessions_done"] == 1 and first.counts["rejected_session_cap"] == 0
    job.sampler.stopService()

    # The process restarts: fresh counters (zeros) over the same database, 20 s later.
    job.clock.advance(20.0)
    again = SeriesSampler(job.store, Metrics(), job.clock, Cwmp())
    again.startService()
    job.clock.advance(MINUTE)
    after = job.rows()[-1]
    assert after.at == job.now and after.seconds == MINUTE
    assert all(n >= 0 for n in after.counts.values())
    assert after.counts["sessions_done"] == 0 and after.counts["rejected_session_cap"] == 0
    # A counter that goes down counted from 0 again: its value, not a negative difference.
    again._cwmp.busy_rejections = 3
    job.clock.advance(MINUTE)
    again._cwmp.busy_rejections = 2
    job.clock.advance(MINUTE)
    assert [r.counts["rejected_session_cap"] for r in job.rows()[-2:]] == [3, 2]
    again.stopService()


def test_nothing_is_written_while_the_database_is_full_and_the_next_row_spans_it() -> None:
    job = Job()
    job.sampler.startService()
    job.store.health.refused_write(DATABASE)  # a CWMP message refused: one 503
    job.clock.advance(MINUTE)
    job.clock.advance(MINUTE)
    assert job.rows() == []
    job.store.health.wrote(DATABASE)  # the maintenance probe: it takes writes again
    job.metrics.session_ended(None, 0.1)
    job.clock.advance(MINUTE)
    (row,) = job.rows()
    assert row.seconds == 3 * MINUTE
    assert row.counts["rejected_storage_full"] == 1 and row.counts["sessions_done"] == 1
    job.sampler.stopService()


def test_a_failed_write_is_logged_and_rolls_into_the_next_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = Job()
    job.sampler.startService()
    job.metrics.rpc_answered("Download", 9010)
    real = job.store.add_series_sample
    calls = []

    def broken(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(job.store, "add_series_sample", broken)
    job.clock.advance(MINUTE)
    assert job.rows() == [] and job.sampler.running  # the loop goes on
    job.clock.advance(MINUTE)
    (row,) = job.rows()
    assert row.seconds == 2 * MINUTE and row.counts["faults"] == 1
    job.sampler.stopService()


def test_a_tick_before_start_writes_nothing() -> None:
    job = Job()
    assert job.sampler.tick() is None and job.rows() == []


def test_every_session_outcome_has_a_column() -> None:
    reasons = [None, "timeout", "protocol error: x", "RPC cap per session reached", "other"]
    assert {session_outcome(r) for r in reasons} == set(SESSION_OUTCOMES)
    assert set(acs.series.DELTAS) <= set(SERIES_COUNTERS)


def test_the_store_refuses_unknown_counters_and_clamps_negatives() -> None:
    store = Store.open(":memory:")
    with pytest.raises(ValueError, match="unknown series counter"):
        store.add_series_sample(
            SeriesSample(at=T0, seconds=60.0, counts={"bogus": 1}), keep_after=0.0, keep=5
        )
    with pytest.raises(ValueError, match="keep"):
        store.add_series_sample(SeriesSample(T0, 60.0, {}), keep_after=0.0, keep=0)
    store.add_series_sample(SeriesSample(T0, 60.0, {"faults": -5}), keep_after=0.0, keep=5)
    (row,) = store.series_samples(T0)
    assert row.counts == _counts()
    assert store.series_samples(T0 + 1) == []


@pytest.mark.sqlite_only
def test_open_tasks_are_counted_through_their_partial_index() -> None:
    job = Job()
    plan = job.store.db.execute(
        "EXPLAIN QUERY PLAN SELECT state, count(*) FROM tasks"
        " WHERE state IN ('pending', 'in_progress') GROUP BY state"
    ).fetchall()
    assert "tasks_open" in plan[0][3]
    job.task("pending")
    job.task("done")
    assert job.store.count_open_tasks() == {"pending": 1, "in_progress": 0}


# --- GET /api/v1/overview/ -------------------------------------------------------------------


def _get(h: ApiHarness, query: str = "", **token: Any) -> Any:
    return h.call("GET", f"/api/v1/overview/{query}", token=h.token("viewer", **token))


def test_the_overview_carries_the_appliances_series_as_documented(
    harness: ApiHarness,  # noqa: F811
) -> None:
    appliance = harness.appliance
    appliance.series.startService()
    try:
        appliance.metrics.session_ended(None, 0.5)
        appliance.metrics.session_ended("RPC cap per session reached", 0.5)
        appliance.metrics.rpc_answered("Reboot", 9001)
        appliance.cwmp.busy_rejections += 2
        harness.clock.advance(MINUTE)
        harness.clock.advance(MINUTE)
    finally:
        appliance.series.stopService()
    reply = _get(harness)
    assert reply.status == 200
    series = reply.json["series"]
    assert series["interval"] == 60 and series["hours"] == 6
    first, second = series["points"]
    assert first == {
        "at": "2024-01-15T09:31:00Z",
        "seconds": 60.0,
        "sessions": 2,
        "sessions_by_outcome": {
            "done": 1,
            "timeout": 0,
            "protocol_error": 0,
            "rpc_cap": 1,
            "aborted": 0,
        },
        "rejected_503": 2,
        "rejected_503_by_cause": {"session_cap": 2, "storage_full": 0},
        "faults": 1,
        "tasks": {"pending": 0, "in_progress": 0},
        "tasks_ended": {"done": 0, "failed": 0, "cancelled": 0},
    }
    assert second["at"] == "2024-01-15T09:32:00Z" and second["sessions"] == 0
    doc = openapi_document("http://testserver")
    schema = response_schema(doc, "/api/v1/overview/", "get", 200)
    assert schema_errors(doc, schema, reply.json) == []


def test_hours_selects_the_last_hours_of_points(harness: ApiHarness) -> None:  # noqa: F811
    now = harness.clock.seconds()
    for minutes_ago in (1, 59, 61, 5 * 60, 7 * 60, 23 * 60, 25 * 60):
        at = now - minutes_ago * 60
        harness.store.add_series_sample(
            SeriesSample(at, 60.0, {"faults": minutes_ago}), keep_after=0.0, keep=1440
        )

    def faults(query: str) -> list[int]:
        reply = _get(harness, query)
        assert reply.status == 200, reply.raw
        assert reply.json["series"]["hours"] == (int(query[7:]) if query[7:] else 6)
        return [p["faults"] for p in reply.json["series"]["points"]]

    assert faults("") == [5 * 60, 61, 59, 1]  # default 6 h, oldest first
    assert faults("?hours=") == [5 * 60, 61, 59, 1]
    assert faults("?hours=1") == [59, 1]
    # 4-minute points: 61 and 59 minutes ago fall in one.
    assert faults("?hours=24") == [23 * 60, 7 * 60, 5 * 60, 61 + 59, 1]


def test_beyond_six_hours_points_sum_several_minutes(harness: ApiHarness) -> None:  # noqa: F811
    now = harness.clock.seconds()
    for k in range(1440, 0, -1):  # a full day of minutes, up to now
        counts = {"faults": 1, "sessions_done": k, "tasks_pending": k}
        sample = SeriesSample(now - (k - 1) * 60, 60.0, counts)
        harness.store.add_series_sample(sample, keep_after=0.0, keep=1440)
    for hours, step in ((6, 60), (7, 120), (12, 120), (24, 240)):
        series = _get(harness, f"?hours={hours}").json["series"]
        points = series["points"]
        assert series["interval"] == step
        assert len(points) <= 361
        # Every minute of the window counted once; a gauge is its bucket's last sample's.
        assert sum(p["faults"] for p in points) == min(hours * 60 + 1, 1440)
        assert points[-1]["at"] == "2024-01-15T09:30:00Z" and points[-1]["tasks"]["pending"] == 1
        full = points[1]
        assert full["seconds"] == step and full["faults"] == step // 60
        last_minute = (T0 - _epoch(full["at"])) // 60 + 1
        assert full["tasks"]["pending"] == last_minute
        assert full["sessions"] == sum(range(int(last_minute), int(last_minute) + step // 60))
    points = _get(harness, "?hours=24").json["series"]["points"]
    assert len(points) == 361  # the window's two ends cut a bucket each


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_samples_of_the_same_minute_are_one_point(harness: ApiHarness) -> None:  # noqa: F811
    """A restart within a minute leaves two samples in it: the chart gets one point."""
    for at, faults in ((T0 - 50, 2), (T0 - 20, 3)):
        harness.store.add_series_sample(
            SeriesSample(at, 30.0, {"faults": faults}), keep_after=0.0, keep=10
        )
    (point,) = _get(harness).json["series"]["points"]
    assert (point["faults"], point["seconds"], point["at"]) == (5, 60.0, "2024-01-15T09:29:40Z")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?hours=0", "Ensure this value is greater than or equal to 1."),
        ("?hours=25", "Ensure this value is less than or equal to 24."),
        ("?hours=-3", "Ensure this value is greater than or equal to 1."),
        ("?hours=six", "A valid integer is required, not 'six'."),
        ("?hours=1.5", "A valid integer is required, not '1.5'."),
        ("?hours=1&hours=2", "Give this query parameter once."),
    ],
)
def test_invalid_hours_is_a_400_naming_the_field(
    harness: ApiHarness,  # noqa: F811
    query: str,
    message: str,
) -> None:
    reply = _get(harness, query)
    assert reply.status == 400
    assert reply.json == {"hours": [message]}


def test_a_scoped_caller_gets_no_series_but_hours_is_still_checked(
    harness: ApiHarness,  # noqa: F811
) -> None:
    east = harness.store.ensure_organization("East").id
    harness.store.add_series_sample(
        SeriesSample(T0 - 60, 60.0, {"faults": 3}), keep_after=0.0, keep=10
    )
    reply = _get(harness, orgs=[east])
    assert reply.status == 200 and reply.json["series"] is None
    assert _get(harness, "?hours=99", orgs=[east]).status == 400
    unscoped = _get(harness).json["series"]["points"]
    assert [p["faults"] for p in unscoped] == [3]
