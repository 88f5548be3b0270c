"""acs.logs.LineLogObserver: exactly textFileLogObserver's lines, info and up."""

from __future__ import annotations

import io
from typing import Any

import pytest
from twisted.logger import LogLevel, textFileLogObserver
from twisted.python.failure import Failure

import acs.logs
from acs.logs import LineLogObserver

T = 1_764_000_000.25


def events() -> list[dict[str, Any]]:
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    base = {"log_namespace": "acs.cwmp_http", "log_level": LogLevel.info}
    return [
        {**base, "log_format": "Session done device_id={d}", "d": 7, "log_time": T},
        {**base, "log_format": "same second", "log_time": T + 0.7},
        {**base, "log_format": "next second", "log_time": T + 1.0},
        {**base, "log_format": "two\nlines", "log_time": T + 3600},
        {**base, "log_format": "no time"},
        {"log_format": "legacy, no level", "log_system": "-", "log_time": T},
        {**base, "log_level": LogLevel.warn, "log_format": "{x!r}", "x": "q", "log_time": T},
        {**base, "log_level": LogLevel.critical, "log_format": "bad {x", "log_time": T},
        {**base, "log_level": LogLevel.error, "log_format": "failed", "log_failure": failure},
        {**base, "log_time": T},  # nothing to say: no line
        {**base, "log_format": "", "log_time": T},
        {**base, "log_format": "{when()} called", "when": lambda: "now", "log_time": T},
        {**base, "log_format": "{missing}", "log_time": T},
        {**base, "log_format": "{d[k]} {d[k]!r:>6}", "d": {"k": "v"}, "log_time": T},
        {"log_format": "no namespace", "log_level": LogLevel.info, "log_time": T},
        {**base, "log_format": b"bytes {d}", "d": 1, "log_time": T},
    ]


def test_lines_are_twisted_text_observer_lines() -> None:
    ours, theirs = io.StringIO(), io.StringIO()
    line, reference = LineLogObserver(ours), textFileLogObserver(theirs)
    for event in events():
        line(event)
        reference(event)
    assert ours.getvalue() == theirs.getvalue()
    assert ours.getvalue().count("\n") >= 14
    assert "[acs.cwmp_http#info] Session done device_id=7\n" in ours.getvalue()


def test_events_below_the_level_are_dropped_unformatted() -> None:
    out = io.StringIO()
    observer = LineLogObserver(out)

    class Unformattable:
        def __format__(self, spec: str) -> str:
            raise AssertionError("a dropped event was formatted")

    observer({"log_level": LogLevel.debug, "log_format": "{x}", "x": Unformattable()})
    assert out.getvalue() == ""
    LineLogObserver(out, level=LogLevel.debug)(
        {"log_level": LogLevel.debug, "log_format": "shown", "log_time": T}
    )
    assert out.getvalue().endswith("#debug] shown\n")
    LineLogObserver(out, level=LogLevel.warn)({"log_level": LogLevel.info, "log_format": "x"})
    assert out.getvalue().count("\n") == 1


def test_plain_events_skip_twisteds_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acs.logs, "classic_text", lambda event, formatTime: "slow path\n")
    out = io.StringIO()
    observer = LineLogObserver(out)
    observer({"log_level": LogLevel.info, "log_format": "Inform {s}", "s": "SN1", "log_time": T})
    observer({"log_level": LogLevel.info, "log_format": "{f()}", "f": str, "log_time": T})
    first, second = out.getvalue().splitlines()
    assert first.endswith(" [-#info] Inform SN1") and second == "slow path"
