"""The ``diagnostics`` kind: a TR-143 test run by the CPE (IP ping, trace route, download,
upload), on either data-model root.

One task, two phases. First a SetParameterValues of the test's object (its parameters and
``DiagnosticsState`` = ``Requested``); the CPE runs the test after the session and informs
``8 DIAGNOSTICS COMPLETE``. That Inform resumes the task (``resume_on_confirm``): in the same
session a GetParameterValues reads the object, its values go into the stored tree, and the
task ends with the results (``Complete``) or fails with the CPE's error state. The event
names no test: a task whose object still says ``Requested`` (another test ended) waits on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acs.cwmp import rpc
from acs.store.models import IN_PROGRESS, Task
from acs.tasks import args as a
from acs.tasks.run import (
    ACKNOWLEDGED_RPC,
    RESUMED,
    Steps,
    TaskError,
    TaskRun,
    WaitForInform,
    task_key,
)

EVENT = "8 DIAGNOSTICS COMPLETE"
MAX_TIMEOUT_MS = 60_000
MAX_URL = 256  # TR-098's DownloadURL/UploadURL: string(256)
_URL = re.compile(r"https?://[!-~]+")
_HOST = re.compile(r"[A-Za-z0-9._:-]+")


@dataclass(frozen=True)
class Argument:
    """One test argument: the parameter it sets, its xsd type and JSON Schema."""

    parameter: str
    xsd: str
    schema: Mapping[str, Any]


def _count(low: int, high: int, description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "description": description}


_HOST_ARG = Argument(
    "Host",
    "xsd:string",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
        "pattern": f"^{_HOST.pattern}$",
        "description": "Host name or address to test against.",
    },
)
_TIMEOUT = Argument("Timeout", "xsd:unsignedInt", _count(1, MAX_TIMEOUT_MS, "Milliseconds."))
_SIZE = Argument("DataBlockSize", "xsd:unsignedInt", _count(1, 65535, "Bytes per packet."))
_DSCP = Argument("DSCP", "xsd:unsignedInt", _count(0, 63, "DiffServ code point."))
_INTERFACE = Argument(
    "Interface",
    "xsd:string",
    {
        "type": "string",
        "maxLength": 256,
        "pattern": a.ASCII_TEXT_PATTERN,
        "description": "The interface to test from (a path; empty: the CPE's routing).",
    },
)
_URL_ARG = {
    "type": "string",
    "maxLength": MAX_URL,
    "pattern": f"^{_URL.pattern}$",
    "description": "The HTTP or HTTPS URL of the test.",
}


@dataclass(frozen=True)
class Test:
    """A TR-143 test: its object under each root and the arguments it takes."""

    objects: Mapping[str, str]
    arguments: Mapping[str, Argument]
    required: tuple[str, ...]
    hops: str | None = None  # the trace route's table of hops, relative to the object


TESTS: dict[str, Test] = {
    "ip_ping": Test(
        {"Device.": "IP.Diagnostics.IPPing.", "InternetGatewayDevice.": "IPPingDiagnostics."},
        {
            "host": _HOST_ARG,
            "count": Argument(
                "NumberOfRepetitions", "xsd:unsignedInt", _count(1, 100, "Pings to send.")
            ),
            "timeout": _TIMEOUT,
            "data_block_size": _SIZE,
            "dscp": _DSCP,
            "interface": _INTERFACE,
        },
        ("host",),
    ),
    "trace_route": Test(
        {
            "Device.": "IP.Diagnostics.TraceRoute.",
            "InternetGatewayDevice.": "TraceRouteDiagnostics.",
        },
        {
            "host": _HOST_ARG,
            "count": Argument("NumberOfTries", "xsd:unsignedInt", _count(1, 3, "Tries per hop.")),
            "timeout": _TIMEOUT,
            "data_block_size": _SIZE,
            "dscp": _DSCP,
            "max_hop_count": Argument(
                "MaxHopCount", "xsd:unsignedInt", _count(1, 64, "Hops at most.")
            ),
            "interface": _INTERFACE,
        },
        ("host",),
        hops="RouteHops.",
    ),
    "download": Test(
        {
            "Device.": "IP.Diagnostics.DownloadDiagnostics.",
            "InternetGatewayDevice.": "DownloadDiagnostics.",
        },
        {
            "url": Argument("DownloadURL", "xsd:string", _URL_ARG),
            "dscp": _DSCP,
            "interface": _INTERFACE,
        },
        ("url",),
    ),
    "upload": Test(
        {
            "Device.": "IP.Diagnostics.UploadDiagnostics.",
            "InternetGatewayDevice.": "UploadDiagnostics.",
        },
        {
            "url": Argument("UploadURL", "xsd:string", _URL_ARG),
            "test_file_length": Argument(
                "TestFileLength", "xsd:unsignedInt", _count(1, 1_000_000_000, "Bytes to send.")
            ),
            "dscp": _DSCP,
            "interface": _INTERFACE,
        },
        ("url", "test_file_length"),
    ),
}


def _widest(schemas: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One key's schema over every test that has it: the tests' own, when they agree;
    else (count: pings or tries) the integer range covering them, each test's branch of
    SCHEMA holding its own."""
    first = dict(schemas[0])
    if all(dict(other) == first for other in schemas):
        return first
    return {
        "type": "integer",
        "minimum": min(s["minimum"] for s in schemas),
        "maximum": max(s["maximum"] for s in schemas),
        "description": "Per test: " + "; ".join(str(s["description"]) for s in schemas),
    }


