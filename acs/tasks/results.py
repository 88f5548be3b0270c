"""The JSON Schemas of the results the API documents for each offered task kind: what the
RPC generators of `acs.tasks.kinds` return (a kind declares its `result_schema` from here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def result(properties: Mapping[str, Any], required: Sequence[str] | None = None) -> dict[str, Any]:
    """An object with these properties, all of them always there unless ``required``."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties if required is None else required),
    }


TEXT_OR_NULL = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}
STATUS = {"type": "integer", "enum": [0, 1], "description": "1: applied after a reboot."}
STRINGS = {"type": "array", "items": {"type": "string"}}
CONFIRMED_RESULT = result({"events": {**STRINGS, "description": "Of the confirming Inform."}})
VALUES_RESULT = result(
    {
        "parameters": {
            "type": "array",
            "items": result(
                {"name": {"type": "string"}, "value": TEXT_OR_NULL, "type": TEXT_OR_NULL}
            ),
        }
    }
)
NAMES_RESULT = result(
    {
        "parameters": {
            "type": "array",
            "items": result({"name": {"type": "string"}, "writable": {"type": "boolean"}}),
        }
    }
)
ATTRIBUTES_RESULT = result(
    {
        "attributes": {
            "type": "array",
            "items": result(
                {
                    "name": {"type": "string"},
                    "notification": {"type": "integer"},
                    "access_list": STRINGS,
                }
            ),
        }
    }
)
ADDED_RESULT = result(
    {
        "instance_number": {"type": "integer", "minimum": 1},
        "status": STATUS,
        "parameters": {**COUNT, "description": "Values read back from the new instance."},
        "set_status": {**STATUS, "description": "Of the values set on the new instance."},
        "set_fault": {"type": "object", "description": "Why they could not be set."},
        "refresh_fault": {
            "type": "object",
            "description": "Why the read-back failed (the instance exists all the same).",
        },
    },
    ["instance_number", "status"],
)
QUEUED_RESULT = result(
    {
        "transfers": {
            "type": "array",
            "items": result(
                {
                    "command_key": {"type": "string"},
                    "state": {
                        "type": "integer",
                        "description": "1 not yet started, 2 in progress, 3 completed.",
                    },
                }
            ),
        }
    }
)
_ID = {"type": "integer", "minimum": 1}
_TRANSFERRED = {
    "file_type": {"type": "string", "description": "The FileType sent."},
    "start_time": {"type": "string", "description": "StartTime the CPE reported."},
    "complete_time": {"type": "string", "description": "CompleteTime the CPE reported."},
    "fault_code": {"type": "integer", "enum": [0], "description": "Of the TransferComplete."},
    "status": {"type": "integer", "enum": [0], "description": "Done within the RPC itself."},
}
DOWNLOAD_RESULT = result(
    {
        "file": {**_ID, "description": "The stored file sent."},
        "firmware_image": {**_ID, "description": "The firmware image sent."},
        **_TRANSFERRED,
    },
    ["file_type", "start_time", "complete_time"],
)
UPLOAD_RESULT = result(
    {
        "file": {**_ID, "description": "The stored upload: GET /api/v1/file/{file}/content/."},
        "size": {"type": "integer", "minimum": 0, "description": "Bytes."},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        **_TRANSFERRED,
    },
    ["file", "size", "sha256", "file_type", "start_time", "complete_time"],
)
CANCELLED_RESULT = result(
    {
        "task": {**_ID, "description": "The transfer task, now cancelled."},
        "sent": {
            "type": "boolean",
            "description": "False: it had not reached the CPE yet, so no CancelTransfer was sent.",
        },
    }
)
ALL_QUEUED_RESULT = result(
    {
        "transfers": {
            "type": "array",
            "maxItems": 16,
            "items": result(
                {
                    "command_key": {"type": "string"},
                    "state": {
                        "type": "integer",
                        "description": "1 not yet started, 2 in progress, 3 completed.",
                    },
                    "is_download": {"type": "boolean"},
                    "file_type": {"type": "string"},
                    "file_size": {"type": "integer", "minimum": 0},
                    "target_file_name": {"type": "string"},
                }
            ),
        }
    }
)
DIAGNOSTICS_RESULT = result(
    {
        "test": {"type": "string"},
        "state": {"type": "string", "enum": ["Complete"]},
        "results": {
            "type": "object",
            "additionalProperties": TEXT_OR_NULL,
            "description": "The test object's result parameters in snake_case "
            "(success_count, average_response_time, rom_time, total_bytes_received...).",
        },
        "route_hops": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": TEXT_OR_NULL},
            "description": "trace_route: host, host_address, error_code, rt_times per hop.",
        },
    },
    ["test", "state", "results"],
)
