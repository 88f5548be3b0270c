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
        level = event.get("log_level")
        if level in self._quiet:
            return
        text = self._plain(event, level)
        if text is None:  # anything unusual: twisted.logger's own formatting, as it is
            text = classic_text(event, formatTime=self._time)
        if text:
            self._out.write(text)
            self._out.flush()

    def _plain(self, event: LogEvent, level: LogLevel | None) -> str | None:
        """The line of a plain event (a text format, a level, no failure, no legacy system):
        its format filled by str.format_map, which is what twisted.logger's Formatter does
        for such a format, in C. None for any other event, or a format only Twisted's own
        formatter reads (``{f()}`` calls)."""
        fmt = event.get("log_format")
        if (
            type(fmt) is not str
            or level is None
            or "log_failure" in event
            or "log_system" in event
            or "log_flattened" in event
        ):
            return None
        try:
            text = fmt.format_map(event)
        except Exception:
            return None
        if not text:
            return ""
        namespace = event.get("log_namespace", "-")
        stamp = self._time(event.get("log_time"))
        return f"{stamp} [{namespace}#{level.name}] {text.replace(chr(10), chr(10) + chr(9))}\n"
