"""The task kinds: one `TaskKind` declaration each, in `KINDS`.

A declaration says what the ACS needs to run and offer a kind: its arguments (allowed keys, the
validator from `acs.tasks.args`, an example the tests use), the RPC generator that runs it
(a function of a `TaskRun`: it yields RPCs, receives the CPE's answers and returns how the
task ends), its completion policy, and how the API offers it. Completion is one of:

- ``ANSWER``: done when the generator returns a result; a task a dead session left in
  progress is run again at the device's next Inform;
- ``INFORM``: the generator returns `WaitForInform` once the CPE acknowledged the RPC, and a
  later Inform that `confirmed_by` accepts completes it (an Inform that shows it was never
  acknowledged runs it again; none within `confirm_timeout` (+ `confirm_delay`) fails it);
- ``TRANSFER``: the generator returns `WaitForTransfer` once the CPE accepted a
  Download/Upload, and the TransferComplete carrying the task's CommandKey ends it.

The engine (`acs.tasks.engine`), the session driver (`acs.tasks.session`) and the API
(`api.device_ops`) take these policies from the declarations. (Still by name, in the
engine, and not policies of a kind's lifecycle: the firmware, backup and upload side effects of a
finished transfer, and the firmware request rule of `TaskEngine.set_firmware`.)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from acs.cwmp import rpc
from acs.cwmp.paths import ALLOWED_JABBER_IDS, DEVICE_RESOURCE, JABBER_ID
from acs.store.models import IN_PROGRESS, Device, Task
from acs.tasks import args as a
from acs.tasks import diagnostics as diag
from acs.tasks import filekinds as f
from acs.tasks import results as r
from acs.tasks import software as sw
from acs.tasks.run import (
    CpeFault,
    Steps,
    StunOffer,
    TaskError,
    TaskRun,
    WaitForInform,
    XmppOffer,
    task_key,
)
from acs.tasks.settings import model_type

if TYPE_CHECKING:
    from acs.tasks.engine import TaskEngine

ANSWER = "answer"
INFORM = "inform"
TRANSFER = "transfer"

# Which of a kind's pending and in-progress tasks an Inform confirms: (the tasks, the Inform,
# its event codes) -> the confirmed ones.
InformMatch = Callable[[Sequence[Task], rpc.Inform, Sequence[str]], list[Task]]


@dataclass(frozen=True)
class TaskKind:
    """Everything about one task kind (see the module docstring)."""

    name: str
    run: Callable[[TaskRun], Steps]  # the RPC generator
    arguments: tuple[str, ...] = ()  # the argument keys it accepts
    check: Callable[[Mapping[str, Any]], dict[str, Any]] = a.no_args  # -> normalized args
    example: Mapping[str, Any] = field(default_factory=dict)  # valid arguments, for tests
    completion: str = ANSWER  # ANSWER, INFORM or TRANSFER
    confirmed_by: InformMatch | None = None  # INFORM: which tasks an Inform confirms
    # INFORM: seconds the CPE may rightly wait before the confirming Inform, from the args;
    # counted on top of the engine's confirm_timeout.
    confirm_delay: Callable[[Mapping[str, Any]], float] | None = None
    after_confirm: Callable[[TaskEngine, Task, float], None] | None = None
    # INFORM: the confirming Inform resumes the task in its session (pending again, the
    # generator finishes it: diagnostics read their results) instead of completing it.
    resume_on_confirm: bool = False
    resets_cpe: bool = False  # the CPE comes back factory-fresh (first-contact credentials)
    wipes_settings: bool = False  # queueing it forgets the device's own desired settings
    # At most one pending task of the kind per device: (pending twin's args, new args) ->
    # the twin already does what the new one would, so queue() returns it instead.
    coalesce: Callable[[Mapping[str, Any], Mapping[str, Any]], bool] | None = None
    front: bool = False  # queued ahead of everything else
    pending_name: str | None = None  # listed in the API's pending_settings under this name
    # The device write body key that queues it (PATCH /inventory_device/<id>/), what the API
    # document says of it, and api_args: its value is an object of arguments (else a
    # boolean), whose JSON Schema (what `check` accepts) is args_schema; api_rank: queue
    # order of one body.
    api_flag: str | None = None
    api_doc: str = ""
    api_args: bool = False
    args_schema: Mapping[str, Any] | None = None
    api_rank: int = 0
    # POST /inventory_device/<id>/tasks/ may queue it by name, with its arguments; the JSON
    # Schema of the result a done task of the kind carries.
    api_task: bool = False
    result_schema: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.completion not in (ANSWER, INFORM, TRANSFER):
            raise ValueError(f"{self.name}: unknown completion {self.completion!r}")
        if (self.completion == INFORM) != (self.confirmed_by is not None):
            raise ValueError(f"{self.name}: confirmed_by goes with completion INFORM")
        if self.api_flag is not None and not self.api_doc:
            raise ValueError(f"{self.name}: an API flag needs its api_doc")
        if self.args_schema is None and self.arguments and (self.api_args or self.api_task):
            raise ValueError(f"{self.name}: the API offers its arguments: declare args_schema")
        if self.api_task and self.result_schema is None:
            raise ValueError(f"{self.name}: the API offers it: declare result_schema")
        if self.args_schema is not None and set(self.args_schema["properties"]) != set(
            self.arguments
        ):
            raise ValueError(f"{self.name}: args_schema and arguments name different keys")

    @property
    def arguments_schema(self) -> Mapping[str, Any]:
        """The JSON Schema of the arguments `check` accepts."""
        return self.args_schema if self.args_schema is not None else a.arguments_schema({})

    @property
    def requeue_after_crash(self) -> bool:
        """Found in progress at an Inform (its session died): simply run it again. The other
        completions know from the task's result whether the CPE acknowledged the RPC."""
        return self.completion == ANSWER

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        a.check_keys(args, self.arguments, self.name)
        return self.check(args)


