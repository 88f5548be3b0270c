"""HTTP Basic and Digest authentication helpers (RFC 7617, RFC 2617/7616), sans-IO.

Owns parsing and building ``Authorization`` and ``WWW-Authenticate`` header values, and
checking credentials. Used by both sides: the ACS challenges CPEs (``digest_challenge``,
``parse_authorization``, ``check_credentials``) and answers CPE challenges on connection
requests; the CPE simulator does the mirror image (``parse_challenge``, ``authorization_for``).

Digest uses MD5 with ``qop="auth"`` by default (what TR-069 requires); MD5-sess, SHA-256 and
the qop-less RFC 2069 form are understood for interoperability. ``NonceSigner`` makes and
checks stateless server nonces (both the ACS and the simulator's connection-request
listener use it); replay tracking is the caller's (``acs.authguard.NonceLedger``). Parsing
functions never raise on bad input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Challenge",
    "Credentials",
    "NonceSigner",
    "authorization_for",
    "basic_challenge",
    "check_credentials",
    "digest_challenge",
    "parse_authorization",
    "parse_challenge",
    "parse_challenges",
]


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "basic" | "digest"
    username: str
    # Digest: the auth-params with lower-cased keys; Basic: {"password": ...}.
    params: dict[str, str] = field(default_factory=dict)


class Challenge(NamedTuple):
    """One parsed ``WWW-Authenticate`` challenge; a plain ``(scheme, params)`` tuple."""

    scheme: str  # "digest" | "basic" | another lower-cased scheme | "" (nothing usable)
    params: dict[str, str]


_HASHES: dict[str, Callable[[bytes], str]] = {
    "md5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    "sha-256": lambda b: hashlib.sha256(b).hexdigest(),
}

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# One auth-param: token = ( token | quoted-string ), surrounded by optional whitespace.
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*', re.DOTALL)
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|\s*$)")
_TOKEN68_RE = re.compile(r"\s*([A-Za-z0-9\-._~+/]+=*)\s*(?:,|$)")
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_MAX_HEADER = 16 * 1024  # longer header values are refused outright


def _unquote(s: str) -> str:
    return _UNESCAPE_RE.sub(r"\1", s)


def _quote(s: str) -> str:
    if any(c in s for c in "\r\n\0"):
        raise ValueError(f"header value cannot contain CR, LF or NUL: {s!r}")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_params(text: str, pos: int) -> tuple[dict[str, str], int] | None:
    """Parse ``k=v, k="v"`` from ``pos``; stop before a following scheme token.

    Returns (params, end position) or None if malformed.
    """
    params: dict[str, str] = {}
    n = len(text)
    while pos < n:
        # Skip empty list elements (",,") allowed by RFC 7230's list rule.
        while pos < n and text[pos] in " \t,":
            pos += 1
        if pos >= n:
            break
        m = _PARAM_RE.match(text, pos)
        if m is None:
            # Could be the start of the next challenge ("..., Basic realm=x").
            if _SCHEME_RE.match(text, pos) and params:
                return params, pos
            return None
        key = m.group(1).lower()
        value = _unquote(m.group(2)) if m.group(2) is not None else m.group(3)
        params.setdefault(key, value)
        pos = m.end()
        if pos < n and text[pos] != ",":
            return None
    return params, pos


# --- server side: nonces, challenges and credential checks -----------------------------------


class NonceSigner:
    """Stateless Digest nonces ``<hex time>-<hex issuer>-<random>-<HMAC>``: any process
    holding ``secret`` can check one without shared state, and no two challenges share a
    nonce. ``issuer`` names the process that made it (the node of a cluster), which alone
    knows which of its nonces were used."""

    def __init__(self, secret: bytes, ttl: float = 300.0, *, issuer: int = 0) -> None:
        self._secret = secret
        self.ttl = ttl
        self._issuer = issuer

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def make(self, now: float) -> str:
        stamp = f"{int(now):x}-{self._issuer:x}-{secrets.token_hex(4)}"
        return f"{stamp}-{self._mac(stamp)}"

    def check(self, nonce: str) -> tuple[float, int | None] | None:
        """(when, by which issuer) one of our nonces was made, from one HMAC check; None
        for a forged or garbled one. The issuer is None in a nonce of the older
        ``<time>-<random>-<HMAC>`` form, which names none."""
        stamp, sep, mac = nonce.rpartition("-")
        if not sep or len(stamp) > 32 or not stamp.isascii():
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(stamp).encode()):
            return None
        fields = stamp.split("-")
        try:
            issued = float(int(fields[0], 16))
            issuer = int(fields[1], 16) if len(fields) == 3 and 0 < len(fields[1]) <= 8 else None
        except ValueError:
            return None
        return issued, issuer

    def issued(self, nonce: str) -> float | None:
        """When one of our nonces was issued; None for a forged or garbled one."""
        checked = self.check(nonce)
        return None if checked is None else checked[0]

    def issuer(self, nonce: str) -> int | None:
        """The issuer one of our nonces names; None for a forged or garbled one."""
        checked = self.check(nonce)
        return None if checked is None else checked[1]

    def fresh(self, issued: float, now: float) -> bool:
        """Within its lifetime (a minute of clock skew tolerated the other way)."""
        return -60.0 <= now - issued <= self.ttl


_NONCE = re.compile(rb'[\s,]nonce\s*=\s*"([^"]{1,200})"', re.IGNORECASE)


def digest_nonce(header: bytes | None) -> str | None:
    """The nonce a Digest ``Authorization`` header answers (a quick look, before parsing it
    whole): None when it is no Digest header or names none."""
    if not header or header[:7].lower() != b"digest ":
        return None
    found = _NONCE.search(header)
    return found.group(1).decode("ascii", "replace") if found else None


def digest_challenge(realm: str, nonce: str, opaque: str = "", stale: bool = False) -> str:
    """A ``WWW-Authenticate`` value asking for MD5 Digest with qop="auth"."""
    parts = [f"realm={_quote(realm)}", 'qop="auth"', f"nonce={_quote(nonce)}"]
    if opaque:
        parts.append(f"opaque={_quote(opaque)}")
    parts.append("algorithm=MD5")
    if stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


def basic_challenge(realm: str) -> str:
    """A ``WWW-Authenticate`` value asking for Basic credentials."""
    return f'Basic realm={_quote(realm)}, charset="UTF-8"'


def parse_authorization(value: str | bytes | None) -> Credentials | None:
    """Parse an ``Authorization`` header value; None if absent, unsupported or malformed."""
    try:
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if len(value) > _MAX_HEADER:
            return None
        scheme, _, rest = value.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return _parse_basic(rest.strip())
        if scheme == "digest":
            parsed = _parse_params(rest, 0)
            if parsed is None:
                return None
            params, end = parsed
            if rest[end:].strip() or "username" not in params:
                return None
            return Credentials("digest", params["username"], params)
        return None
    except Exception:  # never raise on hostile input
        return None


def _parse_basic(token: str) -> Credentials | None:
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # pre-RFC 7617 clients
    user, sep, password = text.partition(":")
    if not sep:
        return None
    return Credentials("basic", user, {"password": password})


def _digest_response(
    params: dict[str, str], *, method: str, password: str, username: str, realm: str
) -> str | None:
    """The expected ``response`` for these digest params, or None if they are unusable."""
    algorithm = params.get("algorithm", "MD5").lower()
    sess = algorithm.endswith("-sess")
    h = _HASHES.get(algorithm.removesuffix("-sess"))
    if h is None:
        return None
    nonce, uri = params.get("nonce"), params.get("uri")
    if nonce is None or uri is None:
        return None
    ha1 = h(f"{username}:{realm}:{password}".encode())
    qop = params.get("qop")
    cnonce, nc = params.get("cnonce"), params.get("nc")
    if sess:
        if cnonce is None:
            return None
        ha1 = h(f"{ha1}:{nonce}:{cnonce}".encode())
    ha2 = h(f"{method}:{uri}".encode())
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}".encode())  # RFC 2069 legacy form
    if qop.lower() != "auth" or cnonce is None or nc is None:
        return None  # auth-int needs the body; we only offer "auth"
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


def check_credentials(creds: Credentials, *, method: str, password: str, realm: str) -> bool:
    """True if ``creds`` prove knowledge of ``password`` (constant-time comparison).

    Digest: recomputes the response for ``method`` and checks the realm. Nonce freshness,
    the ``uri`` matching the request and ``nc`` replay are for the caller to check.
    """
    try:
        if creds.scheme == "basic":
            given = creds.params.get("password")
            if given is None:
                return False
            return hmac.compare_digest(given.encode(), password.encode())
        if creds.scheme == "digest":
            if creds.params.get("realm") != realm:
                return False
            expected = _digest_response(
                creds.params, method=method, password=password, username=creds.username, realm=realm
            )
            given = creds.params.get("response")
            if expected is None or given is None:
                return False
            return hmac.compare_digest(expected.encode(), given.lower().encode())
        return False
    except Exception:  # never raise on hostile input
        return False


# --- client side: answering a challenge ----------------------------------------------------


def parse_challenges(value: str | bytes | None) -> list[Challenge]:
    """All challenges in a ``WWW-Authenticate`` value (a server may list several in one)."""
    out: list[Challenge] = []
    try:
        if value is None:
            return out
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if len(value) > _MAX_HEADER:
            return out
        pos, n = 0, len(value)
        while pos < n:
            while pos < n and value[pos] in " \t,":
                pos += 1
            if pos >= n:
                break
            m = _SCHEME_RE.match(value, pos)
            if m is None:
                break
            scheme, pos = m.group(1).lower(), m.end()
            t68 = _TOKEN68_RE.match(value, pos)
            if t68 is not None and "=" not in value[pos : t68.end()].rstrip("=, \t"):
                pos = t68.end()  # token68 form, e.g. "Negotiate abc=="; no params we use
                out.append(Challenge(scheme, {}))
                continue
            parsed = _parse_params(value, pos)
            if parsed is None:
                break
            params, pos = parsed
            out.append(Challenge(scheme, params))
    except Exception:
        pass
    return out


def parse_challenge(value: str | bytes | None) -> Challenge:
    """The challenge to answer: ("digest", params) preferred over ("basic", params).

    Returns ``Challenge("", {})`` when the value holds neither (never None, never raises).
    """
    challenges = [c for c in parse_challenges(value) if c[0] in ("digest", "basic")]
    for c in challenges:
        if c[0] == "digest" and _digest_usable(c[1]):
            return c
    for c in challenges:
        if c[0] == "basic":
            return c
    return Challenge("", {})


def _digest_usable(params: dict[str, str]) -> bool:
    if "nonce" not in params:
        return False
    if params.get("algorithm", "MD5").lower().removesuffix("-sess") not in _HASHES:
        return False
    qops = _qop_options(params)
    return qops is None or "auth" in qops


def _qop_options(params: dict[str, str]) -> list[str] | None:
    qop = params.get("qop")
    return None if qop is None else [q.strip().lower() for q in qop.split(",")]


def authorization_for(
    challenge: str | Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """The ``Authorization`` value answering ``challenge`` (Digest preferred, else Basic).

    ``challenge`` is a ``WWW-Authenticate`` value or an already parsed ``Challenge``.
    Raises ValueError if the challenge offers no scheme we can answer.
    """
    if isinstance(challenge, Challenge):
        scheme, params = challenge
        if scheme == "digest" and not _digest_usable(params):
            scheme = ""
    else:
        scheme, params = parse_challenge(challenge)
    if scheme == "basic":
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return f"Basic {token}"
    if scheme != "digest":
        raise ValueError(f"no usable Basic or Digest challenge in {str(challenge)[:200]!r}")
    realm = params.get("realm", "")
    answer = {
        "username": username,
        "realm": realm,
        "nonce": params["nonce"],
        "uri": uri,
    }
    algorithm = params.get("algorithm")
    if algorithm is not None:
        answer["algorithm"] = algorithm
    if _qop_options(params) is not None:
        answer.update(qop="auth", nc=f"{nc:08x}", cnonce=cnonce)
    response = _digest_response(
        answer, method=method, password=password, username=username, realm=realm
    )
    if response is None:
        raise ValueError(f"cannot answer digest challenge {str(challenge)[:200]!r}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(params['nonce'])}",
        f"uri={_quote(uri)}",
    ]
    if algorithm is not None:
        parts.append(f"algorithm={algorithm}")
    parts.append(f'response="{response}"')
    if "opaque" in params:
        parts.append(f"opaque={_quote(params['opaque'])}")
    if "qop" in answer:
        parts.append(f"qop=auth, nc={answer['nc']}, cnonce={_quote(cnonce)}")
    return "Digest " + ", ".join(parts)
