"""``/user/`` (admin, a token or session without organization scope): the web UI's operator
accounts, as ``acs user`` manages them. Create with a ``username``, a ``password``, a
``role`` and optionally ``organization_ids`` (default: every organization); PATCH sets a new
``password``, a new ``role`` and/or ``organization_ids``, or ``"enabled": false``. A new
password and disabling both end the user's browser sessions; a new role or scope applies to
them at once. There is no DELETE: disabling is the removal (the account stays, disabled for
good, so its name and its audit entries keep meaning who it was). Password hashes are never
returned. Names and passwords are checked by :mod:`acs.accounts`, roles and organizations
as the store checks them; every write lands in the global audit log as the caller.

The representation and write bodies are declared here and documented inline (the ``auth``
tag), shared with ``/token/`` (:mod:`api.tokens`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from acs.accounts import MAX_PASSWORD, MIN_PASSWORD, name_problem, password_problem
from acs.store.models import ROLES, User
from api.base import (
    SQL_INT_MAX,
    Api,
    ApiError,
    ApiRequest,
    Result,
    conflict,
    json_int,
    not_found,
    route,
    store_errors,
)
from api.docs import CREATE, DETAIL, PAGE, PATH_PARAMETERS, READ, WRITE, Doc, path_param
from api.fields import REQUIRED, Boolean, Choice, Field, Form, Invalid, Mode, does_not_exist
from api.resources import paged, require_unscoped
from api.schema import JSON, Schema, boolean, integer, obj, page, string
from api.views import Out, when

# acs.accounts.name_problem's rule, as the pattern the document publishes (a test checks
# they agree).
USER_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
MAX_ORGANIZATIONS = 1000
TAG = "auth"

PATH_PARAMETERS["user_id"] = path_param(
    "id", integer(minimum=1, maximum=SQL_INT_MAX), "Operator account (user) id."
)


@dataclass(frozen=True, kw_only=True)
class UserName(Field):
    """A user name (:func:`acs.accounts.name_problem`)."""

    nullable: bool = False

    def parse(self, value: Any) -> str:
        problem = name_problem(value)
        if problem is not None:
            raise Invalid(problem)
        return str(value)

    def schema(self) -> Schema:
        text = string(pattern=USER_NAME_PATTERN, minLength=1, maxLength=64)
        return self._described(text)


@dataclass(frozen=True, kw_only=True)
class Password(Field):
    """A password to set (:func:`acs.accounts.password_problem`); never returned."""

    nullable: bool = False

    def parse(self, value: Any) -> str:
        problem = password_problem(value)
        if problem is not None:
            raise Invalid(problem)
        return str(value)

    def schema(self) -> Schema:
        text = string(minLength=MIN_PASSWORD, maxLength=MAX_PASSWORD, writeOnly=True)
        return self._described(text)


@dataclass(frozen=True, kw_only=True)
class OrganizationIds(Field):
    """Organization ids (whether each exists is :func:`read_access`'s question); empty:
    every organization. Stored sorted, without repeats, as the store keeps a scope."""

    nullable: bool = False
    default: Any = field(default_factory=list)

    def parse(self, value: Any) -> list[int]:
        if not isinstance(value, list):
            raise Invalid("Expected a list of organization ids.")
        if len(value) > MAX_ORGANIZATIONS:
            raise Invalid(f"Ensure this field has no more than {MAX_ORGANIZATIONS} elements.")
        ids = [json_int(item) for item in value]
        if any(i is None or not 0 < i <= SQL_INT_MAX for i in ids):
            raise Invalid("Expected a list of organization ids.")
        return sorted({i for i in ids if i is not None})

    def schema(self) -> Schema:
        items = integer(minimum=1, maximum=SQL_INT_MAX)
        array = {"type": "array", "items": items, "maxItems": MAX_ORGANIZATIONS}
        return self._described(array)


# The role is checked as the store checks it (acs.store.models.ROLES); it is declared as an
# extra property of the forms because no value of the shared field probes is a role.
ROLE = Choice(choices=ROLES)
ROLE_SCHEMA = string(enum=list(ROLES), description="What the account may do.")
ORGANIZATION_IDS = OrganizationIds(
    description="The organizations it may see and change (empty: every one).",
)


def read_access(api: Api, form: Form, body: Mapping[str, Any], mode: Mode) -> dict[str, Any]:
    """A body of ``form`` read (400 with every field error) with its ``role`` and
    ``organization_ids`` checked as :meth:`acs.store.db.Database._role_and_scope` checks
    them: one of the roles, organizations that exist."""
    values, errors = form.check(body, mode=mode)
    if "role" in body:
        try:
            values["role"] = ROLE.clean(body["role"])
        except Invalid as exc:
            errors["role"] = exc.messages
    elif mode == "create":
        errors["role"] = [REQUIRED]
    if "organization_ids" not in errors:
        missing = [o for o in values.get("organization_ids", ()) if not _organization(api, o)]
        if missing:
            errors["organization_ids"] = [does_not_exist(o) for o in missing[:10]]
    if errors:
        raise ApiError(400, errors)
    return values


def _organization(api: Api, org_id: int) -> bool:
    return api.store.get_organization(org_id) is not None


def request_body(form: Form, mode: Mode) -> Schema:
    """The JSON request body of ``form`` (documented inline: the form is not published)."""
    return {"required": True, "content": {JSON: {"schema": form.schema(mode=mode)}}}


def page_of(item: Schema) -> Schema:
    """The pagination envelope (api.schema.page) around inline ``item`` rows."""
    envelope = page("unused")
    envelope["properties"] = {
        **envelope["properties"],
        "results": {"type": "array", "items": item},
    }
    return envelope


def render(keys: Mapping[str, Out], row: Any) -> dict[str, Any]:
    return {key: out.of(key, row) for key, out in keys.items()}


def schema_of(keys: Mapping[str, Out], description: str) -> Schema:
    properties = {key: out.schema for key, out in keys.items()}
    return obj(properties, "*", additional=False, description=description)


_USER_KEYS: dict[str, Out] = {
    "id": Out(integer()),
    "username": Out(string(), "name"),
    "role": Out(ROLE_SCHEMA),
    "organization_ids": Out(
        {"type": "array", "items": integer(), "description": "Empty: every organization."}
    ),
    "created": when(),
    "enabled": Out(
        boolean(description="False once disabled: no login, no sessions, for good."),
        lambda user: not user.disabled,
    ),
}
USER_SCHEMA = schema_of(_USER_KEYS, "An operator account of the web UI (never its password).")


def user_json(user: User) -> dict[str, Any]:
    return render(_USER_KEYS, user)


USER_CREATE_FORM = Form(
    "UserCreate",
    {
        "username": UserName(required=True, description="The login name."),
        "password": Password(required=True, description="The password (8-1024 characters)."),
        "organization_ids": ORGANIZATION_IDS,
    },
    extra={"role": ROLE_SCHEMA},
    required_extra=("role",),
    components={},
)
USER_PATCH_FORM = Form(
    "UserPatch",
    {
        "password": Password(description="A new password: the user's sessions end."),
        "enabled": Boolean(description="false: disable the user for good (sessions end)."),
        "organization_ids": ORGANIZATION_IDS,
    },
    extra={"role": ROLE_SCHEMA},
    read_only=frozenset({"id", "username", "created"}),
    components={},
)


def _user(api: Api, req: ApiRequest, user_id: int) -> User:
    require_unscoped(req, "Managing operator accounts")
    user = api.store.get_user_by_id(user_id)
    if user is None:
        raise not_found("No user with this id.")
    return user


@route(
    "/user/",
    methods=("GET",),
    role="admin",
    doc=Doc(
        "list_users", "List the web UI's operator accounts", TAG, page_of(USER_SCHEMA),
        params=PAGE, errors=READ,
    ),
)  # fmt: skip
def list_users(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Managing operator accounts")
    return paged(
        req,
        lambda limit, offset: api.store.users_page(limit=limit, offset=offset),
        user_json,
    )


@route(
    "/user/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "create_user", "Create an operator account", TAG, USER_SCHEMA, 201,
        request_body=request_body(USER_CREATE_FORM, "create"), errors=CREATE,
        description="409 when the name is taken (disabled accounts keep theirs).",
    ),
)  # fmt: skip
async def create_user(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Managing operator accounts")
    body = req.json_object()
    values = await api.store.read(read_access, api, USER_CREATE_FORM, body, "create")
    name = values["username"]
    taken = "A user with this name exists already."
    if await api.store.read(api.store.get_user, name) is not None:  # before the hashing work
        raise conflict(taken)
    hashed = await api.appliance.threads(api.appliance.passwords.hash, values["password"])
    create = partial(
        api.store.create_user,
        name,
        hashed,
        values["role"],
        values["organization_ids"],
        now=api.now(),
        actor=req.principal.name,
    )
    with store_errors(conflict_detail=taken):
        user = await api.store.run(create)
    return 201, user_json(user)


@route(
    "/user/<int:user_id>/",
    methods=("GET",),
    role="admin",
    doc=Doc("get_user", "One operator account", TAG, USER_SCHEMA, errors=DETAIL),
)
def get_user(api: Api, req: ApiRequest, user_id: int) -> Result:
    return 200, user_json(_user(api, req, user_id))


@route(
    "/user/<int:user_id>/",
    methods=("PATCH",),
    role="admin",
    doc=Doc(
        "update_user", "Set an account's password, role or scope, or disable it", TAG,
        USER_SCHEMA, request_body=request_body(USER_PATCH_FORM, "update"),
        errors=(*WRITE, "Conflict"),
        description="A new password and `enabled: false` end the user's sessions; a new "
        "role or scope applies to them at once. There is no DELETE: disabling is the "
        "removal, and a disabled account cannot be changed or enabled again (409).",
    ),
)  # fmt: skip
async def update_user(api: Api, req: ApiRequest, user_id: int) -> Result:
    current, values = await api.store.read(_user_patch, api, req, user_id)
    hashed = None
    if "password" in values:
        hashed = await api.appliance.threads(api.appliance.passwords.hash, values["password"])
    with store_errors():
        return await api.store.run(_update_user, api, req, current, values, hashed)


def _user_patch(api: Api, req: ApiRequest, user_id: int) -> tuple[User, dict[str, Any]]:
    """The account and the checked changes (a unit of work: reads)."""
    current = _user(api, req, user_id)
    values = read_access(api, USER_PATCH_FORM, req.json_object(), "update")
    if current.disabled and (set(values) - {"enabled"} or values.get("enabled")):
        raise conflict("This user is disabled for good: create a new account instead.")
    return current, values


def _update_user(
    api: Api, req: ApiRequest, current: User, values: dict[str, Any], hashed: str | None
) -> Result:
    """Make the changes (a unit of work: one transaction) and answer with the account."""
    role = values.get("role", current.role)
    orgs = values.get("organization_ids", list(current.organization_ids))
    now, actor = api.now(), req.principal.name
    if (role, tuple(orgs)) != (current.role, current.organization_ids):
        api.store.set_user_access(current.name, role, orgs, now=now, actor=actor)
    if hashed is not None:
        api.store.set_password(current.name, hashed, now=now, actor=actor)
    if values.get("enabled") is False and not current.disabled:
        api.store.disable_user(current.name, now=now, actor=actor)
    return 200, user_json(_user(api, req, current.id))