# --- Inform confirmations ---------------------------------------------------------------


def _keyed(tasks: Sequence[Task], inform: rpc.Inform, code: str) -> list[Task]:
    """Tasks whose CommandKey an event `code` of the Inform carries."""
    keys = {e.command_key for e in inform.events if e.code == code}
    # A pending one was retried after an abort but may have reached the CPE anyway.
    return [
        t for t in tasks if command_key(t) in keys and (t.state == IN_PROGRESS or t.attempts > 0)
    ]


def command_key(task: Task) -> str:
    """The CommandKey the task's RPC carries: the caller's when it chose one."""
    chosen = task.args.get("command_key")
    return chosen if isinstance(chosen, str) and chosen else task_key(task)


def _rebooted(tasks: Sequence[Task], inform: rpc.Inform, events: Sequence[str]) -> list[Task]:
    matched = _keyed(tasks, inform, "M Reboot")
    waiting = [t for t in tasks if t.state == IN_PROGRESS]
    rebooted = "1 BOOT" in events or "M Reboot" in events
    if not matched and len(waiting) == 1 and rebooted:
        # Some CPEs echo another (or no) CommandKey, or send only "1 BOOT": with one
        # reboot outstanding there is no ambiguity.
        matched = waiting
    return matched


def _bootstrapped(tasks: Sequence[Task], inform: rpc.Inform, events: Sequence[str]) -> list[Task]:
    return [t for t in tasks if t.state == IN_PROGRESS] if "0 BOOTSTRAP" in events else []


def _scheduled(tasks: Sequence[Task], inform: rpc.Inform, events: Sequence[str]) -> list[Task]:
    return _keyed(tasks, inform, "M ScheduleInform") if "3 SCHEDULED" in events else []


def _reapply_settings(engine: TaskEngine, task: Task, now: float) -> None:
    """After a device_factory_reset's BOOTSTRAP: every stored setting is pushed again."""
    engine.store.unconfirm_all_settings(task.device_id, now=now)
    if engine.store.unconfirmed_settings_count(task.device_id):
        engine.queue(task.device_id, "configuration_update", {}, actor="acs", wake=False, now=now)


# --- the RPC generators -----------------------------------------------------------------


