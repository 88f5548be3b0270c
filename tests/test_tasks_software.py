"""The change_du_state kind in a session (acs/tasks/software.py), sans IO: the ChangeDUState
it sends, the DUStateChangeComplete that ends it (done, failed per operation, late, for
another task), the stored tree following both DU reports, and the CWMP versions without it.
"""

from __future__ import annotations

from typing import cast

import pytest
from test_transfers import FakeSigner, make_device, task_of
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import DONE, FAILED, IN_PROGRESS, Device, Store, Task
from acs.tasks import TaskEngine, task_key

UUID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
UNIT = "Device.SoftwareModules.DeploymentUnit.3"
OPERATIONS = [
    {"type": "install", "url": "http://127.0.0.1/du.tar", "uuid": UUID,
     "execution_env": "Device.SoftwareModules.ExecEnv.1"},
    {"type": "update", "url": "http://127.0.0.1/du-2.tar", "version": "2.0"},
    {"type": "uninstall", "uuid": UUID, "version": "2.0"},
]  # fmt: skip


@pytest.fixture
def engine(store: Store) -> TaskEngine:
    return TaskEngine(store, cast(IReactorTime, Clock()), signer=FakeSigner(), transfer_timeout=600)


@pytest.fixture
def device(store: Store) -> Device:
    return make_device(store)


def installed(state: str = "Installed", code: int = 0, ref: str = UNIT) -> rpc.OpResult:
    return rpc.OpResult(
        uuid=UUID,
        deployment_unit_ref=ref,
        version="2.0",
        current_state=state,
        resolved=True,
        execution_unit_refs="Device.SoftwareModules.ExecutionUnit.1, ",
        start_time="2026-01-01T00:00:00Z",
        complete_time="2026-01-01T00:00:09Z",
        fault=rpc.FaultStruct(code, "no room" if code else ""),
    )


def sent(engine: TaskEngine, device: Device, operations: list[dict[str, str]]) -> Task:
    """The task, its ChangeDUState sent and acknowledged in a 1.2 session."""
    task = engine.queue(
        device.id, "change_du_state", {"operations": operations}, actor="op", wake=False
    )
    session = engine.open_session(device.id, "1.2")
    request = session.next_request(now=10.0)
    assert isinstance(request, rpc.ChangeDUState) and request.command_key == task_key(task)
    session.on_response(rpc.ChangeDUStateResponse(), now=11.0)
    assert session.next_request(now=11.0) is None
    assert task_of(engine.store, task.id).state == IN_PROGRESS
    return task


def report(engine: TaskEngine, device: Device, message: rpc.Message) -> dict[str, object]:
    engine.open_session(device.id, "1.2").on_cpe_request(message, now=20.0)
    entry = engine.store.history(device.id, limit=1)[0]
    return entry.detail


def test_the_operations_go_out_in_order_typed_as_given(engine: TaskEngine, device: Device) -> None:
    task = engine.queue(
        device.id, "change_du_state", {"operations": OPERATIONS}, actor="op", wake=False
    )
    request = engine.open_session(device.id, "1.2").next_request(now=10.0)
    assert request == rpc.ChangeDUState(
        operations=(
            rpc.InstallOp(
                "http://127.0.0.1/du.tar", uuid=UUID,
                execution_env_ref="Device.SoftwareModules.ExecEnv.1",
            ),
            rpc.UpdateOp(url="http://127.0.0.1/du-2.tar", version="2.0"),
            rpc.UninstallOp(UUID, version="2.0"),
        ),
        command_key=task_key(task),
    )  # fmt: skip


