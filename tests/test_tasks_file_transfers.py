"""The file transfer kinds in a session (acs/tasks/filekinds.py), sans IO: download and
upload of stored files, schedule_download with its time windows, cancel_transfer and
get_all_queued_transfers; the RPCs a session's CWMP version lacks fail the task cleanly.
"""

from __future__ import annotations

from typing import cast

import pytest
from test_transfers import FakeSigner, make_device, task_of
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import CANCELLED, DONE, FAILED, IN_PROGRESS, Device, Store
from acs.store.models import StoredFile
from acs.tasks import TaskEngine, task_key

WINDOWS = [
    {"window_start": 0, "window_end": 3600, "mode": "1 At Any Time", "user_message": "",
     "max_retries": -1},
    {"window_start": 7200, "window_end": 10800, "mode": "4 Confirmation Needed",
     "user_message": "Update tonight", "max_retries": 2},
]  # fmt: skip


@pytest.fixture
def engine(store: Store) -> TaskEngine:
    return TaskEngine(store, cast(IReactorTime, Clock()), signer=FakeSigner(), transfer_timeout=600)


@pytest.fixture
def device(store: Store) -> Device:
    return make_device(store)


@pytest.fixture
def stored(store: Store) -> StoredFile:
    return store.create_file(
        name="cfg", file_type="3 Vendor Configuration File", size=99, sha256="a" * 64,
        filename="cfg.xml", now=1.0,
    )  # fmt: skip


def test_a_download_sends_the_stored_file_with_its_type_name_and_delay(
    engine: TaskEngine, store: Store, device: Device, stored: StoredFile
) -> None:
    task = engine.queue(
        device.id, "download", {"file": stored.id, "delay_seconds": 30}, actor="op", wake=False
    )
    session = engine.open_session(device.id)
    assert session.next_request(now=10.0) == rpc.Download(
        command_key=task_key(task),
        file_type="3 Vendor Configuration File",
        url=f"http://127.0.0.1:7567/file/{stored.id}/cfg.xml?task={task.id}",
        file_size=99,
        target_file_name="cfg.xml",
        delay_seconds=30,
    )
    session.on_response(rpc.DownloadResponse(1), now=11.0)
    assert task_of(store, task.id).state == IN_PROGRESS
    # Its delay counts on top of the transfer timeout before it is overdue.
    assert engine.check_transfers(now=10.0 + 600 + 29) == []
    assert engine.check_transfers(now=10.0 + 600 + 31) == [task.id]


def test_a_download_of_a_file_deleted_meanwhile_fails_for_good(
    engine: TaskEngine, store: Store, device: Device, stored: StoredFile
) -> None:
    task = engine.queue(device.id, "download", {"file": stored.id}, actor="op", wake=False)
    with store.transaction():  # the store refuses this delete: a hand-edited database
        store._conn.execute("DELETE FROM files WHERE id = ?", (stored.id,))
    assert engine.open_session(device.id).next_request(now=10.0) is None
    failed = task_of(store, task.id)
    assert (failed.state, failed.fault_string) == (FAILED, f"file {stored.id} no longer exists")