def _provision(run: TaskRun) -> Steps:
    device = run.device
    if device is None:
        raise TaskError("device no longer exists", permanent=True)
    ms = f"{run.root}ManagementServer."
    identity = device.unique_identifier or device.serial_number
    username = device.connection_request_username or identity
    # Fresh secrets each attempt: they only become the device's once the CPE accepted them.
    password = secrets.token_urlsafe(16)
    public = [
        rpc.ParameterValue(f"{ms}PeriodicInformEnable", "true", "xsd:boolean"),
        rpc.ParameterValue(
            f"{ms}PeriodicInformInterval", str(device.update_frequency), "xsd:unsignedInt"
        ),
        rpc.ParameterValue(f"{ms}ConnectionRequestUsername", username, "xsd:string"),
    ]
    secrets_set = [rpc.ParameterValue(f"{ms}ConnectionRequestPassword", password, "xsd:string")]
    own: dict[str, str] = {}
    if run.engine.device_credentials and not device.username:
        # The device's own ACS credentials: from its next session on, only they let a
        # client Inform as this device (TR-069 3.4.4: the CPE authenticates to the ACS).
        own = {"username": identity, "password": secrets.token_urlsafe(24)}
        public.append(rpc.ParameterValue(f"{ms}Username", own["username"], "xsd:string"))
        secrets_set.append(rpc.ParameterValue(f"{ms}Password", own["password"], "xsd:string"))
    answer: rpc.SetParameterValuesResponse = yield from run.call(
        rpc.SetParameterValues(parameters=(*public, *secrets_set), parameter_key=task_key(run.task))
    )
    run.check_status(answer.status)
    run.store.update_device(
        device.id,
        now=run.now,
        actor="acs",
        connection_request_username=username,
        connection_request_password=password,
        provisioned=True,
        **own,
    )
    run.store.upsert_parameters(
        device.id, [(p.name, p.value, p.type, None) for p in public], now=run.now
    )
    result: dict[str, Any] = {"status": answer.status, "credentials_assigned": bool(own)}
    offer = run.engine.stun() if run.engine.stun is not None else None
    if offer is not None:
        result["stun"] = yield from _provision_stun(run, device, offer)
    if run.engine.xmpp is not None:
        yield from _provision_xmpp(run, device, run.engine.xmpp, result)
    return result


# CPE faults meaning "no STUN client (XMPP connection requests) here": no such parameter,
# or not writable.
_NO_STUN = frozenset({9005, 9006, 9007, 9008})


def _provision_stun(
    run: TaskRun, device: Device, offer: StunOffer
) -> Generator[rpc.Message, rpc.Message, str]:
    """STUN on (TR-111), with credentials of the device's own: "enabled", or "unsupported"
    when the CPE has no STUN client (its provisioning stands: the credentials it took)."""
    ms = f"{run.root}ManagementServer."
    known = run.store.stun_binding(device.id)
    username = known.username if known is not None else f"acs-{device.id}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    period = str(offer.keepalive)
    public = [
        rpc.ParameterValue(f"{ms}STUNEnable", "true", "xsd:boolean"),
        rpc.ParameterValue(f"{ms}STUNServerAddress", offer.address, "xsd:string"),
        rpc.ParameterValue(f"{ms}STUNServerPort", str(offer.port), "xsd:unsignedInt"),
        rpc.ParameterValue(f"{ms}STUNUsername", username, "xsd:string"),
        rpc.ParameterValue(f"{ms}STUNMinimumKeepAlivePeriod", period, "xsd:unsignedInt"),
        rpc.ParameterValue(f"{ms}STUNMaximumKeepAlivePeriod", period, "xsd:int"),
    ]
    secret = rpc.ParameterValue(f"{ms}STUNPassword", password, "xsd:string")
    try:
        answer: rpc.SetParameterValuesResponse = yield from run.call(
            rpc.SetParameterValues(parameters=(*public, secret), parameter_key=task_key(run.task))
        )
    except CpeFault as exc:
        if exc.fault.code not in _NO_STUN:
            raise
        return "unsupported"
    run.check_status(answer.status)
    run.store.set_stun_credentials(device.id, username, password)
    run.store.upsert_parameters(
        device.id, [(p.name, p.value, p.type, None) for p in public], now=run.now
    )
    return "enabled"


