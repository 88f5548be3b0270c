"""The one wiring place: builds the whole appliance from a :class:`~acs.config.Config`.

Reading :class:`Appliance` tells a newcomer the whole system:

- the store (one SQLite file, ``[storage] database``) and the files directory;
- the task engine (device operations -> RPC sequences), woken through
- the connection requester (HTTP GET to the CPE, Digest auth);
- the CWMP resource on ``[cwmp] listen`` (CPEs POST SOAP there);
- the API Klein app on ``[api] listen`` (the REST API of ``api/``, ``/metrics``, ``/healthz``);
- the file server on ``[files] listen`` (``acs.fileserver`` over ``acs.files``: signed,
  expiring per-task URLs for firmware images and configuration backups; the signing key
  persists in the store);
- the liveness sweep (Up -> Down after ``2 x update_frequency + 60 s`` without contact);
- the scheduler (a connection request when a task's ``scheduled_at`` comes due);
- the transfer watch (fails Download/Upload tasks whose TransferComplete never came);
- storage maintenance (``[retention]`` pruning in bounded batches, probes of full storage,
  WAL checkpoints);
- the overview series (every minute, the sessions, 503s, faults and tasks counted since the
  last sample, a day of them kept for the dashboard's charts).

All of it runs as one :class:`MultiService`; stopping it stops the listeners, the sweep and the
session timers, then closes the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site
from twisted.words.protocols.jabber import jid

from acs import peers
from acs.accounts import Passwords
from acs.authguard import AuthThrottle
from acs.campaigns import CampaignRunner
from acs.clock import Reactor
from acs.config import Config, ConfigError, xmpp_server
from acs.connreq import ConnectionRequester, TargetPolicy, UdpRelay, check_url
from acs.cwmp_http import CwmpResource
from acs.cwmp_site import CwmpSite
from acs.files import SECRET_NAME, FileStorage, UrlSigner, thread_runner
from acs.fileserver import FileServer
from acs.httplimits import BoundedSite
from acs.listen import is_tls, with_backlog
from acs.liveness import LivenessSweep
from acs.maintenance import StorageMaintenance
from acs.metrics import ApplianceCollector, Metrics
from acs.periodic import node_gone, node_name
from acs.scheduler import Scheduler
from acs.series import SeriesSampler
from acs.store import Store, is_postgresql, redacted
from acs.stunserver import SourceLimiter, StunListener, StunServer
from acs.tasks import TaskEngine, TransferWatch
from acs.tasks.run import StunOffer, XmppOffer
from acs.udpconnreq import UdpConnectionRequests
from acs.webhooks import WebhookDelivery
from acs.xmpp import XMPP_ACCOUNTS_SECRET, XmppClient, device_account
from api.app import make_app
from api.events import EventHub
from api.site import ApiSite, port_address

LISTENERS = ("cwmp", "api", "files")
# The server secret of the Digest nonces CPEs are challenged with.
NONCE_SECRET = "cwmp-nonce"


class Listener(Service):
    """Listens on one endpoint while running; remembers the port for /healthz and tests."""

    log = Logger()

    def __init__(self, name: str, description: str, endpoint: IStreamServerEndpoint) -> None:
        self.setName(name)
        self.description = description
        self.endpoint = endpoint
        self.factory: Site | None = None
        self.port: IListeningPort | None = None
        self.error: Failure | None = None
        self._listening: Deferred[IListeningPort] | None = None
        self._waiters: list[Deferred[IListeningPort]] = []

    def startService(self) -> None:
        super().startService()
        assert self.factory is not None, "Listener started without a factory"
        self.error = None
        endpoint: Any = self.endpoint  # Any: zope interfaces are opaque to mypy
        d: Deferred[IListeningPort] = endpoint.listen(self.factory)
        self._listening = d
        d.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> None:
        self._listening = None
        self.port = port
        self.log.info("{name} listening on {address}", name=self.name, address=port_address(port))
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port)

    def _failed(self, failure: Failure) -> None:
        self._listening = None
        self.error = failure
        self.log.error(
            "{name}: cannot listen on {description}: {error}",
            name=self.name,
            description=self.description,
            error=failure.getErrorMessage(),
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    def when_listening(self) -> Deferred[IListeningPort]:
        """Fires with the port once listening, or fails with the listen error."""
        if self.port is not None:
            return succeed(self.port)
        if self.error is not None:
            failed: Deferred[IListeningPort] = Deferred()
            failed.errback(self.error)
            return failed
        waiter: Deferred[IListeningPort] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        port, self.port = self.port, None
        if port is None:
            return None
        stopped: Deferred[None] = maybeDeferred(cast(Any, port).stopListening)
        return stopped


class _ApplianceService(MultiService):
    """The appliance's MultiService: stopping it also stops timers and closes the store."""

    def __init__(self, appliance: Appliance) -> None:
        super().__init__()
        self._appliance = appliance

    def stopService(self) -> Deferred[None]:
        appliance = self._appliance
        # Session timers first, so no session callback runs against a closing store.
        appliance.cwmp.stop()
        d: Deferred[Any] = maybeDeferred(super().stopService)
        # Units of work of sessions (their aborts, on PostgreSQL) before the store closes.
        d.addBoth(lambda _: appliance.cwmp.settled())
        if appliance.stun is not None:  # its lookups and binding writes too
            d.addBoth(lambda _: appliance.stun.settled() if appliance.stun else None)
        d.addBoth(lambda _: appliance.connreq.stop())
        d.addBoth(lambda _: appliance.forwarder.close())
        d.addBoth(lambda _: appliance.close())
        return d


