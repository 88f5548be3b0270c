"""Device search and tags in the store (acs/store/devices.py filters, acs/store/tags.py):
every filter alone and combined, with the organization scope and paging; tags one device at
a time and in bulk; the migration that moves the operational records' tags into their table.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from acs.store import Conflict, DeviceFilter, ParameterMatch, Store
from acs.store.checks import MAX_TAGS
from acs.store.migrations import MIGRATIONS, migrate

T0 = 1_000.0


@pytest.fixture
def fleet(store: Store) -> dict[str, int]:
    """Five devices over two organizations, by serial: their ids."""
    east = store.ensure_organization("East").id
    west = store.ensure_organization("West").id
    specs: list[tuple[str, int, dict[str, Any]]] = [
        ("HG-1", east, {"software_version": "1.0", "product_class": "HG-181",
                        "manufacturer": "Acme", "hardware_version": "A"}),
        ("HG-2", east, {"software_version": "2.0", "product_class": "HG-181",
                        "manufacturer": "Acme", "description": "Lobby router"}),
        ("HG-3", west, {"software_version": "1.0", "product_class": "HG-181",
                        "manufacturer": "Acme"}),
        ("OLD-4", west, {"software_version": "1.0", "product_class": "IGD-98",
                         "manufacturer": "Other", "name": "basement"}),
        ("OLD-5", east, {}),
    ]  # fmt: skip
    ids: dict[str, int] = {}
    for serial, org, fields in specs:
        name = fields.pop("name", serial)
        device = store.create_device(
            serial_number=serial, name=name, organization_id=org, now=T0, actor="t"
        )
        if fields:
            store.update_device(device.id, now=T0, actor="t", **fields)
        ids[serial] = device.id
    ssid = "Device.WiFi.SSID.1.SSID"
    for serial, value in (("HG-1", "home-1"), ("HG-2", "home-2"), ("HG-3", "office")):
        store.upsert_parameters(ids[serial], [(ssid, value, "xsd:string", True)], now=T0)
    store.set_tags(ids["HG-1"], ["vip", "pilot"], now=T0, actor="t")
    store.set_tags(ids["HG-2"], ["pilot"], now=T0, actor="t")
    store.set_tags(ids["OLD-4"], ["vip", "pilot"], now=T0, actor="t")
    return ids


def serials(store: Store, fleet: dict[str, int], **filters: Any) -> list[str]:
    by_id = {v: k for k, v in fleet.items()}
    total, page = store.devices_page(DeviceFilter(**filters), limit=100)
    assert total == len(page) == store.count_devices(DeviceFilter(**filters))
    return [by_id[d.id] for d in page]


SSID = "Device.WiFi.SSID.1.SSID"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"tags": ("pilot",)}, ["HG-1", "HG-2", "OLD-4"]),
        ({"tags": ("pilot", "vip")}, ["HG-1", "OLD-4"]),
        ({"tags": ("vip", "nobody")}, []),
        ({"software_version": "1.0"}, ["HG-1", "HG-3", "OLD-4"]),
        ({"hardware_version": "A"}, ["HG-1"]),
        ({"product_class": "IGD-98"}, ["OLD-4"]),
        ({"manufacturer": "Acme"}, ["HG-1", "HG-2", "HG-3"]),
        ({"text": "hg-"}, ["HG-1", "HG-2", "HG-3"]),
        ({"text": "LOBBY"}, ["HG-2"]),
        ({"text": "basem"}, ["OLD-4"]),
        ({"text": "%"}, []),
        ({"parameters": (ParameterMatch(SSID, "home-1"),)}, ["HG-1"]),
        ({"parameters": (ParameterMatch(SSID, "home", prefix=True),)}, ["HG-1", "HG-2"]),
        ({"parameters": (ParameterMatch(SSID, "", prefix=True),)}, ["HG-1", "HG-2", "HG-3"]),
        (
            {"parameters": (ParameterMatch(SSID, "home", True), ParameterMatch(SSID, "home-2"))},
            ["HG-2"],
        ),
        ({"parameters": (ParameterMatch("Device.X", "home-1"),)}, []),
        (
            {"software_version": "1.0", "product_class": "HG-181", "tags": ("pilot",)},
            ["HG-1"],
        ),
    ],
)
def test_each_filter_alone_and_combined(
    store: Store, fleet: dict[str, int], filters: dict[str, Any], expected: list[str]
) -> None:
    assert serials(store, fleet, **filters) == expected


def test_the_organization_scope_bounds_every_filter(store: Store, fleet: dict[str, int]) -> None:
    east = store.ensure_organization("East").id
    assert serials(store, fleet, organization_ids=(east,), tags=("vip",)) == ["HG-1"]
    assert serials(store, fleet, organization_ids=(east,), software_version="1.0") == ["HG-1"]
    assert serials(store, fleet, organization_ids=(), tags=("pilot",)) == []


def test_filtered_pages_follow_id_order_past_an_offset(store: Store, fleet: dict[str, int]) -> None:
    for filters in (
        DeviceFilter(tags=("pilot",)),
        DeviceFilter(parameters=(ParameterMatch(SSID, "", prefix=True),)),
        DeviceFilter(manufacturer="Acme"),
    ):
        total, everything = store.devices_page(filters, limit=10)
        pages = [store.devices_page(filters, limit=1, offset=i)[1] for i in range(total)]
        assert [p[0].id for p in pages] == [d.id for d in everything]


def test_tags_are_set_added_removed_and_recorded(store: Store, fleet: dict[str, int]) -> None:
    device = fleet["HG-3"]
    assert store.set_tags(device, ["b", "a", "a"], now=T0, actor="op") == ["b", "a"]
    assert store.set_tags(device, ["c", "a"], add=True, now=T0, actor="op") == ["b", "a", "c"]
    assert store.remove_tags(device, ["a", "zz"], now=T0, actor="op") == ["b", "c"]
    assert store.set_tags(device, [], now=T0, actor="op") == []
    changes = [h.detail for h in store.history(device) if h.action == "tags_changed"]
    assert changes[0] == {"added": [], "removed": ["b", "c"]}  # newest first
    assert len(changes) == 4
    store.set_tags(device, [], now=T0, actor="op")  # no change: no entry
    assert len([h for h in store.history(device) if h.action == "tags_changed"]) == 4


@pytest.mark.parametrize("bad", ["", " x", "x ", "a\nb", "x" * 65, 5, None, "\u202e", "\ud800"])
def test_a_bad_tag_is_refused(store: Store, fleet: dict[str, int], bad: Any) -> None:
    with pytest.raises(ValueError):
        store.set_tags(fleet["HG-3"], ["ok", bad], now=T0, actor="op")
    with pytest.raises(ValueError):
        store.devices_page(DeviceFilter(tags=(bad,)))
    assert store.device_tags(fleet["HG-3"]) == []


def test_a_device_holds_at_most_max_tags(store: Store, fleet: dict[str, int]) -> None:
    device = fleet["HG-3"]
    store.set_tags(device, [f"t{i}" for i in range(MAX_TAGS)], now=T0, actor="op")
    with pytest.raises(Conflict):
        store.set_tags(device, ["one-more"], add=True, now=T0, actor="op")
    assert len(store.device_tags(device)) == MAX_TAGS


def test_bulk_tags_follow_the_filter_and_say_what_changed(
    store: Store, fleet: dict[str, int]
) -> None:
    added = store.tag_devices(
        DeviceFilter(software_version="1.0"), ["night", "vip"], now=T0, actor="op"
    )
    assert added == {"matched": 3, "changed": 3, "at_limit": 0}
    assert serials(store, fleet, tags=("night", "vip")) == ["HG-1", "HG-3", "OLD-4"]
    again = store.tag_devices(DeviceFilter(software_version="1.0"), ["night"], now=T0, actor="op")
    assert again == {"matched": 3, "changed": 0, "at_limit": 0}
    removed = store.tag_devices(DeviceFilter(), ["vip"], remove=True, now=T0, actor="op")
    assert removed == {"matched": 5, "changed": 3, "at_limit": 0}
    assert serials(store, fleet, tags=("vip",)) == []
    entries = [h.detail for h in store.history(fleet["HG-3"]) if h.action == "tags_changed"]
    assert {"added": [], "removed": ["vip"]} in entries


def test_bulk_tags_skip_devices_at_the_limit(store: Store, fleet: dict[str, int]) -> None:
    store.set_tags(fleet["HG-3"], [f"t{i}" for i in range(MAX_TAGS)], now=T0, actor="op")
    result = store.tag_devices(DeviceFilter(manufacturer="Acme"), ["x"], now=T0, actor="op")
    assert result == {"matched": 3, "changed": 2, "at_limit": 1}
    assert "x" not in store.device_tags(fleet["HG-3"])


def test_tags_go_with_their_device(store: Store, fleet: dict[str, int]) -> None:
    store.delete_device(fleet["HG-1"], now=T0, actor="op")
    assert store.tags_by_device(fleet.values()) == {
        fleet["HG-2"]: ["pilot"],
        fleet["OLD-4"]: ["vip", "pilot"],
    }


@pytest.mark.sqlite_only
def test_the_migration_moves_record_tags_into_their_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o600)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn, MIGRATIONS[:11])
    conn.execute("INSERT INTO organizations (name) VALUES ('Default')")
    conn.execute(
        "INSERT INTO devices (uuid, name, serial_number, organization_id, created, last_change, "
        "status_change)"
        " VALUES ('u1', 'n', 'SN1', 1, 0, 0, 0)"
    )
    conn.execute(
        "INSERT INTO operational_records (device_id, operational_status, data) VALUES "
        """(1, 'active', '{"tags": ["a", "a", " bad", "b"], "notes": "kept"}')"""
    )
    conn.close()
    store = Store.open(path)
    try:
        assert store.device_tags(1) == ["a", "b"]
        record = store.get_operational_record(1)
        assert record.data == {"notes": "kept", "metadata": {"tags_not_migrated": [" bad"]}}
    finally:
        store.close()
