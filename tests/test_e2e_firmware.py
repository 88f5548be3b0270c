"""End to end: a firmware upgrade from image upload to the CPE informing its new version
(issue 4 acceptance 1 and 2).

A real Appliance listens on loopback (CWMP, API and the file server), one cpe_sim CPE
bootstraps against it, the test uploads an image through the API and PATCHes the device;
the CPE fetches the image over real HTTP from the signed URL, verifies it, reboots and
informs. A corrupt download (fault injection) must fail the task with 9018 and leave the
device as it was. Waiting is by CPE sessions, never by sleeping; every wait is bounded.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import treq
from e2eharness import bounded, check_cwmp_conformance
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from acs.config import ApiConfig, Config, CwmpConfig, FilesConfig, StorageConfig, StunConfig
from acs.cwmp import rpc
from acs.service import Appliance
from acs.store.models import DONE, FAILED, Device, Task
from bench.pgcluster import fixed_port
from cpe_sim import firmware, transfers
from cpe_sim.fleet import Fleet, SimulatedCPE
from cpe_sim.transfers import Faults

reactor: Any = _reactor
LOOPBACK = "tcp:0:interface=127.0.0.1"
TOKEN_NAME = "e2e-firmware"
VERSION = "Device.DeviceInfo.SoftwareVersion"
OLD, NEW = "1.0.0", "2.3.0"


async def until(cpe: SimulatedCPE, done: Callable[[], bool], *, sessions: int = 8) -> None:
    """Wait, one completed CPE session at a time, until `done()` holds (bounded)."""
    for _ in range(sessions):
        if done():
            return
        await bounded(cpe.next_session())
    if not done():
        raise AssertionError(f"condition still false after {sessions} sessions of {cpe.serial}")


class TransferEndToEnd(unittest.TestCase):
    """A running Appliance (CWMP, API, file server on loopback) and one provisioned CPE.

    No tests of its own: ``test_e2e_backup`` builds on it too.
    """

    async def _start(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="acs-e2e-fw-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        files_port = fixed_port()
        config = Config(
            storage=StorageConfig(database=str(tmp / "acs.db"), files=str(tmp / "files")),
            cwmp=CwmpConfig(listen=LOOPBACK, connection_request_timeout=1),
            api=ApiConfig(listen=LOOPBACK, update_status_timeout=2),
            files=FilesConfig(
                listen=f"tcp:{files_port}:interface=127.0.0.1",
                public_url=f"http://127.0.0.1:{files_port}",
            ),
            stun=StunConfig(listen=""),
        )
        self.appliance = Appliance(config, reactor)
        check_cwmp_conformance(self.appliance, self)
        self.appliance.service.startService()
        self.addCleanup(self.appliance.service.stopService)
        ports = await bounded(self.appliance.when_listening())
        self.api_url = f"http://127.0.0.1:{ports['api'].getHost().port}/api/v1"
        self.fleet = Fleet(
            reactor,
            acs_url=f"http://127.0.0.1:{ports['cwmp'].getHost().port}/",
            count=1,
            model="tr181",
            reboot_delay=0.05,
            periodic=False,
        )
        self.cpe = self.fleet.cpes[0]
        first = self.cpe.next_session()
        await self.fleet.start()
        self.addCleanup(self.fleet.stop)
        await bounded(first)
        await until(self.cpe, lambda: self.device().provisioned)
        # Admin: uploading firmware images is an admin operation.
        _, self.token = self.appliance.store.create_token(
            TOKEN_NAME, "admin", [], now=float(reactor.seconds())
        )
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self._start())

    def device(self) -> Device:
        device = self.appliance.store.find_device_by_serial(self.cpe.serial)
        assert device is not None, f"{self.cpe.serial} not registered"
        return device

    def tasks(self, kind: str) -> list[Task]:
        tasks = self.appliance.store.tasks_for_device(self.device().id)
        return [t for t in tasks if t.kind == kind]

    def finished(self, kind: str, state: str) -> bool:
        return any(t.state == state for t in self.tasks(kind))

    async def api(
        self, method: str, path: str, body: Any = None, *, data: bytes | None = None
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {
            "headers": {"Authorization": f"Bearer {self.token}"},
            "pool": self.pool,
        }
        if body is not None:
            kwargs["json"] = body
        if data is not None:
            kwargs["data"] = data
            kwargs["headers"]["Content-Type"] = "application/octet-stream"
        response = await bounded(treq.request(method, self.api_url + path, **kwargs))
        content = await bounded(treq.json_content(response))
        return response.code, content

    def history(self, device_id: int) -> list[tuple[str, dict[str, Any]]]:
        entries = self.appliance.store.history(device_id, limit=1000)
        return [(h.action, h.detail) for h in reversed(entries)]


class FirmwareEndToEnd(TransferEndToEnd):
    async def upload_image(self, version: str, size: int) -> tuple[int, bytes]:
        image = firmware.make_image(version, size)
        code, body = await self.api(
            "POST", f"/firmware_image/?name=acme-{version}&version={version}", data=image
        )
        self.assertEqual(code, 201, body)
        self.assertEqual(
            (body["version"], body["size"], body["sha256"]),
            (version, len(image), hashlib.sha256(image).hexdigest()),
        )
        return int(body["id"]), image

    async def request_upgrade(self, image_id: int) -> int:
        device_id = self.device().id
        code, body = await self.api(
            "PATCH",
            f"/inventory_device/{device_id}/",
            {"firmware_image": image_id, "firmware_image_is_pending": True},
        )
        self.assertEqual(code, 200, body)
        return device_id

    async def test_uploaded_image_is_downloaded_installed_and_reported(self) -> None:
        image_id, image = await self.upload_image(NEW, 200_000)
        device_id = await self.request_upgrade(image_id)

        await until(
            self.cpe,
            lambda: (
                self.finished("firmware_update", DONE) and self.device().software_version == NEW
            ),
        )

        # The CPE got a signed file-server URL, fetched the whole image and rebooted into it.
        [download] = [m for m in self.cpe.received if isinstance(m, rpc.Download)]
        self.assertEqual(download.file_type, "1 Firmware Upgrade Image")
        self.assertIn(f"/firmware/{image_id}/", download.url)
        self.assertIn("sig=", download.url)
        self.assertEqual(download.file_size, len(image))
        self.assertEqual(self.cpe.value(VERSION), NEW)
        self.assertTrue(self.cpe.online)

        code, body = await self.api("GET", f"/inventory_device/{device_id}/?pending=true")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["software_version"], NEW)
        self.assertFalse(body["firmware_image_is_pending"])
        self.assertEqual(body["firmware_image"], image_id)
        self.assertIsNone(body["pending_settings"])

        code, body = await self.api("GET", f"/inventory_device/{device_id}/tasks/")
        self.assertEqual(code, 200, body)
        [task] = [t for t in body["results"] if t["kind"] == "firmware_update"]
        self.assertEqual((task["state"], task["fault_code"]), ("done", None))

        # History, in order: queued, Download sent, the CPE back with TRANSFER COMPLETE,
        # M Download and BOOT reporting the new version, task done.
        steps = self.history(device_id)
        actions = [a for a, _ in steps]
        queued = actions.index("task_queued")
        informs = [
            i
            for i, (a, d) in enumerate(steps)
            if a == "inform"
            and {"7 TRANSFER COMPLETE", "M Download", "1 BOOT"} <= set(d.get("events", []))
        ]
        done = [
            i
            for i, (a, d) in enumerate(steps)
            if a == "task_done" and d["kind"] == "firmware_update"
        ]
        self.assertTrue(informs and done, steps)
        self.assertLess(queued, informs[0])
        self.assertLessEqual(informs[0], done[0])

    async def test_corrupt_download_fails_with_9018_and_leaves_the_device_alone(self) -> None:
        image_id, _ = await self.upload_image(NEW, 50_000)
        self.cpe.inject = Faults(corrupt_download=True)
        config_before = transfers.serialize_config(self.cpe.model, self.cpe.serial)
        params_before = {
            p.path: p.value for p in self.appliance.store.get_parameters(self.device().id)
        }
        device_id = await self.request_upgrade(image_id)

        await until(self.cpe, lambda: self.finished("firmware_update", FAILED))

        [task] = self.tasks("firmware_update")
        self.assertIn(task.fault_code, (9010, 9018))
        code, body = await self.api("GET", f"/inventory_device/{device_id}/tasks/")
        self.assertEqual(code, 200, body)
        [shown] = [t for t in body["results"] if t["kind"] == "firmware_update"]
        self.assertEqual((shown["state"], shown["fault_code"]), ("failed", 9018))

        code, body = await self.api("GET", f"/inventory_device/{device_id}/?pending=true")
        self.assertEqual(code, 200, body)
        self.assertIn("firmware_update:failed", body["pending_settings"] or "", body)
        self.assertEqual(body["software_version"], OLD)

        # Nothing else changed: same version, no reboot, same configuration on the CPE
        # and in the ACS's cached parameters, and the failure is in the history.
        self.assertEqual(self.cpe.value(VERSION), OLD)
        self.assertEqual(self.cpe.reboots, 0)
        self.assertTrue(self.cpe.online)
        self.assertEqual(transfers.serialize_config(self.cpe.model, self.cpe.serial), config_before)
        params_after = {
            p.path: p.value for p in self.appliance.store.get_parameters(self.device().id)
        }
        volatile = ("UpTime", "CurrentLocalTime")
        self.assertEqual(
            {k: v for k, v in params_after.items() if not k.endswith(volatile)},
            {k: v for k, v in params_before.items() if not k.endswith(volatile)},
        )
        failed = [
            d
            for a, d in self.history(device_id)
            if a == "task_failed" and d.get("task_id") == task.id
        ]
        self.assertTrue(failed, self.history(device_id))

    async def test_interrupted_download_resumes_with_range_from_the_file_server(self) -> None:
        image_id, _ = await self.upload_image(NEW, 300_000)
        self.cpe.inject = Faults(interrupt_after=100_000)
        await self.request_upgrade(image_id)

        await until(
            self.cpe,
            lambda: (
                self.finished("firmware_update", DONE) and self.device().software_version == NEW
            ),
        )
        # The resumed tail came from the real file server's Range support and verified.
        self.assertEqual(self.cpe.value(VERSION), NEW)
        self.assertEqual(self.cpe.download_resumes, 1)
        [task] = self.tasks("firmware_update")
        self.assertIsNone(task.fault_code)
