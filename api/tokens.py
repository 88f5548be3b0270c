"""``/token/`` (admin, a token or session without organization scope): the REST API's bearer
tokens, as ``acs token`` manages them. Create with a ``name`` (recorded as the actor of what
the token writes; not ``acs``, ``cpe`` nor ``user:...``, the store's rule), a ``role`` and
optionally ``organization_ids`` (default: every organization): the answer shows the secret,
as ``token``, this once; the store keeps only its hash, and no other answer carries either.
DELETE revokes (the row stays, ``revoked: true``; a revoked token answers 401 at once).
Creations and revocations land in the global audit log as the caller.
"""

from __future__ import annotations

from typing import Any

from acs.store.models import ApiToken
from api.base import (
    SQL_INT_MAX,
    Api,
    ApiRequest,
    Result,
    field_error,
    not_found,
    route,
    store_errors,
)
from api.docs import CREATE, DETAIL, PAGE, PATH_PARAMETERS, READ, Doc, path_param
from api.fields import Form, Text
from api.resources import paged, require_unscoped
from api.schema import boolean, integer, string
from api.users import (
    ORGANIZATION_IDS,
    ROLE_SCHEMA,
    TAG,
    page_of,
    read_access,
    render,
    request_body,
    schema_of,
)
from api.views import Out, when

PATH_PARAMETERS["token_id"] = path_param(
    "id", integer(minimum=1, maximum=SQL_INT_MAX), "API token id."
)

_TOKEN_KEYS: dict[str, Out] = {
    "id": Out(integer()),
    "name": Out(string(description="Recorded as the actor of the token's writes.")),
    "role": Out(ROLE_SCHEMA),
    "organization_ids": Out(
        {"type": "array", "items": integer(), "description": "Empty: every organization."}
    ),
    "created": when(),
    "revoked": Out(boolean(description="True once revoked: the token no longer works.")),
}
TOKEN_SCHEMA = schema_of(_TOKEN_KEYS, "An API token (never its secret nor the secret's hash).")
_CREATED_KEYS: dict[str, Out] = {
    **_TOKEN_KEYS,
    "token": Out(
        string(description="The secret, shown this once: send 'Authorization: Bearer <token>'.")
    ),
}
TOKEN_CREATED_SCHEMA = schema_of(_CREATED_KEYS, "A new API token, with its secret.")


def token_json(token: ApiToken) -> dict[str, Any]:
    return render(_TOKEN_KEYS, token)


def _created_json(token: ApiToken, secret: str) -> dict[str, Any]:
    row = token_json(token)
    row["token"] = secret
    return row


TOKEN_FORM = Form(
    "TokenCreate",
    {
        "name": Text(
            required=True,
            strip=True,
            description="Recorded as the actor; not 'acs', 'cpe' nor 'user:...'.",
        ),
        "organization_ids": ORGANIZATION_IDS,
    },
    extra={"role": ROLE_SCHEMA},
    required_extra=("role",),
    components={},
)


def _sentence(message: str) -> str:
    text = message[:1].upper() + message[1:]
    return text if text.endswith(".") else text + "."


def _token(api: Api, req: ApiRequest, token_id: int) -> ApiToken:
    require_unscoped(req, "Managing API tokens")
    token = api.store.get_token(token_id)
    if token is None:
        raise not_found("No token with this id.")
    return token


@route(
    "/token/",
    methods=("GET",),
    role="admin",
    doc=Doc(
        "list_tokens", "List the API tokens (never their secrets)", TAG,
        page_of(TOKEN_SCHEMA), params=PAGE, errors=READ,
    ),
)  # fmt: skip
def list_tokens(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Managing API tokens")
    tokens = api.store.list_tokens()
    return paged(
        req, lambda limit, offset: (len(tokens), tokens[offset : offset + limit]), token_json
    )


@route(
    "/token/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "create_token", "Create an API token: its secret is shown this once", TAG,
        TOKEN_CREATED_SCHEMA, 201, request_body=request_body(TOKEN_FORM, "create"),
        errors=CREATE,
    ),
)  # fmt: skip
def create_token(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Managing API tokens")
    body = req.json_object()
    now, actor = api.now(), req.principal.name
    # One transaction: the organizations checked are those the token is stored with.
    with store_errors(), api.store.transaction():
        values = read_access(api, TOKEN_FORM, body, "create")
        try:
            token, secret = api.store.create_token(
                values["name"], values["role"], values["organization_ids"], now=now
            )
        except ValueError as exc:  # role and scope are checked: the store refuses the name
            raise field_error("name", _sentence(str(exc))) from None
        detail = {
            "id": token.id,
            "name": token.name,
            "role": token.role,
            "organization_ids": list(token.organization_ids),
        }
        api.store.add_history(None, "token_created", detail, now=now, actor=actor)
    return 201, _created_json(token, secret)


@route(
    "/token/<int:token_id>/",
    methods=("GET",),
    role="admin",
    doc=Doc("get_token", "One API token (never its secret)", TAG, TOKEN_SCHEMA, errors=DETAIL),
)
def get_token(api: Api, req: ApiRequest, token_id: int) -> Result:
    return 200, token_json(_token(api, req, token_id))


@route(
    "/token/<int:token_id>/",
    methods=("DELETE",),
    role="admin",
    doc=Doc(
        "revoke_token", "Revoke an API token", TAG, None, 204, errors=("NotFound",),
        description="The token answers 401 from now on; revoking it again changes nothing.",
    ),
)  # fmt: skip
def revoke_token(api: Api, req: ApiRequest, token_id: int) -> Result:
    token = _token(api, req, token_id)
    now = api.now()
    with api.store.transaction():
        if api.store.revoke_token(token.id):
            detail = {"id": token.id, "name": token.name}
            api.store.add_history(None, "token_revoked", detail, now=now, actor=req.principal.name)
    return 204, None
