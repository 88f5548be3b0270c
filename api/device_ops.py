"""Device operations of the REST API: the operation flags of a device write, pending settings,
and ``update_status`` (spec/inventory-api.md sections 2, 3 "Device operations" and 6).

Owns turning the PATCH/PUT body operations (the ``api_flag`` of each task kind declared in
``acs.tasks.kinds``: ``reboot``, ``factory``, ``device_factory``, ``sync``, ``reconf``...;
``firmware_image`` + ``firmware_image_is_pending``, ``schedule_at``) into queued tasks
(:func:`take_operations` validates and pops them, :func:`apply_operations` queues them and
wakes the device), the ``pending_settings`` / ``pending_details`` summaries of a device's queued
work, and :func:`refresh_status` (connection requests behind ``update_status=true``).
The device route modules call these; this module declares no routes.

Pending-settings rule (section 6), in queue order (priority, id), each name listed once:

- every ``pending`` or ``in_progress`` task of a listed kind (one declaring a
  ``pending_name``: ``firmware_update``, ``reboot``, ``factory_reset``,
  ``device_factory_reset``, ``sync``, ``reconf``, ``configuration_update``...); internal
  kinds (``provision``, ``refresh``, the raw RPC kinds) are not listed;
- a pending task queued with a ``scheduled_at`` is *scheduled* work, named ``<name>_scheduled``
  for every kind (``reboot_scheduled``, ``sync_scheduled``...); the detailed form carries the
  time (``reboot_scheduled:<iso>``) until the task starts;
- ``firmware_update`` is also listed (``firmware_update:failed``) when its latest
  ``firmware_update`` task failed, while the device's ``firmware_image_is_pending`` is still
  set or the failure is unacknowledged (the task engine clears the flag when an upgrade fails
  for good and marks the task ``report_failed``; PATCHing ``firmware_image_is_pending: false``
  or ``firmware_image: null`` acknowledges it, a new request replaces it);
- ``configuration_update`` is also listed when stored settings are unconfirmed by the CPE
  (state ``failed`` when the latest ``configuration_update`` task failed, else ``pending``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    TimeoutError,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs.clock import iso
from acs.store import Store
from acs.store.models import DOWN, FAILED, IN_PROGRESS, PENDING, Device, Task
from acs.tasks import KINDS, REPORT_FAILED, TaskKind, validate_args
from api.base import Api, ApiError, ApiRequest
from api.fields import (
    UNSET,
    Boolean,
    DateTime,
    Field,
    Invalid,
    Pk,
    Unset,
    does_not_exist,
)
from api.schema import BOOLISH, FALSE_TEXT_PATTERN, Schema, string

log = Logger(namespace="api.device_ops")

# Operation flag -> the task kind it queues (every kind declaring an api_flag), in the order
# the flags are popped and validated.
FLAG_KINDS: dict[str, TaskKind] = {k.api_flag: k for k in KINDS.values() if k.api_flag}
FLAG_KEYS = tuple(FLAG_KINDS)

# (flag, task kind) in the queue order of one body (the kinds' api_rank): destructive resets
# first, so a reboot or sync asked in the same body runs against the reset device.
FLAG_TASKS = tuple(
    (flag, kind.name) for flag, kind in sorted(FLAG_KINDS.items(), key=lambda i: i[1].api_rank)
)

# Task kind -> pending_settings item name; kinds not here are internal and never listed.
PENDING_NAMES = {k.name: k.pending_name for k in KINDS.values() if k.pending_name}

# At most this many connection requests in flight for one update_status call. A page holds at
# most 100 devices and the spec wants a full page to cost at most the timeout, so one page's
# requests all fit; the bound only protects against a caller handing more ids.
UPDATE_STATUS_CONCURRENCY = 100


@dataclass(frozen=True, init=False)
class Operations:
    """The operation part of a device write body (see :func:`take_operations`).

    Built with one keyword per operation flag: ``Operations(reboot=True)``, or the task's
    arguments for a flag that takes some (``schedule_inform={"delay_seconds": 60}``); false
    flags queue nothing."""

    # Flag -> the arguments of the task it queues, for the flags that queue one.
    tasks: Mapping[str, Mapping[str, Any]]
    # The target image id when the key was present (None = clear the target), else UNSET.
    firmware_image: int | Unset | None
    firmware_image_is_pending: bool | None  # None = key absent
    schedule_at: float | None

    def __init__(
        self,
        *,
        firmware_image: int | Unset | None = UNSET,
        firmware_image_is_pending: bool | None = None,
        schedule_at: float | None = None,
        **flags: bool | Mapping[str, Any],
    ) -> None:
        unknown = sorted(set(flags) - set(FLAG_KINDS))
        if unknown:
            raise TypeError(f"unknown operation flag(s): {', '.join(unknown)}")
        tasks = {f: {} if v is True else v for f, v in flags.items() if v is not False}
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "firmware_image", firmware_image)
        object.__setattr__(self, "firmware_image_is_pending", firmware_image_is_pending)
        object.__setattr__(self, "schedule_at", schedule_at)

    def any(self) -> bool:
        """True when applying these operations would change or queue anything."""
        return (
            bool(self.tasks)
            or not isinstance(self.firmware_image, Unset)
            or self.firmware_image_is_pending is not None
        )


@dataclass(frozen=True, kw_only=True)
class TaskFlag(Field):
    """An operation flag: true queues the task kind (false nothing); a kind declaring
    ``api_args`` takes an object of its arguments instead, validated by the kind. Cleans to
    the task's arguments, or None when it queues nothing."""

    kind: TaskKind

    def clean(self, value: Any) -> dict[str, Any] | None:
        return self.parse(value)  # null is neither a boolean nor arguments

    def parse(self, value: Any) -> dict[str, Any] | None:
        if self.kind.api_args and isinstance(value, dict):
            args = value
        else:
            try:
                if not Boolean().parse(value):
                    return None
            except Invalid:
                if self.kind.api_args:
                    raise Invalid("Must be an object of arguments or a boolean.") from None
                raise
            args = {}
        try:
            return validate_args(self.kind.name, args)
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    def schema(self) -> Schema:
        if self.kind.args_schema is None:
            return {**BOOLISH, "description": self.kind.api_doc}
        try:
            self.kind.validate({})
        except ValueError:  # arguments are needed: true is refused, false queues nothing
            flag: list[Schema] = [{"enum": [False, 0]}, string(pattern=FALSE_TEXT_PATTERN)]
        else:
            flag = [BOOLISH]
        options = [*flag, dict(self.kind.args_schema)]
        return {"anyOf": options, "description": self.kind.api_doc}


