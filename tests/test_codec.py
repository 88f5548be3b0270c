"""Tests for the CWMP SOAP codec ``acs.cwmp.soap``.

Every message class round-trips in every CWMP version and validates against the official XSD;
recorded field captures (``tests/samples``) parse to the expected dataclasses; hostile and
broken input always ends in a ``SoapError`` with the right fault code and HTTP status.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from xsd import VERSIONS, defined_elements, validate_message

from acs.cwmp import rpc, soap, versions
from acs.cwmp.soap import CWMP_NS, Envelope, Header, SoapError

SAMPLES = Path(__file__).parent / "samples"

PV = rpc.ParameterValue

# One representative, non-trivial instance of every message class (multi-element arrays,
# several value types, characters that need escaping). Values respect the XSD restrictions
# of all versions (e.g. 1.0 only knows notification 0-2 and transfer fault codes 9010-9012).
MESSAGES: dict[type, rpc.Message] = {
    rpc.GetRPCMethods: rpc.GetRPCMethods(),
    rpc.GetRPCMethodsResponse: rpc.GetRPCMethodsResponse(
        methods=("GetRPCMethods", "GetParameterValues", "SetParameterValues", "Reboot")
    ),
    rpc.GetParameterNames: rpc.GetParameterNames(path="Device.WiFi.", next_level=True),
    rpc.GetParameterNamesResponse: rpc.GetParameterNamesResponse(
        parameters=(
            rpc.ParameterInfo("Device.WiFi.SSID.1.", False),
            rpc.ParameterInfo("Device.WiFi.SSID.1.SSID", True),
        )
    ),
    rpc.GetParameterValues: rpc.GetParameterValues(
        names=("Device.DeviceInfo.UpTime", "Device.WiFi.SSID.1.")
    ),
    rpc.GetParameterValuesResponse: rpc.GetParameterValuesResponse(
        parameters=(
            PV("Device.WiFi.SSID.1.SSID", "Café <&> \"5G\" ]]> 'x'"),
            PV("Device.DeviceInfo.UpTime", "3600", "xsd:unsignedInt"),
            PV("Device.WiFi.SSID.1.Enable", "true", "xsd:boolean"),
            PV("Device.Time.CurrentLocalTime", "2024-03-05T11:54:14Z", "xsd:dateTime"),
            PV("Device.X_ACME_Offset", "-12", "xsd:int"),
            PV("Device.X_ACME_Multiline", "line1\r\nline2\ttabbed  "),
        )
    ),
    rpc.SetParameterValues: rpc.SetParameterValues(
        parameters=(
            PV("Device.WiFi.SSID.1.SSID", "home-net"),
            PV("Device.ManagementServer.PeriodicInformInterval", "300", "xsd:unsignedInt"),
        ),
        parameter_key="spv-42",
    ),
    rpc.SetParameterValuesResponse: rpc.SetParameterValuesResponse(status=1),
    rpc.GetParameterAttributes: rpc.GetParameterAttributes(
        names=("Device.WiFi.SSID.1.SSID", "Device.DeviceInfo.")
    ),
    rpc.GetParameterAttributesResponse: rpc.GetParameterAttributesResponse(
        parameters=(
            rpc.ParameterAttribute("Device.WiFi.SSID.1.SSID", 2, ("Subscriber",)),
            rpc.ParameterAttribute("Device.DeviceInfo.UpTime", 0, ()),
        )
    ),
    rpc.SetParameterAttributes: rpc.SetParameterAttributes(
        parameters=(
            rpc.SetParameterAttributesStruct("Device.WiFi.SSID.1.SSID", True, 2),
            rpc.SetParameterAttributesStruct(
                "Device.DeviceInfo.SoftwareVersion", False, 1, True, ("Subscriber",)
            ),
        )
    ),
    rpc.SetParameterAttributesResponse: rpc.SetParameterAttributesResponse(),
    rpc.AddObject: rpc.AddObject("Device.WiFi.SSID.", "add-1"),
    rpc.AddObjectResponse: rpc.AddObjectResponse(instance_number=3, status=0),
    rpc.DeleteObject: rpc.DeleteObject("Device.WiFi.SSID.3.", "del-1"),
    rpc.DeleteObjectResponse: rpc.DeleteObjectResponse(status=0),
    rpc.Reboot: rpc.Reboot(command_key="reboot-7"),
    rpc.RebootResponse: rpc.RebootResponse(),
    rpc.FactoryReset: rpc.FactoryReset(),
    rpc.FactoryResetResponse: rpc.FactoryResetResponse(),
    rpc.Download: rpc.Download(
        command_key="fw-17",
        file_type="1 Firmware Upgrade Image",
        url="http://127.0.0.1:7567/files/fw.bin?exp=1700000000&sig=ab%2Fcd",
        username="cpe",
        password="s3cr&t",
        file_size=12345678,
        target_file_name="fw.bin",
        delay_seconds=5,
        success_url="http://127.0.0.1/ok",
        failure_url="",
    ),
    rpc.DownloadResponse: rpc.DownloadResponse(
        status=0, start_time="2024-03-05T11:50:02Z", complete_time="2024-03-05T11:52:40Z"
    ),
    rpc.Upload: rpc.Upload(
        command_key="up-1",
        file_type="1 Vendor Configuration File",
        url="http://127.0.0.1:7567/upload",
        username="u",
        password="p",
        delay_seconds=0,
    ),
    rpc.UploadResponse: rpc.UploadResponse(status=1),
    rpc.GetQueuedTransfers: rpc.GetQueuedTransfers(),
    rpc.GetQueuedTransfersResponse: rpc.GetQueuedTransfersResponse(
        (rpc.QueuedTransfer("dl-1", 1), rpc.QueuedTransfer("ul-2", 2))
    ),
    rpc.ScheduleInform: rpc.ScheduleInform(delay_seconds=60, command_key="sched-1"),
    rpc.ScheduleInformResponse: rpc.ScheduleInformResponse(),
    rpc.GetAllQueuedTransfers: rpc.GetAllQueuedTransfers(),
    rpc.GetAllQueuedTransfersResponse: rpc.GetAllQueuedTransfersResponse(
        transfers=(
            rpc.AllQueuedTransfer(
                "acs-task-7", 2, True, "1 Firmware Upgrade Image", 1024, "fw.bin"
            ),
            rpc.AllQueuedTransfer("local", 1, False, "3 Vendor Configuration File"),
        )
    ),
    rpc.ScheduleDownload: rpc.ScheduleDownload(
        command_key="sd-1",
        file_type="3 Vendor Configuration File",
        url="http://127.0.0.1:7567/file/3/cfg.xml?task=9&exp=1&sig=ab",
        time_windows=(
            rpc.TimeWindow(0, 3600, "1 At Any Time", "", -1),
            rpc.TimeWindow(7200, 10800, "4 Confirmation Needed", "Update <tonight>", 3),
        ),
        file_size=2048,
        target_file_name="cfg.xml",
    ),
    rpc.ScheduleDownloadResponse: rpc.ScheduleDownloadResponse(),
    rpc.CancelTransfer: rpc.CancelTransfer(command_key="acs-task-7"),
    rpc.CancelTransferResponse: rpc.CancelTransferResponse(),
    rpc.ChangeDUState: rpc.ChangeDUState(
        operations=(
            rpc.InstallOp(
                url="http://127.0.0.1:7567/du/app.tar",
                uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                username="u",
                execution_env_ref="Device.SoftwareModules.ExecEnv.1",
            ),
            rpc.InstallOp(url="http://127.0.0.1:7567/du/other.tar"),
            rpc.UpdateOp(uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8", version="2.0"),
            rpc.UpdateOp(url="http://127.0.0.1:7567/du/app-2.tar", password="p"),
            rpc.UninstallOp(uuid="6BA7B810-9DAD-11D1-80B4-00C04FD430C9", version="1.0"),
        ),
        command_key="du-1",
    ),
    rpc.ChangeDUStateResponse: rpc.ChangeDUStateResponse(),
    rpc.Inform: rpc.Inform(
        device_id=rpc.DeviceId("ACME Networks", "00D09E", "HomeGW", "SN-0001"),
        events=(rpc.EventStruct("1 BOOT"), rpc.EventStruct("M Reboot", "reboot-7")),
        current_time="2024-03-05T11:54:14+01:00",
        retry_count=3,
        parameters=(
            PV("Device.DeviceInfo.SoftwareVersion", "1.2.3"),
            PV("Device.ManagementServer.ConnectionRequestURL", "http://127.0.0.1:7548/cr"),
            PV("Device.DeviceInfo.UpTime", "42", "xsd:unsignedInt"),
        ),
        max_envelopes=1,
    ),
    rpc.InformResponse: rpc.InformResponse(max_envelopes=1),
    rpc.TransferComplete: rpc.TransferComplete(
        command_key="fw-17",
        fault=rpc.FaultStruct(9010, "download failed"),
        start_time="2024-03-05T11:50:02Z",
        complete_time="2024-03-05T11:52:40Z",
    ),
    rpc.TransferCompleteResponse: rpc.TransferCompleteResponse(),
    rpc.AutonomousTransferComplete: rpc.AutonomousTransferComplete(
        announce_url="http://127.0.0.1/announce",
        transfer_url="http://127.0.0.1/fw.bin",
        is_download=True,
        file_type="1 Firmware Upgrade Image",
        file_size=2048,
        target_file_name="fw.bin",
    ),
    rpc.AutonomousTransferCompleteResponse: rpc.AutonomousTransferCompleteResponse(),
    rpc.RequestDownload: rpc.RequestDownload(
        file_type="3 Vendor Configuration File",
        file_type_args=(("Version", "1.0"), ("Profile", "residential")),
    ),
    rpc.RequestDownloadResponse: rpc.RequestDownloadResponse(),
    rpc.DUStateChangeComplete: rpc.DUStateChangeComplete(
        results=(
            rpc.OpResult(
                uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                deployment_unit_ref="Device.SoftwareModules.DeploymentUnit.1",
                version="1.0",
                current_state="Installed",
                resolved=True,
                execution_unit_refs="Device.SoftwareModules.ExecutionUnit.1",
                start_time="2024-03-05T11:50:02Z",
                complete_time="2024-03-05T11:52:40Z",
            ),
            rpc.OpResult(
                uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c9",
                deployment_unit_ref="",
                version="",
                current_state="Failed",
                resolved=False,
                execution_unit_refs="",
                fault=rpc.FaultStruct(9017, "download failed <404>"),
            ),
        ),
        command_key="du-1",
    ),
    rpc.DUStateChangeCompleteResponse: rpc.DUStateChangeCompleteResponse(),
    rpc.AutonomousDUStateChangeComplete: rpc.AutonomousDUStateChangeComplete(
        results=(
            rpc.OpResult(
                uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                deployment_unit_ref="Device.SoftwareModules.DeploymentUnit.1",
                version="1.0",
                current_state="Uninstalled",
                resolved=True,
                execution_unit_refs="",
                start_time="2024-03-05T11:50:02Z",
                complete_time="2024-03-05T11:52:40Z",
                operation_performed="Uninstall",
            ),
        )
    ),
    rpc.AutonomousDUStateChangeCompleteResponse: rpc.AutonomousDUStateChangeCompleteResponse(),
    rpc.Kicked: rpc.Kicked(
        command="provision", referer="http://127.0.0.1/portal", arg="x=1", next="http://n/"
    ),
    rpc.KickedResponse: rpc.KickedResponse(next_url="http://127.0.0.1/done"),
    rpc.Fault: rpc.Fault(
        code=9003,
        string="Invalid arguments",
        faultcode="Client",
        set_parameter_values_faults=(
            rpc.SetParameterValuesFault("Device.WiFi.SSID.1.SSID", 9007, "bad value"),
            rpc.SetParameterValuesFault("Device.DeviceInfo.SerialNumber", 9008, "read-only"),
        ),
    ),
}


def _header_for(message: rpc.Message, version: str) -> Header:
    """A realistic header: the fields each version defines, where they belong."""
    h = Header(id=f"id-{type(message).__name__}")
    if isinstance(message, rpc.Inform) and version in ("1.3", "1.4"):
        h = dataclasses.replace(h, session_timeout=45)
        if version == "1.4":
            h = dataclasses.replace(h, supported_versions="1.0,1.1,1.2,1.3,1.4")
    if isinstance(message, rpc.InformResponse):
        h = dataclasses.replace(h, hold_requests=False)
        if version == "1.4":
            h = dataclasses.replace(h, use_version="1.4")
    return h


TRANSFER_TYPES = [
    "1 Firmware Upgrade Image", "2 Web Content", "3 Vendor Configuration File", "4 Tone File",
    "5 Ringer File", "1 Vendor Configuration File", "2 Vendor Log File",
    "3 Vendor Configuration File 2", "4 Vendor Log File 1", "X 00D09E night", "X 00d09e night",
]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("file_type", TRANSFER_TYPES)
def test_a_version_lacks_exactly_the_file_types_its_schema_refuses(
    version: str, file_type: str
) -> None:
    """versions.lacks, which keeps the ACS from sending what a session cannot carry."""
    for message in (
        dataclasses.replace(MESSAGES[rpc.Download], file_type=file_type),
        dataclasses.replace(MESSAGES[rpc.Upload], file_type=file_type),
    ):
        data = soap.serialize(Envelope(message, Header(id="1"), CWMP_NS[version]))
        try:
            validate_message(data, version)
        except AssertionError:
            valid = False
        else:
            valid = True
        assert (versions.lacks(version, message) is None) == valid, (version, message)


def test_every_message_class_has_a_representative_instance() -> None:
    assert set(MESSAGES) == {*rpc.MESSAGE_TYPES.values(), rpc.Fault}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.__name__)
def test_message_round_trips_and_validates_against_the_xsd(cls: type, version: str) -> None:
    message = MESSAGES[cls]
    env = Envelope(message=message, header=_header_for(message, version), ns=CWMP_NS[version])
    data = soap.serialize(env)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    # Validate wherever the schema of that version defines the element (e.g.
    # AutonomousTransferComplete is CWMP 1.1+); the round trip runs everywhere.
    if cls.__name__ in defined_elements(version):
        validate_message(data, version)
    else:
        assert not versions.defines(version, cls)
    assert soap.parse(data) == env


def test_xsd_validation_rejects_an_invalid_message() -> None:
    # The schema check must be able to fail: an OUI must be 6 upper-case hex digits.
    bad = MESSAGES[rpc.Inform]
    assert isinstance(bad, rpc.Inform)
    bad = dataclasses.replace(bad, device_id=dataclasses.replace(bad.device_id, oui="00d09e"))
    data = soap.serialize(Envelope(bad, Header(id="1"), CWMP_NS["1.2"]))
    with pytest.raises(AssertionError, match="OUI"):
        validate_message(data, "1.2")


def test_serialize_uses_conventional_prefixes_and_array_types() -> None:
    env = Envelope(MESSAGES[rpc.SetParameterValues], Header(id="7"), CWMP_NS["1.0"])
    text = soap.serialize(env).decode()
    assert 'xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"' in text
    assert '<cwmp:ID soap-env:mustUnderstand="1">7</cwmp:ID>' in text
    assert 'soap-enc:arrayType="cwmp:ParameterValueStruct[2]"' in text
    assert '<Value xsi:type="xsd:unsignedInt">300</Value>' in text
    # Only header elements that are set are emitted.
    assert "HoldRequests" not in text and "SessionTimeout" not in text


def test_serialize_omits_header_when_nothing_is_set() -> None:
    text = soap.serialize(Envelope(rpc.GetRPCMethods(), Header(), CWMP_NS["1.2"])).decode()
    assert "Header" not in text
    assert soap.parse(text.encode()) == Envelope(rpc.GetRPCMethods(), Header(), CWMP_NS["1.2"])


def test_serialize_fault_uses_tr069_layout() -> None:
    text = soap.serialize(Envelope(rpc.Fault(8005, "retry"), Header(id="9"), CWMP_NS["1.2"]))
    assert (
        b"<soap-env:Fault><faultcode>Server</faultcode><faultstring>CWMP fault</faultstring>"
        b"<detail><cwmp:Fault><FaultCode>8005</FaultCode><FaultString>retry</FaultString>" in text
    )


def test_serialize_refuses_characters_xml_cannot_carry() -> None:
    env = Envelope(rpc.GetParameterValues(names=("Device.\x01",)), Header(), CWMP_NS["1.0"])
    with pytest.raises(ValueError, match="U\\+0001"):
        soap.serialize(env)


def test_serialize_refuses_wrong_field_types_and_namespaces() -> None:
    with pytest.raises(TypeError):
        soap.serialize(Envelope(rpc.SetParameterValuesResponse(status="0"), ns=CWMP_NS["1.0"]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CWMP namespace"):
        soap.serialize(Envelope(rpc.GetRPCMethods(), ns="urn:example"))
    with pytest.raises(ValueError, match="faultcode"):
        soap.serialize(Envelope(rpc.Fault(8000, faultcode="Oops")))


def test_values_with_special_characters_survive_a_round_trip() -> None:
    tricky = "a&b <c> \"d\" 'e' ]]> \r\n \t é € 😀 &amp;"
    env = Envelope(
        rpc.SetParameterValues(parameters=(PV("Device.X", tricky),), parameter_key=tricky[:10]),
        Header(id=tricky),
        CWMP_NS["1.2"],
    )
    assert soap.parse(soap.serialize(env)) == env


# --- versions and namespaces ------------------------------------------------------------


def test_version_of_maps_any_cwmp_namespace() -> None:
    assert soap.version_of("urn:dslforum-org:cwmp-1-2") == "1.2"
    assert soap.version_of("urn:dslforum-org:cwmp-1-4") == "1.4"
    assert soap.version_of("urn:dslforum-org:cwmp-2-0") == "2.0"
    with pytest.raises(ValueError):
        soap.version_of("urn:example:cwmp-1-0")


def test_is_cwmp_namespace() -> None:
    assert soap.is_cwmp_namespace("urn:dslforum-org:cwmp-1-3")
    assert not soap.is_cwmp_namespace("urn:dslforum-org:cwmp-1-x")
    assert not soap.is_cwmp_namespace("urn:dslforum-org:cwmp-1-2 ")
    assert not soap.is_cwmp_namespace(None)


def test_versions_1_3_and_1_4_use_the_1_2_namespace() -> None:
    assert CWMP_NS["1.3"] == CWMP_NS["1.4"] == "urn:dslforum-org:cwmp-1-2"


# --- recorded samples -------------------------------------------------------------------


def _sample(name: str) -> Envelope:
    return soap.parse((SAMPLES / name).read_bytes())


def test_tr181_bootstrap_inform_sample() -> None:
    env = _sample("inform_tr181_bootstrap.xml")
    assert env.ns == "urn:dslforum-org:cwmp-1-2"
    assert env.header == Header(
        id="1804289383", session_timeout=60, supported_versions="1.0,1.1,1.2,1.3,1.4"
    )
    inform = env.message
    assert isinstance(inform, rpc.Inform)
    assert inform.device_id == rpc.DeviceId("Zyxel", "5067F0", "VMG8825-T50", "S190Y47021234")
    assert inform.events == (rpc.EventStruct("0 BOOTSTRAP"), rpc.EventStruct("1 BOOT"))
    assert inform.has_event("0 BOOTSTRAP")
    assert inform.current_time == "2024-03-05T11:54:14+01:00"
    assert inform.retry_count == 0 and inform.max_envelopes == 1
    assert len(inform.parameters) == 8
    assert inform.parameters[0] == PV("Device.RootDataModelVersion", "2.11")
    assert inform.parameter("ConnectionRequestURL") == (
        "http://192.0.2.17:7547/tr069?sn=S190Y47021234&k=1"
    )
    assert inform.parameters[3] == PV("Device.DeviceInfo.ProvisioningCode", "")
    assert inform.parameters[6].type == "xsd:boolean"
    assert inform.parameters[7] == PV("Device.DeviceInfo.UpTime", "37", "xsd:unsignedInt")


def test_tr098_periodic_inform_sample() -> None:
    env = _sample("inform_tr098_periodic.xml")
    assert env.ns == CWMP_NS["1.0"]
    assert env.header == Header(id="SAGEM_ID_7589")
    inform = env.message
    assert isinstance(inform, rpc.Inform)
    assert inform.device_id.oui == "F4F26D"
    assert inform.events == (rpc.EventStruct("2 PERIODIC"),)
    assert inform.retry_count == 2
    assert inform.parameter("DeviceInfo.SoftwareVersion") == (
        "0.6.0 2.11 v000c.0 Build 170829 Rel.44455n"
    )
    assert inform.parameter("WANIPConnection.1.ExternalIPAddress") == "198.51.100.23"
    assert all(p.name.startswith("InternetGatewayDevice.") for p in inform.parameters)


def test_quirky_inform_sample_is_tolerated() -> None:
    env = _sample("inform_quirks.xml")
    assert env.header == Header()  # no Header at all
    assert env.ns == CWMP_NS["1.1"]
    inform = env.message
    assert isinstance(inform, rpc.Inform)
    # Extra DeviceId children ignored, children found by name, lower-case OUI kept as sent.
    assert inform.device_id == rpc.DeviceId("PHICOMM", "00a859", "", "CYCTO0000001")
    # Padded arrayType count "[0008]" is not trusted; an EventStruct without EventCode is kept.
    assert inform.events == (
        rpc.EventStruct("6 CONNECTION REQUEST"),
        rpc.EventStruct("", "orphan"),
    )
    assert inform.current_time == "2019-03-05T11:54::14"  # malformed, kept verbatim
    assert inform.max_envelopes == 2
    assert inform.parameters == (
        PV(
            "InternetGatewayDevice.ManagementServer.ConnectionRequestURL",
            "http://203.0.113.9:30005/",
        ),
        PV("InternetGatewayDevice.DeviceInfo.UpTime", "3600", "xsd:unsignedInt"),
        PV("InternetGatewayDevice.DeviceInfo.X_5067F0_Temperature", "-4", "xsd:int"),
    )


def test_icwmp_transfer_complete_with_reordered_children() -> None:
    env = _sample("transfer_complete_icwmp.xml")
    assert env.header.id == "inform"
    assert env.message == rpc.TransferComplete(
        command_key="fw-upgrade-17",
        fault=rpc.FaultStruct(9010, "Download failed: file corrupted"),
        start_time="2024-03-05T11:50:02+00:00",
        complete_time="2024-03-05T11:52:40+00:00",
    )


def test_spv_fault_sample_with_parameter_faults() -> None:
    env = _sample("spv_fault.xml")
    assert env.header.id == "spv-0007"
    assert env.ns == CWMP_NS["1.0"]
    assert env.message == rpc.Fault(
        code=9003,
        string="Invalid arguments",
        faultcode="Client",
        set_parameter_values_faults=(
            rpc.SetParameterValuesFault(
                "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID",
                9007,
                "Invalid parameter value",
            ),
            rpc.SetParameterValuesFault(
                "InternetGatewayDevice.DeviceInfo.SerialNumber",
                9008,
                "Attempt to set a non-writable parameter",
            ),
        ),
    )


def test_gpn_response_sample_in_nonnormative_1_4_namespace() -> None:
    env = _sample("gpn_response.xml")
    assert env.ns == "urn:dslforum-org:cwmp-1-4"
    assert soap.version_of(env.ns) == "1.4"
    assert env.message == rpc.GetParameterNamesResponse(
        parameters=(
            rpc.ParameterInfo("Device.WiFi.SSID.", False),
            rpc.ParameterInfo("Device.WiFi.SSID.1.", False),
            rpc.ParameterInfo("Device.WiFi.SSID.1.SSID", True),
            rpc.ParameterInfo("Device.WiFi.SSID.1.Enable", True),
        )
    )


# --- lenient parsing of field quirks -----------------------------------------------------

ENV = (
    '<{p}:Envelope xmlns:{p}="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:cwmp="{ns}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "{header}<{p}:Body>{body}</{p}:Body></{p}:Envelope>"
)


def _env(body: str, header: str = "", *, p: str = "soap-env", ns: str = CWMP_NS["1.0"]) -> bytes:
    return ENV.format(p=p, ns=ns, header=header.replace("{p}", p), body=body).encode()


@pytest.mark.parametrize("prefix", ["SOAP-ENV", "soapenv", "soap_env", "soap", "s", "soap-env"])
def test_any_envelope_prefix_is_accepted(prefix: str) -> None:
    env = soap.parse(_env("<cwmp:Reboot><CommandKey>k</CommandKey></cwmp:Reboot>", p=prefix))
    assert env.message == rpc.Reboot("k")


def test_empty_header_without_id_is_accepted() -> None:
    env = soap.parse(_env("<cwmp:GetRPCMethods/>", "<{p}:Header/>"))
    assert env.header == Header() and env.message == rpc.GetRPCMethods()


def test_no_more_requests_is_parsed() -> None:
    hdr = (
        '<{p}:Header><cwmp:ID {p}:mustUnderstand="1">x</cwmp:ID>'
        "<cwmp:NoMoreRequests>1</cwmp:NoMoreRequests></{p}:Header>"
    )
    assert soap.parse(_env("<cwmp:GetRPCMethods/>", hdr)).header == Header(
        id="x", no_more_requests=True
    )
    hdr0 = "<{p}:Header><cwmp:NoMoreRequests>0</cwmp:NoMoreRequests></{p}:Header>"
    assert soap.parse(_env("<cwmp:GetRPCMethods/>", hdr0)).header == Header()


def test_empty_id_element_is_an_empty_string() -> None:
    hdr = "<{p}:Header><cwmp:ID/></{p}:Header>"
    assert soap.parse(_env("<cwmp:GetRPCMethods/>", hdr)).header.id == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        (" false ", False),
        ("False", False),
        ("0", False),
    ],
)
def test_booleans_accept_true_false_1_0_in_any_case(text: str, expected: bool) -> None:
    body = (
        "<cwmp:GetParameterNames><ParameterPath>Device.</ParameterPath>"
        f"<NextLevel>{text}</NextLevel></cwmp:GetParameterNames>"
    )
    assert soap.parse(_env(body)).message == rpc.GetParameterNames("Device.", expected)


@pytest.mark.parametrize("text", ["yes", "", "2", "truee"])
def test_bad_boolean_is_invalid_arguments(text: str) -> None:
    body = (
        "<cwmp:GetParameterNames><ParameterPath/>"
        f"<NextLevel>{text}</NextLevel></cwmp:GetParameterNames>"
    )
    with pytest.raises(SoapError, match="NextLevel") as ei:
        soap.parse(_env(body))
    assert ei.value.fault_code == 8003 and ei.value.http_status == 400


@pytest.mark.parametrize("text", ["abc", "1.5", "", "1_000", "٣", "-1", "99999999999999999999"])
def test_bad_integer_is_invalid_arguments(text: str) -> None:
    hdr = '<{p}:Header><cwmp:ID {p}:mustUnderstand="1">id-5</cwmp:ID></{p}:Header>'
    body = (
        f"<cwmp:ScheduleInform><DelaySeconds>{text}</DelaySeconds>"
        "<CommandKey/></cwmp:ScheduleInform>"
    )
    with pytest.raises(SoapError, match="DelaySeconds") as ei:
        soap.parse(_env(body, hdr))
    assert ei.value.fault_code == 8003
    # The cwmp:ID and namespace are reported so a fault can still be sent.
    assert ei.value.cwmp_id == "id-5" and ei.value.ns == CWMP_NS["1.0"]


def test_integers_tolerate_surrounding_whitespace_and_sign() -> None:
    body = (
        "<cwmp:SetParameterValuesResponse><Status> +1\n</Status></cwmp:SetParameterValuesResponse>"
    )
    assert soap.parse(_env(body)).message == rpc.SetParameterValuesResponse(1)


def test_qualified_children_and_comments_are_tolerated() -> None:
    body = (
        "<cwmp:AddObject><!-- vendor comment --><cwmp:ParameterKey>k</cwmp:ParameterKey>"
        "<cwmp:ObjectName>Device.WiFi.SSID.</cwmp:ObjectName></cwmp:AddObject>"
    )
    assert soap.parse(_env(body)).message == rpc.AddObject("Device.WiFi.SSID.", "k")


def test_array_without_array_type_and_wrong_count() -> None:
    body = (
        '<cwmp:GetParameterValues><ParameterNames soap-enc:arrayType="xsd:string[1]" '
        'xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/">'
        "<string>A.</string><string>B.</string><string>C</string></ParameterNames>"
        "</cwmp:GetParameterValues>"
    )
    assert soap.parse(_env(body)).message == rpc.GetParameterValues(("A.", "B.", "C"))


def test_leading_whitespace_trailing_nuls_and_bom_are_tolerated() -> None:
    data = _env("<cwmp:FactoryReset/>")
    decl = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    assert soap.parse(b"\n\r\n  " + decl + data + b"\0\0\0").message == rpc.FactoryReset()
    assert soap.parse(b"\xef\xbb\xbf" + decl + data).message == rpc.FactoryReset()


def test_latin1_declared_encoding_is_decoded() -> None:
    data = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        + _env(
            "<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>X</Name>"
            "<Value>Caf\u00e9</Value></ParameterValueStruct></ParameterList>"
            "<ParameterKey/></cwmp:SetParameterValues>"
        ).decode()
    ).encode("latin-1")
    msg = soap.parse(data).message
    assert msg == rpc.SetParameterValues((PV("X", "Café"),), "")


def test_inform_in_cwmp_1_4_namespace_is_accepted_and_echoed() -> None:
    ns = "urn:dslforum-org:cwmp-1-4"
    env = soap.parse(
        _env("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>", ns=ns)
    )
    assert env.ns == ns
    assert soap.parse(soap.serialize(env)) == env


def test_fault_namespace_comes_from_the_id_then_the_detail() -> None:
    fault = (
        "<{p}:Fault><faultcode>{p}:Server</faultcode><faultstring>CWMP fault</faultstring>"
        '<detail><cwmp:Fault xmlns:cwmp="urn:dslforum-org:cwmp-1-1"><FaultCode>9002</FaultCode>'
        "</cwmp:Fault></detail></{p}:Fault>"
    ).replace("{p}", "soap-env")
    env = soap.parse(_env(fault))
    assert env.ns == CWMP_NS["1.1"]
    assert env.message == rpc.Fault(9002, "", "Server")
    hdr = '<{p}:Header><cwmp:ID {p}:mustUnderstand="1">f</cwmp:ID></{p}:Header>'
    env = soap.parse(_env(fault, hdr, ns=CWMP_NS["1.2"]))
    assert env.ns == CWMP_NS["1.2"] and env.header.id == "f"


def test_prefixed_client_faultcode_is_client() -> None:
    fault = (
        "<soap-env:Fault><faultcode>soap-env:Client</faultcode><faultstring>x</faultstring>"
        "<detail><cwmp:Fault><FaultCode>9005</FaultCode><FaultString>bad name</FaultString>"
        "</cwmp:Fault></detail></soap-env:Fault>"
    )
    assert soap.parse(_env(fault)).message == rpc.Fault(9005, "bad name", "Client")


def test_header_hold_requests_and_session_timeout_values() -> None:
    hdr = (
        '<{p}:Header><cwmp:HoldRequests {p}:mustUnderstand="1">1</cwmp:HoldRequests>'
        "<cwmp:SessionTimeout>120</cwmp:SessionTimeout></{p}:Header>"
    )
    h = soap.parse(_env("<cwmp:GetRPCMethods/>", hdr)).header
    assert h.hold_requests is True and h.session_timeout == 120


def test_bad_header_value_is_invalid_arguments_with_id() -> None:
    hdr = (
        '<{p}:Header><cwmp:ID {p}:mustUnderstand="1">h1</cwmp:ID>'
        "<cwmp:SessionTimeout>soon</cwmp:SessionTimeout></{p}:Header>"
    )
    with pytest.raises(SoapError, match="SessionTimeout") as ei:
        soap.parse(_env("<cwmp:GetRPCMethods/>", hdr))
    assert ei.value.fault_code == 8003 and ei.value.cwmp_id == "h1"


def test_missing_required_child_is_invalid_arguments() -> None:
    with pytest.raises(SoapError, match="ObjectName") as ei:
        soap.parse(_env("<cwmp:AddObject><ParameterKey/></cwmp:AddObject>"))
    assert ei.value.fault_code == 8003


def test_inform_without_serial_number_is_invalid_arguments() -> None:
    body = (
        "<cwmp:Inform><DeviceId><Manufacturer>m</Manufacturer><OUI>000000</OUI></DeviceId>"
        "<Event/><CurrentTime>2024-01-01T00:00:00Z</CurrentTime></cwmp:Inform>"
    )
    with pytest.raises(SoapError, match="SerialNumber"):
        soap.parse(_env(body))


# --- hostile and broken input -------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soap-env:Body><cwmp:Reboot>
<CommandKey>&lol9;</CommandKey></cwmp:Reboot></soap-env:Body></soap-env:Envelope>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soap-env:Body><cwmp:Reboot>
<CommandKey>&xxe;</CommandKey></cwmp:Reboot></soap-env:Body></soap-env:Envelope>"""


