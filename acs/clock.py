"""The time every service runs on, typed.

Services take the reactor for time (tests pass a ``twisted.internet.task.Clock``), but
Twisted declares ``IReactorTime`` as a zope Interface, whose methods mypy cannot check
without a plugin. :class:`Clock` is the part of it this project uses, as a Protocol both
the reactor and ``task.Clock`` satisfy; :class:`DelayedCall` is what ``callLater`` returns.
And :func:`iso`, the one way a time is written out (API, events, exports).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ``2024-01-15T09:30:15Z`` (UTC, second precision)."""
    if ts is None:
        return None
    t = datetime.fromtimestamp(int(ts), UTC)
    # Not strftime("%Y"): it writes year 324 as "324", which is not RFC 3339.
    return f"{t.year:04d}-{t:%m-%dT%H:%M:%S}Z"


class DelayedCall(Protocol):
    """``twisted.internet.interfaces.IDelayedCall``, as far as it is used here."""

    def cancel(self) -> None: ...

    def active(self) -> bool: ...

    def reset(self, secondsFromNow: float) -> None: ...


class Clock(Protocol):
    """``twisted.internet.interfaces.IReactorTime``, as far as it is used here."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall: ...


# The whole reactor (TCP, threads, time), for code that connects or listens. Twisted types
# it as a set of zope Interfaces (IReactorTCP, IReactorThreads, ...) that mypy cannot match
# without a plugin, so it stays unchecked, but named: everything else takes a Clock.
Reactor = Any

if TYPE_CHECKING:  # mypy proves that the test clock is a Clock
    from twisted.internet.task import Clock as _TestClock

    _checked: Clock = _TestClock()
