"""Simulator file transfers against a fake file server: download, Range resume, upload,
configuration restore, and every injected fault.

Two harnesses over one file-serving function (``serve``): a real twisted.web listener on
loopback for ``cpe_sim.transfers`` (real HTTP through treq, so Range and Content-Length are
the wire's), and an in-memory one behind a scripted ACS on ``task.Clock`` for whole CPE
flows (Download RPC -> fetch -> TransferComplete -> reboot -> Inform).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from acs.cwmp import rpc, soap
from cpe_sim import firmware, transfers
from cpe_sim.cli import make_fleet, parse_args
from cpe_sim.cpe import HttpResponse, Profile, SimulatedCPE, TreqSessionClient
from cpe_sim.datamodel import load_template
from cpe_sim.fleet import Fleet
from cpe_sim.transfers import Faults, TransferFailed

reactor: Any = _reactor
NS = soap.CWMP_NS["1.2"]
FIRMWARE = "1 Firmware Upgrade Image"
CONFIG = "3 Vendor Configuration File"
BACKUP = "1 Vendor Configuration File"
VERSION = "Device.DeviceInfo.SoftwareVersion"
SSID = "Device.WiFi.SSID.1.SSID"
_RANGE = re.compile(r"bytes=(\d+)-$")


# --- the fake file server -------------------------------------------------------------------


@dataclass
class Files:
    """What the fake file server holds and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    honour_range: bool = True
    status: int | None = None  # answer every request with this status instead
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range

    def serve(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        range_header = headers.get("range")
        self.requests.append((method, path, range_header))
        if self.status is not None:
            return self.status, {}, b""
        if path in self.forbidden:
            return 403, {}, b""
        if method == "PUT":
            self.uploads[path] = body or b""
            return 201, {}, b""
        data = self.files.get(path)
        if data is None:
            return 404, {}, b""
        match = _RANGE.match(range_header or "")
        if match is None or not self.honour_range:
            return 200, {"content-length": str(len(data))}, data
        start = int(match.group(1))
        if start >= len(data):
            return 416, {"content-range": f"bytes */{len(data)}"}, b""
        part = data[start:]
        return (
            206,
            {
                "content-range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                "content-length": str(len(part)),
            },
            part,
        )


class FileResource(Resource):
    isLeaf = True

    def __init__(self, files: Files) -> None:
        super().__init__()
        self.files = files

    def _answer(self, request: Request, body: bytes | None) -> bytes:
        headers = {
            k.decode().lower(): vs[0].decode()
            for k, vs in request.requestHeaders.getAllRawHeaders()
        }
        code, out, data = self.files.serve(
            request.method.decode(), request.path.decode(), headers, body
        )
        request.setResponseCode(code)
        for name, value in out.items():
            if name != "content-length":  # twisted.web sets it from the body
                request.setHeader(name, value)
        return data

    def render_GET(self, request: Request) -> bytes:
        return self._answer(request, None)

    def render_PUT(self, request: Request) -> bytes:
        assert request.content is not None
        return self._answer(request, request.content.read())


# --- cpe_sim.firmware -------------------------------------------------------------------------


def test_made_image_carries_its_version_and_verifies() -> None:
    data = firmware.make_image("2.4.1", 1000)
    image = firmware.parse_image(data)
    assert image is not None
    assert (image.version, len(image.payload)) == ("2.4.1", 1000)
    assert data.startswith(b"ACMEFW1 version=2.4.1 sha256=")


def test_image_with_a_damaged_payload_is_rejected() -> None:
    with pytest.raises(firmware.ImageError, match="sha256"):
        firmware.parse_image(transfers.corrupt(firmware.make_image("2.4.1", 100)))


def test_malformed_header_is_rejected_and_headerless_file_is_not_an_image() -> None:
    with pytest.raises(firmware.ImageError):
        firmware.parse_image(b"ACMEFW1 version=1 sha256=zz\npayload")
    with pytest.raises(firmware.ImageError, match="terminated"):
        firmware.parse_image(b"ACMEFW1 " + b"x" * 1000)
    assert firmware.parse_image(b"plain firmware") is None
    assert firmware.version_from_name("hg-2.1.0.bin") == "2.1.0"
    assert firmware.version_from_name("image.bin") is None


def test_make_image_refuses_a_version_that_cannot_be_a_header_word() -> None:
    with pytest.raises(ValueError):
        firmware.make_image("1.0 sha256=00", 10)
    with pytest.raises(ValueError):
        firmware.make_image("1.0", -1)


def test_faults_refuse_a_negative_interruption_point() -> None:
    with pytest.raises(ValueError):
        Faults(interrupt_after=-1)


# --- cpe_sim.transfers over real HTTP ----------------------------------------------------------


class HttpTransferTests(unittest.TestCase):
    def setUp(self) -> None:
        self.files = Files()
        self.port = reactor.listenTCP(0, Site(FileResource(self.files)), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"

    def client(self) -> TreqSessionClient:
        c = TreqSessionClient(reactor, 5.0)
        self.addCleanup(c.close)
        return c

    async def fetch(self, path: str, **kw: Any) -> bytes:
        return await transfers.fetch(self.client(), self.base + path, headers={}, **kw)

    async def fetch_fault(self, path: str, **kw: Any) -> int:
        try:
            await self.fetch(path, **kw)
        except TransferFailed as e:
            return e.code
        raise AssertionError("the fetch succeeded")

    async def test_fetch_returns_the_whole_file(self) -> None:
        data = firmware.make_image("3.0", 5000)
        self.files.files["/fw/a.bin"] = data
        self.assertEqual(await self.fetch("/fw/a.bin", file_size=len(data)), data)
        self.assertEqual(self.files.requests, [("GET", "/fw/a.bin", None)])

    async def test_interrupted_fetch_resumes_with_a_range_request(self) -> None:
        data = firmware.make_image("3.0", 5000)
        self.files.files["/fw/a.bin"] = data
        got = await self.fetch("/fw/a.bin", faults=Faults(interrupt_after=1200))
        self.assertEqual(got, data)
        self.assertEqual(
            self.files.requests,
            [("GET", "/fw/a.bin", None), ("GET", "/fw/a.bin", "bytes=1200-")],
        )

    async def test_interrupted_fetch_without_resume_is_incomplete_9017(self) -> None:
        self.files.files["/fw/a.bin"] = firmware.make_image("3.0", 5000)
        code = await self.fetch_fault("/fw/a.bin", faults=Faults(interrupt_after=10, resume=False))
        self.assertEqual(code, 9017)
        self.assertEqual(len(self.files.requests), 1)

    async def test_server_ignoring_range_makes_the_cpe_start_over(self) -> None:
        data = firmware.make_image("3.0", 3000)
        self.files.files["/fw/a.bin"] = data
        self.files.honour_range = False
        self.assertEqual(await self.fetch("/fw/a.bin", faults=Faults(interrupt_after=700)), data)
        self.assertEqual([r[2] for r in self.files.requests], [None, "bytes=700-"])

    async def test_refused_url_is_an_authentication_failure_9012(self) -> None:
        self.files.files["/fw/a.bin"] = b"x"
        self.files.forbidden.add("/fw/a.bin")
        self.assertEqual(await self.fetch_fault("/fw/a.bin"), 9012)

    async def test_missing_file_is_9016_and_a_server_error_9010(self) -> None:
        self.assertEqual(await self.fetch_fault("/fw/none.bin"), 9016)
        self.files.status = 500
        self.assertEqual(await self.fetch_fault("/fw/none.bin"), 9010)

    async def test_size_other_than_file_size_fails(self) -> None:
        self.files.files["/fw/a.bin"] = b"0123456789"
        self.assertEqual(await self.fetch_fault("/fw/a.bin", file_size=20), 9017)
        self.assertEqual(await self.fetch_fault("/fw/a.bin", file_size=5), 9018)

    async def test_refused_download_fails_9010_without_a_request(self) -> None:
        self.files.files["/fw/a.bin"] = b"x"
        code = await self.fetch_fault("/fw/a.bin", faults=Faults(refuse_download=True))
        self.assertEqual(code, 9010)
        self.assertEqual(self.files.requests, [])

    async def test_corrupt_fault_flips_bytes_of_the_download(self) -> None:
        data = firmware.make_image("3.0", 100)
        self.files.files["/fw/a.bin"] = data
        got = await self.fetch("/fw/a.bin", faults=Faults(corrupt_download=True))
        self.assertEqual(len(got), len(data))
        self.assertNotEqual(got, data)

    async def test_unreachable_file_server_is_9015(self) -> None:
        await self.port.stopListening()
        self.assertEqual(await self.fetch_fault("/fw/a.bin"), 9015)

    async def test_upload_puts_the_body(self) -> None:
        await transfers.upload(self.client(), self.base + "/backup/7", b"cfg", headers={})
        self.assertEqual(self.files.uploads, {"/backup/7": b"cfg"})

    async def test_upload_fault_and_refusal(self) -> None:
        with self.assertRaises(TransferFailed) as caught:
            await transfers.upload(
                self.client(), self.base + "/b", b"c", headers={}, faults=Faults(fail_upload=True)
            )
        self.assertEqual(caught.exception.code, 9011)
        self.assertEqual(self.files.requests, [])
        self.files.forbidden.add("/b")
        with self.assertRaises(TransferFailed) as caught:
            await transfers.upload(self.client(), self.base + "/b", b"c", headers={})
        self.assertEqual(caught.exception.code, 9012)
        self.files.status = 500
        with self.assertRaises(TransferFailed) as caught:
            await transfers.upload(self.client(), self.base + "/b", b"c", headers={})
        self.assertEqual(caught.exception.code, 9011)


# --- whole CPE flows on task.Clock ----------------------------------------------------------


@dataclass
class Acs:
    """Scripted in-memory ACS plus the in-memory file server at http://files/."""

    files: Files
    script: list[rpc.Message] = field(default_factory=list)
    informs: list[rpc.Inform] = field(default_factory=list)
    answers: list[rpc.Message] = field(default_factory=list)
    transfer_completes: list[rpc.TransferComplete] = field(default_factory=list)
    du_reports: list[rpc.DUStateChangeComplete] = field(default_factory=list)
    holding: bool = False  # True: requests wait in ``held`` until ``release``
    held: list[tuple[Deferred[HttpResponse], Callable[[], HttpResponse]]] = field(
        default_factory=list
    )
    _queue: list[rpc.Message] = field(default_factory=list)

    def release(self) -> None:
        """Answer the oldest held request."""
        d, answer = self.held.pop(0)
        d.callback(answer())

    def client(self) -> Client:
        return Client(self)

    def answer(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpResponse:
        if url.startswith("http://files/"):
            lower = {k.lower(): v for k, v in headers.items()}
            code, out, data = self.files.serve(method, url[len("http://files") :], lower, body)
            return HttpResponse(code, {k: [v] for k, v in out.items()}, data)
        if not body:
            return self._next()
        envelope = soap.parse(body)
        m = envelope.message
        if isinstance(m, rpc.Inform):
            self.informs.append(m)
            self._queue, self.script = self.script, []
            return self._envelope(rpc.InformResponse(1), envelope.header.id)
        if isinstance(m, rpc.TransferComplete):
            self.transfer_completes.append(m)
            return self._envelope(rpc.TransferCompleteResponse(), envelope.header.id)
        if isinstance(m, rpc.DUStateChangeComplete):
            self.du_reports.append(m)
            return self._envelope(rpc.DUStateChangeCompleteResponse(), envelope.header.id)
        self.answers.append(m)
        return self._next()

    def _next(self) -> HttpResponse:
        if not self._queue:
            return HttpResponse(204, {}, b"")
        return self._envelope(self._queue.pop(0), "acs")

    @staticmethod
    def _envelope(m: rpc.Message, cwmp_id: str | None) -> HttpResponse:
        return HttpResponse(200, {}, soap.serialize(soap.Envelope(m, soap.Header(id=cwmp_id), NS)))

    def events(self, index: int = -1) -> list[tuple[str, str]]:
        return [(e.code, e.command_key) for e in self.informs[index].events]

    def inform_value(self, name: str, index: int = -1) -> str | None:
        values = {p.name: p.value for p in self.informs[index].parameters}
        return values.get(name)


class Client:
    def __init__(self, acs: Acs) -> None:
        self.acs = acs

    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Deferred[HttpResponse]:
        if self.acs.holding:
            d: Deferred[HttpResponse] = Deferred()
            self.acs.held.append((d, lambda: self.acs.answer(method, url, body, headers)))
            return d
        return succeed(self.acs.answer(method, url, body, headers))

    def close(self) -> Deferred[None]:
        return succeed(None)


class CpeTransferTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.files = Files()
        self.acs = Acs(self.files)
        self.profile = Profile(
            reactor=self.clock,
            acs_url="http://127.0.0.1:7547/",
            periodic=False,
            reboot_delay=3,
            rng=random.Random(1),
            client_factory=self.acs.client,
        )
        self.cpe = SimulatedCPE("XFER00001", load_template("tr181"), self.profile)
        self.addCleanup(self.cpe.stop)
        self.cpe.inform()  # the BOOTSTRAP session, out of the way
        self.acs.informs.clear()

    def run_rpc(self, message: rpc.Message) -> rpc.Message:
        """One session carrying ``message``; then the transfer runs (clock turn 0)."""
        self.acs.script = [message]
        self.cpe.inform()
        answer = self.acs.answers[-1]
        self.clock.advance(0)
        return answer

    def download(self, path: str, file_type: str = FIRMWARE, **kw: Any) -> rpc.Message:
        return self.run_rpc(rpc.Download("task-1", file_type, "http://files" + path, **kw))

    def only_transfer_complete(self) -> rpc.TransferComplete:
        [tc] = self.acs.transfer_completes
        return tc

    def assert_failed_without_change(self, code: int) -> None:
        before = transfers.serialize_config(self.cpe.model, self.cpe.serial)
        tc = self.only_transfer_complete()
        self.assertEqual((tc.command_key, tc.fault.code), ("task-1", code))
        self.assertTrue(tc.fault.string)
        self.assertEqual(tc.start_time, rpc.UNKNOWN_TIME)
        self.assertTrue(self.cpe.online)  # no reboot
        self.assertEqual(self.cpe.reboots, 0)
        self.assertEqual(self.cpe.value(VERSION), "1.0.0")
        self.assertEqual(self.acs.events(), [("7 TRANSFER COMPLETE", ""), ("M Download", "task-1")])
        self.assertEqual(transfers.serialize_config(self.cpe.model, self.cpe.serial), before)

    def test_firmware_download_installs_the_image_version_reboots_and_informs_it(self) -> None:
        image = firmware.make_image("2.7.0", 4000)
        self.files.files["/fw/7/any-name.bin"] = image
        answer = self.download("/fw/7/any-name.bin", file_size=len(image))
        self.assertEqual(answer, rpc.DownloadResponse(1))
        self.assertFalse(self.cpe.online)  # installing: restarting
        self.assertEqual(self.acs.transfer_completes, [])
        self.clock.advance(3)
        self.assertTrue(self.cpe.online)
        self.assertEqual(
            self.acs.events(),
            [("7 TRANSFER COMPLETE", ""), ("M Download", "task-1"), ("1 BOOT", "")],
        )
        self.assertEqual(self.acs.inform_value(VERSION), "2.7.0")
        tc = self.only_transfer_complete()
        self.assertEqual((tc.command_key, tc.fault), ("task-1", rpc.FaultStruct(0, "")))
        self.assertNotEqual(tc.start_time, rpc.UNKNOWN_TIME)

    def test_change_du_state_fetches_installs_and_reports_in_a_new_session(self) -> None:
        self.files.files["/du/app.tar"] = b'{"name": "app", "version": "1.4"}'
        operations = (
            rpc.InstallOp("http://files/du/app.tar"),
            rpc.InstallOp("http://files/du/missing.tar"),
        )
        answer = self.run_rpc(rpc.ChangeDUState(operations, "task-1"))
        self.assertEqual(answer, rpc.ChangeDUStateResponse())
        [report] = self.acs.du_reports
        self.assertEqual(report.command_key, "task-1")
        self.assertEqual(
            [(r.current_state, r.version, r.fault.code) for r in report.results],
            [("Installed", "1.4", 0), ("Failed", "", 9016)],
        )
        self.assertEqual(
            self.acs.events(), [("11 DU STATE CHANGE COMPLETE", ""), ("M ChangeDUState", "task-1")]
        )
        unit = report.results[0].deployment_unit_ref
        self.assertEqual(self.cpe.value(f"{unit}.Version"), "1.4")
        self.assertEqual(self.files.requests[-1][:2], ("GET", "/du/missing.tar"))
        self.assertTrue(self.cpe.online)  # installing a unit restarts nothing

    def test_install_finishing_during_a_session_restarts_after_that_session(self) -> None:
        self.files.files["/fw/a.bin"] = firmware.make_image("3.1", 100)
        self.acs.script = [rpc.Download("task-1", FIRMWARE, "http://files/fw/a.bin")]
        self.cpe.inform()
        self.acs.holding = True
        self.clock.advance(0)  # the fetch starts; its GET waits
        self.cpe.inform()  # and a session starts meanwhile; its Inform waits too
        self.assertEqual(len(self.acs.held), 2)
        self.assertTrue(self.cpe.busy)

        self.acs.release()  # the image arrives mid-session: no restart yet
        self.assertTrue(self.cpe.online)
        self.acs.holding = False
        self.acs.release()  # the session runs to its end (TransferComplete included)

        self.assertFalse(self.cpe.online)  # restarted once the session was over
        self.assertEqual(self.only_transfer_complete().fault.code, 0)
        self.clock.advance(3)
        self.assertEqual(self.cpe.value(VERSION), "3.1")
        self.assertIn(("1 BOOT", ""), self.acs.events())

    def test_headerless_firmware_takes_its_version_from_the_target_file_name(self) -> None:
        self.files.files["/fw/blob"] = b"vendor blob"
        self.download("/fw/blob", target_file_name="router-4.2.bin")
        self.clock.advance(3)
        self.assertEqual(self.cpe.value(VERSION), "4.2")

    def test_corrupt_download_reports_9018_and_nothing_changes(self) -> None:
        self.files.files["/fw/a.bin"] = firmware.make_image("2.7.0", 4000)
        self.cpe.inject = Faults(corrupt_download=True)
        self.download("/fw/a.bin")
        self.assert_failed_without_change(9018)

    def test_tampered_image_on_the_server_reports_9018(self) -> None:
        self.files.files["/fw/a.bin"] = transfers.corrupt(firmware.make_image("2.7.0", 400))
        self.download("/fw/a.bin")
        self.assert_failed_without_change(9018)

    def test_interrupted_download_resumes_with_range_and_installs(self) -> None:
        image = firmware.make_image("2.8.0", 3000)
        self.files.files["/fw/a.bin"] = image
        self.cpe.inject = Faults(interrupt_after=1000)
        self.download("/fw/a.bin", file_size=len(image))
        self.clock.advance(3)
        self.assertEqual(
            self.files.requests, [("GET", "/fw/a.bin", None), ("GET", "/fw/a.bin", "bytes=1000-")]
        )
        self.assertEqual(self.only_transfer_complete().fault.code, 0)
        self.assertEqual(self.cpe.value(VERSION), "2.8.0")
        self.assertEqual(self.cpe.download_resumes, 1)

    def test_interrupted_download_without_resume_reports_9017(self) -> None:
        self.files.files["/fw/a.bin"] = firmware.make_image("2.8.0", 3000)
        self.cpe.inject = Faults(interrupt_after=1000, resume=False)
        self.download("/fw/a.bin")
        self.assert_failed_without_change(9017)

    def test_refused_download_reports_9010(self) -> None:
        self.files.files["/fw/a.bin"] = firmware.make_image("2.8.0", 10)
        self.cpe.inject = Faults(refuse_download=True)
        self.download("/fw/a.bin")
        self.assert_failed_without_change(9010)
        self.assertEqual(self.files.requests, [])

    def test_refused_url_reports_9012(self) -> None:
        self.files.files["/fw/a.bin"] = firmware.make_image("2.8.0", 10)
        self.files.forbidden.add("/fw/a.bin")
        self.download("/fw/a.bin")
        self.assert_failed_without_change(9012)

    def test_fleet_wide_faults_apply_unless_the_cpe_overrides_them(self) -> None:
        self.files.files["/fw/a.bin"] = firmware.make_image("2.9", 10)
        self.profile.faults = Faults(refuse_download=True)
        self.download("/fw/a.bin")
        self.assertEqual(self.only_transfer_complete().fault.code, 9010)
        self.acs.transfer_completes.clear()

        self.cpe.inject = Faults()
        self.download("/fw/a.bin")
        self.clock.advance(3)
        self.assertEqual(self.only_transfer_complete().fault.code, 0)
        self.assertEqual(self.cpe.value(VERSION), "2.9")

    def test_fleet_faults_property_sets_every_cpes_default(self) -> None:
        fleet = Fleet(self.clock, acs_url="http://127.0.0.1:7547/", count=2)
        fleet.faults = Faults(fail_upload=True)
        self.assertEqual(
            [c.active_faults.fail_upload for c in fleet.cpes], [True, True], fleet.faults
        )

    def test_upload_sends_the_writable_configuration_and_reports_m_upload(self) -> None:
        answer = self.run_rpc(rpc.Upload("up-1", BACKUP, "http://files/backup/5"))
        self.assertEqual(answer, rpc.UploadResponse(1))
        document = json.loads(self.files.uploads["/backup/5"])
        self.assertEqual(document["format"], transfers.CONFIG_FORMAT)
        self.assertEqual(document["parameters"][SSID], self.cpe.value(SSID))
        self.assertNotIn(VERSION, document["parameters"])  # read-only: not configuration
        tc = self.only_transfer_complete()
        self.assertEqual((tc.command_key, tc.fault.code), ("up-1", 0))
        self.assertEqual(self.acs.events(), [("7 TRANSFER COMPLETE", ""), ("M Upload", "up-1")])
        self.assertTrue(self.cpe.online)

    def test_failed_upload_reports_9011(self) -> None:
        self.cpe.inject = Faults(fail_upload=True)
        self.run_rpc(rpc.Upload("up-1", BACKUP, "http://files/backup/5"))
        self.assertEqual(self.only_transfer_complete().fault.code, 9011)
        self.assertEqual(self.files.uploads, {})

    def test_upload_of_an_unknown_file_type_is_refused(self) -> None:
        reply = self.cpe.handle(rpc.Upload("k", "X 00D09E Dump", "http://files/x"))
        assert isinstance(reply, rpc.Fault)
        self.assertEqual(reply.code, 9003)

    def test_restore_puts_the_backed_up_configuration_back_and_reboots(self) -> None:
        self.run_rpc(rpc.Upload("up-1", BACKUP, "http://files/backup/5"))
        original = self.cpe.value(SSID)
        self.cpe.model.set_raw(SSID, "changed-after-backup")
        self.files.files["/backup/5/1"] = self.files.uploads["/backup/5"]
        self.acs.transfer_completes.clear()

        self.download("/backup/5/1", CONFIG)
        self.assertFalse(self.cpe.online)
        self.clock.advance(3)

        self.assertEqual(self.cpe.value(SSID), original)
        self.assertEqual(self.only_transfer_complete().fault.code, 0)
        self.assertEqual(self.acs.events()[-1], ("1 BOOT", ""))

    def test_restore_of_an_invalid_configuration_reports_9018_and_changes_nothing(self) -> None:
        good = json.loads(transfers.serialize_config(self.cpe.model, self.cpe.serial))
        bad_files = {
            "/c/not-json": b"{nope",
            "/c/read-only": json.dumps({**good, "parameters": {VERSION: "9.9"}}).encode(),
            "/c/other-root": json.dumps({**good, "root": "InternetGatewayDevice."}).encode(),
            "/c/bad-type": json.dumps(
                {**good, "parameters": {"Device.ManagementServer.PeriodicInformInterval": "x"}}
            ).encode(),
        }
        self.files.files.update(bad_files)
        for path in bad_files:
            self.acs.transfer_completes.clear()
            self.download(path, CONFIG)
            self.assert_failed_without_change(9018)

    def test_vendor_file_in_a_foreign_format_is_acknowledged_without_a_restart(self) -> None:
        self.files.files["/c/opaque.cfg"] = b"vendor binary config"
        self.download("/c/opaque.cfg", CONFIG)
        self.assertEqual(self.only_transfer_complete().fault.code, 0)
        self.assertTrue(self.cpe.online)


def test_cli_fault_flags_set_the_fleet_wide_faults() -> None:
    base = ["--acs", "http://127.0.0.1:7547/", "--count", "1"]
    assert make_fleet(task.Clock(), parse_args(base)).faults == Faults()
    flags = ["--corrupt-download", "--interrupt-after", "512", "--no-resume", "--fail-upload"]
    fleet = make_fleet(task.Clock(), parse_args([*base, *flags]))
    assert fleet.faults == Faults(
        corrupt_download=True, interrupt_after=512, resume=False, fail_upload=True
    )
    assert fleet.cpes[0].active_faults is fleet.faults


class CpeTransferQueueTests(unittest.TestCase):
    """ScheduleDownload, CancelTransfer and GetAllQueuedTransfers (CWMP 1.2) on the CPE."""

    setUp = CpeTransferTests.setUp
    run_rpc = CpeTransferTests.run_rpc
    only_transfer_complete = CpeTransferTests.only_transfer_complete

    def scheduled(self, key: str, start: int) -> rpc.ScheduleDownload:
        self.files.files["/web"] = b"<html/>"
        return rpc.ScheduleDownload(
            key, "2 Web Content", "http://files/web",
            (rpc.TimeWindow(start, start + 60, "1 At Any Time", "", -1),),
            file_size=7, target_file_name="index.html",
        )  # fmt: skip

    def test_a_scheduled_download_runs_at_its_window_and_reports_m_schedule_download(
        self,
    ) -> None:
        answer = self.run_rpc(self.scheduled("sd-1", 30))
        self.assertEqual(answer, rpc.ScheduleDownloadResponse())
        self.assertEqual(
            self.cpe.handle(rpc.GetAllQueuedTransfers()),
            rpc.GetAllQueuedTransfersResponse(
                (rpc.AllQueuedTransfer("sd-1", 1, True, "2 Web Content", 7, "index.html"),)
            ),
        )
        self.clock.advance(29)
        self.assertEqual(self.files.requests, [])
        self.clock.advance(1)
        tc = self.only_transfer_complete()
        self.assertEqual((tc.command_key, tc.fault.code), ("sd-1", 0))
        self.assertEqual(
            self.acs.events(), [("7 TRANSFER COMPLETE", ""), ("M ScheduleDownload", "sd-1")]
        )
        self.assertEqual(self.cpe.handle(rpc.GetAllQueuedTransfers()).transfers, ())  # type: ignore[attr-defined]

    def test_a_transfer_not_started_is_cancelled_and_never_runs(self) -> None:
        self.run_rpc(self.scheduled("sd-2", 30))
        self.assertEqual(self.cpe.handle(rpc.CancelTransfer("sd-2")), rpc.CancelTransferResponse())
        self.clock.advance(60)
        self.assertEqual((self.files.requests, self.acs.transfer_completes), ([], []))
        reply = self.cpe.handle(rpc.CancelTransfer("sd-2"))
        assert isinstance(reply, rpc.Fault)
        self.assertEqual(reply.code, 9003)  # no such transfer any more

    def test_a_transfer_under_way_cannot_be_cancelled(self) -> None:
        self.files.files["/slow"] = b"x"
        self.acs.script = [rpc.Download("dl-1", "2 Web Content", "http://files/slow")]
        self.cpe.inform()
        self.acs.holding = True  # the fetch starts and waits for the file server
        self.clock.advance(0)
        reply = self.cpe.handle(rpc.CancelTransfer("dl-1"))
        assert isinstance(reply, rpc.Fault)
        self.assertEqual(reply.code, 9021)
        self.acs.holding = False
        while self.acs.held:
            self.acs.release()

    def test_the_methods_offered_follow_the_cpes_version(self) -> None:
        old = SimulatedCPE("XFER00002", load_template("tr098"), self.profile, cwmp_version="1.0")
        methods = old.handle(rpc.GetRPCMethods())
        assert isinstance(methods, rpc.GetRPCMethodsResponse)
        self.assertNotIn("ScheduleDownload", methods.methods)
        self.assertNotIn("GetAllQueuedTransfers", methods.methods)
        new = self.cpe.handle(rpc.GetRPCMethods())
        assert isinstance(new, rpc.GetRPCMethodsResponse)
        self.assertIn("CancelTransfer", new.methods)

    def test_a_cwmp_1_1_cpe_lists_uploads_in_the_1_1_numbering(self) -> None:
        cpe = SimulatedCPE("XFER00003", load_template("tr098"), self.profile, cwmp_version="1.1")
        for key, file_type in (("u1", BACKUP), ("u2", "2 Vendor Log File")):
            cpe.handle(rpc.Upload(key, file_type, "http://files/up"))
        cpe.handle(rpc.Download("d1", CONFIG, "http://files/cfg"))
        listed = cpe.handle(rpc.GetAllQueuedTransfers())
        assert isinstance(listed, rpc.GetAllQueuedTransfersResponse)
        self.assertEqual(
            [(t.command_key, t.file_type) for t in listed.transfers],
            [("u1", CONFIG), ("u2", "4 Vendor Log File"), ("d1", CONFIG)],
        )
        # A 1.2 CPE names them as the Upload did.
        self.cpe.handle(rpc.Upload("u3", BACKUP, "http://files/up"))
        listed = self.cpe.handle(rpc.GetAllQueuedTransfers())
        assert isinstance(listed, rpc.GetAllQueuedTransfersResponse)
        self.assertEqual([t.file_type for t in listed.transfers], [BACKUP])
