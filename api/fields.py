"""Field declarations of the API's write bodies, in the style of Django REST Framework
serializers: each field is declared once and drives both the validation of a body and its
JSON Schema in the OpenAPI document.

A :class:`Field` knows its rule (type, bounds, nullable, required, what POST/PUT give it when
omitted, the store column it fills) and the DRF-style message of each way a value is wrong.
A :class:`Form` is an ordered set of fields: :meth:`Form.read` validates a whole body and
collects every field error into one ``400 {"field": ["message", ...]}``;
:meth:`Form.schema` is the body's schema for POST/PUT or (``partial``) PATCH.
``tests/test_api_fields.py`` probes every field of every form with the same values through
both and checks that they agree.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from acs.cwmp.identity import printable, serial_problem
from acs.cwmp.paths import MAX_PATH, is_setting_name
from acs.cwmp.values import VALUE_PATTERN, type_problem
from acs.store.checks import MAX_TAG, MAX_TAGS, TAG_PATTERN, check_tag
from api.base import SQL_INT_MAX, ApiError, json_int, parse_coordinate, parse_datetime
from api.schema import (
    BOOL_TEXT_PATTERN,
    BOOLISH,
    DATE_OR_DATETIME_TEXT_PATTERN,
    DATETIME_TEXT_PATTERN,
    EMAIL_PATTERN,
    PK_TEXT_PATTERN,
    SETTING_PATH_PATTERN,
    Schema,
    coordinate,
    integer,
    name_text,
    nullable,
    obj,
    pk,
    plain_text,
    ref,
    string,
)

# POST (create), PUT (replace) or PATCH (update): what a form reads a body for.
Mode = Literal["create", "replace", "update"]

MAX_NAME = 255
MAX_DESCRIPTION = 4096
MIN_UPDATE_FREQUENCY = 30
MAX_UPDATE_FREQUENCY = 86400

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
UNKNOWN = "Unknown field."
NOT_A_STRING = "Not a valid string."

# A number written as text: plain ASCII digits, no sign, blank or leading zero (what the
# published patterns promise), at most 18 of them (below SQLite's largest integer).
_DIGITS = re.compile(r"0|[1-9][0-9]{0,17}")
_BOOL_TEXT = re.compile(BOOL_TEXT_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
MAX_EMAIL = 254
_LINE_BREAKS = str.maketrans("", "", "\n\r\t")


def does_not_exist(value: Any) -> str:
    """DRF's message for a reference to no row."""
    return f'Invalid pk "{value}" - object does not exist.'


class Unset:
    """The type of :data:`UNSET`: "the body did not mention it" (where None means null)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET = Unset()


class Invalid(Exception):
    """A value is refused; ``messages`` are the DRF-style texts."""

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages)
        self.messages = list(messages)


@dataclass(frozen=True, kw_only=True)
class Field:
    """One body key. ``required``: POST/PUT without it is an error (and it may be neither
    null nor blank); ``"create"``: POST only. ``reset``: POST/PUT without it store
    ``default``; when False an omitted key is left alone (PUT keeps the current value).
    ``source``: the store column, when it is not the key's name."""

    required: bool | Literal["create"] = False
    nullable: bool = True
    default: Any = None
    reset: bool = True
    source: str | None = None
    description: str | None = None

    def clean(self, value: Any) -> Any:
        """The value to store, or :class:`Invalid`."""
        if value is None:
            if self.nullable and not self.required:
                return None
            raise Invalid(NOT_NULL)
        return self.parse(value)

    def parse(self, value: Any) -> Any:
        """A non-null value checked and converted."""
        raise NotImplementedError

    def schema(self) -> Schema:
        """What :meth:`clean` accepts, as JSON Schema."""
        raise NotImplementedError

    def _described(self, schema: Schema) -> Schema:
        return {**schema, "description": self.description} if self.description else schema