# Body keys this module owns, in the order they are popped and validated.
OPERATION_FIELDS: dict[str, Field] = {
    **{flag: TaskFlag(kind=kind) for flag, kind in FLAG_KINDS.items()},
    "schedule_at": DateTime(description="Delay the queued operations to this time."),
    "firmware_image": Pk(objects=False, description="Target firmware image id."),
    "firmware_image_is_pending": Boolean(),
}
# Their schemas, for the device write bodies of the OpenAPI document (api.validation).
OPERATION_PROPERTIES = {key: spec.schema() for key, spec in OPERATION_FIELDS.items()}


def take_operations(store: Store, body: dict[str, Any]) -> Operations:
    """Pop the operation keys from ``body`` and validate them.

    Raises :class:`ApiError` 400 with every invalid field (``{"field": ["msg"]}``); an unknown
    firmware image is a 400 too. ``body`` is left without the operation keys, even on error,
    so a caller's unknown-field check never reports them. Flags that are false are accepted
    and do nothing.
    """
    raw = {key: body.pop(key) for key in OPERATION_FIELDS if key in body}
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for key, value in raw.items():
        try:
            values[key] = OPERATION_FIELDS[key].clean(value)
        except Invalid as exc:
            errors[key] = exc.messages
    image = values.get("firmware_image")
    if image is not None and store.get_firmware_image(image) is None:
        errors["firmware_image"] = [does_not_exist(image)]
    if errors:
        raise ApiError(400, errors)
    return Operations(
        firmware_image=values.get("firmware_image", UNSET),
        firmware_image_is_pending=values.get("firmware_image_is_pending"),
        schedule_at=values.get("schedule_at"),
        **{flag: args for flag in FLAG_KEYS if (args := values.get(flag)) is not None},
    )


