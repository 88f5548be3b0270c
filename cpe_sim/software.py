"""Software modules of a simulated CPE (TR-181 ``Device.SoftwareModules.``, TR-157): the
operations of a ChangeDUState, run after the session that carried it.

An install fetches the deployment unit over HTTP (``transfers.fetch``: the same real
transfer, faults and all) and creates a ``DeploymentUnit`` with one ``ExecutionUnit`` in the
execution environment asked for (default the first); an update fetches the unit again
(from its own URL unless one is given) and takes the new version; an uninstall removes the
unit and its execution units. A package is anything: a JSON object's ``name``, ``vendor``
and ``version`` are used when present, else the URL's last segment and version "1.0". A
unit's UUID, when the ACS gives none, is the version 5 UUID of its vendor and name.

``change`` returns the DUStateChangeComplete results in order; a failed operation changes
nothing and does not stop the next ones (TR-069 A.4.1.10 without atomic sets).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from acs.cwmp import rpc
from cpe_sim.datamodel import DataModel
from cpe_sim.transfers import TransferFailed

EVENT = "11 DU STATE CHANGE COMPLETE"
METHOD_EVENT = "M ChangeDUState"
# DeploymentUnitCPEFaultCodeType (cwmp-1-2.xsd): the codes an operation may fail with.
DU_FAULTS = frozenset({9001, 9003, 9012, 9013, 9015, 9016, 9017, 9018, *range(9022, 9033)})
DOWNLOAD_FAILED = 9017
UNKNOWN_EE = 9023
DUPLICATE_DU = 9026
UNKNOWN_DU = 9028
MAX_UNITS = 64  # deployment units one simulated CPE holds
_SYSTEM_RESOURCES = 9027

Fetch = Callable[[str, str, str], Awaitable[bytes]]  # (url, username, password) -> body


def supported(model: DataModel) -> bool:
    """Whether this CPE's data model has software modules (TR-181 templates do)."""
    return model.has_object(model.root + "SoftwareModules.DeploymentUnit.")


class _Failed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code if code in DU_FAULTS else DOWNLOAD_FAILED
        self.message = message[:256]


def _package(body: bytes, url: str) -> tuple[str, str, str, str]:
    """(name, vendor, version, description) of a fetched deployment unit."""
    name = urlsplit(url).path.rsplit("/", 1)[-1] or "unit"
    try:
        meta = json.loads(body)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        meta = {}

    def text(key: str, default: str, limit: int) -> str:
        value = meta.get(key)
        return value[:limit] if isinstance(value, str) and value.isprintable() else default

    return (
        text("name", name[:64], 64),
        text("vendor", "", 128),
        text("version", "1.0", 32),
        text("description", "", 256),
    )


