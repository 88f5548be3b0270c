"""In-memory API harness: a real Appliance on a temporary database, a `task.Clock` for time,
and `treq.testing.StubTreq` driving the Klein resource with no port.

`harness.call("GET", "/api/v1/inventory_device/", token=t)` returns a `Reply` synchronously
(StubTreq is flushed), so most API tests are plain pytest functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from treq.testing import StubTreq
from twisted.internet import task
from twisted.python.failure import Failure

from acs.accounts import Passwords
from acs.config import ApiConfig, Config, StorageConfig, XmppConfig
from acs.service import Appliance

# 2024-01-15T09:30:00Z: a fixed, readable "now" for every API test.
T0 = 1705311000.0
HOST = "http://testserver"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, list[str]]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def cheap_passwords() -> Passwords:
    """Argon2 at its real cost takes ~0.1 s a hash: cheap parameters, the same code path."""
    return Passwords(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


class ApiHarness:
    def __init__(
        self, tmp: Path, *, passwords: Passwords | None = None, xmpp: XmppConfig | None = None
    ) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        config = Config(
            storage=StorageConfig(database=str(tmp / "acs.db"), files=str(tmp / "f")),
            api=ApiConfig(public_url=HOST),
            xmpp=xmpp or XmppConfig(),
        )
        self.appliance = Appliance(config, self.clock)
        if passwords is not None:
            self.appliance.passwords = passwords
        self.store = self.appliance.store
        self.stub = StubTreq(self.appliance.api.resource())

    def token(self, role: str = "admin", orgs: Sequence[int] = (), name: str | None = None) -> str:
        _, token = self.store.create_token(
            name or f"{role}-token", role, list(orgs), now=self.clock.seconds()
        )
        return token

    def call(self, method: str, path: str, **options: Any) -> Reply:
        """One request, answered synchronously (the options of :meth:`begin`). `path` may
        carry a query string."""
        return self.begin(method, path, **options)()

    def begin(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Callable[[], Reply]:
        """Send a request whose handler may wait (on the clock, on a task); the function
        returned flushes and gives its answer, or fails when there is none yet."""
        hdrs = {k: [v] for k, v in (headers or {}).items()}
        if token is not None:
            hdrs["Authorization"] = [f"Bearer {token}"]
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", ["application/json"])
        url = path if path.startswith("http") else HOST + path
        outcome: list[Any] = []
        d = self.stub.request(method, url, headers=hdrs, data=data)
        d.addCallback(
            lambda r: self.stub.content(r).addCallback(lambda body: outcome.append((r, body)))
        )
        d.addErrback(outcome.append)

        def answer() -> Reply:
            self.stub.flush()
            if not outcome:
                raise AssertionError(f"{method} {path}: no response (handler still waiting?)")
            if isinstance(outcome[0], Failure):
                outcome[0].raiseException()
            response, body = outcome[0]
            headers_out = {
                k.decode().lower(): [v.decode() for v in vs]
                for k, vs in response.headers.getAllRawHeaders()
            }
            return Reply(response.code, headers_out, body)

        return answer

    def close(self) -> None:
        self.appliance.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ApiHarness]:
    h = ApiHarness(tmp_path)
    yield h
    h.close()
