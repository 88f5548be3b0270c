"""The store's checks of caller input, and the few conversions every engine shares: time
arguments, JSON text, device field values, page bounds, prefix ranges, token hashes.

No SQL here: a second engine's aggregate modules use these unchanged, so every engine
refuses the same input with the same ValueError.
"""

from __future__ import annotations

import hashlib
import re
import types
import typing
from typing import Any

from acs.store import codec
from acs.store.models import DOWN, OPERATIONAL_STATUSES, UP, Device

# Never written into history details: the values are credentials.
SECRET_FIELDS = frozenset({"password", "connection_request_password"})
# Columns the store manages itself; callers cannot set them through create/update.
_MANAGED_FIELDS = frozenset({"id", "uuid", "created", "last_change", "status_change"})
CREATE_FIELDS = frozenset(codec.DEVICE_COLUMNS) - _MANAGED_FIELDS - {"status"}
UPDATE_FIELDS = frozenset(codec.DEVICE_COLUMNS) - _MANAGED_FIELDS
# Columns referencing another table, checked up front for a clear error message.
DEVICE_REFERENCES = {
    "organization_id": "organizations",
    "type_id": "device_types",
    "location_id": "locations",
    "firmware_image_id": "firmware_images",
}
_DEVICE_HINTS = typing.get_type_hints(Device)


def _allowed_types(hint: Any) -> tuple[tuple[type, ...], bool]:
    """(accepted python types, nullable) for a Device field annotation."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    nullable = type(None) in args
    accepted = tuple(a for a in args if a is not type(None))
    return accepted, nullable


def check_device_value(column: str, value: Any) -> Any:
    """Validate one device column value; returns it normalised. Raises ValueError."""
    accepted, nullable = _allowed_types(_DEVICE_HINTS[column])
    if column == "serial_number_alt" and value == "":
        value = None  # "no alternative serial"; '' would collide between devices
    if value is None:
        if column == "update_frequency":
            return None  # the device type's (or the default): see _frequency_fields
        if not nullable:
            raise ValueError(f"{column} must not be null")
        return None
    if bool in accepted:
        if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
            return bool(value)
        raise ValueError(f"{column} must be a boolean, not {value!r}")
    if int in accepted and type(value) is int:
        ok = True
    elif float in accepted and isinstance(value, int | float) and not isinstance(value, bool):
        value, ok = float(value), True
    else:
        ok = str in accepted and isinstance(value, str)
    if not ok:
        names = "/".join(t.__name__ for t in accepted)
        raise ValueError(f"{column} must be {names}, not {value!r}")
    if column in ("serial_number", "name") and not value:
        raise ValueError(f"{column} must not be empty")
    if column == "update_frequency" and value <= 0:
        raise ValueError("update_frequency must be > 0")
    if column == "operational_status" and value not in OPERATIONAL_STATUSES:
        raise ValueError(f"operational_status must be one of {', '.join(OPERATIONAL_STATUSES)}")
    if column == "status":
        return normalise_status(value)
    return value


def normalise_status(status: Any) -> str:
    if isinstance(status, str) and status.capitalize() in (UP, DOWN):
        return status.capitalize()
    raise ValueError(f"status must be {UP!r} or {DOWN!r}, not {status!r}")


def epoch(name: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{name} must be a number of epoch seconds, not {value!r}")


def opt_epoch(name: str, value: Any) -> float | None:
    return None if value is None else epoch(name, value)


def bounded_text(name: str, value: object, limit: int) -> str:
    """``value`` if it is a non-empty ``str`` of at most ``limit`` characters, else
    ValueError naming ``name``."""
    if type(value) is not str or not value or len(value) > limit:
        raise ValueError(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def json_text(name: str, value: Any) -> str:
    try:
        return codec.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not JSON-serialisable: {exc}") from exc


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[low, high) covering every string starting with `prefix` under BINARY collation.

    UTF-8 byte order equals code point order, so bumping the last code point gives the
    exclusive upper bound and the query stays an index range scan (LIKE would not).
    """
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be encoded; skip over them
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix, prefix[:i] + chr(code)
    return prefix, None


MAX_TAG = 64  # characters of one tag
MAX_TAGS = 100  # tags of one device
# What no label may hold: control characters, and the invisible ones that make two labels
# look alike or reorder text (zero-width, bidirectional controls, separators, BOM). Explicit
# ranges, so that the pattern means the same to Python and to an OpenAPI (ECMA) client.
UNSEEN = r"\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
TAG_PATTERN = rf"^[^ {UNSEEN}]([^{UNSEEN}]*[^ {UNSEEN}])?$"
_TAG = re.compile(TAG_PATTERN)


def encodable(text: str) -> bool:
    """False for text holding lone surrogates (a JSON body can carry them; UTF-8 and so
    SQLite cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_tag(tag: Any) -> str:
    """A device tag: 1 to MAX_TAG characters of TAG_PATTERN (no spaces around it)."""
    if (
        not isinstance(tag, str)
        or not 0 < len(tag) <= MAX_TAG
        or not _TAG.fullmatch(tag)
        or not encodable(tag)
    ):
        raise ValueError(
            f"a tag is 1 to {MAX_TAG} visible characters without surrounding spaces, "
            f"not {str(tag)[:80]!r}"
        )
    return tag


def check_page(limit: Any, offset: Any) -> None:
    # SQLite reads LIMIT -1 as "no limit": refuse negatives rather than return everything.
    for name, value in (("limit", limit), ("offset", offset)):
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be a non-negative int, not {value!r}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
