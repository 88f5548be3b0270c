"""Nodes (``nodes``) and device session leases (``devices.session_node/session_until``).

Every process serving CWMP on the database is a node: a row with its name (see
``acs.periodic.node_name``) and its peer URL, where the other nodes forward the requests
of the sessions it runs. A device's session runs on one node at a time: the node takes the
device's session lease in the transaction that records the Inform, renews it while the
session lasts, and gives it up in the transaction of the session's last request, or, for a
session that ran no task, with the leases of other such sessions a moment after it ended
(``end_device_sessions``). A node that dies stops renewing, and its leases expire; deleting
its row (a clean stop, or a node known to be dead) frees them at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from acs.store.checks import epoch
from acs.store.db import Database, read_only

MAX_NAME = 200
MAX_PEER = 500


@dataclass(frozen=True)
class SessionHolder:
    """The node running a device's session: its id, name and peer URL."""

    node_id: int
    name: str
    peer: str | None
    until: float


class Nodes(Database):
    """The ``nodes`` table and the session lease columns of ``devices`` (SQLite)."""

    def register_node(self, name: str, peer: str | None, *, now: float) -> int:
        """Add this process as a node (``peer``: the URL it takes forwarded requests on);
        its id, which its session cookies and device leases carry."""
        if type(name) is not str or not name or len(name) > MAX_NAME:
            raise ValueError(f"node name must be a non-empty string of at most {MAX_NAME}")
        if peer is not None and (type(peer) is not str or len(peer) > MAX_PEER):
            raise ValueError(f"peer must be a string of at most {MAX_PEER} characters")
        with self.transaction():
            row = self._one(
                "INSERT INTO nodes (name, peer, started) VALUES (?, ?, ?) RETURNING id",
                (name, peer, epoch("now", now)),
            )
        assert row is not None
        return int(row["id"])

    def set_node_peer(self, node_id: int, peer: str) -> None:
        """Where node ``node_id`` takes forwarded requests (known once it listens)."""
        if type(peer) is not str or not peer or len(peer) > MAX_PEER:
            raise ValueError(f"peer must be a non-empty string of at most {MAX_PEER} characters")
        with self.transaction():
            self._conn.execute("UPDATE nodes SET peer = ? WHERE id = ?", (peer, node_id))

    def node_names(self) -> dict[int, str]:
        """Every registered node, id -> name."""
        return {int(r["id"]): str(r["name"]) for r in self._all("SELECT id, name FROM nodes")}

    def node_peer(self, node_id: int) -> str | None:
        """The peer URL of node ``node_id`` (None: no such node, or it takes no forwards)."""
        if type(node_id) is not int:
            return None
        value = self._scalar("SELECT peer FROM nodes WHERE id = ?", (node_id,))
        return None if value is None else str(value)

    def drop_node(self, node_id: int) -> None:
        """Remove a node: a clean stop, or one known to be dead. The sessions it ran are
        freed (ON DELETE SET NULL)."""
        with self.transaction():
            self._conn.execute("DELETE FROM nodes WHERE id = ?", (node_id,))

    def take_device_session(
        self,
        device_id: int,
        node_id: int,
        *,
        now: float,
        until: float,
        replaces: int | None = None,
    ) -> SessionHolder | None:
        """Take (or renew) the session lease of ``device_id`` for ``node_id`` until
        ``until``: None when it is ``node_id``'s now (it was free, expired, already its own
        or ``replaces``'s), else the node whose lease still runs (nothing changes then).
        Call inside the transaction that records the session's start."""
        now_f = epoch("now", now)
        with self._atomic():
            taken = self._conn.execute(
                "UPDATE devices SET session_node = ?, session_until = ? WHERE id = ? "
                "AND (session_node IS NULL OR session_node IN (?, ?) OR session_until <= ?)",
                (node_id, epoch("until", until), device_id, node_id, replaces or node_id, now_f),
            ).rowcount
            if taken:
                return None
            row = self._one(
                "SELECT n.id, n.name, n.peer, d.session_until FROM devices d "
                "JOIN nodes n ON n.id = d.session_node WHERE d.id = ?",
                (device_id,),
            )
        if row is None:  # no such device: nothing to hold
            return None
        return SessionHolder(
            node_id=int(row["id"]),
            name=str(row["name"]),
            peer=None if row["peer"] is None else str(row["peer"]),
            until=float(row["session_until"]),
        )

    def end_device_session(self, device_id: int, node_id: int) -> None:
        """Give the session lease of ``device_id`` up, if ``node_id`` holds it (inside the
        transaction of the session's last request)."""
        with self._atomic():
            self._conn.execute(
                "UPDATE devices SET session_node = NULL, session_until = NULL "
                "WHERE id = ? AND session_node = ?",
                (device_id, node_id),
            )

    def end_device_sessions(self, node_id: int, leases: Iterable[tuple[int, float]]) -> None:
        """Give up the leases ``(device_id, until)`` of ``node_id``'s sessions that ended, in
        one transaction: each only while it is still exactly that lease (one taken since,
        by this node's next session of the device too, runs until another time)."""
        rows = [(device_id, node_id, epoch("until", until)) for device_id, until in leases]
        with self.transaction():
            self._conn.executemany(
                "UPDATE devices SET session_node = NULL, session_until = NULL "
                "WHERE id = ? AND session_node = ? AND session_until = ?",
                rows,
            )

    def device_session_node(self, device_id: int, *, now: float) -> int | None:
        """The node whose session lease on ``device_id`` runs at ``now``, if any."""
        value = self._scalar(
            "SELECT session_node FROM devices WHERE id = ? AND session_until > ?",
            (device_id, epoch("now", now)),
        )
        return None if value is None else int(value)


@dataclass(frozen=True)
class NodeStatus:
    """A registered node as ``acs db status`` shows it."""

    id: int
    name: str
    peer: str | None
    started: float
    sessions: int  # devices whose session lease it holds


def file_nodes(path: str, *, now: float) -> list[NodeStatus]:
    """The nodes registered in the database file at ``path`` and the sessions each runs at
    ``now``, read without writing to it (``acs db status``); [] before the nodes existed.
    Counting the sessions reads every device (no index: see migration 19), once per ask."""
    with read_only(path) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'nodes'").fetchone() is None:
            return []
        return read_nodes(conn, now=now)


def read_nodes(conn: Any, *, now: float) -> list[NodeStatus]:
    """The nodes and their sessions at ``now``, through ``conn`` (an sqlite3 connection or
    the PostgreSQL engine's, which takes the same SQL)."""
    nodes = conn.execute("SELECT id, name, peer, started FROM nodes ORDER BY id").fetchall()
    sessions = dict(
        conn.execute(
            "SELECT session_node, count(*) FROM devices WHERE session_until > ? "
            "GROUP BY session_node",
            (epoch("now", now),),
        ).fetchall()
    )
    return [
        NodeStatus(int(i), str(name), peer, float(t), int(sessions.get(i, 0)))
        for i, name, peer, t in nodes
    ]
