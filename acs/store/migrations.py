"""Versioned schema migrations: the schema of the SQLite file, and how to get there.

`MIGRATIONS[i]` moves the schema from version i to i + 1. A migration is either an SQL
script or a function of the connection; each one runs in its own `BEGIN IMMEDIATE`
transaction together with the `schema_version` bump, so a crash leaves the file at a
well-defined version and a concurrent opener never applies the same migration twice.
Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from acs.store import codec
from acs.store.checks import MAX_TAGS, check_tag
from acs.store.errors import SchemaError

Migration = Callable[[sqlite3.Connection], None]

_V1 = """
CREATE TABLE organizations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    code TEXT
);

CREATE TABLE device_types (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    short_name TEXT,
    model TEXT,
    manufacturer TEXT,
    product_class TEXT,
    default_settings TEXT NOT NULL DEFAULT '{}',
    update_frequency INTEGER
);
-- Auto-registration looks a type up by what the CPE reports.
CREATE INDEX device_types_by_match ON device_types (manufacturer, product_class);

CREATE TABLE locations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    short_name TEXT,
    latitude TEXT,
    longitude TEXT,
    parent_id INTEGER REFERENCES locations (id) ON DELETE SET NULL,
    organization_id INTEGER REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE INDEX locations_by_org_name ON locations (organization_id, name);
CREATE INDEX locations_by_parent ON locations (parent_id);

CREATE TABLE firmware_images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    device_type_id INTEGER REFERENCES device_types (id) ON DELETE SET NULL,
    filename TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX firmware_images_by_type ON firmware_images (device_type_id);

-- AUTOINCREMENT: ids are handed to API clients and must never be reused after a delete.
CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    serial_number TEXT NOT NULL UNIQUE CHECK (serial_number <> ''),
    serial_number_alt TEXT UNIQUE CHECK (serial_number_alt <> ''),
    organization_id INTEGER NOT NULL REFERENCES organizations (id),
    type_id INTEGER REFERENCES device_types (id) ON DELETE SET NULL,
    location_id INTEGER REFERENCES locations (id) ON DELETE SET NULL,
    customer_id TEXT,
    description TEXT,
    latitude TEXT,
    longitude TEXT,
    username TEXT,
    password TEXT,
    update_frequency INTEGER NOT NULL DEFAULT 300 CHECK (update_frequency > 0),
    debug INTEGER NOT NULL DEFAULT 0,
    firmware_image_id INTEGER REFERENCES firmware_images (id) ON DELETE SET NULL,
    firmware_image_is_pending INTEGER NOT NULL DEFAULT 0,
    manufacturer TEXT,
    oui TEXT,
    product_class TEXT,
    unique_identifier TEXT,
    software_version TEXT,
    hardware_version TEXT,
    data_model_root TEXT,
    address TEXT,
    connection_request_url TEXT,
    connection_request_username TEXT,
    connection_request_password TEXT,
    provisioned INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'Down' CHECK (status IN ('Up', 'Down')),
    status_change REAL NOT NULL,
    last_contact REAL,
    last_connection REAL,
    last_configuration REAL,
    operational_status TEXT NOT NULL DEFAULT 'provisioning' CHECK (operational_status IN
        ('provisioning', 'active', 'maintenance', 'decommissioned', 'inactive')),
    created REAL NOT NULL,
    last_change REAL NOT NULL,
    -- The moment an Up device becomes overdue. The window depends on the row's own
    -- update_frequency, so a plain (status, last_contact) index cannot answer the sweep
    -- with a range scan; an index over this virtual column can.
    liveness_deadline REAL GENERATED ALWAYS AS
        (coalesce(last_contact, status_change) + 2 * update_frequency + 60) VIRTUAL
);
CREATE INDEX devices_by_org ON devices (organization_id);
CREATE INDEX devices_liveness ON devices (status, liveness_deadline);
CREATE INDEX devices_by_type ON devices (type_id);
CREATE INDEX devices_by_location ON devices (location_id);
CREATE INDEX devices_by_firmware ON devices (firmware_image_id);

-- A serial must be unique across BOTH serial columns (the Inform serial is matched against
-- either). The store checks first to give a clear message; these triggers keep the rule true
-- whatever code path writes.
CREATE TRIGGER devices_serials_insert BEFORE INSERT ON devices
WHEN EXISTS (SELECT 1 FROM devices
             WHERE serial_number = NEW.serial_number_alt OR serial_number_alt = NEW.serial_number)
