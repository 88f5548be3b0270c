"""The REST layer's foundation: routing, auth and roles, errors, bodies, pagination.

Every API route is declared with :func:`route`, which authenticates the caller (a bearer
token, or the web UI's session cookie plus, for writes, its CSRF header), enforces the
route's minimum role, turns :class:`ApiError` into a DRF-style JSON error, and serialises
what the handler returns. Handlers receive the :class:`Api` (the appliance's services) and
an :class:`ApiRequest` (the Twisted request plus the caller's :class:`Principal`); they
return ``(status, body)`` or a Deferred/coroutine of it. Conventions are those of
spec/inventory-api.md section 1.

A plain (not ``async``) handler, with the authentication before it, is a unit of work of the
store (`Store.read` for GET/HEAD/OPTIONS, else `Store.run`: one transaction, undone whole by
an error): on PostgreSQL it runs in the store's pool, not on the reactor, so it touches the
store and the request's headers and body but not the reactor (what must follow the commit
goes through `Store.after_commit`, as `TaskEngine.wake` does). An ``async`` handler runs on
the reactor thread, to await what the reactor does (a password hash in a thread, a task's
end, an upload).
"""

from __future__ import annotations

import hmac
import inspect
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlencode

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter

from acs.accounts import LoginThrottle, Passwords
from acs.authguard import AuthThrottle
from acs.clock import Reactor
from acs.config import Config
from acs.connreq import ConnectionRequester
from acs.files import FileStorage, ToThread
from acs.metrics import Metrics
from acs.store import Conflict, Store
from acs.store import NotFound as NoSuchRow
from acs.store.health import (
    STORAGE_FULL_RETRY_AFTER,
    STORAGE_UNAVAILABLE_RETRY_AFTER,
    is_storage_full,
    is_storage_unavailable,
)
from acs.store.models import USER_ACTOR, ApiToken, Device, Organization, UiSession, User
from acs.tasks import TaskEngine

if TYPE_CHECKING:
    from api.docs import Doc

# SQLite integers are signed 64-bit: a larger number names no row and cannot even be bound.
SQL_INT_MAX = 2**63 - 1
# ASCII only: str.isdigit() and \d accept "²" and "٣" (and int() reads the latter as 3).
_DECIMAL = re.compile(r"[+-]?[0-9]{1,19}")
# A coordinate as text: a plain decimal. Not Decimal()'s syntax, which also takes exponents,
# blanks and underscores ("1e1", " 5", "4_0"), none of which the OpenAPI document can promise.
_COORDINATE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")

API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
ROLES = ("viewer", "operator", "admin")
# The web UI's session: an HttpOnly cookie, and for writes the CSRF token the login gave.
SESSION_COOKIE = b"acs_session"
CSRF_HEADER = b"x-csrftoken"
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})

log = Logger(namespace="api")

Body = Any
Result = tuple[int, Body]


class CwmpView(Protocol):
    """What the API reads of the CWMP listener (:class:`acs.cwmp_http.CwmpResource`)."""

    auth_throttle: AuthThrottle

    def in_session(self, device_id: int) -> bool: ...

    def active_sessions(self) -> int: ...


class ApplianceView(Protocol):
    """What the API needs from :class:`acs.service.Appliance`: the domain services, and of
    the other listeners only what :class:`CwmpView` says."""

    config: Config
    node: str
    store: Store
    tasks: TaskEngine
    connreq: ConnectionRequester
    storage: FileStorage
    reactor: Reactor
    api_auth_throttle: AuthThrottle
    passwords: Passwords
    threads: ToThread
    metrics: Metrics
    default_organization: Organization
    events: Any  # api.events.EventHub (which imports this module)

    @property
    def cwmp(self) -> CwmpView: ...

    def listening(self) -> Mapping[str, Any]: ...


# Query parameters that may be given more than once (``?tag=a&tag=b``: both must match).
REPEATABLE = frozenset({"tag", "id"})


