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
from apiharness import T0, ApiHarness
from schemacheck import schema_errors

import api.app  # noqa: F401  (declares every route, and so every form)
from api.base import SQL_INT_MAX, ApiError
from api.device_ops import OPERATION_FIELDS
from api.fields import FORMS, Form, Integer, Invalid, Text
from api.openapi import openapi_document

# Boundary and wrong-type values: bounds of texts, integers and coordinates; control and
# format characters; numbers as text; parameter maps with good and bad paths and values.
PROBES: list[Any] = [
    None, True, False, 0, 1, -1, 29, 30, 30.0, 31, 1.5, 86400, 86401, SQL_INT_MAX,
    SQL_INT_MAX + 1, -91, 90, 90.5, -180, 180, 180.5, 12.5, "", " ", "   ", "x", " x ",
    "a" * 64, "a" * 65, "a" * 255, "a" * 256, "\x00", "a\tb", "a\nb", "a\u200bb", "a\u202eb",
    "1", " 1", "+5", "05", "0", " 30", "30 ", "true", "FALSE", " true", "1.2.3.4", "::1",
    " 1.2.3.4", "1.2.3.256", "01.2.3.4", "fe80::1%eth0", "::ffff:1.2.3.4", "30", "90", "90.0",
    "90.5", "+090", "-180", "180.1", "1e1", " 5", "4_0", "0." + "0" * 70,
    "abc", [], [1], {}, {"id": 1},
    {"Device.A": "x"}, {"Device.A": 1}, {"Device.A": 1.5}, {"Device.A": True},
    {"InternetGatewayDevice.B.C": "x"}, {"Device.": "x"}, {"Device": "x"}, {"Foo.A": "x"},
    {"Device.A": None}, {"Device.A": [1]}, {"Device.A": {}}, {"Device.A.[x]": "1"},
    {"Device." + "a" * 300: "x"}, {"Device.A b": "x"}, {"name": "x"}, {"name": 1},
    {"delay_seconds": 60}, {"delay_seconds": 0}, {"delay_seconds": 86401},
    {"delay_seconds": 60.0}, {"delay_seconds": "60"}, {"delay_seconds": 60, "x": 1},
    "2024-01-15T09:30:15Z", "2024-01-15T09:30", "2024-01-15 09:30:15", "2024-01-15T09:30+01:00",
    "2024-01-15", "2024-13-01T00:00:00Z", "yesterday", "2024-01-15T", "active", "maintenance",
    "Active", "ops@example.com", "ops@example", "o ps@example.com", "a@b.c" + "c" * 250, ["x"],
    ["x", 1], ["x"] * 100, ["x"] * 101, "0000-01-31T00:00", "0982-04-31 19:36:26",
    "2023-02-29T00:00", "2024-02-29T00:00", "1900-02-29", "2000-02-29", "9999-12-31T23:59-01:00",
    "2 Web Content", "1 Firmware Upgrade Image", "X 00D09E ringtones", "00D09E", "00d09e",
    "http://127.0.0.1/hook", "https://[::1]:8443/h?x=1", "ftp://127.0.0.1/", "http://a b",
    ["task.done", "device.informed"], ["task.exploded"],
    {"kind": "reboot"}, {"kind": "reboot", "x": 1}, {"kind": "cancel_transfer", "task": 1},
    {"kind": "get_parameter_values", "parameter_names": ["Device.A"]},
    [{"start": "02:00", "end": "05:00"}], [{"start": "2:00", "end": "05:00"}],
    [{"start": "22:00", "end": "05:00", "days": ["mon", "sun"], "timezone": "Europe/Berlin"}],
    [{"start": "02:00", "end": "05:00", "timezone": "Mars/Base"}],
    [{"start": "02:00", "end": "05:00", "days": []}], [{"start": "02:00", "end": "24:00"}],
    {"max_failures": 3}, {"max_failure_ratio": 0.05, "min_sample": 20}, {"max_failure_ratio": 2},
    {"min_sample": 0}, {"max_failures": -1}, 0.001, 0.01, 100000, 100001,
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


def test_the_write_bodies_declare_their_forms() -> None:
    assert {"Organization", "DeviceType", "Location", "Device", "DeviceNested"} <= set(FORMS)


@pytest.mark.parametrize("form_name", sorted(FORMS))
def test_every_field_accepts_exactly_what_its_documented_schema_accepts(
    doc: dict[str, Any], form_name: str
) -> None:
    form = FORMS[form_name]
    schemas = doc["components"]["schemas"]
    for component in form.components():
        properties = schemas[component]["properties"]
        assert set(properties) == set(form.fields) | set(form.extra), component
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
    for component, mode in form.components().items():
        schema = schemas[component]
        assert schema.get("additionalProperties", True) is form.keep_unknown
        if mode == "update":
            assert "required" not in schema
            assert form.read({}, mode=mode) == {}
            continue
        with pytest.raises(ApiError) as empty:
            form.read({"no_such_field": 1}, mode=mode)
        assert empty.value.status == form.status
        errors = empty.value.body
        assert errors.pop("no_such_field") == ["Unknown field."]
        required = set(schema.get("required", [])) - set(form.required_extra)
        assert set(errors) == required, component
        assert all(messages == ["This field is required."] for messages in errors.values())


def test_every_device_operation_accepts_exactly_what_its_documented_schema_accepts(
    doc: dict[str, Any],
) -> None:
    """The operation keys a device write may carry (validated by api.device_ops)."""
    properties = doc["components"]["schemas"]["DevicePatch"]["properties"]
    wrong = []
    for name, spec in OPERATION_FIELDS.items():
        for probe in PROBES:
            try:
                spec.clean(probe)
            except Invalid:
                ok = False
            else:
                ok = True
            if ok != (not schema_errors(doc, properties[name], probe)):
                wrong.append((name, probe))
    assert wrong == []


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
        assert form.read({"name": "n", "id": 9}, mode="create") == {"name": "n", "parent_id": None}
        assert form.read({"parent": 3, "owner": None}, mode="update") == {
            "parent_id": 3,
            "owner": None,
        }
        with pytest.raises(ApiError) as bad:
            form.read({"name": " ", "parent": 0, "owner": "x"}, mode="replace")
        assert bad.value.body == {
            "name": ["This field may not be blank."],
            "parent": ["Ensure this value is greater than or equal to 1."],
            "owner": ["A valid integer is required."],
        }
    finally:
        del FORMS["ProbeOnly"]


# Keys of a device settings body: full parameter names (with aliases and instances), and what
# is not one. None of the good ones is a parameter the ACS manages or the data model types.
SETTING_KEYS = [
    "Device.X.Y", "Device.X.1.Y", "Device.X.[lan]", "Device.A_b-c.D", "InternetGatewayDevice.X",
    "Device.", "Device", "Device.X.", "Device..X", "Device.X Y", "Device.[a.b]", "Foo.X",
    "Device.X.Ü", "Device." + "x" * 249, "Device." + "x" * 250,
]  # fmt: skip
SETTING_VALUES: list[Any] = ["v", "", 1, -1.5, True, False, None, [1], {"a": 1}]


def test_device_settings_accept_exactly_what_their_documented_schema_accepts(
    doc: dict[str, Any], harness: ApiHarness
) -> None:
    """The settings body is a map, not a form: probed through the endpoint itself, on a
    device that has not informed (so no data model root or cached type narrows it)."""
    device = harness.store.create_device(
        serial_number="SN-PROBE", name="probe", organization_id=1, now=T0, actor="t"
    )
    schema = doc["components"]["schemas"]["DeviceSettingsPatch"]
    token = harness.token("operator")
    url = f"/api/v1/inventory_device/{device.id}/settings/"
    wrong = []
    for key in SETTING_KEYS:
        for value in SETTING_VALUES:
            reply = harness.call("PATCH", url, token=token, json_body={key: value})
            assert reply.status in (200, 400), (key, value, reply.status)
            if (reply.status == 200) != (not schema_errors(doc, schema, {key: value})):
                wrong.append((key, value, reply.status))
    assert wrong == []
