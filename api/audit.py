"""``GET /audit/`` (admin): the audit log, every entry written by an API token or the CLI
(writes, operations, token and catalog changes), newest first, never the ACS's own entries
nor the CPEs'. Filters: ``actor``, ``action``, ``device`` (its entries), ``since`` and
``until`` (times); a token scoped to organizations sees the entries of their devices only
(the global ones may name other tenants). An unknown query parameter is a 400.
"""

from __future__ import annotations

import re

from api.base import Api, ApiRequest, Result, field_error, parse_datetime, route, store_errors
from api.docs import PAGE, Doc, query_param
from api.schema import integer, obj, string
from api.search import MAX_VALUE, VALUE_PATTERN
from api.views import Out, View, when

_TEXT = string(pattern=VALUE_PATTERN, maxLength=MAX_VALUE)
AUDIT_PARAMETERS = (
    query_param("actor", _TEXT, "Entries of this token name (or 'acs import').", empty=True),
    query_param("action", _TEXT, "Entries of this action, e.g. updated, task_queued.", empty=True),
    query_param(
        "device", integer(minimum=1, maximum=2**63 - 1), "Entries about this device.", empty=True
    ),
    query_param("since", string(format="date-time"), "Entries at or after this time.", empty=True),
    query_param("until", string(format="date-time"), "Entries before this time.", empty=True),
)
_ALLOWED = frozenset({"actor", "action", "device", "since", "until", *PAGE})

audit_json = View(
    "AuditEntry",
    {
        "id": Out(integer()),
        "time": when(),
        "actor": Out(string(description="The token's name (or 'acs import').")),
        "action": Out(string(examples=["updated", "task_queued", "tags_changed"])),
        "device": Out(
            integer(True, description="The device concerned; null: global."), "device_id"
        ),
        "detail": Out(obj({}, description="What changed (fields, before/after, ids).")),
    },
    description="One audit entry written by an API token or the CLI.",
).render


def _text(req: ApiRequest, name: str) -> str | None:
    value = req.query().get(name) or None
    if value is not None and (
        len(value) > MAX_VALUE or not re.fullmatch(VALUE_PATTERN[1:-1], value)
    ):
        raise field_error(name, f"Give at most {MAX_VALUE} visible characters.")
    return value


def _time(req: ApiRequest, name: str) -> float | None:
    raw = req.query().get(name, "")
    if raw == "":
        return None
    when = parse_datetime(raw)
    if when is None:
        raise field_error(name, "Enter a valid date/time, e.g. 2024-01-15T09:30:00Z.")
    return when


@route(
    "/audit/",
    methods=("GET",),
    role="admin",
    doc=Doc(
        "list_audit",
        "The audit log: every entry API tokens and the CLI wrote",
        "meta",
        "AuditEntryPage",
        params=(*AUDIT_PARAMETERS, *PAGE),
        errors=("BadRequest",),
    ),
)
def list_audit(api: Api, req: ApiRequest) -> Result:
    query = req.query()
    for name in query:
        if name not in _ALLOWED:
            raise field_error(name[:100], "Unknown query parameter.")
    device = req.query_int("device", minimum=1)
    limit, offset = req.page_params()
    with store_errors():
        total, entries = api.store.audit_page(
            organization_ids=req.principal.scope,
            actor=_text(req, "actor"),
            action=_text(req, "action"),
            device_id=device,
            since=_time(req, "since"),
            until=_time(req, "until"),
            limit=limit,
            offset=offset,
        )
    return 200, req.page(total, [audit_json(e) for e in entries], limit, offset)
