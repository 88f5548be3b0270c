"""The OpenAPI document (api/openapi.py) is well formed and true to the running app.

Three kinds of check keep it true: a compact structural validation of the OpenAPI 3.1
document (version, info, every ``$ref`` resolves, every path parameter declared, ...); a walk
of the app's real werkzeug rules (every route and method documented, nothing documented that
is absent); and real responses validated against the documented schemas with a small
JSON-schema checker (the subset the document uses).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from apiharness import HOST, ApiHarness
from schemacheck import deref, resolve, schema_errors

from acs.cwmp.identity import printable, serial_problem
from api.base import API_PREFIX, ROUTES, Api, route
from api.dashboard import PAGE_RULES
from api.docs import Doc
from api.openapi import openapi_document
from api.schema import (
    MULTILINE_PATTERN,
    NAME_PATTERN,
    SERIAL_PATTERN,
    TEXT_PATTERN,
)

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
# werkzeug adds HEAD to every GET rule; Klein answers OPTIONS itself. Neither is an API method.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
_RULE_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_DOC_PARAM = re.compile(r"\{([^}/]+)\}")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document("http://testserver")


# --- helpers ------------------------------------------------------------------------------


def walk_refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from walk_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_refs(value, f"{where}/{i}")


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(path, method, path item, operation) for every documented operation."""
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item, item[method]


def shape(path: str) -> str:
    """A path template with its parameter names erased: names are documentation, not URL."""
    return _DOC_PARAM.sub("{}", path)


def app_routes() -> dict[str, tuple[set[str], list[str]]]:
    """shape -> (methods, converter kinds in order) of every rule the Klein app serves."""
    found: dict[str, tuple[set[str], list[str]]] = {}
    for rule in Api.app.url_map.iter_rules():
        if rule.rule in PAGE_RULES:
            continue  # the dashboard's page and files (tests/test_ui_assets.py)
        converters = [m.group(1) or "default" for m in _RULE_PARAM.finditer(rule.rule)]
        template = _RULE_PARAM.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        methods = {m.upper() for m in (rule.methods or ())} - IMPLICIT_METHODS
        known, kinds = found.setdefault(shape(template), (set(), converters))
        assert kinds == converters, f"{rule.rule}: inconsistent converters {kinds} / {converters}"
        known |= methods
    return found


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> Any:
    op = doc["paths"][path][method]
    response = deref(doc, op["responses"][str(status)])
    return response["content"]["application/json"]["schema"]


# --- the document's structure -------------------------------------------------------------


def test_document_declares_openapi_3_1_with_info_servers_and_bearer_security(
    doc: dict[str, Any],
) -> None:
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and isinstance(doc["info"]["version"], str)
    assert doc["servers"] == [{"url": "http://testserver"}]
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    assert doc["paths"], "no paths documented"


def test_every_ref_in_the_document_resolves(doc: dict[str, Any]) -> None:
    refs = list(walk_refs(doc))
    assert len(refs) > 50  # the walk itself works
    dangling = []
    for where, ref in refs:
        try:
            resolve(doc, ref)
        except (KeyError, IndexError, AssertionError):
            dangling.append(f"{where} -> {ref}")
    assert not dangling, dangling


def test_every_component_is_used(doc: dict[str, Any]) -> None:
    used = {ref for _, ref in walk_refs(doc)}
    unused = [
        f"#/components/{kind}/{name}"
        for kind in ("schemas", "parameters", "responses")
        for name in doc["components"][kind]
        if f"#/components/{kind}/{name}" not in used
    ]
    assert not unused, unused


def test_every_path_parameter_is_declared_and_every_declared_one_is_in_the_path(
    doc: dict[str, Any],
) -> None:
    for path, method, item, op in operations(doc):
        params = [deref(doc, p) for p in item.get("parameters", []) + op.get("parameters", [])]
        declared = {p["name"] for p in params if p["in"] == "path"}
        in_template = set(_DOC_PARAM.findall(path))
        assert declared == in_template, f"{method.upper()} {path}: {declared} vs {in_template}"
        for p in params:
            assert p["in"] in ("path", "query", "header", "cookie"), p
            assert "schema" in p, f"{method.upper()} {path}: parameter {p['name']} has no schema"
            if p["in"] == "path":
                assert p["required"] is True, f"{path}: path parameter {p['name']} not required"
        names = [(p["name"], p["in"]) for p in params]
        assert len(names) == len(set(names)), f"{method.upper()} {path}: duplicate parameters"


