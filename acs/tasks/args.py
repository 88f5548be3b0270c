"""Task argument checks: the TR-069 rules of acs.cwmp (paths, xsd types) with the API's
limits, and one validator per argument shape. Each kind's declaration in `acs.tasks.kinds`
names its validator; every validator takes the arguments (a mapping) and returns their
normalized, JSON-ready form, or raises ValueError with a message meant for the API user.

Beside each validator is the JSON Schema of what it accepts (``*_SCHEMA``), which the kind
declares too and the API publishes; tests/test_task_arguments.py probes each validator
against its schema. Two rules no schema states: a parameter named twice in one list of
values to set, and a value that does not suit the type given with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from acs.cwmp.paths import INSTANCE_RE, MAX_PATH, PATH_RE
from acs.cwmp.values import MAX_VALUE, VALUE_PATTERN, WIRE_TYPES, XSD_TYPES, type_problem

# Limits that keep one API call from building an envelope no CPE will swallow (a path's and a
# value's are acs.cwmp's).
MAX_LIST = 1024
MAX_ID = 2**63 - 1  # a row id (SQLite INTEGER)
MAX_KEY = 32  # CommandKey and ParameterKey (cwmp-1-2.xsd)
MAX_ACCESS_ENTRY = 64
MAX_ACCESS_LIST = 16
# Keys and access-list entities travel as XML text: printable ASCII only.
_ASCII_TEXT = re.compile(r"[ -~]*")
ASCII_TEXT_PATTERN = f"^{_ASCII_TEXT.pattern}$"

Schema = dict[str, Any]

PATH_SCHEMA: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_PATH,
    "pattern": PATH_RE.pattern,
    "description": "A parameter name, or a partial path ending in '.'.",
}
OBJECT_PATH_SCHEMA: Schema = {
    "allOf": [PATH_SCHEMA, {"pattern": "[.]$"}],
    "description": "An object path, ending in '.'.",
}
PARAMETER_NAME_SCHEMA: Schema = {
    "allOf": [PATH_SCHEMA, {"pattern": "[^.]$"}],
    "description": "A parameter name (not ending in '.').",
}


def _list_of(items: Schema) -> Schema:
    return {"type": "array", "minItems": 1, "maxItems": MAX_LIST, "items": items}


def arguments_schema(
    properties: Mapping[str, Schema],
    required: Iterable[str] = (),
    *,
    extra: Mapping[str, Any] | None = None,
) -> Schema:
    """The schema of a kind's arguments object; ``extra``: more keywords of the object
    (``anyOf`` of required keys: which combinations it takes)."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    schema["additionalProperties"] = False
    schema.update(extra or {})
    return schema


