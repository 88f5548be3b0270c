"""One virtual CPE: identity, data model, pending events, RPC handling and its CWMP sessions.

``SimulatedCPE.handle`` is the pure part (an ACS RPC in, the response or a Fault out); the
rest drives sessions over HTTP: Inform, empty POST, then RPCs until the ACS answers 204,
with HTTP Basic/Digest answered from the CPE's ManagementServer credentials, the ACS's
cookie sent back, undelivered events kept and retried with CWMP back-off, periodic informs
from ``PeriodicInformInterval`` and an offline window after Reboot/FactoryReset.

File transfers (``Download``/``Upload``, see ``cpe_sim.transfers``) run after the session
that asked for them, over their own HTTP client: the file is fetched (resuming with Range
after an interruption) and verified before anything is applied; a firmware image or a
restored configuration restarts the CPE (``1 BOOT``), and a ``TransferComplete`` with the
fault code goes out in the next session with ``7 TRANSFER COMPLETE`` + ``M Download``/
``M Upload``/``M ScheduleDownload``. A ``ScheduleDownload`` starts at its first window's
start (every window mode is taken as "at any time"); ``CancelTransfer`` drops a transfer
not yet started (9021 once it has). A failed transfer changes nothing on the CPE. Fault
injection: ``inject`` (this CPE) over ``Profile.faults`` (the fleet).

Diagnostics (``cpe_sim.diagnostics``): a SetParameterValues of a TR-143 test object's
``DiagnosticsState`` to ``Requested`` runs that test after the session; plausible results
follow a short delay, announced by an Inform with ``8 DIAGNOSTICS COMPLETE``.

CWMP versions: a CPE speaks one of ``CWMP_VERSIONS`` (default by data-model root: 1.3 for
TR-181, 1.0 for TR-098). It informs in that version's namespace, adds ``SessionTimeout`` from
1.3 and ``SupportedCWMPVersions`` from 1.4, and for the rest of the session adopts the lower of
its own version and what the ACS answered (``UseCWMPVersion``, else the InformResponse
namespace), as ICWMP does. ``HoldRequests`` from the ACS is honoured: while the ACS's last
message carried it, the CPE sends no request of its own (only responses or an empty POST); the
requests it held back go out once a message from the ACS lifts the hold.

Behind a NAT (``Profile.nat``, ``cpe-sim --nat``; see ``cpe_sim.nat``) a CPE reports
``NATDetected`` and is reached only by TR-111 UDP connection requests. Its STUN client follows
the ``STUN*`` parameters as soon as a session has set them and reports the mapped address as
``UDPConnectionRequestAddress``.

With an XMPP server (``Profile.xmpp``, ``cpe-sim --xmpp``; see ``cpe_sim.xmpp``) a TR-181
CPE keeps a connection to it while online, reports the JID it is bound to as
``ConnReqJabberID`` and is woken by TR-069 Annex K connection requests sent there.

All timing goes through the injected reactor (``IReactorTime``) and all HTTP through a
``SessionClient`` made per session by a factory, so scheduling is tested with
``task.Clock`` and a scripted client, and the real thing uses treq over the network.
"""

from __future__ import annotations

import base64
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import treq
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from acs import httpdigest
from acs.clock import Reactor
from acs.cwmp import rpc, soap
from acs.cwmp.cpe_session import (
    MAX_EXCHANGES,
    AcsRequest,
    CpeEvent,
    CpeSession,
    CpeSessionError,
    RequestAnswered,
    describe,
)
from acs.cwmp.flow import State
from acs.cwmp.versions import VERSIONS as CWMP_VERSIONS
from acs.cwmp.versions import defines, offered_versions, version_key
from cpe_sim import diagnostics, software, transfers
from cpe_sim.datamodel import CwmpFault, DataModel, Template
from cpe_sim.nat import Nat
from cpe_sim.transfers import Faults, TransferFailed
from cpe_sim.xmpp import Xmpp, XmppOptions

# RPC methods the simulator answers (GetRPCMethods).
SUPPORTED_METHODS = (
    "GetRPCMethods",
    "GetParameterNames",
    "GetParameterValues",
    "SetParameterValues",
    "GetParameterAttributes",
    "SetParameterAttributes",
    "AddObject",
    "DeleteObject",
    "Reboot",
    "FactoryReset",
    "Download",
    "Upload",
    "ScheduleInform",
    "GetQueuedTransfers",
    "GetAllQueuedTransfers",
    "ScheduleDownload",
    "CancelTransfer",
    "ChangeDUState",
)
MAX_QUEUED = 16  # QueuedTransferStruct entries of one answer (cwmp-1-0.xsd)

RECEIVED_LIMIT = 200  # ``received`` keeps the latest RPCs only: bounded memory in load runs
BOOTSTRAP = "0 BOOTSTRAP"
BOOT = "1 BOOT"
VALUE_CHANGE = "4 VALUE CHANGE"
# Notification attributes under which a change is reported (TR-069 A.3.2.4): passive ones at
# the next Inform, active ones in an Inform the CPE starts at once.
PASSIVE, ACTIVE = 1, 2
PERIODIC = "2 PERIODIC"
SCHEDULED = "3 SCHEDULED"
CONNECTION_REQUEST = "6 CONNECTION REQUEST"
TRANSFER_COMPLETE = "7 TRANSFER COMPLETE"


class SessionError(Exception):
    """A session failed (HTTP error, unexpected answer, bad credentials...)."""


