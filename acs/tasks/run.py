"""One attempt at one task inside one session (`TaskRun`), and what a kind's RPC generator
uses: the CommandKey of a task, the RPC helpers (typed call, tree fetch, settings push), and
how a generator ends (a result dict, `WaitForInform`, `WaitForTransfer`, or by raising
`CpeFault` / `TaskError`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger

from acs.cwmp import rpc
from acs.cwmp.paths import DEFAULT_ROOT, known_root
from acs.store.models import Backup, Device, FirmwareImage, StoredFile, Task
from acs.tasks.settings import EffectiveSetting, value_fingerprint

if TYPE_CHECKING:
    from acs.tasks.engine import TaskEngine

# Keys of a task's result (JSON in the store) that the engine itself reads back.
ACKNOWLEDGED = "awaiting_transfer_complete"  # Download/Upload answered status 1
ACKNOWLEDGED_RPC = "acknowledged"  # the CPE answered an RPC that a later Inform confirms
RESUMED = "resumed"  # resume_on_confirm: the events of the Inform that resumed the task
VERSION_CHECK = "version_check"  # firmware: "pending" until an Inform reports the version
REPORT_FAILED = "report_failed"  # firmware: failure still shown in pending_settings

# Desired settings per SetParameterValues: big pushes are split so no envelope gets huge.
SPV_BATCH = 64

# CPE faults that will not go away by asking again (TR-069 A.5.1 codes): the default of
# [tasks] permanent_faults.
PERMANENT_FAULTS = frozenset({9000, 9003, 9005, 9006, 9007, 9008})
# CPE fault codes of one parameter that asking again with the same value will not fix.
PERMANENT_PARAMETER_FAULTS = frozenset({9005, 9006, 9007, 9008})


log = Logger(namespace="acs.tasks")


def log_task(task: Task, event: str, *, level: str = "info", **fields: Any) -> None:
    """Log ``device D: task T <kind> <event>``; ``event`` may name more ``fields``."""
    emit = getattr(log, level)
    prefix = "device {device_id}: task {task_id} {kind} "
    emit(prefix + event, device_id=task.device_id, task_id=task.id, kind=task.kind, **fields)


def task_key(task: Task) -> str:
    """The CommandKey / ParameterKey the ACS sends for `task` (<= 32 chars, stable)."""
    return f"acs-task-{task.id}"


def task_id_of_key(key: str) -> int | None:
    """The task id a CommandKey made by `task_key` names; None for any other key."""
    prefix = "acs-task-"
    if not key.startswith(prefix):
        return None
    digits = key[len(prefix) :]
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        return None
    return int(digits)


class TransferUrls(Protocol):
    """Where a CPE fetches or sends a task's file: `acs.files.UrlSigner` (signed, expiring).

    A Protocol so the engine does not import the file server and tests can pass a fake."""

    def firmware_url(self, task_id: int, image: FirmwareImage) -> str: ...

    def backup_upload_url(self, task_id: int) -> str: ...

    def backup_download_url(self, task_id: int, backup: Backup) -> str: ...

    def file_url(self, task_id: int, stored: StoredFile) -> str: ...

    def upload_url(self, task_id: int) -> str: ...


def resolve_root(device: Device | None) -> str:
    root = device.data_model_root if device is not None else None
    return known_root(root) or DEFAULT_ROOT


class CpeFault(Exception):
    """The CPE answered the task's last RPC with a Fault (thrown into the generator)."""

    def __init__(self, fault: rpc.Fault) -> None:
        super().__init__(fault.code, fault.string)
        self.fault = fault


class SettingsRefused(CpeFault):
    """A settings push the CPE refused for good; `extra` (which values were refused, by
    fingerprint) goes in the task result, not in history."""

    def __init__(self, fault: rpc.Fault, extra: dict[str, Any]) -> None:
        super().__init__(fault)
        self.extra = extra


