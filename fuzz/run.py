"""Orchestration of ``make fuzz``: seed, start the ACS, run schemathesis per profile, summarise.

Each profile gets its own temporary directory (configuration, database, files, the ACS log
and schemathesis' JSON report) and its own ACS process on 127.0.0.1 with ephemeral ports.
``st run`` reads the document from the live ACS with the profile's token and sends every
request there; nothing else is contacted. The exit status is 0 only when every profile's run
completed with no failure and no error, and the ACS was still running at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import pgcluster
from bench.procs import Acs, BenchError
from fuzz.seed import seed

# The PostgreSQL server of --engine postgresql: a fuzz database dies with the run.
PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

ROOT = Path(__file__).resolve().parent.parent
ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).resolve().with_name("schemathesis.toml")
# schemathesis' own checks. status/content-type/schema conformance judge every response
# against the document; the data checks hold the document to the API's real validation:
# a request the schema allows must not get 400, one it forbids must not get 2xx.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "positive_data_acceptance",
    "negative_data_rejection",
)
PHASES = ("examples", "coverage", "fuzzing")
PROFILES = ("admin", "operator")
DEFAULT_MAX_EXAMPLES = 40
DEFAULT_MAX_TIME = 100  # seconds per profile
DEFAULT_SEED = 9
GRACE = 60  # seconds past --max-time before a hung run is killed


@dataclass
class Outcome:
    """One profile's run, as read from schemathesis' JSON report."""

    profile: str
    exit_code: int
    selected: int = 0
    operations: int = 0
    examples: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    problem: str | None = None  # what went wrong outside schemathesis' checks

    @property
    def failed(self) -> bool:
        return bool(self.exit_code or self.failures or self.errors or self.problem)


def st_command(
    schema_url: str, token: str, report_dir: Path, *, max_examples: int, max_time: int, seed: int
) -> list[str]:
    return [
        str(ST),
        "--config-file",
        str(CONFIG),
        "run",
        schema_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        ",".join(PHASES),
        "--max-examples",
        str(max_examples),
        "--max-time",
        str(max_time),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        # No .hypothesis/ example database in the checkout: every run starts from the seed.
        "--generation-database",
        "none",
        "--report",
        "json",
        "--report-dir",
        str(report_dir),
        "--no-color",
    ]


def run_profile(
    profile: str,
    workdir: Path,
    *,
    max_examples: int,
    max_time: int,
    seed_value: int,
    cluster: pgcluster.Cluster | None = None,
) -> Outcome:
    """Seed a database (an SQLite file, or one of ``cluster``), start the ACS, fuzz it with
    this profile's token, stop the ACS."""
    workdir.mkdir(parents=True)
    database: Path | str = workdir / "acs.db"
    if cluster is not None:
        cluster.admin(f"CREATE DATABASE fuzz_{profile}")
        database = cluster.url(f"fuzz_{profile}")
    seeded = seed(database, workdir / "files")
    token = seeded.admin_token if profile == "admin" else seeded.operator_token
    scope = "" if profile == "admin" else str(seeded.operator_organization)
    acs = Acs(workdir=workdir, database=database, name="acs")
    try:
        acs.start()
    except BenchError as exc:
        return Outcome(profile, 1, problem=f"the ACS did not start: {exc}")
    report_dir = workdir / "report"
    command = st_command(
        f"http://127.0.0.1:{acs.api_port}/api/v1/openapi.json",
        token,
        report_dir,
        max_examples=max_examples,
        max_time=max_time,
        seed=seed_value,
    )
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "fuzz.hooks",
        # Hypothesis' own cache (.hypothesis/) goes with the run, not into the checkout.
        "HYPOTHESIS_STORAGE_DIRECTORY": str(workdir / "hypothesis"),
        "FUZZ_DATABASE": str(database),
        "FUZZ_SCOPE": scope,
    }
    print(f"\n=== fuzz: profile {profile} ({'unscoped' if not scope else f'org {scope}'})")
    print(f"$ {' '.join(command).replace(token, '<token>')}", flush=True)
    try:
        completed = subprocess.run(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=max_time + GRACE
        )
        exit_code = completed.returncode
    except subprocess.TimeoutExpired:
        exit_code = 1
    finally:
        alive = acs.proc is not None and acs.proc.poll() is None
        acs.stop()
    outcome = read_report(profile, exit_code, report_dir)
    if not alive:
        tail = acs.log_path.read_text(errors="replace").splitlines()[-20:]
        outcome.problem = "the ACS died during the run; its log ends:\n" + "\n".join(tail)
    return outcome