class ApiError(Exception):
    """An HTTP error with a DRF-style body: ``{"detail": ...}`` or ``{"field": [msgs]}``."""

    def __init__(self, status: int, body: Body, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def bad_request(detail: str) -> ApiError:
    return ApiError(400, {"detail": detail})


def field_error(field: str, message: str, status: int = 400) -> ApiError:
    return ApiError(status, {field: [message]})


def not_found(what: str = "Not found.") -> ApiError:
    return ApiError(404, {"detail": what})


def forbidden(detail: str = "You do not have permission to perform this action.") -> ApiError:
    return ApiError(403, {"detail": detail})


@contextmanager
def store_errors(
    *, conflict_detail: str | None = None, not_found_detail: str | None = None
) -> Iterator[None]:
    """Store exceptions -> API errors: Conflict 409, NotFound 404, ValueError 400 (the
    store's own checks, which validation should have caught); the store's message unless
    the caller words it for its resource."""
    try:
        yield
    except Conflict as exc:
        raise conflict(conflict_detail or str(exc)) from None
    except NoSuchRow as exc:
        raise not_found(not_found_detail or str(exc)) from None
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def conflict(detail: str) -> ApiError:
    return ApiError(409, {"detail": detail})


def _handler_failed(request: Request, name: str, failure: Failure) -> bytes:
    """The answer to a handler's unexpected exception: 503 when the database or the files
    directory was full (nothing was written; the client may try again once space has been
    freed) or the database server cannot be reached, else 500."""
    if is_storage_full(failure.value):
        log.warn("API handler {name}: storage full, write refused", name=name)
        return respond(
            request,
            503,
            {"detail": "Storage is full; the write was not made."},
            {"Retry-After": str(STORAGE_FULL_RETRY_AFTER)},
        )
    if is_storage_unavailable(failure.value):
        log.warn("API handler {name}: {error}", name=name, error=failure.value)
        return respond(
            request,
            503,
            {"detail": "The database cannot be reached; try again later."},
            {"Retry-After": str(STORAGE_UNAVAILABLE_RETRY_AFTER)},
        )
    log.failure("API handler {name} failed", failure, name=name)
    return respond(request, 500, {"detail": "Internal server error."})


# --- numbers -------------------------------------------------------------------------------


def parse_decimal(text: str) -> int | None:
    """An ASCII decimal integer SQLite can hold (surrounding blanks allowed), else None."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    number = int(text)
    return number if -SQL_INT_MAX - 1 <= number <= SQL_INT_MAX else None


def _digits_at_most(limit: int) -> str:
    """A regex of the ASCII decimals from 0 to ``limit`` (leading zeros allowed)."""
    text = str(limit)
    options = [f"[0-9]{{1,{len(text) - 1}}}"]
    for i, digit in enumerate(text):
        if digit != "0":
            rest = len(text) - i - 1
            options.append(f"{text[:i]}[0-{int(digit) - 1}][0-9]{{{rest}}}")
    options.append(text)
    return "|".join(options)


class _IdConverter(BaseConverter):
    """``<int:...>`` in every route: ASCII digits naming a possible row, else no match (404).

    The bound is in the regex, not in ``to_python``: a rule whose converter refuses a value
    is skipped after werkzeug has noted the other rules' methods for the same path, so an id
    past SQLite's integers got 405 for DELETE/PUT/PATCH/POST instead of 404."""

    regex = f"(?:{_digits_at_most(SQL_INT_MAX)})"
    part_isolating = True

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


def json_int(value: Any) -> int | None:
    """A JSON integer as an int: also ``180.0`` (JSON has one number type, and JSON Schema's
    ``integer`` is any number with a zero fraction), never a bool; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) else None


def parse_coordinate(value: Any, limit: int, max_length: int) -> str | None:
    """A latitude/longitude in -limit..limit as the text stored: a JSON number, or a plain
    decimal of at most ``max_length`` characters; None for null or ``""``. ValueError with
    the DRF-style message otherwise."""
    if value is None or value == "":
        return None
    number: Decimal | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value):
            number = Decimal(repr(value))
    elif isinstance(value, str) and len(value) <= max_length and _COORDINATE.fullmatch(value):
        number = Decimal(value)
    if number is None:
        raise ValueError("A valid number is required.")
    if not -limit <= number <= limit:
        raise ValueError(f"Ensure this value is between -{limit} and {limit}.")
    return format(number, "f")


# --- time ----------------------------------------------------------------------------------


def parse_datetime(value: str) -> float | None:
    """``2000-01-01``, ``2000-01-01 00:01:00``, ``2000-01-01T00:01:00``, with or without an
    offset or ``Z``; naive means UTC. None when unparsable."""
    text = value.strip()
    if not text:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# --- principal ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a token's or a logged-in user's name (the actor of what
    it writes), role and organization scope (empty: every organization)."""

    name: str
    role: str
    organization_ids: tuple[int, ...] = ()

    @classmethod
    def of_token(cls, token: ApiToken) -> Principal:
        return cls(token.name, token.role, token.organization_ids)

    @classmethod
    def of_user(cls, user: User) -> Principal:
        """A browser session's user, as ``user:<name>`` (token names cannot say that)."""
        return cls(f"{USER_ACTOR}{user.name}", user.role, user.organization_ids)

    def has_role(self, minimum: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(minimum)

    @property
    def scope(self) -> tuple[int, ...] | None:
        """Organization ids the caller may see; None = every organization."""
        return self.organization_ids or None

    def may_see(self, organization_id: int) -> bool:
        scope = self.scope
        return scope is None or organization_id in scope

    def check_organization(self, organization_id: int) -> None:
        if not self.may_see(organization_id):
            raise forbidden("Organization outside the scope of this token.")


# --- request ------------------------------------------------------------------------------


class ApiRequest:
    """A Twisted request seen through the API's conventions."""

    def __init__(
        self, request: Request, principal: Principal | None, *, public_url: str = ""
    ) -> None:
        self.raw = request
        self._principal = principal
        self._public_url = public_url.rstrip("/")

    @property
    def principal(self) -> Principal:
        if self._principal is None:  # only routes declared with auth=False lack one
            raise ApiError(401, {"detail": "Authentication credentials were not provided."})
        return self._principal

    @property
    def method(self) -> str:
        return self.raw.method.decode("ascii", "replace")

    def query_lists(self) -> dict[str, list[str]]:
        """Every query parameter with every value given, decoded as UTF-8."""
        return {
            key.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
            for key, values in (self.raw.args or {}).items()
        }

    def query(self) -> dict[str, str]:
        """Query parameters decoded as UTF-8; one given twice is a 400 (which one would
        count is a guess: a client's mistake, or an attempt to slip one past a check),
        except those in REPEATABLE (their first value here; ``query_lists`` has all)."""
        out: dict[str, str] = {}
        for name, values in self.query_lists().items():
            if len(values) > 1 and name not in REPEATABLE:
                raise field_error(name[:100], "Give this query parameter once.")
            if values:
                out[name] = values[0]
        return out

    def query_bool(self, name: str, *, default: bool = False) -> bool:
        value = self.query().get(name)
        if value is None:
            return default
        parsed = parse_bool(value)
        if parsed is None:
            raise field_error(name, f"Must be a boolean (true/false/1/0), not {value!r}.")
        return parsed

    def query_int(
        self, name: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.query().get(name)
        if value is None or value == "":
            return None
        number = parse_decimal(value)
        if number is None:
            raise field_error(name, f"A valid integer is required, not {value[:40]!r}.")
        if minimum is not None and number < minimum:
            raise field_error(name, f"Ensure this value is greater than or equal to {minimum}.")
        if maximum is not None and number > maximum:
            raise field_error(name, f"Ensure this value is less than or equal to {maximum}.")
        return number

    def json_object(self, *, optional: bool = False) -> dict[str, Any]:
        """The body as a JSON object: 413 over 1 MiB, 400 if malformed or not an object;
        ``optional``: no body at all is ``{}``."""
        content = self.raw.content
        if content is not None:
            content.seek(0)
        data = content.read(MAX_BODY_BYTES + 1) if content is not None else b""
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(413, {"detail": "Request body exceeds 1 MiB."})
        if not data.strip():
            if optional:
                return {}
            raise bad_request("A JSON object body is required.")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"JSON parse error: {exc}") from None
        except RecursionError:
            raise bad_request("JSON parse error: nested too deeply.") from None
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object.")
        return body

    def base_url(self) -> str:
        """``scheme://host[:port]`` of the links the API writes: ``[api] public_url``, else
        the local address this connection reached. Never the Host header: a client could
        make the API hand other clients links to anywhere."""
        if self._public_url:
            return self._public_url
        scheme = "https" if self.raw.isSecure() else "http"
        addr = self.raw.getHost()
        host = str(getattr(addr, "host", "127.0.0.1"))
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{getattr(addr, 'port', '')}"

    def page_params(self) -> tuple[int, int]:
        """``limit`` (default 20, capped at 100) and ``offset`` (default 0); 400 if invalid."""
        limit = self.query_int("limit", minimum=0)
        offset = self.query_int("offset", minimum=0) or 0
        if not limit:  # absent or 0: the default, as DRF's LimitOffsetPagination does
            limit = DEFAULT_LIMIT
        return min(limit, MAX_LIMIT), offset

    def page(self, count: int, results: list[Any], limit: int, offset: int) -> dict[str, Any]:
        """DRF pagination: absolute next/previous URLs keeping every other parameter."""
        path = self.raw.path.decode("utf-8", "replace")
        self.query()  # a parameter given twice is refused before any link repeats it
        base = {k: v for k, v in self.query_lists().items() if k not in ("limit", "offset")}

        def link(new_offset: int) -> str:
            params = dict(base, limit=[str(limit)], offset=[str(new_offset)])
            if new_offset == 0:
                del params["offset"]
            return f"{self.base_url()}{path}?{urlencode(sorted(params.items()), doseq=True)}"

        nxt = link(offset + limit) if offset + limit < count else None
        prev = link(max(offset - limit, 0)) if offset > 0 else None
        return {"count": count, "next": nxt, "previous": prev, "results": results}


def parse_bool(value: Any) -> bool | None:
    """true/false, 1/0 in any case (also JSON booleans); None when it is neither."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    return None


# --- the app ------------------------------------------------------------------------------


class Api:
    """The API's routes bound to one appliance; handlers get this as their first argument."""

    app = Klein()
    # Before any route is declared: rules pick their converters when they are added.
    app.url_map.converters["int"] = _IdConverter
    log = Logger(namespace="api")

    def __init__(self, appliance: ApplianceView) -> None:
        self.appliance = appliance
        self.store: Store = appliance.store
        self.auth_throttle = appliance.api_auth_throttle
        self.login_throttle = LoginThrottle()

    @property
    def tasks(self) -> TaskEngine:
        return self.appliance.tasks

    def now(self) -> float:
        return float(self.appliance.reactor.seconds())

    def device(self, req: ApiRequest, device_id: int) -> Device:
        """The device with this id: 404 if unknown, 403 outside the caller's scope."""
        device = self.store.get_device(device_id)
        if device is None:
            raise not_found("No device with this id.")
        req.principal.check_organization(device.organization_id)
        return device

    def device_by_serial(self, req: ApiRequest, serial: str) -> Device:
        """The device whose serial_number is ``serial`` (case-sensitive): 404 / 403 likewise."""
        device = self.store.get_device_by_serial_number(serial)
        if device is None:
            raise not_found("No device with this serial number.")
        req.principal.check_organization(device.organization_id)
        return device


@dataclass(frozen=True)
class RawBody:
    """An answer body that is not JSON (``/metrics``'s text exposition format)."""

    content: bytes
    content_type: bytes


def respond(request: Request, status: int, body: Body, headers: Mapping[str, str] = {}) -> bytes:
    request.setResponseCode(status)
    for name, value in headers.items():
        request.setHeader(name.encode(), value.encode())
    if status == 204 or body is None:
        return b""
    if isinstance(body, RawBody):
        request.setHeader(b"Content-Type", body.content_type)
        request.setHeader(b"Cache-Control", b"no-store")
        return body.content
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body).encode("utf-8")


def authenticate(api: Api, request: Request) -> Principal:
    """A bearer token, else the web UI's session cookie (whose writes must carry the
    session's CSRF token in ``X-CSRFToken``)."""
    challenge = {"WWW-Authenticate": "Bearer"}
    source = _client_host(request)
    wait = api.auth_throttle.retry_after(source, api.now())
    if wait is not None:
        raise ApiError(
            429,
            {"detail": f"Request was throttled. Expected available in {wait} seconds."},
            {"Retry-After": str(wait)},
        )
    header = request.getHeader(b"authorization")
    if not header:
        if request.getCookie(SESSION_COOKIE):
            return _session_principal(api, request, source)
        raise ApiError(401, {"detail": "Authentication credentials were not provided."}, challenge)
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, {"detail": "Use 'Authorization: Bearer <token>'."}, challenge)
    row = api.store.verify_token(token.strip())
    if row is None:
        api.auth_throttle.failed(source, api.now(), f"invalid or revoked token from {source}")
        raise ApiError(401, {"detail": "Invalid or revoked token."}, challenge)
    api.auth_throttle.succeeded(source)
    return Principal.of_token(row)


