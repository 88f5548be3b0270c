"""The transfer watch: fails transfer tasks (completion TRANSFER) whose TransferComplete never
came, on a timer, for devices that went quiet too (`TaskEngine.check_transfers`).
"""

from __future__ import annotations

from twisted.logger import Logger

from acs.periodic import PeriodicService
from acs.tasks.engine import TaskEngine

log = Logger(namespace="acs.tasks")


class TransferWatch(PeriodicService):
    """Fails transfers whose TransferComplete never came, even for devices that went quiet
    (the Inform-time check only covers devices that still talk): every `interval` seconds."""

    def __init__(self, engine: TaskEngine, *, interval: float = 60.0) -> None:
        super().__init__(
            engine.reactor, interval, self.check, run_at_start=False, store=engine.store
        )
        self.setName("transfer_watch")
        self.engine = engine

    def check(self) -> list[int]:
        """Fail every overdue transfer now; returns their task ids."""
        try:
            with self.engine.store.transaction():
                return self.engine.check_transfers()
        except Exception:
            # A locked database must not stop later checks.
            log.failure("transfer watch: cannot check overdue transfers")
            return []
