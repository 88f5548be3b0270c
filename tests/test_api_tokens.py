"""API tokens over the API (/api/v1/token/, api/tokens.py): admins (unscoped) create a token
and see its secret once, list and read tokens without it, and revoke them; names, roles and
organizations are checked as ``acs token create`` checks them; writes are audited."""

from __future__ import annotations

import hashlib

from apiharness import ApiHarness, Reply

API = "/api/v1"
TOKENS = f"{API}/token/"
KEYS = {"id", "name", "role", "organization_ids", "created", "revoked"}


def create(h: ApiHarness, token: str, **body: object) -> Reply:
    return h.call("POST", TOKENS, token=token, json_body={"name": "ci", "role": "viewer", **body})


def secret_free(reply: Reply, *secrets: str) -> None:
    text = reply.raw.decode()
    for secret in secrets:
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text


def test_creation_shows_the_secret_once_and_it_authenticates(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    org = harness.store.ensure_organization("Lab")
    made = create(harness, admin, name="  ci  ", role="operator", organization_ids=[org.id])
    assert made.status == 201, made.json
    body = made.json
    assert set(body) == KEYS | {"token"}
    assert (body["name"], body["role"], body["organization_ids"]) == ("ci", "operator", [org.id])
    assert body["revoked"] is False and body["created"] == "2024-01-15T09:30:00Z"
    secret = body["token"]
    assert len(secret) >= 32
    me = harness.call("GET", f"{API}/auth/session/", token=secret)
    assert me.status == 200
    assert (me.json["username"], me.json["role"], me.json["organization_ids"]) == (
        "ci",
        "operator",
        [org.id],
    )
    # Scoped: its organization only.
    other = harness.store.ensure_organization("Other")
    assert harness.call("GET", f"{API}/organization/{other.id}/", token=secret).status == 403
    listed = harness.call("GET", TOKENS, token=admin)
    assert listed.status == 200 and listed.json["count"] == 2
    assert [t["name"] for t in listed.json["results"]] == ["admin-token", "ci"]
    assert all(set(t) == KEYS for t in listed.json["results"])
    one = harness.call("GET", f"{TOKENS}{body['id']}/", token=admin)
    assert one.status == 200
    assert one.json == {k: v for k, v in body.items() if k != "token"}
    for reply in (listed, one):
        secret_free(reply, secret, admin)


def test_revoking_makes_the_token_401_and_keeps_it_listed(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    made = create(harness, admin).json
    url = f"{TOKENS}{made['id']}/"
    assert harness.call("GET", f"{API}/organization/", token=made["token"]).status == 200
    revoked = harness.call("DELETE", url, token=admin)
    assert revoked.status == 204 and revoked.raw == b""
    assert harness.call("GET", f"{API}/organization/", token=made["token"]).status == 401
    assert harness.call("GET", url, token=admin).json["revoked"] is True
    assert harness.call("DELETE", url, token=admin).status == 204  # again: no change
    entries = harness.call("GET", f"{API}/audit/", token=admin).json["results"]
    assert [(e["actor"], e["action"], e["detail"]) for e in entries] == [
        ("admin-token", "token_revoked", {"id": made["id"], "name": "ci"}),
        (
            "admin-token",
            "token_created",
            {"id": made["id"], "name": "ci", "role": "viewer", "organization_ids": []},
        ),
    ]
    secret_free(harness.call("GET", f"{API}/audit/", token=admin), made["token"])


def test_an_admin_token_may_revoke_itself(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    own = harness.store.list_tokens()[0].id
    assert harness.call("DELETE", f"{TOKENS}{own}/", token=admin).status == 204
    assert harness.call("GET", TOKENS, token=admin).status == 401


def test_names_the_store_refuses_are_400_on_name(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    for name in (
        "user:alice",
        " user:alice",
        "acs",
        "cpe",
        "",
        "   ",
        None,
        5,
        "a\x00b",
        "x" * 256,
    ):
        reply = create(harness, admin, name=name)
        assert reply.status == 400, (name, reply.json)
        assert list(reply.json) == ["name"], name
    assert create(harness, admin, name="user:x").json == {
        "name": ["Token names may not start with 'user:' (web UI users)."]
    }
    assert [t.name for t in harness.store.list_tokens()] == ["admin-token"]


def test_bad_roles_and_organizations_are_400(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    org = harness.store.ensure_organization("Lab")
    cases = [
        ({"role": "root"}, "role"),
        ({"role": None}, "role"),
        ({"organization_ids": [org.id, 4242]}, "organization_ids"),
        ({"organization_ids": ["x"]}, "organization_ids"),
        ({"organization_ids": {}}, "organization_ids"),
        ({"organization_ids": [2**63]}, "organization_ids"),
        ({"secret": "mine"}, "secret"),
    ]
    for body, field in cases:
        reply = create(harness, admin, **body)
        assert reply.status == 400, (body, reply.json)
        assert list(reply.json) == [field], body
    unknown = create(harness, admin, role="admin", organization_ids=[4242])
    assert unknown.json == {"organization_ids": ['Invalid pk "4242" - object does not exist.']}
    missing = harness.call("POST", TOKENS, token=admin, json_body={})
    assert missing.json == {
        "name": ["This field is required."],
        "role": ["This field is required."],
    }
    assert len(harness.store.list_tokens()) == 1


def test_only_unscoped_admins_manage_tokens(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    org = harness.store.ensure_organization("Lab")
    token_id = create(harness, admin).json["id"]
    calls = [
        ("GET", TOKENS, None),
        ("POST", TOKENS, {"name": "escalate", "role": "admin"}),
        ("GET", f"{TOKENS}{token_id}/", None),
        ("DELETE", f"{TOKENS}{token_id}/", None),
    ]
    lower = [harness.token("viewer"), harness.token("operator")]
    scoped = harness.token("admin", orgs=[org.id], name="scoped-admin")
    for token in (*lower, scoped):
        for method, path, body in calls:
            reply = harness.call(method, path, token=token, json_body=body)
            assert reply.status == 403, (method, path, reply.json)
    for method, path, body in calls:
        assert harness.call(method, path, json_body=body).status == 401
    assert "escalate" not in [t.name for t in harness.store.list_tokens()]
    assert harness.store.get_token(token_id).revoked is False  # type: ignore[union-attr]


def test_unknown_and_huge_ids_are_404(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    for token_id in ("2", "9223372036854775807", "9223372036854775808", "9" * 30):
        for method in ("GET", "DELETE"):
            reply = harness.call(method, f"{TOKENS}{token_id}/", token=admin)
            assert reply.status == 404, (method, token_id, reply.status)


def test_the_list_pages(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    for i in range(3):
        assert create(harness, admin, name=f"t{i}").status == 201
    page = harness.call("GET", f"{TOKENS}?limit=2&offset=2", token=admin).json
    assert page["count"] == 4
    assert [t["name"] for t in page["results"]] == ["t1", "t2"]
    assert page["next"] is None
    assert page["previous"] == f"http://testserver{TOKENS}?limit=2"
    assert harness.call("GET", f"{TOKENS}?limit=x", token=admin).status == 400
