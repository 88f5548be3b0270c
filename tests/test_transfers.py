"""Tests of the file-transfer task kinds: firmware_update (Download of an image), backup (Upload
of the vendor configuration file) and restore (Download of a stored backup).

The session driver is fed rpc dataclasses against a real in-memory Store, with a fake URL
signer; time is explicit (`now=`) or a task.Clock (TransferWatch). Covered: Download status 0
and status 1 + TransferComplete, transfer faults, the pending flag and `firmware_update:failed`,
timeouts at Informs and from the periodic watch, the installed-version check at the next
Inform, backups that did or did not reach the file server, and restore of a backup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import factories
import pytest
from apiharness import T0, ApiHarness
from factories import inform_record, informed_device
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import DONE, FAILED, IN_PROGRESS, PENDING, Device, Store
from acs.store.models import Backup, FirmwareImage, StoredFile
from acs.tasks import (
    REPORT_FAILED,
    SessionTasks,
    TaskEngine,
    TransferWatch,
    task_id_of_key,
    task_key,
    validate_args,
)
from api.base import Api, ApiRequest, Principal
from api.device_ops import apply_operations, pending_details, pending_settings, take_operations

SERIAL = "SN-T1"
TIMEOUT = 600.0


class FakeSigner:
    """Deterministic URLs naming what was signed, so tests can check the RPC arguments."""

    def firmware_url(self, task_id: int, image: FirmwareImage) -> str:
        return f"http://127.0.0.1:7567/firmware/{image.id}/{image.filename}?task={task_id}"

    def backup_upload_url(self, task_id: int) -> str:
        return f"http://127.0.0.1:7567/backup/{task_id}"

    def backup_download_url(self, task_id: int, backup: Backup) -> str:
        return f"http://127.0.0.1:7567/backup/{task_id}/{backup.id}"

    def file_url(self, task_id: int, stored: StoredFile) -> str:
        return f"http://127.0.0.1:7567/file/{stored.id}/{stored.filename}?task={task_id}"

    def upload_url(self, task_id: int) -> str:
        return f"http://127.0.0.1:7567/upload/{task_id}"


def make_device(store: Store, serial: str = SERIAL, version: str = "1.0") -> Device:
    return informed_device(store, serial, version=version, provisioned=True)


def inform(*events: str | tuple[str, str], version: str | None = None) -> rpc.Inform:
    return factories.inform(SERIAL, *events, version=version)


def session_inform(
    engine: TaskEngine, device: Device, *events: str | tuple[str, str], version: str, now: float
) -> SessionTasks:
    """What cwmp_http does at an Inform: record it, let the engine react, open a session."""
    store = engine.store
    fresh = store.record_inform(
        device.id, inform_record(device.serial_number, version=version), now=now
    )
    engine.on_inform(fresh, inform(*events, version=version), now=now)
    return engine.open_session(device.id)


@pytest.fixture
def device(store: Store) -> Device:
    return make_device(store)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(store: Store, clock: Clock) -> TaskEngine:
    return TaskEngine(
        store, cast(IReactorTime, clock), signer=FakeSigner(), transfer_timeout=TIMEOUT
    )


@pytest.fixture
def image(store: Store) -> FirmwareImage:
    return store.create_firmware_image(
        name="router-fw",
        version="2.0",
        size=1234,
        sha256="ab" * 32,
        filename="router-2.0.bin",
        now=0.0,
    )


def want_firmware(store: Store, engine: TaskEngine, device: Device, image: FirmwareImage) -> int:
    """What the API does for PATCH firmware_image + firmware_image_is_pending: true."""
    store.update_device(
        device.id,
        now=5.0,
        actor="op",
        firmware_image_id=image.id,
        firmware_image_is_pending=True,
    )
    return engine.queue(
        device.id, "firmware_update", {"firmware_image": image.id}, actor="op", wake=False, now=5.0
    ).id


def task_of(store: Store, task_id: int) -> Any:
    task = store.get_task(task_id)
    assert task is not None
    return task


def flag(store: Store, device: Device) -> bool:
    fresh = store.get_device(device.id)
    assert fresh is not None
    return fresh.firmware_image_is_pending


def actions(store: Store, device: Device) -> list[str]:
    return [h.action for h in reversed(store.history(device.id, limit=200))]


def start_download(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage, *, now: float = 10.0
) -> tuple[int, rpc.Download]:
    task_id = want_firmware(store, engine, device, image)
    session = engine.open_session(device.id)
    request = session.next_request(now=now)
    assert isinstance(request, rpc.Download)
    session.on_response(rpc.DownloadResponse(1), now=now + 1)
    assert session.next_request(now=now + 1) is None
    return task_id, request


# --- firmware_update ------------------------------------------------------------------------


def test_firmware_update_sends_download_with_signed_url_size_and_name(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id = want_firmware(store, engine, device, image)
    request = engine.open_session(device.id).next_request(now=10.0)
    assert request == rpc.Download(
        command_key=f"acs-task-{task_id}",
        file_type="1 Firmware Upgrade Image",
        url=f"http://127.0.0.1:7567/firmware/{image.id}/router-2.0.bin?task={task_id}",
        file_size=1234,
        target_file_name="router-2.0.bin",
    )


def test_download_status_1_waits_for_transfer_complete_without_blocking_other_tasks(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id = want_firmware(store, engine, device, image)
    reboot = engine.queue(device.id, "reboot", actor="op", wake=False, now=6.0)
    session = engine.open_session(device.id)
    assert isinstance(session.next_request(now=10.0), rpc.Download)
    session.on_response(rpc.DownloadResponse(1), now=11.0)
    # The acknowledged transfer stays in progress; the reboot queued after it still runs.
    assert session.next_request(now=11.0) == rpc.Reboot(
        command_key=task_key(task_of(store, reboot.id))
    )
    task = task_of(store, task_id)
    assert task.state == IN_PROGRESS
    assert task.result["awaiting_transfer_complete"] is True
    assert flag(store, device) is True
    assert pending_settings(store, device.id, detailed=True) == (
        "firmware_update:in_progress,reboot:in_progress"
    )


def test_transfer_complete_0_finishes_upgrade_and_clears_pending_flag(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image)
    # The CPE rebooted into the new image and reports it in the Inform of the session that
    # carries the TransferComplete.
    session = session_inform(
        engine,
        device,
        "1 BOOT",
        "7 TRANSFER COMPLETE",
        ("M Download", download.command_key),
        version="2.0",
        now=100.0,
    )
    answer = session.on_cpe_request(
        rpc.TransferComplete(download.command_key, rpc.FaultStruct(0, "")), now=101.0
    )
    assert answer == rpc.TransferCompleteResponse()
    task = task_of(store, task_id)
    assert task.state == DONE
    assert task.result["fault_code"] == 0
    assert task.result["expected_version"] == "2.0"
    assert task.result["version_check"] == "ok"
    assert "awaiting_transfer_complete" not in task.result
    assert flag(store, device) is False
    assert pending_settings(store, device.id, detailed=True) is None
    entry = store.history(device.id, limit=5)
    tc = next(h for h in entry if h.action == "transfer_complete")
    assert (tc.detail["task_id"], tc.detail["task_state"]) == (task_id, DONE)
    assert "task_done" in actions(store, device)


def test_download_status_0_completes_at_once_and_version_is_checked_at_next_inform(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id = want_firmware(store, engine, device, image)
    session = engine.open_session(device.id)
    assert isinstance(session.next_request(now=10.0), rpc.Download)
    session.on_response(
        rpc.DownloadResponse(0, "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"), now=11.0
    )
    task = task_of(store, task_id)
    assert task.state == DONE
    assert task.result["complete_time"] == "2024-01-01T00:01:00Z"
    assert task.result["version_check"] == "pending"  # this session still showed 1.0
    assert flag(store, device) is False

    session_inform(engine, device, "1 BOOT", version="2.0", now=200.0)
    task = task_of(store, task_id)
    assert (task.result["version_check"], task.result["reported_version"]) == ("ok", "2.0")
    assert "firmware_version_mismatch" not in actions(store, device)


def test_an_upgrade_the_cpe_did_not_install_fails_with_the_reason(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image)
    # TransferComplete before the CPE rebooted: still on 1.0, so the check waits.
    session = session_inform(
        engine,
        device,
        "7 TRANSFER COMPLETE",
        ("M Download", download.command_key),
        version="1.0",
        now=100.0,
    )
    session.on_cpe_request(rpc.TransferComplete(download.command_key), now=101.0)
    assert task_of(store, task_id).result["version_check"] == "pending"

    session_inform(engine, device, "2 PERIODIC", version="1.0", now=400.0)
    task = task_of(store, task_id)
    # TransferComplete 0 said done; the version the CPE runs says it failed.
    assert task.state == FAILED
    assert task.fault_string is not None and "not installed" in task.fault_string
    assert task.result["version_check"] == "mismatch"
    assert task.result["report_failed"] is True  # pending_settings: firmware_update:failed
    assert "1.0" in task.result["note"] and "2.0" in task.result["note"]
    mismatch = next(h for h in store.history(device.id) if h.action == "firmware_version_mismatch")
    assert mismatch.detail == {"task_id": task_id, "expected": "2.0", "reported": "1.0"}
    # Checked once: a later Inform adds nothing.
    session_inform(engine, device, "2 PERIODIC", version="1.0", now=700.0)
    assert actions(store, device).count("firmware_version_mismatch") == 1


def test_inform_without_software_version_keeps_the_check_pending(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image)
    engine.open_session(device.id).on_cpe_request(
        rpc.TransferComplete(download.command_key), now=50.0
    )
    engine.on_inform(device, inform("2 PERIODIC"), now=60.0)
    assert task_of(store, task_id).result["version_check"] == "pending"


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (9012, "File transfer server authentication failure"),
        (9016, "Unable to access file"),
        (9018, "File corrupted"),
    ],
)
def test_a_permanent_transfer_fault_fails_upgrade_clears_flag_and_reports_failed(
    engine: TaskEngine,
    store: Store,
    device: Device,
    image: FirmwareImage,
    code: int,
    text: str,
) -> None:
    task_id, download = start_download(engine, store, device, image)
    session = session_inform(
        engine,
        device,
        "7 TRANSFER COMPLETE",
        ("M Download", download.command_key),
        version="1.0",
        now=100.0,
    )
    answer = session.on_cpe_request(
        rpc.TransferComplete(download.command_key, rpc.FaultStruct(code, text)), now=101.0
    )
    assert answer == rpc.TransferCompleteResponse()
    task = task_of(store, task_id)
    assert (task.state, task.fault_code, task.fault_string) == (FAILED, code, text)
    assert task.attempts == 1  # a permanent transfer fault is final: no retry
    assert flag(store, device) is False
    assert pending_settings(store, device.id, detailed=True) == "firmware_update:failed"
    assert pending_settings(store, device.id, detailed=False) == "firmware_update"
    assert pending_details(store, device.id)["firmware_update"] is True
    history = store.history(device.id, limit=10)
    fault = next(h for h in history if h.action == "cwmp_fault")
    assert (fault.detail["task_id"], fault.detail["code"]) == (task_id, code)
    assert any(h.action == "task_failed" for h in history)
    # Nothing else about the device changed.
    fresh = store.get_device(device.id)
    assert fresh is not None and fresh.software_version == "1.0"
    assert fresh.firmware_image_id == image.id


@pytest.mark.parametrize("code", [9010, 9015, 9017, 9899])
def test_a_transient_transfer_fault_is_retried_with_backoff_then_fails(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage, code: int
) -> None:
    # E.g. the file server was down for the ACS's own restart: 9015, or 9017 mid-download.
    task_id, download = start_download(engine, store, device, image)
    now = 50.0
    for attempt in range(1, engine.max_attempts + 1):
        assert task_of(store, task_id).attempts == attempt
        engine.open_session(device.id).on_cpe_request(
            rpc.TransferComplete(download.command_key, rpc.FaultStruct(code, "x")), now=now
        )
        task = task_of(store, task_id)
        if attempt < engine.max_attempts:
            assert (task.state, task.fault_code) == (PENDING, code)
            assert task.next_attempt_at == engine.retry_at(attempt, now)
            assert flag(store, device) is True  # still on its way
            now = task.next_attempt_at
            session = engine.open_session(device.id)
            request = session.next_request(now=now)
            assert isinstance(request, rpc.Download)  # the same transfer, asked again
            session.on_response(rpc.DownloadResponse(1), now=now)
            download = request
    assert (task.state, task.fault_code) == (FAILED, code)
    assert flag(store, device) is False


def test_fault_without_string_gets_a_readable_message(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image)
    engine.open_session(device.id).on_cpe_request(
        rpc.TransferComplete(download.command_key, rpc.FaultStruct(9010, "")), now=50.0
    )
    assert task_of(store, task_id).fault_string == "CPE fault 9010"


def test_failed_upgrade_keeps_flag_while_a_newer_request_waits(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    first, download = start_download(engine, store, device, image)
    newer = want_firmware(store, engine, device, image)
    engine.open_session(device.id).on_cpe_request(
        rpc.TransferComplete(download.command_key, rpc.FaultStruct(9018, "x")), now=50.0
    )
    assert task_of(store, first).state == FAILED
    assert task_of(store, newer).state == PENDING
    assert flag(store, device) is True
    assert pending_settings(store, device.id, detailed=True) == "firmware_update:pending"


def test_download_rpc_fault_is_retried_then_fails_and_clears_flag(
    store: Store, device: Device, image: FirmwareImage
) -> None:
    engine = TaskEngine(store, cast(IReactorTime, Clock()), signer=FakeSigner(), max_attempts=2)
    task_id = want_firmware(store, engine, device, image)
    now = 10.0
    for attempt in (1, 2):
        session = engine.open_session(device.id)
        assert isinstance(session.next_request(now=now), rpc.Download), attempt
        session.on_response(rpc.Fault(9010, "cannot reach server"), now=now)
        task = task_of(store, task_id)
        now = (task.next_attempt_at or now) + 1
        if attempt == 1:
            assert (task.state, flag(store, device)) == (PENDING, True)
    task = task_of(store, task_id)
    assert (task.state, task.fault_code) == (FAILED, 9010)
    assert flag(store, device) is False
    assert pending_settings(store, device.id, detailed=True) == "firmware_update:failed"


def test_firmware_update_without_signer_or_image_fails_with_clear_message(
    store: Store, device: Device, image: FirmwareImage
) -> None:
    bare = TaskEngine(store, cast(IReactorTime, Clock()))
    task_id = want_firmware(store, bare, device, image)
    assert bare.open_session(device.id).next_request(now=10.0) is None
    task = task_of(store, task_id)
    assert task.state == FAILED and "not configured" in (task.fault_string or "")
    assert flag(store, device) is False

    signed = TaskEngine(store, cast(IReactorTime, Clock()), signer=FakeSigner())
    gone = signed.queue(
        device.id, "firmware_update", {"firmware_image": 999}, actor="op", wake=False, now=20.0
    )
    assert signed.open_session(device.id).next_request(now=21.0) is None
    assert "999 no longer exists" in (task_of(store, gone.id).fault_string or "")


def test_unconfirmed_transfer_fails_after_timeout_at_next_inform(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, _ = start_download(engine, store, device, image, now=10.0)
    session_inform(engine, device, "2 PERIODIC", version="1.0", now=10.0 + TIMEOUT - 1)
    assert task_of(store, task_id).state == IN_PROGRESS  # not yet
    session_inform(engine, device, "2 PERIODIC", version="1.0", now=10.0 + TIMEOUT + 1)
    task = task_of(store, task_id)
    assert task.state == FAILED
    assert f"within {TIMEOUT:g}s" in (task.fault_string or "")
    assert flag(store, device) is False
    assert pending_settings(store, device.id, detailed=True) == "firmware_update:failed"


def test_overdue_transfer_announced_by_the_inform_is_not_timed_out(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image, now=10.0)
    late = 10.0 + TIMEOUT + 50
    session = session_inform(
        engine,
        device,
        "7 TRANSFER COMPLETE",
        ("M Download", download.command_key),
        version="2.0",
        now=late,
    )
    assert task_of(store, task_id).state == IN_PROGRESS
    session.on_cpe_request(rpc.TransferComplete(download.command_key), now=late + 1)
    assert task_of(store, task_id).state == DONE


def test_late_transfer_complete_after_timeout_is_only_recorded(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image, now=10.0)
    assert engine.check_transfers(now=10.0 + TIMEOUT + 1) == [task_id]
    answer = engine.open_session(device.id).on_cpe_request(
        rpc.TransferComplete(download.command_key), now=10.0 + TIMEOUT + 2
    )
    assert answer == rpc.TransferCompleteResponse()
    assert task_of(store, task_id).state == FAILED
    entry = store.history(device.id, limit=1)[0]
    assert entry.action == "transfer_complete"
    assert (entry.detail["task_id"], entry.detail["late"]) == (task_id, True)


def test_transfer_watch_fails_overdue_transfers_on_the_clock(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage, clock: Clock
) -> None:
    clock.advance(10.0)
    task_id, _ = start_download(engine, store, device, image, now=10.0)
    watch = TransferWatch(engine, interval=60.0)
    watch.startService()
    try:
        clock.advance(TIMEOUT - 60)
        assert task_of(store, task_id).state == IN_PROGRESS
        clock.advance(120)  # the first check after the deadline
        assert task_of(store, task_id).state == FAILED
        assert flag(store, device) is False
    finally:
        watch.stopService()
    assert clock.getDelayedCalls() == []


def test_transfer_watch_survives_a_failing_check(
    engine: TaskEngine, store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []

    def broken(**_kw: Any) -> list[int]:
        calls.append(clock.seconds())
        raise RuntimeError("database is locked")

    monkeypatch.setattr(engine, "check_transfers", broken)
    watch = TransferWatch(engine, interval=10.0)
    watch.startService()
    try:
        clock.advance(10.0)
        clock.advance(10.0)
    finally:
        watch.stopService()
    assert calls == [10.0, 20.0]


def test_stranded_unanswered_download_runs_again_at_next_inform(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id = want_firmware(store, engine, device, image)
    session = engine.open_session(device.id)
    assert isinstance(session.next_request(now=10.0), rpc.Download)
    # The process died with the Download unanswered: a fresh engine sees the next Inform.
    fresh = TaskEngine(store, cast(IReactorTime, Clock()), signer=FakeSigner())
    session = session_inform(fresh, device, "2 PERIODIC", version="1.0", now=50.0)
    assert task_of(store, task_id).state == PENDING
    assert isinstance(session.next_request(now=50.0), rpc.Download)


def test_acknowledged_transfer_survives_a_restart_and_completes(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image)
    fresh = TaskEngine(store, cast(IReactorTime, Clock()), signer=FakeSigner())
    session = session_inform(
        fresh,
        device,
        "1 BOOT",
        "7 TRANSFER COMPLETE",
        ("M Download", download.command_key),
        version="2.0",
        now=100.0,
    )
    assert task_of(store, task_id).state == IN_PROGRESS
    assert session.next_request(now=100.0) is None  # not sent again
    session.on_cpe_request(rpc.TransferComplete(download.command_key), now=101.0)
    assert task_of(store, task_id).state == DONE


def test_transfer_complete_with_foreign_or_unknown_key_changes_no_task(
    engine: TaskEngine, store: Store, device: Device, image: FirmwareImage
) -> None:
    task_id, download = start_download(engine, store, device, image)
    other = make_device(store, "SN-OTHER")
    for key in ("vendor-key", "acs-task-999999", "acs-task-x1", ""):
        engine.open_session(device.id).on_cpe_request(rpc.TransferComplete(key), now=20.0)
    # The right key, but reported by another device.
    engine.open_session(other.id).on_cpe_request(
        rpc.TransferComplete(download.command_key), now=21.0
    )
    assert task_of(store, task_id).state == IN_PROGRESS
    assert "task_id" not in store.history(device.id, limit=1)[0].detail


def test_cpe_requests_are_answered_even_when_the_device_is_gone(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    session = engine.open_session(device.id)
    store.delete_device(device.id, now=5.0, actor="op")
    messages: list[tuple[rpc.Message, rpc.Message]] = [
        (rpc.TransferComplete("acs-task-1"), rpc.TransferCompleteResponse()),
        (
            rpc.AutonomousTransferComplete(
                "", "http://127.0.0.1/fw.bin", True, "1 Firmware Upgrade Image", 10
            ),
            rpc.AutonomousTransferCompleteResponse(),
        ),
        (
            rpc.RequestDownload("1 Firmware Upgrade Image"),
            rpc.Fault(8001, "Request denied: unknown device", "Server"),
        ),
    ]
    for message, response in messages:
        assert session.on_cpe_request(message, now=6.0) == response


def test_autonomous_transfer_and_request_download_are_recorded(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    session = engine.open_session(device.id)
    session.on_cpe_request(
        rpc.AutonomousTransferComplete(
            "http://127.0.0.1/announce",
            "http://127.0.0.1/fw-3.0.bin",
            True,
            "1 Firmware Upgrade Image",
            2048,
            "fw-3.0.bin",
            rpc.FaultStruct(9018, "corrupt"),
        ),
        now=6.0,
    )
    session.on_cpe_request(
        rpc.RequestDownload("1 Firmware Upgrade Image", (("Version", "3.0"),)), now=7.0
    )
    newest, older = store.history(device.id, limit=2)
    assert newest.action == "request_download"
    assert newest.detail["file_type_args"] == {"Version": "3.0"}
    assert older.action == "autonomous_transfer_complete"
    assert (older.detail["fault_code"], older.detail["file_size"]) == (9018, 2048)
    assert store.tasks_for_device(device.id) == []


def test_task_keys_round_trip_and_reject_foreign_keys() -> None:
    assert task_id_of_key("acs-task-42") == 42
    for key in ("", "acs-task-", "acs-task--1", "acs-task-1a", "task-1", "acs-task-" + "9" * 40):
        assert task_id_of_key(key) is None, key


# --- pending flag acknowledgement through the API ------------------------------------------


def test_patching_pending_false_acknowledges_a_failed_upgrade(harness: ApiHarness) -> None:
    store = harness.store
    org = store.ensure_organization("Default")
    device = store.create_device(
        serial_number="SN-ACK", name="ack", organization_id=org.id, now=T0, actor="t"
    )
    image = store.create_firmware_image(
        name="fw", version="2.0", size=3, sha256="00", filename="fw.bin", now=T0
    )
    store.update_device(
        device.id, now=T0, actor="t", firmware_image_id=image.id, firmware_image_is_pending=True
    )
    engine = harness.appliance.tasks
    task = engine.queue(
        device.id, "firmware_update", {"firmware_image": image.id}, actor="t", wake=False, now=T0
    )
    store.start_task(task.id, now=T0)
    engine.fail_transfer(store.get_task(task.id), T0 + 1, 9018, "corrupt", None)  # type: ignore[arg-type]
    assert task_of(store, task.id).result[REPORT_FAILED] is True
    assert pending_settings(store, device.id, detailed=True) == "firmware_update:failed"

    row, _ = store.create_token("ops", "operator", [], now=T0)
    req = ApiRequest(cast(Any, None), Principal.of_token(row))
    body: dict[str, Any] = {"firmware_image_is_pending": False}
    fresh = store.get_device(device.id)
    assert fresh is not None
    apply_operations(Api(harness.appliance), req, fresh, take_operations(store, body))
    assert pending_settings(store, device.id, detailed=True) is None


# --- backup and restore ---------------------------------------------------------------------


def store_upload(store: Store, device: Device, task_id: int, now: float) -> Backup:
    """What the file server does when the CPE PUTs its configuration file."""
    return store.create_backup(
        device.id, task_id=task_id, filename=f"{task_id}.cfg", size=42, sha256="cd" * 32, now=now
    )


def start_upload(engine: TaskEngine, device: Device, now: float = 10.0) -> tuple[int, rpc.Upload]:
    task = engine.queue(device.id, "backup", actor="op", wake=False, now=now)
    session = engine.open_session(device.id)
    request = session.next_request(now=now)
    assert isinstance(request, rpc.Upload)
    session.on_response(rpc.UploadResponse(1), now=now + 1)
    return task.id, request


def test_backup_sends_upload_and_completes_once_file_and_transfer_complete_arrive(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task_id, upload = start_upload(engine, device)
    assert upload == rpc.Upload(
        command_key=f"acs-task-{task_id}",
        file_type="1 Vendor Configuration File",
        url=f"http://127.0.0.1:7567/backup/{task_id}",
    )
    assert task_of(store, task_id).state == IN_PROGRESS
    backup = store_upload(store, device, task_id, now=20.0)
    session = session_inform(
        engine,
        device,
        "7 TRANSFER COMPLETE",
        ("M Upload", upload.command_key),
        version="1.0",
        now=30.0,
    )
    session.on_cpe_request(rpc.TransferComplete(upload.command_key), now=31.0)
    task = task_of(store, task_id)
    assert task.state == DONE
    assert (task.result["backup"], task.result["size"]) == (backup.id, 42)
    assert pending_settings(store, device.id, detailed=True) is None


def test_backup_fails_when_no_file_reached_the_server(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task_id, upload = start_upload(engine, device)
    engine.open_session(device.id).on_cpe_request(
        rpc.TransferComplete(upload.command_key), now=31.0
    )
    task = task_of(store, task_id)
    assert task.state == FAILED
    assert "no file reached the file server" in (task.fault_string or "")
    assert store.list_backups(device.id) == []


def test_backup_upload_status_0_completes_at_once_when_stored(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "backup", actor="op", wake=False, now=10.0)
    session = engine.open_session(device.id)
    assert isinstance(session.next_request(now=10.0), rpc.Upload)
    backup = store_upload(store, device, task.id, now=10.5)
    session.on_response(rpc.UploadResponse(0), now=11.0)
    done = task_of(store, task.id)
    assert (done.state, done.result["backup"]) == (DONE, backup.id)


def test_backup_upload_fault_reported_by_transfer_complete_fails_the_task(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task_id, upload = start_upload(engine, device)
    engine.open_session(device.id).on_cpe_request(
        rpc.TransferComplete(upload.command_key, rpc.FaultStruct(9012, "Upload refused")),
        now=31.0,
    )
    task = task_of(store, task_id)
    assert (task.state, task.fault_code, task.fault_string) == (FAILED, 9012, "Upload refused")


def test_restore_downloads_the_backup_as_vendor_configuration_file(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    backup = store_upload(store, device, None, now=5.0)  # type: ignore[arg-type]
    task = engine.queue(device.id, "restore", {"backup": backup.id}, actor="op", wake=False, now=10)
    session = engine.open_session(device.id)
    request = session.next_request(now=10.0)
    assert request == rpc.Download(
        command_key=f"acs-task-{task.id}",
        file_type="3 Vendor Configuration File",
        url=f"http://127.0.0.1:7567/backup/{task.id}/{backup.id}",
        file_size=42,
    )
    session.on_response(rpc.DownloadResponse(1), now=11.0)
    assert task_of(store, task.id).state == IN_PROGRESS
    session_inform(engine, device, "1 BOOT", version="1.0", now=50.0).on_cpe_request(
        rpc.TransferComplete(f"acs-task-{task.id}"), now=51.0
    )
    done = task_of(store, task.id)
    assert (done.state, done.result["backup"]) == (DONE, backup.id)


def test_restore_refuses_a_backup_of_another_device_or_a_deleted_one(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    other = make_device(store, "SN-OTHER")
    foreign = store_upload(store, other, None, now=5.0)  # type: ignore[arg-type]
    task = engine.queue(
        device.id, "restore", {"backup": foreign.id}, actor="op", wake=False, now=10
    )
    assert engine.open_session(device.id).next_request(now=10.0) is None
    failed = task_of(store, task.id)
    assert failed.state == FAILED and "no longer exists" in (failed.fault_string or "")


@pytest.mark.parametrize("bad", [None, {}, {"backup": 0}, {"backup": "1"}, {"backup": True}])
def test_restore_args_need_a_backup_id(bad: Any) -> None:
    with pytest.raises(ValueError, match="backup"):
        validate_args("restore", bad)


def test_backup_takes_no_args() -> None:
    assert validate_args("backup", None) == {}
    with pytest.raises(ValueError, match="unknown argument"):
        validate_args("backup", {"path": "x"})


def test_restart_keeps_acknowledged_backup_waiting(tmp_path: Path) -> None:
    path = tmp_path / "acs.db"
    with Store.open(path) as first:
        device = make_device(first)
        engine = TaskEngine(first, cast(IReactorTime, Clock()), signer=FakeSigner())
        task_id, upload = start_upload(engine, device)
    with Store.open(path) as second:
        engine = TaskEngine(second, cast(IReactorTime, Clock()), signer=FakeSigner())
        store_upload(second, device, task_id, now=40.0)
        session = session_inform(engine, device, "7 TRANSFER COMPLETE", version="1.0", now=50.0)
        session.on_cpe_request(rpc.TransferComplete(upload.command_key), now=51.0)
        assert task_of(second, task_id).state == DONE
