"""Write-body fields (api/fields.py): what a field accepts is what the OpenAPI document says.

Each form's schema is built from its field declarations; these tests check the two agree in
fact, not just by construction: every field of every declared form is probed with the same
values through its validator and through the published schema (with the schema checker of
tests/schemacheck.py), and each must accept exactly the same ones. Required keys and unknown
keys are checked at the level of whole bodies.
"""

from __future__ import annotations

from typing import Any

import pytest
from schemacheck import schema_errors

import api.app  # noqa: F401  (declares every route, and so every form)
from api.base import SQL_INT_MAX, ApiError
from api.fields import FORMS, Form, Integer, Invalid, Text
from api.openapi import openapi_document

# Boundary and wrong-type values: bounds of texts, integers and coordinates; control and
# format characters; numbers as text; parameter maps with good and bad paths and values.
PROBES: list[Any] = [
    None, True, False, 0, 1, -1, 29, 30, 30.0, 31, 1.5, 86400, 86401, SQL_INT_MAX,
    SQL_INT_MAX + 1, -91, 90, 90.5, -180, 180, 180.5, 12.5, "", " ", "   ", "x", " x ",
    "a" * 64, "a" * 65, "a" * 255, "a" * 256, "\x00", "a\tb", "a\nb", "a\u200bb", "a\u202eb",
    "1", "30", "90", "90.0", "90.5", "+090", "-180", "180.1", "1e1", " 5", "4_0", "0." + "0" * 70,
    "abc", [], [1], {}, {"id": 1},
    {"Device.A": "x"}, {"Device.A": 1}, {"Device.A": 1.5}, {"Device.A": True},
    {"InternetGatewayDevice.B.C": "x"}, {"Device.": "x"}, {"Device": "x"}, {"Foo.A": "x"},
    {"Device.A": None}, {"Device.A": [1]}, {"Device.A": {}}, {"Device.A.[x]": "1"},
    {"Device." + "a" * 300: "x"}, {"Device.A b": "x"},
]  # fmt: skip


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document("http://testserver")


def accepted(form: Form, name: str, value: Any) -> bool:
    try:
        form.fields[name].clean(value)
    except Invalid:
        return False
    return True


def test_the_supporting_resources_declare_their_forms() -> None:
    assert {"Organization", "DeviceType", "Location"} <= set(FORMS)


@pytest.mark.parametrize("form_name", sorted(FORMS))
def test_every_field_accepts_exactly_what_its_documented_schema_accepts(
    doc: dict[str, Any], form_name: str
) -> None:
    form = FORMS[form_name]
    schemas = doc["components"]["schemas"]
    for component in (f"{form_name}Write", f"{form_name}Patch"):
        properties = schemas[component]["properties"]
        assert set(properties) == set(form.fields), component
        wrong = [
            (name, probe)
            for name in form.fields
            for probe in PROBES
            if accepted(form, name, probe) != (not schema_errors(doc, properties[name], probe))
        ]
        assert wrong == [], f"{component}: validator and schema disagree on {wrong}"


@pytest.mark.parametrize("form_name", sorted(FORMS))
def test_required_and_unknown_keys_are_what_the_document_says(
    doc: dict[str, Any], form_name: str
) -> None:
    form = FORMS[form_name]
    schemas = doc["components"]["schemas"]
    with pytest.raises(ApiError) as empty:
        form.read({"no_such_field": 1}, partial=False)
    errors = empty.value.body
    assert errors.pop("no_such_field") == ["Unknown field."]
    assert set(errors) == set(schemas[f"{form_name}Write"].get("required", []))
    assert all(messages == ["This field is required."] for messages in errors.values())
    assert schemas[f"{form_name}Write"]["additionalProperties"] is False
    assert "required" not in schemas[f"{form_name}Patch"]
    assert form.read({}, partial=True) == {}


def test_the_probes_reach_every_outcome_of_each_kind_of_field() -> None:
    """The probes are not all refused (or all accepted) by some kind of field, which would
    make the agreement above say little."""
    for form in FORMS.values():
        for name in form.fields:
            outcomes = {accepted(form, name, probe) for probe in PROBES}
            assert outcomes == {True, False}, f"{form.name}.{name}: {outcomes}"


def test_a_form_reads_sources_defaults_and_kept_keys() -> None:
    form = Form(
        "ProbeOnly",
        {
            "name": Text(required=True),
            "parent": Integer(minimum=1, source="parent_id"),
            "owner": Integer(minimum=1, reset=False),
        },
    )
    try:
        assert form.read({"name": "n", "id": 9}, partial=False) == {"name": "n", "parent_id": None}
        assert form.read({"parent": 3, "owner": None}, partial=True) == {
            "parent_id": 3,
            "owner": None,
        }
        with pytest.raises(ApiError) as bad:
            form.read({"name": " ", "parent": 0, "owner": "x"}, partial=False)
        assert bad.value.body == {
            "name": ["This field may not be blank."],
            "parent": ["Ensure this value is greater than or equal to 1."],
            "owner": ["A valid integer is required."],
        }
    finally:
        del FORMS["ProbeOnly"]
