"""The storage layer: the only package that speaks SQL.

`Store` is the whole API: every caller writes ``store.get_device(...)``,
``store.queue_task(...)`` and so on, and imports everything from `acs.store` (the row
dataclasses and constants of `acs.store.models` are re-exported here).

Layout. `Store` is one class composed of one mixin per aggregate, each owning its tables
and all of their SQL:

- `devices`  devices, their Inform record and Up/Down, operational records, bulk seeding,
             the device list filters
- `tags`     device tags, one at a time and in bulk over a filter
- `webhooks` webhooks and their outbox of deliveries
- `tasks`    the task queue, its transitions, transfer notes, scheduling, task retention
- `campaigns` campaigns: their device sets, states and progress, over the task queue
- `settings` the parameter cache, desired settings, effective settings
- `catalog`  organizations, device types, locations
- `files`    firmware image and configuration backup rows
- `audit`    history, API tokens, session transcripts, server secrets, history retention
- `users`    operator accounts of the web UI and their browser sessions
- `series`   the overview's time series: a bounded table of per-minute samples
- `leases`   which process runs each cluster-wide periodic job, until when
- `nodes`    the processes serving CWMP, and which of them runs each device's session
- `stun`     devices' STUN credentials and the NAT bindings their Binding Requests keep

They stand on `db.Database`, the one place for what is SQLite's alone: the connection and
its PRAGMAs (WAL, foreign keys, busy timeout, journal size), transactions and savepoints
under one lock, full-storage detection for `health.StorageHealth`, probes and WAL
checkpoints, the file-level schema check and online backup of `acs db`, and the shared
helpers (`_one`/`_scalar`/`_all`, `_page` for count + page reads, `_delete_unless_used`,
`_insert_history`). Engine-neutral pieces sit beside them:
`checks` (argument validation every engine must do alike), `models` (the dataclasses
handed out), `errors`, `health`. `codec` turns rows into those dataclasses and
`migrations` holds the SQLite schema.

The PostgreSQL engine (`postgres`, ``database = "postgresql://..."``) keeps every
aggregate's SQL as it is: `Store.open` of a URL gives a subclass of `Store` whose
`postgres.PgEngine` replaces the SQLite-only parts of `Database` (write lock, probe,
checkpoint), over a connection that translates each statement once (`postgres.translate`:
the few SQLite-only constructs, listed there) and binds ``?`` parameters. Its schema is
`pgschema` (migration 19 written for PostgreSQL, and a delta per later migration). A new
statement in an aggregate that uses an SQLite-only construct fails on `make test-pg`
until `postgres.REWRITES` or the statement itself is made to work on both.

The storage seam: ``store.run(unit, *args)`` runs a unit of work (a function of one
transaction) and gives a Deferred of its result; ``store.read`` the same for reads
outside a transaction. SQLite runs units at once (the Deferred has fired on return);
PostgreSQL, once `start_pool` ran (the appliance does), in a bounded pool of threads with
a connection each, rerunning a unit after a serialization failure unless told not to.
Callers that must never wait on a database server (the CWMP resource) go through it.
"""

from acs.store.audit import Audit
from acs.store.campaigns import Campaigns
from acs.store.catalog import Catalog
from acs.store.db import backup_file, file_schema_version, is_postgresql, redacted
from acs.store.devices import Devices
from acs.store.errors import Conflict, NotFound, SchemaError, StoreError
from acs.store.files import Files
from acs.store.leases import Leases
from acs.store.models import (
    CANCELLED,
    DEFAULT_UPDATE_FREQUENCY,
    DONE,
    DOWN,
    FAILED,
    FRONT_PRIORITY,
    IN_PROGRESS,
    NORMAL_PRIORITY,
    OPERATIONAL_STATUSES,
    PENDING,
    ROLES,
    TASK_STATES,
    UP,
    ApiToken,
    Device,
    DeviceFilter,
    DeviceOrder,
    DeviceType,
    FirmwareImage,
    HistoryEntry,
    InformRecord,
    Location,
    OperationalRecord,
    Organization,
    Parameter,
    ParameterMatch,
    SeriesSample,
    SessionTranscript,
    Task,
    UiSession,
    User,
)
from acs.store.nodes import Nodes, NodeStatus, SessionHolder, file_nodes
from acs.store.series import Series
from acs.store.settings import Settings
from acs.store.stun import StunBinding, StunBindings
from acs.store.tags import Tags
from acs.store.tasks import Tasks
from acs.store.users import Users
from acs.store.webhooks import Webhooks


class Store(
    Devices,
    Tags,
    Campaigns,
    Tasks,
    Settings,
    Catalog,
    Files,
    Audit,
    Users,
    Webhooks,
    Series,
    Leases,
    Nodes,
    StunBindings,
):
    """Synchronous access to the appliance database: `Store.open(path)`, then any method of
    the aggregates (see the package docstring); `db.Database` says how it is used."""


__all__ = [
    "CANCELLED",
    "DEFAULT_UPDATE_FREQUENCY",
    "DONE",
    "DOWN",
    "FAILED",
    "FRONT_PRIORITY",
    "IN_PROGRESS",
    "NORMAL_PRIORITY",
    "OPERATIONAL_STATUSES",
    "PENDING",
    "ROLES",
    "TASK_STATES",
    "UP",
    "ApiToken",
    "Conflict",
    "Device",
    "DeviceFilter",
    "DeviceOrder",
    "DeviceType",
    "FirmwareImage",
    "HistoryEntry",
    "InformRecord",
    "Location",
    "NodeStatus",
    "NotFound",
    "OperationalRecord",
    "Organization",
    "Parameter",
    "ParameterMatch",
    "SchemaError",
    "SeriesSample",
    "SessionHolder",
    "SessionTranscript",
    "Store",
    "StoreError",
    "StunBinding",
    "Task",
    "UiSession",
    "User",
    "backup_file",
    "file_nodes",
    "file_schema_version",
    "is_postgresql",
    "redacted",
]
