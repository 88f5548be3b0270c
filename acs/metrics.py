"""The appliance's Prometheus metrics, kept with ``prometheus_client`` in one registry per
appliance (tests run many in one process).

Counted as it happens: CWMP sessions by outcome and their duration, the RPCs the ACS sent by
method, the CPE faults answering them by method and fault code, the CPE's own requests by
method, connection requests by outcome, tasks ended by kind and state, API requests by route,
method and status with their latency, webhook delivery attempts by outcome. Read when
scraped (:class:`ApplianceCollector`): the gauges (devices, devices by status, tasks by
state, live sessions, tokens) and the counters other objects keep (503s at the session
cap, idle evictions, authentication failures and throttling per listener, writes refused
on a full disk).

Every label value is one of a known few: method names are the codec's message classes, a
fault code outside the CWMP ranges is ``other``, an API route is its rule, not its URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acs.authguard import AuthThrottle
from acs.store.health import STORAGES
from acs.store.models import DOWN, UP, Campaign, DeviceFilter
from acs.version import build_info

if TYPE_CHECKING:
    from acs.service import Appliance
    from acs.store import Store

# No <name>_created samples: creation times are noise to a scraper of one process.
disable_created_metrics()

# The exposition format generate_latest writes.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
SESSION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


def fault_label(code: int) -> str:
    """A CPE's fault code as a label: the CWMP ranges (8000-8999 ACS, 9000-9899 CPE and
    vendor) as they are, anything else one value, so a CPE cannot mint label values."""
    return str(code) if 8000 <= code <= 9899 else "other"


def session_outcome(abort_reason: str | None) -> str:
    """The outcome label of a session that ended (``None``: it finished cleanly)."""
    if abort_reason is None:
        return "done"
    if abort_reason == "timeout":
        return "timeout"
    if abort_reason.startswith("protocol error"):
        return "protocol_error"
    if abort_reason == "RPC cap per session reached":
        return "rpc_cap"
    return "aborted"


class Metrics:
    """The registry and the counters the services update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions = Counter(
            "acs_cwmp_sessions", "CWMP sessions ended, by outcome.", ["outcome"], registry=r
        )
        self.session_seconds = Histogram(
            "acs_cwmp_session_duration_seconds",
            "Seconds from a session's Inform to its end.",
            buckets=SESSION_BUCKETS,
            registry=r,
        )
        self.rpcs = Counter(
            "acs_cwmp_rpcs", "RPCs the ACS sent that the CPE answered, by method.", ["method"],
            registry=r,
        )  # fmt: skip
        self.faults = Counter(
            "acs_cwmp_faults",
            "CPE faults answering the ACS's RPCs, by method and fault code.",
            ["method", "code"],
            registry=r,
        )
        self.cpe_requests = Counter(
            "acs_cwmp_cpe_requests", "Requests CPEs sent (Inform too), by method.", ["method"],
            registry=r,
        )  # fmt: skip
        self.forwarded = Counter(
            "acs_cwmp_forwarded_requests",
            "CPE requests sent on to the node running the session, by what named it "
            "(the session cookie, the Digest nonce answered, or the device's session lease "
            "at an Inform).",
            ["by"],
            registry=r,
        )
        self.connection_requests = Counter(
            "acs_connection_requests",
            "Connection request attempts, by outcome and how they went (http; udp: TR-111; "
            "xmpp: TR-069 Annex K).",
            ["outcome", "via"],
            registry=r,
        )
        self.stun_datagrams = Counter(
            "acs_stun_datagrams",
            "Datagrams the STUN listener took, by what became of them (bound: a device's "
            "signed Binding Request; anonymous / unknown_username: answered, binding nothing; "
            "unauthenticated: 401; malformed, ignored, rate_limited: dropped).",
            ["outcome"],
            registry=r,
        )
        self.xmpp_connected = Gauge(
            "acs_xmpp_connected",
            "1 while the ACS is logged in to its [xmpp] server (XMPP connection requests).",
            registry=r,
        )
        self.tasks = Counter(
            "acs_tasks_finished", "Tasks that ended, by kind and state.", ["kind", "state"],
            registry=r,
        )  # fmt: skip
        self.api_requests = Counter(
            "acs_api_requests",
            "API requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.api_seconds = Histogram(
            "acs_api_request_duration_seconds",
            "Seconds from an API request's arrival to its answer, by route.",
            ["route"],
            buckets=API_BUCKETS,
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "acs_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed: to be retried).",
            ["outcome"],
            registry=r,
        )
        self.campaigns_ended = Counter(
            "acs_campaigns_ended",
            "Campaigns that ended by themselves, by state (done, stopped by their rule).",
            ["state"],
            registry=r,
        )
        # The hot path's children, bound once: every session is an Inform and most end done.
        self._done = self.sessions.labels("done")
        self._inform = self.cpe_requests.labels("Inform")

    def session_ended(self, abort_reason: str | None, seconds: float) -> None:
        outcome = self._done if abort_reason is None else self.sessions.labels(
            session_outcome(abort_reason)
        )  # fmt: skip
        outcome.inc()
        self.session_seconds.observe(max(seconds, 0.0))

    def rpc_answered(self, method: str, fault_code: int | None) -> None:
        self.rpcs.labels(method).inc()
        if fault_code is not None:
            self.faults.labels(method, fault_label(fault_code)).inc()

    def cpe_request(self, method: str) -> None:
        (self._inform if method == "Inform" else self.cpe_requests.labels(method)).inc()

    def connection_request(self, outcome: str, via: str) -> None:
        self.connection_requests.labels(outcome, via).inc()

    def xmpp_session(self, connected: bool) -> None:
        self.xmpp_connected.set(1 if connected else 0)

    def stun_datagram(self, outcome: str) -> None:
        self.stun_datagrams.labels(outcome).inc()

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.api_requests.labels(route, method, str(status)).inc()
        self.api_seconds.labels(route).observe(max(seconds, 0.0))

    def webhook_delivery(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    def campaign_ended(self, _campaign: Campaign, state: str) -> None:
        self.campaigns_ended.labels(state).inc()

    def watch_tasks(self, store: Store) -> None:
        """Count every task that ends (the store tells its listeners the id)."""

        def finished(task_id: int) -> None:
            task = store.get_task(task_id)
            if task is not None:
                self.tasks.labels(task.kind, task.state).inc()

        store.task_finished.append(finished)

    def render(self) -> bytes:
        """The exposition text of every metric (the collectors read the store now)."""
        return generate_latest(self.registry)


class ApplianceCollector(Collector):
    """The figures read at scrape time: the store's gauges, and the counters the store and
    the API keep (the CWMP listener registers its own, :class:`CwmpCollector`)."""

    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance

    def describe(self) -> list[Metric]:
        return []  # registering it must not read the store

    def collect(self) -> Iterator[Metric]:
        a = self.appliance
        store = a.store
        build = build_info()
        info = GaugeMetricFamily(
            "acs_info",
            "The running ACS: version, commit and node (this process).",
            labels=["version", "commit", "node"],
        )
        info.add_metric([build["version"], build["commit"] or "", a.node], 1)
        yield info
        yield GaugeMetricFamily("acs_devices", "Devices known to the ACS.", store.count_devices())
        by_status = GaugeMetricFamily(
            "acs_devices_by_status", "Devices by liveness status.", labels=["status"]
        )
        by_status.add_metric(["up"], store.count_devices(DeviceFilter(status=UP)))
        by_status.add_metric(["down"], store.count_devices(DeviceFilter(status=DOWN)))
        yield by_status
        tasks = GaugeMetricFamily("acs_tasks", "Device tasks by state.", labels=["state"])
        for state, n in store.count_tasks_by_state().items():
            tasks.add_metric([state], n)
        yield tasks
        yield GaugeMetricFamily(
            "acs_api_tokens", "API tokens not revoked.", store.count_active_tokens()
        )
        yield from _campaign_progress(store)
        refused = CounterMetricFamily(
            "acs_storage_writes_refused",
            "Writes refused because the database or the files directory was full.",
            labels=["storage"],
        )
        for name in STORAGES:
            refused.add_metric([name], store.health.refused[name])
        yield refused
        yield from _counters(
            (
                "acs_api_auth_failures",
                "Failed API authentications (wrong token).",
                a.api_auth_throttle.failures_total,
            ),
            (
                "acs_api_auth_throttled",
                "API requests refused while their source backs off.",
                a.api_auth_throttle.refused_total,
            ),
        )


def _campaign_progress(store: Store) -> Iterator[Metric]:
    """Each running or paused campaign's devices by progress state (at most MAX_ACTIVE
    campaigns, so the labels stay few)."""
    active = store.active_campaigns()
    devices = GaugeMetricFamily(
        "acs_campaign_devices",
        "Devices of each running or paused campaign, by progress state.",
        labels=["campaign", "state"],
    )
    for campaign in active:
        counts, _ = store.campaign_progress(campaign.id)
        for state, n in counts.items():
            devices.add_metric([str(campaign.id), state], n)
    yield devices
    by_state = GaugeMetricFamily(
        "acs_campaigns_active", "Campaigns running or paused.", labels=["state"]
    )
    for state in ("running", "paused"):
        by_state.add_metric([state], sum(c.state == state for c in active))
    yield by_state


class CwmpView(Protocol):
    """What :class:`CwmpCollector` reads of the CWMP resource."""

    busy_rejections: int
    idle_evictions: int
    auth_throttle: AuthThrottle

    def active_sessions(self) -> int: ...


class CwmpCollector(Collector):
    """The CWMP listener's own figures, read at scrape time."""

    def __init__(self, cwmp: CwmpView) -> None:
        self.cwmp = cwmp

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        c = self.cwmp
        yield GaugeMetricFamily(
            "acs_cwmp_sessions_active", "CWMP sessions in progress.", c.active_sessions()
        )
        yield from _counters(
            ("acs_cwmp_busy_rejections", "New CWMP sessions turned away with 503 at the "
             "session cap.", c.busy_rejections),
            ("acs_cwmp_idle_evictions", "CWMP sessions ended at the session cap after idling "
             "past [cwmp] idle_grace.", c.idle_evictions),
            ("acs_cwmp_auth_failures", "Failed CWMP authentications (wrong credentials).",
             c.auth_throttle.failures_total),
            ("acs_cwmp_auth_throttled", "CWMP requests refused while their source backs off.",
             c.auth_throttle.refused_total),
        )  # fmt: skip


def _counters(*specs: tuple[str, str, int]) -> Iterator[Metric]:
    for name, text, value in specs:
        yield CounterMetricFamily(name, text, value)
