"""Leases (``leases``): which process runs a cluster-wide job, until when.

A periodic job that must run once however many ACS processes share the database (the
liveness sweep, the scheduler, campaign pacing, ...) runs only in the process holding its
lease. The holder renews it at every run; a holder that stops (killed, cut off) stops
renewing, and once the lease has expired the next process to ask takes it over. Times are
the callers' clocks: processes on several hosts need synchronised clocks (NTP), and a
lease's length should dwarf their skew.
"""

from __future__ import annotations

from acs.store.checks import bounded_text, epoch
from acs.store.db import Database

MAX_NAME = 100
MAX_HOLDER = 200


class Leases(Database):
    """The ``leases`` table (SQLite)."""

    def take_lease(
        self,
        name: str,
        holder: str,
        *,
        now: float,
        seconds: float,
        replaces: str | None = None,
    ) -> bool:
        """Take or renew lease ``name`` for ``holder`` until ``now + seconds``: True when
        ``holder`` has it now (it was free, expired, already its own, or ``replaces``'s: a
        holder known to be gone), False when another holder's lease still runs (nothing
        changes then)."""
        name, holder = (
            bounded_text("name", name, MAX_NAME),
            bounded_text("holder", holder, MAX_HOLDER),
        )
        now_f = epoch("now", now)
        if epoch("seconds", seconds) <= 0:
            raise ValueError("seconds must be > 0")
        # A renewal rewrites its row in place: it succeeds on a full disk too.
        with self.transaction(proves_room=False):
            row = self._one(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires = excluded.expires "
                "WHERE leases.holder IN (excluded.holder, ?) OR leases.expires <= ? "
                "RETURNING holder",
                (name, holder, now_f + seconds, replaces or holder, now_f),
            )
        return row is not None

    def drop_leases(self, holder: str) -> int:
        """Give every lease of ``holder`` up (a clean stop: the other processes need not
        wait for them to expire); how many it held."""
        with self.transaction():
            gone = self._conn.execute("DELETE FROM leases WHERE holder = ?", (holder,)).rowcount
        return int(gone)

    def lease_holder(self, name: str, *, now: float) -> str | None:
        """Who holds lease ``name`` at ``now`` (None: nobody, or it expired)."""
        row = self._one(
            "SELECT holder FROM leases WHERE name = ? AND expires > ?", (name, epoch("now", now))
        )
        return None if row is None else str(row["holder"])
