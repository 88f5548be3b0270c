"""Guards around authentication shared by the CWMP and API listeners, pure logic.

``NonceLedger`` makes a Digest ``Authorization`` header single-use: each (nonce, nc) is
accepted once and nc must grow, so a captured header cannot be replayed. ``AuthThrottle``
backs off sources that keep failing authentication and turns the log line per failure into
one summary per window. Both hold bounded memory whatever a client sends, and take the time
from the caller (tests pass a ``Clock``'s seconds).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AuthThrottle", "NonceLedger"]


class NonceLedger:
    """The highest ``nc`` accepted per Digest nonce, for nonces younger than their TTL.

    ``accept(nonce, issued, nc)`` is True once per (nonce, nc) and only for a growing nc.
    Beyond ``capacity`` nonces the oldest entries are forgotten and every nonce issued at or
    before the newest forgotten one counts as stale (the CPE gets a fresh challenge: one
    more round trip, never a replay).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._issued: dict[str, float] = {}
        self._floor = float("-inf")

    def accept(self, nonce: str, issued: float, nc: int) -> bool:
        if issued <= self._floor:
            return False
        last = self._seen.get(nonce)
        if last is not None and nc <= last:
            return False
        self._seen[nonce] = nc
        self._issued[nonce] = issued
        self._seen.move_to_end(nonce)
        while len(self._seen) > self.capacity:
            old, _ = self._seen.popitem(last=False)
            self._floor = max(self._floor, self._issued.pop(old))
        return True

    def expire(self, before: float) -> None:
        """Forget nonces issued before ``before`` (they are refused as stale anyway)."""
        for nonce in [n for n, t in self._issued.items() if t < before]:
            del self._seen[nonce]
            del self._issued[nonce]

    def __len__(self) -> int:
        return len(self._seen)


@dataclass
class _Source:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class AuthThrottle:
    """Per-source backoff after repeated authentication failures.

    The first ``free`` failures of a source cost nothing; each further one blocks the source
    for ``base`` seconds, doubling up to ``ceiling``. A success or ``forget_after`` quiet
    seconds reset the source. At most ``capacity`` sources are tracked (the least recently
    failing are dropped first), so a spoofed-address flood costs bounded memory.

    Logging: ``log(text)`` gets the first failure of each window as it happens and, at the
    first failure after a window ends, one line summing up that window's failures.

    Thread-safe: the API checks tokens in units of work, on PostgreSQL in the store's pool.
    """

    def __init__(
        self,
        what: str,
        log: Callable[[str], None],
        *,
        free: int = 5,
        base: float = 1.0,
        ceiling: float = 300.0,
        forget_after: float = 900.0,
        window: float = 60.0,
        capacity: int = 10_000,
    ) -> None:
        self.what = what
        self._log = log
        self.free = free
        self.base = base
        self.ceiling = ceiling
        self.forget_after = forget_after
        self.window = window
        self.capacity = capacity
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.failures_total = 0
        self.refused_total = 0
        self._window_start: float | None = None
        self._window_failures = 0
        self._window_sources: dict[str, int] = {}
        self._lock = threading.Lock()

    def retry_after(self, source: str | None, now: float) -> int | None:
        """Seconds the source must wait before trying again, or None if it may try now.

        A refused attempt is counted (``refused_total``) but does not lengthen the block.
        """
        with self._lock:
            entry = self._sources.get(source or "")
            if entry is None or entry.blocked_until <= now:
                return None
            self.refused_total += 1
            return max(1, int(entry.blocked_until - now + 0.999))

    def failed(self, source: str | None, now: float, detail: str) -> None:
        with self._lock:
            self._failed(source or "", now, detail)

    def _failed(self, key: str, now: float, detail: str) -> None:
        self.failures_total += 1
        entry = self._sources.pop(key, None)
        if entry is None or now - entry.last > self.forget_after:
            entry = _Source()
        entry.failures += 1
        entry.last = now
        over = entry.failures - self.free
        if over > 0:
            entry.blocked_until = now + min(self.ceiling, self.base * 2 ** min(over - 1, 30))
        self._sources[key] = entry
        while len(self._sources) > self.capacity:
            self._sources.popitem(last=False)
        self._note(key, now, detail)

    def succeeded(self, source: str | None) -> None:
        with self._lock:
            self._sources.pop(source or "", None)

    def _note(self, source: str, now: float, detail: str) -> None:
        if self._window_start is not None and now - self._window_start >= self.window:
            extra = self._window_failures - 1
            if extra > 0:
                top = sorted(self._window_sources.items(), key=lambda kv: -kv[1])[:3]
                self._log(
                    f"{self.what}: {self._window_failures} authentication failures from "
                    f"{len(self._window_sources)} source(s) in {now - self._window_start:.0f}s "
                    "(most: " + ", ".join(f"{s or '?'} x{n}" for s, n in top) + ")"
                )
            self._window_start = None
        if self._window_start is None:
            self._window_start = now
            self._window_failures = 0
            self._window_sources = {}
            self._log(f"{self.what}: authentication failed: {detail} (further failures summed)")
        self._window_failures += 1
        if source in self._window_sources or len(self._window_sources) < 1000:
            self._window_sources[source] = self._window_sources.get(source, 0) + 1
