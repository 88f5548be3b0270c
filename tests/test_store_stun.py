"""Devices' STUN credentials and NAT bindings (acs.store.stun), on either engine."""

from __future__ import annotations

import pytest

from acs.store import Store

T0 = 1_700_000_000.0


@pytest.fixture
def device_id(store: Store) -> int:
    org = store.ensure_organization("Default").id
    return store.create_device(
        serial_number="SN1", name="cpe", organization_id=org, now=T0, actor="t"
    ).id


def test_credentials_then_bindings_and_their_history(store: Store, device_id: int) -> None:
    assert store.stun_binding(device_id) is None
    assert store.record_stun_binding(device_id, "192.0.2.1", 4000, now=T0) is False  # none yet
    store.set_stun_credentials(device_id, "stun-SN1", "pw1")
    found = store.stun_credentials("stun-SN1")
    assert found is not None and (found.device_id, found.password) == (device_id, "pw1")
    assert (found.address, found.port, found.seen) == (None, None, None)

    assert store.record_stun_binding(device_id, "192.0.2.1", 4000, now=T0 + 1) is True
    assert store.record_stun_binding(device_id, "192.0.2.1", 4000, now=T0 + 2) is False
    binding = store.stun_binding(device_id)
    assert binding is not None
    assert (binding.address, binding.port, binding.seen, binding.changed) == (
        "192.0.2.1",
        4000,
        T0 + 2,
        T0 + 1,
    )
    assert store.record_stun_binding(device_id, "192.0.2.1", 4001, now=T0 + 3) is True
    entries = [e.detail for e in store.history(device_id) if e.action == "stun_binding"]
    assert entries == [
        {"address": "192.0.2.1", "port": 4001, "previous": "192.0.2.1:4000"},
        {"address": "192.0.2.1", "port": 4000, "previous": None},
    ]
    # New credentials keep the binding: the NAT mapping is the same.
    store.set_stun_credentials(device_id, "stun-SN1", "pw2")
    again = store.stun_binding(device_id)
    assert again is not None and (again.password, again.port) == ("pw2", 4001)
    assert store.stun_credentials("nobody") is None


def test_a_username_names_one_device_and_goes_with_it(store: Store, device_id: int) -> None:
    org = store.ensure_organization("Default").id
    other = store.create_device(
        serial_number="SN2", name="cpe2", organization_id=org, now=T0, actor="t"
    ).id
    store.set_stun_credentials(device_id, "shared", "pw")
    with pytest.raises(store.IntegrityError):
        store.set_stun_credentials(other, "shared", "pw")
    store.delete_device(device_id, now=T0, actor="t")
    assert store.stun_credentials("shared") is None
    store.set_stun_credentials(other, "shared", "pw")  # free again


@pytest.mark.parametrize(("username", "password"), [("", "pw"), ("u", "")])
def test_bad_credentials_are_refused(
    store: Store, device_id: int, username: str, password: str
) -> None:
    with pytest.raises(ValueError):
        store.set_stun_credentials(device_id, username, password)
    assert store.stun_binding(device_id) is None


@pytest.mark.parametrize(("address", "port"), [("", 1), ("h", 0)])
def test_bad_mappings_are_refused(store: Store, device_id: int, address: str, port: int) -> None:
    store.set_stun_credentials(device_id, "u", "pw")
    with pytest.raises(ValueError):
        store.record_stun_binding(device_id, address, port, now=T0)
    binding = store.stun_binding(device_id)
    assert binding is not None and binding.address is None  # nothing of it kept


def test_a_binding_says_whose_stun_socket_it_goes_through(store: Store, device_id: int) -> None:
    a = store.register_node("box-a", None, now=T0)
    b = store.register_node("box-b", None, now=T0)
    store.set_stun_credentials(device_id, "u", "pw")
    store.record_stun_binding(device_id, "192.0.2.1", 4000, now=T0, node=a)
    assert store.stun_binding(device_id).node == a  # type: ignore[union-attr]
    # The same mapping now reaches the other box's socket: no move, but its node.
    assert not store.record_stun_binding(device_id, "192.0.2.1", 4000, now=T0 + 1, node=b)
    assert store.stun_binding(device_id).node == b  # type: ignore[union-attr]
    store.drop_node(b)  # gone: the binding goes through whichever node sends
    assert store.stun_binding(device_id).node is None  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        store.record_stun_binding(device_id, "192.0.2.1", 4000, now=T0, node="a")  # type: ignore[arg-type]
