"""Operator accounts over the API (/api/v1/user/, api/users.py): admins (unscoped) create,
list, read, re-password, re-scope and disable the web UI's users; names, passwords, roles
and organizations are checked as the CLI checks them; no answer ever carries a password or
its hash; writes are audited as the caller. Also the store methods the routes use."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiharness import ApiHarness, Reply, cheap_passwords

from acs.accounts import name_problem
from acs.store import Conflict
from api.users import USER_NAME_PATTERN

API = "/api/v1"
USERS = f"{API}/user/"
PASSWORD = "correct horse battery"
NEW_PASSWORD = "another staple horse"
KEYS = {"id", "username", "role", "organization_ids", "created", "enabled"}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[ApiHarness]:
    harness = ApiHarness(tmp_path, passwords=cheap_passwords())
    yield harness
    harness.close()


def create(h: ApiHarness, token: str, **body: object) -> Reply:
    account = {"username": "alice", "password": PASSWORD, "role": "operator", **body}
    return h.call("POST", USERS, token=token, json_body=account)


def login(h: ApiHarness, name: str = "alice", password: str = PASSWORD) -> Reply:
    body = {"username": name, "password": password}
    return h.call("POST", f"{API}/auth/login/", json_body=body)


def cookie_of(reply: Reply) -> str:
    set_cookie = reply.header("set-cookie")
    assert set_cookie is not None
    return set_cookie.split(";")[0]


def session_get(h: ApiHarness, session: Reply, path: str) -> Reply:
    return h.call("GET", f"{API}{path}", headers={"Cookie": cookie_of(session)})


def no_hash(h: ApiHarness, *replies: Reply) -> None:
    hashes = [r["password_hash"] for r in h.store._all("SELECT password_hash FROM users")]
    for reply in replies:
        text = reply.raw.decode()
        assert "password" not in text and "argon2" not in text, text
        assert not any(hashed in text for hashed in hashes)
        assert PASSWORD not in text and NEW_PASSWORD not in text


def test_an_admin_creates_lists_and_reads_users_without_ever_seeing_a_hash(
    h: ApiHarness,
) -> None:
    admin = h.token("admin")
    org = h.store.ensure_organization("Lab")
    made = create(h, admin, organization_ids=[org.id, org.id])
    assert made.status == 201, made.json
    body = made.json
    assert set(body) == KEYS
    assert body["username"] == "alice" and body["role"] == "operator"
    assert body["organization_ids"] == [org.id] and body["enabled"] is True
    assert body["created"] == "2024-01-15T09:30:00Z"
    second = create(h, admin, username="bob", role="viewer")
    assert second.status == 201, second.json
    listed = h.call("GET", USERS, token=admin)
    assert listed.status == 200
    assert listed.json["count"] == 2
    assert [u["username"] for u in listed.json["results"]] == ["alice", "bob"]
    page = h.call("GET", f"{USERS}?limit=1&offset=1", token=admin)
    assert [u["username"] for u in page.json["results"]] == ["bob"]
    assert page.json["previous"] == f"http://testserver{USERS}?limit=1"
    one = h.call("GET", f"{USERS}{body['id']}/", token=admin)
    assert one.status == 200 and one.json == body
    no_hash(h, made, second, listed, page, one)
    # The account works: the password set through the API logs in.
    session = login(h)
    assert session.status == 200, session.json
    assert session.json["role"] == "operator"


def test_a_new_password_logs_in_the_old_one_fails_and_old_sessions_end(h: ApiHarness) -> None:
    admin = h.token("admin")
    user_id = create(h, admin).json["id"]
    session = login(h)
    assert session_get(h, session, "/auth/session/").status == 200
    changed = h.call(
        "PATCH", f"{USERS}{user_id}/", token=admin, json_body={"password": NEW_PASSWORD}
    )
    assert changed.status == 200, changed.json
    no_hash(h, changed)
    assert session_get(h, session, "/auth/session/").status == 401
    assert login(h, password=PASSWORD).status == 401
    assert login(h, password=NEW_PASSWORD).status == 200


def test_disabling_ends_sessions_and_logins_and_is_for_good(h: ApiHarness) -> None:
    admin = h.token("admin")
    user_id = create(h, admin).json["id"]
    session = login(h)
    url = f"{USERS}{user_id}/"
    disabled = h.call("PATCH", url, token=admin, json_body={"enabled": False})
    assert disabled.status == 200, disabled.json
    assert disabled.json["enabled"] is False
    assert session_get(h, session, "/auth/session/").status == 401
    assert login(h).status == 401
    # Still listed (there is no delete), and disabling again changes nothing.
    assert h.call("GET", url, token=admin).json["enabled"] is False
    assert h.call("PATCH", url, token=admin, json_body={"enabled": False}).status == 200
    for change in ({"enabled": True}, {"password": NEW_PASSWORD}, {"role": "admin"}):
        refused = h.call("PATCH", url, token=admin, json_body=change)
        assert refused.status == 409, change
    assert login(h, password=NEW_PASSWORD).status == 401
    assert h.call("DELETE", url, token=admin).status == 405
    # The name stays taken.
    assert create(h, admin).status == 409


def test_a_new_role_and_scope_apply_to_the_live_session(h: ApiHarness) -> None:
    admin = h.token("admin")
    org = h.store.ensure_organization("Lab")
    user_id = create(h, admin, role="viewer").json["id"]
    session = login(h)
    changed = h.call(
        "PATCH",
        f"{USERS}{user_id}/",
        token=admin,
        json_body={"role": "admin", "organization_ids": [org.id]},
    )
    assert changed.status == 200, changed.json
    assert (changed.json["role"], changed.json["organization_ids"]) == ("admin", [org.id])
    me = session_get(h, session, "/auth/session/").json
    assert (me["role"], me["organization_ids"]) == ("admin", [org.id])
    # Back to every organization; an empty body changes nothing.
    url = f"{USERS}{user_id}/"
    assert (
        h.call("PATCH", url, token=admin, json_body={"organization_ids": []}).json[
            "organization_ids"
        ]
        == []
    )
    assert (
        h.call("PATCH", url, token=admin, json_body={}).json == h.call("GET", url, token=admin).json
    )


def test_viewers_operators_and_scoped_admins_may_not_manage_users(h: ApiHarness) -> None:
    admin = h.token("admin")
    user_id = create(h, admin).json["id"]
    org = h.store.ensure_organization("Lab")
    calls = [
        ("GET", USERS, None),
        ("POST", USERS, {"username": "eve", "password": PASSWORD, "role": "admin"}),
        ("GET", f"{USERS}{user_id}/", None),
        ("PATCH", f"{USERS}{user_id}/", {"password": NEW_PASSWORD}),
    ]
    for token in (h.token("viewer"), h.token("operator"), h.token("admin", orgs=[org.id])):
        for method, path, body in calls:
            reply = h.call(method, path, token=token, json_body=body)
            assert reply.status == 403, (method, path, reply.json)
    for method, path, body in calls:
        assert h.call(method, path, json_body=body).status == 401
    assert h.store.get_user("eve") is None
    assert login(h).status == 200  # the password is unchanged


def test_a_user_session_admin_manages_users_with_csrf_and_is_the_audited_actor(
    h: ApiHarness,
) -> None:
    admin = h.token("admin")
    create(h, admin, username="root", role="admin")
    session = login(h, "root")
    headers = {"Cookie": cookie_of(session), "X-CSRFToken": session.json["csrf_token"]}
    body = {"username": "carol", "password": PASSWORD, "role": "viewer"}
    made = h.call("POST", USERS, json_body=body, headers=headers)
    assert made.status == 201, made.json
    no_csrf = h.call(
        "POST", USERS, json_body={**body, "username": "dave"}, headers={"Cookie": headers["Cookie"]}
    )
    assert no_csrf.status == 403
    audit = h.call("GET", f"{API}/audit/?action=user_created", token=admin).json["results"]
    assert [(e["actor"], e["detail"]["name"]) for e in audit] == [
        ("user:root", "carol"),
        ("admin-token", "root"),
    ]
    user_id = made.json["id"]
    h.call("PATCH", f"{USERS}{user_id}/", token=admin, json_body={"password": NEW_PASSWORD})
    h.call("PATCH", f"{USERS}{user_id}/", token=admin, json_body={"enabled": False})
    actions = [
        (e["actor"], e["action"])
        for e in h.call("GET", f"{API}/audit/", token=admin).json["results"]
    ]
    assert actions[:2] == [
        ("admin-token", "user_disabled"),
        ("admin-token", "user_password_changed"),
    ]
    assert all("argon2" not in str(e) for e in h.store.history(None))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "short"}, "password"),
        ({"password": "x" * 1025}, "password"),
        ({"password": None}, "password"),
        ({"password": 12345678}, "password"),
        ({"username": ""}, "username"),
        ({"username": "-alice"}, "username"),
        ({"username": "al ice"}, "username"),
        ({"username": "a" * 65}, "username"),
        ({"username": "user:alice"}, "username"),
        ({"role": "root"}, "role"),
        ({"role": None}, "role"),
        ({"organization_ids": [999]}, "organization_ids"),
        ({"organization_ids": "1"}, "organization_ids"),
        ({"organization_ids": [0]}, "organization_ids"),
        ({"organization_ids": [True]}, "organization_ids"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_creations_are_400_naming_the_field(
    h: ApiHarness, body: dict[str, object], field: str
) -> None:
    reply = create(h, h.token("admin"), **body)
    assert reply.status == 400, reply.json
    assert list(reply.json) == [field]
    assert isinstance(reply.json[field], list) and all(
        isinstance(m, str) for m in reply.json[field]
    )
    assert h.store.list_users() == []


def test_required_fields_and_the_checks_messages(h: ApiHarness) -> None:
    admin = h.token("admin")
    empty = h.call("POST", USERS, token=admin, json_body={})
    assert empty.status == 400
    assert empty.json == {
        "username": ["This field is required."],
        "password": ["This field is required."],
        "role": ["This field is required."],
    }
    bad = create(h, admin, username="-x", password="short")
    assert bad.json == {
        "username": [name_problem("-x")],
        "password": ["A password is 8 to 1024 characters."],
    }
    assert create(h, admin, organization_ids=[42]).json == {
        "organization_ids": ['Invalid pk "42" - object does not exist.']
    }


def test_bad_updates_are_400_and_change_nothing(h: ApiHarness) -> None:
    admin = h.token("admin")
    user_id = create(h, admin).json["id"]
    url = f"{USERS}{user_id}/"
    for body, field in (
        ({"password": "short"}, "password"),
        ({"role": "boss"}, "role"),
        ({"organization_ids": [77]}, "organization_ids"),
        ({"enabled": "maybe"}, "enabled"),
        ({"username": "renamed"}, None),  # read-only: ignored
        ({"password_hash": "x"}, "password_hash"),
    ):
        reply = h.call("PATCH", url, token=admin, json_body=body)
        if field is None:
            assert reply.status == 200 and reply.json["username"] == "alice"
            continue
        assert reply.status == 400, (body, reply.json)
        assert list(reply.json) == [field]
    user = h.store.get_user("alice")
    assert user is not None and (user.role, user.organization_ids) == ("operator", ())
    assert login(h).status == 200


def test_a_taken_name_is_409(h: ApiHarness) -> None:
    admin = h.token("admin")
    assert create(h, admin).status == 201
    again = create(h, admin, role="admin")
    assert again.status == 409
    assert again.json == {"detail": "A user with this name exists already."}
    assert create(h, admin, username="Alice").status == 201  # names are case-sensitive
    assert [u.name for u in h.store.list_users()] == ["alice", "Alice"]


def test_unknown_and_huge_ids_are_404(h: ApiHarness) -> None:
    admin = h.token("admin")
    create(h, admin)
    for user_id in ("2", "9223372036854775807", "9223372036854775808", "1" * 40):
        for method, body in (("GET", None), ("PATCH", {"enabled": False})):
            reply = h.call(method, f"{USERS}{user_id}/", token=admin, json_body=body)
            assert reply.status == 404, (method, user_id, reply.status)
    assert login(h).status == 200


def test_the_documented_name_pattern_is_name_problems_rule() -> None:
    pattern = re.compile(USER_NAME_PATTERN)
    for name in ("a", "A.b_c@d-e", "9", "a" * 64, "a" * 65, "", "-a", ".a", "a b", "ä", "a\n"):
        assert bool(pattern.fullmatch(name)) == (name_problem(name) is None), name


# --- the store ------------------------------------------------------------------------------


def test_store_pages_users_and_finds_them_by_id(h: ApiHarness) -> None:
    store, now = h.store, h.clock.seconds()
    alice = store.create_user("alice", "h1", "viewer", [], now=now)
    bob = store.create_user("bob", "h2", "admin", [], now=now)
    assert store.get_user_by_id(alice.id) == alice
    assert store.get_user_by_id(999) is None
    assert store.get_user_by_id("1") is None  # type: ignore[arg-type]
    assert store.users_page(limit=1, offset=0) == (2, [alice])
    assert store.users_page(limit=5, offset=1) == (2, [bob])
    store.disable_user("bob", now=now)
    total, found = store.users_page(limit=5, offset=0)
    assert total == 2 and found[1].disabled
    with pytest.raises(ValueError):
        store.users_page(limit=-1, offset=0)


def test_store_changes_a_users_role_and_scope_audited_as_the_actor(h: ApiHarness) -> None:
    store, now = h.store, h.clock.seconds()
    org = store.ensure_organization("Lab")
    store.create_user("alice", "h1", "viewer", [], now=now, actor="admin-token")
    assert store.set_user_access("alice", "operator", [org.id, org.id], now=now, actor="t")
    alice = store.get_user("alice")
    assert alice is not None and (alice.role, alice.organization_ids) == ("operator", (org.id,))
    assert not store.set_user_access("nobody", "viewer", [], now=now)
    for role, orgs in (("root", []), ("viewer", [999])):
        with pytest.raises(ValueError):
            store.set_user_access("alice", role, orgs, now=now)
    assert store.get_user("alice") == alice
    store.set_password("alice", "h2", now=now, actor="t")
    store.disable_user("alice", now=now, actor="t")
    with pytest.raises(Conflict):
        store.create_user("alice", "h3", "viewer", [], now=now)
    entries = [(e.actor, e.action) for e in store.history(None)]
    assert entries == [
        ("t", "user_disabled"),
        ("t", "user_password_changed"),
        ("t", "user_access_changed"),
        ("admin-token", "user_created"),
    ]
    # The CLI's writes keep being the ACS's own (acs user ...).
    store.create_user("bob", "h4", "viewer", [], now=now)
    assert store.history(None)[0].actor == "acs"
