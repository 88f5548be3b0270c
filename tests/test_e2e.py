"""End to end, in process: a real ACS on loopback and a fleet of simulated CPEs over real HTTP.

Synchronisation is by events (a CPE's `next_session()` Deferred), never by sleeping; every wait
is bounded so a broken build fails instead of hanging.
"""

from __future__ import annotations

from e2eharness import ApplianceWithFleet, check_cwmp_conformance, loopback_config, until
from twisted.internet import defer, reactor, task

from acs.liveness import LivenessSweep
from acs.service import Appliance
from acs.store.models import DONE, DOWN, UP


class FleetLifecycleTests(ApplianceWithFleet):
    def setUp(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self.start(self.tempdir()))

    def test_fleet_of_both_roots_bootstraps_and_is_provisioned(self) -> None:
        roots = set()
        for cpe in self.fleet.cpes:
            device = self.device(cpe)
            roots.add(device.data_model_root)
            self.assertEqual(device.status, UP)
            self.assertTrue(device.provisioned, cpe.serial)
            self.assertEqual(
                device.unique_identifier, f"00D09E-{device.product_class}-{cpe.serial}"
            )
            # The ACS provisioned the CPE's periodic inform and connection-request credentials.
            self.assertEqual(cpe.value(f"{cpe.root}ManagementServer.PeriodicInformEnable"), "true")
            self.assertEqual(
                cpe.value(f"{cpe.root}ManagementServer.PeriodicInformInterval"),
                str(device.update_frequency),
            )
            self.assertEqual(
                cpe.value(f"{cpe.root}ManagementServer.ConnectionRequestUsername"),
                device.connection_request_username,
            )
            self.assertTrue(device.connection_request_password)
            actions = [h.action for h in self.appliance.store.history(device.id)]
            self.assertIn("inform", actions)
        self.assertEqual(roots, {"Device.", "InternetGatewayDevice."})

    async def test_reboot_completes_when_cpe_informs_m_reboot(self) -> None:
        cpe = self.fleet.cpes[0]
        device = self.device(cpe)
        t = self.appliance.tasks.queue(device.id, "reboot", actor="test")
        await until(cpe, lambda: self.task_state(t.id) == DONE)
        self.assertEqual(cpe.reboots, 1)
        informs = [
            h.detail["events"]
            for h in self.appliance.store.history(device.id)
            if h.action == "inform"
        ]
        # Woken by a connection request, then back from the reboot with M Reboot.
        self.assertTrue(any("6 CONNECTION REQUEST" in events for events in informs))
        self.assertTrue(any("M Reboot" in events and "1 BOOT" in events for events in informs))

    async def test_factory_reset_completes_on_bootstrap_and_reprovisions(self) -> None:
        cpe = self.fleet.cpes[1]
        device = self.device(cpe)
        t = self.appliance.tasks.queue(device.id, "factory_reset", actor="test")
        await until(cpe, lambda: self.task_state(t.id) == DONE)
        self.assertEqual(cpe.factory_resets, 1)
        # The CPE came back with template credentials; the bootstrap session re-provisioned it.
        await until(cpe, lambda: self.device(cpe).provisioned)
        self.assertEqual(
            cpe.value(f"{cpe.root}ManagementServer.ConnectionRequestUsername"),
            self.device(cpe).connection_request_username,
        )

    async def test_refresh_fills_the_parameter_cache_from_the_cpe(self) -> None:
        cpe = self.fleet.cpes[2]
        device = self.device(cpe)
        t = self.appliance.tasks.queue(device.id, "refresh", actor="test")
        await until(cpe, lambda: self.task_state(t.id) == DONE)
        cached = {p.path: p for p in self.appliance.store.get_parameters(device.id)}
        names = cpe.model.parameter_names()
        self.assertEqual(set(names) - set(cached), set())
        serial_path = f"{cpe.root}DeviceInfo.SerialNumber"
        self.assertEqual(cached[serial_path].value, cpe.serial)
        self.assertFalse(cached[serial_path].writable)

    async def test_set_parameters_reaches_the_cpe_and_the_cache(self) -> None:
        cpe = self.fleet.cpes[3]
        device = self.device(cpe)
        path = f"{cpe.root}ManagementServer.PeriodicInformInterval"
        t = self.appliance.tasks.queue(
            device.id,
            "set_parameter_values",
            {"parameters": [{"name": path, "value": "600", "type": "xsd:unsignedInt"}]},
            actor="test",
        )
        await until(cpe, lambda: self.task_state(t.id) == DONE)
        self.assertEqual(cpe.value(path), "600")
        cached = self.appliance.store.get_parameter(device.id, path)
        assert cached is not None
        self.assertEqual(cached.value, "600")

    async def test_set_parameters_on_a_read_only_path_fails_with_the_cpe_fault(self) -> None:
        cpe = self.fleet.cpes[4]
        device = self.device(cpe)
        path = f"{cpe.root}DeviceInfo.SerialNumber"
        t = self.appliance.tasks.queue(
            device.id,
            "set_parameter_values",
            {"parameters": [{"name": path, "value": "X"}]},
            actor="test",
        )
        await until(cpe, lambda: self.task_state(t.id) not in ("pending", "in_progress"))
        failed = self.appliance.store.get_task(t.id)
        assert failed is not None
        self.assertEqual(failed.state, "failed")
        self.assertEqual(failed.fault_code, 9003)
        self.assertEqual(cpe.value(path), cpe.serial)

    async def test_add_then_delete_object_through_the_queue(self) -> None:
        cpe = self.fleet.cpes[5]
        device = self.device(cpe)
        table = (
            "Device.NAT.PortMapping."
            if cpe.root == "Device."
            else f"{cpe.root}WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.PortMapping."
        )
        added = self.appliance.tasks.queue(
            device.id, "add_object", {"object_name": table}, actor="test"
        )
        await until(cpe, lambda: self.task_state(added.id) == DONE)
        done = self.appliance.store.get_task(added.id)
        assert done is not None and done.result is not None
        instance = f"{table}{done.result['instance_number']}."
        # TR-181 and TR-098 name the flag differently.
        enable = f"{instance}Enable" if cpe.root == "Device." else f"{instance}PortMappingEnabled"
        self.assertIn(enable, cpe.model.parameter_names())

        deleted = self.appliance.tasks.queue(
            device.id, "delete_object", {"object_name": instance}, actor="test"
        )
        await until(cpe, lambda: self.task_state(deleted.id) == DONE)
        self.assertNotIn(enable, cpe.model.parameter_names())
        self.assertEqual(self.appliance.store.get_parameters(device.id, instance), [])

    async def test_stopped_fleet_turns_down_after_the_liveness_window(self) -> None:
        await self.fleet.stop()
        store = self.appliance.store
        clock = task.Clock()
        clock.advance(reactor.seconds())
        sweep = LivenessSweep(store, clock, interval=5.0)  # its sweeps, on the test's clock
        ids = [self.device(cpe).id for cpe in self.fleet.cpes]
        window = 2 * self.device(self.fleet.cpes[0]).update_frequency + 60
        clock.advance(window - 10)
        self.assertEqual(sweep.sweep(), [])
        self.assertTrue(all(store.get_device(i).status == UP for i in ids))  # type: ignore[union-attr]
        clock.advance(20)
        self.assertEqual(sorted(sweep.sweep()), sorted(ids))
        self.assertTrue(all(store.get_device(i).status == DOWN for i in ids))  # type: ignore[union-attr]