def check_path(value: Any, what: str, *, object_path: bool | None = None) -> str:
    """A full parameter path; object_path True = must end with ".", False = must not."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > MAX_PATH:
        raise ValueError(f"{what} is longer than {MAX_PATH} characters")
    if not PATH_RE.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a valid parameter path")
    if object_path is True and not value.endswith("."):
        raise ValueError(f"{what} {value!r} must be an object path ending with '.'")
    if object_path is False and value.endswith("."):
        raise ValueError(f"{what} {value!r} must be a parameter name, not an object path")
    return value


def check_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{what} must be a non-empty list")
    if len(value) > MAX_LIST:
        raise ValueError(f"{what} has more than {MAX_LIST} entries")
    return list(value)


def normalize_type(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string such as 'xsd:string'")
    xsd = value if value.startswith("xsd:") else f"xsd:{value}"
    if xsd not in WIRE_TYPES:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(WIRE_TYPES)}")
    return xsd


def check_value(value: Any, xsd: str | None, what: str) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        text = str(int(value))  # 60.0: JSON has one number type
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"{what} must be a string")
    problem = type_problem(text, xsd or "xsd:string")
    if problem is not None:
        raise ValueError(f"{what} {problem}")
    return text


def check_keys(args: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(args) - set(allowed))
    if extra:
        raise ValueError(f"unknown argument(s) for {where}: {', '.join(extra)}")


# --- one validator per argument shape (the keys were checked against the kind's) ---------


def no_args(args: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def positive_id(args: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
    value = args.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0: JSON has one number type, JSON Schema's integer allows it
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise ValueError(f"{key} must be a {what} id (positive integer)")
    return {key: value}


def firmware_image_arg(args: Mapping[str, Any]) -> dict[str, Any]:
    return positive_id(args, "firmware_image", "firmware image")


def backup_arg(args: Mapping[str, Any]) -> dict[str, Any]:
    return positive_id(args, "backup", "backup")


def all_flag(args: Mapping[str, Any]) -> dict[str, Any]:
    push_all = args.get("all", False)
    if not isinstance(push_all, bool):
        raise ValueError("all must be a boolean")
    return {"all": True} if push_all else {}


OPTIONAL_PATH_SCHEMA = arguments_schema(
    {"parameter_path": {"anyOf": [PATH_SCHEMA, {"enum": ["", None]}]}}
)


def optional_path(args: Mapping[str, Any]) -> dict[str, Any]:
    path = args.get("parameter_path")
    if path is None or path == "":
        return {}
    return {"parameter_path": check_path(path, "parameter_path")}


NAMES_REQUEST_SCHEMA = arguments_schema(
    {
        "parameter_path": {"anyOf": [PATH_SCHEMA, {"const": ""}]},
        "next_level": {"type": "boolean"},
    },
    ["next_level"],
)


def names_request(args: Mapping[str, Any]) -> dict[str, Any]:
    """GetParameterNames: a path (partial, ending in '.'; empty: the whole tree) and
    NextLevel."""
    path = args.get("parameter_path", "")
    next_level = args.get("next_level")
    if not isinstance(next_level, bool):
        raise ValueError("next_level must be a boolean")
    clean: dict[str, Any] = {"next_level": next_level}
    if path != "":
        clean["parameter_path"] = check_path(path, "parameter_path")
    return clean


def parameter_values(args: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {"parameters": _values(args.get("parameters"))}
    key = optional_key(args, "parameter_key")
    if key is not None:
        clean["parameter_key"] = key
    return clean


def optional_key(args: Mapping[str, Any], name: str) -> str | None:
    """A CommandKey or ParameterKey the caller chose (printable ASCII, at most 32), or
    None when absent."""
    key = args.get(name)
    if key is not None and (
        not isinstance(key, str) or len(key) > MAX_KEY or not _ASCII_TEXT.fullmatch(key)
    ):
        raise ValueError(f"{name} must be printable ASCII of at most {MAX_KEY} characters")
    return key


def key_schema(description: str) -> Schema:
    """The schema of :func:`optional_key`."""
    return {
        "type": ["string", "null"],
        "maxLength": MAX_KEY,
        "pattern": ASCII_TEXT_PATTERN,
        "description": description,
    }


def _values(items: Any) -> list[dict[str, Any]]:
    """A list of {name, value, type?}: each name once, each value of its type."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(check_list(items, "parameters")):
        where = f"parameters[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be an object with name, value and type")
        check_keys(item, ("name", "value", "type"), where)
        name = check_path(item.get("name"), f"{where}.name", object_path=False)
        if name in seen:
            raise ValueError(f"{where}.name {name!r} is given twice")
        seen.add(name)
        entry: dict[str, Any] = {"name": name}
        xsd = None
        if item.get("type") is not None:
            xsd = normalize_type(item["type"], f"{where}.type")
        if "value" not in item or item["value"] is None:
            raise ValueError(f"{where}.value is required")
        entry["value"] = check_value(item["value"], xsd, f"{where}.value")
        if xsd is not None:
            entry["type"] = xsd
        out.append(entry)
    return out


_TYPES = [*WIRE_TYPES, *XSD_TYPES, "decimal"]
_VALUE_LIST = _list_of(
    arguments_schema(
        {
            "name": PARAMETER_NAME_SCHEMA,
            "value": {
                "type": ["string", "integer", "boolean"],
                "maxLength": MAX_VALUE,
                "pattern": VALUE_PATTERN,
                "description": "Must suit the type (given, or the one the CPE reported, or "
                "the data model's).",
            },
            "type": {"enum": [*_TYPES, None]},
        },
        ["name", "value"],
    )
)
PARAMETER_VALUES_SCHEMA = arguments_schema(
    {
        "parameters": _VALUE_LIST,
        "parameter_key": key_schema("The ParameterKey sent (default: the task's own)."),
    },
    ["parameters"],
)


def object_name(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"object_name": check_path(args.get("object_name"), "object_name", object_path=True)}