@dataclass(frozen=True, kw_only=True)
class Text(Field):
    """Printable text (``acs.cwmp.identity.printable``) of at most ``max_length``
    characters; a required one (or ``blank=False``) is not blank. Blank optional text is
    stored as given, or as null when ``blank_null``. ``multiline`` text (4096 characters)
    may hold line breaks and tabs. ``unwrap``: ``{unwrap: text}`` is read as the text (a
    representation written back)."""

    max_length: int = MAX_NAME
    blank: bool = True
    strip: bool = False  # stored without surrounding blanks
    blank_null: bool = False
    multiline: bool = False
    unwrap: str | None = None

    def clean(self, value: Any) -> Any:
        if self.unwrap is not None and isinstance(value, Mapping) and self.unwrap in value:
            value = value[self.unwrap]
        return super().clean(value)

    def parse(self, value: Any) -> str | None:
        if not isinstance(value, str):
            raise Invalid(NOT_A_STRING)
        if not value.strip():
            if self.required or not self.blank:
                raise Invalid("This field may not be blank.")
            if self.blank_null:
                return None
        if len(value) > self.max_length:
            raise Invalid(f"Ensure this field has no more than {self.max_length} characters.")
        # As for device names: no control, bidirectional or zero-width characters.
        if not printable(value.translate(_LINE_BREAKS) if self.multiline else value):
            raise Invalid("Control characters are not allowed.")
        return value.strip() if self.strip else value

    def schema(self) -> Schema:
        if self.max_length != (MAX_DESCRIPTION if self.multiline else MAX_NAME):
            raise ValueError("the shared Name/Text/MultilineText schemas have fixed lengths")
        if self.multiline:
            text = nullable(ref("MultilineText"))
        elif self.required or not self.blank:
            text = name_text()
        else:
            text = plain_text(null=self.unwrap is None)
        if self.unwrap is not None:
            wrapped = obj({self.unwrap: plain_text()}, [self.unwrap])
            text = {"anyOf": [text, wrapped, {"type": "null"}]}
        return self._described(text)


@dataclass(frozen=True, kw_only=True)
class Serial(Field):
    """A serial number (``acs.cwmp.identity.serial_problem``: 1-64 printable characters,
    no ``/`` nor whitespace, case kept); an optional one may be ``""`` for none."""

    def parse(self, value: Any) -> str | None:
        if value == "" and self.nullable and not self.required:
            return None
        if not isinstance(value, str):
            raise Invalid(NOT_A_STRING)
        problem = serial_problem(value)
        if problem is not None:
            raise Invalid(problem)
        return value

    def schema(self) -> Schema:
        if self.required:
            return self._described(ref("SerialNumber"))
        return self._described(nullable(ref("SerialNumberOrEmpty")))


@dataclass(frozen=True, kw_only=True)
class RawText(Field):
    """Text kept as given (any characters: a password, free-form notes), at most
    ``max_length``; ``integers``: a JSON integer is taken as its text (as DRF's CharField
    does); ``write_only``: never returned (a password)."""

    max_length: int = MAX_NAME
    integers: bool = False
    write_only: bool = False

    def parse(self, value: Any) -> str:
        number = json_int(value) if self.integers else None
        if number is not None:
            return str(number)
        if not isinstance(value, str):
            raise Invalid(NOT_A_STRING)
        if len(value) > self.max_length:
            raise Invalid(f"Ensure this field has no more than {self.max_length} characters.")
        return value

    def schema(self) -> Schema:
        text = string(maxLength=self.max_length, **({"writeOnly": True} if self.write_only else {}))
        if self.integers:
            options = [integer(), text, {"type": "null"}] if self.nullable else [integer(), text]
            return self._described({"anyOf": options})
        return nullable(self._described(text)) if self.nullable else self._described(text)


