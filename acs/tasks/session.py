"""The session driver: `SessionTasks` runs a device's queued tasks, one at a time, during the
ACS-request phase of one CWMP session, and answers the CPE's own requests (TransferComplete,
GetRPCMethods...). The only in-memory state of the task engine is its cursor here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from acs.cwmp import rpc
from acs.cwmp.versions import defines, lacks
from acs.store.health import is_storage_full
from acs.store.models import IN_PROGRESS, Task
from acs.tasks import software
from acs.tasks.cpe_requests import autonomous_transfer, request_download
from acs.tasks.kinds import KINDS
from acs.tasks.run import (
    ACKNOWLEDGED,
    ACKNOWLEDGED_RPC,
    CpeFault,
    SettingsRefused,
    TaskError,
    TaskRun,
    WaitForInform,
    WaitForTransfer,
    fault_summary,
    log_task,
)

if TYPE_CHECKING:
    from acs.tasks.engine import TaskEngine

log = Logger(namespace="acs.tasks")

# What the ACS tells a CPE it supports (answer to the CPE's GetRPCMethods).
ACS_METHODS = (
    "Inform",
    "GetRPCMethods",
    "TransferComplete",
    "AutonomousTransferComplete",
    "RequestDownload",
    "DUStateChangeComplete",
    "AutonomousDUStateChangeComplete",
    "Kicked",
)


class SessionTasks:
    """Drives the ACS-request phase of one CWMP session for one device.

    One task at a time, in the store's queue order. Every store effect of an answer happens
    in `on_response`, inside the caller's transaction; `next_request` only emits.
    """

    def __init__(self, engine: TaskEngine, device_id: int, version: str | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.device_id = device_id
        self.version = version  # the session's CWMP version (None: 1.0)
        self._run: TaskRun | None = None
        self._next: rpc.Message | None = None  # produced by on_response, emitted next
        self._started: set[int] = set()

    @property
    def idle(self) -> bool:
        """No task under way: what the session does next is whatever the queue holds."""
        return self._run is None

    def next_request(self, *, now: float) -> rpc.Message | None:
        run = self._run
        if run is not None and run.request is not None:
            # Asked for a new request while the last one is unanswered: the exchange broke.
            log.warn(
                "device {device_id}: next request asked before task {task_id} got an answer",
                device_id=self.device_id,
                task_id=run.task.id,
            )
            self.abort(now=now, reason=f"no answer to {type(run.request).__name__}")
        while True:
            run = self._run
            if run is not None:
                if self._next is not None:
                    request, self._next = self._next, None
                    run.request = request
                    return request
                self._run = None  # finished in on_response
                continue
            task = self.store.next_task(self.device_id, now=now)
            if task is None or task.id in self._started:
                # A task that came back runnable in the same session (retry delay 0) waits for
                # the next session rather than looping here.
                return None
            self._start(task, now)

    def _start(self, task: Task, now: float) -> None:
        self._started.add(task.id)
        task = self.store.start_task(task.id, now=now)
        device = self.store.get_device(self.device_id)
        log_task(task, "starting (attempt {attempt})", attempt=task.attempts)
        kind = KINDS.get(task.kind)
        if kind is None:
            # A row written by a newer version or by hand: fail it rather than loop on it.
            log_task(task, "is of no known kind", level="error")
            self.store.fail_task(
                task.id,
                now=now,
                fault_code=None,
                fault_string=f"unknown task kind {task.kind!r}",
                retry_at=None,
            )
            return
        run = TaskRun(self.engine, task, device, now, kind.run)
        self._run = run
        self._advance(run, None, now)

    def on_response(self, message: rpc.Message, *, now: float) -> None:
        run = self._run
        if run is None or run.request is None:
            log.warn(
                "device {device_id}: unsolicited {message} ignored",
                device_id=self.device_id,
                message=type(message).__name__,
            )
            return
        run.request = None
        self._advance(run, message, now)

    def _advance(self, run: TaskRun, answer: rpc.Message | None, now: float) -> None:
        """Feed `answer` to the task; store its next RPC in _next or record how it ended."""
        run.now = now
        task = run.task
        try:
            if answer is None:
                request = next(run.steps)
            elif isinstance(answer, rpc.Fault):
                request = run.steps.throw(CpeFault(answer))
            else:
                request = run.steps.send(answer)
        except StopIteration as stop:
            self._run_ended(run)
            if isinstance(stop.value, WaitForTransfer):
                # Recorded on the task so an Inform after a crash can tell an acknowledged
                # transfer (wait for its TransferComplete) from a stranded one (run it again).
                self.store.update_task_result(task.id, {**stop.value.detail, ACKNOWLEDGED: True})
                log_task(task, "accepted, awaiting TransferComplete")
            elif isinstance(stop.value, WaitForInform):
                # Recorded too: after a crash, an Inform without the reboot's events means
                # an unacknowledged RPC never reached the CPE (run it again).
                self.store.update_task_result(task.id, {ACKNOWLEDGED_RPC: True})
                log_task(task, "acknowledged, awaiting Inform")
            else:
                self.store.complete_task(task.id, now=now, result=stop.value)
            return
        except CpeFault as exc:
            self._run_ended(run)
            self._fail(
                task,
                now,
                exc.fault.code,
                fault_summary(exc.fault),
                permanent=exc.fault.code in self.engine.permanent_faults,
                fault=exc.fault,
                extra=exc.extra if isinstance(exc, SettingsRefused) else None,
            )
            return
        except TaskError as exc:
            self._run_ended(run)
            self._fail(task, now, None, exc.message, permanent=exc.permanent)
            return
        except Exception as exc:  # a bug or a store error: end the task, don't wedge the session
            if is_storage_full(exc):
                raise  # not the task's fault: the session ends (503) and the task is retried
            log.failure(
                "device {device_id}: task {task_id} crashed",
                device_id=self.device_id,
                task_id=task.id,
            )
            self._run_ended(run)
            self._fail(task, now, None, f"internal error: {exc}", permanent=True)
            return
        missing = lacks(self.version, request)
        if missing is not None:
            # The CPE's CWMP version has no such RPC (or FileType): a protocol violation.
            self._run_ended(run)
            self._fail(
                task, now, None, f"the CPE speaks CWMP {self.version or '1.0'}, {missing}",
                permanent=True,
            )  # fmt: skip
            return
        self._next = request

    def _run_ended(self, run: TaskRun) -> None:
        if self._run is run:
            self._run = None
        self._next = None
        run.steps.close()

    def _fail(
        self,
        task: Task,
        now: float,
        code: int | None,
        message: str,
        *,
        permanent: bool,
        fault: rpc.Fault | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        current = self.store.get_task(task.id)
        if current is None or current.state != IN_PROGRESS:
            return  # cancelled/requeued meanwhile (e.g. a newer session took over)
        result: dict[str, Any] | None = None
        if fault is not None and fault.set_parameter_values_faults:
            # Which parameter the CPE refused and why: kept on the task and in history.
            result = {
                "fault_code": fault.code,
                "fault_string": fault.string,
                "parameter_faults": [
                    {"name": f.name, "code": f.code, "string": f.string}
                    for f in fault.set_parameter_values_faults
                ],
            }
            self.store.add_history(
                self.device_id, "task_fault_detail", {"task_id": task.id, **result}, now=now
            )
        if extra:
            # Engine bookkeeping (e.g. refused settings by fingerprint): the result only.
            result = {**(result or {}), **extra}
        retry_at = None if permanent else self.engine.retry_at(current.attempts, now)
        log_task(
            task, "failed ({message}); retry at {retry_at}", message=message, retry_at=retry_at
        )
        failed = self.store.fail_task(
            task.id,
            now=now,
            fault_code=code,
            fault_string=message,
            retry_at=retry_at,
            result=result,
        )
        self.engine.after_failure(failed, now)

    def abort(self, *, now: float, reason: str) -> None:
        """The session died: retry the in-flight task with backoff (or fail it for good)."""
        run = self._run
        if run is None:
            return
        self._run_ended(run)
        if run.committed is not None:
            result = {**run.committed, "refresh_fault": {"code": None, "string": reason}}
            self.store.complete_task(run.task.id, now=now, result=result)
            return
        self._fail(run.task, now, None, f"session aborted: {reason}", permanent=False)

    def on_cpe_request(self, message: rpc.Message, *, now: float) -> rpc.Message:
        """Answer a CPE-initiated request (other than Inform) and record it in history."""
        response: rpc.Message
        if isinstance(message, rpc.TransferComplete):
            action = "transfer_complete"
            detail: dict[str, Any] = {
                "command_key": message.command_key,
                "fault_code": message.fault.code,
                "fault_string": message.fault.string,
                "start_time": message.start_time,
                "complete_time": message.complete_time,
            }
            detail.update(
                self._reported(
                    message, lambda: self.engine.on_transfer_complete(self.device_id, message, now)
                )
            )
            response = rpc.TransferCompleteResponse()
        elif isinstance(message, rpc.AutonomousTransferComplete):
            action = "autonomous_transfer_complete"
            detail = {
                "announce_url": message.announce_url,
                "transfer_url": message.transfer_url,
                "is_download": message.is_download,
                "file_type": message.file_type,
                "file_size": message.file_size,
                "target_file_name": message.target_file_name,
                "fault_code": message.fault.code,
                "fault_string": message.fault.string,
                "start_time": message.start_time,
                "complete_time": message.complete_time,
            }
            detail.update(
                self._reported(
                    message,
                    lambda: autonomous_transfer(self.engine, self.device_id, message, now),
                )
            )
            response = rpc.AutonomousTransferCompleteResponse()
        elif isinstance(message, rpc.DUStateChangeComplete):
            action = "du_state_change_complete"
            detail = {
                "command_key": message.command_key,
                "results": software.report(message.results),
            }
            detail.update(
                self._reported(
                    message, lambda: software.on_complete(self.engine, self.device_id, message, now)
                )
            )
            response = rpc.DUStateChangeCompleteResponse()
        elif isinstance(message, rpc.AutonomousDUStateChangeComplete):
            action = "autonomous_du_state_change_complete"
            detail = {"results": software.report(message.results)}
            detail.update(
                self._reported(
                    message,
                    lambda: software.on_autonomous(self.engine, self.device_id, message, now),
                )
            )
            response = rpc.AutonomousDUStateChangeCompleteResponse()
        elif isinstance(message, rpc.RequestDownload):
            action = "request_download"
            detail = {
                "file_type": message.file_type,
                "file_type_args": {k: v for k, v in message.file_type_args},
            }
            response, outcome = self._request_download(message, now)
            detail.update(outcome)
        elif isinstance(message, rpc.Kicked):
            action = "kicked"
            detail = {
                "command": message.command,
                "referer": message.referer,
                "arg": message.arg,
                "next": message.next,
            }
            response = rpc.KickedResponse(next_url=message.next)
        elif isinstance(message, rpc.GetRPCMethods):
            action = "get_rpc_methods"
            detail = {}
            response = rpc.GetRPCMethodsResponse(
                tuple(m for m in ACS_METHODS if defines(self.version, rpc.MESSAGE_TYPES[m]))
            )
        else:
            log.warn(
                "device {device_id}: unsupported CPE request {message}",
                device_id=self.device_id,
                message=type(message).__name__,
            )
            return rpc.Fault(code=8000, string="Method not supported", faultcode="Server")
        try:
            self.store.add_history(self.device_id, action, detail, now=now)
        except Exception:
            # E.g. the device was deleted mid-session: still answer the CPE, never a 500.
            log.failure(
                "device {device_id}: cannot record {action}",
                device_id=self.device_id,
                action=action,
            )
        return response

    def _request_download(
        self, message: rpc.RequestDownload, now: float
    ) -> tuple[rpc.Message, dict[str, Any]]:
        try:
            with self.store.transaction():
                return request_download(self.engine, self.device_id, message, now)
        except Exception as exc:
            if is_storage_full(exc):
                raise  # 503: the CPE asks again in a later session
            log.failure(
                "device {device_id}: cannot act on RequestDownload {file_type}",
                device_id=self.device_id,
                file_type=message.file_type,
            )
            fault = rpc.Fault(code=8002, string="Internal error", faultcode="Server")
            return fault, {"error": f"internal error: {exc}"}

    def _reported(self, message: rpc.Message, act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """What acting on a CPE's completion report adds to its history entry. The CPE must
        get its response whatever happens here: otherwise it resends the report every
        session. A failure rolls back only this part (savepoint)."""
        try:
            with self.store.transaction():
                return act()
        except Exception as exc:
            if is_storage_full(exc):
                raise  # unacknowledged (503), the CPE sends the report again in a later session
            log.failure(
                "device {device_id}: cannot apply {message}",
                device_id=self.device_id,
                message=type(message).__name__,
            )
            return {"error": f"internal error: {exc}"}
