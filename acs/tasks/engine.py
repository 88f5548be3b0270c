"""The task engine: queues validated tasks, hands out per-session drivers, and reacts to
Informs (confirming, recovering and timing out tasks, queuing provisioning and desired-state
pushes) and to TransferCompletes. Tasks live in the store, so a restart loses nothing.
Nothing here blocks or touches SQL directly; the reactor is used only for `seconds()` when a
caller does not pass `now`. What each kind does and how it ends is in `acs.tasks.kinds`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs.clock import Clock, DelayedCall
from acs.cwmp import rpc
from acs.cwmp.paths import DEFAULT_ROOT, MAX_PATH, PATH_RE, ROOTS
from acs.store import NotFound, Store
from acs.store.models import DONE, FAILED, FINISHED_STATES, IN_PROGRESS, PENDING, Device, Task
from acs.tasks import software
from acs.tasks.kinds import (
    INFORM_KINDS,
    KINDS,
    REQUEUE_KINDS,
    RESET_KINDS,
    TRANSFER_KINDS,
    validate_args,
)
from acs.tasks.run import (
    ACKNOWLEDGED,
    ACKNOWLEDGED_RPC,
    PERMANENT_FAULTS,
    REPORT_FAILED,
    RESUMED,
    VERSION_CHECK,
    StunOffer,
    TaskError,
    TransferUrls,
    XmppOffer,
    log_task,
    task_id_of_key,
    task_key,
)
from acs.tasks.session import SessionTasks
from acs.tasks.settings import EffectiveSetting, effective, value_fingerprint

log = Logger(namespace="acs.tasks")

# TR-069 event of an Inform reporting parameters whose value changed (A.3.3.1).
VALUE_CHANGE = "4 VALUE CHANGE"
# Events after which an Inform's values go into the stored tree: a boot, values changed, a
# transfer the CPE made on its own (a firmware image: the new SoftwareVersion).
TREE_EVENTS = frozenset({"1 BOOT", VALUE_CHANGE, "10 AUTONOMOUS TRANSFER COMPLETE"})
# Values of one Inform written to the stored tree, at most.
MAX_INFORM_VALUES = 1024

# Callers waiting at once for tasks to finish, over all tasks (each an API request that
# holds its connection open for at most its timeout).
MAX_WAITERS = 1000


def _cancel_timer(result: object, timer: DelayedCall) -> object:
    if timer.active():
        timer.cancel()
    return result


# The method events of an Inform announcing a TransferComplete (or, for a change_du_state,
# a DUStateChangeComplete) of ours (TR-069 3.7.1.5).
TRANSFER_EVENTS = ("M Download", "M Upload", "M ScheduleDownload", software.EVENT)
# TransferComplete faults that will not go away by transferring again (authentication,
# protocol, no such file, corrupted or unauthenticated file); anything else (9010/9011
# generic failures, 9015 file server unreachable, 9017 incomplete, e.g. across the ACS's own
# restart) is retried with the usual backoff.
PERMANENT_TRANSFER_FAULTS = frozenset({9012, 9013, 9016, 9018, 9019})


# When an automatic provisioning failed for good, don't queue another one at every Inform
# (it would fail the same way each session); try again after this long, or on BOOTSTRAP.
REPROVISION_AFTER = 3600.0


class TaskEngine:
    """Queues tasks (validated) and hands out per-session drivers; reacts to Informs."""

    def __init__(
        self,
        store: Store,
        reactor: Clock,
        *,
        wake: Callable[[int], Deferred[Any]] | None = None,
        gpv_batch: int = 32,
        max_attempts: int = 3,
        retry_base: float = 60.0,
        permanent_faults: Iterable[int] = PERMANENT_FAULTS,
        confirm_timeout: float = 900.0,
        signer: TransferUrls | None = None,
        transfer_timeout: float = 3600.0,
        device_credentials: bool = False,
        stun: Callable[[], StunOffer | None] | None = None,
        xmpp: XmppOffer | None = None,
    ) -> None:
        if gpv_batch < 1:
            raise ValueError("gpv_batch must be >= 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if transfer_timeout <= 0:
            raise ValueError("transfer_timeout must be > 0")
        # Signs the URLs of Download/Upload; None = transfer tasks fail with a clear message.
        self.signer = signer
        # How long an acknowledged Download/Upload may wait for its TransferComplete.
        self.transfer_timeout = transfer_timeout
        # Provisioning gives each device its own ManagementServer.Username/Password.
        self.device_credentials = device_credentials
        # What provisioning turns STUN on with (TR-111), asked at each provisioning (the
        # listener's port is known once it listens); None: STUN is left as it is.
        self.stun = stun
        # Annex K: provisioning allows the ACS's JID to send XMPP connection requests
        # (and gives TR-181 CPEs an account of their own), and reads the device's JID;
        # None: XMPP is left as it is.
        self.xmpp = xmpp
        self.store = store
        self.reactor = reactor
        self._wake = wake
        self.gpv_batch = gpv_batch
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        # CPE fault codes that fail a task for good at once ([tasks] permanent_faults).
        self.permanent_faults = frozenset(permanent_faults)
        # How long an acknowledged reboot/factory_reset may wait for its confirming Inform
        # before a later Inform without it declares it failed (so it can't hang forever).
        self.confirm_timeout = confirm_timeout
        # Callers waiting for a task to finish (POST .../tasks/?timeout=): task id -> their
        # Deferreds. Bounded: past MAX_WAITERS a caller is answered at once.
        self._waiters: dict[int, list[Deferred[Task | None]]] = {}
        store.task_finished.append(self._task_finished)

    def set_wake(self, wake: Callable[[int], Deferred[Any]]) -> None:
        self._wake = wake

    def queue(
        self,
        device_id: int,
        kind: str,
        args: Mapping[str, Any] | None = None,
        *,
        actor: str,
        scheduled_at: float | None = None,
        wake: bool = True,
        now: float | None = None,
        campaign_id: int | None = None,
    ) -> Task:
        """Validate and store a task (of ``campaign_id``, if given); wake the device if it
        can run now.

        Raises ValueError (bad kind/args) or acs.store.NotFound (unknown device). A task
        scheduled in the future does not wake the device now: it runs at the first session
        after `scheduled_at`. configuration_update and reconf are coalesced: while one that
        covers the new request is pending (and due no later), it is returned instead.
        """
        clean = validate_args(kind, args)
        declared = KINDS[kind]
        if scheduled_at is not None and (
            isinstance(scheduled_at, bool) or not isinstance(scheduled_at, int | float)
        ):
            raise ValueError("scheduled_at must be a number of seconds since the epoch")
        if now is None:
            now = self.reactor.seconds()
        if self.store.get_device(device_id) is None:
            raise NotFound(f"device {device_id} does not exist")
        if declared.wipes_settings:
            self.store.clear_desired_settings(device_id, now=now, actor=actor)
        if declared.coalesce is not None and campaign_id is None:
            twin = self._pending_twin(device_id, kind, clean, scheduled_at, now)
            if twin is not None:
                if wake and (scheduled_at is None or scheduled_at <= now):
                    self.wake(device_id)
                return twin
        task = self.store.queue_task(
            device_id,
            kind,
            clean,
            now=now,
            actor=actor,
            scheduled_at=scheduled_at,
            front=declared.front,
            campaign_id=campaign_id,
        )
        log.info(
            "queued task {task_id} {kind} for device {device_id}",
            task_id=task.id,
            kind=kind,
            device_id=device_id,
        )
        if wake and (scheduled_at is None or scheduled_at <= now):
            self.wake(device_id)
        return task

    def _pending_twin(
        self,
        device_id: int,
        kind: str,
        args: Mapping[str, Any],
        scheduled_at: float | None,
        now: float,
    ) -> Task | None:
        """A pending task of `kind` that already does what the new one would, no later."""
        covers = KINDS[kind].coalesce
        assert covers is not None
        due = now if scheduled_at is None else scheduled_at
        for t in self.store.tasks_for_device(device_id, states=(PENDING,)):
            if (
                t.kind == kind
                and covers(t.args, args)
                and (t.scheduled_at is None or t.scheduled_at <= due)
                and (t.next_attempt_at is None or t.next_attempt_at <= due)
            ):
                return t
        return None

    def wake(self, device_id: int) -> None:
        """Ask the CPE for a session (a connection request) once the transaction under way
        commits (its session must find what was just queued); failures are logged only: a
        CPE that can't be reached gets its work at its next session."""
        self.store.after_commit(self._wake_now, device_id)

    def _wake_now(self, device_id: int) -> None:
        if self._wake is None:
            return

        def failed(failure: Failure) -> None:
            log.failure("waking device {device_id} failed", failure=failure, device_id=device_id)

        try:
            d = self._wake(device_id)
        except Exception:
            log.failure("waking device {device_id} failed", device_id=device_id)
            return
        if isinstance(d, Deferred):
            d.addErrback(failed)

    def factory_reset_under_way(self, device_id: int) -> bool:
        """True while a factory reset the ACS ordered waits for the CPE to come back."""
        return any(
            t.kind in RESET_KINDS
            for t in self.store.tasks_for_device(device_id, states=(IN_PROGRESS,))
        )

    def open_session(self, device_id: int, version: str | None = None) -> SessionTasks:
        """The task driver of one session of the device in CWMP ``version`` (None: 1.0)."""
        return SessionTasks(self, device_id, version)

    def on_inform(self, device: Device, inform: rpc.Inform, *, now: float) -> bool:
        """Session start: confirm waiting tasks, recover stranded ones, queue provisioning,
        and queue a configuration_update when effective settings differ from the cache.
        False when the device had no task and none was queued: the session has nothing to
        run unless one is queued while it lasts."""
        store = self.store
        events = [e.code for e in inform.events]
        bootstrap = "0 BOOTSTRAP" in events
        # One query says which checks below can find anything: most Informs come from
        # devices with no task under way and nothing to check, and skip them all.
        work = store.inform_work(device.id)
        queued = False
        if work.active_tasks:
            self._tasks_at_inform(device, inform, events, now)
            self._transfers_at_inform(device, inform, now)
        elif work.version_checks:
            # No transfer is under way (no active task), so only the version check remains.
            self._check_firmware_versions(device, inform, now)

        credentials_due = self.device_credentials and not device.username
        if (bootstrap or not device.provisioned or credentials_due) and self._needs_provision(
            device.id, bootstrap, now
        ):
            store.queue_task(device.id, "provision", {}, now=now, actor="acs", front=True)
            queued = True

        if bootstrap or any(code in TREE_EVENTS for code in events):
            self._inform_values(device, inform, now)
        if work.settings:
            queued = self._desired_state_at_inform(device, bootstrap, now) or queued
        if work.interval_drift and not bootstrap:
            queued = self._push_update_frequency(device, work.active_tasks, now) or queued
        return work.active_tasks or queued

    def _inform_values(self, device: Device, inform: rpc.Inform, now: float) -> None:
        """The values an Inform reports (its forced parameters, and those that changed,
        with ``4 VALUE CHANGE``) into the stored tree. Not at every periodic Inform: its
        forced values are the device's identity, already in its row, and the hot path
        stays one write."""
        rows = [
            (p.name, p.value, p.type or None, None)
            for p in inform.parameters[:MAX_INFORM_VALUES]
            if len(p.name) <= MAX_PATH and PATH_RE.fullmatch(p.name) and p.name.startswith(ROOTS)
            and not p.name.endswith(".")
        ]  # fmt: skip
        if rows:
            self.store.upsert_parameters(device.id, rows, now=now)

    def _push_update_frequency(self, device: Device, active_tasks: bool, now: float) -> bool:
        """The CPE informs at another interval than the device's update_frequency (changed
        through the API or inherited from its device type): set it, once. Whether it
        queued the task."""
        path = f"{device.data_model_root or DEFAULT_ROOT}ManagementServer.PeriodicInformInterval"
        if active_tasks and any(
            t.kind == "set_parameter_values"
            and any(p["name"] == path for p in t.args["parameters"])
            for t in self.store.tasks_for_device(device.id, states=(PENDING, IN_PROGRESS))
        ):
            return False
        value = {"name": path, "value": str(device.update_frequency), "type": "xsd:unsignedInt"}
        self.store.queue_task(
            device.id, "set_parameter_values", {"parameters": [value]}, now=now, actor="acs"
        )
        return True

    def _tasks_at_inform(
        self, device: Device, inform: rpc.Inform, events: list[str], now: float
    ) -> None:
        """Requeue tasks a dead session stranded; confirm or time out the ones waiting for
        an Inform (kinds with completion INFORM: reboot, factory resets...)."""
        store = self.store
        # A task in progress at an Inform was running in a session that died (crash, restart):
        # run it again, except acknowledged INFORM and TRANSFER ones (they have their own
        # recovery below and in _transfers_at_inform).
        store.requeue_in_progress(device.id, kinds=REQUEUE_KINDS, now=now)
        tasks = store.tasks_for_device(device.id, states=(PENDING, IN_PROGRESS))
        done: set[int] = set()

        for kind in INFORM_KINDS.values():
            assert kind.confirmed_by is not None
            mine = [t for t in tasks if t.kind == kind.name]
            if not mine:
                continue
            for t in kind.confirmed_by(mine, inform, events):
                if kind.resume_on_confirm:
                    store.resume_task(t.id, {RESUMED: events})
                else:
                    self._confirm(t, now, {"events": events})
                done.add(t.id)
                if kind.after_confirm is not None:
                    kind.after_confirm(self, t, now)

        waiting = [
            t
            for t in tasks
            if t.kind in INFORM_KINDS and t.state == IN_PROGRESS and t.id not in done
        ]
        for t in waiting:
            if not (t.result or {}).get(ACKNOWLEDGED_RPC):
                # Sent by a session that died before the CPE answered, and this Inform shows
                # no confirmation: the CPE never got it. Run it again (it is not repeated: a
                # CPE that did get it informs M Reboot / BOOT / BOOTSTRAP..., matched above).
                store.fail_task(
                    t.id,
                    now=now,
                    fault_code=None,
                    fault_string=f"the session ended before the CPE acknowledged the {t.kind}",
                    retry_at=now if t.attempts < self.max_attempts else None,
                )
                done.add(t.id)
        for t in waiting:
            if t.id in done:
                continue
            delay = INFORM_KINDS[t.kind].confirm_delay
            window = self.confirm_timeout + (delay(t.args) if delay is not None else 0.0)
            if (t.started or 0.0) + window < now:
                store.fail_task(
                    t.id,
                    now=now,
                    fault_code=None,
                    fault_string=(
                        f"the CPE did not confirm the {t.kind} within "
                        f"{window:g}s (Inform events: {', '.join(events) or 'none'})"
                    ),
                    retry_at=None,
                )

    # --- effective settings (desired state) ---

    def effective_settings(
        self, device: Device | int, *, refusals: bool = True
    ) -> list[EffectiveSetting]:
        """The device's effective settings (type defaults overlaid by its own), by path,
        each with its state against the parameter cache; [] for an unknown device."""
        found = self.store.get_device(device) if isinstance(device, int) else device
        return [] if found is None else effective(self.store, found, refusals=refusals)

    def _desired_state_at_inform(self, device: Device, bootstrap: bool, now: float) -> bool:
        """Queue (coalesced) a configuration_update when an effective setting differs from
        the cache, and say whether it did. One query when nothing differs; a second (the
        refusal memory) only when something does, so a setting the CPE refused for good is
        not pushed every Inform."""
        if bootstrap:
            # A factory-fresh tree (the cache was wiped too): every stored setting goes again.
            self.store.unconfirm_all_settings(device.id, now=now)
        due = [s for s in effective(self.store, device, refusals=False) if s.needs_push]
        if not due:
            return False
        refused = self.store.refused_settings(device.id)
        if all(s.path in refused and refused[s.path][0] == value_fingerprint(s.value) for s in due):
            return False
        self.queue(device.id, "configuration_update", {}, actor="acs", wake=False, now=now)
        return True

    def _confirm(self, task: Task, now: float, result: dict[str, Any]) -> None:
        # The store completes from pending too (a retried reboot the CPE did get after all).
        self.store.complete_task(task.id, now=now, result=result)

    def _needs_provision(self, device_id: int, bootstrap: bool, now: float) -> bool:
        provisions = [t for t in self.store.tasks_for_device(device_id) if t.kind == "provision"]
        if any(t.state in (PENDING, IN_PROGRESS) for t in provisions):
            return False  # one is already on its way: never queue it twice
        if bootstrap or not provisions:
            return True
        last = max(provisions, key=lambda t: t.id)
        return not (last.state == FAILED and (last.finished or 0.0) + REPROVISION_AFTER > now)

    # --- transfers (completion TRANSFER) ------------------------------------------------

    def _transfers_at_inform(self, device: Device, inform: rpc.Inform, now: float) -> None:
        """Recover stranded transfers, time out unconfirmed ones, check installed firmware."""
        store = self.store
        # A TransferComplete announced by this Inform arrives later in this session: the
        # task it names must not time out just before it.
        announced = {e.command_key for e in inform.events if e.code in TRANSFER_EVENTS}
        for t in store.tasks_for_device(device.id, states=(IN_PROGRESS,)):
            if t.kind not in TRANSFER_KINDS or (t.result or {}).get(ACKNOWLEDGED):
                continue
            # Started but its Download/Upload never answered, and the session is gone (a
            # crash: a clean abort already requeued it). Run it again.
            retry = now if t.attempts < self.max_attempts else None
            self.fail_transfer(
                t, now, None, "session ended before the CPE answered the transfer request", retry
            )
        self.check_transfers(now=now, device_id=device.id, exclude_keys=announced)
        self._check_firmware_versions(device, inform, now)

    def check_transfers(
        self,
        *,
        now: float | None = None,
        device_id: int | None = None,
        exclude_keys: Iterable[str] = (),
    ) -> list[int]:
        """Fail every transfer task still unconfirmed `transfer_timeout` after it started
        (all devices, or one); returns their ids. Tasks whose CommandKey is in
        `exclude_keys` are spared (their TransferComplete is on its way)."""
        if now is None:
            now = self.reactor.seconds()
        skip = set(exclude_keys)
        failed: list[int] = []
        overdue = self.store.overdue_transfers(
            TRANSFER_KINDS, started_before=now - self.transfer_timeout, device_id=device_id
        )
        for t in overdue:
            if task_key(t) in skip:
                continue
            self.fail_transfer(
                t,
                now,
                None,
                f"the CPE did not report the {t.kind} transfer complete within "
                f"{self.transfer_timeout:g}s",
                None,
            )
            failed.append(t.id)
        return failed

    def fail_transfer(
        self, task: Task, now: float, code: int | None, message: str, retry_at: float | None
    ) -> None:
        """Fail a transfer task (retry at `retry_at`, None = for good) and react to it."""
        log_task(task, "transfer failed ({message})", message=message)
        row = self.store.fail_task(
            task.id, now=now, fault_code=code, fault_string=message, retry_at=retry_at
        )
        self.after_failure(row, now)

    def after_failure(self, task: Task, now: float) -> None:
        """A task just failed for good (or will retry): a failed firmware upgrade stops
        being pending on the device but stays reported as ``firmware_update:failed``."""
        if task.state != FAILED or task.kind != "firmware_update":
            return
        self._firmware_settled(task, now)
        self.store.update_task_result(task.id, {REPORT_FAILED: True})

    def set_firmware(
        self,
        device: Device,
        target: int | None,
        pending: bool | None,
        *,
        actor: str,
        now: float,
        scheduled_at: float | None = None,
    ) -> bool:
        """Write a device's firmware target and its ``firmware_image_is_pending`` request
        (None: the flag not given); True when an upgrade was queued (not woken).

        Requesting replaces an older upgrade still waiting; withdrawing (the flag false, or
        no target) cancels a waiting one and acknowledges a failed one, which
        pending_settings then stops showing as ``firmware_update:failed``."""
        fields: dict[str, Any] = {"firmware_image_id": target}
        queued = pending is True
        with self.store.transaction():
            if pending is True or pending is False or target is None:
                for waiting in self.store.tasks_for_device(device.id, states=(PENDING,)):
                    if waiting.kind == "firmware_update":
                        self.store.cancel_task(waiting.id, now=now, actor=actor)
            if queued:
                self.queue(
                    device.id,
                    "firmware_update",
                    {"firmware_image": target},
                    actor=actor,
                    scheduled_at=scheduled_at,
                    wake=False,
                    now=now,
                )
                fields["firmware_image_is_pending"] = True
            elif pending is False or target is None:
                fields["firmware_image_is_pending"] = False
                upgrades = [
                    t for t in self.store.tasks_for_device(device.id) if t.kind == "firmware_update"
                ]
                last = max(upgrades, key=lambda t: t.id, default=None)
                if last is not None and (last.result or {}).get(REPORT_FAILED):
                    self.store.update_task_result(last.id, {REPORT_FAILED: False})
            self.store.update_device(device.id, now=now, actor=actor, **fields)
        return queued

    def wait_finished(self, task_id: int, timeout: float) -> Deferred[Task | None]:
        """The task once it is done, failed or cancelled, or None after ``timeout`` seconds
        (at once when too many callers wait already, or the task is gone)."""
        task = self.store.get_task(task_id)
        if task is None or task.state in FINISHED_STATES:
            return succeed(task if task is not None and task.state in FINISHED_STATES else None)
        if self.waiting() >= MAX_WAITERS:
            return succeed(None)

        def cancelled(waiter: Deferred[Task | None]) -> None:  # the caller went away
            self._forget(task_id, waiter)

        waiter: Deferred[Task | None] = Deferred(cancelled)
        self._waiters.setdefault(task_id, []).append(waiter)
        timer = self.reactor.callLater(timeout, self._give_up, task_id, waiter)
        waiter.addBoth(_cancel_timer, timer)
        return waiter

    def waiting(self) -> int:
        """How many callers wait for a task to finish."""
        return sum(len(waiters) for waiters in self._waiters.values())

    def _give_up(self, task_id: int, waiter: Deferred[Task | None]) -> None:
        if self._forget(task_id, waiter):
            waiter.callback(None)

    def _forget(self, task_id: int, waiter: Deferred[Task | None]) -> bool:
        waiting = self._waiters.get(task_id, [])
        if waiter not in waiting:
            return False
        waiting.remove(waiter)
        if not waiting:
            del self._waiters[task_id]
        return True

    def _task_finished(self, task_id: int) -> None:
        # Called once the transaction that finished it committed, maybe deep in the store's
        # code: the waiters are told in a turn of their own.
        if task_id in self._waiters:
            self.reactor.callLater(0, self._settle, task_id)

    def _settle(self, task_id: int) -> None:
        task = self.store.get_task(task_id)
        if task is None or task.state not in FINISHED_STATES:
            return
        for waiter in self._waiters.pop(task_id, []):
            waiter.callback(task)

    def retry(self, task: Task, *, now: float, actor: str) -> Task:
        """Queue a failed task again (Conflict unless it failed) and wake its device, unless
        it is scheduled for later."""
        retried = self.store.retry_task(task.id, now=now, actor=actor)
        if retried.scheduled_at is None or retried.scheduled_at <= now:
            self.wake(retried.device_id)
        return retried

    def cancel(self, task: Task, *, now: float, actor: str) -> None:
        """Cancel a pending task (Conflict once it started or finished). Cancelling the last
        firmware upgrade withdraws it, as clearing firmware_image_is_pending would."""
        with self.store.transaction():
            self.store.cancel_task(task.id, now=now, actor=actor)
            if task.kind == "firmware_update":
                self._firmware_settled(task, now, actor)

    def _firmware_settled(self, task: Task, now: float, actor: str = "acs") -> None:
        # The flag means "an upgrade is queued or in flight": it stays set while another
        # firmware_update (a newer request) is still on its way.
        others = [
            t
            for t in self.store.tasks_for_device(task.device_id, states=(PENDING, IN_PROGRESS))
            if t.kind == "firmware_update" and t.id != task.id
        ]
        if not others:
            self.store.update_device(
                task.device_id, now=now, actor=actor, firmware_image_is_pending=False
            )

    def transfer_result(self, task: Task, detail: dict[str, Any], now: float) -> dict[str, Any]:
        """The result of a transfer the CPE reported successful, after its side effects;
        raises TaskError when the ACS side shows it did not happen (no backup stored)."""
        result = {**(task.result or {}), **detail}
        result.pop(ACKNOWLEDGED, None)
        if task.kind == "firmware_update":
            self._firmware_settled(task, now)
            image_id = task.args.get("firmware_image")
            image = self.store.get_firmware_image(image_id) if isinstance(image_id, int) else None
            if image is not None:
                device = self.store.get_device(task.device_id)
                reported = device.software_version if device is not None else None
                result["expected_version"] = image.version
                # Most CPEs send TransferComplete after rebooting into the new image, so this
                # session's Inform may already show it; otherwise the next Inform decides.
                if reported == image.version:
                    result[VERSION_CHECK] = "ok"
                    result["reported_version"] = reported
                else:
                    result[VERSION_CHECK] = "pending"
        elif task.kind in ("backup", "upload"):
            backup = task.kind == "backup"
            find = self.store.backups_for_task if backup else self.store.files_for_task
            stored = find(task.id)
            if not stored:
                raise TaskError(
                    "the CPE reported the upload complete but no file reached the file server",
                    permanent=True,
                )
            newest = stored[-1]  # a CPE that uploaded twice: the newest file counts
            key = "backup" if backup else "file"
            result.update({key: newest.id, "size": newest.size, "sha256": newest.sha256})
        return result

    def on_transfer_complete(
        self, device_id: int, message: rpc.TransferComplete, now: float
    ) -> dict[str, Any]:
        """End the transfer task named by the CommandKey; returns what to add to the
        history entry (the task id and what happened to it)."""
        task_id = task_id_of_key(message.command_key)
        task = self.store.get_task(task_id) if task_id is not None else None
        if (
            task is None
            or task.device_id != device_id
            or task.kind not in TRANSFER_KINDS
            or task.kind == software.KIND  # ended by its DUStateChangeComplete only
        ):
            return {}
        if task.state not in (PENDING, IN_PROGRESS):
            # Already timed out (or cancelled): the late report stays in history only.
            return {"task_id": task.id, "task_state": task.state, "late": True}
        code = message.fault.code
        times = {"start_time": message.start_time, "complete_time": message.complete_time}
        if code == 0:
            try:
                result = self.transfer_result(task, {"fault_code": 0, **times}, now)
            except TaskError as exc:
                self.fail_transfer(task, now, None, exc.message, None)
                return {"task_id": task.id, "task_state": FAILED}
            self.store.complete_task(task.id, now=now, result=result)
            return {"task_id": task.id, "task_state": DONE}
        text = message.fault.string or f"CPE fault {code}"
        self.store.update_task_result(task.id, {"fault_code": code, "fault_string": text, **times})
        retry = None if code in PERMANENT_TRANSFER_FAULTS else self.retry_at(task.attempts, now)
        self.fail_transfer(task, now, code, text, retry)
        return {"task_id": task.id, "task_state": FAILED if retry is None else PENDING}

    def _check_firmware_versions(self, device: Device, inform: rpc.Inform, now: float) -> None:
        """After a completed upgrade, the next Inform's SoftwareVersion must be the image's;
        else the upgrade failed."""
        reported = inform.parameter("DeviceInfo.SoftwareVersion")
        if reported is None:
            return  # not reported by this Inform: keep waiting
        for t in self.store.firmware_version_checks(device.id):
            expected = (t.result or {}).get("expected_version")
            if reported == expected:
                self.store.update_task_result(
                    t.id, {VERSION_CHECK: "ok", "reported_version": reported}
                )
                continue
            log.warn(
                "device {device_id}: firmware task {task_id} expected version {expected}, "
                "the CPE reports {reported}",
                device_id=device.id,
                task_id=t.id,
                expected=expected,
                reported=reported,
            )
            note = f"the CPE reports version {reported}, the image is {expected}"
            # The CPE said the upgrade completed, but it still runs another version (a CPE
            # that rejects an image this way is common): the upgrade failed, and
            # pending_settings shows it until acknowledged.
            with self.store.transaction():
                self.store.update_task_result(
                    t.id,
                    {
                        VERSION_CHECK: "mismatch",
                        "reported_version": reported,
                        "note": note,
                        REPORT_FAILED: True,
                    },
                )
                self.store.fail_done_task(
                    t.id, now=now, fault_string=f"firmware not installed: {note}"
                )
                self.store.add_history(
                    device.id,
                    "firmware_version_mismatch",
                    {"task_id": t.id, "expected": expected, "reported": reported},
                    now=now,
                )

    def retry_at(self, attempts: int, now: float) -> float | None:
        """When a task that failed its `attempts`-th attempt runs again; None = give up."""
        if attempts >= self.max_attempts:
            return None
        return now + self.retry_base * 2 ** max(attempts - 1, 0)