def _endpoint(reactor: Reactor, section: str, description: str) -> IStreamServerEndpoint:
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, with_backlog(description))
    except Exception as exc:  # endpoint parsers raise ValueError, OSError, SSL errors...
        raise ConfigError(f"[{section}] listen {description!r}: {exc}") from exc
    return endpoint


def open_store(config: Config) -> Store:
    """Open (creating if needed) the database and the files directory of ``config``."""
    try:
        # Firmware images and configuration backups (which carry CPE secrets): owner-only.
        Path(config.storage.files).mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(config.storage.files).chmod(0o700)
        if not is_postgresql(config.storage.database):
            Path(config.storage.database).parent.mkdir(parents=True, exist_ok=True)
        return Store.open(config.storage.database)
    except Exception as exc:
        raise ConfigError(
            f"[storage] cannot open {redacted(config.storage.database)!r}: {exc}"
        ) from exc


class Appliance:
    """The whole appliance, built from a Config; ``service`` runs it."""

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Reactor,
        *,
        secret: bytes | None = None,
        inherited: dict[str, IStreamServerEndpoint] | None = None,
        stun_fd: int | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        # This process among all that share the database: the holder of the leases of the
        # cluster-wide jobs, and what /healthz and acs_info call it.
        self.node = node_name()
        # Endpoint strings are checked before anything is created, so a typo in a listen
        # address is a ConfigError with nothing to clean up.
        # A worker of `acs serve --workers` accepts on the supervisor's sockets (inherited).
        endpoints = inherited or {
            "cwmp": _endpoint(reactor, "cwmp", config.cwmp.listen),
            "api": _endpoint(reactor, "api", config.api.listen),
            "files": _endpoint(reactor, "files", config.files.listen),
        }
        peer_endpoint = _endpoint(reactor, "cluster", config.cluster.peer_listen)
        self.store: Store = open_store(config)
        self.store.start_pool(reactor, config.storage.pool_size)
        self._closed = False
        self.metrics = Metrics()
        self.metrics.watch_tasks(self.store)
        try:
            # Processes of this host that died without a clean stop hold devices' sessions
            # until their leases run out: freed now (their CPEs' next Informs get in).
            for node_id, name in self.store.node_names().items():
                if node_gone(name):
                    self.store.drop_node(node_id)
            self.default_organization = self.store.ensure_organization(
                config.cwmp.default_organization
            )
            # Signed file-server URLs; the key lives in the store so URLs survive a restart.
            self.signer = UrlSigner(
                self.store.server_secret(SECRET_NAME),
                config.files.public_url,
                config.files.url_ttl,
                reactor,
            )
            self.tasks = TaskEngine(
                self.store,
                reactor,
                signer=self.signer,
                transfer_timeout=float(config.cwmp.transfer_timeout),
                device_credentials=config.cwmp.device_credentials,
                max_attempts=config.tasks.max_attempts,
                retry_base=float(config.tasks.retry_base),
                permanent_faults=config.tasks.permanent_faults,
                stun=self._stun_offer if config.stun.listen else None,
                xmpp=self._xmpp_offer() if config.xmpp.server else None,
            )
            # Blocking work (hashing uploads, parsing big bodies, checking passwords).
            self.threads = thread_runner(reactor)
            self.storage = storage = FileStorage(config.storage.files, self.store, self.threads)
            self.files = FileServer(
                self.store,
                storage,
                self.signer,
                reactor,
                max_upload=config.files.max_upload,
                public_url=config.files.public_url,
            )
            policy = TargetPolicy(
                networks=config.cwmp.connection_request_networks,
                own_listeners=self._bound_addresses,
                allow_basic=config.cwmp.allow_basic_auth,
            )
            # TR-111: the STUN server CPEs behind NAT keep their binding with, and the
            # socket UDP connection requests go from.
            self.stun: StunServer | None = None
            udp: UdpConnectionRequests | None = None
            if config.stun.listen:
                rate = float(config.stun.rate_per_source)
                self.stun = StunServer(
                    self.store,
                    reactor,
                    observe=self.metrics.stun_datagram,
                    limiter=SourceLimiter(rate, 2 * rate),
                )
                udp = UdpConnectionRequests(
                    self.stun.send,
                    reactor,
                    keepalive=float(config.stun.keepalive),
                    allowed=lambda url, source: check_url(url) or policy.refusal(url, source),
                )
            # Annex K: the ACS's session on the XMPP server CPEs keep theirs on.
            self.xmpp: XmppClient | None = None
            if config.xmpp.server:
                self.xmpp = XmppClient(reactor, config.xmpp, observe=self.metrics.xmpp_session)
            self.connreq = ConnectionRequester(
                reactor,
                self.store,
                timeout=config.cwmp.connection_request_timeout,
                policy=policy,
                observe=self.metrics.connection_request,
                udp=udp,
                xmpp=self.xmpp,
                relay=UdpRelay(lambda: self.cwmp.node_id, self._udp_forward) if udp else None,
            )
            self.tasks.set_wake(self.wake)
            # Requests of sessions other processes run go there; theirs come here.
            peer_token = peers.peer_token(self.store.server_secret(peers.SECRET_NAME))
            self.forwarder = peers.PeerForwarder(reactor, peer_token)
            # Key for stateless Digest nonces, shared by every process on the database: a
            # CPE challenged by one may answer to another.
            self.cwmp = CwmpResource(
                store=self.store,
                tasks=self.tasks,
                config=config.cwmp,
                reactor=reactor,
                secret=secret if secret is not None else self.store.server_secret(NONCE_SECRET),
                threads=self.threads,
                metrics=self.metrics,
                node=self.node,
                forwarder=self.forwarder,
            )
            if self.stun is not None:
                self.stun.node = self.cwmp.node_id  # bindings say whose socket they go through
            # Bad bearer tokens per client address: backed off, logged once per minute.
            self.api_auth_throttle = AuthThrottle("API", Logger(namespace="api").info)
            self.passwords = Passwords()
            self.events = EventHub(self.store, reactor)
            self.api = make_app(self)
            self.metrics.registry.register(ApplianceCollector(self))
            self.liveness = LivenessSweep(self.store, reactor)
            self.scheduler = Scheduler(self.store, reactor, wake=self.wake)
            self.transfer_watch = TransferWatch(self.tasks)
            self.campaigns = CampaignRunner(
                self.store, reactor, tasks=self.tasks, observe=self.metrics.campaign_ended
            )
            self.webhooks = WebhookDelivery(
                self.store, reactor, observe=self.metrics.webhook_delivery
            )
            self.maintenance = StorageMaintenance(self.store, storage, reactor, config.retention)
            self.series = SeriesSampler(self.store, self.metrics, reactor, self.cwmp)
            # Once however many processes share the database: these act on shared rows (or
            # wake CPEs, or call webhooks), so two processes would do the work twice, and so
            # does retention. The others are this process's own: the WAL checkpoint and the
            # full-storage probe (its own connection and health), the series (its counters).
            for job in (
                self.liveness,
                self.scheduler,
                self.transfer_watch,
                self.campaigns,
                self.webhooks,
            ):
                job.share(self.store, self.node)
            self.maintenance.share_retention(self.store, self.node)

            factories = {
                # CwmpSite: oversize bodies refused before buffering, no access log.
                "cwmp": CwmpSite(self.cwmp),
                # Every site refuses bodies over its limit from the headers (acs.httplimits).
                "api": ApiSite(self.api.resource(), max_upload=config.files.max_upload),
                "files": BoundedSite(
                    self.files, max_body=config.files.max_upload, access_log=False
                ),
            }
            peer_site = CwmpSite(
                peers.PeerResource(self.cwmp, peer_token, udp_wake=self.connreq.send_udp_here)
            )
            for site in (*factories.values(), peer_site):
                site.noisy = False  # no "Starting factory" lines; the Listener logs the address
            self.service: MultiService = _ApplianceService(self)
            self.listeners: dict[str, Listener] = {}
            for name in LISTENERS:
                listener = Listener(name, getattr(config, name).listen, endpoints[name])
                listener.factory = factories[name]
                listener.setServiceParent(self.service)
                self.listeners[name] = listener
            # Not one of the listeners CPEs and operators use: where the other processes on
            # the database forward the requests of this one's sessions.
            self.peer = Listener("peer", config.cluster.peer_listen, peer_endpoint)
            self.peer.factory = peer_site
            self.peer.setServiceParent(self.service)
            self.peer.when_listening().addCallbacks(self._advertise, lambda _: None)
            self.stun_listener: StunListener | None = None
            if self.stun is not None:
                self.stun_listener = StunListener(
                    reactor, config.stun.listen, self.stun, fd=stun_fd
                )
                self.stun_listener.setServiceParent(self.service)
            if self.xmpp is not None:
                self.xmpp.setServiceParent(self.service)
            self.liveness.setServiceParent(self.service)
            self.scheduler.setServiceParent(self.service)
            self.transfer_watch.setServiceParent(self.service)
            self.campaigns.setServiceParent(self.service)
            self.webhooks.setServiceParent(self.service)
            self.maintenance.setServiceParent(self.service)
            self.series.setServiceParent(self.service)
        except BaseException:
            self.close()
            raise

    def wake(self, device_id: int) -> Deferred[str]:
        """Ask a CPE for a session now. The one way the appliance wakes a device (task queue,
        scheduler, API): looked up at call time, so the requester can be swapped as a whole."""
        return self.connreq.wake(device_id)

    def _udp_forward(self, node: int, device_id: int) -> Deferred[tuple[bool, str]]:
        """A UDP connection request sent by node ``node``, whose STUN socket keeps the
        device's binding (its peer listener's ``/udp-wake``)."""

        def ask(peer: str | None) -> Deferred[tuple[bool, str]] | tuple[bool, str]:
            if peer is None:
                return False, f"node {node} is gone or takes no forwarded requests"
            return self.forwarder.udp_wake(peer, device_id)

        return self.store.read(self.store.node_peer, node).addCallback(ask)

    def _xmpp_offer(self) -> XmppOffer:
        """What provisioning sets for XMPP connection requests ([xmpp] set)."""
        config = self.config.xmpp
        account = jid.JID(config.jid)
        if not config.accounts:
            return XmppOffer(account.userhost())
        secret = self.store.server_secret(XMPP_ACCOUNTS_SECRET)

        def ensure(username: str, password: str) -> None:
            if self.xmpp is not None:
                self.xmpp.ensure_account(username, password)

        return XmppOffer(
            account.userhost(),
            accounts=lambda identity: device_account(secret, identity),
            ensure=ensure,
            domain=account.host,
            server=xmpp_server(config, devices=True),
        )

    def _stun_offer(self) -> StunOffer | None:
        """What provisioning turns CPEs' STUN on with (None: not listening)."""
        listener = self.stun_listener
        if listener is None or listener.port is None:
            return None
        config = self.config.stun
        port = config.server_port or listener.port.getHost().port
        return StunOffer(config.server_address, port, config.keepalive)

    def _advertise(self, port: IListeningPort) -> None:
        """Tell the other processes where this one takes their forwarded requests."""
        url = self.config.cluster.peer_url or port_url(port, secure=False)
        self.store.set_node_peer(self.cwmp.node_id, url)

    def _bound_addresses(self) -> list[tuple[str, int]]:
        ports: list[Any] = [port for port in self.listening().values() if port is not None]
        if self.peer.port is not None:
            ports.append(self.peer.port)
        hosts = [port.getHost() for port in ports]
        return [(h.host, h.port) for h in hosts if hasattr(h, "port")]

    def listening(self) -> dict[str, IListeningPort | None]:
        """The listening port of each listener (None while not listening), the STUN
        listener's UDP port too when there is one."""
        ports = {name: listener.port for name, listener in self.listeners.items()}
        if self.stun_listener is not None:
            ports["stun"] = self.stun_listener.port
        return ports

    def when_listening(self) -> Deferred[dict[str, IListeningPort]]:
        """After ``service.startService()``: fires once every listener listens, or fails with
        the first listen error (port in use, permission denied...)."""
        names = list(self.listeners)
        others = [self.peer.when_listening()]
        if self.stun_listener is not None:
            others.append(self.stun_listener.when_listening())
        d = gatherResults(
            [self.listeners[name].when_listening() for name in names] + others,
            consumeErrors=True,
        )

        def unwrap(failure: Failure) -> Failure:
            # gatherResults wraps the first failure in FirstError; callers want the cause.
            sub = getattr(failure.value, "subFailure", None)
            return sub if isinstance(sub, Failure) else failure

        return d.addCallbacks(
            lambda ports: dict(zip(names, ports[: len(names)], strict=True)), unwrap
        )

    def urls(self) -> dict[str, str]:
        """Base URL of each listening listener, as a local client would reach it."""
        return {
            name: port_url(listener.port, secure=is_tls(listener.description))
            for name, listener in self.listeners.items()
            if listener.port is not None
        }

    def stun_address(self) -> tuple[str, int] | None:
        """Where the STUN listener is bound (None: off, or not listening)."""
        stun = self.stun_listener
        if stun is None or stun.port is None:
            return None
        host = stun.port.getHost()
        return host.host, host.port

    def close(self) -> None:
        """Close the store (idempotent). Called when the service stops."""
        if self._closed:
            return
        self._closed = True
        try:
            # The other processes take the jobs and this one's devices over now.
            self.store.drop_leases(self.node)
            if hasattr(self, "cwmp"):
                self.store.drop_node(self.cwmp.node_id)
        except Exception:  # they expire by themselves
            self.log.failure("cannot give the leases of node {node} up", node=self.node)
        self.store.close()


def port_url(port: IListeningPort, *, secure: bool) -> str:
    """The base URL of a listening port, as a local client would reach it."""
    host: Any = cast(Any, port).getHost()
    address = getattr(host, "host", "")
    # A wildcard bind is reachable on loopback; show an address one can paste.
    if address in ("", "0.0.0.0"):
        address = "127.0.0.1"
    elif address == "::":
        address = "::1"
    if ":" in address:
        address = f"[{address}]"
    return f"{'https' if secure else 'http'}://{address}:{getattr(host, 'port', '')}/"


def build_service(config: Config, reactor: Reactor) -> MultiService:
    """The appliance as a MultiService (for twistd-style embedding)."""
    return Appliance(config, reactor).service


__all__ = [
    "LISTENERS",
    "Appliance",
    "Listener",
    "build_service",
    "open_store",
    "port_url",
]