_BY_KEY: dict[str, list[Mapping[str, Any]]] = {}
for _test in TESTS.values():
    for _key, _argument in _test.arguments.items():
        _BY_KEY.setdefault(_key, []).append(_argument.schema)
ARGUMENT_SCHEMAS: dict[str, Any] = {key: _widest(found) for key, found in _BY_KEY.items()}
ARGUMENTS = ("test", *ARGUMENT_SCHEMAS)


def _branch(name: str, test: Test) -> dict[str, Any]:
    others = [key for key in ARGUMENT_SCHEMAS if key not in test.arguments]
    own = {key: dict(argument.schema) for key, argument in test.arguments.items()}
    return {
        "properties": {"test": {"const": name}, **own},
        "required": ["test", *test.required],
        "not": {"anyOf": [{"required": [key]} for key in others]},
    }


SCHEMA = a.arguments_schema(
    {"test": {"type": "string", "enum": list(TESTS)}, **ARGUMENT_SCHEMAS},
    ["test"],
    extra={"anyOf": [_branch(name, test) for name, test in TESTS.items()]},
)


def _valid(value: Any, schema: Mapping[str, Any]) -> bool:
    """``value`` against one argument schema above (integer ranges, patterned strings)."""
    if schema["type"] == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return (
            not isinstance(value, bool)
            and isinstance(value, int)
            and schema["minimum"] <= value <= schema["maximum"]
        )
    pattern = schema["pattern"][1:-1]
    return (
        isinstance(value, str)
        and schema.get("minLength", 0) <= len(value) <= schema["maxLength"]
        and re.fullmatch(pattern, value) is not None
    )


def _expected(key: str, schema: Mapping[str, Any]) -> str:
    if schema["type"] == "integer":
        return f"{key} must be an integer from {schema['minimum']} to {schema['maximum']}"
    return (
        f"{key} must be text of at most {schema['maxLength']} characters: {schema['description']}"
    )