class Units:
    """The deployment and execution units of one CPE's data model."""

    def __init__(self, model: DataModel, now: Callable[[], str]) -> None:
        self.model = model
        self.now = now
        self.base = model.root + "SoftwareModules."

    def _instances(self, table: str) -> list[str]:
        prefix = self.base + table + "."
        return [
            n
            for n in self.model.entries()
            if n.startswith(prefix) and n[len(prefix) :].rstrip(".").isdigit() and n.endswith(".")
        ]

    def find(self, *, uuid_: str = "", url: str = "") -> str | None:
        for unit in self._instances("DeploymentUnit"):
            if uuid_ and (self.model.get_raw(unit + "UUID") or "").lower() == uuid_.lower():
                return unit
            if url and not uuid_ and self.model.get_raw(unit + "URL") == url:
                return unit
        return None

    def _environment(self, ref: str) -> str:
        environments = self._instances("ExecEnv")
        if not ref:
            if not environments:
                raise _Failed(UNKNOWN_EE, "no execution environment")
            return environments[0].removesuffix(".")
        path = ref.removesuffix(".") + "."
        if path.startswith(".SoftwareModules."):  # the relative form of the XSD's example
            path = self.model.root + path[1:]
        if path not in environments:
            raise _Failed(UNKNOWN_EE, f"Unknown Execution Environment {ref}")
        return path.removesuffix(".")

    def install(self, op: rpc.InstallOp, body: bytes) -> rpc.OpResult:
        name, vendor, version, description = _package(body, op.url)
        unit_uuid = op.uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{vendor}:{name}"))
        if self.find(uuid_=unit_uuid) is not None:
            raise _Failed(DUPLICATE_DU, f"Duplicate Deployment Unit {unit_uuid}")
        if len(self._instances("DeploymentUnit")) >= MAX_UNITS:
            raise _Failed(_SYSTEM_RESOURCES, "System resources exceeded")
        environment = self._environment(op.execution_env_ref)
        m = self.model
        unit = f"{self.base}DeploymentUnit.{m.add_instance(self.base + 'DeploymentUnit.')}."
        eu = f"{self.base}ExecutionUnit.{m.add_instance(self.base + 'ExecutionUnit.')}."
        when = self.now()
        self._set(unit, {
            "UUID": unit_uuid, "DUID": unit.rstrip(".").rsplit(".", 1)[1], "Name": name,
            "Status": "Installed", "Resolved": "true", "URL": op.url, "Vendor": vendor,
            "Version": version, "Description": description,
            "ExecutionUnitList": eu.removesuffix("."), "ExecutionEnvRef": environment,
            "Installed": when, "LastUpdate": when,
        })  # fmt: skip
        self._set(eu, {
            "EUID": eu.rstrip(".").rsplit(".", 1)[1], "Name": name, "ExecEnvLabel": name,
            "Status": "Idle", "Vendor": vendor, "Version": version,
            "Description": description, "ExecutionEnvRef": environment,
        })  # fmt: skip
        return self.result(unit)

    def _set(self, obj: str, values: dict[str, str]) -> None:
        """The values an object of this model has (older models lack some)."""
        for key, value in values.items():
            if self.model.param_def(obj + key) is not None:
                self.model.set_raw(obj + key, value)

    def update(self, unit: str, op: rpc.UpdateOp, body: bytes) -> rpc.OpResult:
        url = op.url or self.model.get_raw(unit + "URL") or ""
        _, _, version, _ = _package(body, url)
        version = op.version or version
        self._set(unit, {"Version": version, "URL": url, "LastUpdate": self.now()})
        for eu in self._execution_units(unit):
            self._set(eu, {"Version": version})
        return self.result(unit)

    def uninstall(self, unit: str) -> rpc.OpResult:
        result = self.result(unit, state="Uninstalled")
        for eu in self._execution_units(unit):
            self.model.remove_instance(eu)
        self.model.remove_instance(unit)
        return result

    def _execution_units(self, unit: str) -> list[str]:
        refs = (self.model.get_raw(unit + "ExecutionUnitList") or "").split(",")
        return [
            r.strip() + "." for r in refs if r.strip() and self.model.has_object(r.strip() + ".")
        ]

    def result(self, unit: str, *, state: str = "Installed") -> rpc.OpResult:
        get = self.model.get_raw
        return rpc.OpResult(
            uuid=get(unit + "UUID") or "",
            deployment_unit_ref=unit.removesuffix("."),
            version=get(unit + "Version") or "",
            current_state=state,
            resolved=True,
            execution_unit_refs=get(unit + "ExecutionUnitList") or "",
        )


def failed(op: rpc.DUOperation, code: int, message: str) -> rpc.OpResult:
    """The result of an operation that changed nothing."""
    return _failed(op, _Failed(code, message))


def _failed(op: rpc.DUOperation, error: _Failed) -> rpc.OpResult:
    unit_uuid = op.uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, getattr(op, "url", "")))
    return rpc.OpResult(
        uuid=unit_uuid,
        deployment_unit_ref="",
        version="",
        current_state="Failed",
        resolved=False,
        execution_unit_refs="",
        fault=rpc.FaultStruct(error.code, error.message),
    )


async def _apply(units: Units, op: rpc.DUOperation, fetch: Fetch) -> rpc.OpResult:
    if isinstance(op, rpc.InstallOp):
        return units.install(op, await _fetch(fetch, op.url, op.username, op.password))
    unit = units.find(uuid_=op.uuid, url=getattr(op, "url", ""))
    if unit is None or (
        isinstance(op, rpc.UninstallOp)
        and op.version
        and units.model.get_raw(unit + "Version") != op.version
    ):
        raise _Failed(UNKNOWN_DU, f"Unknown Deployment Unit {op.uuid or getattr(op, 'url', '')}")
    if isinstance(op, rpc.UninstallOp):
        return units.uninstall(unit)
    url = op.url or units.model.get_raw(unit + "URL") or ""
    return units.update(unit, op, await _fetch(fetch, url, op.username, op.password))


async def _fetch(fetch: Fetch, url: str, username: str, password: str) -> bytes:
    if urlsplit(url).scheme not in ("http", "https"):
        raise _Failed(9013, "Unsupported protocol for file transfer")
    try:
        return await fetch(url, username, password)
    except TransferFailed as e:
        raise _Failed(e.code, e.message) from None


async def change(
    model: DataModel, operations: Sequence[rpc.DUOperation], fetch: Fetch, now: Callable[[], str]
) -> tuple[rpc.OpResult, ...]:
    """Run the operations in order; their results, with start and completion times."""
    units = Units(model, now)
    out = []
    for op in operations:
        start = now()
        try:
            result = await _apply(units, op, fetch)
        except _Failed as e:
            result = _failed(op, e)
        else:
            result = dataclasses.replace(result, start_time=start, complete_time=now())
        out.append(result)
    return tuple(out)