def test_every_operation_has_an_id_a_success_response_and_auth_errors(
    doc: dict[str, Any],
) -> None:
    ids = []
    for path, method, _item, op in operations(doc):
        ids.append(op["operationId"])
        codes = set(op["responses"])
        assert any(c.startswith("2") for c in codes), f"{method.upper()} {path}: no 2xx"
        for code, response in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", code), f"{path}: bad status {code}"
            assert "description" in deref(doc, response), f"{method.upper()} {path} {code}"
        if op.get("security") == []:
            assert path in ("/healthz", "/api/v1/auth/login/"), f"{path} needs no token?"
            continue
        assert op["x-required-role"] in ("viewer", "operator", "admin")
        assert {"401", "403"} <= codes, f"{method.upper()} {path}: 401/403 undocumented"
        if method in ("post", "put", "patch"):
            body = op["requestBody"]["content"]
            assert "schema" in next(iter(body.values())), f"{method.upper()} {path}: no schema"
            assert "400" in codes, f"{method.upper()} {path}: bad bodies (400) undocumented"
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_tags_used_by_operations_are_declared(doc: dict[str, Any]) -> None:
    declared = {t["name"] for t in doc["tags"]}
    used = {tag for _, _, _, op in operations(doc) for tag in op.get("tags", [])}
    assert used <= declared, used - declared


def test_the_schema_checker_catches_mismatches(doc: dict[str, Any]) -> None:
    # The response validation below is only as good as this checker: prove it can fail.
    device = {"$ref": "#/components/schemas/Device"}
    assert schema_errors(doc, device, {"id": 1})  # required keys missing
    assert schema_errors(doc, {"type": "integer"}, True)
    assert schema_errors(doc, {"type": ["string", "null"]}, 3)
    assert schema_errors(doc, {"type": "string", "format": "date-time"}, "2024-01-15 09:30")
    assert schema_errors(doc, {"$ref": "#/components/schemas/Error"}, {"detail": 1})
    assert schema_errors(doc, {"$ref": "#/components/schemas/FieldErrors"}, {"name": "x"})
    assert not schema_errors(doc, {"$ref": "#/components/schemas/ErrorBody"}, {"name": ["x"]})
    page = {"$ref": "#/components/schemas/OrganizationPage"}
    ok: dict[str, Any] = {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [{"id": 1, "name": "a"}],
    }
    assert schema_errors(doc, page, ok)  # "code" missing in the item
    ok["results"][0]["code"] = None
    assert not schema_errors(doc, page, ok)
    assert schema_errors(doc, page, {**ok, "extra": 1})


def test_the_text_patterns_refuse_exactly_what_the_api_refuses() -> None:
    # The documented class and acs.cwmp.identity.printable() must agree, or schemathesis'
    # data checks (make fuzz) and clients validating against the document part from the API.
    # Every assigned plane but the surrogates (no regex class names them portably), the tag
    # characters, and the private-use planes' ends. fullmatch: Python's "$" also matches
    # before a final "\n", JSON Schema's does not.
    text = re.compile(TEXT_PATTERN)
    multiline = re.compile(MULTILINE_PATTERN)
    for code in [*range(0x40000), *range(0xE0000, 0xE1000), 0xF0000, 0x10FFFF]:
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        assert bool(text.fullmatch(char)) == printable(char), hex(code)
        expected = printable(char.translate({9: None, 10: None, 13: None}))
        assert bool(multiline.fullmatch(char)) == expected, hex(code)
    name = re.compile(NAME_PATTERN)
    assert [bool(name.fullmatch(t)) for t in ("a", " a ", " ", "", "a\u200b", "a\n")] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    serial = re.compile(SERIAL_PATTERN)
    for value in ("ABC-1", "a b", "a/b", "a\tb", "ü", ""):
        assert bool(serial.fullmatch(value)) == (serial_problem(value) is None), value


def test_the_planes_the_patterns_skip_hold_no_refused_character() -> None:
    # api.schema reads the categories of planes 0-3 and 14 only, for a quick start.
    skipped = [*range(0x40000, 0xE0000), *range(0xF0000, 0x110000)]
    assert [hex(c) for c in skipped if not printable(chr(c))] == []


# --- the document against the app's real routes -------------------------------------------