def read_report(profile: str, exit_code: int, report_dir: Path) -> Outcome:
    reports = sorted(report_dir.glob("*.json"))
    if not reports:
        return Outcome(profile, exit_code, problem="schemathesis wrote no report")
    report = json.loads(reports[-1].read_text())
    outcome = Outcome(
        profile,
        exit_code,
        selected=int(report["operations"]["selected"]),
        operations=int(report["operations"]["tested"]),
        examples=int(report["test_cases"]["generated"]),
        failures=list(report["failures"]),
        errors=len(report["errors"]),
        seconds=float(report["running_time"]),
    )
    if not report.get("complete", False):
        outcome.problem = f"the run did not complete ({report.get('stop_reason')})"
    elif outcome.operations < outcome.selected:
        # Operations left untested (the time budget ran out first) are no pass.
        outcome.problem = f"only {outcome.operations} of {outcome.selected} operations tested"
    return outcome


def summary(outcomes: Sequence[Outcome]) -> list[str]:
    lines = ["", "=== fuzz summary"]
    lines.append(
        f"{'profile':<10} {'operations':>10} {'examples':>9} {'failures':>9} "
        f"{'errors':>7} {'seconds':>8}"
    )
    for o in outcomes:
        failures = sum(int(f.get("count", 1)) for f in o.failures)
        lines.append(
            f"{o.profile:<10} {o.operations:>10} {o.examples:>9} {failures:>9} "
            f"{o.errors:>7} {o.seconds:>8.1f}"
        )
    for o in outcomes:
        for f in o.failures:
            ops = ", ".join(f.get("operations", []))
            lines.append(f"  {o.profile}: {f['code']} {f['title']} x{f.get('count', 1)}: {ops}")
        if o.problem:
            lines.append(f"  {o.profile}: {o.problem}")
        if o.exit_code and not (o.failures or o.errors or o.problem):
            lines.append(f"  {o.profile}: schemathesis exited with {o.exit_code}")
    bad = [o.profile for o in outcomes if o.failed]
    lines.append(f"fuzz: FAILED ({', '.join(bad)})" if bad else "fuzz: OK, no failures")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument(
        "--max-examples",
        type=int,
        default=DEFAULT_MAX_EXAMPLES,
        help=f"test cases per operation and phase (default {DEFAULT_MAX_EXAMPLES})",
    )
    parser.add_argument(
        "--max-time",
        type=int,
        default=DEFAULT_MAX_TIME,
        help=f"seconds per profile (default {DEFAULT_MAX_TIME})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"generation seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        action="append",
        help="run only this profile (repeatable; default: all)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep databases, ACS logs and reports here (default: temp)"
    )
    parser.add_argument(
        "--engine",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the ACS's database: an SQLite file (default) or a throwaway PostgreSQL server",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not ST.exists():
        print(f"fuzz: {ST} not found; `make fuzz` installs schemathesis", file=sys.stderr)
        return 2
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="acs-fuzz-"))
    outcomes = []
    engine = contextlib.ExitStack()
    try:
        cluster = None
        if args.engine == "postgresql":
            cluster = engine.enter_context(pgcluster.started(PG_SETTINGS))
        for profile in args.profile or PROFILES:
            outcomes.append(
                run_profile(
                    profile,
                    workdir / profile,
                    max_examples=args.max_examples,
                    max_time=args.max_time,
                    seed_value=args.seed,
                    cluster=cluster,
                )
            )
    finally:
        engine.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(summary(outcomes)))
    return 1 if any(o.failed for o in outcomes) else 0
