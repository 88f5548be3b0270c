"""The device list filters, from a list's query string or a bulk operation's ``filter``
object: the spec's (``type``, ``status``, ``last_status_change_from``, ``organization``)
and the fleet search (``tag``, repeatable, every one must match; ``software_version``,
``hardware_version``, ``product_class``, ``manufacturer``; ``q``, a substring of serial,
name, unique identifier or description; ``param.<path>=<value>`` and
``param.<path>__startswith=<prefix>`` on the stored tree; ``id``, repeatable, any one of
them: an operator's selection). Every filter is confined to the
token's organizations; a bad value or an unknown name is a 400 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from acs.cwmp.paths import SETTING_NAME_PATTERN, is_setting_name
from acs.cwmp.redact import SECRET_SUFFIXES, is_secret_path
from acs.store.checks import MAX_TAG, UNSEEN, check_tag, encodable
from acs.store.models import DOWN, UP, DeviceFilter, ParameterMatch
from api.base import ApiError, Principal, field_error, json_int, parse_datetime, parse_decimal

# `status` filter spellings (section 3); anything else is a 400.
STATUS_FILTER = {"0": DOWN, "false": DOWN, "False": DOWN, "1": UP, "true": UP, "True": UP}
# The spec's filters, then the fleet search's (the lists take paging and view options too).
SPEC_FILTERS = ("type", "status", "last_status_change_from", "organization")
FIELD_FILTERS = ("software_version", "hardware_version", "product_class", "manufacturer")
SEARCH_FILTERS = ("tag", *FIELD_FILTERS, "q", "id")
FILTERS = (*SPEC_FILTERS, *SEARCH_FILTERS)
PARAM = "param."
STARTSWITH = "__startswith"
MAX_VALUE = 256  # characters of a filter value
VALUE_PATTERN = rf"^[^{UNSEEN}]*$"
_VALUE = re.compile(VALUE_PATTERN)
MAX_TAG_FILTERS = 16
MAX_PARAM_FILTERS = 8
MAX_ID_FILTERS = 500
# ``ordering``'s field names (either view's spelling) -> the device column sorted on.
ORDERINGS = {
    "id": "id",
    "serial_number": "serial_number",
    "name": "name",
    "product_class": "product_class",
    "software_version": "software_version",
    "status": "status",
    "last_connection": "last_contact",
    "status_change": "status_change",
    "last_status_change": "status_change",
}
ORDERING_PATTERN = f"^(-?({'|'.join(ORDERINGS)}))?$"


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


# A param. filter's name: a full parameter path (at most 256 characters), no credential
# (a filter on one would let a viewer guess its value), optionally __startswith. One
# pattern for Python and the OpenAPI document's (ECMA) readers alike.
PARAM_PATTERN = (
    rf"^param\.(?=.{{1,256}}(?:{STARTSWITH})?$)"
    rf"(?!.*(?:{'|'.join(_any_case(w) for w in SECRET_SUFFIXES)})(?:{STARTSWITH})?$)"
    rf"{SETTING_NAME_PATTERN[1:-1]}(?:{STARTSWITH})?$"
)
_PARAM = re.compile(PARAM_PATTERN)

# A query string's unencoded "+" arrives as a space: "2000-01-01T00:01:00 00:00".
_MANGLED_OFFSET = re.compile(r"^(.*\d) (\d{2}(?::?\d{2})?)$")


def parse_since(value: str) -> float | None:
    """``last_status_change_from``: a date or datetime, offset optional (naive = UTC)."""
    parsed = parse_datetime(value)
    if parsed is None:
        mangled = _MANGLED_OFFSET.match(value.strip())
        if mangled is not None:
            parsed = parse_datetime(f"{mangled.group(1)}+{mangled.group(2)}")
    return parsed


def _one(values: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The filter's value; None when absent or empty (``?name=`` is no filter)."""
    given = values.get(name)
    if not given:
        return None
    if len(given) > 1:
        raise field_error(name, "Give this query parameter once.")
    return given[0] or None


def _integer(values: Mapping[str, Sequence[str]], name: str) -> int | None:
    raw = _one(values, name)
    if raw is None or raw == "":
        return None
    number = parse_decimal(raw)
    if number is None:
        raise field_error(name, f"A valid integer is required, not {raw[:40]!r}.")
    return number


def _ids(values: Mapping[str, Sequence[str]]) -> tuple[int, ...] | None:
    given = [v for v in values.get("id") or () if v != ""]
    if not given:
        return None
    if len(given) > MAX_ID_FILTERS:
        raise field_error("id", f"At most {MAX_ID_FILTERS} ids.")
    ids: list[int] = []
    for raw in given:
        number = parse_decimal(raw)
        if number is None or not 1 <= number <= SQL_INT_MAX:
            raise field_error("id", f"Each id is a positive integer, not {raw[:40]!r}.")
        ids.append(number)
    return tuple(ids)


def _text(name: str, value: str) -> str:
    if len(value) > MAX_VALUE or not _VALUE.fullmatch(value) or not encodable(value):
        raise field_error(name, f"Give at most {MAX_VALUE} visible characters.")
    return value


def _parameter(name: str, value: str) -> ParameterMatch:
    path, prefix = name[len(PARAM) :], name.endswith(STARTSWITH)
    if prefix:
        path = path[: -len(STARTSWITH)]
    if not _PARAM.fullmatch(name[:400]):
        problem = (
            "Credential parameters cannot be searched."
            if is_setting_name(path) and is_secret_path(path)
            else "Name a parameter of the stored tree: param.<full TR-069 path>."
        )
        raise field_error(name[:300], problem)
    return ParameterMatch(path, _text(name[:300], value), prefix)


