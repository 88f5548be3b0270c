"""End to end: RPCs queued through POST /inventory_device/<id>/tasks/?timeout= reach real
cpe_sim CPEs (one TR-181, one TR-098) over loopback HTTP, and the answer carries the result.

Every message the appliance emits is checked against the CWMP schema of the session's
version (tests/e2eharness.py); waiting is the API's own timeout, bounded by the harness.
"""

from __future__ import annotations

import json
from typing import Any

from e2eharness import ApplianceWithFleet, until
from schemacheck import schema_errors
from twisted.internet import defer, reactor
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from acs.cwmp import rpc
from api.device_children import task_component
from api.openapi import openapi_document
from cpe_sim.cpe import SimulatedCPE

PORT_MAPPING = {
    "Device.": "Device.NAT.PortMapping.",
    "InternetGatewayDevice.": (
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.PortMapping."
    ),
}

# No such file is stored (and CWMP 1.0 knows only FileTypes 1-3).
CONFIG = "3 Vendor Configuration File"

# A port mapping's description, named relative to the instance.
DESCRIPTION = {"Device.": "Description", "InternetGatewayDevice.": "PortMappingDescription"}


class _Units(Resource):
    """Deployment units by path; 404 for anything else."""

    isLeaf = True

    def __init__(self, units: dict[str, bytes]) -> None:
        super().__init__()
        self.units = units

    def render_GET(self, request: Request) -> bytes:
        body = self.units.get(request.path.decode())
        if body is None:
            request.setResponseCode(404)
        return body or b""


class ApiTasks(ApplianceWithFleet):
    """Tasks through the API, waited for with ?timeout (no tests of its own)."""

    async def run_task(self, cpe: SimulatedCPE, kind: str, **arguments: Any) -> dict[str, Any]:
        """POST the task with ?timeout and return the finished task (200)."""
        device = self.device(cpe)
        code, body = await self.api(
            "POST", f"/inventory_device/{device.id}/tasks/?timeout=20", {"kind": kind, **arguments}
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["state"], "done", body)
        schema = self.document()["components"]["schemas"][task_component(kind, "Result")]
        self.assertEqual(schema_errors(self.document(), schema, body["result"]), [])
        return body  # type: ignore[no-any-return]

    def document(self) -> dict[str, Any]:
        return openapi_document("http://127.0.0.1")

    async def finished(self, cpe: SimulatedCPE, kind: str, **arguments: Any) -> dict[str, Any]:
        """POST the task with ?timeout and return it finished (done or failed)."""
        device = self.device(cpe)
        code, body = await self.api(
            "POST", f"/inventory_device/{device.id}/tasks/?timeout=20", {"kind": kind, **arguments}
        )
        self.assertEqual(code, 200, body)
        return body  # type: ignore[no-any-return]

    def serve_units(self, **packages: dict[str, str]) -> str:
        """A loopback web server holding deployment units by name; its base URL."""
        port: Any = reactor.listenTCP(  # type: ignore[attr-defined]
            0, Site(_Units({f"/{k}": json.dumps(v).encode() for k, v in packages.items()})),
            interface="127.0.0.1",
        )  # fmt: skip
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/"

    async def software_modules(self) -> None:
        """Install, update and uninstall a unit on every CPE of CWMP 1.2 and later (an older
        one refuses the kind: its version has no ChangeDUState)."""
        base = self.serve_units(
            app=dict(name="app", vendor="Acme", version="1.0"),
            app2=dict(name="app", vendor="Acme", version="2.0"),
        )
        for cpe in self.fleet.cpes:
            device = self.device(cpe)
            install = [{"type": "install", "url": base + "app"}]
            if cpe.cwmp_version < "1.2":  # the TR-098 CPE speaks 1.0: refused, never sent
                task = await self.finished(cpe, "change_du_state", operations=install)
                self.assertEqual(task["state"], "failed")
                self.assertIn("which has no ChangeDUState", task["fault_string"])
                continue
            task = await self.run_task(cpe, "change_du_state", operations=install)
            [done] = task["result"]["operations"]
            self.assertEqual(
                (done["type"], done["state"], done["version"]), ("install", "Installed", "1.0")
            )
            unit, uuid = done["deployment_unit"], done["uuid"]
            self.assertEqual(cpe.model.get_raw(f"{unit}.UUID"), uuid)
            code, tree = await self.api(
                "GET", f"/inventory_device/{device.id}/parameters/?path={unit}."
            )
            self.assertEqual(code, 200, tree)
            shown = {p["path"]: p["value"] for p in tree["results"]}
            self.assertEqual(shown[f"{unit}.Version"], "1.0")

            update = [{"type": "update", "uuid": uuid, "url": base + "app2"}]
            task = await self.run_task(cpe, "change_du_state", operations=update)
            self.assertEqual(task["result"]["operations"][0]["version"], "2.0")
            self.assertEqual(cpe.model.get_raw(f"{unit}.Version"), "2.0")

            uninstall = [{"type": "uninstall", "uuid": uuid}]
            task = await self.run_task(cpe, "change_du_state", operations=uninstall)
            self.assertEqual(task["result"]["operations"][0]["state"], "Uninstalled")
            self.assertFalse(cpe.model.has_object(f"{unit}."))
            self.assertEqual(self.appliance.store.get_parameters(device.id, f"{unit}."), [])

            failed = await self.finished(cpe, "change_du_state", operations=uninstall)
            self.assertEqual((failed["state"], failed["fault_code"]), ("failed", 9028), failed)
            self.assertEqual(failed["result"]["operations"][0]["state"], "Failed")


