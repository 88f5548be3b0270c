"""Simulator software modules (cpe_sim/software.py): ChangeDUState's install, update and
uninstall against the TR-181 template, and each failure with its DU fault code. (A whole
ChangeDUState session, fetch and report: tests/test_sim_transfers.py.)
"""

from __future__ import annotations

import json
import uuid

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from acs.cwmp import rpc
from cpe_sim import software
from cpe_sim.cpe import Profile, SimulatedCPE
from cpe_sim.datamodel import TEMPLATE_DIR, DataModel, Template, load_template
from cpe_sim.transfers import TransferFailed

UNITS = "Device.SoftwareModules.DeploymentUnit."
EUS = "Device.SoftwareModules.ExecutionUnit."
APP = "http://127.0.0.1/du/app.tar"
APP2 = "http://127.0.0.1/du/app-2.tar"
RAW = "http://127.0.0.1/du/raw.bin"
PACKAGES = {
    APP: json.dumps({"name": "app", "vendor": "Acme", "version": "1.0"}).encode(),
    APP2: json.dumps({"name": "app", "vendor": "Acme", "version": "2.0"}).encode(),
    RAW: b"\x00\x01 not json",
}
APP_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "Acme:app"))


async def fetch(url: str, username: str, password: str) -> bytes:
    if url not in PACKAGES:
        raise TransferFailed(9016, f"no such file {url}")
    return PACKAGES[url]


def change(model: DataModel, *operations: rpc.DUOperation) -> tuple[rpc.OpResult, ...]:
    done: list[tuple[rpc.OpResult, ...]] = []
    d = Deferred.fromCoroutine(
        software.change(model, operations, fetch, lambda: "2026-01-01T00:00:00Z")
    )
    d.addBoth(done.append)
    assert done, "the fake fetch answers at once"
    if isinstance(done[0], Failure):
        done[0].raiseException()
    return done[0]


def tr181() -> DataModel:
    return DataModel(load_template("tr181"))


def test_install_creates_a_unit_and_its_execution_unit() -> None:
    model = tr181()
    [result] = change(model, rpc.InstallOp(APP))
    assert (result.uuid, result.current_state, result.version) == (APP_UUID, "Installed", "1.0")
    assert (result.deployment_unit_ref, result.execution_unit_refs) == (f"{UNITS}1", f"{EUS}1")
    assert result.fault.code == 0 and result.start_time == "2026-01-01T00:00:00Z"
    assert model.get_raw(f"{UNITS}1.UUID") == APP_UUID
    assert model.get_raw(f"{UNITS}1.Status") == "Installed"
    assert model.get_raw(f"{UNITS}1.ExecutionEnvRef") == "Device.SoftwareModules.ExecEnv.1"
    assert model.get_raw(f"{EUS}1.Name") == "app"
    assert model.get_raw("Device.SoftwareModules.DeploymentUnitNumberOfEntries") == "1"
    assert model.get_raw("Device.SoftwareModules.ExecutionUnitNumberOfEntries") == "1"


def test_a_package_that_is_not_json_is_named_by_its_url_and_the_given_uuid_is_kept() -> None:
    model = tr181()
    given = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    [result] = change(model, rpc.InstallOp(RAW, uuid=given))
    assert (result.uuid, result.version) == (given, "1.0")
    assert model.get_raw(f"{UNITS}1.Name") == "raw.bin"


def test_update_takes_the_new_version_and_uninstall_removes_everything() -> None:
    model = tr181()
    change(model, rpc.InstallOp(APP))
    [updated] = change(model, rpc.UpdateOp(uuid=APP_UUID, url=APP2))
    assert (updated.current_state, updated.version) == ("Installed", "2.0")
    assert model.get_raw(f"{UNITS}1.URL") == APP2
    assert model.get_raw(f"{EUS}1.Version") == "2.0"
    [by_url] = change(model, rpc.UpdateOp(url=APP2, version="2.1"))
    assert by_url.version == "2.1"
    [removed] = change(model, rpc.UninstallOp(APP_UUID.upper()))
    assert (removed.current_state, removed.deployment_unit_ref) == ("Uninstalled", f"{UNITS}1")
    assert not model.has_object(f"{UNITS}1.") and not model.has_object(f"{EUS}1.")
    assert model.get_raw("Device.SoftwareModules.DeploymentUnitNumberOfEntries") == "0"


def test_each_failure_changes_nothing_and_carries_its_du_fault() -> None:
    model = tr181()
    change(model, rpc.InstallOp(APP))
    results = change(
        model,
        rpc.InstallOp(APP),  # the same unit again
        rpc.InstallOp("http://127.0.0.1/du/missing"),
        rpc.InstallOp(RAW, execution_env_ref="Device.SoftwareModules.ExecEnv.7"),
        rpc.InstallOp("ftp://127.0.0.1/du"),
        rpc.UpdateOp(uuid="6ba7b810-9dad-11d1-80b4-00c04fd430c9"),
        rpc.UninstallOp(APP_UUID, version="9.9"),
        rpc.UninstallOp(APP_UUID, version="1.0"),  # and the next ones still run
    )
    assert [(r.current_state, r.fault.code) for r in results] == [
        ("Failed", 9026),
        ("Failed", 9016),
        ("Failed", 9023),
        ("Failed", 9013),
        ("Failed", 9028),
        ("Failed", 9028),
        ("Uninstalled", 0),
    ]
    assert all(len(r.uuid) == 36 for r in results)


def test_the_tr098_root_has_software_modules_too() -> None:
    model = DataModel(load_template("tr098"))
    [result] = change(model, rpc.InstallOp(APP, execution_env_ref=".SoftwareModules.ExecEnv.1."))
    unit = "InternetGatewayDevice.SoftwareModules.DeploymentUnit.1"
    assert (result.deployment_unit_ref, result.current_state) == (unit, "Installed")
    assert (
        model.get_raw(f"{unit}.ExecutionEnvRef")
        == "InternetGatewayDevice.SoftwareModules.ExecEnv.1"
    )


def without_software_modules() -> Template:
    """The TR-181 template minus SoftwareModules: a CPE model without them."""
    data = json.loads((TEMPLATE_DIR / "tr181.json").read_text(encoding="utf-8"))
    for key in ("definitions", "tables", "values"):
        data[key] = {k: v for k, v in data[key].items() if ".SoftwareModules." not in k}
    data["entries"] = [e for e in data["entries"] if ".SoftwareModules." not in e]
    return Template(data)


def test_a_cpe_without_software_modules_refuses_change_du_state() -> None:
    older = without_software_modules()
    assert software.supported(tr181()) and not software.supported(DataModel(older))
    profile = Profile(acs_url="http://127.0.0.1:1/", reactor=task.Clock())
    cpe = SimulatedCPE("SN-DU", older, profile, cwmp_version="1.2")
    methods = cpe.handle(rpc.GetRPCMethods())
    assert isinstance(methods, rpc.GetRPCMethodsResponse)
    assert "ChangeDUState" not in methods.methods
    answer = cpe.handle(rpc.ChangeDUState((rpc.InstallOp(APP),)))
    assert isinstance(answer, rpc.Fault) and answer.code == 9000
