"""The simulator's data model: CWMP semantics and faults, copy-on-write, and the templates
checked against the BBF data-model XML they were extracted from."""

from __future__ import annotations

import json
import lzma
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from twisted.internet import task
from vendored import datamodel

from acs.cwmp import rpc
from cpe_sim.datamodel import (
    SOURCES,
    TEMPLATE_DIR,
    CwmpFault,
    DataModel,
    Template,
    build_template,
    load_template,
    model_path,
    normalize_value,
)
from cpe_sim.fleet import Fleet

MS = "Device.ManagementServer."


def tr181() -> DataModel:
    return DataModel(load_template("tr181"))


def fault_of(f: Any, *args: Any) -> rpc.Fault:
    with pytest.raises(CwmpFault) as info:
        f(*args)
    return info.value.fault


def pv(name: str, value: str, type_: str = "xsd:string") -> rpc.ParameterValue:
    return rpc.ParameterValue(name, value, type_)


# --- reads ----------------------------------------------------------------------------------


def test_gpv_returns_typed_values_and_expands_partial_paths() -> None:
    m = tr181()
    values = m.get_parameter_values(["Device.DeviceInfo.UpTime", "Device.WiFi.SSID.2."])
    assert values[0] == rpc.ParameterValue("Device.DeviceInfo.UpTime", "0", "xsd:unsignedInt")
    names = [v.name for v in values[1:]]
    assert "Device.WiFi.SSID.2.SSID" in names
    assert all(n.startswith("Device.WiFi.SSID.2.") for n in names)
    assert len(m.get_parameter_values([""])) == len(load_template("tr181").params)


def test_passwords_read_back_empty_but_are_stored() -> None:
    m = tr181()
    m.set_parameter_values([pv(MS + "ConnectionRequestPassword", "hunter2")], "k")
    [value] = m.get_parameter_values([MS + "ConnectionRequestPassword"])
    assert value.value == ""
    assert m.get_raw(MS + "ConnectionRequestPassword") == "hunter2"


@pytest.mark.parametrize(
    "name", ["Device.Nope", "Device.WiFi.SSID.9.SSID", "Device.Nope.", "Device.DeviceInfo.X"]
)
def test_gpv_of_an_unknown_name_is_9005(name: str) -> None:
    assert fault_of(tr181().get_parameter_values, [name]).code == 9005


def test_gpv_of_an_object_without_trailing_dot_is_9003() -> None:
    f = fault_of(tr181().get_parameter_values, ["Device.DeviceInfo"])
    assert (f.code, f.faultcode) == (9003, "Client")


def test_gpn_next_level_of_the_empty_path_is_the_root_object() -> None:
    assert tr181().get_parameter_names("", True) == [rpc.ParameterInfo("Device.", False)]


def test_gpn_next_level_lists_direct_children_only_with_writability() -> None:
    infos = tr181().get_parameter_names("Device.NAT.", True)
    names = {i.name: i.writable for i in infos}
    assert names["Device.NAT.PortMapping."] is True  # creatable table
    assert names["Device.NAT.PortMappingNumberOfEntries"] is False
    assert "Device.NAT.PortMapping.1." not in names
    assert "Device.NAT." not in names
    instances = tr181().get_parameter_names("Device.WiFi.Radio.", True)
    assert [(i.name, i.writable) for i in instances] == [
        ("Device.WiFi.Radio.1.", False),
        ("Device.WiFi.Radio.2.", False),
    ]


def test_gpn_without_next_level_includes_the_object_and_its_whole_subtree() -> None:
    infos = tr181().get_parameter_names("Device.WiFi.AccessPoint.1.", False)
    names = [i.name for i in infos]
    assert names[0] == "Device.WiFi.AccessPoint.1."
    assert "Device.WiFi.AccessPoint.1.Security." in names
    assert "Device.WiFi.AccessPoint.1.Security.ModeEnabled" in names
    by_name = {i.name: i.writable for i in infos}
    assert by_name["Device.WiFi.AccessPoint.1.SSIDReference"] is True
    assert by_name["Device.WiFi.AccessPoint.1.Status"] is False