def test_the_report_completes_the_task_and_writes_the_unit_into_the_tree(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = sent(engine, device, OPERATIONS[:1])
    detail = report(
        engine, device, rpc.DUStateChangeComplete((installed(),), command_key=task_key(task))
    )
    assert (detail["task_id"], detail["task_state"]) == (task.id, DONE)
    done = task_of(store, task.id)
    assert done.state == DONE
    assert done.result == {
        "operations": [
            {
                "type": "install",
                "uuid": UUID,
                "deployment_unit": UNIT,
                "version": "2.0",
                "state": "Installed",
                "resolved": True,
                "execution_units": ["Device.SoftwareModules.ExecutionUnit.1"],
                "start_time": "2026-01-01T00:00:00Z",
                "complete_time": "2026-01-01T00:00:09Z",
                "fault_code": 0,
                "fault_string": "",
            }
        ]
    }
    values = {p.path: p.value for p in store.get_parameters(device.id, UNIT + ".")}
    assert values[f"{UNIT}.UUID"] == UUID
    assert values[f"{UNIT}.Version"] == "2.0"
    assert values[f"{UNIT}.Status"] == "Installed"
    # Uninstalled later, by the CPE itself: the unit leaves the tree.
    gone = installed("Uninstalled")
    report(engine, device, rpc.AutonomousDUStateChangeComplete((gone,)))
    assert store.get_parameters(device.id, UNIT + ".") == []


def test_a_failed_operation_fails_the_task_for_good_with_every_outcome(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = sent(engine, device, OPERATIONS[:2])
    message = rpc.DUStateChangeComplete(
        (installed(), installed("Failed", 9027, ref="")), command_key=task_key(task)
    )
    assert report(engine, device, message)["task_state"] == FAILED
    failed = task_of(store, task.id)
    assert (failed.state, failed.fault_code) == (FAILED, 9027)
    assert failed.fault_string == "operation 2 (update): no room"
    assert failed.next_attempt_at is None
    assert failed.result is not None
    assert [o["state"] for o in failed.result["operations"]] == ["Installed", "Failed"]
    # The operation that worked is in the tree all the same.
    assert store.get_parameters(device.id, UNIT + ".")


def test_fewer_results_than_operations_fail_the_task(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = sent(engine, device, OPERATIONS[:2])
    report(engine, device, rpc.DUStateChangeComplete((installed(),), command_key=task_key(task)))
    failed = task_of(store, task.id)
    assert (failed.state, failed.fault_code) == (FAILED, None)
    assert failed.fault_string == "the CPE reported 1 results for 2 operations"


def test_reports_for_other_tasks_late_ones_and_transfer_completes_change_no_task(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = sent(engine, device, OPERATIONS[:1])
    # A TransferComplete carrying its key does not end it: only its DU report does.
    assert report(engine, device, rpc.TransferComplete(task_key(task)))["command_key"]
    assert task_of(store, task.id).state == IN_PROGRESS
    stranger = rpc.DUStateChangeComplete((installed(),), command_key="acs-task-999")
    assert "task_id" not in report(engine, device, stranger)
    report(engine, device, rpc.DUStateChangeComplete((installed(),), command_key=task_key(task)))
    late = report(
        engine, device, rpc.DUStateChangeComplete((installed(),), command_key=task_key(task))
    )
    assert (late["task_state"], late["late"]) == (DONE, True)


def test_the_announcing_inform_spares_the_task_from_the_transfer_watch(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = sent(engine, device, OPERATIONS[:1])
    # Overdue, but the Inform says its report comes in this session (M ChangeDUState).
    assert engine.check_transfers(now=10.0 + 601, exclude_keys=[task_key(task)]) == []
    assert engine.check_transfers(now=10.0 + 601) == [task.id]


@pytest.mark.parametrize(
    "ref", ["", "Device.WiFi.SSID.1", "Device.SoftwareModules.DeploymentUnit.1.X\n", "Nope.1"]
)
def test_a_report_naming_no_unit_path_writes_nothing(
    engine: TaskEngine, store: Store, device: Device, ref: str
) -> None:
    report(engine, device, rpc.AutonomousDUStateChangeComplete((installed(ref=ref),)))
    assert store.get_parameters(device.id, "Device.") == []


def test_cwmp_1_1_has_no_change_du_state(engine: TaskEngine, store: Store, device: Device) -> None:
    task = engine.queue(
        device.id, "change_du_state", {"operations": OPERATIONS[:1]}, actor="op", wake=False
    )
    assert engine.open_session(device.id, "1.1").next_request(now=10.0) is None
    failed = task_of(store, task.id)
    assert failed.state == FAILED and "which has no ChangeDUState" in (failed.fault_string or "")


def test_a_report_bounds_what_it_stores(engine: TaskEngine, store: Store, device: Device) -> None:
    task = sent(engine, device, OPERATIONS[:1])
    huge = rpc.OpResult(
        uuid=UUID + "x" * 1000,
        deployment_unit_ref=UNIT,
        version="v" * 10_000,
        current_state="Installed",
        resolved=True,
        execution_unit_refs=",".join(
            f"Device.SoftwareModules.ExecutionUnit.{i}" for i in range(99)
        ),
        fault=rpc.FaultStruct(0, "f" * 10_000),
    )
    report(engine, device, rpc.DUStateChangeComplete((huge,) * 40, command_key=task_key(task)))
    [outcome] = task_of(store, task.id).result["operations"][:1]  # type: ignore[index]
    assert len(outcome["uuid"]) == 36 and len(outcome["version"]) == 64
    assert len(outcome["fault_string"]) == 256 and len(outcome["execution_units"]) == 16
    assert len(task_of(store, task.id).result["operations"]) == 16  # type: ignore[index]
    stored = store.get_parameter(device.id, f"{UNIT}.Version")
    assert stored is not None and len(stored.value or "") == 64