class TaskError(Exception):
    """A task ends badly for a reason other than a CPE Fault."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class StunOffer:
    """What provisioning turns a CPE's STUN client on with (TR-111): the server's address
    ("": the host of the CPE's ACS URL), port and the keep-alive period in seconds."""

    address: str
    port: int
    keepalive: int


@dataclass(frozen=True)
class XmppOffer:
    """What provisioning sets for XMPP connection requests (TR-069 Annex K): the ACS's
    bare JID, which the CPE must allow; with ``accounts`` (``[xmpp] accounts``), each
    TR-181 CPE's own account on the server: its (username, password) from the device's
    identity, made on the server by ``ensure`` (thread-safe), in ``domain``, reached at
    ``server`` (host, port)."""

    acs_jid: str
    accounts: Callable[[str], tuple[str, str]] | None = None
    ensure: Callable[[str, str], None] | None = None
    domain: str = ""
    server: tuple[str, int] = ("", 0)


@dataclass(frozen=True)
class WaitForInform:
    """Returned by a kind whose RPC was acknowledged but which a later Inform confirms."""


@dataclass(frozen=True)
class WaitForTransfer:
    """Returned by a transfer kind whose Download/Upload the CPE answered with status 1:
    a TransferComplete carrying the task's CommandKey ends it. `detail` goes in the result."""

    detail: dict[str, Any]


# A kind's RPC generator: yields the RPCs to send, receives the CPE's answers.
Steps = Generator[rpc.Message, rpc.Message, dict[str, Any] | WaitForInform | WaitForTransfer]


def fault_summary(fault: rpc.Fault) -> str:
    text = fault.string or f"CPE fault {fault.code}"
    if fault.set_parameter_values_faults:
        details = "; ".join(
            f"{f.name}: {f.code} {f.string}".rstrip() for f in fault.set_parameter_values_faults
        )
        text = f"{text} ({details})"
    return text


class TaskRun:
    """One attempt at one task inside one session: the generator and what it needs."""

    def __init__(
        self,
        engine: TaskEngine,
        task: Task,
        device: Device | None,
        now: float,
        steps: Callable[[TaskRun], Steps],
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.task = task
        self.device = device
        self.now = now
        self.request: rpc.Message | None = None  # the RPC sent and not yet answered
        # Set once the CPE has applied a non-repeatable change (AddObject): from then on the
        # task must complete with this result, never be retried, even if the session dies.
        self.committed: dict[str, Any] | None = None
        self.steps: Steps = steps(self)

    @property
    def root(self) -> str:
        return resolve_root(self.device)

    def _expect(self, request: rpc.Message, answer: rpc.Message) -> None:
        expected = rpc.ACS_REQUESTS.get(type(request))
        if expected is not None and not isinstance(answer, expected):
            raise TaskError(
                f"CPE answered {type(request).__name__} with {type(answer).__name__}",
                permanent=False,
            )

    def call(self, request: rpc.Message) -> Generator[rpc.Message, rpc.Message, Any]:
        """Yield `request`, check the answer's type, return it (typed by the caller)."""
        answer = yield request
        self._expect(request, answer)
        return answer

    def fetch_tree(self, path: str) -> Generator[rpc.Message, rpc.Message, int]:
        """GPN + batched GPVs of `path` into the parameter cache; returns the value count."""
        names_answer: rpc.GetParameterNamesResponse = yield from self.call(
            rpc.GetParameterNames(path=path, next_level=False)
        )
        infos = [p for p in names_answer.parameters if p.name]
        device_id = self.task.device_id
        self.store.upsert_parameters(
            device_id, [(p.name, None, None, p.writable) for p in infos], now=self.now
        )
        self._drop_stale(path, {p.name for p in infos})
        leaves = [p.name for p in infos if not p.name.endswith(".")]
        batch = self.engine.gpv_batch
        count = 0
        for start in range(0, len(leaves), batch):
            values: rpc.GetParameterValuesResponse = yield from self.call(
                rpc.GetParameterValues(names=tuple(leaves[start : start + batch]))
            )
            rows = [(p.name, p.value, p.type, None) for p in values.parameters if p.name]
            self.store.upsert_parameters(device_id, rows, now=self.now)
            count += len(rows)
        return count

    def _drop_stale(self, path: str, names: set[str]) -> None:
        """Forget cached parameters under `path` the CPE no longer reports (deleted objects).

        The store deletes by prefix, so a stale path is dropped only when no live name starts
        with it (dropping "X.Name" must not take "X.NameSuffix" with it).
        """
        if not path.endswith("."):
            return
        device_id = self.task.device_id
        dropped: list[str] = []
        for cached in self.store.get_parameters(device_id, path):
            if cached.path in names or any(cached.path.startswith(d) for d in dropped):
                continue
            # Drop the outermost vanished object so its whole subtree goes at once; fall back
            # to the path itself. Some CPEs list no object entries, hence the startswith test.
            parts = cached.path[len(path) :].split(".")
            candidates = [path + ".".join(parts[:i]) + "." for i in range(1, len(parts))]
            for prefix in (*candidates, cached.path):
                if not any(n.startswith(prefix) for n in names):
                    self.store.delete_parameters(device_id, prefix)
                    dropped.append(prefix)
                    break

    # --- helpers of the kinds' generators (acs.tasks.kinds) ---

    def signer(self) -> TransferUrls:
        signer = self.engine.signer
        if signer is None:
            raise TaskError("file transfers are not configured (no URL signer)", permanent=True)
        return signer

    def transfer_started(
        self, answer: rpc.DownloadResponse | rpc.UploadResponse, detail: dict[str, Any]
    ) -> dict[str, Any] | WaitForTransfer:
        """Status 1: wait for the TransferComplete; status 0: the transfer is already over."""
        if answer.status == 1:
            return WaitForTransfer(detail)
        if answer.status != 0:
            raise TaskError(f"CPE answered with unknown status {answer.status}", permanent=True)
        times = {"start_time": answer.start_time, "complete_time": answer.complete_time}
        return self.engine.transfer_result(self.task, {**detail, "status": 0, **times}, self.now)

    def push_settings(
        self, *, everything: bool, retry_refused: bool = False
    ) -> Generator[rpc.Message, rpc.Message, dict[str, Any]]:
        """SPV of the effective settings that differ from the cache, in batches, typed with
        the model's xsd type; each accepted batch is confirmed at once, so a fault in a later
        batch does not resend the earlier ones.

        A permanent fault remembers the refused values (in the task result, by fingerprint)
        so they are not pushed again at every Inform, only once they change; the others are
        pushed by a follow-up configuration_update in the same session.
        """
        device_id = self.task.device_id
        states = self.engine.effective_settings(device_id, refusals=True)
        refused = {
            s.path: {"fp": value_fingerprint(s.value), "code": s.refused[0], "string": s.refused[1]}
            for s in states
            if s.refused is not None
        }
        pending = [
            s
            for s in states
            if (s.needs_push or (everything and not s.applied))
            and (retry_refused or s.refused is None)
        ]
        applied = 0
        status = 0
        sent: set[str] = set()
        for start in range(0, len(pending), SPV_BATCH):
            batch = pending[start : start + SPV_BATCH]
            values = tuple(rpc.ParameterValue(s.path, s.value, s.type) for s in batch)
            try:
                answer: rpc.SetParameterValuesResponse = yield from self.call(
                    rpc.SetParameterValues(parameters=values, parameter_key=task_key(self.task))
                )
            except CpeFault as exc:
                new = self._refusals(exc.fault, batch)
                if not new:
                    raise
                memo = {p: m for p, m in refused.items() if p not in sent}
                memo.update(new)
                if any(s.path not in sent and s.path not in memo for s in pending):
                    # The SPV was refused as a whole: the acceptable settings go again now.
                    self.engine.queue(
                        device_id, "configuration_update", {}, actor="acs", wake=False, now=self.now
                    )
                raise SettingsRefused(exc.fault, {"refused": memo}) from None
            self.check_status(answer.status)
            self._settings_applied(values)
            sent.update(v.name for v in values)
            applied += len(values)
            status = max(status, answer.status)
        if applied:
            self.store.set_last_configuration(device_id, now=self.now)
        result: dict[str, Any] = {"parameters": applied, "status": status}
        still = {p: m for p, m in refused.items() if p not in sent}
        if still:
            result["refused"] = still  # carried forward: the latest push holds the memory
        return result

    def _refusals(
        self, fault: rpc.Fault, batch: list[EffectiveSetting]
    ) -> dict[str, dict[str, Any]]:
        """The settings of `batch` the CPE refused for good (empty: a transient fault)."""
        if fault.code not in self.engine.permanent_faults:
            return {}
        by_path = {s.path: s for s in batch}
        out: dict[str, dict[str, Any]] = {}
        for f in fault.set_parameter_values_faults:
            s = by_path.get(f.name)
            if s is not None and f.code in PERMANENT_PARAMETER_FAULTS:
                out[s.path] = {"fp": value_fingerprint(s.value), "code": f.code, "string": f.string}
        if not fault.set_parameter_values_faults:
            # No per-parameter detail: the whole batch is what the CPE will not take.
            for s in batch:
                out[s.path] = {
                    "fp": value_fingerprint(s.value),
                    "code": fault.code,
                    "string": fault.string,
                }
        return out

    def _settings_applied(self, values: tuple[rpc.ParameterValue, ...]) -> None:
        device_id = self.task.device_id
        # Only what the CPE got is confirmed: a value the API changed while this SPV was on
        # the wire stays pending for the next push.
        stored = {s.path: s.value for s in self.store.desired_settings(device_id)}
        self.store.confirm_settings(
            device_id, [v.name for v in values if stored.get(v.name) == v.value], now=self.now
        )
        self.store.upsert_parameters(
            device_id, [(v.name, v.value, v.type, None) for v in values], now=self.now
        )
        # The liveness window follows the CPE's periodic inform interval (spec section 2).
        interval_path = f"{self.root}ManagementServer.PeriodicInformInterval"
        interval = next((v.value for v in values if v.name == interval_path), None)
        if interval is not None and interval.isascii() and interval.isdigit() and int(interval) > 0:
            self.store.update_device(
                device_id, now=self.now, actor="acs", update_frequency=int(interval)
            )

    @staticmethod
    def check_status(status: int) -> None:
        # 0 = applied, 1 = committed, applied later (e.g. after a reboot): both are success.
        if status not in (0, 1):
            raise TaskError(f"CPE answered with unknown status {status}", permanent=True)