class BackPressure(SessionError):
    """The ACS answered the Inform 503 with a Retry-After: try again after that many
    seconds instead of the TR-069 back-off (the events are kept, as for any failure)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"ACS busy (503), retry after {retry_after:g}s")
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date), None when
    absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


# --- HTTP seam ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    code: int
    headers: Mapping[str, list[str]]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class SessionClient(Protocol):
    """HTTP for one CWMP session: one connection and one cookie jar, closed at the end."""

    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Deferred[HttpResponse]: ...

    def close(self) -> Deferred[None]: ...


class TreqSessionClient:
    """``SessionClient`` over treq.

    A CWMP session belongs on one TCP connection (TR-069 §3.4.2; ACSs that key sessions
    by socket depend on it), so each session gets its own single-connection persistent
    pool instead of borrowing from a pool shared with other CPEs; it is closed when the
    session ends so thousands of CPEs don't keep idle sockets open.
    """

    def __init__(self, reactor: Reactor, timeout: float, *, reconnect: bool = False) -> None:
        self._reactor = reactor
        self._timeout = timeout
        # reconnect: a new connection per request, the session carried by the cookie alone.
        self._pool = HTTPConnectionPool(reactor, persistent=not reconnect)
        self._pool.maxPersistentPerHost = 1
        self._pool.retryAutomatically = False
        agent: Any = Agent(reactor, pool=self._pool)
        # One HTTPClient per session: its own cookie jar, so the ACS's session cookie is
        # sent back within the session and forgotten after it.
        self._http = treq.client.HTTPClient(agent)

    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Deferred[HttpResponse]:
        return Deferred.fromCoroutine(self._request(method, url, body, headers))

    async def _request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpResponse:
        hdrs: dict[bytes | str, bytes | str] = dict(headers.items())
        d = self._http.request(method, url, data=body, headers=hdrs)
        d.addTimeout(self._timeout, self._reactor)
        response = await d
        content = treq.content(response)
        content.addTimeout(self._timeout, self._reactor)
        data = await content
        received: dict[str, list[str]] = {
            k.decode("latin-1").lower(): [v.decode("latin-1") for v in vs]
            for k, vs in response.headers.getAllRawHeaders()
        }
        return HttpResponse(response.code, received, data)

    def close(self) -> Deferred[None]:
        d: Deferred[None] = self._pool.closeCachedConnections()
        return d


# --- configuration shared by many CPEs -------------------------------------------------------


@dataclass
class Profile:
    """Settings shared by every CPE of a fleet (kept once, not per CPE)."""

    reactor: Reactor
    acs_url: str
    acs_username: str = ""
    acs_password: str = ""
    interval: int | None = None  # initial PeriodicInformInterval; None: template default
    jitter: float = 0.1
    reboot_delay: float = 1.0
    periodic: bool = True
    http_timeout: float = 30.0
    session_timeout: int = 30
    manufacturer: str = "Acme Networks"
    oui: str = "00D09E"
    software_version: str = "1.0.0"
    reconnect: bool = False  # a new TCP connection per request (TreqSessionClient)
    retry_cap: int = 10  # back-off stops doubling after this many failures (TR-069 Table 3)
    rng: random.Random = field(default_factory=random.Random)
    client_factory: Callable[[], SessionClient] | None = None
    cwmp_version: str | None = None  # one of CWMP_VERSIONS; None: by data-model root
    faults: Faults = field(default_factory=Faults)  # fleet-wide transfer fault injection
    # Behind a NAT (cpe_sim.nat): reached by UDP connection requests only; needs a reactor
    # with listenUDP.
    nat: bool = False
    # The XMPP server of TR-181 CPEs (cpe_sim.xmpp); needs a reactor with connectTCP.
    xmpp: XmppOptions | None = None
    # The fleet's seed: derives what must be the same on every run (XMPP passwords).
    seed: int = 0

    def __post_init__(self) -> None:
        check_cwmp_version(self.cwmp_version)

    def new_client(self) -> SessionClient:
        if self.client_factory is not None:
            return self.client_factory()
        return TreqSessionClient(self.reactor, self.http_timeout, reconnect=self.reconnect)


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# --- CWMP versions -------------------------------------------------------------------------


def check_cwmp_version(version: str | None) -> None:
    """ValueError unless ``version`` is None or one of ``CWMP_VERSIONS``."""
    if version is not None and version not in CWMP_VERSIONS:
        raise ValueError(f"cwmp_version must be one of {', '.join(CWMP_VERSIONS)}, not {version!r}")


def default_cwmp_version(root: str) -> str:
    """TR-181 CPEs speak CWMP 1.3 (1.2 namespace plus SessionTimeout), TR-098 ones 1.0."""
    return "1.3" if root == "Device." else "1.0"


# --- the CPE -----------------------------------------------------------------------------


class SimulatedCPE:
    """One virtual home gateway. See the module docstring."""

    __slots__ = (
        "_again",
        "_boot_time",
        "_changed",
        "_counter",
        "_cpe_requests",
        "_current_waiters",
        "_events",
        "_in_flight",
        "_pending_actions",
        "_pending_waiters",
        "_periodic_call",
        "_periodic_interval",
        "_queued",
        "_reboot_call",
        "_retry_call",
        "_retry_count",
        "_scheduled",
        "_soon_call",
        "_stopped",
        "_timers",
        "_transfer_methods",
        "_transfer_waiters",
        "_transfers",
        "connection_request_url",
        "cwmp_version",
        "download_resumes",
        "factory_resets",
        "faults",
        "inject",
        "installs",
        "last_error",
        "model",
        "nat",
        "ns",
        "online",
        "profile",
        "reboots",
        "received",
        "serial",
        "session_ns",
        "session_version",
        "sessions_busy",
        "sessions_failed",
        "sessions_ok",
        "xmpp",
    )

    def __init__(
        self,
        serial: str,
        template: Template,
        profile: Profile,
        *,
        cwmp_version: str | None = None,
        connection_request_url: str = "",
    ) -> None:
        check_cwmp_version(cwmp_version)
        self.serial = serial
        self.profile = profile
        self.cwmp_version = (
            cwmp_version or profile.cwmp_version or default_cwmp_version(template.root)
        )
        # The namespace of our Informs; 1.3 and 1.4 keep the 1.2 one.
        self.ns = soap.CWMP_NS[self.cwmp_version]
        # What the last session settled on (None before the first InformResponse).
        self.session_version: str | None = None
        self.session_ns: str | None = None
        self.connection_request_url = connection_request_url
        # Its socket behind the NAT, STUN client and UDP connection requests (None: no NAT).
        self.nat: Nat | None = Nat(self) if profile.nat else None
        # Its XMPP connection for Annex K connection requests (None: no server, or TR-098).
        self.xmpp: Xmpp | None = None
        if profile.xmpp is not None and template.root == "Device.":
            self.xmpp = Xmpp(self, profile.xmpp)
        self.model = DataModel(template, self._factory_values(template))
        self.sessions_ok = 0
        self.sessions_failed = 0
        self.sessions_busy = 0  # of the failed: turned away with 503 + Retry-After
        self.reboots = 0
        self.factory_resets = 0
        self.installs = 0  # downloads (firmware, configuration) verified and applied
        self.faults = 0  # Faults this CPE answered ACS RPCs with
        self.last_error: str | None = None
        self.received: list[rpc.Message] = []
        self.online = True
        self._events: list[rpc.EventStruct] = [rpc.EventStruct(BOOTSTRAP)]
        # Parameters whose value changed under a notification, reported at the next Inform.
        self._changed: dict[str, None] = {}
        self._cpe_requests: list[rpc.Message] = []
        self._retry_count = 0
        self._counter = 0
        self._boot_time = float(profile.reactor.seconds())
        self._in_flight: Deferred[None] | None = None
        self._again = False
        self._stopped = False
        self._current_waiters: list[Deferred[None]] = []
        self._pending_waiters: list[Deferred[None]] = []
        self._pending_actions: list[tuple[str, Any]] = []
        self._periodic_call: DelayedCall | None = None
        self._periodic_interval: tuple[bool, int] | None = None
        self._retry_call: DelayedCall | None = None
        self._reboot_call: DelayedCall | None = None
        self._soon_call: DelayedCall | None = None
        self._timers: list[DelayedCall] = []  # ScheduleInform / Download delays
        self._transfers = 0  # downloads and uploads in progress
        # CommandKey -> "M Download"/"M Upload" of TransferCompletes not yet delivered.
        self._transfer_methods: dict[str, str] = {}
        # CommandKey -> the transfers the ACS asked for that have not completed, with their
        # state (1 not started, 2 in progress): GetQueuedTransfers, GetAllQueuedTransfers.
        self._queued: dict[str, rpc.AllQueuedTransfer] = {}
        self._scheduled: set[str] = set()  # CommandKeys of ScheduleDownloads
        # Per-CPE transfer fault injection; None: the fleet-wide ``profile.faults``.
        self.inject: Faults | None = None
        self.download_resumes = 0  # downloads continued with Range after an interruption
        self._transfer_waiters: list[Deferred[None]] | None = None  # stop() waiting on them

    # -- identity --

    @property
    def root(self) -> str:
        return self.model.root

    @property
    def product_class(self) -> str:
        return self.model.get_raw(self.root + "DeviceInfo.ProductClass") or ""

    @property
    def device_id(self) -> rpc.DeviceId:
        r = self.root
        return rpc.DeviceId(
            manufacturer=self.model.get_raw(r + "DeviceInfo.Manufacturer") or "",
            oui=self.model.get_raw(r + "DeviceInfo.ManufacturerOUI") or "",
            product_class=self.product_class,
            serial_number=self.serial,
        )

    @property
    def pending_events(self) -> tuple[rpc.EventStruct, ...]:
        return tuple(self._events)

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    @property
    def active_faults(self) -> Faults:
        """The transfer faults in force: this CPE's ``inject``, else the fleet's."""
        return self.inject if self.inject is not None else self.profile.faults

    @property
    def stopped(self) -> bool:
        """True after ``stop()`` until the next ``start()``."""
        return self._stopped

    def _factory_values(self, template: Template) -> dict[str, str]:
        """What differs from the template right out of the factory (and after a reset)."""
        p, r = self.profile, template.root
        values = {
            r + "DeviceInfo.SerialNumber": self.serial,
            r + "ManagementServer.URL": p.acs_url,
            r + "ManagementServer.Username": p.acs_username,
            r + "ManagementServer.Password": p.acs_password,
            r + "DeviceInfo.Manufacturer": p.manufacturer,
            r + "DeviceInfo.ManufacturerOUI": p.oui,
            r + "DeviceInfo.SoftwareVersion": p.software_version,
        }
        if self.connection_request_url:
            values[r + "ManagementServer.ConnectionRequestURL"] = self.connection_request_url
        if p.interval is not None:
            values[r + "ManagementServer.PeriodicInformInterval"] = str(p.interval)
        if self.nat is not None:
            values[r + "ManagementServer.NATDetected"] = "true"
        if self.xmpp is not None:
            values.update(self.xmpp.factory_values())
        return values

    def set_connection_request_url(self, url: str) -> None:
        self.connection_request_url = url
        self.model.set_raw(self.root + "ManagementServer.ConnectionRequestURL", url)

    def value(self, path: str) -> str | None:
        """The stored value of ``path`` (passwords included: this is for assertions)."""
        return self.model.get_raw(path)

    @property
    def connection_request_credentials(self) -> tuple[str, str]:
        r = self.root
        return (
            self.model.get_raw(r + "ManagementServer.ConnectionRequestUsername") or "",
            self.model.get_raw(r + "ManagementServer.ConnectionRequestPassword") or "",
        )

    # -- events --

    def add_event(self, event: rpc.EventStruct) -> None:
        # Single events (0-14) are not cumulative; "M <method>" ones are kept per CommandKey.
        if event.code.startswith("M "):
            if event not in self._events:
                self._events.append(event)
        elif all(e.code != event.code for e in self._events):
            self._events.append(event)

    # -- the pure part: one ACS RPC in, the response or a Fault out --

    def handle(self, request: rpc.Message) -> rpc.Message:
        """Answer one ACS request. Side effects are only state changes of this CPE."""
        self.received.append(request)
        if len(self.received) > RECEIVED_LIMIT:
            del self.received[: len(self.received) - RECEIVED_LIMIT]
        try:
            reply = self._dispatch(request)
        except CwmpFault as e:
            reply = e.fault
        if isinstance(reply, rpc.Fault):
            self.faults += 1
        return reply

    def _dispatch(self, m: rpc.Message) -> rpc.Message:
        model = self.model
        if isinstance(m, rpc.GetRPCMethods):
            return rpc.GetRPCMethodsResponse(
                tuple(
                    name
                    for name in SUPPORTED_METHODS
                    if defines(self.cwmp_version, rpc.MESSAGE_TYPES[name])
                    and (name != "ChangeDUState" or software.supported(model))
                )
            )
        if isinstance(
            m, rpc.GetParameterNames | rpc.GetParameterValues | rpc.GetParameterAttributes
        ):
            self._refresh_live_values()
        if isinstance(m, rpc.GetParameterNames):
            return rpc.GetParameterNamesResponse(
                tuple(model.get_parameter_names(m.path, m.next_level))
            )
        if isinstance(m, rpc.GetParameterValues):
            return rpc.GetParameterValuesResponse(tuple(model.get_parameter_values(m.names)))
        if isinstance(m, rpc.SetParameterValues):
            url_before = model.get_raw(self.root + "ManagementServer.URL")
            model.set_parameter_values(m.parameters, m.parameter_key)
            if model.get_raw(self.root + "ManagementServer.URL") != url_before:
                # A new ACS means a new relationship: the next Inform is a BOOTSTRAP.
                self._pending_actions.append(("bootstrap", None))
            for obj in diagnostics.requested(self.root, m.parameters):
                self._pending_actions.append(("diagnostics", obj))
            return rpc.SetParameterValuesResponse(0)
        if isinstance(m, rpc.GetParameterAttributes):
            return rpc.GetParameterAttributesResponse(
                tuple(model.get_parameter_attributes(m.names))
            )
        if isinstance(m, rpc.SetParameterAttributes):
            model.set_parameter_attributes(m.parameters)
            return rpc.SetParameterAttributesResponse()
        if isinstance(m, rpc.AddObject):
            number = model.add_object(m.object_name, m.parameter_key)
            return rpc.AddObjectResponse(number, 0)
        if isinstance(m, rpc.DeleteObject):
            model.delete_object(m.object_name, m.parameter_key)
            return rpc.DeleteObjectResponse(0)
        if isinstance(m, rpc.Reboot):
            self._pending_actions.append(("reboot", m.command_key))
            return rpc.RebootResponse()
        if isinstance(m, rpc.FactoryReset):
            self._pending_actions.append(("factory_reset", None))
            return rpc.FactoryResetResponse()
        if isinstance(m, rpc.ScheduleInform):
            if m.delay_seconds <= 0:
                return rpc.Fault(9003, "Invalid arguments: DelaySeconds must be > 0", "Client")
            self._pending_actions.append(("schedule_inform", m))
            return rpc.ScheduleInformResponse()
        if isinstance(m, rpc.GetQueuedTransfers):
            listed = list(self._queued.values())[:MAX_QUEUED]
            return rpc.GetQueuedTransfersResponse(
                tuple(rpc.QueuedTransfer(t.command_key, t.state) for t in listed)
            )
        if isinstance(m, rpc.GetAllQueuedTransfers):
            version = version_key(self.session_version or self.cwmp_version) or (1, 0)
            return rpc.GetAllQueuedTransfersResponse(
                tuple(
                    replace(
                        t, file_type=transfers.listed_file_type(t.file_type, t.is_download, version)
                    )
                    for t in list(self._queued.values())[:MAX_QUEUED]
                )
            )
        if isinstance(m, rpc.Download):
            return self._accept_download(m)
        if isinstance(m, rpc.ScheduleDownload):
            return self._accept_scheduled_download(m)
        if isinstance(m, rpc.Upload):
            return self._accept_upload(m)
        if isinstance(m, rpc.CancelTransfer):
            return self._cancel_transfer(m)
        if isinstance(m, rpc.ChangeDUState) and software.supported(model):
            self._pending_actions.append(("change_du_state", m))
            return rpc.ChangeDUStateResponse()
        return rpc.Fault(9000, f"Method not supported: {type(m).__name__}", "Server")

    def _accept_download(self, m: rpc.Download) -> rpc.Message:
        if urlsplit(m.url).scheme not in ("http", "https"):
            return rpc.Fault(9013, "Unsupported protocol for file transfer", "Server")
        if m.delay_seconds < 0:
            return rpc.Fault(9003, "Invalid arguments: negative DelaySeconds", "Client")
        self._pending_actions.append(("download", m))
        self._queue_transfer(m.command_key, True, m.file_type, m.file_size, m.target_file_name)
        # Status 1: not done yet; a TransferComplete follows in a later session.
        return rpc.DownloadResponse(1)

    def _accept_scheduled_download(self, m: rpc.ScheduleDownload) -> rpc.Message:
        """Run at the start of the first window (every mode is taken as "at any time")."""
        if urlsplit(m.url).scheme not in ("http", "https"):
            return rpc.Fault(9013, "Unsupported protocol for file transfer", "Server")
        windows = m.time_windows
        if not 1 <= len(windows) <= 2 or any(w.window_end < w.window_start for w in windows):
            return rpc.Fault(9003, "Invalid arguments: TimeWindowList", "Client")
        download = rpc.Download(
            command_key=m.command_key,
            file_type=m.file_type,
            url=m.url,
            username=m.username,
            password=m.password,
            file_size=m.file_size,
            target_file_name=m.target_file_name,
            delay_seconds=windows[0].window_start,
        )
        self._scheduled.add(m.command_key)
        self._pending_actions.append(("download", download))
        self._queue_transfer(m.command_key, True, m.file_type, m.file_size, m.target_file_name)
        return rpc.ScheduleDownloadResponse()

    def _queue_transfer(
        self, key: str, is_download: bool, file_type: str, size: int = 0, name: str = ""
    ) -> None:
        self._queued[key] = rpc.AllQueuedTransfer(key, 1, is_download, file_type, size, name)

    def _cancel_transfer(self, m: rpc.CancelTransfer) -> rpc.Message:
        queued = self._queued.get(m.command_key)
        if queued is None:
            return rpc.Fault(9003, "Invalid arguments: no such transfer", "Client")
        if queued.state != 1:
            return rpc.Fault(
                9021, "Cancelation of file transfer not permitted in current transfer state",
                "Client",
            )  # fmt: skip
        # Not started: forgotten (a timer still due finds it gone, see _download/_upload).
        del self._queued[m.command_key]
        self._scheduled.discard(m.command_key)
        return rpc.CancelTransferResponse()

    def _accept_upload(self, m: rpc.Upload) -> rpc.Message:
        if urlsplit(m.url).scheme not in ("http", "https"):
            return rpc.Fault(9013, "Unsupported protocol for file transfer", "Server")
        if m.delay_seconds < 0:
            return rpc.Fault(9003, "Invalid arguments: negative DelaySeconds", "Client")
        if not m.file_type.startswith(transfers.CONFIG_FILE_TYPES + transfers.LOG_FILE_TYPES):
            return rpc.Fault(9003, f"Invalid arguments: cannot upload {m.file_type!r}", "Client")
        self._pending_actions.append(("upload", m))
        self._queue_transfer(m.command_key, False, m.file_type)
        return rpc.UploadResponse(1)

    def _refresh_live_values(self) -> None:
        now = float(self.profile.reactor.seconds())
        r = self.root
        self.model.set_raw(r + "DeviceInfo.UpTime", str(max(0, int(now - self._boot_time))))
        self.model.set_raw(r + "Time.CurrentLocalTime", iso_time(now))

    # -- session scheduling --

    def inform(self, *events: rpc.EventStruct) -> Deferred[None]:
        """Add ``events`` and run a session now (or right after the one in flight).

        Fires when the session carrying the events completes, whether it succeeded or
        failed (see ``sessions_ok``/``sessions_failed``/``last_error``); never errbacks.
        """
        for e in events:
            self.add_event(e)
        d: Deferred[None] = Deferred()
        self._pending_waiters.append(d)
        self.request_session(again=True)
        return d

    def send_request(self, message: rpc.Message) -> Deferred[None]:
        """Send a CPE-initiated request (GetRPCMethods, RequestDownload, Kicked...) in a new
        session; fires like ``inform()``. ValueError for a message that is not one, or that
        this CPE's CWMP version lacks (AutonomousTransferComplete before 1.1)."""
        kind = type(message)
        if kind not in rpc.CPE_REQUESTS or kind is rpc.Inform:
            raise ValueError(f"{kind.__name__} is not a CPE request")
        if not defines(self.cwmp_version, kind):
            raise ValueError(f"CWMP {self.cwmp_version} has no {kind.__name__}")
        self._cpe_requests.append(message)
        return self.inform()

    def next_session(self) -> Deferred[None]:
        """Fires when the next session completes (ok or failed); never errbacks."""
        d: Deferred[None] = Deferred()
        if self._in_flight is not None:
            self._current_waiters.append(d)
        else:
            self._pending_waiters.append(d)
        return d

    def connection_request(self) -> bool:
        """A connection request arrived: False when offline (rebooting) or stopped."""
        if not self.online or self._stopped:
            return False
        self.add_event(rpc.EventStruct(CONNECTION_REQUEST))
        self.request_session(soon=True)
        return True

    def request_session(self, *, soon: bool = False, again: bool = False) -> None:
        """Start a session (now, or on the next reactor turn when ``soon``); coalesces.

        While a session is in flight nothing starts: events still undelivered when it ends
        start the next one (so a request whose event the current Inform carries needs no
        extra session); ``again`` forces one even without new events.
        """
        if self._stopped or not self.online:
            return
        if self._in_flight is not None:
            self._again = self._again or again
            return
        if soon:
            # Answer the connection request's HTTP first, then open the session; several
            # requests before the session starts share it.
            if self._soon_call is None or not self._soon_call.active():
                self._soon_call = self.profile.reactor.callLater(0, self._soon)
            return
        self._start_session()

    def _soon(self) -> None:
        self._soon_call = None
        self.request_session()

    def start(self, delay: float = 0.0) -> None:
        """Power on: the first (BOOTSTRAP) Inform after ``delay`` seconds, then periodic."""
        self._stopped = False
        if self.nat is not None:
            self.nat.start()
        self._boot_time = float(self.profile.reactor.seconds()) + delay
        self._reboot_call = self.profile.reactor.callLater(delay, self._power_on)

    def _power_on(self) -> None:
        self._reboot_call = None
        self.online = True
        self._boot_time = float(self.profile.reactor.seconds())
        self._schedule_periodic(force=True)
        if self.nat is not None:
            self.nat.configure()  # STUN on again, if it was on before the restart
        if self.xmpp is not None:
            self.xmpp.configure()  # connects (again)
        self.request_session()

    def stop(self) -> Deferred[None]:
        """Go silent: cancel every timer; fires when the session in flight (if any) ends."""
        self._stopped = True
        for call in (self._periodic_call, self._retry_call, self._reboot_call, self._soon_call):
            if call is not None and call.active():
                call.cancel()
        for call in self._timers:
            if call.active():
                call.cancel()
        self._timers = []
        self._periodic_call = self._retry_call = self._reboot_call = self._soon_call = None
        waits: list[Deferred[None]] = []
        if self.nat is not None:
            waits.append(self.nat.stop())
        if self.xmpp is not None:
            waits.append(self.xmpp.stop())
        if self._transfers:
            w: Deferred[None] = Deferred()
            self._transfer_waiters = [*(self._transfer_waiters or []), w]
            waits.append(w)
        if self._in_flight is not None:
            d: Deferred[None] = Deferred()
            self._current_waiters.append(d)
            waits.append(d)
        if not waits:
            return succeed(None)
        return gatherResults(waits).addCallback(lambda _: None)

    def _start_session(self) -> None:
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        self._again = False
        self._current_waiters, self._pending_waiters = self._pending_waiters, []
        d = Deferred.fromCoroutine(self._session())
        self._in_flight = d
        d.addBoth(self._session_done)

    def _session_done(self, result: Failure | None) -> None:
        self._in_flight = None
        ok = not isinstance(result, Failure)
        if ok:
            self.sessions_ok += 1
            self._retry_count = 0
            self.last_error = None
        else:
            assert isinstance(result, Failure)
            self.sessions_failed += 1
            self.sessions_busy += isinstance(result.value, BackPressure)
            self._retry_count += 1
            self.last_error = (
                str(result.value)
                if isinstance(result.value, SessionError)
                else f"{type(result.value).__name__}: {result.value}"
            )
        waiters, self._current_waiters = self._current_waiters, []
        self._keep_transfer_events()
        if self._stopped:
            self._pending_actions = []
        restarting = self._run_pending_actions()
        if self.nat is not None:
            # The session may have set the STUN parameters: the client follows at once.
            self.nat.configure()
        if self.xmpp is not None:
            self.xmpp.configure()  # and the XMPP ones
        carry_on = ok and not self._stopped and not restarting
        if not ok and not self._stopped and not restarting:
            assert isinstance(result, Failure)
            wait = result.value.retry_after if isinstance(result.value, BackPressure) else None
            self._schedule_retry(wait)
        elif carry_on:
            self._schedule_periodic()
        # Waiters first: their callbacks may call next_session() for the session below.
        for w in waiters:
            w.callback(None)
        more = self._again or self._events or self._cpe_requests
        if carry_on and more and self._in_flight is None and self.online and not self._stopped:
            self._start_session()

    def _keep_transfer_events(self) -> None:
        """Events of a TransferComplete not yet delivered stay pending (TR-069 Table 7):
        the Inform that carried them may have gone out while the request was held back."""
        for request in self._cpe_requests:
            if isinstance(request, rpc.TransferComplete):
                method = self._transfer_methods.get(request.command_key, "M Download")
                self.add_event(rpc.EventStruct(TRANSFER_COMPLETE))
                self.add_event(rpc.EventStruct(method, request.command_key))
            elif isinstance(request, rpc.DUStateChangeComplete):
                self.add_event(rpc.EventStruct(software.EVENT))
                self.add_event(rpc.EventStruct(software.METHOD_EVENT, request.command_key))

    def _run_pending_actions(self) -> bool:
        """Apply what the session's RPCs asked for; True when the CPE goes offline."""
        actions, self._pending_actions = self._pending_actions, []
        restarting = False
        for kind, arg in actions:
            if kind == "bootstrap":
                self.add_event(rpc.EventStruct(BOOTSTRAP))
                self._again = True
            elif kind == "schedule_inform":
                self._later(arg.delay_seconds, self._scheduled_inform, arg.command_key)
            elif kind == "diagnostics":
                self._later(diagnostics.DELAY, self._diagnostics_done, arg)
            elif kind == "download":
                self._later(max(arg.delay_seconds, 0), self._download, arg)
            elif kind == "upload":
                self._later(max(arg.delay_seconds, 0), self._upload, arg)
            elif kind == "change_du_state":
                self._later(0, self._change_du_state, arg)
            elif kind == "restart" and not restarting:
                restarting = True  # an install that finished during a session
                self._go_offline("upgrade", None)
            elif kind in ("reboot", "factory_reset") and not restarting:
                restarting = True
                self._go_offline(kind, arg)
        return restarting

    def _later(self, delay: float, f: Callable[..., None], *args: Any) -> None:
        if self._stopped:
            return
        self._timers = [c for c in self._timers if c.active()]
        self._timers.append(self.profile.reactor.callLater(delay, f, *args))

    def _diagnostics_done(self, obj: str) -> None:
        if self._stopped:
            return
        diagnostics.complete(self.model, obj, iso_time(float(self.profile.reactor.seconds())))
        self.add_event(rpc.EventStruct(diagnostics.EVENT))
        self.request_session()

    def _scheduled_inform(self, command_key: str) -> None:
        self.add_event(rpc.EventStruct(SCHEDULED))
        self.add_event(rpc.EventStruct("M ScheduleInform", command_key))
        self.request_session()

    def _go_offline(self, kind: str, command_key: str | None) -> None:
        self.online = False
        if self.nat is not None:
            self.nat.configure()  # offline: STUN stops
        if self.xmpp is not None:
            self.xmpp.configure()  # offline: the XMPP connection closes
        for call in (self._periodic_call, self._retry_call, self._soon_call):
            if call is not None and call.active():
                call.cancel()
        self._periodic_call = self._retry_call = self._soon_call = None
        if kind == "factory_reset":
            self.factory_resets += 1
            self.model.reset(self._factory_values(self.model.template))
            self._events = [rpc.EventStruct(BOOTSTRAP), rpc.EventStruct(BOOT)]
            self._cpe_requests = []
            self._changed = {}
        elif kind == "reboot":
            self.reboots += 1
            self.add_event(rpc.EventStruct(BOOT))
            self.add_event(rpc.EventStruct("M Reboot", command_key or ""))
        else:  # a firmware upgrade restarts the CPE too
            self.add_event(rpc.EventStruct(BOOT))
        self._retry_count = 0
        self._reboot_call = self.profile.reactor.callLater(
            self.profile.reboot_delay, self._power_on
        )

    def _schedule_retry(self, retry_after: float | None = None) -> None:
        """CWMP session retry (TR-069 §3.2.1.1): a random wait in a window that doubles, or
        the ACS's Retry-After when it turned the session away with 503."""
        if retry_after is not None:
            self._retry_call = self.profile.reactor.callLater(retry_after, self._retry)
            return
        r = self.root
        try:
            minimum = int(
                self.model.get_raw(r + "ManagementServer.CWMPRetryMinimumWaitInterval") or 5
            )
            multiplier = int(
                self.model.get_raw(r + "ManagementServer.CWMPRetryIntervalMultiplier") or 2000
            )
        except ValueError:
            minimum, multiplier = 5, 2000
        delay = retry_delay(
            self._retry_count,
            self.profile.rng,
            minimum=minimum,
            multiplier=multiplier / 1000,
            cap=self.profile.retry_cap,
        )
        self._retry_call = self.profile.reactor.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._retry_call = None
        self.request_session()

    def _periodic_settings(self) -> tuple[bool, int]:
        r = self.root
        enabled = self.model.get_raw(r + "ManagementServer.PeriodicInformEnable") == "true"
        interval = int(self.model.get_raw(r + "ManagementServer.PeriodicInformInterval") or 0)
        return enabled and self.profile.periodic and interval > 0, interval

    def _schedule_periodic(self, *, force: bool = False) -> None:
        """(Re)arm the periodic timer when its settings changed (or when ``force``)."""
        settings = self._periodic_settings()
        if (
            not force
            and settings == self._periodic_interval
            and (self._periodic_call is not None or not settings[0])
        ):
            return
        self._periodic_interval = settings
        if self._periodic_call is not None and self._periodic_call.active():
            self._periodic_call.cancel()
        self._periodic_call = None
        enabled, interval = settings
        if enabled and not self._stopped:
            self._periodic_call = self.profile.reactor.callLater(
                jittered(interval, self.profile.jitter, self.profile.rng), self._periodic
            )

    def _periodic(self) -> None:
        self._periodic_call = None
        self.add_event(rpc.EventStruct(PERIODIC))
        self._schedule_periodic(force=True)
        self.request_session()

    # -- one session --

    def _next_id(self) -> str:
        self._counter += 1
        return f"{self.serial}-{self._counter}"

    def change_value(self, path: str, value: str) -> None:
        """The parameter ``path`` (absolute, or relative to the data-model root) changes by
        itself, as a real CPE's do (a user, the line, another management protocol). Under a
        passive notification the change is reported at the next Inform (``4 VALUE CHANGE``),
        under an active one in an Inform started now; without one, nowhere."""
        name = path if path.startswith(self.root) else self.root + path
        if self.model.param_def(name) is None:
            raise ValueError(f"{self.serial}: no parameter {name}")
        self.model.set_raw(name, value)
        notification = self.model.notification(name)
        if notification not in (PASSIVE, ACTIVE):
            return
        self._changed[name] = None
        self.add_event(rpc.EventStruct(VALUE_CHANGE))
        if notification == ACTIVE:
            self.request_session(soon=True)

    def build_inform(self) -> rpc.Inform:
        self._refresh_live_values()
        forced = self.model.template.forced
        names = [*forced, *(n for n in self._changed if n not in forced)]
        return rpc.Inform(
            device_id=self.device_id,
            events=tuple(self._events),
            current_time=iso_time(float(self.profile.reactor.seconds())),
            retry_count=self._retry_count,
            parameters=tuple(self.model.values(names)),
            max_envelopes=1,
        )

    async def _session(self) -> None:
        client = self.profile.new_client()
        try:
            await self._exchange(client)
        finally:
            await client.close()

    def inform_header(self) -> soap.Header:
        """The Inform's SOAP header (with the next cwmp:ID): what our CWMP version announces."""
        key = version_key(self.cwmp_version) or (1, 0)
        return soap.Header(
            id=self._next_id(),
            # SessionTimeout is CWMP 1.3 (XSD-1.3), SupportedCWMPVersions 1.4 (XSD-1.4).
            session_timeout=self.profile.session_timeout if key >= (1, 3) else None,
            supported_versions=offered_versions(self.cwmp_version) if key >= (1, 4) else None,
        )

    async def _exchange(self, client: SessionClient) -> None:
        url = self.model.get_raw(self.root + "ManagementServer.URL") or self.profile.acs_url
        auth = _Auth(self)
        inform = self.build_inform()
        session = CpeSession(self.cwmp_version, self.ns, max_exchanges=MAX_EXCHANGES)

        async def post(body: bytes | None) -> CpeEvent:
            response = await self._send(client, auth, url, body)
            if response.code == 503 and session.state is State.INFORM_SENT:
                wait = parse_retry_after(
                    response.header("retry-after"), float(self.profile.reactor.seconds())
                )
                if wait is not None:
                    raise BackPressure(wait)
            try:
                return session.receive(response.code, response.body)
            except CpeSessionError as e:
                raise SessionError(str(e)) from None

        event = await post(session.inform(inform, self.inform_header()))
        self.session_version, self.session_ns = session.version, session.ns
        # Delivered: drop the events just sent, except BOOTSTRAP, kept until the session
        # succeeds (a bootstrap the ACS never finished processing must be repeated).
        sent = set(inform.events)
        self._events = [e for e in self._events if e not in sent or e.code == BOOTSTRAP]
        if any(e.code == VALUE_CHANGE for e in sent):
            # A value that changed again while the Inform was on its way is still to report.
            reported = {p.name: p.value for p in inform.parameters}
            self._changed = {
                n: None
                for n in self._changed
                if n not in reported or self.model.get_raw(n) != reported[n]
            }
            if self._changed:
                self.add_event(rpc.EventStruct(VALUE_CHANGE))
        while not session.done:
            body: bytes | None
            try:
                if isinstance(event, AcsRequest):
                    body = session.answer(self.handle(event.message), event.cwmp_id)
                else:
                    body = session.next_post(self._cpe_requests, self._next_id())
            except CpeSessionError as e:
                raise SessionError(str(e)) from None
            event = await post(body)
            if isinstance(event, RequestAnswered):
                if isinstance(event.answer, rpc.Fault):
                    raise SessionError(
                        f"ACS answered {type(event.request).__name__} with {describe(event.answer)}"
                    )
                self._cpe_requests.pop(0)
                if isinstance(event.request, rpc.TransferComplete):
                    self._transfer_methods.pop(event.request.command_key, None)
        self._events = [e for e in self._events if not (e in sent and e.code == BOOTSTRAP)]

    async def _send(
        self, client: SessionClient, auth: _Auth, url: str, body: bytes | None
    ) -> HttpResponse:
        headers: dict[str, str] = {}
        if body is not None:
            headers["Content-Type"] = 'text/xml; charset="utf-8"'
            headers["SOAPAction"] = ""
        path = _request_uri(url)
        if auth.challenge is not None:
            headers["Authorization"] = auth.answer("POST", path)
        response = await client.request("POST", url, body, headers)
        if response.code != 401:
            return response
        challenge = response.header("www-authenticate")
        if not challenge:
            raise SessionError("ACS answered 401 without a challenge")
        auth.set_challenge(challenge)
        headers["Authorization"] = auth.answer("POST", path)
        response = await client.request("POST", url, body, headers)
        if response.code == 401:
            raise SessionError("ACS rejected the CPE's credentials (second 401)")
        return response

    # -- Download / Upload: move the file, report TransferComplete in a new session --

    def _download(self, m: rpc.Download) -> None:
        queued = self._queued.get(m.command_key)
        if self._stopped or queued is None:  # stopped, or cancelled (CancelTransfer)
            return
        start = iso_time(float(self.profile.reactor.seconds()))
        self._transfers += 1
        self._queued[m.command_key] = replace(queued, state=2)
        d = Deferred.fromCoroutine(self._fetch(m))
        d.addBoth(self._downloaded, m, start)
        d.addBoth(self._transfer_finished)

    def _upload(self, m: rpc.Upload) -> None:
        queued = self._queued.get(m.command_key)
        if self._stopped or queued is None:  # stopped, or cancelled (CancelTransfer)
            return
        start = iso_time(float(self.profile.reactor.seconds()))
        self._transfers += 1
        self._queued[m.command_key] = replace(queued, state=2)
        d = Deferred.fromCoroutine(self._put(m))
        d.addBoth(self._uploaded, m, start)
        d.addBoth(self._transfer_finished)

    def _change_du_state(self, m: rpc.ChangeDUState) -> None:
        if self._stopped:
            return
        self._transfers += 1
        d = Deferred.fromCoroutine(
            software.change(self.model, m.operations, self._fetch_unit, self._now_iso)
        )
        d.addBoth(self._du_state_changed, m)
        d.addBoth(self._transfer_finished)

    def _now_iso(self) -> str:
        return iso_time(float(self.profile.reactor.seconds()))

    async def _fetch_unit(self, url: str, username: str, password: str) -> bytes:
        client = self.profile.new_client()
        try:
            return await transfers.fetch(
                client, url, headers=_basic_auth(username, password), faults=self.active_faults
            )
        finally:
            await client.close()

    def _du_state_changed(
        self, result: tuple[rpc.OpResult, ...] | Failure, m: rpc.ChangeDUState
    ) -> None:
        if isinstance(result, Failure):  # a bug here: still report, or the ACS waits
            problem = f"simulator error: {type(result.value).__name__}"
            result = tuple(software.failed(op, 9017, problem) for op in m.operations)
        self._cpe_requests.append(rpc.DUStateChangeComplete(result, m.command_key))
        self.add_event(rpc.EventStruct(software.EVENT))
        self.add_event(rpc.EventStruct(software.METHOD_EVENT, m.command_key))
        self.request_session()

    def _transfer_finished(self, result: object) -> None:
        self._transfers -= 1
        if self._transfers == 0 and self._transfer_waiters:
            waiters, self._transfer_waiters = self._transfer_waiters, None
            for w in waiters:
                w.callback(None)

    async def _fetch(self, m: rpc.Download) -> tuple[str, Any]:
        """Fetch and validate the file; what installing it does, nothing applied yet."""
        faults = self.active_faults
        client = self.profile.new_client()
        try:
            data = await transfers.fetch(
                client,
                m.url,
                headers=_basic_auth(m.username, m.password),
                file_size=m.file_size,
                faults=faults,
                on_resume=self._resumed,
            )
        finally:
            await client.close()
        if m.file_type.startswith("1"):
            name = m.target_file_name or urlsplit(m.url).path.rsplit("/", 1)[-1]
            version = transfers.prepare_firmware(data, name, corrupted=faults.corrupt_download)
            return "firmware", version
        if m.file_type.startswith("3") and transfers.is_config(data):
            return "config", transfers.prepare_config(self.model, data)
        if faults.corrupt_download:
            # No content check for this file: the injected corruption is the device's verdict.
            raise TransferFailed(transfers.CORRUPTED, "file rejected: integrity check failed")
        # Web content, tones, or a vendor file in a format this simulator doesn't apply:
        # acknowledged, nothing changes, no restart.
        return "other", None

    def _resumed(self, offset: int) -> None:
        self.download_resumes += 1

    def _downloaded(self, result: tuple[str, Any] | Failure, m: rpc.Download, start: str) -> None:
        code, message = _transfer_outcome(result)
        scheduled = m.command_key in self._scheduled
        self._scheduled.discard(m.command_key)
        method = "M ScheduleDownload" if scheduled else "M Download"
        self._queue_transfer_complete(method, m.command_key, code, message, start)
        if code == 0 and not isinstance(result, Failure) and self._install(*result):
            if self._in_flight is not None:
                self._pending_actions.append(("restart", None))  # after this session
                return
            if self.online and not self._stopped:
                self._go_offline("upgrade", None)
                return
        self.request_session()

    def _install(self, kind: str, payload: Any) -> bool:
        """Apply a verified download; True when the CPE restarts to take it into use."""
        if kind in ("firmware", "config"):
            self.installs += 1
        if kind == "firmware":
            if payload is not None:
                self.model.set_raw(self.root + "DeviceInfo.SoftwareVersion", payload)
            return True
        if kind == "config":
            for name, value in payload.items():
                self.model.set_raw(name, value)
            return True
        return False

    async def _put(self, m: rpc.Upload) -> None:
        if m.file_type.startswith(transfers.CONFIG_FILE_TYPES):
            body = transfers.serialize_config(self.model, self.serial)
        else:
            body = transfers.log_file(
                self.serial, [f"sessions ok {self.sessions_ok} failed {self.sessions_failed}"]
            )
        client = self.profile.new_client()
        try:
            await transfers.upload(
                client,
                m.url,
                body,
                headers=_basic_auth(m.username, m.password),
                faults=self.active_faults,
            )
        finally:
            await client.close()

    def _uploaded(self, result: Failure | None, m: rpc.Upload, start: str) -> None:
        code, message = _transfer_outcome(result)
        self._queue_transfer_complete("M Upload", m.command_key, code, message, start)
        self.request_session()

    def _queue_transfer_complete(
        self, method: str, command_key: str, code: int, message: str, start: str
    ) -> None:
        done = iso_time(float(self.profile.reactor.seconds()))
        version = version_key(self.session_version or self.cwmp_version) or (1, 0)
        code = transfers.transfer_fault_code(code, version, upload=method == "M Upload")
        self._transfer_methods[command_key] = method
        self._queued.pop(command_key, None)
        self._cpe_requests.append(
            rpc.TransferComplete(
                command_key,
                rpc.FaultStruct(code, message),
                start if code == 0 else rpc.UNKNOWN_TIME,
                done if code == 0 else rpc.UNKNOWN_TIME,
            )
        )
        self.add_event(rpc.EventStruct(TRANSFER_COMPLETE))
        self.add_event(rpc.EventStruct(method, command_key))


