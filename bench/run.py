"""The bench orchestrator: ``python -m bench [--quick | --tiny] [--only ...] [--profile DIR]``.

Seeds a fresh database in a temporary directory, runs the scenarios of
:mod:`bench.scenarios` in order (ceiling first: the steady informs are reported against it),
prints a table with each target of issue 5, then one JSON object on the last line holding
every figure, the targets met or missed and the machine it ran on. ``--profile DIR`` runs
the ACS under py-spy (when installed) and leaves one collapsed-stack file per ACS process.
``--engine postgresql`` runs every scenario on a throwaway PostgreSQL server on loopback
(bench/pgcluster.py, Debian's binaries; commits do not wait for the WAL flush, as SQLite's
synchronous=NORMAL does not) instead of an SQLite file.
Exit status 0 when every scenario ran (missed targets are figures, not failures), 1 if a
process of the bench failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from acs.listen import LISTEN_BACKLOG
from acs.store import StoreError
from bench import pgcluster, procs, scenarios

# The bench's PostgreSQL server: durable (fsync on) but, like SQLite in WAL mode with
# synchronous=NORMAL, a commit does not wait for its WAL to reach the disk.
PG_SETTINGS = {"synchronous_commit": "off", "max_connections": "100", "shared_buffers": "256MB"}

SCENARIOS = ("ceiling", "steady", "workers", "api", "boot_storm", "nodes", "simulator")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model or platform.processor() or "unknown",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def evaluate(figures: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of issue 5: True met, False missed, None not measured in this run."""
    targets: dict[str, bool | None] = {}
    steady = figures.get("steady") or []
    ratios = [s["inform_ratio"] for s in steady if s.get("inform_ratio") is not None]
    targets["inform_ratio >= 0.5"] = min(ratios) >= 0.5 if ratios else None
    pair = figures.get("workers")
    speedup = pair.get("speedup") if pair else None
    tax = pair.get("cpu_per_session_ratio") if pair else None
    targets["--workers 2: sessions/s >= 1.5 x one process"] = (
        None if speedup is None else speedup >= 1.5
    )
    targets["--workers 2: ACS CPU per session within 10%"] = None if tax is None else tax <= 1.1
    p99 = steady[-1]["p99_ms"] if steady else None
    targets["steady p99 < 50 ms at the largest N"] = None if p99 is None else p99 < 50.0
    storm = figures.get("boot_storm")
    targets["boot storm: all provisioned, 0 lost, 0 errors"] = (
        None
        if storm is None
        else (
            storm["provisioned"] >= storm["cpes"]
            and storm["lost_sessions"] == 0
            and storm["errors"] == 0
        )
    )
    pair_of_nodes = figures.get("nodes")
    targets["two nodes, round robin: 0 failed sessions, provisioning once each"] = (
        None
        if pair_of_nodes is None
        else (
            pair_of_nodes["lost_sessions"] == 0
            and pair_of_nodes["errors"] == 0
            and pair_of_nodes["unfinished_cpes"] == 0
            and pair_of_nodes["provisioned"] == pair_of_nodes["cpes"]
            and pair_of_nodes["provisioning_rpcs"]
            == pair_of_nodes["cpes"] * scenarios.PROVISIONING_RPCS
        )
    )
    api = figures.get("api")
    worst = api.get("list_worst_p99_ms") if api else None
    targets["API list p99 < 20 ms"] = None if worst is None else worst < 20.0
    sim = figures.get("simulator")
    targets["simulator < 20 KB per CPE"] = None if sim is None else sim["kb_per_cpe"] < 20.0
    return targets


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
    return str(value)


