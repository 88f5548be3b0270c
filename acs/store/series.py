"""The overview's time series (``series_samples``): one row per sample of the counters the
process keeps (``acs.series`` takes them every minute), at most a bounded number of rows.

Each row holds what one process counted over its span; with several ACS processes on one
database there would be a row per process and sample, and a reader would sum those of a
minute (one process today).
"""

from __future__ import annotations

from acs.store.checks import epoch
from acs.store.db import Database
from acs.store.models import OPEN_STATES, SERIES_COUNTERS, SeriesSample

_COLUMNS = ", ".join(SERIES_COUNTERS)
_GAUGES = frozenset(f"tasks_{state}" for state in OPEN_STATES)
_BUCKETED = ", ".join(
    name if name in _GAUGES else f"sum({name}) AS {name}" for name in SERIES_COUNTERS
)


class Series(Database):
    """The ``series_samples`` table (SQLite)."""

    def add_series_sample(self, sample: SeriesSample, *, keep_after: float, keep: int) -> int:
        """Store ``sample``, then delete the rows older than ``keep_after`` and those beyond
        the newest ``keep`` (a crash loop writes a row per start): the rows deleted."""
        at = epoch("at", sample.at)
        cutoff = epoch("keep_after", keep_after)
        if type(keep) is not int or keep < 1:
            raise ValueError("keep must be a positive integer")
        unknown = set(sample.counts) - set(SERIES_COUNTERS)
        if unknown:
            raise ValueError(f"unknown series counter(s): {', '.join(sorted(unknown))}")
        values = [max(0, int(sample.counts.get(name, 0))) for name in SERIES_COUNTERS]
        with self.transaction():
            self._insert(
                "series_samples", f"at, seconds, {_COLUMNS}", [at, float(sample.seconds), *values]
            )
            deleted = self._conn.execute(
                "DELETE FROM series_samples WHERE at < ?", (cutoff,)
            ).rowcount
            deleted += self._conn.execute(
                "DELETE FROM series_samples WHERE id <= (SELECT id FROM series_samples"
                " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (keep,),
            ).rowcount
        return int(deleted)

    def series_samples(
        self, since: float, until: float | None = None, *, step: float | None = None
    ) -> list[SeriesSample]:
        """The samples taken from ``since`` to ``until`` (None: any time after), oldest
        first. With ``step``: one per ``step`` seconds since the epoch that holds any (the
        buckets stay put as time passes), its counters summed over the samples in it, its
        gauges (``tasks_pending``, ``tasks_in_progress``) and ``at`` those of its last one."""
        params: list[float] = [epoch("since", since)]
        where = "at >= ?"
        if until is not None:
            where += " AND at <= ?"
            params.append(epoch("until", until))
        if step is None:
            sql = (
                f"SELECT at, seconds, {_COLUMNS} FROM series_samples WHERE {where} ORDER BY at, id"
            )
        else:
            if epoch("step", step) <= 0:
                raise ValueError("step must be > 0")
            # The one max() makes SQLite take the bare (gauge) columns from the row holding it.
            sql = (
                f"SELECT max(at) AS at, sum(seconds) AS seconds, {_BUCKETED} FROM series_samples"
                f" WHERE {where} GROUP BY CAST(at / ? AS INTEGER) ORDER BY 1"
            )
            params.append(float(step))
        return [
            SeriesSample(
                at=float(r["at"]),
                seconds=float(r["seconds"]),
                counts={name: int(r[name]) for name in SERIES_COUNTERS},
            )
            for r in self._all(sql, params)
        ]
