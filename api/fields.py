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
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acs.cwmp.identity import printable
from api.base import SQL_INT_MAX, ApiError, json_int, parse_coordinate
from api.schema import (
    DEFAULT_SETTING_PATH_PATTERN,
    Schema,
    coordinate,
    integer,
    name_text,
    obj,
    plain_text,
)

MAX_NAME = 255
MIN_UPDATE_FREQUENCY = 30
MAX_UPDATE_FREQUENCY = 86400
MAX_PATH_LENGTH = 256

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
UNKNOWN = "Unknown field."


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
    null nor blank). ``reset``: POST/PUT without it store ``default``; when False an omitted
    key is left alone (PUT keeps the current value). ``source``: the store column, when it
    is not the key's name."""

    required: bool = False
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
    characters; a required one is not blank. Blank optional text is stored as given."""

    max_length: int = MAX_NAME

    def parse(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid("Not a valid string.")
        if self.required and not value.strip():
            raise Invalid("This field may not be blank.")
        if len(value) > self.max_length:
            raise Invalid(f"Ensure this field has no more than {self.max_length} characters.")
        if not printable(value):
            # As for device names: no control, bidirectional or zero-width characters.
            raise Invalid("Control characters are not allowed.")
        return value

    def schema(self) -> Schema:
        if self.max_length != MAX_NAME:
            raise ValueError("the shared Name/Text schemas are 255 characters long")
        return self._described(name_text() if self.required else plain_text())


@dataclass(frozen=True, kw_only=True)
class Integer(Field):
    """A JSON integer (``180.0`` too, never a bool) in ``minimum..maximum``."""

    minimum: int | None = None
    maximum: int = SQL_INT_MAX

    def parse(self, value: Any) -> int:
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
        return self._described(integer(self.nullable, **bounds))


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


# A full TR-069 parameter path: a data model root, dot-separated names, no trailing dot.
_DEFAULT_SETTING_PATH = re.compile(DEFAULT_SETTING_PATH_PATTERN)
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
            if len(path) > MAX_PATH_LENGTH or not _DEFAULT_SETTING_PATH.match(path):
                problems.append(_PATH_PROBLEM.format(path=path))
            elif isinstance(item, bool):
                settings[path] = "true" if item else "false"
            elif isinstance(item, str):
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
            additional={"type": ["string", "number", "boolean"]},
            propertyNames={"maxLength": MAX_PATH_LENGTH, "pattern": DEFAULT_SETTING_PATH_PATTERN},
            description=self.description or "TR-069 parameter path -> value.",
        )


class Form:
    """An ordered set of fields: a write body's keys, their rules and their schema.
    ``read_only`` keys are accepted and ignored (a client may PUT back what it read).
    Every form is kept in :data:`FORMS` under its ``name``: the OpenAPI document publishes
    ``<name>Write`` (POST/PUT) and ``<name>Patch`` from it."""

    def __init__(
        self,
        name: str,
        fields: Mapping[str, Field],
        *,
        read_only: frozenset[str] = frozenset({"id"}),
    ) -> None:
        if name in FORMS:
            raise ValueError(f"form {name!r} declared twice")
        self.name = name
        self.fields = dict(fields)
        self.read_only = read_only
        FORMS[name] = self

    def read(self, body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
        """The store values of a body (keyed by source column), or a 400 naming every
        problem: unknown keys first, then the fields in declaration order. ``partial``
        (PATCH): only the keys given."""
        errors: dict[str, list[str]] = {}
        for key in body:
            if key not in self.fields and key not in self.read_only:
                errors[key] = [UNKNOWN]
        values: dict[str, Any] = {}
        for name, spec in self.fields.items():
            target = spec.source or name
            if name not in body:
                if partial or not (spec.required or spec.reset):
                    continue
                if spec.required:
                    errors.setdefault(name, []).append(REQUIRED)
                else:
                    values[target] = copy.copy(spec.default)
                continue
            try:
                values[target] = spec.clean(body[name])
            except Invalid as exc:
                errors.setdefault(name, []).extend(exc.messages)
        if errors:
            raise ApiError(400, errors)
        return values

    def schema(self, *, partial: bool) -> Schema:
        """The body's JSON Schema: POST/PUT (``partial=False``) or PATCH."""
        required = () if partial else [n for n, f in self.fields.items() if f.required]
        properties = {name: spec.schema() for name, spec in self.fields.items()}
        return obj(properties, required, additional=False)


FORMS: dict[str, Form] = {}


def form_schemas() -> dict[str, Schema]:
    """``<name>Write`` and ``<name>Patch`` of every declared form, for components/schemas."""
    schemas: dict[str, Schema] = {}
    for name, form in FORMS.items():
        schemas[f"{name}Write"] = form.schema(partial=False)
        schemas[f"{name}Patch"] = form.schema(partial=True)
    return schemas
