"""The five scenarios of issue 5, one function each, and the seeding they share.

Every scenario starts what it measures as separate processes (:mod:`bench.procs`), runs for
a bounded time and returns a dict of figures with the same keys whatever the run profile
(only N changes), so :mod:`bench.run` can print and compare them. The ACS is started fresh
for each scenario so its peak RSS belongs to that scenario alone; all of them share one
database seeded once through the store (``Store.bulk_seed_devices``).
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acs.series import INTERVAL, RETENTION
from acs.store import Store
from acs.store.models import DOWN, UP, DeviceFilter, SeriesSample
from bench import procs

STEADY_PREFIX = "BENCH"  # seeded, provisioned devices; steady informs use the first N
STORM_PREFIX = "BOOT"  # never seen before the boot storm
NODES_PREFIX = "NODE"  # never seen before the two-node storm
ORGANIZATIONS = 10
DEVICE_TYPES = 5
# A provisioning's RPCs: the management server's SetParameterValues, then STUN's (TR-111;
# the bench's ACS listens for STUN, the simulated CPEs have a STUN client).
PROVISIONING_RPCS = 2
SATURATED = 0.9  # a single-threaded generator above this CPU share is the bottleneck
API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class Profile:
    """Sizes and time bounds of one bench run (``full``, ``quick`` or ``tiny``)."""

    name: str
    inventory: int  # devices seeded for steady informs and the API
    steady_cpes: tuple[int, ...]
    steady_seconds: float
    ceiling_seconds: float
    concurrency: int  # sessions in flight, all generators together
    generators: int  # generator processes for ceiling and steady informs
    storm_cpes: int
    storm_generators: int
    storm_seconds: float  # upper bound; the storm ends when every CPE got through
    api_repeat: int  # requests per API query kind
    api_query_seconds: float
    sim_cpes: int
    worker_rounds: int  # one-process / --workers 2 pairs of the workers scenario
    worker_seconds: float  # how long each steady run of those pairs lasts


PROFILES = {
    "full": Profile(
        name="full",
        inventory=100_000,
        steady_cpes=(1_000, 10_000),
        steady_seconds=20.0,
        ceiling_seconds=15.0,
        concurrency=16,
        generators=1,
        storm_cpes=10_000,
        storm_generators=2,
        storm_seconds=240.0,
        api_repeat=200,
        api_query_seconds=10.0,
        sim_cpes=10_000,
        worker_rounds=3,
        worker_seconds=10.0,
    ),
    "quick": Profile(
        name="quick",
        inventory=10_000,
        steady_cpes=(200, 1_000),
        steady_seconds=4.0,
        ceiling_seconds=3.0,
        concurrency=16,
        generators=1,
        storm_cpes=1_000,
        storm_generators=2,
        storm_seconds=20.0,
        api_repeat=30,
        api_query_seconds=3.0,
        sim_cpes=1_000,
        worker_rounds=2,
        worker_seconds=4.0,
    ),
    "tiny": Profile(
        name="tiny",
        inventory=300,
        steady_cpes=(20, 50),
        steady_seconds=0.5,
        ceiling_seconds=0.5,
        concurrency=4,
        generators=1,
        storm_cpes=40,
        storm_generators=1,
        storm_seconds=20.0,
        api_repeat=2,
        api_query_seconds=2.0,
        sim_cpes=50,
        worker_rounds=1,
        worker_seconds=0.5,
    ),
}


# --- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum what generators counted; the run spans the first start to the last end."""
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for r in results:
        errors.update(r.get("errors", {}))
        latencies += r.get("latencies", [])
    wall = max(r["t_end"] for r in results) - min(r["t_go"] for r in results)
    client_cpu = max(r["cpu_util"] for r in results)
    return {
        "wall": max(wall, 1e-9),
        "latencies": latencies,
        "errors": dict(errors),
        "backpressure": sum(r.get("backpressure", 0) for r in results),
        "client_cpu": round(client_cpu, 3),
        "client_saturated": client_cpu >= SATURATED,
    }


def _split(total: int, parts: int) -> list[tuple[int, int]]:
    """(start, count) slices of range(total) for ``parts`` generators."""
    parts = max(1, min(parts, total)) if total else 1
    base, extra = divmod(total, parts)
    slices, start = [], 0
    for i in range(parts):
        count = base + (1 if i < extra else 0)
        slices.append((start, count))
        start += count
    return slices