def _refused(data: bytes, fault_code: int = 8003, http_status: int = 400) -> SoapError:
    with pytest.raises(SoapError) as ei:
        soap.parse(data)
    assert ei.value.fault_code == fault_code, ei.value
    assert ei.value.http_status == http_status, ei.value
    return ei.value


def test_billion_laughs_is_refused() -> None:
    assert "DOCTYPE" in _refused(BILLION_LAUGHS).message


def test_external_entity_is_refused() -> None:
    err = _refused(XXE)
    assert "root:" not in str(err)


def test_doctype_hidden_by_utf16_encoding_is_refused() -> None:
    # The byte-level pre-check can't see "<!DOCTYPE" in UTF-16; the post-parse check must.
    data = XXE.replace(b'<?xml version="1.0"?>\n', b"").decode().encode("utf-16")
    assert b"<!DOCTYPE" not in data
    err = _refused(data)
    assert "DOCTYPE" in err.message and "root:" not in str(err)


def test_utf16_envelope_with_bom_is_decoded() -> None:
    data = _env("<cwmp:FactoryReset/>").decode().encode("utf-16")
    assert soap.parse(data).message == rpc.FactoryReset()


def test_plain_doctype_is_refused() -> None:
    _refused(b"<!DOCTYPE html>" + _env("<cwmp:GetRPCMethods/>"))


