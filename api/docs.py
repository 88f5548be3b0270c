"""The OpenAPI description of one operation, declared on its route.

Each :func:`api.base.route` carries a :class:`Doc` (or one per method when a handler serves
several): operation id, summary, tag, success code and schema, query parameters, body and
the error answers it can give. The route supplies the path, its parameters and the minimum
role; :mod:`api.openapi` assembles ``paths`` from the route registry
(:data:`api.base.ROUTES`), so a route cannot exist undocumented or be documented twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acs.store.checks import MAX_TAG, TAG_PATTERN
from acs.store.models import TASK_STATES
from api.base import DEFAULT_LIMIT, MAX_LIMIT, SQL_INT_MAX
from api.schema import BOOL_TEXT_PATTERN, JSON, Schema, integer, ref, string
from api.search import MAX_ID_FILTERS, MAX_VALUE, ORDERING_PATTERN, VALUE_PATTERN

# Error answers an operation may give, by component name; 401, 403 and 503 apply to every
# authenticated operation.
_ERROR_CODES = {
    "BadRequest": "400",
    "NotFound": "404",
    "Conflict": "409",
    "TooLarge": "413",
    "Unprocessable": "422",
}
READ = ("BadRequest",)
DETAIL = ("BadRequest", "NotFound")
WRITE = ("BadRequest", "NotFound", "TooLarge")
CREATE = ("BadRequest", "Conflict", "TooLarge")
PAGE = ("limit", "offset")
DEVICE_FILTERS = (
    "type",
    "status",
    "last_status_change_from",
    "organization",
    "tag",
    "software_version",
    "hardware_version",
    "product_class",
    "manufacturer",
    "q",
    "id",
    *PAGE,
    "ordering",
    "pending",
    "update_status",
    "format",
)

# Ids beyond SQLite's integers name no row: the route does not match them (404).
_ID_INT = integer(minimum=1, maximum=SQL_INT_MAX)


def path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _rid(what: str, name: str = "id") -> Schema:
    return path_param(name, _ID_INT, f"{what} id.")


# A route's path variables as documented: the name clients see and what it is.
PATH_PARAMETERS: dict[str, Schema] = {
    "device_id": _rid("Device"),
    "serial": path_param(
        "serial_number",
        string(pattern=r"^[^/\s]+$"),
        "Serial number (case-sensitive; may contain '.', '-', '_', ':').",
    ),
    "org_id": _rid("organization"),
    "type_id": _rid("device type"),
    "location_id": _rid("location"),
    "image_id": _rid("firmware image"),
    "file_id": _rid("stored file"),
    "task_id": _rid("Task", "task_id"),
    "backup_id": _rid("Backup", "backup_id"),
    "webhook_id": _rid("webhook"),
    "campaign_id": _rid("campaign"),
    "tag": path_param("tag", string(minLength=1, maxLength=MAX_TAG), "One of the device's tags."),
}


def list_responses(page: str) -> dict[str, Schema]:
    """A device list's 200: a JSON page, or with format=csv the whole selection as CSV."""
    return {
        "200": {
            "description": "A page of devices; with format=csv every device selected, as CSV.",
            "content": {
                JSON: {"schema": ref(page)},
                "text/csv": {"schema": string(description="A header row, then one per device.")},
            },
        }
    }