def test_an_upload_completes_with_the_stored_file(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(
        device.id, "upload", {"file_type": "2 Vendor Log File"}, actor="op", wake=False
    )
    session = engine.open_session(device.id)
    assert session.next_request(now=10.0) == rpc.Upload(
        command_key=task_key(task),
        file_type="2 Vendor Log File",
        url=f"http://127.0.0.1:7567/upload/{task.id}",
    )
    session.on_response(rpc.UploadResponse(1), now=11.0)
    complete = rpc.TransferComplete(task_key(task), rpc.FaultStruct(0, ""), "t0", "t1")
    # No file reached the file server: the CPE's word is not enough.
    engine.on_transfer_complete(device.id, complete, now=12.0)
    assert task_of(store, task.id).state == FAILED

    again = engine.queue(
        device.id, "upload", {"file_type": "2 Vendor Log File"}, actor="op", wake=False
    )
    session = engine.open_session(device.id)
    session.next_request(now=20.0)
    session.on_response(rpc.UploadResponse(1), now=21.0)
    upload = store.create_file(
        name="log", file_type="2 Vendor Log File", size=5, sha256="b" * 64, filename="l.log",
        now=21.5, device_id=device.id, task_id=again.id,
    )  # fmt: skip
    complete = rpc.TransferComplete(task_key(again), rpc.FaultStruct(0, ""), "t0", "t1")
    engine.on_transfer_complete(device.id, complete, now=22.0)
    done = task_of(store, again.id)
    assert done.state == DONE
    assert (done.result["file"], done.result["size"], done.result["sha256"]) == (
        upload.id,
        5,
        "b" * 64,
    )


def test_schedule_download_sends_its_windows_and_waits_for_the_last_one(
    engine: TaskEngine, store: Store, device: Device, stored: StoredFile
) -> None:
    task = engine.queue(
        device.id, "schedule_download", {"file": stored.id, "time_windows": WINDOWS},
        actor="op", wake=False,
    )  # fmt: skip
    session = engine.open_session(device.id, "1.2")
    assert session.next_request(now=10.0) == rpc.ScheduleDownload(
        command_key=task_key(task),
        file_type="3 Vendor Configuration File",
        url=f"http://127.0.0.1:7567/file/{stored.id}/cfg.xml?task={task.id}",
        time_windows=(
            rpc.TimeWindow(0, 3600, "1 At Any Time", "", -1),
            rpc.TimeWindow(7200, 10800, "4 Confirmation Needed", "Update tonight", 2),
        ),
        file_size=99,
        target_file_name="cfg.xml",
    )
    session.on_response(rpc.ScheduleDownloadResponse(), now=11.0)
    assert task_of(store, task.id).result["awaiting_transfer_complete"] is True
    assert engine.check_transfers(now=10.0 + 600 + 10799) == []
    assert engine.check_transfers(now=10.0 + 600 + 10801) == [task.id]


@pytest.mark.parametrize(
    ("kind", "args", "version", "method"),
    [
        ("schedule_download", {"time_windows": WINDOWS[:1]}, "1.1", "ScheduleDownload"),
        ("get_all_queued_transfers", {}, "1.0", "GetAllQueuedTransfers"),
        ("download", {"file_type": "4 Tone File"}, "1.1", "FileType '4 Tone File'"),
        ("upload", {"file_type": "4 Vendor Log File 2"}, "1.0", "FileType '4 Vendor Log File 2'"),
    ],
)
def test_an_rpc_the_sessions_version_lacks_fails_the_task_without_sending_it(
    engine: TaskEngine,
    store: Store,
    device: Device,
    stored: StoredFile,
    kind: str,
    args: dict[str, object],
    version: str,
    method: str,
) -> None:
    if kind in ("schedule_download", "download"):
        args = {**args, "file": stored.id}
    task = engine.queue(device.id, kind, args, actor="op", wake=False)
    reboot = engine.queue(device.id, "reboot", actor="op", wake=False)
    session = engine.open_session(device.id, version)
    # The next task runs instead; the refused one failed for good, saying why.
    assert isinstance(session.next_request(now=10.0), rpc.Reboot)
    failed = task_of(store, task.id)
    assert failed.state == FAILED and failed.next_attempt_at is None
    assert f"CWMP {version}, which has no {method}" in failed.fault_string
    assert task_of(store, reboot.id).state == IN_PROGRESS


def test_cancel_transfer_ends_the_transfer_the_cpe_agreed_to_drop(
    engine: TaskEngine, store: Store, device: Device, stored: StoredFile
) -> None:
    download = engine.queue(device.id, "download", {"file": stored.id}, actor="op", wake=False)
    session = engine.open_session(device.id, "1.2")
    session.next_request(now=10.0)
    session.on_response(rpc.DownloadResponse(1), now=11.0)
    cancel = engine.queue(
        device.id, "cancel_transfer", {"task": download.id}, actor="op", wake=False
    )
    assert session.next_request(now=12.0) == rpc.CancelTransfer(task_key(download))
    session.on_response(rpc.CancelTransferResponse(), now=13.0)
    assert task_of(store, cancel.id).result == {"task": download.id, "sent": True}
    assert task_of(store, download.id).state == CANCELLED


def test_cancel_transfer_refused_by_the_cpe_leaves_the_transfer_running(
    engine: TaskEngine, store: Store, device: Device, stored: StoredFile
) -> None:
    download = engine.queue(device.id, "download", {"file": stored.id}, actor="op", wake=False)
    session = engine.open_session(device.id, "1.2")
    session.next_request(now=10.0)
    session.on_response(rpc.DownloadResponse(1), now=11.0)
    cancel = engine.queue(
        device.id, "cancel_transfer", {"task": download.id}, actor="op", wake=False
    )
    session.next_request(now=12.0)
    session.on_response(rpc.Fault(9021, "Cancelation not permitted", "Client"), now=13.0)
    assert task_of(store, cancel.id).fault_code == 9021
    assert task_of(store, download.id).state == IN_PROGRESS


def test_cancel_of_a_transfer_not_yet_sent_needs_no_rpc(
    engine: TaskEngine, store: Store, device: Device, stored: StoredFile
) -> None:
    download = engine.queue(
        device.id, "download", {"file": stored.id}, actor="op", wake=False, scheduled_at=1e9
    )
    cancel = engine.queue(
        device.id, "cancel_transfer", {"task": download.id}, actor="op", wake=False
    )
    assert engine.open_session(device.id, "1.2").next_request(now=10.0) is None
    assert task_of(store, cancel.id).result == {"task": download.id, "sent": False}
    assert task_of(store, download.id).state == CANCELLED


def test_get_all_queued_transfers_lists_every_transfer(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "get_all_queued_transfers", {}, actor="op", wake=False)
    session = engine.open_session(device.id, "1.2")
    assert session.next_request(now=10.0) == rpc.GetAllQueuedTransfers()
    answer = rpc.GetAllQueuedTransfersResponse(
        tuple(rpc.AllQueuedTransfer(f"k{i}", 1, True, "2 Web Content", i) for i in range(20))
    )
    session.on_response(answer, now=11.0)
    transfers = task_of(store, task.id).result["transfers"]
    assert len(transfers) == 16  # AllTransferList holds at most 16
    assert transfers[1] == {
        "command_key": "k1", "state": 1, "is_download": True, "file_type": "2 Web Content",
        "file_size": 1, "target_file_name": "",
    }  # fmt: skip


def request(engine: TaskEngine, device: Device, file_type: str) -> rpc.Message:
    session = engine.open_session(device.id, "1.2")
    return session.on_cpe_request(rpc.RequestDownload(file_type), now=30.0)


def test_request_download_queues_the_newest_file_meant_for_the_cpe(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    def web(oui: str | None, product_class: str | None) -> StoredFile:
        return store.create_file(
            name="web", file_type="2 Web Content", size=1, sha256="c" * 64, filename="w",
            now=1.0, oui=oui, product_class=product_class,
        )  # fmt: skip

    store.update_device(device.id, now=2.0, actor="t", oui="00D09E", product_class="HG-181")
    generic = web(None, None)
    web("001122", None)  # another manufacturer's
    web("00D09E", "OTHER")  # another model's
    assert request(engine, device, "2 Web Content") == rpc.RequestDownloadResponse()
    [task] = [t for t in store.tasks_for_device(device.id) if t.kind == "download"]
    assert (task.args, task.actor) == ({"file": generic.id}, "cpe")
    mine = web("00D09E", "HG-181")
    request(engine, device, "2 Web Content")
    request(engine, device, "2 Web Content")  # asked twice: queued once
    downloads = [t.args for t in store.tasks_for_device(device.id) if t.kind == "download"]
    assert downloads == [{"file": generic.id}, {"file": mine.id}]
    [entry, *_] = store.history(device.id)
    assert (entry.action, entry.detail["file"]) == ("request_download", mine.id)


def test_request_download_without_a_match_is_refused_with_the_acs_fault(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    for file_type, code in (
        ("4 Tone File", 8001),  # nothing stored
        ("1 Firmware Upgrade Image", 8001),  # no image for its type
        ("9 Nonsense", 8003),
    ):
        answer = request(engine, device, file_type)
        assert isinstance(answer, rpc.Fault) and answer.code == code, (file_type, answer)
    assert store.tasks_for_device(device.id) == []
    assert store.history(device.id)[0].detail["fault_code"] == 8003


def test_request_download_of_firmware_sends_a_newer_image_of_the_cpes_type(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    kind = store.create_device_type(now=1.0, actor="t", name="GW", default_settings={})
    store.update_device(device.id, now=2.0, actor="t", type_id=kind.id)
    image = store.create_firmware_image(
        name="gw", version="1.0", size=1, sha256="d" * 64, filename="gw.bin", now=1.0,
        device_type_id=kind.id,
    )  # fmt: skip
    answer = request(engine, device, "1 Firmware Upgrade Image")
    assert isinstance(answer, rpc.Fault)  # the device runs 1.0 already
    newer = store.create_firmware_image(
        name="gw", version="2.0", size=1, sha256="e" * 64, filename="gw2.bin", now=1.0,
        device_type_id=kind.id,
    )  # fmt: skip
    assert image.id != newer.id
    assert request(engine, device, "1 Firmware Upgrade Image") == rpc.RequestDownloadResponse()
    [task] = store.tasks_for_device(device.id)
    assert task.args == {"firmware_image": newer.id}