def test_ten_megabyte_body_is_refused_before_parsing() -> None:
    big = _env("<cwmp:GetRPCMethods/>") + b" " * (10 * 1024 * 1024)
    err = _refused(big, fault_code=8004, http_status=413)
    assert "larger" in err.message


def test_body_at_the_size_limit_is_still_parsed() -> None:
    data = _env("<cwmp:GetRPCMethods/>")
    data = data + b" " * (soap.MAX_ENVELOPE_BYTES - len(data))
    assert soap.parse(data).message == rpc.GetRPCMethods()


def test_too_deep_nesting_is_refused() -> None:
    deep = "<x>" * soap.MAX_DEPTH + "</x>" * soap.MAX_DEPTH
    _refused(_env(f"<cwmp:Reboot><CommandKey>{deep}</CommandKey></cwmp:Reboot>"), 8004)


def test_truncated_envelope_is_refused() -> None:
    data = soap.serialize(Envelope(MESSAGES[rpc.Inform], Header(id="1"), CWMP_NS["1.0"]))
    _refused(data[: len(data) // 2])


def test_soap_1_2_envelope_is_refused() -> None:
    data = _env("<cwmp:GetRPCMethods/>").replace(
        b"http://schemas.xmlsoap.org/soap/envelope/", b"http://www.w3.org/2003/05/soap-envelope"
    )
    assert "SOAP 1.2" in _refused(data).message


def test_unknown_rpc_is_method_not_supported_with_id_and_namespace() -> None:
    hdr = '<{p}:Header><cwmp:ID {p}:mustUnderstand="1">u-1</cwmp:ID></{p}:Header>'
    err = _refused(_env("<cwmp:SetVouchers/>", hdr, ns=CWMP_NS["1.2"]), 8000)
    assert err.cwmp_id == "u-1" and err.ns == CWMP_NS["1.2"]


def test_change_du_state_operations_are_typed_by_any_prefix_of_the_namespace() -> None:
    body = (
        '<cwmp:ChangeDUState xmlns:t="urn:dslforum-org:cwmp-1-2">'
        '<Operations xsi:type="t:UninstallOpStruct"><UUID> 6ba7b810-9dad-11d1-80b4-00c04fd430c8 '
        "</UUID></Operations>"
        '<Operations xsi:type="InstallOpStruct"><URL>http://127.0.0.1/a</URL></Operations>'
        "<CommandKey>k</CommandKey></cwmp:ChangeDUState>"
    )
    m = soap.parse(_env(body, ns=CWMP_NS["1.2"])).message
    assert m == rpc.ChangeDUState(
        operations=(
            rpc.UninstallOp(uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            rpc.InstallOp(url="http://127.0.0.1/a"),
        ),
        command_key="k",
    )


@pytest.mark.parametrize(
    "operations",
    [
        "",
        '<Operations xsi:type="cwmp:RebootOpStruct"><URL>http://127.0.0.1/a</URL></Operations>',
        "<Operations><URL>http://127.0.0.1/a</URL></Operations>",
        '<Operations xsi:type="cwmp:InstallOpStruct"><UUID>x</UUID></Operations>',
        '<Operations xsi:type="cwmp:UninstallOpStruct"><Version>1</Version></Operations>',
    ],
    ids=["none", "unknown-type", "untyped", "install-without-url", "uninstall-without-uuid"],
)
def test_change_du_state_without_a_valid_operation_is_invalid_arguments(operations: str) -> None:
    _refused(_env(f"<cwmp:ChangeDUState>{operations}</cwmp:ChangeDUState>", ns=CWMP_NS["1.2"]))


def test_du_state_change_complete_reads_every_result_and_tolerates_missing_fields() -> None:
    body = (
        "<cwmp:DUStateChangeComplete><Results><UUID>u1</UUID><CurrentState>Installed"
        "</CurrentState></Results><Results><CurrentState>Failed</CurrentState><Fault>"
        "<FaultCode>9017</FaultCode></Fault></Results></cwmp:DUStateChangeComplete>"
    )
    m = soap.parse(_env(body, ns=CWMP_NS["1.2"])).message
    assert isinstance(m, rpc.DUStateChangeComplete) and m.command_key == ""
    assert [(r.uuid, r.current_state, r.fault.code) for r in m.results] == [
        ("u1", "Installed", 0),
        ("", "Failed", 9017),
    ]


def test_body_element_outside_cwmp_namespace_is_invalid() -> None:
    _refused(_env('<m:Reboot xmlns:m="urn:example"/>'))
    _refused(_env("<Reboot/>"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        b"\0\0",
        b"not xml at all",
        b"<html><body>502 Bad Gateway</body></html>",
        b'<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"/>',
        _env(""),
        _env("<cwmp:GetRPCMethods/><cwmp:GetRPCMethods/>"),
        _env("<soap-env:Fault><faultcode>Server</faultcode></soap-env:Fault>"),
        _env("<cwmp:Reboot>&undefined;</cwmp:Reboot>"),
        b"<?xml version='1.0'?><a:Envelope xmlns:a='urn:x'><a:Body/></a:Envelope>",
        b"\xff\xfe\x00garbage",
    ],
    ids=lambda d: repr(d[:30]),
)
def test_broken_input_is_a_soap_error(data: bytes) -> None:
    _refused(data)


def test_non_bytes_input_is_a_soap_error() -> None:
    with pytest.raises(SoapError):
        soap.parse("<a/>")  # type: ignore[arg-type]


def test_random_corruption_never_raises_anything_but_soap_error() -> None:
    rng = random.Random(2069)
    base = soap.serialize(Envelope(MESSAGES[rpc.Inform], Header(id="1"), CWMP_NS["1.2"]))
    outcomes = set()
    for _ in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 20)]
            else:
                data[pos:pos] = rng.choice([b"<", b">", b"&", b"<x>", b"]]>", b"\0", b"'"])
        try:
            soap.parse(bytes(data))
            outcomes.add("ok")
        except SoapError:
            outcomes.add("error")
    assert "error" in outcomes


def test_soap_error_messages_are_xml_safe_for_fault_strings() -> None:
    # Callers echo the message in a FaultString, which must serialize.
    err = SoapError("bad \x01 byte")
    assert err.message == "bad ? byte"
    soap.serialize(Envelope(rpc.Fault(8003, err.message, "Client"), Header(id="1")))


@pytest.mark.parametrize("ns", [*sorted(set(CWMP_NS.values())), "urn:dslforum-org:cwmp-1-4"])
@pytest.mark.parametrize("cwmp_id", ["", "1", "a&b<c>\"'", "id\r\nwith space"])
@pytest.mark.parametrize(("hold", "use"), [(False, None), (True, None), (False, "1.4")])
def test_inform_response_template_matches_the_generic_serializer(
    ns: str, cwmp_id: str, hold: bool, use: str | None
) -> None:
    expected = soap.serialize(
        Envelope(
            rpc.InformResponse(max_envelopes=1),
            Header(id=cwmp_id, hold_requests=True if hold else None, use_version=use),
            ns,
        )
    )
    # Twice: the first call builds the cached template, the second uses it.
    for _ in range(2):
        assert soap.inform_response(ns, cwmp_id, hold_requests=hold, use_version=use) == expected
    assert soap.parse(expected).header.id == cwmp_id


def test_inform_response_without_id_has_no_id_header() -> None:
    out = soap.inform_response(CWMP_NS["1.0"], None)
    assert soap.parse(out).header == Header()
    assert out == soap.serialize(Envelope(rpc.InformResponse(max_envelopes=1), Header()))


def test_inform_response_refuses_ids_xml_cannot_carry_and_foreign_namespaces() -> None:
    with pytest.raises(ValueError):
        soap.inform_response(CWMP_NS["1.0"], "bad\x01id")
    with pytest.raises(ValueError):
        soap.inform_response("urn:example:not-cwmp", "1")


def test_parameter_value_structs_accept_any_child_order_comments_and_first_wins() -> None:
    body = (
        "<cwmp:GetParameterValuesResponse><ParameterList>"
        "<ParameterValueStruct><!-- c --><Value xsi:type='xsd:int'>5</Value>"
        "<Name>A.B</Name><Name>ignored</Name><Value>ignored</Value></ParameterValueStruct>"
        "<!-- between --><cwmp:ParameterValueStruct><cwmp:Name>A.C</cwmp:Name>"
        "</cwmp:ParameterValueStruct>"
        "</ParameterList></cwmp:GetParameterValuesResponse>"
    )
    env = soap.parse(_env(body))
    assert env.message == rpc.GetParameterValuesResponse(
        parameters=(PV("A.B", "5", "xsd:int"), PV("A.C", "", "xsd:string"))
    )


def test_parameter_value_struct_without_name_is_an_invalid_arguments_error() -> None:
    body = (
        "<cwmp:GetParameterValuesResponse><ParameterList>"
        "<ParameterValueStruct><Value>1</Value></ParameterValueStruct>"
        "</ParameterList></cwmp:GetParameterValuesResponse>"
    )
    with pytest.raises(SoapError, match="ParameterValueStruct: missing Name") as caught:
        soap.parse(_env(body))
    assert caught.value.fault_code == 8003


def test_missing_parameter_list_gives_no_parameters() -> None:
    env = soap.parse(_env("<cwmp:GetParameterValuesResponse/>"))
    assert env.message == rpc.GetParameterValuesResponse(parameters=())
