"""The overview's time series: every minute, what the appliance counted since the previous
sample, kept for a day in the store (``series_samples``) for the dashboard's charts
(``GET /api/v1/overview/``'s ``series``).

A sample holds, over its span (``seconds``, normally the interval):

- CWMP sessions ended, by outcome (``acs_cwmp_sessions``);
- new sessions refused with 503 at the session cap (``acs_cwmp_busy_rejections``) and
  writes refused for full storage (``acs_storage_writes_refused``, each answered 503 by
  its listener);
- CPE faults answering the ACS's RPCs (``acs_cwmp_faults``);
- tasks that ended, by state (``acs_tasks_finished``), and the pending and in-progress
  tasks at the sample's time (a gauge read from the store).

The counters are the in-process ones of :mod:`acs.metrics` (and the plain integers the CWMP
resource and the store's health keep); a sample is their difference from the previous
sample. The first reading is taken when the service starts, so the first sample after a
(re)start covers only the time since then, never what an earlier process counted nor a
negative difference (a counter that went down counts as restarted from 0, as Prometheus
takes it). While the database counts as full no sample is written (it would be one more
refused write): the next one spans the whole time. Each sample prunes the rows older than
``retention`` and beyond the newest ``retention / interval``.

Per process: with several ACS processes on one database each would write its own rows, to
be summed per minute by the reader (one process today).
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter
from twisted.logger import Logger

from acs.clock import Clock
from acs.metrics import Metrics
from acs.periodic import PeriodicService
from acs.store import Store
from acs.store.health import DATABASE
from acs.store.models import FINISHED_STATES, SESSION_OUTCOMES, SeriesSample

INTERVAL = 60.0
RETENTION = 86400.0
# The counters a sample takes the difference of (the open tasks are read as they are).
DELTAS = (
    *(f"sessions_{outcome}" for outcome in SESSION_OUTCOMES),
    "rejected_session_cap",
    "rejected_storage_full",
    "faults",
    *(f"tasks_{state}" for state in FINISHED_STATES),
)


class CwmpCounts(Protocol):
    """What the sampler reads of the CWMP resource."""

    busy_rejections: int


def by_label(counter: Counter, label: str) -> dict[str, int]:
    """A labelled counter's totals summed by one of its labels."""
    totals: dict[str, int] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                value = sample.labels[label]
                totals[value] = totals.get(value, 0) + round(sample.value)
    return totals


def delta(current: int, previous: int) -> int:
    """What a counter counted since ``previous``: a counter below it restarted from 0."""
    return current - previous if current >= previous else current


class SeriesSampler(PeriodicService):
    """Every ``interval`` s: one row of ``series_samples`` (see the module docstring).
    Failures are logged; what was not written rolls into the next sample."""

    log = Logger()

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        reactor: Clock,
        cwmp: CwmpCounts,
        *,
        interval: float = INTERVAL,
        retention: float = RETENTION,
    ) -> None:
        """``reactor``: the reactor's clock (a task.Clock in tests)."""
        super().__init__(reactor, interval, self.tick, run_at_start=False, store=store)
        if retention < interval:
            raise ValueError("retention must be at least one interval")
        self.setName("overview_series")
        self._store = store
        self._metrics = metrics
        self._reactor = reactor
        self._cwmp = cwmp
        self.retention = retention
        self.max_rows = int(retention // interval)
        self._previous: dict[str, int] | None = None
        self._previous_at = 0.0

    def startService(self) -> None:
        self._previous = self.totals()
        self._previous_at = float(self._reactor.seconds())
        super().startService()

    def totals(self) -> dict[str, int]:
        """Every counter of DELTAS as counted since the process started."""
        m = self._metrics
        totals = dict.fromkeys(DELTAS, 0)
        for outcome, n in by_label(m.sessions, "outcome").items():
            name = f"sessions_{outcome}"
            totals[name if name in totals else "sessions_aborted"] += n
        for state, n in by_label(m.tasks, "state").items():
            name = f"tasks_{state}"
            if name in totals:
                totals[name] += n
        totals["faults"] = sum(by_label(m.faults, "code").values())
        totals["rejected_session_cap"] = int(self._cwmp.busy_rejections)
        totals["rejected_storage_full"] = sum(self._store.health.refused.values())
        return totals

    def tick(self) -> SeriesSample | None:
        """Write one sample; returns it (None when nothing was written)."""
        previous = self._previous
        if previous is None:  # not started: nothing to take a difference from
            return None
        if self._store.health.is_full(DATABASE):
            return None
        now = float(self._reactor.seconds())
        try:
            current = self.totals()
            counts = {name: delta(current[name], previous[name]) for name in DELTAS}
            counts.update(
                (f"tasks_{state}", n) for state, n in self._store.count_open_tasks().items()
            )
            sample = SeriesSample(at=now, seconds=max(0.0, now - self._previous_at), counts=counts)
            self._store.add_series_sample(
                sample, keep_after=now - self.retention, keep=self.max_rows
            )
        except Exception:
            self.log.failure("overview series: writing a sample failed")
            return None
        self._previous, self._previous_at = current, now
        return sample
