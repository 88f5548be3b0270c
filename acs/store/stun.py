"""STUN bindings (``stun_bindings``): what reaches a device behind NAT (TR-111 Part 2).

Provisioning gives a device its own STUN credentials (`set_stun_credentials`); its Binding
Requests name it by that username and are signed with that password. The STUN server
records the public address and port each signed request with CONNECTION-REQUEST-BINDING
came from (`record_stun_binding`): where UDP connection requests for the device go. A
change of binding is also a ``stun_binding`` entry of the device's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from acs.store.checks import bounded_text, epoch
from acs.store.db import Database

MAX_USERNAME = 256
MAX_PASSWORD = 256


@dataclass(frozen=True)
class StunBinding:
    device_id: int
    username: str
    password: str
    address: str | None  # the public address and port requests came from (None: none yet)
    port: int | None
    seen: float | None  # the last signed request that kept the binding
    changed: float | None  # when address or port last changed
    # The node whose STUN socket the binding's requests reach (None: unknown, or gone):
    # where UDP connection requests must leave from.
    node: int | None = None


_COLUMNS = "device_id, username, password, address, port, seen, changed, node"


def _binding(row: Any) -> StunBinding:
    return StunBinding(*(row[i] for i in range(8)))


class StunBindings(Database):
    """The ``stun_bindings`` table (SQLite)."""

    def set_stun_credentials(self, device_id: int, username: str, password: str) -> None:
        """The STUN username and password the device was given (its binding is kept:
        the same NAT mapping, now signed with the new password)."""
        username = bounded_text("username", username, MAX_USERNAME)
        password = bounded_text("password", password, MAX_PASSWORD)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO stun_bindings (device_id, username, password) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET username = excluded.username, "
                "password = excluded.password",
                (device_id, username, password),
            )

    def stun_credentials(self, username: str) -> StunBinding | None:
        """The binding (and credentials) of the device whose STUN username is ``username``."""
        if type(username) is not str or not username or len(username) > MAX_USERNAME:
            return None
        row = self._one(f"SELECT {_COLUMNS} FROM stun_bindings WHERE username = ?", (username,))
        return None if row is None else _binding(row)

    def stun_binding(self, device_id: int) -> StunBinding | None:
        row = self._one(f"SELECT {_COLUMNS} FROM stun_bindings WHERE device_id = ?", (device_id,))
        return None if row is None else _binding(row)

    def record_stun_binding(
        self, device_id: int, address: str, port: int, *, now: float, node: int | None = None
    ) -> bool:
        """Binding Requests of the device come from ``address``:``port`` at ``now``, to
        the STUN socket of ``node``; True when the address or port is a change (written
        to its history too)."""
        now_f = epoch("now", now)
        if type(port) is not int or not 0 < port < 65536:
            raise ValueError("port must be 1..65535")
        if node is not None and type(node) is not int:
            raise ValueError("node must be a node id")
        address = bounded_text("address", address, 64)
        with self.transaction():
            row = self._one(
                "SELECT address, port FROM stun_bindings WHERE device_id = ?", (device_id,)
            )
            if row is None:
                return False  # credentials withdrawn (device deleted) meanwhile
            moved = (row["address"], row["port"]) != (address, port)
            if moved:
                self._conn.execute(
                    "UPDATE stun_bindings SET address = ?, port = ?, seen = ?, changed = ?, "
                    "node = ? WHERE device_id = ?",
                    (address, port, now_f, now_f, node, device_id),
                )
                previous = None if row["address"] is None else f"{row['address']}:{row['port']}"
                self._insert_history(
                    device_id,
                    "stun_binding",
                    {"address": address, "port": port, "previous": previous},
                    now_f,
                    "acs",
                )
            else:
                self._conn.execute(
                    "UPDATE stun_bindings SET seen = ?, node = ? WHERE device_id = ?",
                    (now_f, node, device_id),
                )
        return moved
