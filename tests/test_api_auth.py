"""The web UI's login (/api/v1/auth/): the session cookie, CSRF on writes, expiry enforced
by the server, logout, throttling of failed logins; bearer tokens unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiharness import ApiHarness, Reply, cheap_passwords
from treq.testing import StubTreq

from acs.accounts import LoginThrottle, name_problem, password_problem

API = "/api/v1"
PASSWORD = "correct horse battery"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[ApiHarness]:
    harness = ApiHarness(tmp_path, passwords=cheap_passwords())
    yield harness
    harness.close()


def user(h: ApiHarness, name: str = "alice", role: str = "operator", orgs: tuple[int, ...] = ()):
    hashed = h.appliance.passwords.hash(PASSWORD)
    return h.store.create_user(name, hashed, role, list(orgs), now=h.clock.seconds())


def T(h: ApiHarness) -> float:
    return float(h.clock.seconds())


def login(h: ApiHarness, name: str = "alice", password: str = PASSWORD, **headers: str) -> Reply:
    return h.call(
        "POST",
        f"{API}/auth/login/",
        json_body={"username": name, "password": password},
        headers=headers or None,
    )


def cookie_of(reply: Reply) -> str:
    set_cookie = reply.header("set-cookie")
    assert set_cookie is not None
    return set_cookie.split(";")[0]


def as_browser(h: ApiHarness, method: str, path: str, session: Reply, **options) -> Reply:
    headers = {"Cookie": cookie_of(session), **options.pop("headers", {})}
    return h.call(method, f"{API}{path}", headers=headers, **options)


def test_login_sets_an_httponly_samesite_cookie_with_the_ttl_and_answers_a_csrf_token(
    h: ApiHarness,
) -> None:
    user(h, role="viewer")
    reply = login(h)
    assert reply.status == 200, reply.json
    body = reply.json
    assert (body["username"], body["role"], body["organization_ids"]) == ("alice", "viewer", [])
    assert len(body["csrf_token"]) >= 32
    assert body["expires"] == "2024-01-15T17:30:00Z"  # T0 + 8 h
    attributes = {a.strip().split("=")[0].lower() for a in reply.header("set-cookie").split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    assert "Max-Age=28800" in reply.header("set-cookie")
    assert "SameSite=strict" in reply.header("set-cookie")
    name, _, value = cookie_of(reply).partition("=")
    assert name == "acs_session" and len(value) >= 32
    # The database keeps only a hash of the cookie's value.
    rows = h.store._all("SELECT key_hash FROM ui_sessions")
    assert [r["key_hash"] for r in rows] != [value] and len(rows) == 1


def test_the_cookie_authenticates_reads_and_writes_need_the_csrf_header(h: ApiHarness) -> None:
    user(h, role="admin")
    session = login(h)
    csrf = session.json["csrf_token"]
    assert as_browser(h, "GET", "/inventory_device/", session).status == 200
    body = {"name": "Lab"}
    for headers in ({}, {"X-CSRFToken": "wrong"}, {"X-CSRFToken": csrf[:-1]}):
        refused = as_browser(h, "POST", "/organization/", session, json_body=body, headers=headers)
        assert refused.status == 403, headers
        assert refused.json == {"detail": "CSRF Failed: CSRF token missing or incorrect."}
        assert h.store.organization_named("Lab") is None
    made = as_browser(
        h, "POST", "/organization/", session, json_body=body, headers={"X-CSRFToken": csrf}
    )
    assert made.status == 201, made.json


def test_the_users_role_applies_to_the_session(h: ApiHarness) -> None:
    user(h, role="operator")
    session = login(h)
    csrf = {"X-CSRFToken": session.json["csrf_token"]}
    made = as_browser(h, "POST", "/organization/", session, json_body={"name": "Lab"}, headers=csrf)
    assert made.status == 403
    assert made.json == {"detail": "This action needs the admin role."}


def test_writes_through_the_cookie_are_audited_as_the_user(h: ApiHarness) -> None:
    user(h, role="admin")
    session = login(h)
    csrf = {"X-CSRFToken": session.json["csrf_token"]}
    made = as_browser(h, "POST", "/organization/", session, json_body={"name": "Lab"}, headers=csrf)
    assert made.status == 201, made.json
    token = h.token("admin")
    audit = h.call("GET", f"{API}/audit/?action=organization_created", token=token).json["results"]
    assert [e["actor"] for e in audit] == ["user:alice"]


def test_bearer_tokens_work_unchanged_and_need_no_csrf_header(h: ApiHarness) -> None:
    token = h.token("admin")
    reply = h.call("POST", f"{API}/organization/", token=token, json_body={"name": "Lab"})
    assert reply.status == 201
    me = h.call("GET", f"{API}/auth/session/", token=token).json
    assert me == {
        "username": "admin-token",
        "role": "admin",
        "organization_ids": [],
        "csrf_token": None,
        "expires": None,
    }


def test_session_endpoint_gives_a_reloaded_page_its_user_and_csrf_token(h: ApiHarness) -> None:
    user(h)
    session = login(h)
    me = as_browser(h, "GET", "/auth/session/", session)
    assert me.status == 200
    assert me.json == session.json
    h.stub = StubTreq(
        h.appliance.api.resource()
    )  # a client without the cookie (StubTreq keeps one)
    assert h.call("GET", f"{API}/auth/session/").status == 401


def test_the_server_ends_a_session_at_its_ttl_whatever_the_browser_keeps(h: ApiHarness) -> None:
    user(h)
    session = login(h)
    h.clock.advance(8 * 3600 - 1)
    assert as_browser(h, "GET", "/inventory_device/", session).status == 200
    h.clock.advance(1)
    expired = as_browser(h, "GET", "/inventory_device/", session)
    assert expired.status == 401
    assert expired.json == {"detail": "Your session has ended; log in again."}


def test_logout_ends_the_session_server_side_and_clears_the_cookie(h: ApiHarness) -> None:
    user(h)
    session = login(h)
    csrf = {"X-CSRFToken": session.json["csrf_token"]}
    assert as_browser(h, "POST", "/auth/logout/", session).status == 403  # CSRF applies
    out = as_browser(h, "POST", "/auth/logout/", session, headers=csrf)
    assert out.status == 204
    assert "Max-Age=0" in out.header("set-cookie")
    # The old cookie, replayed (a stolen copy), no longer works.
    assert as_browser(h, "GET", "/inventory_device/", session).status == 401
    assert h.store._all("SELECT * FROM ui_sessions") == []


def test_wrong_unknown_and_disabled_logins_are_the_same_401(h: ApiHarness) -> None:
    user(h)
    user(h, "bob")
    h.store.disable_user("bob", now=h.clock.seconds())
    for name, password in (("alice", "wrong password"), ("nobody", PASSWORD), ("bob", PASSWORD)):
        reply = login(h, name, password)
        assert reply.status == 401, name
        assert reply.json == {"detail": "Invalid user name or password."}
        assert reply.header("set-cookie") is None


def test_more_than_five_failures_for_a_user_in_a_minute_is_429_with_retry_after(
    h: ApiHarness,
) -> None:
    user(h)
    for attempt in range(5):
        assert login(h, password=f"guess {attempt}").status == 401
    h.clock.advance(30)
    refused = login(h)  # even the right password: the name is locked for now
    assert refused.status == 429
    assert refused.header("retry-after") == "30"
    assert "Too many failed logins" in refused.json["detail"]
    h.clock.advance(30)
    assert login(h).status == 200


def test_more_than_five_failures_from_one_address_blocks_it_for_any_name(h: ApiHarness) -> None:
    user(h)
    for attempt in range(5):
        assert login(h, f"someone{attempt}", "wrong password").status == 401
    assert login(h).status == 429


def test_login_body_must_be_json_and_its_fields_bounded(h: ApiHarness) -> None:
    user(h)
    form = h.call(
        "POST",
        f"{API}/auth/login/",
        data=b"username=alice&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status == 415  # a cross-site form cannot log a browser in
    missing = h.call("POST", f"{API}/auth/login/", json_body={"username": "alice"})
    assert missing.status == 400 and "password" in missing.json
    huge = login(h, password="x" * 1025)
    assert huge.status == 400 and "password" in huge.json
    typed = h.call("POST", f"{API}/auth/login/", json_body={"username": 5, "password": 5})
    assert typed.status == 400


def test_a_scoped_viewer_session_sees_its_organizations_and_writes_nothing(h: ApiHarness) -> None:
    east = h.store.ensure_organization("East").id
    west = h.store.ensure_organization("West").id
    for serial, org in (("E1", east), ("W1", west)):
        h.store.create_device(
            serial_number=serial, name=serial, organization_id=org, now=T(h), actor="t"
        )
    user(h, "eve", role="viewer", orgs=(east,))
    session = login(h, "eve")
    listed = as_browser(h, "GET", "/inventory_device/", session).json["results"]
    assert [d["serial_number"] for d in listed] == ["E1"]
    device = listed[0]["id"]
    csrf = {"X-CSRFToken": session.json["csrf_token"]}
    write = as_browser(
        h, "PATCH", f"/inventory_device/{device}/", session, json_body={"name": "x"}, headers=csrf
    )
    assert write.status == 403


def test_a_new_password_or_disabling_ends_the_users_sessions(h: ApiHarness) -> None:
    user(h)
    first = login(h)
    h.store.set_password("alice", h.appliance.passwords.hash("another password"), now=T(h))
    assert as_browser(h, "GET", "/inventory_device/", first).status == 401
    assert login(h).status == 401
    second = login(h, password="another password")
    h.store.disable_user("alice", now=T(h))
    assert as_browser(h, "GET", "/inventory_device/", second).status == 401


def test_names_and_passwords_are_checked() -> None:
    assert name_problem("alice.o-b@lab_1") is None
    for bad in ("", "-x", "a b", "a/b", "a:b", "x" * 65, None, "ü"):
        assert name_problem(bad) is not None, bad
    assert password_problem("12345678") is None
    for bad in ("1234567", "x" * 1025, None):
        assert password_problem(bad) is not None


def test_passwords_verify_and_unknown_names_cost_a_hash_too() -> None:
    passwords = cheap_passwords()
    stored = passwords.hash("a password")
    assert stored.startswith("$argon2id$")
    assert passwords.verify(stored, "a password")
    assert not passwords.verify(stored, "another")
    assert not passwords.verify(None, "a password")
    assert not passwords.verify("not a hash", "a password")


def test_login_throttle_counts_a_sliding_minute_and_stays_bounded() -> None:
    throttle = LoginThrottle(limit=5, window=60.0, capacity=3)
    for t in range(5):
        assert throttle.retry_after(("u",), float(t)) is None
        throttle.failed(("u",), float(t))
    assert throttle.retry_after(("u",), 10.0) == 50  # the first failure leaves at 60
    assert throttle.retry_after(("u",), 60.0) is None  # one fewer than the limit now
    throttle.succeeded("u")
    assert throttle.retry_after(("u",), 61.0) is None
    for key in ("a", "b", "c", "d"):
        throttle.failed((key,), 100.0)
    assert len(throttle._failures) == 3


def test_a_user_keeps_at_most_twenty_sessions_the_oldest_ending_first(h: ApiHarness) -> None:
    user(h)
    first = login(h)
    for _ in range(19):
        h.clock.advance(1)
        login(h)
    assert as_browser(h, "GET", "/inventory_device/", first).status == 200
    h.clock.advance(1)
    login(h)
    assert as_browser(h, "GET", "/inventory_device/", first).status == 401
    assert len(h.store._all("SELECT * FROM ui_sessions")) == 20