def _provision_xmpp(
    run: TaskRun, device: Device, offer: XmppOffer, result: dict[str, Any]
) -> Generator[rpc.Message, rpc.Message, None]:
    """Annex K: the ACS's JID allowed to send connection requests; with device accounts,
    the TR-181 CPE's own account in its XMPP.Connection.1; then the device's own JID read
    (later changes come in Informs: a forced active notification). ``result["xmpp"]``:
    "enabled", or "unsupported" when the CPE has no XMPP connection requests;
    ``result["xmpp_account"]``: the account's JID, or "unsupported" (no Connection.1)."""
    allowed = rpc.ParameterValue(f"{run.root}{ALLOWED_JABBER_IDS}", offer.acs_jid, "xsd:string")
    public = [allowed]
    try:
        answer: rpc.SetParameterValuesResponse = yield from run.call(
            rpc.SetParameterValues(parameters=(allowed,), parameter_key=task_key(run.task))
        )
        run.check_status(answer.status)
    except CpeFault as exc:
        if exc.fault.code not in _NO_STUN:
            raise
        result["xmpp"] = "unsupported"
        return
    result["xmpp"] = "enabled"
    if offer.accounts is not None and offer.ensure is not None and run.root == "Device.":
        account = yield from _xmpp_account(run, device, offer)
        result["xmpp_account"] = account or "unsupported"
        if account:
            public.extend(_account_parameters(run, offer, account))
    asked: list[rpc.ParameterValue] = []
    try:
        values: rpc.GetParameterValuesResponse = yield from run.call(
            rpc.GetParameterValues(names=(f"{run.root}{JABBER_ID}",))
        )
        asked = [p for p in values.parameters if p.name == f"{run.root}{JABBER_ID}"][:1]
    except CpeFault as exc:
        if exc.fault.code not in _NO_STUN:
            raise
    rows = [(p.name, p.value, p.type, None) for p in (*public, *asked)]
    run.store.upsert_parameters(run.task.device_id, rows, now=run.now)


_CONNECTION = "XMPP.Connection.1."


def _account_parameters(run: TaskRun, offer: XmppOffer, jid: str) -> list[rpc.ParameterValue]:
    """The device account's parameters but its password (what the parameter cache keeps)."""
    username = jid.split("@", 1)[0]
    host, port = offer.server
    c = f"{run.root}{_CONNECTION}"
    return [
        rpc.ParameterValue(f"{c}Enable", "true", "xsd:boolean"),
        rpc.ParameterValue(f"{c}Username", username, "xsd:string"),
        rpc.ParameterValue(f"{c}Domain", offer.domain, "xsd:string"),
        rpc.ParameterValue(f"{c}Resource", DEVICE_RESOURCE, "xsd:string"),
        rpc.ParameterValue(f"{c}Server.1.Enable", "true", "xsd:boolean"),
        rpc.ParameterValue(f"{c}Server.1.ServerAddress", host, "xsd:string"),
        rpc.ParameterValue(f"{c}Server.1.Port", str(port), "xsd:unsignedInt"),
        rpc.ParameterValue(
            f"{run.root}ManagementServer.ConnReqXMPPConnection",
            f"{run.root}{_CONNECTION}".rstrip("."),
            "xsd:string",
        ),
    ]


def _xmpp_account(
    run: TaskRun, device: Device, offer: XmppOffer
) -> Generator[rpc.Message, rpc.Message, str | None]:
    """The device's own account set in its XMPP.Connection.1 (and made on the server):
    its bare JID, or None when the CPE has no such connection (9005..9008)."""
    assert offer.accounts is not None and offer.ensure is not None
    username, password = offer.accounts(device.unique_identifier or device.serial_number)
    jid = f"{username}@{offer.domain}"
    offer.ensure(username, password)  # made while the session goes on; the CPE retries
    secret = rpc.ParameterValue(f"{run.root}{_CONNECTION}Password", password, "xsd:string")
    parameters = (*_account_parameters(run, offer, jid), secret)
    try:
        answer: rpc.SetParameterValuesResponse = yield from run.call(
            rpc.SetParameterValues(parameters=parameters, parameter_key=task_key(run.task))
        )
    except CpeFault as exc:
        if exc.fault.code not in _NO_STUN:
            raise
        return None
    run.check_status(answer.status)
    return jid


def _reboot(run: TaskRun) -> Steps:
    yield from run.call(rpc.Reboot(command_key=task_key(run.task)))
    return WaitForInform()


def _factory_reset(run: TaskRun) -> Steps:
    yield from run.call(rpc.FactoryReset())
    return WaitForInform()


def _sync(run: TaskRun) -> Steps:
    # ACS <- CPE: the whole tree becomes the cached (stored) configuration, and the
    # device's own desired settings take the CPE's values (confirmed), so a reconf right
    # after sends nothing. Type defaults stay type defaults: they are not pinned.
    count = yield from run.fetch_tree(run.root)
    device_id = run.task.device_id
    adopted = {
        s.path: s.value if s.applied else s.cached
        for s in run.engine.effective_settings(device_id, refusals=False)
        if s.source == "device" and s.cached is not None
    }
    run.store.adopt_cpe_settings(device_id, adopted, now=run.now, actor="acs")
    run.store.set_last_configuration(device_id, now=run.now)
    return {"parameters": count}


