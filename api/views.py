"""Response declarations: each key of a representation once, with its JSON Schema and where
its value comes from, so that the serializer and the OpenAPI component are one thing.

A :class:`View` is the read-side twin of :class:`api.fields.Form`: :meth:`View.render`
turns a store row into the JSON object the API returns, :meth:`View.schema` is that
object's schema, and every view is published under its name (with ``<name>Page``, the
pagination envelope, when it is listed). The device representations, whose values come
from several rows at once, are built in :mod:`api.serializers` and described in
:mod:`api.openapi`; tests/test_api_openapi.py checks every real response against the
document either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from acs.clock import iso
from api.schema import Schema, date_time, obj, page


@dataclass(frozen=True)
class Out:
    """One key: its schema, and its value from the row (the attribute of the key's name,
    another attribute, or a function of the row); ``time``: epoch seconds returned as
    ISO 8601 UTC (``api.base.iso``)."""

    schema: Schema
    value: Callable[[Any], Any] | str | None = None
    time: bool = False

    def of(self, key: str, row: Any) -> Any:
        found = self.value(row) if callable(self.value) else getattr(row, self.value or key)
        return iso(found) if self.time else found


def when(attribute: str | None = None, *, null: bool = False, **extra: Any) -> Out:
    """A time of the row."""
    return Out(date_time(null, **extra), attribute, time=True)


class View:
    """A representation: its keys in order (:class:`Out`), all of them always present;
    ``page``: the component of a page of them (default ``<name>Page``; None: not listed)."""

    def __init__(
        self,
        name: str,
        keys: Mapping[str, Out],
        *,
        page: str | None = "",
        description: str | None = None,
    ) -> None:
        if name in VIEWS:
            raise ValueError(f"view {name!r} declared twice")
        self.name = name
        self.keys = dict(keys)
        self.page = f"{name}Page" if page == "" else page
        self.description = description
        VIEWS[name] = self

    def render(self, row: Any) -> dict[str, Any]:
        return {key: out.of(key, row) for key, out in self.keys.items()}

    def schema(self) -> Schema:
        properties = {key: out.schema for key, out in self.keys.items()}
        described: dict[str, Any] = {"description": self.description} if self.description else {}
        return obj(properties, "*", **described)


VIEWS: dict[str, View] = {}


def view_schemas() -> dict[str, Schema]:
    """Every declared view's component, and its page's."""
    schemas: dict[str, Schema] = {}
    for name, view in VIEWS.items():
        schemas[name] = view.schema()
        if view.page is not None:
            schemas[view.page] = page(name)
    return schemas
