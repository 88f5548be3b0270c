"""A compact JSON-schema checker: the subset of JSON Schema the OpenAPI document uses.

Tests validate real responses (tests/test_api_openapi.py) and probe the write-body fields
(tests/test_api_fields.py) against the document with it; ``schema_errors`` is empty when a
value matches.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"^({_OCTET}\.){{3}}{_OCTET}$")  # RFC 2673 dotted-quad


def _ipv6(value: str) -> bool:
    """RFC 4291 text (no zone id, which the format does not allow)."""
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return "%" not in value


def _ecma(pattern: str) -> str:
    """``pattern`` read as JSON Schema (ECMA-262) reads it: its ``$`` is the end of the
    text, where Python's also matches before a final line feed."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """A local JSON pointer (``#/components/schemas/Device``); KeyError if it dangles."""
    assert ref.startswith("#/"), f"only local refs are used: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(doc, node["$ref"])
    return node


# --- a compact JSON-schema checker (the subset api/openapi.py uses) ---------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False  # bool is an int in Python, never in JSON
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()  # JSON Schema: any number with a zero fraction
    return isinstance(value, _JSON_TYPES[kind])


def schema_errors(doc: dict[str, Any], schema: Any, value: Any, at: str = "$") -> list[str]:
    """Why ``value`` does not match ``schema`` (empty list = it matches)."""
    schema = deref(doc, schema)
    errors: list[str] = []
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf", []) + schema.get("oneOf", [])
        attempts = [schema_errors(doc, option, value, at) for option in options]
        if all(attempts):
            errors.append(f"{at}: matches none of the alternatives: {attempts}")
    for sub in schema.get("allOf", []):
        errors += schema_errors(doc, sub, value, at)
    if "not" in schema and not schema_errors(doc, schema["not"], value, at):
        errors.append(f"{at}: matches what it must not: {schema['not']}")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is_type(value, k) for k in kinds):
            return [*errors, f"{at}: {value!r} is not of type {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{at}: {value!r} != {schema['const']!r}")
    if isinstance(value, str):
        if schema.get("format") == "date-time" and not ISO_Z.match(value):
            errors.append(f"{at}: {value!r} is not an ISO-8601 UTC time with Z, to the second")
        if schema.get("format") == "ipv4" and not IPV4.match(value):
            errors.append(f"{at}: {value!r} is not an IPv4 address")
        if schema.get("format") == "ipv6" and not _ipv6(value):
            errors.append(f"{at}: {value!r} is not an IPv6 address")
        if "pattern" in schema and not re.search(_ecma(schema["pattern"]), value):
            errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{at}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{at}: longer than {schema['maxLength']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{at}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{at}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{at}: missing required key {name!r}")
        additional = schema.get("additionalProperties", True)
        patterns = schema.get("patternProperties", {})
        if len(value) > schema.get("maxProperties", len(value)):
            errors.append(f"{at}: more than {schema['maxProperties']} properties")
        for key, item in value.items():
            matching = [p for p in patterns if re.search(_ecma(p), key)]
            for pattern in matching:
                errors += schema_errors(doc, patterns[pattern], item, f"{at}.{key}")
            if key in properties:
                errors += schema_errors(doc, properties[key], item, f"{at}.{key}")
            elif matching:
                continue
            elif additional is False:
                errors.append(f"{at}: undocumented key {key!r}")
            elif isinstance(additional, dict):
                errors += schema_errors(doc, additional, item, f"{at}.{key}")
        if "propertyNames" in schema:
            for key in value:
                errors += schema_errors(doc, schema["propertyNames"], key, f"{at} key {key!r}")
    if isinstance(value, list) and len(value) > schema.get("maxItems", len(value)):
        errors.append(f"{at}: more than {schema['maxItems']} items")
    if isinstance(value, list) and len(value) < schema.get("minItems", 0):
        errors.append(f"{at}: fewer than {schema['minItems']} items")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(doc, schema["items"], item, f"{at}[{i}]")
    return errors
