"""GET /api/v1/overview/: the dashboard's counts, within the caller's scope."""

from __future__ import annotations

from apiharness import T0, ApiHarness, harness  # noqa: F401 (fixture)


def _fleet(h: ApiHarness) -> tuple[int, int]:
    east = h.store.ensure_organization("East").id
    west = h.store.ensure_organization("West").id
    rows = [  # serial, organization, product class, software version, down at
        ("E1", east, "HG-181", "1.0", None),
        ("E2", east, "HG-181", "1.0", T0 + 20),
        ("E3", east, "HG-181", "2.0", T0 + 10),
        ("E4", east, "XR-7", None, None),
        ("W1", west, "XR-7", "1.0", T0 + 30),
    ]
    for serial, org, model, version, down_at in rows:
        device = h.store.create_device(
            serial_number=serial, name=serial.lower(), organization_id=org, now=T0, actor="t"
        )
        h.store.db.execute(
            "UPDATE devices SET product_class = ?, software_version = ? WHERE id = ?",
            (model, version, device.id),
        )
        h.store.set_status(device.id, "Up", now=T0)
        if down_at is not None:
            h.store.set_status(device.id, "Down", now=down_at)
    return east, west


def test_overview_counts_by_status_model_and_firmware_and_lists_recent_downs(
    harness: ApiHarness,  # noqa: F811
) -> None:
    _fleet(harness)
    reply = harness.call("GET", "/api/v1/overview/", token=harness.token("viewer"))
    assert reply.status == 200
    body = reply.json
    assert body["devices"] == 5
    assert body["by_status"] == {"Up": 2, "Down": 3}
    assert body["by_product_class"] == {
        "values": [{"value": "HG-181", "count": 3}, {"value": "XR-7", "count": 2}],
        "others": 0,
    }
    versions = body["by_software_version"]["values"]
    assert versions[0] == {"value": "1.0", "count": 3}
    assert {"value": None, "count": 1} in versions and {"value": "2.0", "count": 1} in versions
    assert [d["serial_number"] for d in body["recently_down"]] == ["W1", "E2", "E3"]
    assert body["recently_down"][0]["status_change"] == "2024-01-15T09:30:30Z"


def test_overview_of_a_scoped_token_counts_only_its_organizations(
    harness: ApiHarness,  # noqa: F811
) -> None:
    east, _ = _fleet(harness)
    token = harness.token("viewer", orgs=[east])
    body = harness.call("GET", "/api/v1/overview/", token=token).json
    assert body["devices"] == 4
    assert body["by_status"] == {"Up": 2, "Down": 2}
    assert [d["serial_number"] for d in body["recently_down"]] == ["E2", "E3"]
    assert body["by_product_class"]["values"] == [
        {"value": "HG-181", "count": 3},
        {"value": "XR-7", "count": 1},
    ]


def test_overview_keeps_the_top_twenty_and_sums_the_rest(harness: ApiHarness) -> None:  # noqa: F811
    org = harness.store.ensure_organization("Lab").id
    for i in range(25):
        device = harness.store.create_device(
            serial_number=f"S{i}", name=f"s{i}", organization_id=org, now=T0, actor="t"
        )
        harness.store.db.execute(
            "UPDATE devices SET product_class = ? WHERE id = ?", (f"M{i:02d}", device.id)
        )
    body = harness.call("GET", "/api/v1/overview/", token=harness.token("viewer")).json
    group = body["by_product_class"]
    assert len(group["values"]) == 20 and group["others"] == 5
    assert body["by_status"] == {"Up": 0, "Down": 25}  # registered, never seen
    assert body["recently_down"] == []  # never in contact: no outage
