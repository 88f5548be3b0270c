"""Task arguments (acs/tasks/args.py): what a kind's validator accepts is what its declared
JSON Schema (published as its TaskRequest<Kind> component) says.

Every argument of every kind offered through the API is probed with the same values through
``validate_args`` and through the schema (tests/schemacheck.py), and each must accept exactly
the same ones; so are the items of the list arguments. The two rules no schema states (a
name given twice in one set_parameter_values or add_object; a value that does not suit the
type given with it) are the only disagreements allowed, and are checked to be refused.
"""

from __future__ import annotations

from typing import Any

import pytest
from schemacheck import schema_errors

from acs.cwmp.values import type_problem
from acs.tasks import KINDS, validate_args
from api.device_tasks import API_KINDS

PATHS: list[Any] = [
    "Device.", "Device.X", "Device.X.", "Device.X.1.", "Device.X.[home].", "Device.X.[a.b].",
    "InternetGatewayDevice.LANDevice.1.Hosts.", "Device..X", "Device.X Y", "1Device.",
    "Device.X\\n", "Device.X\n", "Device.Ü", "_Private.X", "Device." + "x" * 249,
    "Device." + "x" * 250, "",
]  # fmt: skip
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 6, 7, 60, 60.0, 1.5, 86400, 86401, "", "x", "60", "\x00",
    [], {}, ["Device."], ["Device.", 5], ["Device."] * 1024, ["Device."] * 1025, "a" * 32,
    "a" * 33, "ké", "k\x7f", ["Subscriber"], [""], ["a" * 64], ["a" * 65], ["é"], ["x"] * 17,
    3, 4, 64, 65, 100, 101, 65535, 65536, 1000000000, 1000000001, "127.0.0.1", "a b",
    "http://127.0.0.1/file", "https://[::1]:8080/x", "ftp://127.0.0.1/", "http://a b",
    "http://" + "x" * 250, "ip_ping", "trace_route", "download", "upload", *PATHS,
]  # fmt: skip
# Kinds whose arguments take other shapes than their example's: more starting points.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "diagnostics": [
        {"test": "trace_route", "host": "example.net", "count": 3, "max_hop_count": 30},
        {"test": "download", "url": "http://127.0.0.1/file"},
        {"test": "upload", "url": "http://127.0.0.1/up", "test_file_length": 1000},
        {"test": "ip_ping", "host": "h", "count": 100, "timeout": 60000, "dscp": 63},
    ]
}
ITEMS: list[Any] = [
    {"name": "Device.X.Y", "value": "1"},
    {"name": "Device.X.Y", "value": 1},
    {"name": "Device.X.Y", "value": 1.0},
    {"name": "Device.X.Y", "value": 1.5},
    {"name": "Device.X.Y", "value": True},
    {"name": "Device.X.Y", "value": None},
    {"name": "Device.X.Y"},
    {"name": "Device.X.", "value": "1"},
    {"name": "Device.X.Y", "value": "1", "type": "xsd:unsignedInt"},
    {"name": "Device.X.Y", "value": "1", "type": "unsignedInt"},
    {"name": "Device.X.Y", "value": "-1", "type": "xsd:unsignedInt"},
    {"name": "Device.X.Y", "value": "1", "type": "xsd:float"},
    {"name": "Device.X.Y", "value": "1", "type": None},
    {"name": "Device.X.Y", "value": "x" * 65536},
    {"name": "Device.X.Y", "value": "1", "extra": 1},
    {"name": "Device.X.Y", "notification": 2},
    {"name": "Device.X.", "notification": 6},
    {"name": "Device.X.Y", "notification": 7},
    {"name": "Device.X.Y", "notification": 1.0},
    {"name": "Device.X.Y", "notification": None},
    {"name": "Device.X.Y", "notification": None, "access_list": []},
    {"name": "Device.X.Y", "notification": None, "access_list": None},
    {"name": "Device.X.Y", "access_list": ["Subscriber"]},
    {"name": "Device.X.Y", "access_list": ["Sub\x00"]},
    {"name": "Device.X.Y", "access_list": ["x"] * 17},
    {"name": 5, "value": "1"},
    "Device.X.Y",
    None,
]


