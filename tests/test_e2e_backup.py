"""End to end: a configuration backup and its restore round-trip a simulated CPE's
configuration (issue 4 acceptance 5).

Through the API on a real Appliance: queue a backup (the CPE serializes its writable
configuration and PUTs it to the signed upload URL on the file server, which stores it);
the configuration then changes on the CPE; a restore makes the CPE download that backup,
apply it and reboot, and the value is back. Harness: ``test_e2e_firmware.TransferEndToEnd``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from test_e2e_firmware import TransferEndToEnd, until

from acs.cwmp import rpc
from acs.store.models import DONE
from cpe_sim import transfers

SSID = "Device.WiFi.SSID.1.SSID"
INTERVAL = "Device.ManagementServer.PeriodicInformInterval"


class BackupEndToEnd(TransferEndToEnd):
    async def test_backup_then_restore_round_trips_the_cpe_configuration(self) -> None:
        device_id = self.device().id
        original = self.cpe.value(SSID)
        expected = transfers.serialize_config(self.cpe.model, self.cpe.serial)

        code, body = await self.api("POST", f"/inventory_device/{device_id}/backups/")
        self.assertEqual(code, 202, body)
        await until(self.cpe, lambda: self.finished("backup", DONE))

        code, body = await self.api("GET", f"/inventory_device/{device_id}/backups/")
        self.assertEqual(code, 200, body)
        [backup] = body["results"]
        # What the file server stored is exactly what the CPE sent.
        self.assertEqual(backup["size"], len(expected))
        self.assertEqual(backup["sha256"], hashlib.sha256(expected).hexdigest())
        [upload] = [m for m in self.cpe.received if isinstance(m, rpc.Upload)]
        self.assertEqual(upload.file_type, "1 Vendor Configuration File")

        # The configuration changes after the backup (a user on the CPE's web UI).
        self.cpe.model.set_raw(SSID, "changed-after-backup")
        self.cpe.model.set_raw(INTERVAL, "777")
        boots = self._boot_informs(device_id)

        code, body = await self.api(
            "POST", f"/inventory_device/{device_id}/backups/{backup['id']}/restore/"
        )
        self.assertEqual(code, 202, body)
        await until(
            self.cpe, lambda: self.finished("restore", DONE) and self.cpe.value(SSID) == original
        )

        self.assertEqual(self.cpe.value(INTERVAL), _value_in(expected, INTERVAL))
        self.assertEqual(transfers.serialize_config(self.cpe.model, self.cpe.serial), expected)
        [download] = [m for m in self.cpe.received if isinstance(m, rpc.Download)]
        self.assertEqual(download.file_type, "3 Vendor Configuration File")
        self.assertEqual(download.file_size, len(expected))
        # Restoring a configuration restarts the CPE, which comes back with 1 BOOT.
        self.assertTrue(self.cpe.online)
        self.assertGreater(self._boot_informs(device_id), boots)

    def _boot_informs(self, device_id: int) -> int:
        return sum(
            1
            for action, detail in self.history(device_id)
            if action == "inform" and {"1 BOOT", "M Download"} <= set(detail.get("events", []))
        )


def _value_in(config: bytes, name: str) -> Any:
    return json.loads(config)["parameters"][name]