def _transfer_outcome(result: object) -> tuple[int, str]:
    """(FaultStruct code, FaultString) of a finished transfer coroutine."""
    if not isinstance(result, Failure):
        return 0, ""
    if isinstance(result.value, TransferFailed):
        return result.value.code, result.value.message
    # A bug in the simulator still has to be reported, or the ACS waits forever.
    return transfers.DOWNLOAD_FAILURE, f"transfer failed: {type(result.value).__name__}"


def _basic_auth(username: str, password: str) -> dict[str, str]:
    if not username:
        return {}
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class _Auth:
    """The CPE's answer to the ACS's HTTP authentication challenge, for one session."""

    __slots__ = ("challenge", "cpe", "nc")

    def __init__(self, cpe: SimulatedCPE) -> None:
        self.cpe = cpe
        self.challenge: str | None = None
        self.nc = 0

    def set_challenge(self, challenge: str) -> None:
        self.challenge = challenge
        self.nc = 0

    def answer(self, method: str, uri: str) -> str:
        assert self.challenge is not None
        self.nc += 1
        r = self.cpe.root
        try:
            return httpdigest.authorization_for(
                self.challenge,
                method=method,
                uri=uri,
                username=self.cpe.model.get_raw(r + "ManagementServer.Username") or "",
                password=self.cpe.model.get_raw(r + "ManagementServer.Password") or "",
                cnonce=f"{self.cpe.profile.rng.getrandbits(64):016x}",
                nc=self.nc,
            )
        except ValueError as e:
            raise SessionError(f"cannot answer the ACS's challenge: {e}") from None


def _request_uri(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def jittered(interval: float, jitter: float, rng: random.Random) -> float:
    """``interval`` plus or minus ``jitter * interval``, never below one second."""
    if jitter <= 0:
        return float(interval)
    return max(1.0, interval * (1 + rng.uniform(-jitter, jitter)))


def retry_delay(
    retries: int,
    rng: random.Random,
    *,
    minimum: float = 5.0,
    multiplier: float = 2.0,
    cap: int = 10,
) -> float:
    """Wait before retry number ``retries`` (1 = first retry) per TR-069 Table 3.

    A random point in [m·k^(n-1), m·k^n]; the window stops growing after ``cap`` retries.
    """
    n = max(1, min(retries, cap))
    low = minimum * multiplier ** (n - 1)
    return rng.uniform(low, low * multiplier)