BEGIN
    SELECT RAISE(ABORT, 'serial number conflict');
END;

CREATE TRIGGER devices_serials_update BEFORE UPDATE OF serial_number, serial_number_alt ON devices
WHEN EXISTS (SELECT 1 FROM devices
             WHERE id <> NEW.id
               AND (serial_number = NEW.serial_number_alt OR serial_number_alt = NEW.serial_number))
BEGIN
    SELECT RAISE(ABORT, 'serial number conflict');
END;

CREATE TABLE parameters (
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    value TEXT,
    type TEXT,
    writable INTEGER,
    updated REAL NOT NULL,
    PRIMARY KEY (device_id, path)
) WITHOUT ROWID;

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'in_progress', 'done', 'failed', 'cancelled')),
    priority INTEGER NOT NULL DEFAULT 10,
    created REAL NOT NULL,
    scheduled_at REAL,
    started REAL,
    finished REAL,
    fault_code INTEGER,
    fault_string TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    result TEXT,
    actor TEXT NOT NULL
);
CREATE INDEX tasks_queue ON tasks (device_id, state, priority, id);

CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER REFERENCES devices (id) ON DELETE CASCADE,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX history_by_device ON history (device_id, id);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    token_hash TEXT NOT NULL UNIQUE,
    organization_ids TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE operational_records (
    device_id INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    operational_status TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    history TEXT NOT NULL DEFAULT '[]',
    updated_by TEXT,
    last_updated REAL
);

CREATE TABLE cwmp_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    started REAL NOT NULL,
    transcript TEXT NOT NULL DEFAULT ''
);
CREATE INDEX cwmp_sessions_by_device ON cwmp_sessions (device_id, id);
"""


# Desired CPE settings: what the operator wants a parameter to be, and
# whether the CPE has confirmed it (SetParameterValues status 0/1). Kept apart from the
# `parameters` cache, which is what the CPE last reported and is wiped on BOOTSTRAP.
_V2 = """
CREATE TABLE desired_settings (
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    path TEXT NOT NULL CHECK (path <> ''),
    value TEXT NOT NULL,
    type TEXT NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    updated REAL NOT NULL,
    PRIMARY KEY (device_id, path)
) WITHOUT ROWID;
"""


# Configuration backups uploaded by CPEs (Upload RPC) and the appliance's own persistent
# secrets (the signed-URL key must survive a restart so URLs already handed out keep working).
# task_id is not a foreign key: tasks are history and a backup outlives its task's row.
_V3 = """
CREATE TABLE backups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    task_id INTEGER,
    filename TEXT NOT NULL CHECK (filename <> ''),
    size INTEGER NOT NULL CHECK (size >= 0),
    sha256 TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX backups_by_device ON backups (device_id, id);
CREATE INDEX backups_by_task ON backups (task_id);

CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"""


def split_script(script: str) -> Iterator[str]:
    """Yield the complete statements of an SQL script (trigger bodies hold `;` too)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement.strip(";").strip():
                yield statement
    if buffer.strip(";").strip():
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:80]!r}")


