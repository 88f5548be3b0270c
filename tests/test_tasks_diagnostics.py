"""The diagnostics kind (acs/tasks/diagnostics.py), sans IO: the SetParameterValues that
requests a TR-143 test on each root, the 8 DIAGNOSTICS COMPLETE Inform that resumes the
task in its session, the read of the results and how the task ends.
"""

from __future__ import annotations

from typing import cast

import factories
import pytest
from factories import informed_device
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import DONE, FAILED, IN_PROGRESS, Device, Store
from acs.tasks import TaskEngine, task_key, validate_args
from acs.tasks.diagnostics import snake

SERIAL = "SN-DIAG"
PING = "Device.IP.Diagnostics.IPPing."
PV = rpc.ParameterValue


@pytest.fixture
def device(store: Store) -> Device:
    return informed_device(store, SERIAL, provisioned=True)


@pytest.fixture
def engine(store: Store) -> TaskEngine:
    return TaskEngine(store, cast(IReactorTime, Clock()), confirm_timeout=900.0)


def requested(engine: TaskEngine, device: Device, args: dict[str, object]) -> int:
    """Queue the test at t=10; the CPE accepts its SetParameterValues at t=12."""
    task = engine.queue(device.id, "diagnostics", args, actor="op", wake=False, now=10)
    session = engine.open_session(device.id)
    request = session.next_request(now=11.0)
    assert isinstance(request, rpc.SetParameterValues)
    assert request.parameter_key == task_key(task)
    session.on_response(rpc.SetParameterValuesResponse(0), now=12.0)
    assert session.next_request(now=12.0) is None
    return task.id


def diagnostics_complete(engine: TaskEngine, device: Device) -> object:
    """The CPE's 8 DIAGNOSTICS COMPLETE Inform at t=20: the session's first request."""
    engine.on_inform(device, factories.inform(SERIAL, "8 DIAGNOSTICS COMPLETE"), now=20.0)
    session = engine.open_session(device.id)
    return session, session.next_request(now=20.0)


def test_a_ping_is_requested_with_its_parameters_then_read_and_reported(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(
        device.id, "diagnostics", {"test": "ip_ping", "host": "192.0.2.1", "count": 4},
        actor="op", wake=False, now=10,
    )  # fmt: skip
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.SetParameterValues(
        (
            PV(f"{PING}DiagnosticsState", "Requested", "xsd:string"),
            PV(f"{PING}Host", "192.0.2.1", "xsd:string"),
            PV(f"{PING}NumberOfRepetitions", "4", "xsd:unsignedInt"),
        ),
        task_key(task),
    )
    session.on_response(rpc.SetParameterValuesResponse(0), now=12.0)
    assert store.get_task(task.id).state == IN_PROGRESS  # type: ignore[union-attr]
    # A periodic Inform does not end it.
    engine.on_inform(device, factories.inform(SERIAL, "2 PERIODIC"), now=15.0)
    assert engine.open_session(device.id).next_request(now=15.0) is None

    session, read = diagnostics_complete(engine, device)
    assert read == rpc.GetParameterValues((PING,))
    session.on_response(  # type: ignore[attr-defined]
        rpc.GetParameterValuesResponse(
            (
                PV(f"{PING}DiagnosticsState", "Complete"),
                PV(f"{PING}Host", "192.0.2.1"),
                PV(f"{PING}SuccessCount", "4", "xsd:unsignedInt"),
                PV(f"{PING}AverageResponseTimeDetailed", "12000", "xsd:unsignedInt"),
            )
        ),
        now=21.0,
    )
    done = store.get_task(task.id)
    assert done is not None and done.state == DONE
    assert done.attempts == 1  # resumed, not retried
    assert done.result == {
        "test": "ip_ping",
        "state": "Complete",
        "results": {"success_count": "4", "average_response_time_detailed": "12000"},
    }
    cached = store.get_parameter(device.id, f"{PING}SuccessCount")
    assert cached is not None and cached.value == "4"


def test_a_trace_route_on_tr098_lists_its_hops(store: Store, engine: TaskEngine) -> None:
    device = informed_device(store, SERIAL, root="InternetGatewayDevice.", provisioned=True)
    obj = "InternetGatewayDevice.TraceRouteDiagnostics."
    task_id = requested(engine, device, {"test": "trace_route", "host": "example.net"})
    session, read = diagnostics_complete(engine, device)
    assert read == rpc.GetParameterValues((obj,))
    session.on_response(  # type: ignore[attr-defined]
        rpc.GetParameterValuesResponse(
            (
                PV(f"{obj}DiagnosticsState", "Complete"),
                PV(f"{obj}ResponseTime", "30"),
                PV(f"{obj}RouteHops.2.HopHost", "example.net"),
                PV(f"{obj}RouteHops.1.HopHost", "gw"),
                PV(f"{obj}RouteHops.1.HopRTTimes", "1,2,3"),
            )
        ),
        now=21.0,
    )
    result = store.get_task(task_id).result  # type: ignore[union-attr]
    assert result["results"] == {"response_time": "30"}
    assert result["route_hops"] == [{"host": "gw", "rt_times": "1,2,3"}, {"host": "example.net"}]


def test_an_error_state_fails_the_task_and_still_running_waits_on(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task_id = requested(engine, device, {"test": "ip_ping", "host": "h"})
    session, _ = diagnostics_complete(engine, device)
    still = rpc.GetParameterValuesResponse((PV(f"{PING}DiagnosticsState", "Requested"),))
    session.on_response(still, now=21.0)  # type: ignore[attr-defined]
    assert store.get_task(task_id).state == IN_PROGRESS  # type: ignore[union-attr]
    session, _ = diagnostics_complete(engine, device)
    failed = rpc.GetParameterValuesResponse((PV(f"{PING}DiagnosticsState", "Error_NoRouteToHost"),))
    session.on_response(failed, now=22.0)  # type: ignore[attr-defined]
    task = store.get_task(task_id)
    assert task is not None and task.state == FAILED
    assert "Error_NoRouteToHost" in (task.fault_string or "")


def test_a_test_never_reported_complete_fails_after_the_confirm_timeout(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task_id = requested(engine, device, {"test": "ip_ping", "host": "h", "timeout": 2000})
    # 900 s, plus the test's own time: 2 s per ping, 3 pings.
    engine.on_inform(device, factories.inform(SERIAL, "2 PERIODIC"), now=12 + 900 + 5)
    assert store.get_task(task_id).state == IN_PROGRESS  # type: ignore[union-attr]
    engine.on_inform(device, factories.inform(SERIAL, "2 PERIODIC"), now=12 + 900 + 7)
    assert store.get_task(task_id).state == FAILED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"test": "ping", "host": "h"}, "test must be one of"),
        ({"test": "ip_ping"}, "host is required"),
        ({"test": "ip_ping", "host": "h", "url": "http://x/"}, "url is not an argument"),
        ({"test": "trace_route", "host": "h", "count": 4}, "count must be an integer from 1 to 3"),
        ({"test": "download", "url": "ftp://x/"}, "url must be text"),
        ({"test": "upload", "url": "http://x/"}, "test_file_length is required"),
    ],
)
def test_arguments_are_those_of_the_test(args: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_args("diagnostics", args)


def test_names_become_snake_case() -> None:
    assert [snake(n) for n in ("ROMTime", "IPAddressUsed", "TCPOpenRequestTime", "RTTimes")] == [
        "rom_time",
        "ip_address_used",
        "tcp_open_request_time",
        "rt_times",
    ]
