"""The appliance's events: device history entries of a few kinds, told to the outside by
the event stream (``GET /events/``, :mod:`api.events`) and by webhooks
(:mod:`acs.webhooks`) in the same form.

An event exists once the change it tells of is committed (its history entry), so both can
resume from an entry id: ``device.registered``, ``device.status_changed``,
``device.informed``, ``task.queued``, ``task.done``, ``task.failed`` and
``campaign.progress`` (a device of a campaign finished its task: done, failed or
cancelled, with the campaign's id).
"""

from __future__ import annotations

import json
from typing import Any

from acs.clock import iso
from acs.store.models import HistoryEntry

# History actions -> event types.
EVENT_TYPES = {
    "created": "device.registered",
    "status": "device.status_changed",
    "inform": "device.informed",
    "task_queued": "task.queued",
    "task_done": "task.done",
    "task_failed": "task.failed",
    "campaign_progress": "campaign.progress",
}
ACTIONS = tuple(EVENT_TYPES)


def event(entry: HistoryEntry, organization: int) -> dict[str, Any]:
    """The event an entry (of one of ``ACTIONS``) is: type, id, time, device, its
    organization, the actor and the entry's detail."""
    return {
        "type": EVENT_TYPES[entry.action],
        "id": entry.id,
        "time": iso(entry.time),
        "device": entry.device_id,
        "organization": organization,
        "actor": entry.actor,
        "detail": entry.detail,
    }


def event_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