def parse_filters(
    values: Mapping[str, Sequence[str]], principal: Principal, *, allowed: Sequence[str] = ()
) -> DeviceFilter:
    """The filters ``values`` (name -> every value given) select, within the principal's
    organizations. A name neither a filter, a ``param.`` one nor in ``allowed`` is a 400."""
    for name in values:
        if name not in FILTERS and name not in allowed and not name.startswith(PARAM):
            raise field_error(name[:100], "Unknown query parameter or filter.")
    type_id = _integer(values, "type")
    status: str | None = None
    raw_status = _one(values, "status") or ""
    if raw_status != "":
        status = STATUS_FILTER.get(raw_status)
        if status is None:
            raise field_error("status", "Use 0/false/False for Down or 1/true/True for Up.")
    since: float | None = None
    raw_since = _one(values, "last_status_change_from") or ""
    if raw_since != "":  # only an empty value means absent; "\x1e" is no date
        since = parse_since(raw_since)
        if since is None:
            raise field_error(
                "last_status_change_from",
                "Enter a valid date/time, e.g. 2000-01-01, 2000-01-01 00:01:00 or "
                "2000-01-01T00:01:00+00:00.",
            )
    organization = _integer(values, "organization")
    if organization is not None:
        principal.check_organization(organization)
        organizations: tuple[int, ...] | None = (organization,)
    else:
        organizations = principal.scope
    tags = tuple(t for t in values.get("tag") or () if t != "")
    if len(tags) > MAX_TAG_FILTERS:
        raise field_error("tag", f"At most {MAX_TAG_FILTERS} tags.")
    if not all(_is_tag(tag) for tag in tags):
        raise field_error(
            "tag", f"A tag is 1 to {MAX_TAG} visible characters, no surrounding spaces."
        )
    fields = {name: _one(values, name) for name in FIELD_FILTERS}
    text = _one(values, "q")
    parameters: list[ParameterMatch] = []
    for name, given in values.items():
        if name.startswith(PARAM):  # an empty value is a filter: the value is ""
            if len(given) > 1:
                raise field_error(name[:100], "Give this query parameter once.")
            parameters.append(_parameter(name, given[0] if given else ""))
    if len(parameters) > MAX_PARAM_FILTERS:
        raise field_error("param", f"At most {MAX_PARAM_FILTERS} param. filters.")
    return DeviceFilter(
        organization_ids=organizations,
        type_id=type_id,
        status=status,
        status_change_from=since,
        tags=tags,
        text=None if text is None else _text("q", text),
        parameters=tuple(parameters),
        ids=_ids(values),
        **{k: None if v is None else _text(k, v) for k, v in fields.items()},
    )


SQL_INT_MIN, SQL_INT_MAX = -(2**63), 2**63 - 1
MAX_FILTER_KEYS = len(FILTERS) + MAX_PARAM_FILTERS


def _object_value_ok(name: str, value: Any) -> bool:
    if name in ("type", "organization"):
        number = json_int(value)  # 3.0 is an integer to JSON Schema
        return number is not None and SQL_INT_MIN <= number <= SQL_INT_MAX
    if name == "status":
        return isinstance(value, str) and value in STATUS_FILTER
    if name == "last_status_change_from":
        return isinstance(value, str) and value != "" and parse_since(value) is not None
    if name == "id":
        return (
            isinstance(value, list)
            and 1 <= len(value) <= MAX_ID_FILTERS
            and all((n := json_int(v)) is not None and 1 <= n <= SQL_INT_MAX for v in value)
        )
    if name == "tag":
        return (
            isinstance(value, list)
            and len(value) <= MAX_TAG_FILTERS
            and all(_is_tag(v) for v in value)
        )
    if name in FIELD_FILTERS or name == "q" or _PARAM.fullmatch(name[:400]):
        return (
            isinstance(value, str)
            and len(value) <= MAX_VALUE
            and bool(_VALUE.fullmatch(value))
            and encodable(value)
        )
    return False


def _is_tag(value: Any) -> bool:
    try:
        check_tag(value)
    except ValueError:
        return False
    return True


def filter_problem(body: dict[str, Any]) -> str | None:
    """What makes a filter object other than the documented one (the bulk operations'
    ``filter``: keys and JSON types as the list query's, ``type`` and ``organization``
    integers, ``tag`` a list of tags), None when it is one."""
    if len(body) > MAX_FILTER_KEYS:
        return f"At most {MAX_FILTER_KEYS} filters."
    for name, value in body.items():
        if not _object_value_ok(name, value):
            return f"{str(name)[:100]}: not a filter, or not a valid value for it."
    return None


def filter_object(body: dict[str, Any], principal: Principal) -> DeviceFilter:
    """The devices a filter object (one ``filter_problem`` passed) selects, within the
    principal's organizations."""
    values = {
        name: [str(json_int(v)) if name == "id" else str(v) for v in value]
        if isinstance(value, list)
        else [str(json_int(value)) if name in ("type", "organization") else str(value)]
        for name, value in body.items()
    }
    try:
        return parse_filters(values, principal)
    except ApiError as exc:
        if exc.status != 400:
            raise
        problems = [
            f"{k}: {' '.join(v) if isinstance(v, list) else v}" for k, v in exc.body.items()
        ]
        raise ApiError(400, {"filter": problems}) from None