# --- pending settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    name: str
    state: str  # "pending" | "in_progress" | "failed" | ISO time of scheduled work
    changed: float  # when this work became pending (for last_pending_change)


def _latest(tasks: list[Task], kind: str) -> Task | None:
    mine = [t for t in tasks if t.kind == kind]
    return max(mine, key=lambda t: t.id) if mine else None


class PendingWork:
    """The pending work of a set of devices (a list page), read in two queries: their tasks
    of the listed kinds and their unconfirmed settings. ``settings``/``details`` then answer
    per device without touching the store, so a page costs the same at any page size."""

    def __init__(self, store: Store, devices: Sequence[Device]) -> None:
        ids = [d.id for d in devices]
        self._tasks = store.tasks_for_devices(ids, kinds=PENDING_NAMES)
        self._settings = store.unconfirmed_settings_summary(ids)

    def _items(self, device: Device) -> list[_Item]:
        tasks = self._tasks.get(device.id, [])  # queue order
        items: list[_Item] = []
        seen: set[str] = set()

        def add(name: str, state: str, changed: float) -> None:
            if name not in seen:
                seen.add(name)
                items.append(_Item(name, state, changed))

        last_firmware = _latest(tasks, "firmware_update")
        for task in tasks:
            name = PENDING_NAMES[task.kind]
            if task.state == IN_PROGRESS:
                add(name, IN_PROGRESS, task.created)
            elif task.state == PENDING:
                if task.scheduled_at is not None:
                    when = iso(task.scheduled_at) or ""
                    add(f"{name}_scheduled", when, task.created)
                else:
                    add(name, PENDING, task.created)
            elif (
                task.state == FAILED
                and task is last_firmware
                and (device.firmware_image_is_pending or (task.result or {}).get(REPORT_FAILED))
            ):
                add(name, FAILED, task.finished or task.created)
        unconfirmed = self._settings.get(device.id)
        if "configuration_update" not in seen and unconfirmed is not None:
            last_conf = _latest(tasks, "configuration_update")
            failed = last_conf is not None and last_conf.state == FAILED
            changed = unconfirmed[1] or device.last_change
            add("configuration_update", FAILED if failed else PENDING, changed)
        return items

    def settings(self, device: Device, *, detailed: bool) -> str | None:
        """Section 6: ``"firmware_update,reboot_scheduled"`` or, detailed,
        ``"firmware_update:pending,reboot_scheduled:2024-01-16T02:00:00Z"``; None when
        nothing is pending. See the module docstring for the rule."""
        items = self._items(device)
        if not items:
            return None
        if detailed:
            return ",".join(f"{i.name}:{i.state}" for i in items)
        return ",".join(i.name for i in items)

    def details(self, device: Device) -> dict[str, Any]:
        """The serial view's ``pending_details``: unconfirmed setting count, whether a
        firmware update is pending, and when the newest pending work was queued (ISO or
        None)."""
        items = self._items(device)
        # Same rule as settings(), so the two never disagree (a waiting, running or failed
        # but still wanted upgrade).
        firmware = any(i.name == "firmware_update" for i in items)
        last = max((i.changed for i in items), default=None)
        unconfirmed = self._settings.get(device.id)
        return {
            "configuration_updates": 0 if unconfirmed is None else unconfirmed[0],
            "firmware_update": firmware,
            "last_pending_change": iso(last),
        }


def pending_settings(store: Store, device_id: int, *, detailed: bool) -> str | None:
    """:meth:`PendingWork.settings` of one device (None if there is no such device)."""
    device = store.get_device(device_id)
    if device is None:
        return None
    return PendingWork(store, [device]).settings(device, detailed=detailed)


def pending_details(store: Store, device_id: int) -> dict[str, Any]:
    """:meth:`PendingWork.details` of one device."""
    device = store.get_device(device_id)
    if device is None:
        return {"configuration_updates": 0, "firmware_update": False, "last_pending_change": None}
    return PendingWork(store, [device]).details(device)


