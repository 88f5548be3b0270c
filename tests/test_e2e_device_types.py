"""End to end: a device type's update_frequency reaches its devices and their CPEs.

Through the REST API and real simulated CPEs: a device registered under a type with an
update_frequency gets it (bootstrap provisioning sets it as PeriodicInformInterval); a change
of the type's value reaches its existing devices, except one that set its own, and each CPE
is set to its device's interval at its next Inform.
"""

from __future__ import annotations

from e2eharness import ApplianceWithFleet, until

from cpe_sim.datamodel import load_template

PII = "Device.ManagementServer.PeriodicInformInterval"


class DeviceTypeUpdateFrequency(ApplianceWithFleet):
    async def test_the_types_update_frequency_reaches_its_devices_and_their_cpes(self) -> None:
        await self.start_appliance(self.tempdir())
        template = load_template("tr181")
        status, dtype = await self.api(
            "POST",
            "/device_type/",
            {
                "name": "Home gateway",
                "manufacturer": "Acme Networks",
                "product_class": template.values["Device.DeviceInfo.ProductClass"],
                "update_frequency": 900,
            },
            role="admin",
        )
        self.assertEqual(status, 201, dtype)
        await self.start_fleet(count=2, model="tr181")
        inherits, own = self.fleet.cpes
        for cpe in (inherits, own):
            status, device = await self.api("GET", f"/inventory_device/{self.device(cpe).id}/")
            self.assertEqual((device["type"], device["update_frequency"]), (dtype["id"], 900))
            self.assertEqual(cpe.value(PII), "900")  # set by the bootstrap provisioning

        own_id, inherits_id = self.device(own).id, self.device(inherits).id
        status, _ = await self.api(
            "PATCH", f"/inventory_device/{own_id}/", {"update_frequency": 120}
        )
        self.assertEqual(status, 200)
        status, _ = await self.api(
            "PATCH", f"/device_type/{dtype['id']}/", {"update_frequency": 1200}, role="admin"
        )
        self.assertEqual(status, 200)
        _, changed = await self.api("GET", f"/inventory_device/{inherits_id}/")
        _, kept = await self.api("GET", f"/inventory_device/{own_id}/")
        self.assertEqual((changed["update_frequency"], kept["update_frequency"]), (1200, 120))

        # Each CPE is told at its next Inform (no connection request storm for a whole type).
        for cpe, expected in ((inherits, "1200"), (own, "120")):
            self.assertEqual(cpe.value(PII), "900")
            await self.bounded(cpe.inform())
            await until(cpe, lambda cpe=cpe, expected=expected: cpe.value(PII) == expected)
        # Once the CPE informs at the right interval, nothing more is sent.
        tasks = len(self.appliance.store.tasks_for_device(inherits_id))
        await self.bounded(inherits.inform())
        self.assertEqual(len(self.appliance.store.tasks_for_device(inherits_id)), tasks)

        # PUT without update_frequency: the device has none of its own any more.
        _, body = await self.api("GET", f"/inventory_device/{own_id}/")
        put = {k: body[k] for k in ("name", "serial_number", "type")}
        status, replaced = await self.api("PUT", f"/inventory_device/{own_id}/", put)
        self.assertEqual((status, replaced["update_frequency"]), (200, 1200))