def browser_session(api: Api, request: Request) -> UiSession | None:
    """The live web UI session the request's cookie names, if any."""
    cookie = request.getCookie(SESSION_COOKIE)
    if not cookie:
        return None
    return api.store.ui_session(cookie.decode("ascii", "replace"), now=api.now())


def _session_principal(api: Api, request: Request, source: str | None) -> Principal:
    session = browser_session(api, request)
    if session is None:
        api.auth_throttle.failed(source, api.now(), f"unknown or expired session from {source}")
        raise ApiError(401, {"detail": "Your session has ended; log in again."})
    api.auth_throttle.succeeded(source)
    if request.method not in SAFE_METHODS:
        sent = request.getHeader(CSRF_HEADER) or b""
        if not hmac.compare_digest(sent, session.csrf.encode()):
            raise forbidden("CSRF Failed: CSRF token missing or incorrect.")
    return Principal.of_user(session.user)


def _client_host(request: Request) -> str | None:
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) else None


Handler = Callable[..., Any]


@dataclass(frozen=True)
class RouteInfo:
    """A declared route, for the OpenAPI document: its werkzeug rule (``<int:device_id>``),
    methods, minimum role (None: no token) and the description of each method."""

    rule: str
    methods: tuple[str, ...]
    role: str | None
    docs: Mapping[str, Doc]


