"""acs.store.nodes: the nodes on one database and the device session leases they hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acs.store import SessionHolder, Store
from acs.store.models import InformRecord

T0 = 1_700_000_000.0


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(":memory:")
    yield s
    s.close()


def _device(store: Store, serial: str = "SN1") -> int:
    org = store.ensure_organization("Default")
    return store.create_device(
        serial_number=serial, name=serial, organization_id=org.id, now=T0, actor="test"
    ).id


def test_a_free_device_is_taken_renewed_and_given_up(store: Store) -> None:
    device = _device(store)
    a = store.register_node("a", "http://127.0.0.1:1", now=T0)
    assert store.take_device_session(device, a, now=T0, until=T0 + 60) is None
    assert store.device_session_node(device, now=T0 + 59) == a
    assert store.device_session_node(device, now=T0 + 60) is None  # expired
    assert store.take_device_session(device, a, now=T0 + 30, until=T0 + 90) is None  # renewed
    assert store.device_session_node(device, now=T0 + 89) == a
    store.end_device_session(device, a)
    assert store.device_session_node(device, now=T0) is None


def test_an_inform_takes_a_free_lease_with_its_record_and_leaves_a_held_one(
    store: Store,
) -> None:
    device = _device(store)
    info = InformRecord("Acme", "00AABB", "", "SN1", "2", None, None, None, None, ())
    store.record_inform(device, info, now=T0)  # Up
    a = store.register_node("a", None, now=T0)
    b = store.register_node("b", None, now=T0)
    recorded, leased = store.record_inform_leased(device, info, now=T0, lease=(a, T0 + 60))
    assert leased and recorded.software_version == "2"
    assert store.device_session_node(device, now=T0) == a
    # b's Inform is recorded (its caller then learns who holds the lease), the lease stays a's.
    assert not store.record_inform_leased(device, info, now=T0 + 1, lease=(b, T0 + 61))[1]
    assert store.device_session_node(device, now=T0 + 1) == a
    # A Down device's Inform is recorded (Up again) without its lease: the caller takes it.
    store.db.execute("UPDATE devices SET status = 'Down' WHERE id = ?", (device,))
    recorded, leased = store.record_inform_leased(device, info, now=T0 + 90, lease=(b, T0 + 150))
    assert not leased and recorded.status == "Up"


def test_a_release_of_ended_sessions_frees_only_the_leases_it_names(store: Store) -> None:
    device = _device(store)
    a = store.register_node("a", None, now=T0)
    b = store.register_node("b", None, now=T0)
    assert store.take_device_session(device, a, now=T0, until=T0 + 60) is None
    store.end_device_sessions(a, [(device, T0 + 30)])  # a lease of a's renewed since
    assert store.device_session_node(device, now=T0) == a
    store.end_device_sessions(b, [(device, T0 + 60)])  # not b's
    assert store.device_session_node(device, now=T0) == a
    store.end_device_sessions(a, [(device, T0 + 60)])
    assert store.device_session_node(device, now=T0) is None


def test_another_nodes_running_lease_is_not_taken(store: Store) -> None:
    device = _device(store)
    a = store.register_node("a", "http://127.0.0.1:1", now=T0)
    b = store.register_node("b", None, now=T0)
    assert store.take_device_session(device, a, now=T0, until=T0 + 60) is None
    held = store.take_device_session(device, b, now=T0 + 1, until=T0 + 61)
    assert held == SessionHolder(node_id=a, name="a", peer="http://127.0.0.1:1", until=T0 + 60)
    store.end_device_session(device, b)  # not b's to give up
    assert store.device_session_node(device, now=T0 + 1) == a
    # Once it has run out, or when b is known to replace a, b gets it.
    assert store.take_device_session(device, b, now=T0 + 2, until=T0 + 62, replaces=a) is None
    assert store.device_session_node(device, now=T0 + 2) == b
    assert store.take_device_session(device, a, now=T0 + 62, until=T0 + 99) is None


def test_dropping_a_node_frees_its_devices_only(store: Store) -> None:
    one, two = _device(store, "SN1"), _device(store, "SN2")
    a = store.register_node("a", None, now=T0)
    b = store.register_node("b", None, now=T0)
    store.take_device_session(one, a, now=T0, until=T0 + 60)
    store.take_device_session(two, b, now=T0, until=T0 + 60)
    store.drop_node(a)
    assert store.device_session_node(one, now=T0) is None
    assert store.device_session_node(two, now=T0) == b
    assert store.node_names() == {b: "b"}
    assert store.node_peer(a) is None


def test_node_names_and_peers_are_checked(store: Store) -> None:
    for name in ("", "x" * 201, None):
        with pytest.raises(ValueError):
            store.register_node(name, None, now=T0)  # type: ignore[arg-type]
    node = store.register_node("a", None, now=T0)
    assert store.node_peer(node) is None
    for peer in ("", "x" * 501):
        with pytest.raises(ValueError):
            store.set_node_peer(node, peer)
    store.set_node_peer(node, "http://127.0.0.1:9/")
    assert store.node_peer(node) == "http://127.0.0.1:9/"
    assert store.node_peer("1") is None  # type: ignore[arg-type]


def test_a_lease_on_no_device_holds_nothing(store: Store) -> None:
    a = store.register_node("a", None, now=T0)
    assert store.take_device_session(999, a, now=T0, until=T0 + 60) is None
    assert store.device_session_node(999, now=T0) is None


def test_leases_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "acs.db"
    with Store.open(path) as first:
        device = _device(first)
        a = first.register_node("a", None, now=T0)
        first.take_device_session(device, a, now=T0, until=T0 + 60)
    with Store.open(path) as second:
        assert second.device_session_node(device, now=T0) == a
