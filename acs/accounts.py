"""Operator accounts of the web UI: user names, password hashing, login throttling.

Pure logic; the rows are :mod:`acs.store.users`, the routes ``api/auth.py``. Passwords are
hashed with Argon2id (argon2-cffi's RFC 9106 low-memory profile: 64 MiB, 3 passes), which
costs ~0.1 s of CPU: callers run :meth:`Passwords.hash` and :meth:`Passwords.verify` off the
reactor thread. A login for an unknown user is checked against a dummy hash, so the answer
takes as long as for a wrong password and does not tell which names exist.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["LoginThrottle", "Passwords", "name_problem", "password_problem"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # bounds the hashing work a login body can ask for


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a user name, or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return (
            "A user name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit."
        )
    return None


def password_problem(password: object) -> str | None:
    """Why ``password`` cannot be set as a password, or None."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters."
    return None


class Passwords:
    """Argon2id hashes (``hasher`` defaults to argon2-cffi's recommended parameters)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None  # made at the first unknown name (it costs a hash)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored`` (None: no such user, always False
        after the same work)."""
        if stored is None:
            if self._dummy is None:
                self._dummy = self._hasher.hash("not a password of anyone's")
            stored, known = self._dummy, False
        else:
            known = True
        try:
            return self._hasher.verify(stored, password) and known
        except (VerificationError, InvalidHashError):
            return False


class LoginThrottle:
    """At most ``limit`` failed logins per key (a user name, a source address) in any
    ``window`` seconds; beyond it, :meth:`retry_after` says how long to wait. Bounded:
    at most ``capacity`` keys are remembered (the least recently failing go first)."""

    def __init__(self, limit: int = 5, window: float = 60.0, capacity: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.refused_total = 0

    def retry_after(self, keys: tuple[str, ...], now: float) -> int | None:
        """Seconds until any of ``keys`` may try again, or None when all may try now."""
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if times is not None and len(times) >= self.limit:
                wait = max(wait, times[0] + self.window - now)
        if wait <= 0:
            return None
        self.refused_total += 1
        return max(1, int(wait + 0.999))

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        for key in keys:
            times = self._recent(key, now)
            if times is None:
                times = deque(maxlen=self.limit)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
