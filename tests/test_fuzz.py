"""``make fuzz``'s own logic (fuzz/): the seeded database and the verdict read from
schemathesis' JSON report. The fuzzing itself runs in ``make fuzz``, not here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acs.store import Store
from fuzz.run import read_report, summary
from fuzz.seed import seed


def _report(tmp_path: Path, **changes: Any) -> Path:
    report: dict[str, Any] = {
        "complete": True,
        "stop_reason": "completed",
        "running_time": 12.5,
        "operations": {"selected": 50, "tested": 50},
        "test_cases": {"generated": 1234},
        "failures": [],
        "errors": [],
    }
    report.update(changes)
    directory = tmp_path / "report"
    directory.mkdir()
    (directory / "json-1.json").write_text(json.dumps(report))
    return directory


def test_a_complete_clean_run_passes(tmp_path: Path) -> None:
    outcome = read_report("admin", 0, _report(tmp_path))
    assert not outcome.failed
    assert (outcome.operations, outcome.examples) == (50, 1234)
    assert summary([outcome])[-1] == "fuzz: OK, no failures"


def test_failures_fail_the_run_and_are_listed(tmp_path: Path) -> None:
    failure = {
        "code": "ST202",
        "title": "Schema-valid request rejected",
        "count": 2,
        "operations": ["POST /api/v1/location/"],
    }
    outcome = read_report("operator", 1, _report(tmp_path, failures=[failure]))
    assert outcome.failed
    lines = summary([outcome])
    assert "  operator: ST202 Schema-valid request rejected x2: POST /api/v1/location/" in lines
    assert lines[-1] == "fuzz: FAILED (operator)"


def test_operations_left_untested_fail_the_run(tmp_path: Path) -> None:
    outcome = read_report("admin", 0, _report(tmp_path, operations={"selected": 50, "tested": 40}))
    assert outcome.failed
    assert outcome.problem == "only 40 of 50 operations tested"


def test_a_missing_or_incomplete_report_fails_the_run(tmp_path: Path) -> None:
    assert read_report("admin", 0, tmp_path).problem == "schemathesis wrote no report"
    outcome = read_report("admin", 0, _report(tmp_path, complete=False, stop_reason="interrupted"))
    assert outcome.failed and outcome.problem == "the run did not complete (interrupted)"


def test_the_seed_gives_both_tokens_and_rows_in_both_organizations(tmp_path: Path) -> None:
    seeded = seed(tmp_path / "acs.db", tmp_path / "files")
    store = Store.open(tmp_path / "acs.db")
    try:
        admin = store.verify_token(seeded.admin_token)
        operator = store.verify_token(seeded.operator_token)
        assert admin is not None and admin.role == "admin" and not admin.organization_ids
        assert operator is not None and operator.role == "operator"
        assert operator.organization_ids == (seeded.operator_organization,)
        orgs = {d.organization_id for d in store.devices_page(limit=100, offset=0)[1]}
        assert len(orgs) == 2
    finally:
        store.close()
    assert len(list((tmp_path / "files").rglob("*-*"))) == 3  # the image, backup and file
