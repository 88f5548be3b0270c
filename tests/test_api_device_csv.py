"""Devices as CSV (api/device_csv.py): an import is all or nothing with a report of every bad
line, a dry run writes nothing, 10,000 rows go in one transaction, an export selects what the
list filters select and imports back; ``acs import`` is the same import. In memory
(StubTreq), the CLI against a database file.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from apiharness import ApiHarness
from twisted.web.client import ResponseFailed

from acs import cli
from acs.store import Device, Store

V1 = "/api/v1"
HEADER = "serial_number,name,type,organization,location,description,tags,update_frequency\n"


def post_csv(harness: ApiHarness, text: str, query: str = "", role: str = "admin") -> Any:
    return harness.call(
        "POST",
        f"{V1}/inventory_device/import/{query}",
        token=harness.token(role),
        data=text.encode(),
        headers={"Content-Type": "text/csv"},
    )


@pytest.fixture
def org(harness: ApiHarness) -> int:
    return harness.store.ensure_organization("East").id


def test_a_good_file_creates_every_device_with_its_location_and_tags(
    harness: ApiHarness, org: int
) -> None:
    kind = harness.store.create_device_type(now=1.0, actor="t", name="HG-181")
    text = HEADER + (
        f'SN-1,first,{kind.id},East,Lobby,"a, b","[""vip""]",600\n'
        "SN-2,,HG-181,East,Lobby,,,\n"
        f"SN-3,third,,{org},,,,\n"
    )
    reply = post_csv(harness, text)
    assert reply.status == 200, reply.json
    assert reply.json == {"rows": 3, "created": 3, "dry_run": False, "errors": [], "error_count": 0}
    one = harness.store.find_device_by_serial("SN-1")
    two = harness.store.find_device_by_serial("SN-2")
    assert one is not None and two is not None
    assert (one.name, one.type_id, one.organization_id, one.description) == (
        "first", kind.id, org, "a, b"
    )  # fmt: skip
    assert one.update_frequency == 600 and one.location_id == two.location_id is not None
    assert two.name == "SN-2" and two.type_id == kind.id  # by the type's name
    assert harness.store.device_tags(one.id) == ["vip"]


def test_one_bad_row_writes_nothing_and_every_bad_line_is_reported(
    harness: ApiHarness, org: int
) -> None:
    harness.store.create_device(
        serial_number="TAKEN", name="t", organization_id=org, now=1.0, actor="t"
    )
    text = HEADER + (
        "OK-1,,,East,,,,\n"
        "TAKEN,,,East,,,,\n"  # line 3: exists
        "OK-1,,,East,,,,\n"  # line 4: twice in the file
        "BAD/1,,,Nowhere,,,[1],5\n"  # line 5: serial, organization, tags, frequency
        "OK-2,,999,East,,,,\n"  # line 6: no such type
    )
    for query in ("", "?dry_run=true"):
        reply = post_csv(harness, text, query)
        assert reply.status == 400, reply.json
        report = reply.json
        assert (report["rows"], report["created"], report["error_count"]) == (5, 0, 4)
        by_line = {e["line"]: e["errors"] for e in report["errors"]}
        assert set(by_line) == {3, 4, 5, 6}
        assert "serial_number" in by_line[3] and "serial_number" in by_line[4]
        assert {"serial_number", "organization", "tags", "update_frequency"} <= set(by_line[5])
        assert "type" in by_line[6]
    assert harness.store.count_devices() == 1
    assert harness.store.find_device_by_serial("OK-1") is None


def test_a_dry_run_of_a_good_file_writes_nothing(harness: ApiHarness, org: int) -> None:
    reply = post_csv(harness, HEADER + "SN-9,,,East,,,,\n", "?dry_run=true")
    assert (reply.status, reply.json["created"], reply.json["dry_run"]) == (200, 0, True)
    assert harness.store.count_devices() == 0


@pytest.mark.parametrize(
    "text",
    ["", "name,color\nx,y\n", "serial_number,serial_number\nx,y\n", "name\nx\n",
     'serial_number\n"unterminated\n', "serial_number\nA,B\n"],
    ids=["empty", "unknown-column", "twice", "no-serial", "not-csv", "extra-cell"],
)  # fmt: skip
def test_a_file_that_is_no_import_is_a_400(harness: ApiHarness, text: str) -> None:
    reply = post_csv(harness, text)
    assert reply.status == 400 and "detail" in reply.json
    assert harness.store.count_devices() == 0


def test_only_admins_import_and_a_scoped_token_only_into_its_organization(
    harness: ApiHarness, org: int
) -> None:
    assert post_csv(harness, HEADER + "SN-1,,,,,,,\n", role="operator").status == 403
    other = harness.store.ensure_organization("West").id
    token = harness.token("admin", [org], name="east-admin")
    reply = harness.call(
        "POST", f"{V1}/inventory_device/import/", token=token,
        data=(HEADER + f"SN-1,,,{other},,,,\nSN-2,,,,,,,\n").encode(),
    )  # fmt: skip
    assert reply.status == 400
    assert [e["line"] for e in reply.json["errors"]] == [2]  # SN-2 takes the token's org
    assert harness.store.count_devices() == 0


def test_ten_thousand_rows_import_in_one_go(harness: ApiHarness, org: int) -> None:
    rows = "".join(f"BULK-{i:05d},device {i},,East,Site {i % 10},,,\n" for i in range(10_000))
    started = time.monotonic()
    reply = post_csv(harness, HEADER + rows)
    elapsed = time.monotonic() - started
    assert reply.status == 200, reply.json["errors"][:3]
    assert reply.json["created"] == 10_000
    assert harness.store.count_devices() == 10_000
    print(f"10,000-row import: {elapsed:.1f} s")  # a figure for people, not an assertion


def test_an_export_follows_the_filters_and_imports_back(harness: ApiHarness, org: int) -> None:
    text = HEADER + (
        'EX-1,one,,East,Lobby,"quoted, ""text""","[""vip"", ""b""]",600\n'
        "EX-2,two,,East,,,,\n"
        'EX-3,three,,East,,,"[""vip""]",\n'
    )
    assert post_csv(harness, text).status == 200
    token = harness.token("viewer")
    reply = harness.call("GET", f"{V1}/inventory_device/?format=csv&tag=vip", token=token)
    assert reply.status == 200
    assert reply.header("Content-Type") == "text/csv; charset=utf-8"
    exported = list(csv.DictReader(io.StringIO(reply.raw.decode())))
    assert [r["serial_number"] for r in exported] == ["EX-1", "EX-3"]
    assert exported[0]["description"] == 'quoted, "text"'
    assert json.loads(exported[0]["tags"]) == ["vip", "b"]
    everything = harness.call("GET", f"{V1}/inventory_device/?format=csv", token=token).raw
    store = harness.store
    before = {}
    for serial in ("EX-1", "EX-2", "EX-3"):
        device = store.find_device_by_serial(serial)
        assert device is not None
        before[serial] = (device, store.device_tags(device.id))
        store.delete_device(device.id, now=1.0, actor="t")
    again = post_csv(harness, everything.decode())
    assert again.status == 200, again.json
    for serial, (old, tags) in before.items():
        new = store.find_device_by_serial(serial)
        assert new is not None and new.id != old.id
        assert (new.name, new.description, new.organization_id, new.update_frequency) == (
            old.name, old.description, old.organization_id, old.update_frequency
        )  # fmt: skip
        assert new.location_id == old.location_id  # the same location, found by name
        assert store.device_tags(new.id) == tags
    assert before["EX-1"][1] == ["vip", "b"]