def test_gpn_of_a_parameter_and_its_bad_arguments() -> None:
    m = tr181()
    assert m.get_parameter_names(MS + "URL", False) == [rpc.ParameterInfo(MS + "URL", True)]
    assert fault_of(m.get_parameter_names, MS + "URL", True).code == 9003
    assert fault_of(m.get_parameter_names, "Device.ManagementServer", False).code == 9003
    assert fault_of(m.get_parameter_names, "Device.Nothing.", False).code == 9005


# --- SetParameterValues ----------------------------------------------------------------------


def test_spv_sets_values_normalizes_booleans_and_sets_the_parameter_key() -> None:
    m = tr181()
    m.set_parameter_values(
        [
            pv(MS + "PeriodicInformInterval", "600", "xsd:unsignedInt"),
            pv(MS + "PeriodicInformEnable", "0"),
        ],
        "key-1",
    )
    assert m.get_raw(MS + "PeriodicInformInterval") == "600"
    assert m.get_raw(MS + "PeriodicInformEnable") == "false"
    assert m.get_raw(MS + "ParameterKey") == "key-1"


def test_spv_reports_one_fault_per_bad_parameter_and_changes_nothing() -> None:
    m = tr181()
    f = fault_of(
        m.set_parameter_values,
        [
            pv("Device.WiFi.SSID.1.SSID", "NewName"),  # fine on its own
            pv("Device.Bogus", "1"),
            pv(MS + "PeriodicInformInterval", "abc", "xsd:unsignedInt"),
            pv(MS + "PeriodicInformEnable", "maybe", "xsd:boolean"),
            pv("Device.DeviceInfo.SerialNumber", "X"),
            pv(MS + "PeriodicInformInterval.", "1"),
        ],
        "key-2",
    )
    assert (f.code, f.faultcode) == (9003, "Client")
    assert [(x.name, x.code) for x in f.set_parameter_values_faults] == [
        ("Device.Bogus", 9005),
        (MS + "PeriodicInformInterval", 9006),
        (MS + "PeriodicInformEnable", 9006),
        ("Device.DeviceInfo.SerialNumber", 9008),
        (MS + "PeriodicInformInterval.", 9005),
    ]
    # All or nothing: the valid SSID change was not applied, nor the ParameterKey.
    assert m.get_raw("Device.WiFi.SSID.1.SSID") == "Acme-2G"
    assert m.get_raw(MS + "ParameterKey") == ""


def test_spv_checks_model_facets_with_9007() -> None:
    m = tr181()
    f = fault_of(
        m.set_parameter_values,
        [
            pv(MS + "PeriodicInformInterval", "0"),  # range minInclusive=1
            pv("Device.WiFi.SSID.1.SSID", "x" * 40),  # maxLength 32
            pv("Device.NAT.PortMapping.1.Protocol", "SCTP"),  # enumeration
        ],
        "",
    )
    assert [x.code for x in f.set_parameter_values_faults] == [9007, 9007, 9007]


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        ("unsignedInt", ["0", "4294967295"], ["-1", "4294967296", "1.5", ""]),
        ("int", ["-5", "2147483647"], ["2147483648", "x"]),
        ("boolean", ["true", "1", "FALSE"], ["yes", ""]),
        ("dateTime", ["2024-01-01T00:00:00Z", "0001-01-01T00:00:00Z"], ["yesterday"]),
        ("hexBinary", ["", "00ff"], ["0", "zz"]),
        ("base64", ["", "aGk="], ["***"]),
    ],
)
def test_value_validation_by_type(type_: str, good: list[str], bad: list[str]) -> None:
    from cpe_sim.datamodel import ParamDef

    pdef = ParamDef(type=type_, writable=True, default="")
    for v in good:
        assert normalize_value(pdef, v)[1] == 0, v
    for v in bad:
        assert normalize_value(pdef, v) == (None, 9006), v


def test_spv_naming_a_parameter_twice_is_invalid_arguments() -> None:
    m = tr181()
    f = fault_of(
        m.set_parameter_values, [pv(MS + "URL", "http://a/"), pv(MS + "URL", "http://b/")], ""
    )
    assert f.code == 9003


# --- AddObject / DeleteObject -------------------------------------------------------------------