def table(figures: dict[str, Any], out: TextIO) -> None:
    rows: list[tuple[str, str, str]] = []

    def add(scenario: str, name: str, value: Any) -> None:
        rows.append((scenario, name, _fmt(value)))

    meta = figures["machine"]
    add("machine", "date / nproc", f"{meta['date']} / {meta['nproc']}")
    add("machine", "cpu", meta["cpu_model"])
    add("machine", "profile / run seconds", f"{figures['profile']} / {figures['seconds']}")
    add("machine", "database engine", figures.get("engine", "sqlite"))
    add(
        "machine",
        "load average start / end",
        f"{meta['loadavg_start']} / {meta.get('loadavg_end')}",
    )
    if "seed" in figures:
        add(
            "seed",
            "devices seeded / seconds",
            f"{figures['seed']['devices']:,} / {figures['seed']['seconds']:.1f}",
        )
    c = figures.get("ceiling")
    if c:
        add("1 ceiling", "requests/s (bare twisted.web)", c["requests_per_s"])
        add("1 ceiling", "server CPU / client CPU", f"{c['server_cpu']} / {c['client_cpu']}")
        add("1 ceiling", "session p50 / p99 ms", f"{_fmt(c['p50_ms'])} / {_fmt(c['p99_ms'])}")
        add("1 ceiling", "other processes' CPU (noise)", c["background_cpu"])
    for s in figures.get("steady") or []:
        label = f"2 steady N={s['cpes']:,}"
        add(label, "sessions/s", s["sessions_per_s"])
        add(label, "inform_ratio (target >= 0.5)", s["inform_ratio"])
        add(label, "session p50 / p99 ms", f"{_fmt(s['p50_ms'])} / {_fmt(s['p99_ms'])}")
        add(label, "ACS CPU / peak RSS MB", f"{s['acs_cpu']} / {s['acs_peak_rss_mb']}")
        add(label, "errors / 503s", f"{_fmt(s['errors'])} / {s['backpressure_503']}")
        add(label, "client CPU / others' CPU", f"{s['client_cpu']} / {s['background_cpu']}")
    w = figures.get("workers")
    if w:
        for key in ("one", "two"):
            run = w[key]
            label = f"6 workers={run['workers']} N={w['cpes']:,}"
            add(label, "sessions/s (the median round's)", run["sessions_per_s"])
            add(
                label,
                "ACS CPU / ms per session",
                f"{run['acs_cpu']} / {run['acs_cpu_ms_per_session']}",
            )
            add(label, "session p50 / p99 ms", f"{_fmt(run['p50_ms'])} / {_fmt(run['p99_ms'])}")
            add(label, "errors / client CPU", f"{_fmt(run['errors'])} / {run['client_cpu']}")
        add("6 workers", "speedup (target >= 1.5)", w["speedup"])
        add("6 workers", "CPU per session, 2 / 1 (target <= 1.1)", w["cpu_per_session_ratio"])
        add(
            "6 workers",
            "each round (1-2, 2-1, ...): speedup / CPU 2 / 1",
            ", ".join(f"{r['speedup']} / {r['cpu_per_session_ratio']}" for r in w["rounds"]),
        )
    a = figures.get("api")
    if a:
        label = f"4 API {a['devices']:,} dev"
        for name in (*scenarios.LIST_QUERIES, *scenarios.DETAIL_QUERIES):
            q = a[name]
            add(label, f"{name} p50 / p99 ms", f"{_fmt(q['p50_ms'])} / {_fmt(q['p99_ms'])}")
        add(label, "non-200 answers", a["errors"])
        add(label, "ACS CPU / others' CPU", f"{a['acs_cpu']} / {a['background_cpu']}")
    b = figures.get("boot_storm")
    if b:
        label = f"3 boot storm {b['cpes']:,}"
        add(label, "acs serve --workers", b["workers"])
        add(label, "seconds to all provisioned", b["seconds_to_all_provisioned"])
        add(label, "registered / provisioned", f"{b['registered']:,} / {b['provisioned']:,}")
        add(
            label,
            "lost sessions / unfinished CPEs",
            f"{b['lost_sessions']} / {b['unfinished_cpes']}",
        )
        add(label, "errors (503 excluded)", b["errors"])
        add(label, "errors by kind", b["errors_by_kind"])
        add(label, "503 back-pressure / retries", f"{b['backpressure_503']} / {b['retries']}")
        add(
            label,
            "session p50 / p99 ms",
            f"{_fmt(b['session_p50_ms'])} / {_fmt(b['session_p99_ms'])}",
        )
        add(label, "ACS CPU / peak RSS MB", f"{b['acs_cpu']} / {b['acs_peak_rss_mb']}")
        add(label, "CWMP listen backlog", b["cwmp_backlog"] or f"as shipped ({LISTEN_BACKLOG})")
        add(label, "client CPU / others' CPU", f"{b['client_cpu']} / {b['background_cpu']}")
    n = figures.get("nodes")
    if n:
        label = f"7 two nodes {n['cpes']:,}"
        add(label, "seconds to all provisioned", n["seconds_to_all_provisioned"])
        add(label, "registered / provisioned", f"{n['registered']:,} / {n['provisioned']:,}")
        add(
            label,
            f"provisioning RPCs ({scenarios.PROVISIONING_RPCS} each, once)",
            n["provisioning_rpcs"],
        )
        add(
            label,
            "lost / unfinished / errors",
            f"{n['lost_sessions']} / {n['unfinished_cpes']} / {n['errors']}",
        )
        add(label, "errors by kind", n["errors_by_kind"])
        add(label, "requests forwarded by each node", " / ".join(_fmt(f) for f in n["forwarded"]))
        add(label, "ACS CPU (both) / client CPU", f"{n['acs_cpu']} / {n['client_cpu']}")
    sim = figures.get("simulator")
    if sim:
        add(f"5 simulator {sim['cpes']:,}", "KB per CPE", sim["kb_per_cpe"])
    for name, met in figures["targets"].items():
        add("target", name, "met" if met else ("not measured" if met is None else "MISSED"))
    saturated = figures.get("client_saturated") or []
    for where in saturated:
        add("WARNING", "load client saturated", where)
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for scenario, name, value in rows:
        out.write(f"{scenario:<{width[0]}}  {name:<{width[1]}}  {value}\n")