def sql(script: str) -> Migration:
    """A migration made of a plain SQL script."""
    statements = tuple(split_script(script))

    def run(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


# (description, migration); the schema version after MIGRATIONS[i] is i + 1.
# The scheduler asks every few seconds for pending tasks whose scheduled_at just passed; a
# partial index keeps that a range scan over scheduled tasks only, not the whole task table.
_V4 = """
CREATE INDEX tasks_scheduled ON tasks (scheduled_at)
    WHERE state = 'pending' AND scheduled_at IS NOT NULL;
"""

# Device lists (the REST API) at 100,000 devices: every page counts the filtered devices and
# pages them in id order. `status` alone (unlike devices_liveness) and `status_change` give
# covering counts for those filters, and `status` entries come in id order. devices_list is
# narrow and in id order: a deep offset (or a filter no single-column index serves in id
# order) skips over it instead of over whole device rows, then the page is a rowid seek.
_V5 = """
CREATE INDEX devices_by_status ON devices (status);
CREATE INDEX devices_by_status_change ON devices (status_change);
CREATE INDEX devices_list ON devices (id, organization_id, type_id, status, status_change);
"""

# A device's update_frequency is its type's unless the device set its own: the flag says
# which. Devices whose stored value is not what they would inherit keep it as their own.
_V6 = """
ALTER TABLE devices ADD COLUMN own_update_frequency INTEGER NOT NULL DEFAULT 0
    CHECK (own_update_frequency IN (0, 1));
UPDATE devices SET own_update_frequency = 1 WHERE update_frequency != coalesce(
    (SELECT t.update_frequency FROM device_types t WHERE t.id = devices.type_id), 300);
"""

# The scheduler also wakes devices whose failed tasks' retry time just passed.
_V7 = """
CREATE INDEX tasks_retry ON tasks (next_attempt_at)
    WHERE state = 'pending' AND next_attempt_at IS NOT NULL;
"""

# Retention (acs.maintenance) deletes finished tasks oldest first: a partial index keeps that
# a range scan over finished tasks only.
_V8 = """
CREATE INDEX tasks_finished ON tasks (finished)
    WHERE state IN ('done', 'failed', 'cancelled');
"""

# Stays empty: the maintenance job writes and deletes a row in one transaction to learn
# whether a full database takes writes again (Store.probe_write).
_V9 = """
CREATE TABLE storage_probe (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
"""

# Task kinds and arguments take the RPCs' names (the API's POST .../tasks/ vocabulary).
_V10 = """
UPDATE tasks SET kind = 'set_parameter_values' WHERE kind = 'set_parameters';
UPDATE tasks SET args = json_object('parameter_path', json_extract(args, '$.path'))
    WHERE kind = 'refresh' AND json_extract(args, '$.path') IS NOT NULL;
UPDATE tasks SET args = json_object('parameter_names', json(json_extract(args, '$.names')))
    WHERE kind = 'get_parameter_attributes' AND json_extract(args, '$.names') IS NOT NULL;
"""

# Stored files other than firmware images and backups (POST /file/, Upload RPC results):
# what a Download sends (vendor config, web content, tones, vendor-specific) and what a CPE
# uploaded (device_id and task_id set; its rows go with the device). oui/product_class say
# which CPEs a file is meant for (RequestDownload picks the newest match).
_V11 = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (name <> ''),
    file_type TEXT NOT NULL CHECK (file_type <> ''),
    oui TEXT,
    product_class TEXT,
    version TEXT,
    size INTEGER NOT NULL CHECK (size >= 0),
    sha256 TEXT NOT NULL,
    filename TEXT NOT NULL CHECK (filename <> ''),
    device_id INTEGER REFERENCES devices (id) ON DELETE CASCADE,
    task_id INTEGER,
    created REAL NOT NULL
);
CREATE INDEX files_by_type ON files (file_type, id);
CREATE INDEX files_by_device ON files (device_id);
CREATE INDEX files_by_task ON files (task_id);
"""

# Device tags get their own table (the device lists filter on them; rowid order is the
# order they were given in), moved out of the operational records' data; the stored tree
# gets a (path, value) index for the lists' param.<path> filters.
_V12 = """
CREATE TABLE device_tags (
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tag TEXT NOT NULL CHECK (tag <> ''),
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_by_tag ON device_tags (tag, device_id);
CREATE INDEX parameters_by_value ON parameters (path, value);
"""


def _v12(conn: sqlite3.Connection) -> None:
    sql(_V12)(conn)
    rows = conn.execute(
        "SELECT device_id, data FROM operational_records WHERE json_type(data, '$.tags') = 'array'"
    ).fetchall()
    for device_id, text in rows:
        data = json.loads(text)
        tags: list[str] = []
        kept: list[Any] = []  # what is no tag by today's rules stays in the record's metadata
        for tag in data.pop("tags"):
            try:
                clean = check_tag(tag)
            except ValueError:
                kept.append(tag)
                continue
            if clean not in tags and len(tags) < MAX_TAGS:
                tags.append(clean)
            elif clean not in tags:
                kept.append(tag)
        if kept:
            data["metadata"] = {**(data.get("metadata") or {}), "tags_not_migrated": kept}
        conn.executemany(
            "INSERT INTO device_tags (device_id, tag) VALUES (?, ?)",
            [(device_id, t) for t in tags],
        )
        conn.execute(
            "UPDATE operational_records SET data = ? WHERE device_id = ?",
            (codec.dumps(data), device_id),
        )


# The API's audit view (GET /audit/): the entries people and programs wrote, not the ACS's
# own or the CPEs' (every Inform writes one), a few among millions.
_V13 = """
CREATE INDEX history_audit ON history (id) WHERE actor NOT IN ('acs', 'cpe');
"""

# Webhooks and their outbox: an event is copied into a delivery (with its body) when the
# webhook's cursor passes its history entry, and stays pending until a 2xx answer.
_V14 = """
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL CHECK (url <> ''),
    secret TEXT NOT NULL,
    event_types TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    created REAL NOT NULL,
    delivered REAL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, id)
    WHERE state = 'pending';