@dataclass(frozen=True)
class Env:
    """Where and how a run happens."""

    workdir: Path
    database: Path | str  # an SQLite file, or a PostgreSQL URL
    profile: Profile
    profile_dir: Path | None = None  # py-spy the ACS into this directory
    cwmp_backlog: int | None = None  # None: the CWMP listener as shipped
    workers: int = 1  # `acs serve --workers` of every scenario but `workers`, `boot_storm`
    storm_workers: int = 2  # ... and of `boot_storm` (its target is on two workers)

    def acs(self, name: str, *, profiled: bool = True, workers: int | None = None) -> procs.Acs:
        count = self.workers if workers is None else workers
        acs = procs.Acs(
            self.workdir,
            self.database,
            name,
            # py-spy follows the process it starts, not the workers it spawns.
            self.profile_dir if profiled and count == 1 else None,
            self.cwmp_backlog,
            count,
        )
        acs.start()
        return acs


def _drive(
    server_pids: list[int], specs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run generators against the server (its processes ``server_pids``): their results,
    merged, with the server's CPU share (all its processes) and the CPU share of everything
    else on the machine (noise from other work)."""
    marks: dict[str, float] = {}

    def server_cpu() -> float:
        return sum(procs.cpu_seconds(pid) for pid in server_pids)

    def go() -> None:
        marks.update(cpu=server_cpu(), busy=procs.system_busy_seconds())

    results = procs.run_generators(specs, on_go=go)
    server = server_cpu() - marks["cpu"]
    busy = procs.system_busy_seconds() - marks["busy"]
    merged = _merge(results)
    clients = sum(r["cpu_s"] for r in results)
    merged["server_cpu"] = round(server / merged["wall"], 3)
    merged["background_cpu"] = round(max(0.0, busy - server - clients) / merged["wall"], 3)
    merged["peak_rss"] = sum(procs.peak_rss_bytes(pid) for pid in server_pids)
    return results, merged


# --- seeding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    organization_ids: tuple[int, ...]
    type_ids: tuple[int, ...]
    token: str
    inventory: int
    seconds: float
    now: float


# What the search queries find: tags on a type (20%) and an organization (10%, inside that
# type), and a stored tree of TREE_VALUES parameters per device, one an SSID shared by a
# thousandth of the fleet.
SEARCH_PATH = "Device.WiFi.SSID.1.SSID"
TREE_VALUES = 10


def _ssid(i: int) -> str:
    return f"ssid-{i % 1000:04d}"


def _seed_search(store: Store, n: int, orgs: list[int], types: list[int], now: float) -> None:
    store.tag_devices(DeviceFilter(type_id=types[2]), ["bench-vip"], now=now, actor="bench")
    store.tag_devices(
        DeviceFilter(organization_ids=(orgs[2],)), ["bench-east"], now=now, actor="bench"
    )
    others = [f"Device.DeviceInfo.X_BENCH_{k}" for k in range(TREE_VALUES - 1)]

    def tree() -> Any:
        for device_id in range(1, n + 1):  # seeded ids are 1..n in a fresh database
            yield device_id, SEARCH_PATH, _ssid(device_id), "xsd:string"
            for k, path in enumerate(others):
                yield device_id, path, str((device_id + k) % 97), "xsd:unsignedInt"

    store.bulk_seed_parameters(tree(), now=now)


def _seed_series(store: Store, now: float) -> None:
    """A full day of overview samples, so ``/overview/?hours=24`` reads all it ever can."""
    rows = int(RETENTION // INTERVAL)
    for k in range(rows, 0, -1):
        counts = {"sessions_done": 600 + k % 60, "faults": k % 7, "tasks_pending": k % 11}
        sample = SeriesSample(at=now - k * INTERVAL, seconds=INTERVAL, counts=counts)
        store.add_series_sample(sample, keep_after=now - RETENTION, keep=rows)


def seed(database: Path | str, profile: Profile) -> Seeded:
    """The inventory: ``profile.inventory`` devices through ``Store.bulk_seed_devices``.

    Spread over 10 organizations and 5 device types, a third Up, status changes over the last
    30 days, so each list filter selects a real fraction. The devices steady informs use
    (the first max(steady_cpes)) are provisioned and Up with a fresh contact, as a fleet in
    steady state is; ``update_frequency`` is an hour so the liveness sweep stays quiet for
    the length of the run instead of flipping thousands of rows in the middle of it.
    """
    started = time.monotonic()
    now = time.time()
    steady = max(profile.steady_cpes)
    store = Store.open(database)
    try:
        orgs = [store.ensure_organization("Default").id]
        orgs += [store.ensure_organization(f"Bench org {i}").id for i in range(1, ORGANIZATIONS)]
        types = [
            store.create_device_type(
                now=1.0,
                actor="t",
                name=f"Bench type {i}",
                manufacturer="Acme Networks",
                product_class=f"BT-{i}",
            ).id
            for i in range(DEVICE_TYPES)
        ]

        def rows() -> Any:
            for i in range(profile.inventory):
                serial = f"{STEADY_PREFIX}{i:06d}"
                up = i < steady or i % 3 == 0
                yield {
                    "serial_number": serial,
                    "name": serial,
                    "organization_id": orgs[i % ORGANIZATIONS],
                    "type_id": types[i % DEVICE_TYPES],
                    "provisioned": True,
                    "operational_status": "active",
                    "update_frequency": 3600,
                    "manufacturer": "Acme Networks",
                    "oui": "00D09E",
                    "product_class": "HG-181",
                    "data_model_root": "Device.",
                    "status": UP if up else DOWN,
                    "status_change": now - (i % 30) * 86400.0,
                    "last_contact": now if up else None,
                    "last_connection": now if up else None,
                }

        store.bulk_seed_devices(rows(), now=now, actor="bench")
        _seed_search(store, profile.inventory, orgs, types, now)
        _seed_series(store, now)
        _row, token = store.create_token("bench", "admin", [], now=now)
    finally:
        store.close()
    return Seeded(
        tuple(orgs), tuple(types), token, profile.inventory, time.monotonic() - started, now
    )


# --- 1. ceiling ------------------------------------------------------------------------------


def _session_specs(
    port: int, prefix: str, cpes: int, profile: Profile, seconds: float
) -> list[dict[str, Any]]:
    slices = _split(cpes, profile.generators)
    per = max(1, profile.concurrency // len(slices))
    return [
        {
            "mode": "sessions",
            "port": port,
            "prefix": prefix,
            "start": start,
            "count": count,
            "concurrency": per,
            "duration": seconds,
            "max_time": seconds + 60.0,
        }
        for start, count in slices
    ]


def ceiling(env: Env) -> dict[str, Any]:
    """Bare twisted.web, same generator, same two-request sessions: requests/s."""
    profile = env.profile
    server = procs.PortServer("bench.ceiling")
    server.start()
    try:
        specs = _session_specs(
            server.port,
            STEADY_PREFIX,
            max(profile.concurrency, 100),
            profile,
            profile.ceiling_seconds,
        )
        results, merged = _drive([server.pid], specs)
    finally:
        server.stop()
    sessions = sum(r["sessions"] for r in results)
    return {
        "requests_per_s": round(2 * sessions / merged["wall"], 1),
        "sessions_per_s": round(sessions / merged["wall"], 1),
        "p50_ms": ms(percentile(merged["latencies"], 50)),
        "p99_ms": ms(percentile(merged["latencies"], 99)),
        "server_cpu": merged["server_cpu"],
        "errors": merged["errors"],
        "client_cpu": merged["client_cpu"],
        "client_saturated": merged["client_saturated"],
        "background_cpu": merged["background_cpu"],
        "seconds": round(merged["wall"], 2),
    }


# --- 2. steady informs -----------------------------------------------------------------------


def steady(
    env: Env,
    cpes: int,
    ceiling_rps: float,
    *,
    workers: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """N provisioned CPEs doing ``2 PERIODIC`` sessions back to back (for ``seconds``, by
    default the profile's ``steady_seconds``)."""
    profile = env.profile
    count = env.workers if workers is None else workers
    acs = env.acs(f"acs-steady-{cpes}-w{count}", workers=count)
    duration = profile.steady_seconds if seconds is None else seconds
    try:
        specs = _session_specs(acs.cwmp_port, STEADY_PREFIX, cpes, profile, duration)
        results, merged = _drive(acs.pids, specs)
    finally:
        acs.stop()
    sessions = sum(r["sessions"] for r in results)
    rate = sessions / merged["wall"]
    return {
        "cpes": cpes,
        "sessions": sessions,
        "sessions_per_s": round(rate, 1),
        "p50_ms": ms(percentile(merged["latencies"], 50)),
        "p99_ms": ms(percentile(merged["latencies"], 99)),
        "workers": count,
        "acs_cpu": merged["server_cpu"],
        "acs_cpu_ms_per_session": round(1000 * merged["server_cpu"] * merged["wall"] / sessions, 3)
        if sessions
        else None,
        "acs_peak_rss_mb": round(merged["peak_rss"] / 2**20, 1),
        "inform_ratio": round(2 * rate / ceiling_rps, 3) if ceiling_rps else None,
        "errors": merged["errors"],
        "backpressure_503": merged["backpressure"],
        "concurrency": sum(r["concurrency"] for r in results),
        "client_cpu": merged["client_cpu"],
        "client_saturated": merged["client_saturated"],
        "background_cpu": merged["background_cpu"],
        "seconds": round(merged["wall"], 2),
    }


# --- 6. workers ------------------------------------------------------------------------------


def workers(env: Env, ceiling_rps: float) -> dict[str, Any]:
    """Steady informs at the smallest N, one process and ``acs serve --workers 2``, in the
    same run: what a second worker adds (sessions/s) and costs (ACS CPU per session, all
    processes counted). The load generators share the cores with the ACS.

    A shared box drifts by tens of percent within a minute, which a single pair measured
    one after the other turns into a false speedup or tax; so the pair is measured
    ``worker_rounds`` times, in alternating order (1-2, 2-1, 1-2...), and the figures are
    the median round's (each round's are under ``rounds``; of an even count, the less
    favourable middle one)."""
    cpes = env.profile.steady_cpes[0]
    rounds: list[dict[str, Any]] = []
    for i in range(env.profile.worker_rounds):
        order = (1, 2) if i % 2 == 0 else (2, 1)
        runs = {
            n: steady(env, cpes, ceiling_rps, workers=n, seconds=env.profile.worker_seconds)
            for n in order
        }
        one, two = runs[1], runs[2]
        speedup = two["sessions_per_s"] / one["sessions_per_s"] if one["sessions_per_s"] else 0.0
        one_ms, two_ms = one["acs_cpu_ms_per_session"], two["acs_cpu_ms_per_session"]
        rounds.append(
            {
                "one": one,
                "two": two,
                "speedup": round(speedup, 3),
                "cpu_per_session_ratio": round(two_ms / one_ms, 3) if one_ms and two_ms else None,
            }
        )
    # The median; of an even count, the less favourable of the two middle rounds.
    middle = sorted(rounds, key=lambda r: r["speedup"])[(len(rounds) - 1) // 2]
    taxes = sorted(r["cpu_per_session_ratio"] for r in rounds if r["cpu_per_session_ratio"])
    return {
        "cpes": cpes,
        "one": middle["one"],
        "two": middle["two"],
        "speedup": middle["speedup"] or None,
        "cpu_per_session_ratio": taxes[len(taxes) // 2] if taxes else None,
        "rounds": [
            {k: r[k] for k in ("speedup", "cpu_per_session_ratio")}
            | {f"{k}_sessions_per_s": r[k]["sessions_per_s"] for k in ("one", "two")}
            for r in rounds
        ],
    }


# --- 3. boot storm ---------------------------------------------------------------------------


def boot_storm(env: Env) -> dict[str, Any]:
    """Never-seen CPEs inform ``0 BOOTSTRAP`` at once; registration plus provisioning."""
    acs = env.acs("acs-storm", workers=env.storm_workers)
    try:
        figures = _storm(env, acs.pids, acs.cwmp_port, STORM_PREFIX, env.profile.storm_cpes)
    finally:
        acs.stop()
    figures["cwmp_backlog"] = env.cwmp_backlog
    figures["workers"] = env.storm_workers
    return figures


def nodes(env: Env, seeded: Seeded) -> dict[str, Any]:
    """Two ``acs serve`` nodes on one database behind a round-robin TCP proxy; never-seen
    CPEs open a new connection for every request, so each CPE's requests alternate between
    the nodes: its session continues on the node that took its Inform (forwarded), and its
    provisioning runs exactly once."""
    cpes = max(1, env.profile.storm_cpes // 5)
    a = env.acs("acs-node-a", profiled=False, workers=1)
    try:
        b = env.acs("acs-node-b", profiled=False, workers=1)
        try:
            proxy = procs.PortServer("bench.rrproxy", [str(a.cwmp_port), str(b.cwmp_port)])
            proxy.start()
            try:
                pids = [*a.pids, *b.pids]
                figures = _storm(env, pids, proxy.port, NODES_PREFIX, cpes, reconnect=True)
            finally:
                proxy.stop()
            figures["forwarded"] = [_forwarded(node.api_port, seeded.token) for node in (a, b)]
        finally:
            b.stop()
    finally:
        a.stop()
    return figures


def _forwarded(api_port: int, token: str) -> float:
    """The requests a node forwarded to the other, from its /metrics."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("acs_cwmp_forwarded_requests_total{")
    )


def _storm(
    env: Env, pids: list[int], port: int, prefix: str, cpes: int, *, reconnect: bool = False
) -> dict[str, Any]:
    """``cpes`` never-seen CPEs (serials ``prefix``...) inform at once on ``port`` and retry
    until each has had a session; the figures of a storm."""
    profile = env.profile
    specs = [
        {
            "mode": "storm",
            "port": port,
            "prefix": prefix,
            "start": start,
            "count": count,
            "max_time": profile.storm_seconds,
            "seed": i,
            "reconnect": reconnect,
        }
        for i, (start, count) in enumerate(_split(cpes, profile.storm_generators))
    ]
    results, merged = _drive(pids, specs)
    store = Store.open(env.database)
    try:
        registered, provisioned = store.count_by_serial_prefix(prefix)
    finally:
        store.close()
    t_go = min(r["t_go"] for r in results)
    done = [r["t_last_done"] for r in results if r["sessions"]]
    unfinished = sum(r["unfinished"] for r in results)
    all_in = max(done) - t_go if done and unfinished == 0 else None
    return {
        "cpes": cpes,
        "seconds_to_all_provisioned": round(all_in, 2) if all_in is not None else None,
        "sessions_ok": sum(r["sessions"] for r in results),
        "registered": registered,
        "provisioned": provisioned,
        "provisioning_rpcs": sum(r["rpcs"] for r in results),
        "lost_sessions": sum(r["lost"] for r in results),
        "unfinished_cpes": unfinished,
        "errors": sum(merged["errors"].values()),
        "errors_by_kind": merged["errors"],
        "backpressure_503": merged["backpressure"],
        "retries": sum(r["retries"] for r in results),
        "session_p50_ms": ms(percentile(merged["latencies"], 50)),
        "session_p99_ms": ms(percentile(merged["latencies"], 99)),
        "acs_cpu": merged["server_cpu"],
        "acs_peak_rss_mb": round(merged["peak_rss"] / 2**20, 1),
        "client_cpu": merged["client_cpu"],
        "client_saturated": merged["client_saturated"],
        "background_cpu": merged["background_cpu"],
        "seconds": round(merged["wall"], 2),
    }


# --- 4. API at scale -------------------------------------------------------------------------


LIST_QUERIES = (
    "list",
    "list_organization",
    "list_type",
    "list_status",
    "list_status_change_from",
    "list_deep_offset",
    "list_mid_offset",
    "list_organization_deep_offset",
    "list_tag",
    "list_two_tags",
    "list_tag_deep_offset",
    "list_param",
    "list_param_prefix",
    "list_param_and_tag",
)
# Outside the list target: one-device GETs, and the dashboard's overview (its GROUP BYs read
# every device; the series is a day of minutes at most).
OVERVIEW_QUERIES = ("overview",)
DETAIL_QUERIES = ("detail_by_id", "detail_by_serial", *OVERVIEW_QUERIES)


def _api_queries(seeded: Seeded, profile: Profile) -> list[tuple[str, list[str], int]]:
    n = seeded.inventory
    rng = random.Random(5)
    base = f"{API_PREFIX}/inventory_device/?limit=100"
    since = datetime.fromtimestamp(seeded.now - 10 * 86400, UTC).strftime("%Y-%m-%d")
    per_org = n // ORGANIZATIONS
    fixed = {
        "list": base,
        "list_organization": f"{base}&organization={seeded.organization_ids[1]}",
        "list_type": f"{base}&type={seeded.type_ids[2]}",
        "list_status": f"{base}&status=1",
        "list_status_change_from": f"{base}&last_status_change_from={since}",
        "list_deep_offset": f"{base}&offset={max(0, n - 100)}",
        "list_mid_offset": f"{base}&offset={n // 2}",
        "list_organization_deep_offset": (
            f"{base}&organization={seeded.organization_ids[1]}&offset={max(0, per_org - 100)}"
        ),
        "list_tag": f"{base}&tag=bench-vip",
        "list_two_tags": f"{base}&tag=bench-vip&tag=bench-east",
        "list_tag_deep_offset": f"{base}&tag=bench-vip&offset={max(0, n // DEVICE_TYPES - 100)}",
        "list_param": f"{base}&param.{SEARCH_PATH}={_ssid(42)}",
        "list_param_prefix": f"{base}&param.{SEARCH_PATH}__startswith=ssid-00",
        # Device ids 43, 1043...: their SSID, and (id % 5 == 3) bench-vip's type.
        "list_param_and_tag": f"{base}&param.{SEARCH_PATH}={_ssid(43)}&tag=bench-vip",
    }
    # (name, paths, times each): the generator repeats, so the spec stays small.
    queries = [(name, [fixed[name]], profile.api_repeat) for name in LIST_QUERIES]
    # Seeded ids are 1..n in a fresh database.
    ids = [rng.randint(1, n) for _ in range(profile.api_repeat)]
    queries.append(("detail_by_id", [f"{API_PREFIX}/inventory_device/{i}/" for i in ids], 1))
    serials = [f"{STEADY_PREFIX}{rng.randrange(n):06d}" for _ in range(profile.api_repeat)]
    queries.append(
        ("detail_by_serial", [f"{API_PREFIX}/inventory_device_serial/{s}/" for s in serials], 1)
    )
    queries.append(("overview", [f"{API_PREFIX}/overview/?hours=24"], profile.api_repeat))
    return queries


def api(env: Env, seeded: Seeded) -> dict[str, Any]:
    """p50/p99 of each list filter, deep offsets, detail GETs and the overview, one request
    at a time."""
    profile = env.profile
    acs = env.acs("acs-api", profiled=False)
    try:
        spec = {
            "mode": "api",
            "port": acs.api_port,
            "token": seeded.token,
            "queries": _api_queries(seeded, profile),
            "per_query_time": profile.api_query_seconds,
            "max_time": profile.api_query_seconds * 12 + 30.0,
        }
        (result,), merged = _drive(acs.pids, [spec])
    finally:
        acs.stop()
    figures: dict[str, Any] = {"devices": seeded.inventory}
    errors = 0
    for name in (*LIST_QUERIES, *DETAIL_QUERIES):
        entry = result["queries"].get(name, {"latencies": [], "status": {}, "errors": {}})
        bad = sum(v for k, v in entry["status"].items() if k != "200")
        bad += sum(entry["errors"].values())
        errors += bad
        figures[name] = {
            "p50_ms": ms(percentile(entry["latencies"], 50)),
            "p99_ms": ms(percentile(entry["latencies"], 99)),
            "requests": len(entry["latencies"]),
            "non_200": bad,
        }
    list_p99 = [figures[name]["p99_ms"] for name in LIST_QUERIES]
    figures["list_worst_p99_ms"] = max((x for x in list_p99 if x is not None), default=None)
    figures["errors"] = errors
    figures["acs_cpu"] = merged["server_cpu"]
    figures["client_cpu"] = merged["client_cpu"]
    figures["background_cpu"] = merged["background_cpu"]
    return figures


# --- 5. simulator footprint ------------------------------------------------------------------


def simulator(env: Env) -> dict[str, Any]:
    """RSS per simulated CPE, in a process of its own (``python -m bench.simfoot``)."""
    profile = env.profile
    done = subprocess.run(
        [procs.PYTHON, "-m", "bench.simfoot", str(profile.sim_cpes)],
        capture_output=True,
        text=True,
        timeout=procs.START_TIMEOUT + profile.sim_cpes / 100,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        raise procs.BenchError(f"bench.simfoot failed: {done.stderr.strip()[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures
