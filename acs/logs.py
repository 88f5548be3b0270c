"""The appliance's log: twisted.logger's classic text lines (``<time> [<namespace>#<level>]
<text>``) on a stream, stdout under ``acs serve`` (the journal, under systemd).

Every CWMP session logs two info lines, so at a thousand sessions a second the observer
is on the hot path: this one drops events below its level before anything is formatted
(one set lookup instead of a filtering observer's predicate chain) and formats the
timestamp once a second, not once a line; the lines are exactly textFileLogObserver's.
"""

from __future__ import annotations

from typing import TextIO

from twisted.logger import LogEvent, LogLevel, formatTime
from twisted.logger import formatEventAsClassicLogText as classic_text


class LineLogObserver:
    """Writes ``level`` and up to ``out``, one flushed line per event (an observer is any
    callable taking the event, as twisted.logger's publisher requires)."""

    def __init__(self, out: TextIO, *, level: LogLevel = LogLevel.info) -> None:
        self._out = out
        self._quiet = frozenset(lvl for lvl in LogLevel.iterconstants() if lvl < level)
        self._second: int | None = None
        self._stamp = "-"

    def _time(self, when: float | None) -> str:
        # The format has whole seconds: every time within one second formats alike.
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            self._second, self._stamp = second, formatTime(second)
        return self._stamp

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level") in self._quiet:
            return
        text = classic_text(event, formatTime=self._time)
        if text:
            self._out.write(text)
            self._out.flush()