"""

# Campaigns: one task kind over the devices a filter selected when the campaign started
# (campaign_devices, in id order), paced by the runner (acs.campaigns). A device's row gets
# its task in the transaction that queues it (never twice) and its outcome in the one that
# finishes the task (kept when finished tasks are pruned). ``hold``: its pending tasks wait
# (paused, or outside its window).
_V15 = """
CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    filter TEXT NOT NULL,
    organization_ids TEXT,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    windows TEXT NOT NULL,
    rate REAL NOT NULL CHECK (rate > 0),
    max_in_flight INTEGER NOT NULL CHECK (max_in_flight > 0),
    stop_rule TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'draft'
        CHECK (state IN ('draft', 'running', 'paused', 'done', 'stopped', 'cancelled')),
    hold INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    actor TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE TABLE campaign_devices (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    task_id INTEGER,
    outcome TEXT CHECK (outcome IN ('done', 'failed', 'cancelled')),
    fault_code INTEGER,
    fault_string TEXT,
    PRIMARY KEY (campaign_id, device_id)
) WITHOUT ROWID;
CREATE INDEX campaign_devices_waiting ON campaign_devices (campaign_id, device_id)
    WHERE task_id IS NULL;
CREATE INDEX campaign_devices_open ON campaign_devices (campaign_id, task_id)
    WHERE task_id IS NOT NULL AND outcome IS NULL;
CREATE INDEX campaign_devices_by_device ON campaign_devices (device_id);
ALTER TABLE tasks ADD COLUMN campaign_id INTEGER REFERENCES campaigns (id) ON DELETE SET NULL;
CREATE INDEX tasks_by_campaign ON tasks (campaign_id) WHERE campaign_id IS NOT NULL;
"""

_V16 = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    organization_ids TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE ui_sessions (
    key_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX ui_sessions_by_user ON ui_sessions (user_id);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires);
"""

# The dashboard's charts (acs.series): one row per sample (a minute) of what the process
# counted since the previous one, and the open tasks then; at most a day of them, pruned at
# each sample. The partial index keeps counting open tasks a scan of the open ones only.
_V17 = """
CREATE TABLE series_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    seconds REAL NOT NULL,
    sessions_done INTEGER NOT NULL DEFAULT 0,
    sessions_timeout INTEGER NOT NULL DEFAULT 0,
    sessions_protocol_error INTEGER NOT NULL DEFAULT 0,
    sessions_rpc_cap INTEGER NOT NULL DEFAULT 0,
    sessions_aborted INTEGER NOT NULL DEFAULT 0,
    rejected_session_cap INTEGER NOT NULL DEFAULT 0,
    rejected_storage_full INTEGER NOT NULL DEFAULT 0,
    faults INTEGER NOT NULL DEFAULT 0,
    tasks_pending INTEGER NOT NULL DEFAULT 0,
    tasks_in_progress INTEGER NOT NULL DEFAULT 0,
    tasks_done INTEGER NOT NULL DEFAULT 0,
    tasks_failed INTEGER NOT NULL DEFAULT 0,
    tasks_cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX series_samples_by_time ON series_samples (at);
CREATE INDEX tasks_open ON tasks (state) WHERE state IN ('pending', 'in_progress');
"""

_V18 = """
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
);
"""

# The processes serving CWMP (`nodes`) and, on each device, which of them runs its session
# until when: one session per device across all of them. Deleting a node's row (a clean
# stop, or one known to be dead) frees its devices through ON DELETE SET NULL.
_V19 = """
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    peer TEXT,
    started REAL NOT NULL
);
ALTER TABLE devices ADD COLUMN session_node INTEGER REFERENCES nodes (id) ON DELETE SET NULL;
ALTER TABLE devices ADD COLUMN session_until REAL;
"""

_V20 = """
CREATE TABLE stun_bindings (
    device_id INTEGER PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    username TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    address TEXT,
    port INTEGER,
    seen REAL,
    changed REAL
);
"""

_V21 = """
ALTER TABLE device_types ADD COLUMN connection_request_order TEXT;
"""