ROUTES: list[RouteInfo] = []


def route(
    path: str,
    *,
    methods: tuple[str, ...],
    doc: Doc | Mapping[str, Doc],
    role: str = "viewer",
    auth: bool = True,
    prefix: str = API_PREFIX,
) -> Callable[[Handler], Handler]:
    """Declare an API route under ``prefix`` (``/api/v1``; ``""`` for ``/healthz`` and
    ``/metrics`` at the root). ``path`` starts with ``/`` and ends with ``/`` for resources;
    served with and without the trailing slash. ``auth=False``: no token needed. ``doc``
    describes the operation (one per method, keyed by method, when they differ); HEAD is
    GET's."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    documented = [m for m in methods if m != "HEAD"]
    docs = dict(doc) if isinstance(doc, Mapping) else {m: doc for m in documented}
    if sorted(docs) != sorted(documented):
        raise ValueError(f"{path}: documented methods {sorted(docs)} != {sorted(documented)}")
    taken = [m for info in ROUTES if info.rule == prefix + path for m in info.methods]
    if set(taken) & set(documented):
        raise ValueError(f"{path}: {sorted(set(taken) & set(documented))} declared twice")
    ROUTES.append(RouteInfo(prefix + path, tuple(documented), role if auth else None, docs))

    def decorate(handler: Handler) -> Handler:
        name = handler.__name__
        on_reactor = inspect.iscoroutinefunction(handler)

        def admitted(api: Api, request: Request) -> ApiRequest:
            principal = authenticate(api, request) if auth else None
            if principal is not None and not principal.has_role(role):
                raise forbidden(f"This action needs the {role} role.")
            return ApiRequest(request, principal, public_url=api.appliance.config.api.public_url)

        def handled(api: Api, request: Request, kwargs: dict[str, Any]) -> Any:
            return handler(api, admitted(api, request), **kwargs)

        def endpoint(api: Api, request: Request, **kwargs: Any) -> Any:
            _measure(api, request, prefix + path)
            if on_reactor:  # the caller is checked in a unit of its own
                ran: Deferred[Any] = api.store.read(admitted, api, request)
                ran.addCallback(lambda req: handler(api, req, **kwargs))
            elif request.method in SAFE_METHODS:
                ran = api.store.read(handled, api, request, kwargs)
            else:
                ran = api.store.run(handled, api, request, kwargs)
            return ran.addCallbacks(
                lambda result: _answered(request, name, result),
                lambda failure: _async_error(request, name, failure),
            )

        endpoint.__name__ = name
        endpoint.__doc__ = handler.__doc__
        Api.app.route(prefix + path, methods=list(methods), strict_slashes=False)(endpoint)
        return handler

    return decorate


def _answered(request: Request, name: str, result: Any) -> Any:
    """What the handler gave: its answer, or (a coroutine, a Deferred) what it will give."""
    if inspect.iscoroutine(result) or isinstance(result, Deferred):
        later: Deferred[Any] = ensureDeferred(result)
        return later.addCallbacks(
            lambda answer: _answer(request, answer),
            lambda failure: _async_error(request, name, failure),
        )
    return _answer(request, result)


def _measure(api: Api, request: Request, rule: str) -> None:
    """Count the request by route, method and status, with its latency, once answered."""
    started = time.monotonic()
    method = request.method.decode("ascii", "replace")

    def done(_: object) -> None:
        api.appliance.metrics.api_request(rule, method, request.code, time.monotonic() - started)

    request.notifyFinish().addBoth(done)


def _answer(request: Request, result: tuple[int, Any]) -> Any:
    """A handler's (status, body): a resource body (a streamed file) renders itself."""
    status, body = result
    if IResource.providedBy(body):
        return body
    return respond(request, status, body)


def _async_error(request: Request, name: str, failure: Failure) -> bytes:
    if isinstance(failure.value, CancelledError):
        # Klein cancels a handler whose client went away (a ?timeout= wait, an upload).
        log.info("API handler {name}: the client went away", name=name)
        return b""
    if isinstance(failure.value, ApiError):
        exc = failure.value
        return respond(request, exc.status, exc.body, exc.headers)
    return _handler_failed(request, name, failure)


@Api.app.handle_errors(NotFound)
def _unknown_route(self: Any, request: IRequest, failure: Failure) -> bytes:
    return respond(cast(Request, request), 404, {"detail": "Not found."})


@Api.app.handle_errors(MethodNotAllowed)
def _wrong_method(self: Any, request: IRequest, failure: Failure) -> bytes:
    allowed = ", ".join(getattr(failure.value, "valid_methods", None) or [])
    method = cast(Request, request).method.decode("ascii", "replace")
    return respond(
        cast(Request, request),
        405,
        {"detail": f"Method {method!r} not allowed."},
        {"Allow": allowed} if allowed else {},
    )