def test_add_object_creates_an_instance_with_defaults_and_counts_it() -> None:
    m = tr181()
    n = m.add_object("Device.NAT.PortMapping.", "add-1")
    assert n == 2
    assert m.get_raw("Device.NAT.PortMappingNumberOfEntries") == "2"
    assert m.get_raw(MS + "ParameterKey") == "add-1"
    assert m.get_raw("Device.NAT.PortMapping.2.Enable") == "false"
    m.set_parameter_values([pv("Device.NAT.PortMapping.2.ExternalPort", "2222")], "")
    assert m.get_raw("Device.NAT.PortMapping.2.ExternalPort") == "2222"
    names = [i.name for i in m.get_parameter_names("Device.NAT.PortMapping.", True)]
    assert names == ["Device.NAT.PortMapping.1.", "Device.NAT.PortMapping.2."]


def test_delete_object_removes_the_subtree_and_numbers_are_not_reused() -> None:
    m = tr181()
    m.delete_object("Device.NAT.PortMapping.1.", "del-1")
    assert m.get_raw(MS + "ParameterKey") == "del-1"
    assert m.get_raw("Device.NAT.PortMappingNumberOfEntries") == "0"
    assert fault_of(m.get_parameter_values, ["Device.NAT.PortMapping.1.Enable"]).code == 9005
    assert m.add_object("Device.NAT.PortMapping.", "") == 2
    m.delete_object("Device.NAT.PortMapping.2.", "")
    assert m.add_object("Device.NAT.PortMapping.", "") == 3
    assert m.names("Device.NAT.PortMapping.") == [
        n.replace(".1.", ".3.") for n in tr181().names("Device.NAT.PortMapping.")
    ]


def test_nested_tables_work_inside_added_instances() -> None:
    m = tr181()
    n = m.add_object("Device.IP.Interface.", "")
    assert n == 3
    assert m.add_object(f"Device.IP.Interface.{n}.IPv4Address.", "") == 1
    assert m.get_raw(f"Device.IP.Interface.{n}.IPv4AddressNumberOfEntries") == "1"
    m.delete_object(f"Device.IP.Interface.{n}.", "")
    assert not [x for x in m.names() if x.startswith(f"Device.IP.Interface.{n}.")]


@pytest.mark.parametrize(
    ("call", "name", "code"),
    [
        ("add", "Device.WiFi.Radio.", 9005),  # not creatable in the model
        ("add", "Device.Nope.", 9005),
        ("add", "Device.DeviceInfo.", 9005),  # not a table
        ("add", "Device.NAT.PortMapping", 9003),  # no trailing dot
        ("delete", "Device.NAT.PortMapping.7.", 9005),
        ("delete", "Device.WiFi.Radio.1.", 9005),
        ("delete", "Device.NAT.PortMapping.1", 9003),
    ],
)
def test_add_and_delete_object_faults(call: str, name: str, code: int) -> None:
    m = tr181()
    f = m.add_object if call == "add" else m.delete_object
    assert fault_of(f, name, "k").code == code
    assert m.get_raw(MS + "ParameterKey") == ""


# --- attributes, reset, copy-on-write -----------------------------------------------------------


def test_parameter_attributes_round_trip() -> None:
    m = tr181()
    m.set_parameter_attributes([rpc.SetParameterAttributesStruct("Device.WiFi.SSID.1.", True, 2)])
    attrs = m.get_parameter_attributes(["Device.WiFi.SSID.1.SSID", "Device.DeviceInfo.UpTime"])
    assert [a.notification for a in attrs] == [2, 0]
    assert fault_of(m.get_parameter_attributes, ["Device.Nope"]).code == 9005


def test_factory_reset_restores_the_template() -> None:
    m = tr181()
    m.set_parameter_values([pv("Device.WiFi.SSID.1.SSID", "Changed")], "k")
    m.add_object("Device.NAT.PortMapping.", "")
    m.delete_object("Device.DNS.Client.Server.2.", "")
    m.reset({"Device.DeviceInfo.SerialNumber": "S1"})
    fresh = tr181()
    assert m.names() == fresh.names()
    assert m.get_raw("Device.WiFi.SSID.1.SSID") == "Acme-2G"
    assert m.get_raw("Device.DeviceInfo.SerialNumber") == "S1"
    assert m.get_raw(MS + "ParameterKey") == ""