def check(args: Mapping[str, Any]) -> dict[str, Any]:
    name = args.get("test")
    test = TESTS.get(name) if isinstance(name, str) else None
    if test is None:
        raise ValueError(f"test must be one of {', '.join(TESTS)}")
    clean: dict[str, Any] = {"test": name}
    for key, value in args.items():
        if key == "test":
            continue
        argument = test.arguments.get(key)
        if argument is None:
            raise ValueError(f"{key} is not an argument of the {name} test")
        if not _valid(value, argument.schema):
            raise ValueError(_expected(key, argument.schema))
        clean[key] = int(value) if isinstance(value, float) else value
    missing = [key for key in test.required if key not in clean]
    if missing:
        raise ValueError(f"{missing[0]} is required by the {name} test")
    return clean


def confirm_delay(args: Mapping[str, Any]) -> float:
    """Seconds the test may rightly take: its timeouts, over every try and hop."""
    timeout = float(args.get("timeout", 5000)) / 1000
    return timeout * float(args.get("count", 3)) * float(args.get("max_hop_count", 1))


def confirmed(tasks: Sequence[Task], inform: rpc.Inform, events: Sequence[str]) -> list[Task]:
    """At ``8 DIAGNOSTICS COMPLETE``: every test the CPE acknowledged and is running."""
    if EVENT not in events:
        return []
    return [
        t
        for t in tasks
        if t.state == IN_PROGRESS
        and (t.result or {}).get(ACKNOWLEDGED_RPC)
        and not (t.result or {}).get(RESUMED)
    ]


_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    """``AverageResponseTime`` -> ``average_response_time``, ``ROMTime`` -> ``rom_time``."""
    return _WORD.sub("_", name).lower()


def run(run: TaskRun) -> Steps:
    args = run.task.args
    test = TESTS[args["test"]]
    obj = run.root + test.objects[run.root]
    if not (run.task.result or {}).get(RESUMED):
        values = [rpc.ParameterValue(f"{obj}DiagnosticsState", "Requested", "xsd:string")]
        values += [
            rpc.ParameterValue(obj + argument.parameter, str(args[key]), argument.xsd)
            for key, argument in test.arguments.items()
            if key in args
        ]
        answer: rpc.SetParameterValuesResponse = yield from run.call(
            rpc.SetParameterValues(parameters=tuple(values), parameter_key=task_key(run.task))
        )
        run.check_status(answer.status)
        return WaitForInform()
    read: rpc.GetParameterValuesResponse = yield from run.call(rpc.GetParameterValues((obj,)))
    found = {p.name: p for p in read.parameters if p.name.startswith(obj)}
    run.store.upsert_parameters(
        run.task.device_id, [(p.name, p.value, p.type, None) for p in found.values()], now=run.now
    )
    state = found[f"{obj}DiagnosticsState"].value if f"{obj}DiagnosticsState" in found else None
    if state == "Requested":  # the event was another test's: this one is still running
        run.store.update_task_result(run.task.id, {RESUMED: None})
        return WaitForInform()
    if state != "Complete":
        raise TaskError(
            f"the CPE's {args['test']} test ended {state or 'without a state'}", permanent=True
        )
    own = {argument.parameter for argument in test.arguments.values()} | {"DiagnosticsState"}
    results = {
        snake(name[len(obj) :]): p.value
        for name, p in found.items()
        if "." not in name[len(obj) :] and name[len(obj) :] not in own
    }
    out: dict[str, Any] = {"test": args["test"], "state": state, "results": results}
    if test.hops is not None:
        out["route_hops"] = _hops(found, obj + test.hops)
    return out


def _hops(found: Mapping[str, rpc.ParameterValue], table: str) -> list[dict[str, str]]:
    """The hops in instance order, their fields without TR-098's ``Hop`` prefix."""
    hops: dict[int, dict[str, str]] = {}
    for name, p in found.items():
        number, _, field = (
            name[len(table) :].partition(".") if name.startswith(table) else ("", "", "")
        )
        if number.isdigit() and field and "." not in field:
            hops.setdefault(int(number), {})[snake(field.removeprefix("Hop"))] = p.value
    return [hops[n] for n in sorted(hops)]
