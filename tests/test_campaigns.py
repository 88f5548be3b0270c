"""Campaigns: windows, the stop rule and the ETA (pure); the runner's pacing, holds and
stop rule over a real store on a task.Clock; the API's states, preview, progress and
organization scope in memory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apiharness import ApiHarness

from acs.campaigns import Window, eta, is_open, stop_reason, window_problem
from acs.store import DOWN, UP

MONDAY_0159 = datetime(2024, 1, 15, 1, 59, tzinfo=UTC).timestamp()  # a Monday
REBOOT = {"kind": "reboot"}


def test_windows_open_on_their_days_across_midnight_and_in_their_zone() -> None:
    night = Window.of({"start": "22:00", "end": "02:00", "days": ["sun"]})
    monday_0100 = MONDAY_0159 - 59 * 60
    assert night.is_open(monday_0100)  # opened Sunday 22:00
    assert not night.is_open(monday_0100 + 2 * 3600)
    assert not night.is_open(monday_0100 + 21 * 3600 + 30 * 60)  # Monday 22:30: not Monday's
    berlin = Window.of({"start": "02:00", "end": "03:00", "timezone": "Europe/Berlin"})
    assert berlin.is_open(MONDAY_0159 - 3600 + 120)  # 01:01 UTC = 02:01 CET
    assert not berlin.is_open(MONDAY_0159 + 60)  # 03:00 CET
    assert is_open([], MONDAY_0159)


def test_window_problems_name_the_field() -> None:
    assert window_problem({"start": "02:00", "end": "05:00"}) is None
    assert "start" in (window_problem({"start": "2:00", "end": "05:00"}) or "")
    assert "days" in (window_problem({"start": "02:00", "end": "05:00", "days": ["x"]}) or "")
    assert "timezone" in (
        window_problem({"start": "02:00", "end": "05:00", "timezone": "Mars/Base"}) or ""
    )
    assert "Unknown" in (window_problem({"start": "02:00", "end": "05:00", "x": 1}) or "")


def test_eta_counts_open_time_only() -> None:
    window = Window.of({"start": "02:00", "end": "03:00"})
    # Two hours of work from 01:59: 02:00-03:00 today, then 02:00-03:00 tomorrow.
    done = eta([window], MONDAY_0159, 2 * 3600)
    assert done == MONDAY_0159 + 60 + 86400 + 3600
    assert eta([], MONDAY_0159, 10) == MONDAY_0159 + 10
    assert eta([Window.of({"start": "02:00", "end": "02:01"})], MONDAY_0159, 1e9) is None


def _counts(done: int, failed: int) -> dict[str, int]:
    return {"done": done, "failed": failed}


def test_the_stop_rule() -> None:
    assert stop_reason({}, _counts(0, 100)) is None
    assert stop_reason({"max_failures": 2}, _counts(0, 2)) is None
    assert "max_failures" in (stop_reason({"max_failures": 2}, _counts(0, 3)) or "")
    ratio = {"max_failure_ratio": 0.05, "min_sample": 20}
    assert stop_reason(ratio, _counts(10, 9)) is None  # 19 finished: too few to judge
    assert stop_reason(ratio, _counts(19, 1)) is None  # 5% is not over 5%
    assert "ratio" in (stop_reason(ratio, _counts(18, 2)) or "")


# --- the runner over a real store ------------------------------------------------------


def _fleet(h: ApiHarness, count: int, *, down: tuple[int, ...] = ()) -> list[int]:
    org = h.store.ensure_organization("East")
    ids = []
    for i in range(count):
        device = h.store.create_device(
            serial_number=f"CAMP{i:04d}", name=f"c{i}", organization_id=org.id, now=0, actor="t"
        )
        h.store.set_status(device.id, DOWN if i in down else UP, now=0)
        ids.append(device.id)
    return ids


def _campaign(h: ApiHarness, token: str, **body: Any) -> dict[str, Any]:
    values = {"name": "night", "filter": {}, "task": REBOOT, "rate": 60, **body}
    reply = h.call("POST", "/api/v1/campaign/", token=token, json_body=values)
    assert reply.status == 201, reply.raw
    return dict(reply.json)


def _post(h: ApiHarness, token: str, path: str, status: int = 200) -> dict[str, Any]:
    reply = h.call("POST", f"/api/v1/campaign/{path}", token=token)
    assert reply.status == status, reply.raw
    return dict(reply.json)


def _tick(h: ApiHarness, seconds: float = 1.0, campaign: int = 1) -> dict[str, int]:
    h.clock.advance(seconds)
    h.appliance.campaigns.tick()
    return dict(h.store.campaign_progress(campaign)[0])


def _finish(h: ApiHarness, *, fail: int = 0) -> None:
    """Run every started-able campaign task: the first ``fail`` of them fail for good."""
    pending = [
        t
        for device in h.store.devices_page(limit=100)[1]
        for t in h.store.tasks_for_device(device.id, states=("pending",))
        if t.campaign_id == 1
    ]
    for i, task in enumerate(pending):
        if i < fail:
            h.store.fail_task(
                task.id, now=h.clock.seconds(), fault_code=9001, fault_string="no",
                retry_at=None,
            )  # fmt: skip
        else:
            h.store.complete_task(task.id, now=h.clock.seconds())


def test_rate_max_in_flight_and_windows_pace_the_campaign(harness: ApiHarness) -> None:
    h = harness
    h.clock.advance(MONDAY_0159 - h.clock.seconds())
    _fleet(h, 30, down=(0,))
    token = h.token("operator")
    window = [{"start": "02:00", "end": "03:00"}]
    _campaign(h, token, rate=300, max_in_flight=8, window=window)
    assert h.call("GET", "/api/v1/campaign/1/preview/?limit=2", token=token).json["count"] == 30
    started = _post(h, token, "1/start/")
    assert started["state"] == "running" and started["progress"]["waiting"] == 30
    assert started["eta"] is not None
    assert _tick(h)["waiting"] == 30  # 01:59:01: the window is closed
    assert h.store.get_campaign(1).hold  # type: ignore[union-attr]
    counts = _tick(h, 59)  # 02:00:00: open, the bucket holds one token
    assert counts["waiting"] == 29
    counts = _tick(h)  # 5 a second at 300/min
    assert counts["waiting"] == 24
    counts = _tick(h)  # 8 in flight, the Down device aside: room for 3 more
    assert counts["pending"] == 9 and counts["waiting"] == 21
    assert _tick(h)["waiting"] == 21  # still full
    _finish(h)
    assert _tick(h)["waiting"] == 16
    # Every device gets its task once, in device order, linked to the campaign.
    listed = h.call("GET", "/api/v1/campaign/1/devices/?limit=100", token=token).json
    tasks = [r["task"] for r in listed["results"] if r["task"] is not None]
    assert len(tasks) == len(set(tasks)) == 14
    task = h.store.get_task(tasks[0])
    assert task is not None and task.campaign_id == 1 and task.actor == "campaign:1"
    # At 03:00 the window closes: pending tasks are held and nobody new is given one.
    h.clock.advance(3600 - 4)
    assert _tick(h)["waiting"] == 16
    held = h.store.get_campaign(1)
    assert held is not None and held.hold
    device = h.store.find_device_by_serial("CAMP0013")
    assert device is not None
    assert h.store.next_task(device.id, now=h.clock.seconds()) is None


def test_the_stop_rule_stops_it_and_cancels_what_did_not_start(harness: ApiHarness) -> None:
    h = harness
    _fleet(h, 40)
    token = h.token("operator")
    rule = {"max_failure_ratio": 0.05, "min_sample": 10}
    _campaign(h, token, rate=6000, max_in_flight=10, stop_rule=rule)
    _post(h, token, "1/start/")
    _tick(h)
    _tick(h)  # the bucket's one token, then 10 (max_in_flight)
    _finish(h, fail=2)
    counts = _tick(h)
    shown = h.call("GET", "/api/v1/campaign/1/", token=token).json
    assert shown["state"] == "stopped", shown
    assert "max_failure_ratio" in shown["reason"]
    assert shown["failures"] == {"9001": 2}
    assert counts["pending"] == 0 and counts["waiting"] == 30
    _post(h, token, "1/resume/", 409)
    events = h.store.device_events(0, h.store.last_history_id(), ["campaign_progress"], limit=99)
    assert {e.detail["outcome"] for e, _org in events} == {"done", "failed"}
    assert all(e.detail["campaign"] == 1 for e, _org in events)


def test_pause_resume_cancel_done_and_the_scope(harness: ApiHarness) -> None:
    h = harness
    _fleet(h, 3)
    other = h.store.ensure_organization("West")
    token = h.token("operator")
    scoped = h.token("operator", orgs=[other.id], name="west")
    _campaign(h, token)
    assert h.call("GET", "/api/v1/campaign/1/", token=scoped).status == 404
    assert h.call("GET", "/api/v1/campaign/", token=scoped).json["count"] == 0
    _post(h, token, "1/pause/", 409)
    _post(h, token, "1/start/")
    _post(h, token, "1/start/", 409)
    assert _post(h, token, "1/pause/")["held"] is True
    assert _tick(h)["waiting"] == 3  # paused: nothing given
    assert h.call("DELETE", "/api/v1/campaign/1/", token=token).status == 409
    _post(h, token, "1/resume/")
    _tick(h)
    _tick(h)
    _tick(h)
    _finish(h)
    _tick(h)
    done = h.call("GET", "/api/v1/campaign/1/", token=token).json
    assert done["state"] == "done" and done["progress"]["done"] == 3, done
    assert h.call("DELETE", "/api/v1/campaign/1/", token=token).status == 204
    # A scoped token's campaign covers its organizations' devices only.
    _campaign(h, scoped)
    started = _post(h, scoped, "2/start/")
    assert started["progress"]["total"] == 0
    _tick(h, campaign=2)
    assert h.call("GET", "/api/v1/campaign/2/", token=scoped).json["state"] == "done"
    _post(h, scoped, "2/cancel/", 409)


def test_a_campaign_over_picked_devices_reaches_those_alone(harness: ApiHarness) -> None:
    h = harness
    _fleet(h, 6)
    token = h.token("operator")
    picked = [d.id for d in h.store.devices_page(limit=6)[1]][1:4]
    _campaign(h, token, filter={"id": picked}, rate=600)
    preview = h.call("GET", "/api/v1/campaign/1/preview/", token=token).json
    assert [d["id"] for d in preview["results"]] == picked
    assert _post(h, token, "1/start/")["progress"]["waiting"] == 3
    assert _tick(h)["waiting"] == 2  # the bucket starts with one token
    assert _tick(h)["waiting"] == 0
    tasks = {d.id: h.store.tasks_for_device(d.id) for d in h.store.devices_page(limit=6)[1]}
    assert sorted(d for d, found in tasks.items() if found) == picked
