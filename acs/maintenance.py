"""Storage upkeep every few seconds: retention, the full-storage probe, WAL checkpoints.

Retention (``[retention]``): one history row per CWMP session, debug transcripts and
finished tasks would otherwise grow forever (300 CPEs informing every 5 s write ~5 million
history rows a day). Every ``interval`` seconds one tick deletes, each in its own short
transaction and each bounded:

- history rows older than ``history_days`` (at most ``HISTORY_BATCH``, oldest first);
- history beyond a device's ``history_per_device`` newest rows (``CAP_DEVICES`` devices
  checked per tick in rotation, at most ``HISTORY_BATCH`` rows);
- debug transcripts older than ``transcript_days`` (``TRANSCRIPT_BATCH``: up to 1 MiB each);
- finished tasks older than ``finished_task_days`` (``TASK_BATCH``); pending and running
  tasks are never pruned (see ``Store.prune_finished_tasks`` for the finished ones kept).

At a 5 s interval that is up to 12,000 history rows a minute by age, three times what the
fleet above writes, so a backlog shrinks; a tick costs a few milliseconds (~20 ms at worst,
with five full-size transcripts to delete). Freed pages are reused by later writes (the file
does not shrink).

With several processes on the database, retention runs in one of them at a time, the one
holding the ``retention`` lease (``share_retention``, acs.periodic.JobLease): the batches
are the same rows for all, so a second process would only contend for them.

Then, in every process (each has its own connection, WAL view and health), a passive WAL
checkpoint, so the WAL is cut back (``JOURNAL_SIZE_LIMIT``) even when
the automatic checkpoint could not finish. Last, while the database or the files directory
counts as full (a write was refused for lack of space), a probe with a small write, so
``/healthz`` recovers once an operator has freed space even if no other write comes (a
pruning batch that commits is such a write too).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from acs.clock import Clock
from acs.config import RetentionConfig
from acs.files import FileStorage
from acs.periodic import JobLease, PeriodicService, lease_seconds
from acs.store import Store
from acs.store.health import DATABASE, FILES

DAY = 86400.0
INTERVAL = 5.0
HISTORY_BATCH = 1000
# Deleting is paid per byte (SQLite zeroes deleted content: secure_delete): five transcripts
# of the full 1 MiB take ~20 ms; typical ones of a few KB well under 1 ms.
TRANSCRIPT_BATCH = 5
TASK_BATCH = 500
CAP_DEVICES = 10


class StorageMaintenance(PeriodicService):
    """Every ``interval`` s: one bounded retention batch of each kind, probes of full
    storage, a WAL checkpoint. Failures are logged and tried again at the next tick."""

    log = Logger()

    def __init__(
        self,
        store: Store,
        files: FileStorage,
        reactor: Clock,
        retention: RetentionConfig,
        *,
        interval: float = INTERVAL,
    ) -> None:
        """``reactor``: the reactor's clock (a task.Clock in tests)."""
        super().__init__(reactor, interval, self.tick, run_at_start=False, store=store)
        self.setName("storage_maintenance")
        self._store = store
        self._files = files
        self._reactor = reactor
        self._retention = retention
        self._task_position: tuple[float, int] | None = None
        self._cap_after = 0
        self._retention_lease: JobLease | None = None

    def share_retention(self, store: Store, holder: str) -> None:
        """Prune only while ``holder`` (this process) holds the ``retention`` lease; the
        checkpoint and the probes stay this process's own."""
        self._retention_lease = JobLease(store, holder, "retention", lease_seconds(self.interval))

    def tick(self) -> dict[str, int]:
        """One round; returns how many rows of each kind went (for logs and tests)."""
        now = float(self._reactor.seconds())
        lease = self._retention_lease
        deleted = dict.fromkeys(("history", "history_cap", "transcripts", "tasks"), 0)
        if lease is None or lease.held(now):
            deleted = self._prune(now)
        try:
            self._store.checkpoint()
        except Exception:
            self.log.failure("storage maintenance: WAL checkpoint failed")
        self._probe()
        return deleted

    def _prune(self, now: float) -> dict[str, int]:
        """One bounded batch of each kind of retention: how many rows went."""
        keep = self._retention
        deleted = {
            "history": self._run(
                "history",
                lambda: self._store.prune_history(
                    before=now - keep.history_days * DAY, limit=HISTORY_BATCH
                ),
            ),
            "history_cap": self._run("history_cap", self._cap),
            "transcripts": self._run(
                "transcripts",
                lambda: self._store.prune_transcripts(
                    before=now - keep.transcript_days * DAY, limit=TRANSCRIPT_BATCH
                ),
            ),
            "tasks": self._run("tasks", lambda: self._tasks(now - keep.finished_task_days * DAY)),
        }
        if any(deleted.values()):
            self.log.info(
                "retention: deleted {history} history rows by age, {history_cap} over the"
                " per-device cap, {transcripts} transcripts, {tasks} finished tasks",
                **deleted,
            )
        return deleted

    def _run(self, what: str, step: Any) -> int:
        try:
            return int(step())
        except Exception:
            self.log.failure("retention: pruning {what} failed", what=what)
            return 0

    def _cap(self) -> int:
        deleted, self._cap_after = self._store.cap_device_history(
            after_device=self._cap_after,
            devices=CAP_DEVICES,
            keep=self._retention.history_per_device,
            limit=HISTORY_BATCH,
        )
        return deleted

    def _tasks(self, before: float) -> int:
        deleted, self._task_position = self._store.prune_finished_tasks(
            before=before, limit=TASK_BATCH, after=self._task_position
        )
        return deleted

    def _probe(self) -> None:
        health = self._store.health
        probes = ((DATABASE, self._store.probe_write), (FILES, self._files.probe_write))
        for name, probe in probes:
            if not health.is_full(name):
                continue
            try:
                if probe():
                    self.log.info("storage: the {name} takes writes again", name=name)
            except Exception:
                self.log.failure("storage: probing the {name} failed", name=name)