class BootStormTests(ApplianceWithFleet):
    COUNT = 24

    async def test_a_boot_storm_beyond_the_session_cap_is_paced_to_completion(self) -> None:
        await self.start_appliance(self.tempdir(), max_sessions=4)
        # All at once: most are turned away with 503 + Retry-After and come back then.
        await self.start_fleet()
        turned_away = sum(cpe.sessions_busy for cpe in self.fleet.cpes)
        self.assertGreater(turned_away, 0)
        self.assertEqual(self.appliance.cwmp.busy_rejections, turned_away)
        for cpe in self.fleet.cpes:
            self.assertTrue(self.device(cpe).provisioned, cpe.serial)


class RestartTests(ApplianceWithFleet):
    COUNT = 2

    async def test_tasks_queued_before_a_restart_run_after_it(self) -> None:
        tmp = self.tempdir()
        await self.start(tmp)
        cpe = self.fleet.cpes[0]
        device = self.device(cpe)
        port = self.appliance.listening()["cwmp"]
        assert port is not None
        port_number = port.getHost().port
        # Queue without waking, then stop the appliance before the CPE ever hears of it.
        t = self.appliance.tasks.queue(
            device.id,
            "set_parameter_values",
            {
                "parameters": [
                    {
                        "name": f"{cpe.root}ManagementServer.PeriodicInformInterval",
                        "value": "900",
                        "type": "xsd:unsignedInt",
                    }
                ]
            },
            actor="test",
            wake=False,
        )
        await self.appliance.service.stopService()
        # A new appliance process on the same database and port.
        second = Appliance(
            loopback_config(tmp, cwmp_listen=f"tcp:{port_number}:interface=127.0.0.1"),
            reactor,
        )
        check_cwmp_conformance(second, self)
        second.service.startService()
        self.addCleanup(second.service.stopService)
        await self.bounded(second.when_listening())
        await self.bounded(cpe.inform())
        finished = second.store.get_task(t.id)
        assert finished is not None
        self.assertEqual(finished.state, DONE)
        self.assertEqual(cpe.value(f"{cpe.root}ManagementServer.PeriodicInformInterval"), "900")