def _device_factory_reset(run: TaskRun) -> Steps:
    # Same RPC as factory_reset; the difference is on the ACS side (settings kept and
    # re-applied after the CPE's 0 BOOTSTRAP: _reapply_settings).
    yield from run.call(rpc.FactoryReset())
    return WaitForInform()


def _configuration_update(run: TaskRun) -> Steps:
    # {"all": true}: every setting the cache does not show applied, even confirmed ones.
    result = yield from run.push_settings(everything=bool(run.task.args.get("all")))
    return result


def _reconf(run: TaskRun) -> Steps:
    # ACS -> CPE: every stored setting the cache does not show applied, refused ones too
    # (the operator asks again). After a sync nothing differs, so nothing is sent.
    result = yield from run.push_settings(everything=True, retry_refused=True)
    return result


def _refresh(run: TaskRun) -> Steps:
    path = run.task.args.get("parameter_path") or run.root
    count = yield from run.fetch_tree(path)
    return {"parameters": count}


def _typed(
    run: TaskRun, items: Sequence[Mapping[str, Any]], prefix: str = ""
) -> list[rpc.ParameterValue]:
    """The values to set, each with its type: given, else the CPE's own when it told us,
    else the data model's, else a string."""
    values = []
    for item in items:
        name = prefix + item["name"]
        xsd = item.get("type")
        if xsd is None:
            cached = run.store.get_parameter(run.task.device_id, name)
            known = cached.type if cached is not None and cached.type else None
            xsd = known or model_type(name) or "xsd:string"
        values.append(rpc.ParameterValue(name, item["value"], xsd))
    return values


def _set_parameter_values(run: TaskRun) -> Steps:
    device_id = run.task.device_id
    values = _typed(run, run.task.args["parameters"])
    answer: rpc.SetParameterValuesResponse = yield from run.call(
        rpc.SetParameterValues(
            parameters=tuple(values),
            parameter_key=run.task.args.get("parameter_key", task_key(run.task)),
        )
    )
    run.check_status(answer.status)
    run.store.upsert_parameters(
        device_id, [(v.name, v.value, v.type, None) for v in values], now=run.now
    )
    return {"status": answer.status}


def _get_parameter_values(run: TaskRun) -> Steps:
    answer: rpc.GetParameterValuesResponse = yield from run.call(
        rpc.GetParameterValues(names=tuple(run.task.args["parameter_names"]))
    )
    reported = [p for p in answer.parameters if p.name]
    run.store.upsert_parameters(
        run.task.device_id, [(p.name, p.value, p.type, None) for p in reported], now=run.now
    )
    return {"parameters": [{"name": p.name, "value": p.value, "type": p.type} for p in reported]}


def _get_parameter_names(run: TaskRun) -> Steps:
    args = run.task.args
    answer: rpc.GetParameterNamesResponse = yield from run.call(
        rpc.GetParameterNames(path=args.get("parameter_path", ""), next_level=args["next_level"])
    )
    return {"parameters": [{"name": p.name, "writable": p.writable} for p in answer.parameters]}


def _get_queued_transfers(run: TaskRun) -> Steps:
    answer: rpc.GetQueuedTransfersResponse = yield from run.call(rpc.GetQueuedTransfers())
    return {
        "transfers": [{"command_key": t.command_key, "state": t.state} for t in answer.transfers]
    }


def _get_rpc_methods(run: TaskRun) -> Steps:
    answer: rpc.GetRPCMethodsResponse = yield from run.call(rpc.GetRPCMethods())
    return {"methods": list(answer.methods)}


def _add_object(run: TaskRun) -> Steps:
    name = run.task.args["object_name"]
    answer: rpc.AddObjectResponse = yield from run.call(
        rpc.AddObject(object_name=name, parameter_key=task_key(run.task))
    )
    run.check_status(answer.status)
    result: dict[str, Any] = {
        "instance_number": answer.instance_number,
        "status": answer.status,
    }
    run.committed = result
    instance = f"{name}{answer.instance_number}."
    # The object exists now whatever happens next: a failed write or read-back must not
    # fail the task (a retry would create a second instance), so its fault only goes in
    # the result.
    if run.task.args.get("parameters"):
        values = _typed(run, run.task.args["parameters"], instance)
        try:
            set_answer: rpc.SetParameterValuesResponse = yield from run.call(
                rpc.SetParameterValues(parameters=tuple(values), parameter_key=task_key(run.task))
            )
            result["set_status"] = set_answer.status
        except CpeFault as exc:
            result["set_fault"] = {"code": exc.fault.code, "string": exc.fault.string}
    try:
        result["parameters"] = yield from run.fetch_tree(instance)
    except CpeFault as exc:
        result["refresh_fault"] = {"code": exc.fault.code, "string": exc.fault.string}
    except TaskError as exc:
        result["refresh_fault"] = {"code": None, "string": exc.message}
    return result