@dataclass(frozen=True, kw_only=True)
class Matching(Field):
    """Text that ``pattern`` (``^...$``) matches whole, at most ``max_length``; ``message``
    says what it must be. An optional one may be ``""`` (or null) for none."""

    pattern: str
    message: str
    max_length: int = MAX_NAME

    def parse(self, value: Any) -> str | None:
        if not isinstance(value, str):
            raise Invalid(NOT_A_STRING)
        if value == "" and not self.required:
            return None
        if len(value) > self.max_length or not re.fullmatch(self.pattern, value):
            raise Invalid(self.message)
        return value

    def schema(self) -> Schema:
        text = string(maxLength=self.max_length, pattern=self.pattern)
        if self.required:
            return self._described(text)
        return self._described({"anyOf": [text, string(enum=[""]), {"type": "null"}]})


@dataclass(frozen=True, kw_only=True)
class Email(Field):
    """An e-mail address (:data:`EMAIL_PATTERN`: one ``@``, a dotted domain, no
    whitespace), at most 254 characters; ``""`` and null are none."""

    def parse(self, value: Any) -> str | None:
        text = RawText(max_length=MAX_EMAIL).parse(value)
        if text == "":
            return None
        if not _EMAIL.fullmatch(text):
            raise Invalid("Enter a valid email address.")
        return text

    def schema(self) -> Schema:
        pattern = f"^({EMAIL_PATTERN})?$"
        text = string(True, maxLength=MAX_EMAIL, pattern=pattern, description="An e-mail address.")
        return self._described(text)