def test_two_cpes_on_one_template_are_isolated() -> None:
    template = load_template("tr181")
    a, b = DataModel(template), DataModel(template)
    a.set_parameter_values([pv("Device.WiFi.SSID.1.SSID", "A-net")], "ka")
    a.add_object("Device.NAT.PortMapping.", "ka")
    a.delete_object("Device.DNS.Client.Server.2.", "ka")
    assert b.get_raw("Device.WiFi.SSID.1.SSID") == "Acme-2G"
    assert b.get_raw("Device.NAT.PortMappingNumberOfEntries") == "1"
    assert "Device.NAT.PortMapping.2.Enable" not in b.names()
    assert "Device.DNS.Client.Server.2.DNSServer" in b.names()
    assert "Device.DNS.Client.Server.2.DNSServer" not in a.names()
    assert template.values["Device.WiFi.SSID.1.SSID"] == "Acme-2G"
    # Copy-on-write: the CPE stores only what changed.
    assert set(b._values) == set()
    assert set(a._values) == {
        "Device.WiFi.SSID.1.SSID",
        MS + "ParameterKey",
        "Device.NAT.PortMappingNumberOfEntries",
        "Device.DNS.Client.ServerNumberOfEntries",
    }
    assert a._deleted == {"Device.DNS.Client.Server.2."}


def test_a_provisioned_cpe_costs_far_less_than_20_kb() -> None:
    load_template("tr181"), load_template("tr098")
    count = 400
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fleet = Fleet(task.Clock(), acs_url="http://127.0.0.1:1/", count=count, model="mixed")
        for cpe in fleet.cpes:
            r = cpe.root
            cpe.set_connection_request_url(f"http://127.0.0.1:40000/{cpe.serial}")
            cpe.handle(
                rpc.SetParameterValues(
                    (
                        pv(r + "ManagementServer.ConnectionRequestUsername", f"u-{cpe.serial}"),
                        pv(r + "ManagementServer.ConnectionRequestPassword", "p" * 20),
                        pv(r + "ManagementServer.PeriodicInformInterval", "300"),
                    ),
                    "provisioned",
                )
            )
            cpe.build_inform()
        per_cpe = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert per_cpe < 20_000, per_cpe
    assert fleet.cpes[1].root == "InternetGatewayDevice."


# --- the templates against the BBF XML ---------------------------------------------------------

_PRIMITIVES = {
    "string",
    "unsignedInt",
    "int",
    "long",
    "unsignedLong",
    "boolean",
    "dateTime",
    "base64",
    "hexBinary",
}


def _bbf_definitions(xml: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str | None]]:
    """Every parameter of the model (path -> type/access/flags) and object -> access.

    An independent reading of the BBF XML (not the builder's code): lists are strings on
    the wire, named dataTypes resolve through their ``base`` chain to a primitive.
    """
    with lzma.open(xml) as f:
        root = etree.parse(f).getroot()
    datatypes = {d.get("name"): d for d in root.findall("dataType")}

    def resolve(name: str) -> str | None:
        el = datatypes[name]
        for child in el:
            if isinstance(child.tag, str) and (child.tag in _PRIMITIVES or child.tag == "decimal"):
                return child.tag
        base = el.get("base")
        return resolve(base) if base else None

    params: dict[str, dict[str, Any]] = {}
    objects: dict[str, str | None] = {}
    model = root.find("model")
    assert model is not None
    for obj in model.findall("object"):
        oname = obj.get("name")
        if not oname:
            continue
        objects[oname] = obj.get("access")
        for p in obj.findall("parameter"):
            syntax = p.find("syntax")
            if syntax is None:
                continue
            type_: str | None = None
            for child in syntax:
                if not isinstance(child.tag, str):
                    continue
                if child.tag in _PRIMITIVES:
                    type_ = child.tag
                elif child.tag == "dataType":
                    type_ = resolve(child.get("ref") or child.get("base") or "")
                if type_:
                    break
            if syntax.find("list") is not None:
                type_ = "string"
            params[f"{oname}{p.get('name')}"] = {
                "type": type_,
                "writable": p.get("access") == "readWrite",
                "forced": p.get("forcedInform") == "true",
                "active": p.get("activeNotify") in ("forceEnabled", "forceDefaultEnabled"),
                "hidden": syntax.get("hidden") == "true" or syntax.get("secured") == "true",
                "status": p.get("status"),
            }
    return params, objects