def _delete_object(run: TaskRun) -> Steps:
    name = run.task.args["object_name"]
    answer: rpc.DeleteObjectResponse = yield from run.call(
        rpc.DeleteObject(object_name=name, parameter_key=task_key(run.task))
    )
    run.check_status(answer.status)
    run.store.delete_parameters(run.task.device_id, name)
    return {"status": answer.status}


def _get_parameter_attributes(run: TaskRun) -> Steps:
    answer: rpc.GetParameterAttributesResponse = yield from run.call(
        rpc.GetParameterAttributes(names=tuple(run.task.args["parameter_names"]))
    )
    return {
        "attributes": [
            {"name": a.name, "notification": a.notification, "access_list": list(a.access_list)}
            for a in answer.parameters
        ]
    }


def _set_parameter_attributes(run: TaskRun) -> Steps:
    structs = tuple(
        rpc.SetParameterAttributesStruct(
            name=item["name"],
            notification_change="notification" in item,
            notification=item.get("notification", 0),
            access_list_change="access_list" in item,
            access_list=tuple(item.get("access_list", ())),
        )
        for item in run.task.args["parameters"]
    )
    yield from run.call(rpc.SetParameterAttributes(parameters=structs))
    return {}


def _schedule_inform(run: TaskRun) -> Steps:
    delay = run.task.args["delay_seconds"]
    yield from run.call(rpc.ScheduleInform(delay_seconds=delay, command_key=command_key(run.task)))
    return WaitForInform()


# ScheduleInform's DelaySeconds is an unsignedInt > 0, but the task waits in progress for the
# scheduled Inform: at most a day, the longest periodic inform interval a device may have
# (update_frequency), so a lost schedule is noticed within a day and the confirm timeout.
MAX_SCHEDULE_DELAY = 86400


def _delay_seconds(args: Mapping[str, Any]) -> dict[str, Any]:
    delay = args.get("delay_seconds")
    if isinstance(delay, float) and delay.is_integer():
        delay = int(delay)  # 159.0: JSON has one number type, JSON Schema's integer allows it
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 < delay <= MAX_SCHEDULE_DELAY:
        raise ValueError(f"delay_seconds must be an integer from 1 to {MAX_SCHEDULE_DELAY}")
    clean: dict[str, Any] = {"delay_seconds": delay}
    key = a.optional_key(args, "command_key")
    if key is not None:
        clean["command_key"] = key
    return clean


