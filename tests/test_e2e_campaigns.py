"""End to end: campaigns over 200 simulated CPEs on loopback. The runner's time (window,
rate) is a task.Clock the test advances; the CPEs, connection requests, Downloads and
TransferCompletes are real. A tenth of the CPEs corrupt what they download (9018, a fault
the ACS does not retry), so the stop rule trips; a campaign tolerating them completes
across an appliance restart with tasks in flight, each device given its task once and
each CPE sent one Download."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from e2eharness import ApplianceWithFleet, check_cwmp_conformance, loopback_config
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from acs.campaigns import CampaignRunner
from acs.cwmp import rpc
from acs.service import Appliance
from bench.pgcluster import fixed_port
from cpe_sim.transfers import Faults

MONDAY_0159 = datetime(2024, 1, 15, 1, 59, tzinfo=UTC).timestamp()
MAX_TICKS = 200


class CampaignEndToEnd(ApplianceWithFleet):
    COUNT = 200

    async def _setup(self, tmp: Any) -> dict[str, Any]:
        self.files_port = fixed_port()
        await self.start_appliance(tmp, files_port=self.files_port)
        await self.start_fleet(model="tr181", start_spread=4.0)
        for cpe in self.fleet.cpes[::10]:
            cpe.inject = Faults(corrupt_download=True)
        code, stored = await self.api(
            "POST", "/file/?name=portal&file_type=2%20Web%20Content", b"<html/>", role="admin"
        )
        self.assertEqual(code, 201, stored)
        return {"kind": "download", "file": stored["id"], "delay_seconds": 0}

    def _runner(self, appliance: Appliance, clock: Clock) -> CampaignRunner:
        """The appliance's runner, on the test's clock instead of the reactor."""
        appliance.campaigns.stopService()
        return CampaignRunner(appliance.store, clock, tasks=appliance.tasks)

    async def _settle(self, appliance: Appliance, campaign: int) -> None:
        """Wait (bounded) for every task the campaign has given to end."""
        _, rows = appliance.store.campaign_devices_page(campaign, limit=self.COUNT, offset=0)
        open_tasks = [r["task_id"] for r in rows if r["state"] in ("pending", "in_progress")]
        await self.bounded(
            defer.gatherResults([appliance.tasks.wait_finished(i, 30.0) for i in open_tasks]),
            40.0,
        )

    async def test_rate_window_and_the_stop_rule(self) -> None:
        task = await self._setup(self.tempdir())
        clock = Clock()
        clock.advance(MONDAY_0159)
        runner = self._runner(self.appliance, clock)
        code, created = await self.api(
            "POST",
            "/campaign/",
            {
                "name": "portal",
                "filter": {},
                "task": task,
                "rate": 600,
                "max_in_flight": 20,
                "window": [{"start": "02:00", "end": "03:00"}],
                "stop_rule": {"max_failure_ratio": 0.05, "min_sample": 40},
            },
        )
        self.assertEqual(code, 201, created)
        cid = created["id"]
        code, _ = await self.api("POST", f"/campaign/{cid}/start/")
        self.assertEqual(code, 200)
        clock.advance(1)
        runner.tick()
        self.assertEqual(self.appliance.store.campaign_progress(cid)[0]["waiting"], 200)
        clock.advance(59)  # 02:00: the window opens
        for ticks in range(1, MAX_TICKS):
            runner.tick()
            counts = self.appliance.store.campaign_progress(cid)[0]
            given = 200 - counts["waiting"]
            self.assertLessEqual(given, 1 + 10 * (ticks - 1))  # 10 a second after the first
            self.assertLessEqual(counts["pending"] + counts["in_progress"], 20)
            campaign = self.appliance.store.get_campaign(cid)
            assert campaign is not None
            if campaign.state != "running":
                break
            await self._settle(self.appliance, cid)
            clock.advance(1)
        code, shown = await self.api("GET", f"/campaign/{cid}/")
        self.assertEqual(shown["state"], "stopped", shown)
        self.assertIn("max_failure_ratio", shown["reason"])
        self.assertGreater(shown["progress"]["waiting"], 0)
        self.assertEqual(set(shown["failures"]), {"9018"})
        self.assertGreaterEqual(shown["progress"]["done"] + shown["progress"]["failed"], 40)

    async def test_a_campaign_completes_across_a_restart_giving_each_device_one_task(
        self,
    ) -> None:
        tmp = self.tempdir()
        task = await self._setup(tmp)
        cwmp = self.appliance.listening()["cwmp"]
        assert cwmp is not None
        port = cwmp.getHost().port
        clock = Clock()
        runner = self._runner(self.appliance, clock)
        code, created = await self.api(
            "POST",
            "/campaign/",
            {"name": "portal", "filter": {}, "task": task, "rate": 3000, "max_in_flight": 50,
             "stop_rule": {"max_failures": 25}},
        )  # fmt: skip
        self.assertEqual(code, 201, created)
        cid = created["id"]
        code, _ = await self.api("POST", f"/campaign/{cid}/start/")
        self.assertEqual(code, 200)
        appliance = self.appliance
        for ticks in range(MAX_TICKS):
            clock.advance(1)
            runner.tick()
            campaign = appliance.store.get_campaign(cid)
            assert campaign is not None
            if campaign.state != "running":
                break
            if ticks == 2:  # mid-way, tasks in flight: a new process on the same database
                counts, _ = appliance.store.campaign_progress(cid)
                self.assertGreater(counts["waiting"], 0)
                self.assertGreater(appliance.store.campaign_in_flight(cid), 0)
                await appliance.service.stopService()
                appliance = Appliance(
                    loopback_config(
                        tmp,
                        cwmp_listen=f"tcp:{port}:interface=127.0.0.1",
                        files_port=self.files_port,
                    ),
                    reactor,
                )
                check_cwmp_conformance(appliance, self)
                appliance.service.startService()
                self.addCleanup(appliance.service.stopService)
                await self.bounded(appliance.when_listening())
                runner = self._runner(appliance, clock)
            await self._settle(appliance, cid)
        campaign = appliance.store.get_campaign(cid)
        assert campaign is not None
        self.assertEqual(campaign.state, "done")
        counts, failures = appliance.store.campaign_progress(cid)
        self.assertEqual((counts["done"], counts["failed"], failures), (180, 20, {"9018": 20}))
        for cpe in self.fleet.cpes:
            downloads = [m for m in cpe.received if isinstance(m, rpc.Download)]
            self.assertEqual(len(downloads), 1, cpe.serial)