def error_response(description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": ref("ErrorBody")}}}


@dataclass(frozen=True)
class Doc:
    """One operation. ``response``: a component name, an inline schema, or None (no
    content); ``params``: names in components/parameters or inline parameter objects;
    ``body``: the JSON request body's component, or ``request_body`` a whole request body
    object (one that is not JSON); ``responses``: answers replacing the generated ones."""

    op_id: str
    summary: str
    tag: str
    response: str | Schema | None = None
    ok: int = 200
    params: tuple[str | Schema, ...] = ()
    body: str | None = None
    body_required: bool = True
    errors: tuple[str, ...] = ()
    description: str | None = None
    request_body: Schema | None = None
    responses: dict[str, Schema] = field(default_factory=dict)

    def operation(self, role: str | None) -> Schema:
        """The OpenAPI operation object; ``role`` None: no token needed."""
        responses: dict[str, Any] = {}
        if self.response is None:
            responses[str(self.ok)] = {"description": "No content."}
        else:
            schema = ref(self.response) if isinstance(self.response, str) else self.response
            responses[str(self.ok)] = {
                "description": "Success.",
                "content": {JSON: {"schema": schema}},
            }
        for name in self.errors:
            responses[_ERROR_CODES[name]] = {"$ref": f"#/components/responses/{name}"}
        op: Schema = {"operationId": self.op_id, "summary": self.summary, "tags": [self.tag]}
        if role is None:
            op["security"] = []
        else:
            for code, name in (("401", "Unauthorized"), ("403", "Forbidden")):
                responses[code] = {"$ref": f"#/components/responses/{name}"}
            responses["503"] = {"$ref": "#/components/responses/StorageFull"}
            op["x-required-role"] = role
            op["parameters"] = [
                {"$ref": f"#/components/parameters/{p}"} if isinstance(p, str) else p
                for p in self.params
            ]
        responses.update(self.responses)
        op["responses"] = dict(sorted(responses.items()))
        if self.description:
            op["description"] = self.description
        if self.body is not None:
            op["requestBody"] = {
                "required": self.body_required,
                "content": {JSON: {"schema": ref(self.body)}},
            }
        if self.request_body is not None:
            op["requestBody"] = self.request_body
        return op


def device_page(op_id: str, summary: str, response: str, *, params: tuple[str, ...] = ()) -> Doc:
    """A page of one device's child resources (``device_resources``)."""
    return Doc(op_id, summary, "device_resources", response, params=(*params, *PAGE), errors=DETAIL)


def crud(name: str, tag: str, schema: str, *, list_params: tuple[str, ...] = ()) -> dict[str, Doc]:
    """The operations of an admin CRUD resource (list, create, get, replace, patch,
    delete) named ``name``, tagged ``tag``, whose representation is component ``schema``."""
    return {
        "list": Doc(
            f"list_{tag}",
            f"List {name}s",
            tag,
            f"{schema}Page",
            params=(*list_params, *PAGE),
            errors=READ,
        ),
        "create": Doc(
            f"create_{tag}", f"Create a {name}", tag, schema, 201, body=f"{schema}Write",
            errors=CREATE,
        ),
        "get": Doc(f"get_{tag}", f"One {name}", tag, schema, errors=DETAIL),
        "replace": Doc(
            f"replace_{tag}", f"Replace a {name}", tag, schema, body=f"{schema}Write",
            errors=(*WRITE, "Conflict"),
        ),
        "patch": Doc(
            f"patch_{tag}", f"Update a {name}", tag, schema, body=f"{schema}Patch",
            errors=(*WRITE, "Conflict"),
        ),
        "delete": Doc(
            f"delete_{tag}", f"Delete a {name}", tag, None, 204, errors=("NotFound", "Conflict"),
            description="409 while devices still refer to it.",
        ),
    }  # fmt: skip


# --- components: parameters and responses ---------------------------------------------

_TASK_STATES = f"({'|'.join(TASK_STATES)})"
MAX_TASK_TIMEOUT = 120  # seconds POST .../tasks/?timeout= may wait for the task
_BOOL_QUERY = string(pattern=BOOL_TEXT_PATTERN, examples=["true"])


def query_param(name: str, schema: Schema, description: str, *, empty: bool = False) -> Schema:
    """A query parameter; ``empty``: ``?name=`` is the same as leaving it out."""
    param: Schema = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
    if empty:
        param["allowEmptyValue"] = True
    return param


PARAMETERS: dict[str, Schema] = {
    "limit": query_param(
        "limit",
        integer(minimum=0, maximum=SQL_INT_MAX, default=DEFAULT_LIMIT),
        f"Page size (default {DEFAULT_LIMIT}, also for 0; larger values are capped at "
        f"{MAX_LIMIT}). Non-integer or negative -> 400.",
        empty=True,
    ),
    "offset": query_param(
        "offset",
        integer(minimum=0, maximum=SQL_INT_MAX, default=0),
        "Index of the first result (default 0). Non-integer or negative -> 400.",
        empty=True,
    ),
    "pending": query_param(
        "pending",
        _BOOL_QUERY,
        "Detailed pending form: each pending item carries its state.",
    ),
    "update_status": query_param(
        "update_status",
        _BOOL_QUERY,
        "Send a connection request to each returned device first (bounded by "
        "api.update_status_timeout) and update its status from the outcome. Needs the "
        "operator role.",
    ),
    "type": query_param(
        "type",
        integer(minimum=-SQL_INT_MAX - 1, maximum=SQL_INT_MAX),
        "Device type id.",
        empty=True,
    ),
    "status": query_param(
        "status",
        string(enum=["0", "false", "False", "1", "true", "True"]),
        "0/false/False = Down, 1/true/True = Up; anything else -> 400.",
        empty=True,
    ),
    "last_status_change_from": query_param(
        "last_status_change_from",
        {
            "anyOf": [string(format="date-time"), string(format="date")],
            "examples": ["2000-01-01T00:01:00+00:00"],
        },
        "status_change >= this. Accepts 2000-01-01, 2000-01-01 00:01:00, "
        "2000-01-01T00:01:00, with or without offset (naive = UTC); invalid -> 400.",
        empty=True,
    ),
    "organization": query_param(
        "organization",
        integer(minimum=-SQL_INT_MAX - 1, maximum=SQL_INT_MAX),
        "Organization id; outside the token's scope -> 403.",
        empty=True,
    ),
    "tag": {
        **query_param(
            "tag",
            {"type": "array", "items": string(pattern=TAG_PATTERN, minLength=1, maxLength=MAX_TAG)},
            "Devices carrying this tag; repeat it for devices carrying every one given.",
        ),
        "style": "form",
        "explode": True,
    },
    **{
        name: query_param(
            name,
            string(pattern=VALUE_PATTERN, maxLength=MAX_VALUE),
            f"Devices whose {name} is exactly this.",
            empty=True,
        )
        for name in ("software_version", "hardware_version", "product_class", "manufacturer")
    },
    "q": query_param(
        "q",
        string(pattern=VALUE_PATTERN, maxLength=MAX_VALUE),
        "Devices whose serial number, name, unique identifier or description contains this "
        "(ASCII letters in any case).",
        empty=True,
    ),
    "id": {
        **query_param(
            "id",
            {
                "type": "array",
                "items": integer(minimum=1, maximum=SQL_INT_MAX),
                "maxItems": MAX_ID_FILTERS,
            },
            f"Devices with one of these ids (repeat it, at most {MAX_ID_FILTERS}): a "
            "selection made in a list.",
        ),
        "style": "form",
        "explode": True,
    },
    "ordering": query_param(
        "ordering",
        string(pattern=ORDERING_PATTERN),
        "Sort by this field, then by id; a leading - sorts descending; devices without a "
        "value come last. Default: id.",
        empty=True,
    ),
    "location_organization": query_param(
        "organization",
        integer(minimum=1, maximum=SQL_INT_MAX),
        "Organization id: its locations and the shared ones; outside the token's scope -> 403.",
        empty=True,
    ),
    "connection_request": query_param(
        "connection_request",
        _BOOL_QUERY,
        "false: only queue the task (it runs at the device's next session).",
    ),
    "task_timeout": query_param(
        "timeout",
        integer(minimum=0, maximum=MAX_TASK_TIMEOUT),
        f"Seconds to wait for the task to end (0-{MAX_TASK_TIMEOUT}, default 0): 200 with the "
        "finished task, else 202 with the task as it stands.",
        empty=True,
    ),
    "format": query_param(
        "format",
        string(enum=["json", "csv"]),
        "csv: every device the filters select (paging aside), as a CSV file that "
        "POST /inventory_device/import/ reads back.",
        empty=True,
    ),
    "dry_run": query_param("dry_run", _BOOL_QUERY, "Check the file and report; write nothing."),
    "force": query_param(
        "force",
        _BOOL_QUERY,
        "Delete even while a CWMP session or firmware transfer is in progress.",
    ),
    "task_state": query_param(
        "state",
        string(
            pattern=f"^ *{_TASK_STATES} *(, *{_TASK_STATES} *)*$",
            examples=["pending,in_progress"],
        ),
        "Comma-separated task states to list, e.g. 'pending,failed'.",
        empty=True,
    ),
    "path_prefix": query_param(
        "path",
        string(examples=["Device.DeviceInfo."]),
        "Only parameters whose path starts with this prefix.",
    ),
}


RESPONSES: dict[str, Schema] = {
    "BadRequest": error_response(
        "Malformed JSON, body not an object, wrong type, unknown field or invalid filter."
    ),
    "Unauthorized": {
        "description": "Missing, unknown or revoked token.",
        "headers": {"WWW-Authenticate": {"schema": string(const="Bearer")}},
        "content": {JSON: {"schema": ref("Error")}},
    },
    "Forbidden": error_response("Role too low, or an organization outside the token's scope."),
    "NotFound": error_response("Unknown id or serial number."),
    "Conflict": error_response("Uniqueness conflict or blocked delete."),
    "TooLarge": error_response("Request body over 1 MiB."),
    "Unprocessable": error_response("Well-formed JSON with invalid values (status, e-mail, date)."),
    "StorageFull": {
        "description": "The database or the files directory is full: nothing was written. "
        "GET /healthz reports it until space is freed.",
        "headers": {"Retry-After": {"schema": integer(minimum=1)}},
        "content": {JSON: {"schema": ref("Error")}},
    },
}