def _covers_all(pending: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return bool(pending.get("all")) or not new.get("all")


def _covers(pending: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return True


# --- the declarations -------------------------------------------------------------------

_DECLARED = (
    TaskKind("provision", _provision, front=True),
    TaskKind(
        "reboot",
        _reboot,
        completion=INFORM,
        confirmed_by=_rebooted,
        pending_name="reboot",
        api_flag="reboot",
        api_task=True,
        api_doc="Reboot RPC; done when the CPE informs with 'M Reboot'.",
        api_rank=50,
        result_schema=r.CONFIRMED_RESULT,
    ),
    TaskKind(
        "factory_reset",
        _factory_reset,
        completion=INFORM,
        confirmed_by=_bootstrapped,
        resets_cpe=True,
        wipes_settings=True,
        pending_name="factory_reset",
        api_flag="factory",
        api_task=True,
        api_doc="FactoryReset RPC; the stored settings are wiped.",
        api_rank=10,
        result_schema=r.CONFIRMED_RESULT,
    ),
    TaskKind(
        "refresh",
        _refresh,
        ("parameter_path",),
        a.optional_path,
        args_schema=a.OPTIONAL_PATH_SCHEMA,
        api_task=True,
        result_schema=r.result({"parameters": r.COUNT}),
    ),
    TaskKind(
        "set_parameter_values",
        _set_parameter_values,
        ("parameters", "parameter_key"),
        a.parameter_values,
        args_schema=a.PARAMETER_VALUES_SCHEMA,
        example={"parameters": [{"name": "Device.X.Y", "value": "1"}]},
        api_task=True,
        result_schema=r.result({"status": r.STATUS}),
    ),
    TaskKind(
        "get_parameter_values",
        _get_parameter_values,
        ("parameter_names",),
        a.parameter_names,
        args_schema=a.PARAMETER_NAMES_SCHEMA,
        example={"parameter_names": ["Device.DeviceInfo."]},
        api_task=True,
        result_schema=r.VALUES_RESULT,
    ),
    TaskKind(
        "get_parameter_names",
        _get_parameter_names,
        ("parameter_path", "next_level"),
        a.names_request,
        args_schema=a.NAMES_REQUEST_SCHEMA,
        example={"parameter_path": "Device.DeviceInfo.", "next_level": True},
        api_task=True,
        result_schema=r.NAMES_RESULT,
    ),
    TaskKind(
        "get_queued_transfers",
        _get_queued_transfers,
        api_task=True,
        result_schema=r.QUEUED_RESULT,
    ),
    TaskKind(
        "get_rpc_methods",
        _get_rpc_methods,
        api_task=True,
        result_schema=r.result({"methods": r.STRINGS}),
    ),
    TaskKind(
        "add_object",
        _add_object,
        ("object_name", "parameters"),
        a.new_object,
        args_schema=a.NEW_OBJECT_SCHEMA,
        example={"object_name": "Device.NAT.PortMapping."},
        api_task=True,
        result_schema=r.ADDED_RESULT,
    ),
    TaskKind(
        "delete_object",
        _delete_object,
        ("object_name",),
        a.instance_name,
        args_schema=a.INSTANCE_NAME_SCHEMA,
        example={"object_name": "Device.NAT.PortMapping.1."},
        api_task=True,
        result_schema=r.result({"status": r.STATUS}),
    ),
    TaskKind(
        "get_parameter_attributes",
        _get_parameter_attributes,
        ("parameter_names",),
        a.parameter_names,
        args_schema=a.PARAMETER_NAMES_SCHEMA,
        example={"parameter_names": ["Device.X."]},
        api_task=True,
        result_schema=r.ATTRIBUTES_RESULT,
    ),
    TaskKind(
        "set_parameter_attributes",
        _set_parameter_attributes,
        ("parameters",),
        a.parameter_attributes,
        args_schema=a.PARAMETER_ATTRIBUTES_SCHEMA,
        example={"parameters": [{"name": "Device.X.Y", "notification": 1}]},
        api_task=True,
        result_schema=r.result({}),
    ),
    # FactoryReset keeping the stored settings: re-applied after the CPE's 0 BOOTSTRAP.
    TaskKind(
        "device_factory_reset",
        _device_factory_reset,
        completion=INFORM,
        confirmed_by=_bootstrapped,
        after_confirm=_reapply_settings,
        resets_cpe=True,
        pending_name="device_factory_reset",
        api_flag="device_factory",
        api_doc="FactoryReset RPC; stored settings kept and re-applied after 0 BOOTSTRAP.",
        api_rank=20,
    ),
    # Read the whole tree into the stored configuration.
    TaskKind(
        "sync",
        _sync,
        pending_name="sync",
        api_flag="sync",
        api_doc="Read the CPE's whole parameter tree into the stored config.",
        api_rank=40,
    ),
    TaskKind(
        "firmware_update",
        f.firmware_update,
        ("firmware_image",),
        a.firmware_image_arg,
        example={"firmware_image": 1},
        completion=TRANSFER,
        pending_name="firmware_update",
    ),
    # Push the device's unconfirmed desired settings ({"all": true} = every stored one).
    TaskKind(
        "configuration_update",
        _configuration_update,
        ("all",),
        a.all_flag,
        coalesce=_covers_all,
        pending_name="configuration_update",
    ),
    # Re-push every stored setting.
    TaskKind(
        "reconf",
        _reconf,
        coalesce=_covers,
        pending_name="reconf",
        api_flag="reconf",
        api_doc="Re-apply every stored setting with SetParameterValues.",
        api_rank=30,
    ),
    # Upload of the vendor configuration file into a stored backup.
    TaskKind("backup", f.backup, completion=TRANSFER),
    # Download of a stored backup back to the CPE.
    TaskKind(
        "restore",
        f.restore,
        ("backup",),
        a.backup_arg,
        example={"backup": 1},
        completion=TRANSFER,
    ),
    TaskKind(
        "download",
        f.download,
        ("file", "firmware_image", "file_type", "delay_seconds", "target_file_name"),
        f.download_args,
        args_schema=f.DOWNLOAD_SCHEMA,
        example={"file": 1},
        completion=TRANSFER,
        api_task=True,
        result_schema=r.DOWNLOAD_RESULT,
    ),
    TaskKind(
        "upload",
        f.upload,
        ("file_type", "delay_seconds"),
        f.upload_args,
        args_schema=f.UPLOAD_SCHEMA,
        example={"file_type": "2 Vendor Log File"},
        completion=TRANSFER,
        api_task=True,
        result_schema=r.UPLOAD_RESULT,
    ),
    TaskKind(
        "schedule_download",
        f.schedule_download,
        ("file", "firmware_image", "file_type", "target_file_name", "time_windows"),
        f.schedule_download_args,
        args_schema=f.SCHEDULE_DOWNLOAD_SCHEMA,
        example={
            "file": 1,
            "time_windows": [
                {
                    "window_start": 0,
                    "window_end": 3600,
                    "mode": "1 At Any Time",
                    "user_message": "",
                    "max_retries": -1,
                }
            ],
        },
        completion=TRANSFER,
        api_task=True,
        result_schema=r.DOWNLOAD_RESULT,
    ),
    TaskKind(
        "cancel_transfer",
        f.cancel_transfer,
        ("task",),
        f.cancel_transfer_args,
        args_schema=f.CANCEL_TRANSFER_SCHEMA,
        example={"task": 1},
        api_task=True,
        result_schema=r.CANCELLED_RESULT,
    ),
    TaskKind(
        "get_all_queued_transfers",
        f.get_all_queued_transfers,
        api_task=True,
        result_schema=r.ALL_QUEUED_RESULT,
    ),
    TaskKind(
        "change_du_state",
        sw.change_du_state,
        ("operations",),
        sw.check,
        args_schema=sw.SCHEMA,
        example={"operations": [{"type": "install", "url": "http://127.0.0.1/du.tar"}]},
        completion=TRANSFER,
        api_task=True,
        result_schema=sw.RESULT_SCHEMA,
    ),
    # TR-143 diagnostics: set and request the test, read its results after the CPE's
    # 8 DIAGNOSTICS COMPLETE Inform.
    TaskKind(
        "diagnostics",
        diag.run,
        diag.ARGUMENTS,
        diag.check,
        args_schema=diag.SCHEMA,
        example={"test": "ip_ping", "host": "127.0.0.1"},
        completion=INFORM,
        confirmed_by=diag.confirmed,
        confirm_delay=diag.confirm_delay,
        resume_on_confirm=True,
        api_task=True,
        result_schema=r.DIAGNOSTICS_RESULT,
    ),
    # TR-069 ScheduleInform: the CPE informs "3 SCHEDULED" + "M ScheduleInform" (our
    # CommandKey) after delay_seconds; it may take that long more than a reboot to confirm.
    TaskKind(
        "schedule_inform",
        _schedule_inform,
        ("delay_seconds", "command_key"),
        _delay_seconds,
        example={"delay_seconds": 60},
        completion=INFORM,
        confirmed_by=_scheduled,
        confirm_delay=lambda args: float(args["delay_seconds"]),
        pending_name="schedule_inform",
        api_flag="schedule_inform",
        api_task=True,
        api_doc="ScheduleInform RPC; done when the CPE informs with 'M ScheduleInform'.",
        api_args=True,
        args_schema=a.arguments_schema(
            {
                "delay_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_SCHEDULE_DELAY},
                "command_key": a.key_schema(
                    "The CommandKey sent, and echoed in 'M ScheduleInform' (default: the "
                    "task's own)."
                ),
            },
            ["delay_seconds"],
        ),
        api_rank=45,
        result_schema=r.CONFIRMED_RESULT,
    ),
)

KINDS: dict[str, TaskKind] = {k.name: k for k in _DECLARED}
TASK_KINDS = tuple(KINDS)
INFORM_KINDS = {k.name: k for k in _DECLARED if k.completion == INFORM}
TRANSFER_KINDS = tuple(k.name for k in _DECLARED if k.completion == TRANSFER)
REQUEUE_KINDS = tuple(k.name for k in _DECLARED if k.requeue_after_crash)
RESET_KINDS = tuple(k.name for k in _DECLARED if k.resets_cpe)


def validate_args(kind: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check `args` for `kind` and return their normalized, JSON-ready form.

    Raises ValueError with a message meant for the API user; an unknown kind is an error.
    """
    declared = KINDS.get(kind)
    if declared is None:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(TASK_KINDS)}")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ValueError("task arguments must be an object")
    return declared.validate(args)