@pytest.fixture(scope="module")
def bbf() -> dict[str, tuple[dict[str, dict[str, Any]], dict[str, str | None]]]:
    return {key: _bbf_definitions(datamodel(source)) for key, source in SOURCES.items()}


@pytest.mark.parametrize("key", ["tr181", "tr098"])
def test_every_template_parameter_matches_the_bbf_model(key: str, bbf: Any) -> None:
    params, objects = bbf[key]
    template = load_template(key)
    assert 250 <= len(template.params) <= 1000
    for name, pdef in template.params.items():
        mp = model_path(name)
        assert mp in params, f"{name}: not in {SOURCES[key]}"
        expected = params[mp]
        assert expected["status"] not in ("deleted", "obsoleted"), name
        assert pdef.type == expected["type"], (name, pdef.type, expected["type"])
        assert pdef.writable == expected["writable"], name
        assert pdef.forced == expected["forced"], name
        assert pdef.active_notify == expected["active"], name
        assert pdef.hidden == expected["hidden"], name
        value = template.values[name]
        assert normalize_value(pdef, value) == (value, 0), (name, value)
    for name in template.objects:
        assert model_path(name) in objects or model_path(name) + "{i}." in objects, name
    for table, tdef in template.tables.items():
        assert tdef.creatable == (objects[table] == "readWrite"), table
    # Every forced-inform parameter of the selected objects is there (spec/cwmp.md §3.3).
    selected = {model_path(o) for o in template.objects}
    for mp, p in params.items():
        live = p["status"] not in ("deleted", "obsoleted")
        if p["forced"] and live and mp[: mp.rfind(".") + 1] in selected:
            assert any(model_path(n) == mp for n in template.forced), mp


@pytest.mark.parametrize(
    ("key", "names"),
    [
        (
            "tr181",
            [
                "Device.DeviceInfo.ProvisioningCode",
                "Device.ManagementServer.UpgradesManaged",
                "Device.ManagementServer.PeriodicInformTime",
                "Device.Time.LocalTimeZone",
                "Device.WiFi.AccessPoint.2.Security.KeyPassphrase",
                "Device.DHCPv4.Server.Pool.1.MinAddress",
                "Device.IP.Interface.2.IPv4Address.1.IPAddress",
                "Device.Ethernet.Interface.4.MACAddress",
                "Device.Hosts.Host.1.HostName",
                "Device.DNS.Client.Server.1.DNSServer",
                "Device.NAT.PortMapping.1.ExternalPort",
            ],
        ),
        (
            "tr098",
            [
                "InternetGatewayDevice.DeviceSummary",
                "InternetGatewayDevice.ManagementServer.ConnectionRequestPassword",
                "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.SSID",
                "InternetGatewayDevice.LANDevice.1.LANEthernetInterfaceConfig.4.Status",
                "InternetGatewayDevice.LANDevice.1.Hosts.Host.2.IPAddress",
                "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
                ".ExternalIPAddress",
            ],
        ),
    ],
)
def test_templates_cover_a_home_gateway(key: str, names: list[str]) -> None:
    template = load_template(key)
    missing = [n for n in names if n not in template.params]
    assert not missing


@pytest.mark.parametrize("key", ["tr181", "tr098"])
def test_committed_templates_are_what_the_builder_produces(key: str, bbf: Any) -> None:
    built = build_template(key, datamodel(SOURCES[key]))
    committed = json.loads((TEMPLATE_DIR / f"{key}.json").read_text(encoding="utf-8"))
    assert built == committed, "run: python -m cpe_sim.datamodel conformance/datamodels"
    assert Template(built).root == ("Device." if key == "tr181" else "InternetGatewayDevice.")


def test_subtree_index_agrees_with_a_full_scan() -> None:
    template = load_template("tr181")
    fast = DataModel(template)
    slow = DataModel(template)
    slow._deleted = {"Device.Unrelated."}  # forces the scanning path, changes nothing
    for path in ["", *template.objects]:
        assert fast.names(path) == slow.names(path), path
        assert fast.get_parameter_names(path, False) == slow.get_parameter_names(path, False)
        assert fast.get_parameter_names(path, True) == slow.get_parameter_names(path, True)