def test_an_export_is_written_in_pages(harness: ApiHarness, org: int) -> None:
    rows = "".join(f"P-{i:04d},,,East,,,,\n" for i in range(1201))
    assert post_csv(harness, HEADER + rows).status == 200
    reply = harness.call("GET", f"{V1}/inventory_device/?format=csv", token=harness.token())
    lines = reply.raw.decode().splitlines()
    assert len(lines) == 1202 and lines[1].split(",")[1] == "P-0000"
    assert (
        harness.call("GET", f"{V1}/inventory_device/?format=xml", token=harness.token()).status
        == 400
    )


def test_an_export_whose_page_cannot_be_read_is_cut_short_not_ended(
    harness: ApiHarness, org: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = "".join(f"P-{i:04d},,,East,,,,\n" for i in range(600))
    assert post_csv(harness, HEADER + rows).status == 200
    pages = harness.store.devices_after

    def second_page_fails(filters: Any, after: int, *, limit: int) -> list[Device]:
        if after:
            raise sqlite3.OperationalError("disk I/O error")
        return pages(filters, after, limit=limit)

    monkeypatch.setattr(harness.store, "devices_after", second_page_fails)
    # The client sees the chunked answer end before its last chunk: not a whole file.
    with pytest.raises(ResponseFailed, match="_DataLoss"):
        harness.call("GET", f"{V1}/inventory_device/?format=csv", token=harness.token())


def test_the_cli_imports_the_same_way(tmp_path: Path) -> None:
    database = tmp_path / "acs.db"
    config = tmp_path / "acs.toml"
    config.write_text(f'[storage]\ndatabase = "{database}"\nfiles = "{tmp_path / "f"}"\n')
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "CLI-1,,,,,,,\nCLI-2,,,,,,,\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "CLI-3,,,,,,,\nCLI-1,,,,,,,\n")
    assert cli.main(["import", "--config", str(config), "--dry-run", str(good)]) == 0
    assert cli.main(["import", "--config", str(config), str(good)]) == 0
    assert cli.main(["import", "--config", str(config), str(bad)]) == 1
    assert cli.main(["import", "--config", str(config), str(tmp_path / "none.csv")]) == 2
    store = Store.open(database)
    try:
        assert store.count_devices() == 2 and store.find_device_by_serial("CLI-3") is None
    finally:
        store.close()
