"""JSON Schema building blocks of the OpenAPI document, and what the API's validation
accepts written as patterns.

Owns the small constructors (``string``, ``integer``, ``obj``, ``page``, ...; ``null=True``
gives 3.1-style ``[kind, "null"]``), the text/serial/boolean/pk/coordinate schemas the write
bodies share, and the regexes derived from the validators' rules (``TEXT_PATTERN`` from
``acs.cwmp.identity.printable``, ...). ``api.fields`` builds each field's schema from these,
and ``api.openapi`` the response shapes; both read the patterns from here so that a rule is
written once.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from acs.cwmp.identity import REFUSED_CATEGORIES as REFUSED
from acs.cwmp.paths import SETTING_NAME_PATTERN
from api.base import SQL_INT_MAX

JSON = "application/json"
Schema = dict[str, Any]

# --- schema helpers ---------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def typed(kind: str, *, null: bool = False, **extra: Any) -> Schema:
    """A JSON-schema type; ``null=True`` makes it ``[kind, "null"]`` (3.1 style nullable)."""
    return {"type": [kind, "null"] if null else kind, **extra}


def string(null: bool = False, **extra: Any) -> Schema:
    return typed("string", null=null, **extra)


def integer(null: bool = False, **extra: Any) -> Schema:
    return typed("integer", null=null, **extra)


def boolean(**extra: Any) -> Schema:
    return typed("boolean", **extra)


def date_time(null: bool = False, **extra: Any) -> Schema:
    """ISO-8601 UTC, second precision, ``Z`` suffix (spec section 1)."""
    return string(null, format="date-time", examples=["2024-01-15T09:30:15Z"], **extra)


def read_only(schema: Schema) -> Schema:
    return {**schema, "readOnly": True}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


# --- what the API's validation accepts, as patterns --------------------------------------


def _class(codes: Iterable[int]) -> str:
    """A regex character class body matching exactly ``codes`` (ascending), as ranges of
    ``\\uXXXX``/``\\UXXXXXXXX`` escapes (read alike by Python's re and Rust's regex)."""

    def esc(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    parts: list[str] = []
    start = end = -2
    for code in codes:
        if code != end + 1:
            if start >= 0:
                parts.append(esc(start) if start == end else f"{esc(start)}-{esc(end)}")
            start = code
        end = code
    if start >= 0:
        parts.append(esc(start) if start == end else f"{esc(start)}-{esc(end)}")
    return "".join(parts)


# Names and text are refused unless acs.cwmp.identity.printable(): no control or format
# (bidirectional, zero-width) character, nor separator but ' '. Surrogates are
# left out of the class: a regex cannot name them portably, and no JSON text carries one
# that decodes to a lone surrogate by accident (the API refuses those too).
# Only planes 0-3 and 14 hold such characters (4-13 are unassigned, 15-16 private use; a
# test scans them all): reading the category of all 1.1 million code points at every start
# took a tenth of a second.
_SCANNED = (range(0x40000), range(0xE0000, 0xF0000))
_UNPRINTABLE_CODES = [
    c
    for plane in _SCANNED
    for c in plane
    if c != 0x20 and not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) in REFUSED
]
_UNPRINTABLE = _class(_UNPRINTABLE_CODES)
# Descriptions may span lines: tab, line feed and carriage return pass.
_UNPRINTABLE_MULTILINE = _class(c for c in _UNPRINTABLE_CODES if c not in (9, 10, 13))
TEXT_PATTERN = f"^[^{_UNPRINTABLE}]*$"
NAME_PATTERN = f"^ *[^ {_UNPRINTABLE}][^{_UNPRINTABLE}]*$"  # not blank
MULTILINE_PATTERN = f"^[^{_UNPRINTABLE_MULTILINE}]*$"
# acs.cwmp.identity.serial_problem: printable, no '/' and no whitespace (the only printable
# whitespace is ' ').
SERIAL_PATTERN = f"^[^/ {_UNPRINTABLE}]+$"
# parse_bool: true/false/1/0 in any case.
BOOL_TEXT_PATTERN = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])$"
FALSE_TEXT_PATTERN = "^([Ff][Aa][Ll][Ss][Ee]|0)$"
# Deliberately simple (DRF's EmailValidator is not much stricter): one @, a dotted domain,
# no whitespace. Mail delivery is not this API's business. The whitespace is spelled out
# (what str.isspace() calls whitespace) rather than \s, whose meaning differs between regex
# engines.
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
EMAIL_PATTERN = rf"[^@{_SPACE}]+@[^@{_SPACE}.]+(?:\.[^@{_SPACE}.]+)+"
# A time in a request body (api.fields.DateTime): YYYY-MM-DDThh:mm[:ss][+HH:MM|-HH:MM|Z] (a
# space for the T too); no offset means UTC.
# Exact: years 0001-9999, the days each month has, 29 February of leap years only.
_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    "|02-(0[1-9]|1[0-9]|2[0-8]))"
)
_DATE = f"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
DATETIME_TEXT_PATTERN = f"^{_DATE}[T ]{_TIME}$"
# ... or a date alone.
DATE_OR_DATETIME_TEXT_PATTERN = f"^{_DATE}([T ]{_TIME})?$"
# A primary key written as text: ASCII digits, no sign, blanks or leading zero (18 digits at
# most, so every such text is below SQLite's largest integer).
PK_TEXT_PATTERN = "^[1-9][0-9]{0,17}$"
SHA256_PATTERN = "^[0-9a-f]{64}$"  # a stored file's digest, as hex
# Coordinates as text: plain decimals within range (api.validation.coordinate_problem).
LATITUDE_PATTERN = r"^[+-]?0*(90(\.0+)?|[0-8]?[0-9](\.[0-9]+)?)$"
LONGITUDE_PATTERN = r"^[+-]?0*(180(\.0+)?|(1[0-7][0-9]|[0-9]?[0-9])(\.[0-9]+)?)$"
# acs.cwmp.paths.is_setting_name: a desired setting's name (device and device type settings).
SETTING_PATH_PATTERN = SETTING_NAME_PATTERN
# 30..86400 (a device's update_frequency may be sent as text).
FREQUENCY_TEXT_PATTERN = (
    "^(3[0-9]|[4-9][0-9]|[1-9][0-9]{2,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)$"
)


# The patterns are long (one range per run of unprintable code points), so each lives once,
# in components/schemas, and fields refer to it.
TEXT_SCHEMAS: dict[str, Schema] = {
    "Name": string(
        minLength=1,
        maxLength=255,
        pattern=NAME_PATTERN,
        description="1-255 printable characters, not blank: no control or format "
        "(bidirectional, zero-width) character, and no separator but ' '.",
    ),
    "Text": string(
        maxLength=255, pattern=TEXT_PATTERN, description="0-255 printable characters (see Name)."
    ),
    "MultilineText": string(
        maxLength=4096,
        pattern=MULTILINE_PATTERN,
        description="0-4096 printable characters (see Name), line breaks and tabs allowed.",
    ),
    "SerialNumber": string(
        minLength=1,
        maxLength=64,
        pattern=SERIAL_PATTERN,
        description="1-64 printable characters (see Name), no '/' and no whitespace; unique, "
        "case-sensitive.",
    ),
    "SerialNumberOrEmpty": string(
        maxLength=64,
        pattern=SERIAL_PATTERN.replace("]+$", "]*$"),
        description="A SerialNumber, or empty for none (serial_number_alt: also matched "
        "against the Inform serial).",
    ),
}


# A stored coordinate as returned (api.fields.Coordinate keeps the decimal text as sent).
LATITUDE = string(True, description="Decimal degrees as a string, -90..90.", examples=["40.7128"])
LONGITUDE = string(
    True, description="Decimal degrees as a string, -180..180.", examples=["-74.006"]
)


def plain_text(*, null: bool = True, **extra: Any) -> Schema:
    """Printable text (may be empty); null too unless ``null=False``."""
    return {**nullable(ref("Text")), **extra} if null else {**ref("Text"), **extra}


def name_text(**extra: Any) -> Schema:
    """Printable text, not blank."""
    return {**ref("Name"), **extra}


BOOLISH = {
    "anyOf": [
        {"type": "boolean"},
        {"enum": [0, 1]},
        {"type": "string", "pattern": BOOL_TEXT_PATTERN},
    ],
    "description": "true/false; also 1/0, and 'true'/'false'/'1'/'0' in any case.",
}
_PK_INT = integer(minimum=1, maximum=SQL_INT_MAX)
_PK_TEXT = string(pattern=PK_TEXT_PATTERN)


def pk(description: str, *, null: bool = True, objects: bool = True) -> Schema:
    """A reference by id: an integer, its decimal text, or (``objects``) ``{"id": n}`` as
    the nested view returns it. Unknown ids -> 400."""
    options: list[Schema] = [_PK_INT, _PK_TEXT]
    if null:
        options.append({"type": "null"})
    if objects:
        options.append(obj({"id": {"anyOf": list(options)}}, ["id"]))
    return {"anyOf": options, "description": description}


def coordinate(pattern: str, limit: int, max_length: int, example: str) -> Schema:
    """A decimal in -limit..limit: a JSON number or its text; empty or null = none."""
    return {
        "anyOf": [
            string(maxLength=max_length, pattern=f"^({pattern[1:-1]})?$"),
            typed("number", minimum=-limit, maximum=limit),
            {"type": "null"},
        ],
        "description": f"Decimal degrees, -{limit}..{limit}; stored and returned as text.",
        "examples": [example],
    }


def obj(
    properties: dict[str, Schema],
    required: list[str] | tuple[str, ...] | str = (),
    *,
    additional: bool | Schema = True,
    **extra: Any,
) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required == "*":  # every property is always present
        schema["required"] = list(properties)
    elif required:
        schema["required"] = list(required)
    if additional is not True:
        schema["additionalProperties"] = additional
    schema.update(extra)
    return schema


def page(item: str) -> Schema:
    """The DRF LimitOffsetPagination envelope around ``item`` rows."""
    return obj(
        {
            "count": integer(minimum=0),
            "next": string(True, format="uri", description="Absolute URL of the next page."),
            "previous": string(
                True, format="uri", description="Absolute URL of the previous page."
            ),
            "results": {"type": "array", "items": ref(item)},
        },
        ["count", "next", "previous", "results"],
        additional=False,
    )
