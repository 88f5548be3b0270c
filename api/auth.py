"""``/auth/``: the web UI's login. ``POST /auth/login/`` with a user's name and password
(``acs user create``) answers the user's role, scope and a CSRF token, and sets the
session cookie (HttpOnly, SameSite=Strict, ``[api] session_ttl``); every API route then
accepts that cookie, and writes made with it must send the CSRF token as ``X-CSRFToken``
(:func:`api.base.authenticate`). ``GET /auth/session/`` tells a reloaded page who it is
(and its CSRF token again); ``POST /auth/logout/`` ends the session server-side.

More than 5 failed logins for one user name or from one address within a minute: 429 with
``Retry-After`` (:class:`acs.accounts.LoginThrottle`). Passwords are checked in a worker
thread (Argon2 costs ~0.1 s of CPU), and an unknown name costs the same as a wrong
password. Login needs ``Content-Type: application/json``, which a cross-site HTML form
cannot send, so another site cannot log a browser in under its own account.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any

from acs.clock import iso
from acs.store.models import UiSession
from api.base import (
    SESSION_COOKIE,
    USER_ACTOR,
    Api,
    ApiError,
    ApiRequest,
    Result,
    browser_session,
    route,
)
from api.docs import Doc, error_response
from api.fields import Form, RawText
from api.schema import integer, nullable, obj, string

LOGIN_FORM = Form(
    "Login",
    {
        "username": RawText(
            required=True, nullable=False, max_length=64, description="The user's name."
        ),
        "password": RawText(
            required=True,
            nullable=False,
            max_length=1024,
            write_only=True,
            description="The password.",
        ),
    },
    components={"Login": "create"},
)
# Logout takes no arguments: an empty body, or none.
LOGOUT_FORM = Form("Logout", {}, components={"Logout": "update"})
SESSION_SCHEMA = obj(
    {
        "username": string(description="The user (or, with a bearer token, the token) name."),
        "role": string(enum=["viewer", "operator", "admin"]),
        "organization_ids": {"type": "array", "items": integer()},
        "csrf_token": nullable(string(description="Send as X-CSRFToken with every write.")),
        "expires": nullable(string(format="date-time")),
    },
    "*",
)


def _session_json(session: UiSession) -> dict[str, Any]:
    return {
        "username": session.user.name,
        "role": session.user.role,
        "organization_ids": list(session.user.organization_ids),
        "csrf_token": session.csrf,
        "expires": iso(session.expires),
    }


def _secure(api: Api, req: ApiRequest) -> bool:
    return bool(req.raw.isSecure()) or api.appliance.config.api.public_url.startswith("https:")


@route(
    "/auth/login/",
    methods=("POST",),
    auth=False,
    doc=Doc(
        "login", "Log in to the web UI: sets the session cookie", "auth", SESSION_SCHEMA,
        body="Login", errors=("BadRequest", "TooLarge"),
        responses={
            "401": error_response("Wrong user name or password, or a disabled user."),
            "415": error_response("The body is not application/json."),
            "429": {
                **error_response("More than 5 failed logins for the name or from the "
                                 "address within a minute."),
                "headers": {"Retry-After": {"schema": integer(minimum=1)}},
            },
        },
    ),
)  # fmt: skip
async def login(api: Api, req: ApiRequest) -> Result:
    kind = (req.raw.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if kind != b"application/json":
        raise ApiError(415, {"detail": "Send the login as application/json."})
    values = LOGIN_FORM.read(req.json_object(), mode="create")
    name, password = values["username"], values["password"]
    source = getattr(req.raw.getClientAddress(), "host", None) or "?"
    keys = (f"user {name}", f"address {source}")
    throttle = api.login_throttle
    wait = throttle.retry_after(keys, api.now())
    if wait is not None:
        raise ApiError(
            429,
            {"detail": f"Too many failed logins. Try again in {wait} seconds."},
            {"Retry-After": str(wait)},
        )
    stored = await api.store.read(api.store.password_hash, name)
    ok = await api.appliance.threads(api.appliance.passwords.verify, stored, password)
    user = await api.store.read(api.store.get_user, name) if ok else None
    if user is None or user.disabled:
        throttle.failed(keys, api.now())
        api.log.info("web UI login failed for {name!r} from {source}", name=name, source=source)
        raise ApiError(401, {"detail": "Invalid user name or password."})
    throttle.succeeded(keys[0])
    key, now = secrets.token_urlsafe(32), api.now()
    ttl = api.appliance.config.api.session_ttl
    csrf = secrets.token_urlsafe(32)
    session = await api.store.run(
        partial(api.store.create_ui_session, user, key, csrf, now=now, expires=now + ttl)
    )
    req.raw.addCookie(
        SESSION_COOKIE,
        key.encode(),
        path=b"/",
        max_age=str(ttl).encode(),
        httpOnly=True,
        sameSite="strict",
        secure=_secure(api, req) or None,
    )
    return 200, _session_json(session)


@route(
    "/auth/session/",
    methods=("GET",),
    doc=Doc(
        "current_session", "Who is calling: the session's user and CSRF token", "auth",
        SESSION_SCHEMA,
    ),
)  # fmt: skip
def current_session(api: Api, req: ApiRequest) -> Result:
    session = browser_session(api, req.raw)
    if session is not None:
        return 200, _session_json(session)
    principal = req.principal  # a bearer token
    return 200, {
        "username": principal.name,
        "role": principal.role,
        "organization_ids": list(principal.organization_ids),
        "csrf_token": None,
        "expires": None,
    }


@route(
    "/auth/logout/",
    methods=("POST",),
    doc=Doc(
        "logout", "End the web UI session (server-side) and clear its cookie", "auth", None,
        204, body="Logout", body_required=False, errors=("BadRequest",),
        description="With a bearer token there is no session: nothing happens (a token "
        "is revoked with `acs token revoke`).",
    ),
)  # fmt: skip
def logout(api: Api, req: ApiRequest) -> Result:
    LOGOUT_FORM.read(req.json_object(optional=True), mode="update")
    if not req.principal.name.startswith(USER_ACTOR):
        return 204, None
    cookie = req.raw.getCookie(SESSION_COOKIE) or b""
    api.store.end_ui_session(cookie.decode("ascii", "replace"), now=api.now())
    req.raw.addCookie(
        SESSION_COOKIE, b"", path=b"/", max_age=b"0", httpOnly=True, sameSite="strict"
    )
    return 204, None