def route_differences(
    served: dict[str, tuple[set[str], list[str]]], doc: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """(served but undocumented, documented but not served) as "METHOD /path" lines."""
    documented: dict[str, set[str]] = {}
    for path, method, _item, _op in operations(doc):
        documented.setdefault(shape(path), set()).add(method.upper())
    undocumented = sorted(
        f"{m} {path}" for path, (ms, _) in served.items() for m in ms - documented.get(path, set())
    )
    absent = sorted(
        f"{m} {path}"
        for path, ms in documented.items()
        for m in ms - served.get(path, (set(), []))[0]
    )
    return undocumented, absent


def test_every_app_route_and_method_is_documented_and_nothing_else(doc: dict[str, Any]) -> None:
    undocumented, absent = route_differences(app_routes(), doc)
    assert not undocumented, f"served but not in openapi.json: {undocumented}"
    assert not absent, f"in openapi.json but not served (missing routes): {absent}"


def test_the_route_walk_reports_both_kinds_of_difference(doc: dict[str, Any]) -> None:
    served = app_routes()
    served["/api/v1/new_thing/{}/"] = ({"GET"}, ["int"])
    served[shape("/api/v1/inventory_device/{id}/")][0].discard("DELETE")
    undocumented, absent = route_differences(served, doc)
    assert undocumented == ["GET /api/v1/new_thing/{}/"]
    assert absent == ["DELETE /api/v1/inventory_device/{}/"]


def test_documented_path_parameter_types_match_the_route_converters(doc: dict[str, Any]) -> None:
    served = app_routes()
    for path, item in doc["paths"].items():
        if shape(path) not in served:
            continue  # reported by the route walk above
        kinds = served[shape(path)][1]
        params = {
            deref(doc, p)["name"]: deref(doc, p)
            for p in item.get("parameters", [])
            if deref(doc, p)["in"] == "path"
        }
        for name, kind in zip(_DOC_PARAM.findall(path), kinds, strict=True):
            expected = "integer" if kind == "int" else "string"
            assert params[name]["schema"]["type"] == expected, f"{path}: {name} is {kind}"


# --- serving it -----------------------------------------------------------------------------


def test_openapi_json_is_served_to_a_viewer_with_the_callers_base_url(
    harness: ApiHarness,
) -> None:
    reply = harness.call("GET", "/api/v1/openapi.json", token=harness.token("viewer"))
    assert reply.status == 200
    assert reply.header("content-type") == "application/json"
    assert reply.json == json.loads(json.dumps(openapi_document(HOST)))
    again = harness.call("GET", "/api/v1/openapi.json/", token=harness.token("viewer"))
    assert again.status == 200  # trailing slash served the same, no redirect


def test_openapi_json_needs_a_token(harness: ApiHarness) -> None:
    reply = harness.call("GET", "/api/v1/openapi.json")
    assert reply.status == 401
    assert reply.header("www-authenticate") == "Bearer"
    assert "detail" in reply.json


# --- real responses against the documented schemas ----------------------------------------


def test_real_responses_match_the_documented_schemas(harness: ApiHarness) -> None:
    """Every documented GET (with ids filled in from a populated store) and the device
    writes answer with bodies valid against the document's schemas."""
    from test_api_secrets import build_world

    world = build_world(harness)
    doc = openapi_document(HOST)
    ids = {"id": world.device_id, "task_id": world.task_id, "serial_number": world.serial}
    per_resource = {
        f"{API_PREFIX}/organization/{{id}}/": world.organization_id,
        f"{API_PREFIX}/device_type/{{id}}/": world.device_type_id,
        f"{API_PREFIX}/location/{{id}}/": world.location_id,
        f"{API_PREFIX}/firmware_image/{{id}}/": world.firmware_image_id,
        **{
            f"{API_PREFIX}/campaign/{{id}}/{tail}": world.campaign_id
            for tail in ("", "preview/", "devices/")
        },
    }
    per_resource[f"{API_PREFIX}/user/{{id}}/"] = world.user_id
    per_resource[f"{API_PREFIX}/token/{{id}}/"] = world.token_id
    ids["file_id"] = world.file_id
    failures: list[str] = []
    checked = 0
    for path, item in doc["paths"].items():
        op = item.get("get")
        if op is None or "application/json" not in json.dumps(op["responses"].get("200", {})):
            continue
        url = path
        for name in _DOC_PARAM.findall(path):
            value = per_resource.get(path, ids[name]) if name == "id" else ids[name]
            url = url.replace("{" + name + "}", str(value))
        documents_pending = "pending" in json.dumps(op.get("parameters", []))
        for query in ("", "?pending=true") if documents_pending else ("",):
            reply = harness.call("GET", url + query, token=world.admin_token)
            if reply.status != 200:
                failures.append(f"GET {url}{query}: {reply.status} {reply.raw[:200]!r}")
                continue
            checked += 1
            errors = schema_errors(doc, response_schema(doc, path, "get", 200), reply.json)
            failures += [f"GET {url}{query}: {e}" for e in errors]
    assert checked >= 10
    assert not failures, "\n".join(failures)


def test_error_bodies_match_the_documented_error_schemas(harness: ApiHarness) -> None:
    doc = openapi_document(HOST)
    admin = harness.token("admin")
    path = f"{API_PREFIX}/inventory_device/{{id}}/"
    cases = [
        ("GET", "/api/v1/inventory_device/999999/", None, 404),
        ("GET", "/api/v1/inventory_device/?status=maybe", None, 400),
        ("POST", "/api/v1/inventory_device/", {"name": "x", "serial_number": "S", "bogus": 1}, 400),
    ]
    for method, url, body, status in cases:
        reply = harness.call(method, url, token=admin, json_body=body)
        assert reply.status == status, (url, reply.status, reply.raw)
        schema = deref(doc, doc["paths"][path]["get"]["responses"]["404"])
        errors = schema_errors(doc, schema["content"]["application/json"]["schema"], reply.json)
        assert not errors, (url, errors)
    unauthorized = harness.call("GET", "/api/v1/inventory_device/")
    schema = doc["components"]["responses"]["Unauthorized"]["content"]["application/json"]
    assert not schema_errors(doc, schema["schema"], unauthorized.json)


def test_device_write_responses_match_the_documented_schemas(harness: ApiHarness) -> None:
    doc = openapi_document(HOST)
    admin = harness.token("admin")
    created = harness.call(
        "POST",
        "/api/v1/inventory_device/",
        token=admin,
        json_body={"name": "cpe", "serial_number": "OAS-1", "organization_id": 1},
    )
    assert created.status == 201, created.raw
    flat = f"{API_PREFIX}/inventory_device/"
    assert not schema_errors(doc, response_schema(doc, flat, "post", 201), created.json)
    patched = harness.call(
        "PATCH",
        f"/api/v1/inventory_device/{created.json['id']}/",
        token=admin,
        json_body={"description": "d", "reboot": True},
    )
    assert patched.status == 200, patched.raw
    schema = response_schema(doc, flat + "{id}/", "patch", 200)
    assert not schema_errors(doc, schema, patched.json)
    nested = harness.call(
        "POST",
        "/api/v1/inventory_device_serial/",
        token=admin,
        json_body={"name": "cpe2", "serial_number": "OAS-2", "organization": 1},
    )
    assert nested.status == 201, nested.raw
    schema = response_schema(doc, f"{API_PREFIX}/inventory_device_serial/", "post", 201)
    assert not schema_errors(doc, schema, nested.json)
    operation = harness.call(
        "PUT",
        f"/api/v1/inventory_device_operation/{created.json['id']}/",
        token=admin,
        json_body={
            "operational_status": "maintenance",
            "status": "completed",
            "notes": "n",
            "started_at": "2024-01-15T10:00:00Z",
            "custom_key": "kept as metadata",
            "configuration": {"Device.Time.NTPServer1": "127.0.0.1", "profile": "p"},
        },
    )
    assert operation.status == 200, operation.raw
    schema = response_schema(doc, f"{API_PREFIX}/inventory_device_operation/{{id}}/", "put", 200)
    assert not schema_errors(doc, schema, operation.json)
    serial_operation = harness.call(
        "PUT",
        "/api/v1/inventory_device_serial_operation/OAS-2/",
        token=admin,
        json_body={"status": "active", "tags": ["a"], "custom_fields": {"k": "v"}, "x": 1},
    )
    assert serial_operation.status == 200, serial_operation.raw
    path = f"{API_PREFIX}/inventory_device_serial_operation/{{serial_number}}/"
    assert not schema_errors(doc, response_schema(doc, path, "put", 200), serial_operation.json)


def test_documented_roles_and_token_requirements_are_enforced(harness: ApiHarness) -> None:
    """x-required-role is true: the role just below gets 403, no token gets 401 (both are
    decided before the body is read, so these calls change nothing)."""
    from test_api_secrets import build_world

    world = build_world(harness)
    doc = openapi_document(HOST)
    below = {"operator": harness.token("viewer"), "admin": harness.token("operator")}
    ids = {
        "id": str(world.device_id),
        "task_id": str(world.task_id),
        "serial_number": world.serial,
        "backup_id": "1",
        "tag": "none",
    }
    failures = []
    for path, method, _item, op in operations(doc):
        if op.get("security") == []:
            continue
        url = path
        for name in _DOC_PARAM.findall(path):
            url = url.replace("{" + name + "}", ids[name])
        anonymous = harness.call(method.upper(), url)
        if anonymous.status != 401:
            failures.append(f"{method.upper()} {path} without a token: {anonymous.status}")
        role = op["x-required-role"]
        if role in below:
            reply = harness.call(method.upper(), url, token=below[role])
            if reply.status != 403:
                failures.append(f"{method.upper()} {path} below {role}: {reply.status}")
    assert harness.store.get_device(world.device_id) is not None
    assert not failures, "\n".join(failures)


def test_a_route_and_method_cannot_be_declared_twice() -> None:
    before = list(ROUTES)
    with pytest.raises(ValueError, match="declared twice"):
        route("/organization/", methods=("GET",), doc=Doc("again", "Again", "organization"))
    assert before == ROUTES