# --- applying operations ------------------------------------------------------------------


def check_operations(device: Device, ops: Operations) -> None:
    """Refuse (400) operations that cannot apply to ``device``, before anything is written.

    :func:`apply_operations` calls it first; a caller that writes other fields before
    applying operations should call it before that write."""
    if ops.firmware_image_is_pending and ops.firmware_image is None:
        raise ApiError(
            400,
            {"firmware_image_is_pending": ["Cannot be true while firmware_image is null."]},
        )
    if (
        ops.firmware_image_is_pending
        and isinstance(ops.firmware_image, Unset)
        and device.firmware_image_id is None
    ):
        raise ApiError(
            400,
            {"firmware_image_is_pending": ["The device has no firmware_image to upgrade to."]},
        )


def apply_operations(api: Api, req: ApiRequest, device: Device, ops: Operations) -> None:
    """Queue the tasks of ``ops`` for ``device`` and wake it (unless scheduled).

    Every task is queued with actor = the token's name and ``scheduled_at = ops.schedule_at``;
    the firmware fields go through ``TaskEngine.set_firmware``. The device is woken once,
    after everything is queued (a scheduled body wakes nothing now: its tasks run at the
    first session after their time).
    """
    if not ops.any():
        return
    check_operations(device, ops)
    store = api.store
    actor = req.principal.name
    now = api.now()
    when = ops.schedule_at
    queued = False
    with store.transaction():
        # Firmware first: the target and its pending flag are device fields.
        if not isinstance(ops.firmware_image, Unset) or ops.firmware_image_is_pending is not None:
            target = (
                device.firmware_image_id
                if isinstance(ops.firmware_image, Unset)
                else ops.firmware_image
            )
            queued = api.tasks.set_firmware(
                device,
                target,
                ops.firmware_image_is_pending,
                actor=actor,
                now=now,
                scheduled_at=when,
            )
        for flag, kind in FLAG_TASKS:
            args = ops.tasks.get(flag)
            if args is None:
                continue
            api.tasks.queue(
                device.id, kind, args, actor=actor, scheduled_at=when, wake=False, now=now
            )
            queued = True
    if queued and (when is None or when <= now):
        api.tasks.wake(device.id)


# --- update_status -------------------------------------------------------------------------


async def refresh_status(api: Api, device_ids: Sequence[int]) -> None:
    """Connection request to each device (concurrently, bounded), waiting at most
    ``config.api.update_status_timeout`` in total; never blocks the reactor.

    The ConnectionRequester records each outcome (answered -> Up, refused/timeout -> Down).
    A device whose request is still unanswered at the deadline is marked Down here (it did
    not answer in time); its request keeps running and a late answer marks it Up again.
    """
    ids = list(dict.fromkeys(device_ids))
    if not ids:
        return
    reactor = api.appliance.reactor
    timeout = float(api.appliance.config.api.update_status_timeout)
    semaphore = DeferredSemaphore(UPDATE_STATUS_CONCURRENCY)
    settled: set[int] = set()

    def one(device_id: int) -> Deferred[Any]:
        def note(outcome: Any) -> Any:
            if not isinstance(outcome, Failure):  # a cancelled wait is not an answer
                settled.add(device_id)
            return outcome

        return api.appliance.connreq.wake(device_id).addBoth(note)

    calls = [semaphore.run(one, device_id) for device_id in ids]
    everything: Deferred[Any] = DeferredList(calls, consumeErrors=True)
    everything.addTimeout(timeout, reactor)
    try:
        await everything
    except TimeoutError:
        pass
    finally:
        for call in calls:
            if not call.called:
                # Stops waiting (and frees the semaphore slot); the request itself goes on.
                call.cancel()
    late = [i for i in ids if i not in settled]
    if not late:
        return
    now = api.now()
    for device_id in late:
        try:
            api.store.set_status(
                device_id,
                DOWN,
                now=now,
                actor="acs",
                reason=f"no answer to the connection request within {timeout:g} s",
            )
        except Exception:
            log.failure("cannot mark device {device_id} Down", device_id=device_id)