def _pair(entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [entry["one"], entry["two"]] if entry else []


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced N, about a minute")
    size.add_argument("--tiny", action="store_true", help="smallest N: checks the harness")
    p.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {', '.join(SCENARIOS)})",
    )
    p.add_argument("--profile", type=Path, default=None, help="py-spy the ACS into this dir")
    p.add_argument(
        "--cwmp-backlog",
        type=int,
        default=None,
        help="listen backlog of the ACS's CWMP endpoint (default: as shipped)",
    )
    p.add_argument("--workdir", type=Path, default=None, help="keep database and logs here")
    p.add_argument(
        "--engine",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the ACS's database: an SQLite file (default) or a throwaway PostgreSQL server",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="acs serve --workers of the ACS in every scenario but 'workers' and 'nodes' "
        "(default: 1, and 2 for 'boot_storm', whose target is on two workers)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        build_parser().error(f"unknown scenario(s): {', '.join(unknown)}")
    profile = scenarios.PROFILES["tiny" if args.tiny else "quick" if args.quick else "full"]
    procs.raise_fd_limit()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="acs-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database: str | Path = workdir / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    figures: dict[str, Any] = {
        "profile": profile.name,
        "engine": args.engine,
        "machine": machine(),
    }
    figures["machine"]["loadavg_start"] = procs.loadavg()
    status = 0
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    engine = contextlib.ExitStack()
    try:
        if args.engine == "postgresql":
            progress("starting PostgreSQL")
            cluster = engine.enter_context(pgcluster.started(PG_SETTINGS))
            cluster.admin("CREATE DATABASE bench")
            database = cluster.url("bench")
        progress(f"seeding {profile.inventory:,} devices")
        seeded = scenarios.seed(database, profile)
        figures["seed"] = {"devices": seeded.inventory, "seconds": round(seeded.seconds, 2)}
        env = scenarios.Env(
            workdir,
            database,
            profile,
            args.profile,
            args.cwmp_backlog,
            args.workers or 1,
            args.workers or 2,
        )
        figures["workers_per_acs"] = env.workers
        ceiling_rps = 0.0
        if {"ceiling", "steady", "workers"} & set(only):
            progress("1 ceiling")
            figures["ceiling"] = scenarios.ceiling(env)
            ceiling_rps = figures["ceiling"]["requests_per_s"]
        if "steady" in only:
            figures["steady"] = []
            for n in profile.steady_cpes:
                progress(f"2 steady informs N={n:,}")
                figures["steady"].append(scenarios.steady(env, n, ceiling_rps))
            figures["inform_ratio"] = figures["steady"][-1]["inform_ratio"]
        if "workers" in only:
            progress(
                f"6 steady informs, one process and --workers 2, {profile.worker_rounds} rounds"
            )
            figures["workers"] = scenarios.workers(env, ceiling_rps)
        if "api" in only:
            progress(f"4 API at {seeded.inventory:,} devices")
            figures["api"] = scenarios.api(env, seeded)
        if "boot_storm" in only:
            progress(f"3 boot storm of {profile.storm_cpes:,} CPEs")
            figures["boot_storm"] = scenarios.boot_storm(env)
        if "nodes" in only:
            progress("7 two nodes behind a round-robin proxy")
            figures["nodes"] = scenarios.nodes(env, seeded)
        if "simulator" in only:
            progress(f"5 simulator footprint at {profile.sim_cpes:,} CPEs")
            figures["simulator"] = scenarios.simulator(env)
    except (procs.BenchError, StoreError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        figures["error"] = str(exc)
        status = 1
    finally:
        engine.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["machine"]["loadavg_end"] = procs.loadavg()
    figures["targets"] = evaluate(figures)
    figures["client_saturated"] = [
        name
        for name, entry in [("ceiling", figures.get("ceiling"))]
        + [(f"steady N={s['cpes']}", s) for s in figures.get("steady") or []]
        + [(f"workers={s['workers']}", s) for s in _pair(figures.get("workers"))]
        + [("boot_storm", figures.get("boot_storm")), ("nodes", figures.get("nodes"))]
        if entry and entry.get("client_saturated")
    ]
    table(figures, sys.stdout)
    print(json.dumps(figures, sort_keys=True), flush=True)
    return status