@dataclass(frozen=True, kw_only=True)
class Choice(Field):
    """One of ``choices``."""

    choices: tuple[str, ...]
    nullable: bool = False

    def parse(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise Invalid(f"{value!r} is not a valid choice; use one of {', '.join(self.choices)}.")
        return value

    def schema(self) -> Schema:
        return self._described(string(enum=list(self.choices)))


@dataclass(frozen=True, kw_only=True)
class JsonObject(Field):
    """Any JSON object (free-form: what it holds is the caller's business)."""

    nullable: bool = False

    def parse(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid("Expected an object of key/value pairs.")
        return value

    def schema(self) -> Schema:
        return self._described(obj({}))


@dataclass(frozen=True, kw_only=True)
class StringList(Field):
    """A list of at most ``max_items`` strings."""

    max_items: int
    nullable: bool = False

    def parse(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise Invalid("Expected a list of strings.")
        if len(value) > self.max_items:
            raise Invalid(f"Ensure this field has no more than {self.max_items} elements.")
        return list(value)

    def schema(self) -> Schema:
        items = {"type": "array", "items": string(), "maxItems": self.max_items}
        return self._described(items)


@dataclass(frozen=True, kw_only=True)
class ChoiceList(Field):
    """A non-empty list of distinct ``choices``, in the order given."""

    choices: tuple[str, ...]

    def parse(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not value:
            raise Invalid(f"Expected a non-empty list of {', '.join(self.choices)}.")
        if any(item not in self.choices for item in value):
            raise Invalid(f"Each item must be one of {', '.join(self.choices)}.")
        if len(set(value)) != len(value):
            raise Invalid("Each item may be given once.")
        return list(value)

    def schema(self) -> Schema:
        items = {
            "type": ["array", "null"] if self.nullable else "array",
            "items": string(enum=list(self.choices)),
            "minItems": 1,
            "uniqueItems": True,
        }
        return self._described(items)


@dataclass(frozen=True, kw_only=True)
class TagList(StringList):
    """Device tags: at most MAX_TAGS, each 1 to MAX_TAG characters of TAG_PATTERN."""

    max_items: int = MAX_TAGS

    def parse(self, value: Any) -> list[str]:
        tags = super().parse(value)
        bad = [t for t in tags if not _is_tag(t)]
        if bad:
            raise Invalid(
                f"A tag is 1 to {MAX_TAG} visible characters without surrounding spaces, "
                f"not {bad[0][:80]!r}."
            )
        return list(dict.fromkeys(tags))

    def schema(self) -> Schema:
        item = string(pattern=TAG_PATTERN, minLength=1, maxLength=MAX_TAG)
        return self._described({"type": "array", "items": item, "maxItems": self.max_items})


def _is_tag(tag: str) -> bool:
    try:
        check_tag(tag)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class Integer(Field):
    """A JSON integer (``180.0`` too, never a bool) in ``minimum..maximum``; also as plain
    decimal text when ``text_pattern`` (that text within the bounds, as a regex) is given."""

    minimum: int | None = None
    maximum: int = SQL_INT_MAX
    text_pattern: str | None = None

    def parse(self, value: Any) -> int:
        if self.text_pattern is not None and isinstance(value, str) and _DIGITS.fullmatch(value):
            value = int(value)
        number = json_int(value)
        if number is None:
            raise Invalid("A valid integer is required.")
        if self.minimum is not None and number < self.minimum:
            raise Invalid(f"Ensure this value is greater than or equal to {self.minimum}.")
        if number > self.maximum:
            raise Invalid(f"Ensure this value is less than or equal to {self.maximum}.")
        return number

    def schema(self) -> Schema:
        bounds: dict[str, int] = {"maximum": self.maximum}
        if self.minimum is not None:
            bounds["minimum"] = self.minimum
        number = integer(self.nullable, **bounds)
        if self.text_pattern is None:
            return self._described(number)
        if self.nullable:
            raise ValueError("a nullable integer as text is not declared anywhere")
        return self._described({"anyOf": [number, string(pattern=self.text_pattern)]})


@dataclass(frozen=True, kw_only=True)
class Pk(Field):
    """A reference by id, checked for shape only (whether the row exists, and may be used,
    is the caller's question): an integer, its plain decimal text, or (``objects``)
    ``{"id": n}`` as the nested view returns it."""

    objects: bool = True
    # A form field's text: "" and "null" are none, and only text is sent.
    form_text: bool = False

    def clean(self, value: Any) -> int | None:
        if self.objects and isinstance(value, Mapping) and "id" in value:
            value = value["id"]
        if self.form_text:
            if not isinstance(value, str):
                raise Invalid(NOT_A_STRING)
            if value in ("", "null"):
                return None
        return super().clean(value)

    def parse(self, value: Any) -> int:
        if isinstance(value, str):
            if not _DIGITS.fullmatch(value):
                raise Invalid("Incorrect type. Expected pk value, received str.")
            value = int(value)
        number = json_int(value)
        if number is None:
            raise Invalid(f"Incorrect type. Expected pk value, received {type(value).__name__}.")
        if not 0 < number <= SQL_INT_MAX:
            raise Invalid(does_not_exist(number))
        return number

    def schema(self) -> Schema:
        if self.form_text:
            return self._described(string(pattern=f"^({PK_TEXT_PATTERN[1:-1]}|null)?$"))
        return pk(self.description or "", null=self.nullable, objects=self.objects)


@dataclass(frozen=True, kw_only=True)
class Boolean(Field):
    """true/false; also 1/0, and their text in any case."""

    nullable: bool = False

    def parse(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):
            return value == 1
        if isinstance(value, str) and _BOOL_TEXT.fullmatch(value):
            return value.lower() in ("1", "true")
        raise Invalid("Must be a valid boolean.")

    def schema(self) -> Schema:
        return self._described(BOOLISH)


@dataclass(frozen=True, kw_only=True)
class DateTime(Field):
    """An ISO 8601 time, ``YYYY-MM-DDThh:mm[:ss][+HH:MM|-HH:MM|Z]`` (no offset: UTC), or
    (``dates``) a date alone (its midnight, UTC); stored as epoch seconds. The published
    pattern is exact (the days of each month, leap years), so it and the parser agree."""

    dates: bool = False

    def _pattern(self) -> str:
        return DATE_OR_DATETIME_TEXT_PATTERN if self.dates else DATETIME_TEXT_PATTERN

    def parse(self, value: Any) -> float:
        valid = isinstance(value, str) and re.fullmatch(self._pattern(), value)
        when = parse_datetime(value) if valid else None
        if when is None:
            formats = "YYYY-MM-DD[Thh:mm" if self.dates else "YYYY-MM-DDThh:mm"
            tail = "[:ss][+HH:MM|-HH:MM|Z]]" if self.dates else "[:ss][+HH:MM|-HH:MM|Z]"
            raise Invalid(
                f"Datetime has wrong format. Use one of these formats instead: {formats}{tail}."
            )
        return when

    def schema(self) -> Schema:
        text = string(self.nullable, pattern=self._pattern(), examples=["2024-01-16T02:00Z"])
        return self._described(text)


@dataclass(frozen=True, kw_only=True)
class IpAddress(Field):
    """An IPv4 or IPv6 address (no zone id), stored in its compressed form; ``""`` and null
    are none."""

    def parse(self, value: Any) -> str | None:
        if value == "":
            return None
        if not isinstance(value, str) or "%" in value:
            raise Invalid("Enter a valid IPv4 or IPv6 address.")
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise Invalid("Enter a valid IPv4 or IPv6 address.") from None

    def schema(self) -> Schema:
        any_address = [
            string(format="ipv4"),
            string(format="ipv6"),
            {"type": "string", "enum": [""]},
            {"type": "null"},
        ]
        return self._described({"anyOf": any_address})


@dataclass(frozen=True, kw_only=True)
class Coordinate(Field):
    """A decimal in ``-limit..limit``, a JSON number or plain decimal text, stored as the
    decimal text (no float rounding); ``""`` and null are none."""

    limit: int
    pattern: str
    example: str
    max_length: int = 64

    def clean(self, value: Any) -> str | None:
        try:
            return parse_coordinate(value, self.limit, self.max_length)
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    def schema(self) -> Schema:
        return coordinate(self.pattern, self.limit, self.max_length, self.example)


# acs.cwmp.paths.is_setting_name: a data model root, dot-separated names or [aliases].
_PATH_PROBLEM = (
    "{path!r} is not a full TR-069 parameter path (Device.… or InternetGatewayDevice.…, "
    "not ending in '.')."
)


@dataclass(frozen=True, kw_only=True)
class ParameterValues(Field):
    """An object of TR-069 parameter path -> value. Values may be strings, numbers or
    booleans and are stored as the strings SetParameterValues sends (booleans as
    ``true``/``false``)."""

    default: Any = field(default_factory=dict)

    def clean(self, value: Any) -> dict[str, str]:
        return self.parse(value)  # null is not an object either

    def parse(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise Invalid("Expected an object of TR-069 parameter path -> value.")
        settings: dict[str, str] = {}
        problems: list[str] = []
        for path, item in value.items():
            if not is_setting_name(path):
                problems.append(_PATH_PROBLEM.format(path=path))
            elif isinstance(item, bool):
                settings[path] = "true" if item else "false"
            elif isinstance(item, str):
                problem = type_problem(item, "xsd:string")
                if problem:
                    problems.append(f"The value of {path!r} {problem}.")
                settings[path] = item
            elif isinstance(item, int | float) and math.isfinite(item):
                settings[path] = str(item)
            else:
                problems.append(f"The value of {path!r} must be a string, number or boolean.")
        if problems:
            raise Invalid(*problems)
        return settings

    def schema(self) -> Schema:
        return obj(
            {},
            additional={"type": ["string", "number", "boolean"], "pattern": VALUE_PATTERN},
            propertyNames={"maxLength": MAX_PATH, "pattern": SETTING_PATH_PATTERN},
            description=self.description or "TR-069 parameter path -> value.",
        )


Errors = dict[str, list[str]]


class Form:
    """An ordered set of fields: a write body's keys, their rules and their schema.
    ``read_only`` keys are accepted and ignored (a client may PUT back what it read).
    Every form is kept in :data:`FORMS` under its ``name``: the OpenAPI document publishes
    ``<name>Write`` (POST/PUT) and ``<name>Patch`` from it, or ``<name>Create``,
    ``<name>Replace`` and ``<name>Patch`` when a field is required on create only.
    ``notes`` describe a mode's schema; ``extra`` are properties the body may also carry,
    validated elsewhere (the device operations of a flat write; the file of an upload,
    ``required_extra`` when POST/PUT need it). ``keep_unknown``: other
    keys are no error (the caller keeps them as free-form data). ``status``: of the error
    answer. ``components``: other component names for the published modes."""

    def __init__(
        self,
        name: str,
        fields: Mapping[str, Field],
        *,
        read_only: frozenset[str] = frozenset({"id"}),
        notes: Mapping[Mode, str] | None = None,
        extra: Mapping[str, Schema] | None = None,
        required_extra: tuple[str, ...] = (),
        keep_unknown: bool = False,
        status: int = 400,
        components: Mapping[str, Mode] | None = None,
    ) -> None:
        if name in FORMS:
            raise ValueError(f"form {name!r} declared twice")
        self.name = name
        self.fields = dict(fields)
        self.read_only = read_only
        self.notes = dict(notes or {})
        self.extra = dict(extra or {})
        self.required_extra = required_extra
        self.keep_unknown = keep_unknown
        self.status = status
        self._components = dict(components) if components is not None else None
        FORMS[name] = self

    def check(self, body: Mapping[str, Any], *, mode: Mode) -> tuple[dict[str, Any], Errors]:
        """The store values of a body (keyed by source column) and the problems found:
        unknown keys first, then the fields in declaration order. ``update`` (PATCH): only
        the keys given."""
        errors: Errors = {}
        for key in body:
            known = key in self.fields or key in self.extra or key in self.read_only
            if not known and not self.keep_unknown:
                errors[key] = [UNKNOWN]
        values: dict[str, Any] = {}
        for name, spec in self.fields.items():
            target = spec.source or name
            if name not in body:
                if mode == "update":
                    continue
                if _required(spec, mode):
                    errors.setdefault(name, []).append(REQUIRED)
                elif spec.reset:
                    values[target] = copy.copy(spec.default)
                continue
            try:
                values[target] = spec.clean(body[name])
            except Invalid as exc:
                errors.setdefault(name, []).extend(exc.messages)
        return values, errors

    def read(self, body: Mapping[str, Any], *, mode: Mode) -> dict[str, Any]:
        """:meth:`check`, raising a 400 naming every problem."""
        values, errors = self.check(body, mode=mode)
        if errors:
            raise ApiError(self.status, errors)
        return values

    def components(self) -> dict[str, Mode]:
        """Component name -> the mode its schema describes."""
        if self._components is not None:
            return dict(self._components)
        if any(spec.required == "create" for spec in self.fields.values()):
            return {
                f"{self.name}Create": "create",
                f"{self.name}Replace": "replace",
                f"{self.name}Patch": "update",
            }
        return {f"{self.name}Write": "create", f"{self.name}Patch": "update"}

    def schema(self, *, mode: Mode) -> Schema:
        """The body's JSON Schema for POST (``create``), PUT (``replace``) or PATCH."""
        required = [n for n, f in self.fields.items() if _required(f, mode)]
        if mode != "update":
            required += self.required_extra
        properties = {name: spec.schema() for name, spec in self.fields.items()}
        properties.update(self.extra)
        note = self.notes.get(mode)
        described = {"description": note} if note else {}
        return obj(properties, required, additional=self.keep_unknown, **described)


def _required(spec: Field, mode: Mode) -> bool:
    return (spec.required is True and mode != "update") or spec.required == mode


FORMS: dict[str, Form] = {}


def form_schemas() -> dict[str, Schema]:
    """Every declared form's components (see :meth:`Form.components`)."""
    return {
        component: form.schema(mode=mode)
        for form in FORMS.values()
        for component, mode in form.components().items()
    }
