"""Device tags: ``POST /inventory_device/<id>/tags/`` adds some, ``DELETE
/inventory_device/<id>/tags/<tag>/`` removes one, ``POST /tags/`` adds (``tags``) or removes
(``remove: true``) some on every device a ``filter`` (the device list filters, :mod:`api.search`)
selects within the token's organizations. The same tags as the serial operation endpoint's
``tags`` and every device representation's; the lists filter on them with ``?tag=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from acs.store.checks import MAX_TAG, TAG_PATTERN
from api import search
from api.base import Api, ApiRequest, Result, not_found, route, store_errors
from api.docs import PARAMETERS, WRITE, Doc
from api.fields import Boolean, Form, Invalid, JsonObject, TagList
from api.schema import Schema, integer, obj, string


@dataclass(frozen=True, kw_only=True)
class DeviceFilterField(JsonObject):
    """The device list filters as an object (:func:`api.search.filter_problem`)."""

    def parse(self, value: Any) -> dict[str, Any]:
        body = super().parse(value)
        problem = search.filter_problem(body)
        if problem is not None:
            raise Invalid(problem)
        return body

    def schema(self) -> Schema:
        return self._described(_FILTER)


TAGS_FORM = Form(
    "DeviceTags",
    {"tags": TagList(required=True, description="Added after the device's own, in order.")},
    components={"DeviceTagsWrite": "create"},
)
BULK_FORM = Form(
    "BulkTags",
    {
        "tags": TagList(required=True, description="Added to every device selected."),
        "filter": DeviceFilterField(required=True),
        "remove": Boolean(description="true: remove the tags instead."),
    },
    components={"BulkTagsWrite": "create"},
)

_VALUE = string(pattern=search.VALUE_PATTERN, maxLength=search.MAX_VALUE)
_FILTER: Schema = obj(
    {
        "type": integer(minimum=search.SQL_INT_MIN, maximum=search.SQL_INT_MAX),
        "status": PARAMETERS["status"]["schema"],
        "last_status_change_from": PARAMETERS["last_status_change_from"]["schema"],
        "organization": integer(minimum=search.SQL_INT_MIN, maximum=search.SQL_INT_MAX),
        "tag": {
            "type": "array",
            "items": string(pattern=TAG_PATTERN, minLength=1, maxLength=MAX_TAG),
            "maxItems": search.MAX_TAG_FILTERS,
        },
        **{name: _VALUE for name in (*search.FIELD_FILTERS, "q")},
        "id": {
            "type": "array",
            "items": integer(minimum=1, maximum=search.SQL_INT_MAX),
            "minItems": 1,
            "maxItems": search.MAX_ID_FILTERS,
        },
    },
    [],
    additional=False,
    patternProperties={search.PARAM_PATTERN: _VALUE},
    maxProperties=search.MAX_FILTER_KEYS,
    description="As the list query: type, status, last_status_change_from, organization, "
    "tag (every one), software_version, hardware_version, product_class, manufacturer, q, "
    "id (any one of these devices), and param.<TR-069 path> / param.<path>__startswith "
    "(credential paths refused). {} selects every device of the token's organizations.",
)
TAG_SCHEMAS: dict[str, Schema] = {
    "DeviceTags": obj({"tags": {"type": "array", "items": string()}}, "*"),
    "BulkTagsResult": obj(
        {
            "matched": integer(minimum=0, description="Devices the filter selects."),
            "changed": integer(minimum=0, description="Devices whose tags changed."),
            "at_limit": integer(
                minimum=0, description="Devices left without a tag: they had 100 already."
            ),
        },
        "*",
    ),
}


@route(
    "/inventory_device/<int:device_id>/tags/",
    methods=("POST",),
    role="operator",
    doc=Doc(
        "add_device_tags",
        "Add tags to the device",
        "device_resources",
        "DeviceTags",
        body="DeviceTagsWrite",
        errors=(*WRITE, "Conflict"),
        description="Tags it has already are kept where they are; past 100 tags -> 409.",
    ),
)
def add_device_tags(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)
    tags = TAGS_FORM.read(req.json_object(), mode="create")["tags"]
    with store_errors():
        result = api.store.set_tags(
            device.id, tags, add=True, now=api.now(), actor=req.principal.name
        )
    return 200, {"tags": result}


@route(
    "/inventory_device/<int:device_id>/tags/<string:tag>/",
    methods=("DELETE",),
    role="operator",
    doc=Doc(
        "remove_device_tag",
        "Remove a tag from the device",
        "device_resources",
        None,
        204,
        errors=("NotFound",),
        description="404 when the device has no such tag.",
    ),
)
def remove_device_tag(api: Api, req: ApiRequest, device_id: int, tag: str) -> Result:
    device = api.device(req, device_id)
    if tag not in api.store.device_tags(device.id):
        raise not_found("The device has no such tag.")
    with store_errors():
        api.store.remove_tags(device.id, [tag], now=api.now(), actor=req.principal.name)
    return 204, None


@route(
    "/tags/",
    methods=("POST",),
    role="operator",
    doc=Doc(
        "bulk_tags",
        "Add or remove tags on every device a filter selects",
        "inventory_device",
        "BulkTagsResult",
        body="BulkTagsWrite",
        errors=("BadRequest", "TooLarge"),
        description="One transaction; remove=true removes the tags instead.",
    ),
)
def bulk_tags(api: Api, req: ApiRequest) -> Result:
    values = BULK_FORM.read(req.json_object(), mode="create")
    filters = search.filter_object(values["filter"], req.principal)
    with store_errors():
        result = api.store.tag_devices(
            filters,
            values["tags"],
            remove=bool(values.get("remove")),
            now=api.now(),
            actor=req.principal.name,
        )
    return 200, result