class TasksThroughTheApi(ApiTasks):
    COUNT = 2  # the "mixed" fleet: one TR-181 and one TR-098 CPE

    async def set_up(self) -> None:
        await self.start(self.tempdir(), connection_request_timeout=1)
        for cpe in self.fleet.cpes:
            await until(cpe, lambda cpe=cpe: self.device(cpe).provisioned)  # type: ignore[misc]
        assert {cpe.root for cpe in self.fleet.cpes} == set(PORT_MAPPING)

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self.set_up())

    async def test_reads_come_back_as_results_and_reach_the_stored_tree(self) -> None:
        for cpe in self.fleet.cpes:
            version = f"{cpe.root}DeviceInfo.SoftwareVersion"
            task = await self.run_task(cpe, "get_parameter_values", parameter_names=[version])
            [reported] = task["result"]["parameters"]
            self.assertEqual(reported["name"], version)
            self.assertEqual(reported["value"], cpe.model.get_raw(version))
            cached = self.appliance.store.get_parameter(self.device(cpe).id, version)
            self.assertEqual(cached.value if cached else None, reported["value"])

            names = await self.run_task(
                cpe, "get_parameter_names", parameter_path=f"{cpe.root}DeviceInfo.", next_level=True
            )
            listed = {p["name"] for p in names["result"]["parameters"]}
            self.assertIn(version, listed)

            methods = await self.run_task(cpe, "get_rpc_methods")
            self.assertIn("GetParameterValues", methods["result"]["methods"])

            queued = await self.run_task(cpe, "get_queued_transfers")
            self.assertEqual(queued["result"], {"transfers": []})

    async def test_writes_set_values_and_add_and_delete_objects(self) -> None:
        for cpe in self.fleet.cpes:
            code = f"{cpe.root}DeviceInfo.ProvisioningCode"
            await self.run_task(
                cpe, "set_parameter_values", parameters=[{"name": code, "value": "API-1"}]
            )
            self.assertEqual(cpe.model.get_raw(code), "API-1")

            description = DESCRIPTION[cpe.root]
            added = await self.run_task(
                cpe,
                "add_object",
                object_name=PORT_MAPPING[cpe.root],
                parameters=[{"name": description, "value": "by the API"}],
            )
            instance = added["result"]["instance_number"]
            path = f"{PORT_MAPPING[cpe.root]}{instance}."
            self.assertTrue(cpe.model.has_object(path))
            self.assertEqual(added["result"]["set_status"], 0)
            self.assertEqual(cpe.model.get_raw(path + description), "by the API")
            await self.run_task(cpe, "delete_object", object_name=path)
            self.assertFalse(cpe.model.has_object(path))

    async def test_without_a_connection_request_the_task_waits_for_the_next_session(
        self,
    ) -> None:
        cpe = self.fleet.cpes[0]
        device = self.device(cpe)
        code, body = await self.api(
            "POST",
            f"/inventory_device/{device.id}/tasks/?connection_request=false&timeout=1",
            {"kind": "get_rpc_methods"},
        )
        self.assertEqual((code, body["state"]), (202, "pending"))
        await self.bounded(cpe.inform())  # its next session, periodic in real life
        code, body = await self.api("GET", f"/inventory_device/{device.id}/tasks/{body['id']}/")
        self.assertEqual((code, body["state"]), (200, "done"))

    async def test_an_active_notification_brings_a_change_into_the_stored_tree(self) -> None:
        relative = "DeviceInfo.Description"  # not a forced parameter
        for cpe in self.fleet.cpes:
            await self.run_task(
                cpe,
                "set_parameter_attributes",
                parameters=[{"name": cpe.root + relative, "notification": 2}],
            )
        sessions = [cpe.next_session() for cpe in self.fleet.cpes]
        self.fleet.schedule_value_change(relative, "CHANGED", 0)
        await self.bounded(defer.gatherResults(sessions))  # their own 4 VALUE CHANGE Informs
        for cpe in self.fleet.cpes:
            device, path = self.device(cpe), cpe.root + relative
            code, body = await self.api(
                "GET", f"/inventory_device/{device.id}/parameters/?path={path}"
            )
            self.assertEqual(code, 200)
            self.assertEqual(
                [(p["path"], p["value"]) for p in body["results"]], [(path, "CHANGED")]
            )

    async def test_stored_files_go_down_and_cpe_files_come_up(self) -> None:
        portal = b"<html>portal</html>\n" * 40
        code, stored = await self.api(
            "POST", "/file/?name=portal.html&file_type=2%20Web%20Content", portal, role="admin"
        )
        self.assertEqual(code, 201, stored)
        for cpe in self.fleet.cpes:
            task = await self.run_task(cpe, "download", file=stored["id"], delay_seconds=0)
            self.assertEqual(
                (task["result"]["file"], task["result"]["file_type"]),
                (stored["id"], "2 Web Content"),
            )
            task = await self.run_task(cpe, "upload", file_type="2 Vendor Log File")
            upload = task["result"]["file"]
            code, shown = await self.api("GET", f"/file/{upload}/")
            self.assertEqual(code, 200, shown)
            self.assertEqual(
                (shown["device"], shown["task"], shown["file_type"]),
                (self.device(cpe).id, task["id"], "2 Vendor Log File"),
            )
            code, content = await self.api("GET", f"/file/{upload}/content/")
            self.assertEqual(code, 200)
            self.assertIn(cpe.serial.encode(), content)
            self.assertEqual(len(content), task["result"]["size"])

    async def test_the_transfer_queue_is_listed_scheduled_and_cancelled_from_cwmp_1_2(
        self,
    ) -> None:
        code, stored = await self.api(
            "POST", "/file/?name=tones&file_type=4%20Tone%20File", b"RIFF-tones", role="admin"
        )
        self.assertEqual(code, 201, stored)
        later = [{"window_start": 3600, "window_end": 7200}]
        for cpe in self.fleet.cpes:
            device = self.device(cpe)
            if cpe.cwmp_version < "1.2":  # the TR-098 CPE speaks 1.0: refused, never sent
                task = await self.finished(cpe, "get_all_queued_transfers")
                self.assertEqual(task["state"], "failed")
                self.assertIn("which has no GetAllQueuedTransfers", task["fault_string"])
                continue
            code, scheduled = await self.api(
                "POST",
                f"/inventory_device/{device.id}/tasks/",
                {"kind": "schedule_download", "file": stored["id"], "time_windows": later},
            )
            self.assertEqual(code, 202, scheduled)
            # Queued behind it: it runs once the ScheduleDownload was accepted.
            queued = await self.run_task(cpe, "get_all_queued_transfers")
            self.assertEqual(self.task_state(scheduled["id"]), "in_progress")
            self.assertEqual(
                queued["result"]["transfers"],
                [
                    {
                        "command_key": f"acs-task-{scheduled['id']}",
                        "state": 1,
                        "is_download": True,
                        "file_type": "4 Tone File",
                        "file_size": len(b"RIFF-tones"),
                        "target_file_name": "tones",
                    }
                ],
            )
            cancel = await self.run_task(cpe, "cancel_transfer", task=scheduled["id"])
            self.assertEqual(cancel["result"], {"task": scheduled["id"], "sent": True})
            code, body = await self.api(
                "GET", f"/inventory_device/{device.id}/tasks/{scheduled['id']}/"
            )
            self.assertEqual(body["state"], "cancelled")
            self.assertEqual(
                (await self.run_task(cpe, "get_all_queued_transfers"))["result"], {"transfers": []}
            )

    async def test_software_modules_are_installed_updated_and_uninstalled_from_cwmp_1_2(
        self,
    ) -> None:
        await self.software_modules()

    async def test_a_cpe_requesting_a_download_gets_the_stored_file(self) -> None:
        code, stored = await self.api(
            "POST", "/file/?name=portal&file_type=2%20Web%20Content", b"<html/>", role="admin"
        )
        self.assertEqual(code, 201, stored)
        for cpe in self.fleet.cpes:
            device = self.device(cpe)
            await self.bounded(cpe.send_request(rpc.RequestDownload("2 Web Content")))
            [task] = [
                t for t in self.appliance.store.tasks_for_device(device.id) if t.kind == "download"
            ]
            self.assertEqual((task.args, task.actor), ({"file": stored["id"]}, "cpe"))
            await until(cpe, lambda task=task: self.task_state(task.id) == "done")  # type: ignore[misc]
            await self.bounded(cpe.send_request(rpc.RequestDownload(CONFIG)))
            [refused, *_] = [
                h for h in self.appliance.store.history(device.id) if h.action == "request_download"
            ]
            self.assertEqual(
                (refused.detail["file_type"], refused.detail["fault_code"]), (CONFIG, 8001)
            )

    async def test_diagnostics_run_on_the_cpe_and_their_results_come_back(self) -> None:
        for cpe in self.fleet.cpes:
            ping = await self.run_task(
                cpe, "diagnostics", test="ip_ping", host="127.0.0.1", count=3, timeout=1000
            )
            self.assertEqual(ping["result"]["state"], "Complete")
            self.assertEqual(ping["result"]["results"]["success_count"], "3")
            self.assertEqual(ping["result"]["results"]["failure_count"], "0")
            self.assertIn("average_response_time", ping["result"]["results"])
            trace = await self.run_task(
                cpe, "diagnostics", test="trace_route", host="target.example", max_hop_count=10
            )
            hops = trace["result"]["route_hops"]
            self.assertEqual(len(hops), 3)
            self.assertEqual(hops[-1]["host"], "target.example")
            self.assertEqual(set(hops[0]), {"host", "host_address", "error_code", "rt_times"})
            down = await self.run_task(
                cpe, "diagnostics", test="download", url="http://127.0.0.1/speed"
            )
            self.assertIn("total_bytes_received", down["result"]["results"])
            up = await self.run_task(
                cpe, "diagnostics", test="upload", url="http://127.0.0.1/up",
                test_file_length=5000,
            )  # fmt: skip
            self.assertEqual(up["result"]["results"]["total_bytes_sent"], "5000")
            # The results are in the stored tree too.
            device = self.device(cpe)
            obj = "IP.Diagnostics.IPPing." if cpe.root == "Device." else "IPPingDiagnostics."
            cached = self.appliance.store.get_parameter(device.id, f"{cpe.root}{obj}SuccessCount")
            self.assertEqual(cached.value if cached else None, "3")
            code, failed = await self.api(
                "POST",
                f"/inventory_device/{device.id}/tasks/?timeout=20",
                {"kind": "diagnostics", "test": "ip_ping", "host": "nowhere.invalid"},
            )
            self.assertEqual((code, failed["state"]), (200, "failed"), failed)
            self.assertIn("Error_CannotResolveHostName", failed["fault_string"])

    async def test_refresh_attributes_schedule_inform_and_reboot_through_the_api(self) -> None:
        for cpe in self.fleet.cpes:
            path = f"{cpe.root}DeviceInfo."
            refreshed = await self.run_task(cpe, "refresh", parameter_path=path)
            self.assertGreater(refreshed["result"]["parameters"], 5)
            version = f"{path}SoftwareVersion"
            attributes = await self.run_task(
                cpe, "get_parameter_attributes", parameter_names=[version]
            )
            [attribute] = attributes["result"]["attributes"]
            self.assertEqual(attribute["name"], version)
            inform = await self.run_task(cpe, "schedule_inform", delay_seconds=1)
            self.assertIn("M ScheduleInform", inform["result"]["events"])
            reboots = cpe.reboots
            rebooted = await self.run_task(cpe, "reboot")
            self.assertIn("M Reboot", rebooted["result"]["events"])
            self.assertEqual(cpe.reboots, reboots + 1)
            self.assertEqual(self.task_state(rebooted["id"]), "done")

    async def test_a_factory_reset_through_the_api_ends_at_the_bootstrap(self) -> None:
        for cpe in self.fleet.cpes:
            reset = await self.run_task(cpe, "factory_reset")
            self.assertIn("0 BOOTSTRAP", reset["result"]["events"])
            self.assertEqual(cpe.factory_resets, 1)
            await until(cpe, lambda cpe=cpe: self.device(cpe).provisioned)  # type: ignore[misc]


class SoftwareModulesOnTr098(ApiTasks):
    """The mixed fleet's TR-098 CPE speaks CWMP 1.0; one of 1.2 has software modules too."""

    COUNT = 1

    async def set_up(self) -> None:
        await self.start_appliance(self.tempdir(), connection_request_timeout=1)
        await self.start_fleet(model="tr098", cwmp_version="1.2")
        (cpe,) = self.fleet.cpes
        await until(cpe, lambda: self.device(cpe).provisioned)

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self.set_up())

    async def test_software_modules_under_internet_gateway_device(self) -> None:
        (cpe,) = self.fleet.cpes
        await self.software_modules()
        reports = [
            h.detail["results"][0]["deployment_unit"]
            for h in self.appliance.store.history(self.device(cpe).id)
            if h.action == "du_state_change_complete"
        ]
        unit = "InternetGatewayDevice.SoftwareModules.DeploymentUnit.1"
        self.assertEqual(reports, ["", unit, unit, unit])  # newest first: the failed uninstall
