"""Campaigns: one task over the devices a filter selected, paced, windowed and stopped by a
rule, whatever the restarts (the rows: :mod:`acs.store.campaigns`).

Every ``interval`` seconds the runner looks at each running or paused campaign:

- the **stop rule** first: more failed devices than ``max_failures``, or a failure ratio
  (failed / finished) over ``max_failure_ratio`` once ``min_sample`` devices finished, stops
  it (its tasks that did not start are cancelled); every device with an outcome: done;
- its **windows** (``start``-``end`` local times on some ``days`` in a ``timezone``; none:
  always open): outside them, or paused, its pending tasks are held (``Store.next_task``
  skips them, so a CPE informing at noon does not run a night campaign); when a window
  opens the held devices are woken again;
- inside a window, new devices get their task at ``rate`` per minute (a token bucket, at
  most one tick's worth at once) while fewer than ``max_in_flight`` devices that are not
  Down have an unfinished one. A Down device's task waits for its next Inform, inside a
  window, and does not count as in flight.

Each device gets its task in one transaction with being marked as given, so a restart
never gives it a second; the runner keeps no state that a restart would lose but the
bucket, which starts again with one token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from twisted.logger import Logger

from acs.clock import Clock
from acs.periodic import PeriodicService
from acs.store import DOWN, Store
from acs.store.models import Campaign, Task
from acs.tasks.engine import TaskEngine

log = Logger(namespace="acs.campaigns")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
_TIME = re.compile(TIME_PATTERN)
ETA_HORIZON_DAYS = 62  # an ETA further out than this (windows considered) is not given
MAX_ACTIVE = 20  # running or paused campaigns at once


def _minutes(text: str) -> int:
    return int(text[:2]) * 60 + int(text[3:])


ZONES = frozenset(available_timezones())


def zone(name: str) -> ZoneInfo | None:
    """The IANA time zone, or None when there is no such zone."""
    return ZoneInfo(name) if name in ZONES else None


def window_problem(value: Any) -> str | None:
    """What makes ``value`` no window ({"start": "HH:MM", "end": "HH:MM", "days": [...],
    "timezone": IANA name}, days and timezone optional), None when it is one."""
    if not isinstance(value, dict):
        return "A window is an object with start, end, days and timezone."
    unknown = sorted(set(value) - {"start", "end", "days", "timezone"})
    if unknown:
        return f"Unknown window field {str(unknown[0])[:40]!r}."
    for key in ("start", "end"):
        if not isinstance(value.get(key), str) or not _TIME.match(value[key]):
            return f"{key}: a local time HH:MM (00:00 to 23:59) is required."
    days = value.get("days", list(DAYS))
    if not isinstance(days, list) or not 0 < len(days) <= 7 or not all(d in DAYS for d in days):
        return f"days: a non-empty list of {', '.join(DAYS)}."
    name = value.get("timezone", "UTC")
    if not isinstance(name, str) or zone(name) is None:
        return "timezone: an IANA time zone name such as UTC or Europe/Berlin."
    return None


@dataclass(frozen=True)
class Window:
    """A daily opening: from ``start`` to ``end`` (minutes after local midnight; an end
    not after the start runs into the next day) on the days it starts on."""

    start: int
    end: int
    days: frozenset[int]  # 0 = Monday
    zone: ZoneInfo

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Window:
        """From a window ``window_problem`` passed."""
        found = zone(value.get("timezone", "UTC"))
        assert found is not None
        return cls(
            _minutes(value["start"]),
            _minutes(value["end"]),
            frozenset(DAYS.index(d) for d in value.get("days", DAYS)),
            found,
        )

    def is_open(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, self.zone)
        minute = local.hour * 60 + local.minute
        today = local.weekday() in self.days
        if self.start < self.end:
            return today and self.start <= minute < self.end
        yesterday = (local.weekday() - 1) % 7 in self.days
        return (today and minute >= self.start) or (yesterday and minute < self.end)

    def openings(self, since: float, days: int) -> list[tuple[float, float]]:
        """(start, end) epoch times of its openings that end after ``since``, over the
        next ``days`` local days."""
        first = datetime.fromtimestamp(since, self.zone).date() - timedelta(days=1)
        found = []
        for offset in range(days + 1):
            day = first + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            end_day = day if self.start < self.end else day + timedelta(days=1)
            span = (self._at(day, self.start), self._at(end_day, self.end))
            if span[1] > since:
                found.append(span)
        return found

    def _at(self, day: date, minute: int) -> float:
        return datetime.combine(day, time(minute // 60, minute % 60), self.zone).timestamp()


def windows_of(campaign: Campaign) -> list[Window]:
    return [Window.of(w) for w in campaign.windows]


def is_open(windows: Iterable[Window], now: float) -> bool:
    """Inside one of the windows (no windows: always)."""
    found = list(windows)
    return not found or any(w.is_open(now) for w in found)


def eta(windows: list[Window], now: float, work: float) -> float | None:
    """When ``work`` seconds of open time, from ``now``, are over: None past the horizon."""
    if not windows:
        return now + work
    spans = sorted(s for w in windows for s in w.openings(now, ETA_HORIZON_DAYS))
    left, at = work, now
    for start, end in spans:
        start = max(start, at)
        if end <= start:
            continue
        if end - start >= left:
            return start + left
        left -= end - start
        at = end
    return None


def stop_reason(rule: Mapping[str, Any], counts: Mapping[str, int]) -> str | None:
    """Why the stop rule stops a campaign with these progress counts, None if it does not."""
    failed = counts["failed"]
    finished = counts["done"] + failed
    most = rule.get("max_failures")
    if most is not None and failed > most:
        return f"{failed} devices failed, more than max_failures {most}."
    ratio = rule.get("max_failure_ratio")
    sample = rule.get("min_sample", 1)
    if ratio is not None and finished >= max(sample, 1) and failed / finished > ratio:
        return (
            f"{failed} of {finished} finished devices failed ({failed / finished:.1%}), "
            f"over max_failure_ratio {ratio}."
        )
    return None


def campaign_eta(campaign: Campaign, counts: Mapping[str, int], now: float) -> float | None:
    """When a running campaign will have given every device its task, at its rate and
    inside its windows (None when it is not running, or too far out)."""
    if campaign.state != "running":
        return None
    return eta(windows_of(campaign), now, counts["waiting"] * 60.0 / campaign.rate)


class CampaignRunner(PeriodicService):
    """Looks after the running and paused campaigns (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        tasks: TaskEngine,
        interval: float = 1.0,
        observe: Callable[[Campaign, str], object] | None = None,
    ) -> None:
        """``tasks``: the engine that queues the tasks and wakes the devices (connection
        requests). ``observe(campaign, state)``: told of each campaign that ended."""
        super().__init__(clock, interval, self.tick, store=store)
        self.setName("campaigns")
        self.store = store
        self._tasks = tasks
        self._observe = observe
        self._tokens: dict[int, tuple[float, float]] = {}  # campaign -> (tokens, at)

    def tick(self) -> None:
        now = float(self.clock.seconds())
        try:
            campaigns = self.store.active_campaigns()
        except Exception:
            log.failure("campaigns: cannot read the campaigns")
            return
        for campaign in campaigns:
            try:
                self.step(campaign, now)
            except Exception:
                log.failure("campaigns: campaign {id} failed a round", id=campaign.id)
        active = {c.id for c in campaigns}
        for gone in set(self._tokens) - active:
            del self._tokens[gone]

    def step(self, campaign: Campaign, now: float) -> None:
        counts, _ = self.store.campaign_progress(campaign.id)
        reason = stop_reason(campaign.stop_rule, counts)
        if reason is not None:
            self._end(campaign, "stopped", now, reason)
            return
        if counts["waiting"] + counts["pending"] + counts["in_progress"] == 0:
            self._end(campaign, "done", now)
            return
        if campaign.state != "running":
            return
        inside = is_open(windows_of(campaign), now)
        if self.store.hold_campaign(campaign.id, not inside) and inside:
            for device_id in self.store.campaign_pending_devices(
                campaign.id, campaign.max_in_flight
            ):
                self._tasks.wake(device_id)
        if not inside:
            self._tokens.pop(campaign.id, None)
            return
        self._give(campaign, counts["waiting"], now)

    def _give(self, campaign: Campaign, waiting: int, now: float) -> None:
        """Tasks for the next devices, as far as the bucket and max_in_flight allow."""
        per_second = campaign.rate / 60.0
        burst = max(1.0, per_second * self.interval)
        tokens, at = self._tokens.get(campaign.id, (1.0, now))
        tokens = min(burst, tokens + per_second * max(0.0, now - at))
        room = campaign.max_in_flight - self.store.campaign_in_flight(campaign.id)
        count = max(0, min(int(tokens), room, waiting))
        for device_id in self.store.campaign_waiting(campaign.id, count) if count else ():
            task = self.store.queue_campaign_task(
                campaign.id, device_id, partial(self._queue, campaign, device_id, now)
            )
            if task is None:
                continue
            tokens -= 1
            device = self.store.get_device(device_id)
            if device is not None and device.status != DOWN:
                self._tasks.wake(device_id)
        self._tokens[campaign.id] = (tokens, now)

    def _queue(self, campaign: Campaign, device_id: int, now: float) -> Task:
        return self._tasks.queue(
            device_id,
            campaign.kind,
            campaign.args,
            actor=f"campaign:{campaign.id}",
            wake=False,
            now=now,
            campaign_id=campaign.id,
        )

    def _end(self, campaign: Campaign, state: str, now: float, reason: str | None = None) -> None:
        self.store.move_campaign(
            campaign.id, ("running", "paused"), state, now=now, actor="acs", reason=reason
        )
        log.info(
            "campaign {id} {state}{why}",
            id=campaign.id,
            state=state,
            why=f": {reason}" if reason else "",
        )
        self._tokens.pop(campaign.id, None)
        if self._observe is not None:
            self._observe(campaign, state)
