"""Operator accounts (``users``) and their browser sessions (``ui_sessions``).

Passwords arrive here already hashed (:mod:`acs.accounts` hashes and verifies them); a
session is stored by the SHA-256 of its cookie value, so the database never holds a value
a browser could present. A session ends at its expiry, at logout, when its user is
disabled or given a new password, or when its user has logged in MAX_SESSIONS more times.
There is no delete: a disabled account stays (its name taken, its audit entries meaningful).
Account writes are audited in the global log as ``actor`` (the CLI's default: ``acs``).
"""

from __future__ import annotations

from collections.abc import Sequence

from acs.store import codec
from acs.store.checks import check_page, epoch, hash_token
from acs.store.db import Database
from acs.store.errors import Conflict
from acs.store.models import USER_ACTOR, UiSession, User

# Live browser sessions kept per user (a login beyond it ends the user's oldest).
MAX_SESSIONS = 20


class Users(Database):
    def create_user(
        self,
        name: str,
        password_hash: str,
        role: str,
        organization_ids: Sequence[int],
        *,
        now: float,
        actor: str = "acs",
    ) -> User:
        """A new account (Conflict when the name is taken); ``name`` checked by the caller."""
        now_f = epoch("now", now)
        with self.transaction():
            orgs = self._role_and_scope(role, organization_ids)
            if self._scalar("SELECT 1 FROM users WHERE name = ?", (name,)):
                raise Conflict(f"a user named {name!r} exists already")
            row = self._insert(
                "users",
                "name, password_hash, role, organization_ids, created",
                (name, password_hash, role, codec.dumps(orgs), now_f),
            )
            self._audit("user_created", {"name": name, "role": role}, now_f, actor)
        return codec.user(row)

    def get_user(self, name: str) -> User | None:
        row = self._one("SELECT * FROM users WHERE name = ?", (name,))
        return None if row is None else codec.user(row)

    def get_user_by_id(self, user_id: int) -> User | None:
        if type(user_id) is not int:
            return None
        row = self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return None if row is None else codec.user(row)

    def password_hash(self, name: str) -> str | None:
        """The stored hash of an enabled user's password (None: no such enabled user)."""
        value = self._scalar(
            "SELECT password_hash FROM users WHERE name = ? AND disabled = 0", (name,)
        )
        return None if value is None else str(value)

    def list_users(self) -> list[User]:
        return [codec.user(r) for r in self._all("SELECT * FROM users ORDER BY id")]

    def users_page(self, *, limit: int, offset: int) -> tuple[int, list[User]]:
        """(how many users, one page of them in id order), disabled ones included."""
        check_page(limit, offset)
        return self._page("users", "", (), codec.user, limit=limit, offset=offset)

    def set_user_access(
        self,
        name: str,
        role: str,
        organization_ids: Sequence[int],
        *,
        now: float,
        actor: str = "acs",
    ) -> bool:
        """A new role and organization scope (checked as at creation: ValueError); live
        sessions keep going with them (each request reads its user). False when there is no
        such user."""
        now_f = epoch("now", now)
        with self.transaction():
            user_id = self._scalar("SELECT id FROM users WHERE name = ?", (name,))
            if user_id is None:
                return False
            orgs = self._role_and_scope(role, organization_ids)
            self._conn.execute(
                "UPDATE users SET role = ?, organization_ids = ? WHERE id = ?",
                (role, codec.dumps(orgs), user_id),
            )
            detail = {"name": name, "role": role, "organization_ids": orgs}
            self._audit("user_access_changed", detail, now_f, actor)
        return True

    def set_password(
        self, name: str, password_hash: str, *, now: float, actor: str = "acs"
    ) -> bool:
        """A new password; the user's sessions end. False when there is no such user."""
        now_f = epoch("now", now)
        with self.transaction():
            user_id = self._scalar("SELECT id FROM users WHERE name = ?", (name,))
            if user_id is None:
                return False
            self._conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )
            self._conn.execute("DELETE FROM ui_sessions WHERE user_id = ?", (user_id,))
            self._audit("user_password_changed", {"name": name}, now_f, actor)
        return True

    def disable_user(self, name: str, *, now: float, actor: str = "acs") -> bool:
        """Disable the account and end its sessions; False when there is no such user."""
        now_f = epoch("now", now)
        with self.transaction():
            user_id = self._scalar("SELECT id FROM users WHERE name = ?", (name,))
            if user_id is None:
                return False
            self._conn.execute("UPDATE users SET disabled = 1 WHERE id = ?", (user_id,))
            self._conn.execute("DELETE FROM ui_sessions WHERE user_id = ?", (user_id,))
            self._audit("user_disabled", {"name": name}, now_f, actor)
        return True

    def create_ui_session(
        self, user: User, key: str, csrf: str, *, now: float, expires: float
    ) -> UiSession:
        """Store a session under the hash of its cookie value ``key``."""
        now_f, expires_f = epoch("now", now), epoch("expires", expires)
        with self.transaction():
            self._conn.execute("DELETE FROM ui_sessions WHERE expires <= ?", (now_f,))
            # A user's oldest sessions give way beyond MAX_SESSIONS (bounds the table).
            self._conn.execute(
                "DELETE FROM ui_sessions WHERE user_id = ? AND key_hash NOT IN (SELECT key_hash"
                " FROM ui_sessions WHERE user_id = ? ORDER BY created DESC LIMIT ?)",
                (user.id, user.id, MAX_SESSIONS - 1),
            )
            self._conn.execute(
                "INSERT INTO ui_sessions (key_hash, user_id, csrf, created, expires)"
                " VALUES (?, ?, ?, ?, ?)",
                (hash_token(key), user.id, csrf, now_f, expires_f),
            )
            self._audit("login", {"user": user.name}, now_f, USER_ACTOR + user.name)
        return UiSession(user, csrf, expires_f)

    def ui_session(self, key: str, *, now: float) -> UiSession | None:
        """The live session of cookie value ``key`` (unexpired, its user enabled)."""
        if not isinstance(key, str) or not key:
            return None
        row = self._one(
            "SELECT u.*, s.csrf, s.expires FROM ui_sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.key_hash = ? AND s.expires > ? AND u.disabled = 0",
            (hash_token(key), epoch("now", now)),
        )
        if row is None:
            return None
        return UiSession(codec.user(row), row["csrf"], float(row["expires"]))

    def end_ui_session(self, key: str, *, now: float) -> bool:
        """Logout: False when there was no such session."""
        now_f = epoch("now", now)
        with self.transaction():
            name = self._scalar(
                "SELECT u.name FROM ui_sessions s JOIN users u ON u.id = s.user_id"
                " WHERE s.key_hash = ?",
                (hash_token(key),),
            )
            if name is None:
                return False
            self._conn.execute("DELETE FROM ui_sessions WHERE key_hash = ?", (hash_token(key),))
            self._audit("logout", {"user": name}, now_f, USER_ACTOR + name)
        return True
