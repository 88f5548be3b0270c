"""``/webhook/`` (admin, a token without organization scope: a webhook hears of every
organization): where the appliance POSTs its events (:mod:`acs.webhooks`). Create with a
``url`` (http or https), the ``event_types`` wanted (default: all) and optionally a
``secret`` (default: generated); the secret is shown in the creation's answer only. A
webhook hears of events from its creation on; ``.../deliveries/`` is its delivery log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from acs.events import EVENT_TYPES
from acs.store.models import Delivery, Webhook
from api.base import (
    Api,
    ApiRequest,
    Result,
    conflict,
    forbidden,
    not_found,
    route,
    store_errors,
)
from api.docs import PAGE, Doc, crud
from api.fields import Form, Invalid, Matching, RawText, StringList
from api.resources import paged
from api.schema import Schema, integer, string
from api.views import Out, View, when

URL_PATTERN = r"^https?://[!-~]+$"
MAX_URL = 2048
MAX_WEBHOOKS = 100


@dataclass(frozen=True, kw_only=True)
class _EventTypes(StringList):
    """Some of the event types (an empty list: all of them)."""

    max_items: int = len(EVENT_TYPES)

    def parse(self, value: Any) -> list[str]:
        types = super().parse(value)
        unknown = [t for t in types if t not in EVENT_TYPES.values()]
        if unknown:
            raise Invalid(f"Unknown event types: {', '.join(repr(t[:40]) for t in unknown[:5])}.")
        return list(dict.fromkeys(types))

    def schema(self) -> Schema:
        items = string(enum=list(EVENT_TYPES.values()))
        return self._described({"type": "array", "items": items, "maxItems": self.max_items})


WEBHOOK_FORM = Form(
    "Webhook",
    {
        "url": Matching(
            required=True,
            pattern=URL_PATTERN,
            max_length=MAX_URL,
            message="Enter an http or https URL.",
            description="http(s) URL to POST to.",
        ),
        "event_types": _EventTypes(
            description="Of " + ", ".join(EVENT_TYPES.values()) + " (default: all).",
        ),
        "secret": RawText(
            max_length=256, description="HMAC-SHA256 key of X-ACS-Signature (default: generated)."
        ),
    },
    components={"WebhookWrite": "create"},
)
_VIEW: dict[str, Out] = {
    "id": Out(integer()),
    "url": Out(string()),
    "event_types": Out({"type": "array", "items": string()}),
    "created": when(),
}
webhook_json = View("Webhook", _VIEW).render
created_json = View(
    "WebhookCreated",
    {**_VIEW, "secret": Out(string(description="Shown this once."))},
    page=None,
).render
delivery_json = View(
    "WebhookDelivery",
    {
        "id": Out(integer()),
        "event_id": Out(integer()),
        "event_type": Out(string()),
        "state": Out(string(enum=["pending", "delivered"])),
        "attempts": Out(integer(minimum=0)),
        "next_attempt_at": when(),
        "last_status": Out(integer(True, description="HTTP status of the last attempt.")),
        "last_error": Out(string(True)),
        "created": when(),
        "delivered": when(null=True),
    },
).render
DOCS = crud("webhook", "webhook", "Webhook")


def _unscoped(req: ApiRequest) -> None:
    if req.principal.scope is not None:
        raise forbidden("A webhook hears of every organization: use a token without scope.")


def _webhook(api: Api, req: ApiRequest, webhook_id: int) -> Webhook:
    _unscoped(req)
    hook = api.store.get_webhook(webhook_id)
    if hook is None:
        raise not_found("No webhook with this id.")
    return hook


@route("/webhook/", methods=("GET",), role="admin", doc=DOCS["list"])
def list_webhooks(api: Api, req: ApiRequest) -> Result:
    _unscoped(req)
    hooks = api.store.webhooks()
    return paged(
        req, lambda limit, offset: (len(hooks), hooks[offset : offset + limit]), webhook_json
    )


@route(
    "/webhook/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "create_webhook", "Create a webhook", "webhook", "WebhookCreated", 201,
        body="WebhookWrite", errors=("BadRequest", "Conflict"),
        description="At most 100 webhooks (409).",
    ),
)  # fmt: skip
def create_webhook(api: Api, req: ApiRequest) -> Result:
    _unscoped(req)
    values: dict[str, Any] = WEBHOOK_FORM.read(req.json_object(), mode="create")
    if len(api.store.webhooks()) >= MAX_WEBHOOKS:
        raise conflict(f"At most {MAX_WEBHOOKS} webhooks.")
    types = values.get("event_types") or list(EVENT_TYPES.values())
    secret = values.get("secret") or secrets.token_urlsafe(32)
    with store_errors():
        hook = api.store.create_webhook(
            values["url"], secret, types, now=api.now(), actor=req.principal.name
        )
    return 201, created_json(hook)


@route("/webhook/<int:webhook_id>/", methods=("GET",), role="admin", doc=DOCS["get"])
def get_webhook(api: Api, req: ApiRequest, webhook_id: int) -> Result:
    return 200, webhook_json(_webhook(api, req, webhook_id))


@route(
    "/webhook/<int:webhook_id>/",
    methods=("DELETE",),
    role="admin",
    doc=Doc(
        "delete_webhook", "Delete a webhook and its outbox", "webhook", None, 204,
        errors=("NotFound",),
    ),
)  # fmt: skip
def delete_webhook(api: Api, req: ApiRequest, webhook_id: int) -> Result:
    hook = _webhook(api, req, webhook_id)
    api.store.delete_webhook(hook.id, now=api.now(), actor=req.principal.name)
    return 204, None


@route(
    "/webhook/<int:webhook_id>/deliveries/",
    methods=("GET",),
    role="admin",
    doc=Doc(
        "list_webhook_deliveries", "The webhook's delivery log, newest first", "webhook",
        "WebhookDeliveryPage", params=PAGE, errors=("BadRequest", "NotFound"),
    ),
)  # fmt: skip
def list_deliveries(api: Api, req: ApiRequest, webhook_id: int) -> Result:
    hook = _webhook(api, req, webhook_id)

    def fetch(limit: int, offset: int) -> tuple[int, list[Delivery]]:
        return api.store.deliveries_page(hook.id, limit=limit, offset=offset)

    return paged(req, fetch, delivery_json)