def new_object(args: Mapping[str, Any]) -> dict[str, Any]:
    """AddObject: the object path, and optionally values to set on the new instance (names
    relative to it: ``Enable``, ``X_VENDOR.Mode``)."""
    clean = object_name(args)
    if args.get("parameters") is not None:
        clean["parameters"] = _values(args["parameters"])
    return clean


NEW_OBJECT_SCHEMA = arguments_schema(
    {
        "object_name": OBJECT_PATH_SCHEMA,
        "parameters": {
            "anyOf": [_VALUE_LIST, {"type": "null"}],
            "description": "Values set on the new instance, named relative to it ('Enable').",
        },
    },
    ["object_name"],
)
INSTANCE_NAME_SCHEMA = arguments_schema(
    {
        "object_name": {
            "allOf": [PATH_SCHEMA, {"pattern": INSTANCE_RE.pattern}],
            "description": "One instance: '...PortMapping.3.' or '...SSID.[home].'.",
        }
    },
    ["object_name"],
)


def instance_name(args: Mapping[str, Any]) -> dict[str, Any]:
    name = check_path(args.get("object_name"), "object_name", object_path=True)
    if not INSTANCE_RE.search(name):
        raise ValueError(f"object_name {name!r} must name one instance, e.g. '...PortMapping.3.'")
    return {"object_name": name}


PARAMETER_NAMES_SCHEMA = arguments_schema(
    {"parameter_names": _list_of(PATH_SCHEMA)}, ["parameter_names"]
)


def parameter_names(args: Mapping[str, Any]) -> dict[str, Any]:
    listed = check_list(args.get("parameter_names"), "parameter_names")
    return {
        "parameter_names": [check_path(n, f"parameter_names[{i}]") for i, n in enumerate(listed)]
    }


_NOTIFICATION = {"type": "integer", "minimum": 0, "maximum": 6}
_ACCESS_LIST = {
    "type": "array",
    "maxItems": MAX_ACCESS_LIST,
    "items": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ACCESS_ENTRY,
        "pattern": ASCII_TEXT_PATTERN,
    },
}
PARAMETER_ATTRIBUTES_SCHEMA = arguments_schema(
    {
        "parameters": _list_of(
            {
                **arguments_schema(
                    {
                        "name": PATH_SCHEMA,
                        "notification": {"anyOf": [_NOTIFICATION, {"type": "null"}]},
                        "access_list": {"anyOf": [_ACCESS_LIST, {"type": "null"}]},
                    },
                    ["name"],
                ),
                # A notification (0..6), an access list, or both.
                "anyOf": [
                    {"properties": {"notification": _NOTIFICATION}, "required": ["notification"]},
                    {"properties": {"access_list": _ACCESS_LIST}, "required": ["access_list"]},
                ],
            }
        )
    },
    ["parameters"],
)


def parameter_attributes(args: Mapping[str, Any]) -> dict[str, Any]:
    attrs: list[dict[str, Any]] = []
    for i, item in enumerate(check_list(args.get("parameters"), "parameters")):
        where = f"parameters[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be an object with name and notification")
        check_keys(item, ("name", "notification", "access_list"), where)
        entry: dict[str, Any] = {"name": check_path(item.get("name"), f"{where}.name")}
        notification = item.get("notification")
        access = item.get("access_list")
        if notification is None and access is None:
            raise ValueError(f"{where} needs a notification (0..6) and/or an access_list")
        if isinstance(notification, float) and notification.is_integer():
            notification = int(notification)
        if notification is not None:
            if isinstance(notification, bool) or not isinstance(notification, int):
                raise ValueError(f"{where}.notification must be an integer 0..6")
            if not 0 <= notification <= 6:
                raise ValueError(f"{where}.notification must be between 0 and 6")
            entry["notification"] = notification
        if access is not None:
            if not isinstance(access, list | tuple) or len(access) > MAX_ACCESS_LIST:
                raise ValueError(
                    f"{where}.access_list must be a list of at most {MAX_ACCESS_LIST} strings"
                )
            for entity in access:
                if (
                    not isinstance(entity, str)
                    or not entity
                    or len(entity) > MAX_ACCESS_ENTRY
                    or not _ASCII_TEXT.fullmatch(entity)
                ):
                    raise ValueError(
                        f"{where}.access_list entries must be printable ASCII "
                        f"of 1 to {MAX_ACCESS_ENTRY} characters (e.g. 'Subscriber')"
                    )
            entry["access_list"] = list(access)
        attrs.append(entry)
    return {"parameters": attrs}