W = {"window_start": 0, "window_end": 60}
WINDOWS: list[Any] = [
    W, {**W, "window_end": 0}, {"window_start": 60, "window_end": 59}, {"window_start": 0},
    {**W, "window_end": 604800}, {**W, "window_end": 604801}, {**W, "window_start": -1},
    {**W, "window_start": 1.0}, {**W, "window_start": 1.5}, {**W, "window_start": "1"},
    {**W, "mode": "2 Immediately"}, {**W, "mode": "4 Confirmation Needed"},
    {**W, "mode": "5 Whenever"}, {**W, "mode": "X 00D09E night"}, {**W, "mode": None},
    {**W, "user_message": "Update tonight"}, {**W, "user_message": "é"},
    {**W, "user_message": "x" * 257}, {**W, "max_retries": -1}, {**W, "max_retries": 100},
    {**W, "max_retries": 101}, {**W, "max_retries": -2}, {**W, "extra": 1}, None, "W", [],
]  # fmt: skip
U = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
URL = "http://127.0.0.1/du.tar"
EE = "Device.SoftwareModules.ExecEnv.1"
OPERATIONS: list[Any] = [
    {"type": "install", "url": URL},
    {"type": "install", "url": URL, "uuid": U, "execution_env": EE},
    {"type": "install"}, {"type": "install", "uuid": U}, {"type": "install", "url": "ftp://x/"},
    {"type": "install", "url": URL, "version": "1"}, {"type": "install", "url": "h" * 1025},
    {"type": "install", "url": "http://" + "x" * 1017},
    {"type": "install", "url": URL, "uuid": "x"},
    {"type": "install", "url": URL, "uuid": U.upper()},
    {"type": "install", "url": URL, "uuid": U + "0"},
    {"type": "install", "url": URL, "execution_env": EE + "."},
    {"type": "install", "url": URL, "execution_env": "Internet" + "GatewayDevice." + EE[7:]},
    {"type": "install", "url": URL, "execution_env": EE[:-1] + "0"},
    {"type": "install", "url": URL, "execution_env": EE[6:] + "."},
    {"type": "update", "uuid": U}, {"type": "update", "url": URL, "version": "2.0"},
    {"type": "update"}, {"type": "update", "version": "2.0"},
    {"type": "update", "uuid": U, "version": ""},
    {"type": "update", "uuid": U, "version": "v" * 32},
    {"type": "update", "uuid": U, "version": "v" * 33},
    {"type": "update", "uuid": U, "version": "é"},
    {"type": "update", "uuid": U, "execution_env": EE}, {"type": "uninstall", "uuid": U},
    {"type": "uninstall", "uuid": U, "version": "1", "execution_env": EE},
    {"type": "uninstall", "url": URL}, {"type": "uninstall", "uuid": 5},
    {"type": "reinstall", "uuid": U}, {"type": None, "uuid": U}, {"uuid": U},
    {"type": "install", "url": URL, "extra": 1}, None, "install", [],
]  # fmt: skip
# Pairs of windows: in time order, or overlapping, or out of order.
WINDOW_PAIRS: list[Any] = [
    [W, {"window_start": 60, "window_end": 120}],
    [W, {"window_start": 59, "window_end": 120}],
    [{"window_start": 60, "window_end": 120}, W],
    [W, W, W],
]


def _exempt(kind: str, arguments: dict[str, Any]) -> bool:
    """The rules no schema states: a name twice, a value that does not suit its type;
    time windows out of order (or a window ending before it starts)."""
    windows = arguments.get("time_windows")
    if kind == "schedule_download" and isinstance(windows, list):
        return windows in ([{"window_start": 60, "window_end": 59}], *WINDOW_PAIRS[1:3])
    items = arguments.get("parameters")
    if kind not in ("set_parameter_values", "add_object") or not isinstance(items, list):
        return False
    names = [i.get("name") for i in items if isinstance(i, dict)]
    if len(names) != len(set(map(str, names))):
        return True
    return any(
        isinstance(i, dict)
        and isinstance(i.get("type"), str)
        and isinstance(i.get("value"), str)
        and type_problem(i["value"], i["type"]) is not None
        for i in items
    )


def accepted(kind: str, arguments: dict[str, Any]) -> bool:
    try:
        validate_args(kind, arguments)
    except ValueError:
        return False
    return True


def bodies(kind: str) -> list[dict[str, Any]]:
    """The kind's example with each argument replaced (or added) by each probe, and each
    list argument holding each probe item."""
    out: list[dict[str, Any]] = [{}]
    for example in [dict(KINDS[kind].example), *EXAMPLES.get(kind, [])]:
        out += _probes(kind, example)
    return out


def _probes(kind: str, example: dict[str, Any]) -> list[dict[str, Any]]:
    out = [example]
    for key in KINDS[kind].arguments:
        out += [{**example, key: value} for value in VALUES]
        out.append({k: v for k, v in example.items() if k != key})
        if key == "parameters":
            out += [{**example, key: [item]} for item in ITEMS]
            out.append({**example, key: [ITEMS[0], ITEMS[0]]})
        if key == "operations":
            out += [{**example, key: [op]} for op in OPERATIONS]
            out += [{**example, key: [OPERATIONS[0]] * n} for n in (16, 17)]
            out.append({**example, key: [OPERATIONS[0], OPERATIONS[2]]})
        if key == "time_windows":
            out += [{**example, key: [window]} for window in WINDOWS]
            out += [{**example, key: pair} for pair in WINDOW_PAIRS]
    out.append({**example, "unknown": 1})
    return out


@pytest.mark.parametrize("kind", API_KINDS)
def test_each_kind_accepts_exactly_what_its_schema_accepts(kind: str) -> None:
    schema = KINDS[kind].arguments_schema
    wrong = [
        arguments
        for arguments in bodies(kind)
        if accepted(kind, arguments) != (not schema_errors({}, schema, arguments))
        and not _exempt(kind, arguments)
    ]
    assert wrong == []


def test_the_unstated_rules_are_enforced() -> None:
    file = {"file": 1}
    for windows in ([{"window_start": 60, "window_end": 59}], *WINDOW_PAIRS[1:3]):
        assert not accepted("schedule_download", {**file, "time_windows": windows})
    assert accepted("schedule_download", {**file, "time_windows": WINDOW_PAIRS[0]})
    item = {"name": "Device.X.Y", "value": "1"}
    assert not accepted("set_parameter_values", {"parameters": [item, item]})
    typed = {"name": "Device.X.Y", "value": "-1", "type": "xsd:unsignedInt"}
    assert not accepted("set_parameter_values", {"parameters": [typed]})
    assert not schema_errors(
        {}, KINDS["set_parameter_values"].arguments_schema, {"parameters": [typed]}
    )


@pytest.mark.parametrize("kind", API_KINDS)
def test_the_probes_reach_both_outcomes(kind: str) -> None:
    if not KINDS[kind].arguments:
        assert accepted(kind, {}) and not accepted(kind, {"x": 1})
        return
    outcomes = {accepted(kind, arguments) for arguments in bodies(kind)}
    assert outcomes == {True, False}
