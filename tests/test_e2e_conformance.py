"""Every message the running ACS sends is valid for the session's CWMP version, 1.0 to 1.4.

A real appliance on loopback and one ``cpe_sim`` CPE per version; the harness' conformance
tap (tests/wirecheck.py) validates every body both sides send. The ACS is made to send
every ACS-originated RPC of ``rpc.ACS_REQUESTS`` in real sessions: the task engine of the
test device is given a script of RPCs in place of its queue (the engine decides *what* to
send; encoding, the session machine and HTTP are the production ones). The CPE sends every
CPE-initiated request its version has, so every answer of the ACS is checked too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import Any

from e2eharness import ApplianceWithFleet, until

from acs.cwmp import rpc
from acs.cwmp.session import defines
from acs.tasks import SessionTasks

Script = Generator[rpc.Message, rpc.Message, None]


class _Scripted:
    """SessionTasks of one device whose ACS requests come from a script, then the queue."""

    def __init__(self, real: SessionTasks, script: Script) -> None:
        self.real = real
        self.script: Script | None = script
        self.answer: rpc.Message | None = None
        self.scripted_outstanding = False

    @property
    def idle(self) -> bool:
        return self.script is None and self.real.idle

    def next_request(self, *, now: float) -> rpc.Message | None:
        if self.script is not None:
            try:
                request = (
                    next(self.script) if self.answer is None else self.script.send(self.answer)
                )
            except StopIteration:
                self.script = None
            else:
                self.scripted_outstanding = True
                return request
        return self.real.next_request(now=now)

    def on_response(self, message: rpc.Message, *, now: float) -> None:
        if self.scripted_outstanding:
            self.scripted_outstanding = False
            self.answer = message
            return
        self.real.on_response(message, now=now)

    def on_cpe_request(self, message: rpc.Message, *, now: float) -> rpc.Message:
        return self.real.on_cpe_request(message, now=now)

    def abort(self, *, now: float, reason: str) -> None:
        self.real.abort(now=now, reason=reason)


def every_acs_request(
    root: str, version: str, files_url: str, answers: list[rpc.Message]
) -> Script:
    """One of each ACS request the version has (FactoryReset excepted: it ends the CPE's
    state, see below)."""
    ms = f"{root}ManagementServer."
    software = f"{root}DeviceInfo.SoftwareVersion"
    table = f"{root}NAT.PortMapping." if root == "Device." else None
    if table is None:
        table = f"{root}WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.PortMapping."
    steps: list[rpc.Message] = [
        rpc.GetRPCMethods(),
        rpc.GetParameterNames(ms, True),
        rpc.GetParameterValues((software, f"{root}DeviceInfo.")),
        rpc.SetParameterValues(
            (rpc.ParameterValue(f"{ms}PeriodicInformInterval", "3600", "xsd:unsignedInt"),),
            "conformance-1",
        ),
        rpc.GetParameterAttributes((software,)),
        rpc.SetParameterAttributes((rpc.SetParameterAttributesStruct(software, True, 2),)),
    ]
    for request in steps:
        answers.append((yield request))
    if defines(version, rpc.GetAllQueuedTransfers):
        answers.append((yield rpc.GetAllQueuedTransfers()))  # nothing queued yet
    if defines(version, rpc.ScheduleDownload):
        # In an hour, and cancelled before it starts: no transfer, two more RPCs.
        window = rpc.TimeWindow(3600, 7200, "1 At Any Time", "", -1)
        answers.append(
            (
                yield rpc.ScheduleDownload(
                    "conformance-sd", "2 Web Content", f"{files_url}file/0/x", (window,)
                )
            )
        )
        answers.append((yield rpc.GetAllQueuedTransfers()))  # the scheduled download
        answers.append((yield rpc.CancelTransfer("conformance-sd")))
        # From a URL the file server never signed: the CPE reports the install failed in a
        # DUStateChangeComplete (a CPE request to answer), the uninstall of an unknown unit too.
        answers.append(
            (
                yield rpc.ChangeDUState(
                    (
                        rpc.InstallOp(f"{files_url}file/0/unit"),
                        rpc.UninstallOp("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "1.0"),
                    ),
                    "conformance-du",
                )
            )
        )
    added = yield rpc.AddObject(table, "conformance-2")
    answers.append(added)
    assert isinstance(added, rpc.AddObjectResponse), added
    answers.append((yield rpc.DeleteObject(f"{table}{added.instance_number}.", "conformance-3")))
    # Transfers from the appliance's file server with URLs it never signed: the CPE accepts,
    # fails the transfer and reports it in a TransferComplete (a CPE request to answer).
    answers.append(
        (
            yield rpc.Download(
                "conformance-dl",
                "1 Firmware Upgrade Image",
                f"{files_url}firmware/0/unsigned",
                file_size=1,
            )
        )
    )
    answers.append(
        (yield rpc.Upload("conformance-ul", "1 Vendor Configuration File", f"{files_url}x"))
    )
    answers.append((yield rpc.GetQueuedTransfers()))  # the Download and Upload above
    answers.append((yield rpc.ScheduleInform(3600, "conformance-si")))
    answers.append((yield rpc.Reboot("conformance-reboot")))


def cpe_requests(version: str) -> list[rpc.Message]:
    requests: list[rpc.Message] = [
        rpc.GetRPCMethods(),
        rpc.RequestDownload("2 Web Content", (("Version", "2.0"),)),  # stored: see exercise
        rpc.Kicked("reset", "http://127.0.0.1/portal", "", "http://127.0.0.1/next"),
        rpc.AutonomousTransferComplete(
            "", "http://127.0.0.1/fw.bin", True, "1 Firmware Upgrade Image", 1024
        ),
        rpc.AutonomousDUStateChangeComplete(
            (
                rpc.OpResult(
                    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                    "Device.SoftwareModules.DeploymentUnit.9",
                    "1.0",
                    "Uninstalled",
                    True,
                    "",
                    operation_performed="Uninstall",
                ),
            )
        ),
    ]
    return [r for r in requests if defines(version, type(r))]


class EveryMessageInEveryVersion(ApplianceWithFleet):
    async def exercise(self, version: str, model: str) -> None:
        # The scripted FactoryReset is no task, so the ACS would not re-admit the reset CPE
        # with first-contact credentials: this test is about messages, not credentials.
        await self.start_appliance(self.tempdir(), device_credentials=False)
        await self.start_fleet(count=1, model=model, cwmp_version=version)
        (cpe,) = self.fleet.cpes
        device = self.device(cpe)
        files_port = self.appliance.listening()["files"]
        assert files_port is not None
        files_url = f"http://127.0.0.1:{files_port.getHost().port}/"

        # What the CPE's RequestDownload asks for, so it is answered, not refused.
        self.appliance.store.create_file(
            name="portal", file_type="2 Web Content", size=1, sha256="0" * 64,
            filename="portal", now=float(self.appliance.reactor.seconds()),
        )  # fmt: skip
        answers: list[rpc.Message] = []
        # The next session's script, armed for the sessions this test starts itself: the
        # CPE may open more (its reports can come in more than one), which run as usual.
        scripts = [every_acs_request(cpe.root, version, files_url, answers)]
        open_session = self.appliance.tasks.open_session

        def scripted(device_id: int, session_version: str | None = None) -> Any:
            real = open_session(device_id, session_version)
            if device_id == device.id and scripts:
                return _Scripted(real, scripts.pop(0))
            return real

        self.appliance.tasks.open_session = scripted  # type: ignore[method-assign]
        seen = self.conformance.checked
        # Session 1: every RPC but FactoryReset; the CPE reboots after it ("M Reboot"), and
        # reports the failed Download and Upload in TransferCompletes (from 1.2, and the
        # ChangeDUState's operations in a DUStateChangeComplete).
        await self.bounded(cpe.inform())
        reports = 1 if defines(version, rpc.DUStateChangeComplete) else 0
        await until(
            cpe,
            lambda: (
                Counter(seen["acs"])["TransferCompleteResponse"] >= 2
                and Counter(seen["acs"])["DUStateChangeCompleteResponse"] >= reports
            ),
        )
        # Session 2: FactoryReset; the CPE comes back with BOOTSTRAP and is provisioned.
        await until(cpe, lambda: not cpe.busy)
        scripts.append(_factory_reset(answers))
        await self.bounded(cpe.inform())
        await until(cpe, lambda: cpe.factory_resets == 1 and cpe.online and not cpe.busy)
        for request in cpe_requests(version):
            await self.bounded(cpe.send_request(request))

        assert not any(isinstance(a, rpc.Fault) for a in answers), answers
        acs_sent = set(seen["acs"])
        offered = [t for t in rpc.ACS_REQUESTS if defines(version, t)]
        missing = {t.__name__ for t in offered} - acs_sent
        assert not missing, f"ACS requests never sent: {missing}"
        answered = {rpc.CPE_REQUESTS[type(r)].__name__ for r in cpe_requests(version)}
        assert answered | {"InformResponse", "TransferCompleteResponse"} <= acs_sent
        if reports:
            assert "DUStateChangeCompleteResponse" in acs_sent
        assert {f"{t.__name__}Response" for t in offered} <= set(seen["cpe"])
        self.conformance.assert_clean()

    async def test_cwmp_1_0(self) -> None:
        await self.exercise("1.0", "tr098")

    async def test_cwmp_1_1(self) -> None:
        await self.exercise("1.1", "tr098")

    async def test_cwmp_1_2(self) -> None:
        await self.exercise("1.2", "tr181")

    async def test_cwmp_1_3(self) -> None:
        await self.exercise("1.3", "tr181")

    async def test_cwmp_1_4(self) -> None:
        await self.exercise("1.4", "tr181")


def _factory_reset(answers: list[rpc.Message]) -> Script:
    answers.append((yield rpc.FactoryReset()))