_V22 = """
ALTER TABLE stun_bindings ADD COLUMN node INTEGER REFERENCES nodes (id) ON DELETE SET NULL;
"""

# Migration 1's triggers looked for a conflict with one OR across the two serial columns.
# Once ANALYZE (PRAGMA optimize) has counted serial_number_alt, NULL on nearly every row,
# as one value shared by all of them, SQLite plans that OR as a scan of the whole table:
# 10 ms per new device at 100,000, most of a boot storm's time. One lookup per column keeps
# each on its own unique index whatever the statistics say.
_SERIALS_TAKEN = """
    EXISTS (SELECT 1 FROM devices WHERE serial_number = NEW.serial_number_alt{other})
    OR EXISTS (SELECT 1 FROM devices WHERE serial_number_alt = NEW.serial_number{other})
"""

_V23 = f"""
DROP TRIGGER devices_serials_insert;
DROP TRIGGER devices_serials_update;
CREATE TRIGGER devices_serials_insert BEFORE INSERT ON devices
WHEN {_SERIALS_TAKEN.format(other="")}
BEGIN
    SELECT RAISE(ABORT, 'serial number conflict');
END;
CREATE TRIGGER devices_serials_update BEFORE UPDATE OF serial_number, serial_number_alt ON devices
WHEN {_SERIALS_TAKEN.format(other=" AND id <> NEW.id")}
BEGIN
    SELECT RAISE(ABORT, 'serial number conflict');
END;
"""

# Most devices have no type, location or firmware image: ANALYZE counts the NULLs of each
# such column as one value shared by nearly every row, and SQLite then plans `type_id = ?`
# as a scan of the whole fleet (a device type's update_frequency reaching its devices, say).
# Indexes of the set references only: their statistics count the rows a lookup can find,
# and `col = ?` implies `col IS NOT NULL`, so SQLite uses them for it.
_REFERENCE_INDEXES = (
    ("devices_by_type", "type_id"),
    ("devices_by_location", "location_id"),
    ("devices_by_firmware", "firmware_image_id"),
)
V24 = "".join(
    f"DROP INDEX {name};\nCREATE INDEX {name} ON devices ({column}) WHERE {column} IS NOT NULL;\n"
    for name, column in _REFERENCE_INDEXES
)

MIGRATIONS: list[tuple[str, Migration]] = [
    ("initial schema", sql(_V1)),
    ("desired settings", sql(_V2)),
    ("backups and server secrets", sql(_V3)),
    ("index of scheduled tasks", sql(_V4)),
    ("indexes for device lists", sql(_V5)),
    ("device update_frequency inherited from the device type", sql(_V6)),
    ("index of tasks waiting for a retry", sql(_V7)),
    ("index of finished tasks", sql(_V8)),
    ("storage probe table", sql(_V9)),
    ("task kinds and arguments named as the RPCs", sql(_V10)),
    ("stored files", sql(_V11)),
    ("device tags, and the stored tree indexed by value", _v12),
    ("index of the audit entries", sql(_V13)),
    ("webhooks and their outbox", sql(_V14)),
    ("campaigns", sql(_V15)),
    ("operator accounts and their browser sessions", sql(_V16)),
    ("time series of the overview, index of open tasks", sql(_V17)),
    ("leases of the cluster-wide periodic jobs", sql(_V18)),
    ("nodes and the device session leases", sql(_V19)),
    ("STUN credentials and bindings of devices behind NAT", sql(_V20)),
    ("order of connection request methods per device type", sql(_V21)),
    ("the node whose STUN socket a binding goes through", sql(_V22)),
    ("serial-number triggers that stay on their indexes", sql(_V23)),
    ("device reference indexes of set references only", sql(V24)),
]


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: list[tuple[str, Migration]] | None = None) -> int:
    """Bring the schema up to date; returns the resulting version.

    `conn` must be in autocommit mode (isolation_level=None) and not inside a transaction.
    """
    steps = MIGRATIONS if migrations is None else migrations
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, description TEXT NOT NULL)"
    )
    current = schema_version(conn)
    if current > len(steps):
        raise SchemaError(
            f"database schema version {current} is newer than this program "
            f"(which knows up to {len(steps)}): run the newer acs that wrote it, or restore "
            "a backup made before the upgrade"
        )
    for version, (description, step) in enumerate(steps, start=1):
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if schema_version(conn) < version:
                step(conn)
                conn.execute(
                    "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                    (version, description),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return schema_version(conn)
