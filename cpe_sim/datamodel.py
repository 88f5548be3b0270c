"""Data models of the simulated CPEs: the BBF template builder and the per-CPE runtime model.

Two halves:

* ``build_template`` reads a BBF full data-model XML (TR-181 ``Device.`` or TR-098
  ``InternetGatewayDevice.``), extracts the realistic home-gateway subset named in
  ``SELECTIONS`` with the names, xsd types, writability, facets (enumerations, ranges,
  lengths), password-ness, forced-inform flags and forced active notification exactly as
  the model defines them, fills in plausible default values and returns a JSON-able dict.
  Running this module (``python -m cpe_sim.datamodel conformance/datamodels``) rewrites
  ``cpe_sim/templates/tr181.json`` and ``tr098.json``.
* ``Template`` is the loaded, immutable, shared form of one such JSON file and
  ``DataModel`` is the data model of one CPE with CWMP semantics (GPN/GPV/SPV/GPA/SPA/
  AddObject/DeleteObject and their faults). Thousands of CPEs share a process, so a
  ``DataModel`` is copy-on-write over its ``Template``: it only stores the values it
  changed, the instances it added and the instances it deleted.
"""

from __future__ import annotations

import json
import lzma
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from acs.cwmp import rpc
from acs.cwmp.values import INT_RANGES, XSD_TYPES, type_problem

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

_TYPE_DEFAULTS = {
    "string": "",
    "unsignedInt": "0",
    "int": "0",
    "long": "0",
    "unsignedLong": "0",
    "boolean": "false",
    "dateTime": rpc.UNKNOWN_TIME,
    "base64": "",
    "hexBinary": "",
}

ACTIVE_NOTIFICATION = 2  # the notification attribute of active notification (TR-069 A.3.2.4)
# The model's activeNotify values that make a parameter actively notified by default
# ("canDeny" only lets the CPE refuse to, "normal" changes nothing).
FORCED_ACTIVE_NOTIFY = ("forceEnabled", "forceDefaultEnabled")

# An instance number is a whole path segment made of digits.
_INSTANCE_RE = re.compile(r"\.(\d+)(?=\.)")


def model_path(name: str) -> str:
    """``Device.WiFi.SSID.2.SSID`` -> ``Device.WiFi.SSID.{i}.SSID`` (the BBF model name)."""
    return _INSTANCE_RE.sub(".{i}", name)


def _owner(name: str) -> str | None:
    """The innermost instance object containing ``name`` (or being it), None if none."""
    last = None
    for m in _INSTANCE_RE.finditer(name):
        last = m
    return name[: last.end() + 1] if last else None


# --- value validation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamDef:
    """What the model says about one parameter; shared by every instance and every CPE."""

    type: str
    writable: bool
    default: str
    hidden: bool = False  # passwords and keys: read back as ""
    forced: bool = False  # forcedInform: in every Inform
    # activeNotify="forceEnabled"/"forceDefaultEnabled": active notification until the ACS
    # sets another attribute (TR-106 A.2.3.3, TR-069 A.3.2.4).
    active_notify: bool = False
    is_list: bool = False  # comma-separated list; wire type is string
    enum: tuple[str, ...] = ()
    ranges: tuple[tuple[int | None, int | None], ...] = ()
    max_length: int | None = None


def normalize_value(pdef: ParamDef, value: str) -> tuple[str | None, int]:
    """Check ``value`` against ``pdef``: (normalized value, 0) or (None, fault code).

    9006 when the value is not of the parameter's type, 9007 when it is of the right
    type but outside what the model allows (enumeration, range, length).
    """
    t = pdef.type
    # Lenient as CPEs are: blanks around numbers, booleans and times, booleans in any case.
    text = value.strip() if t in ("boolean", "dateTime", *INT_RANGES) else value
    if t == "boolean":
        text = text.lower()
    if type_problem(text, t) is not None:
        return None, 9006
    if t == "boolean":
        return ("true" if text in ("true", "1") else "false"), 0
    if t in INT_RANGES:
        number = int(text)
        if pdef.ranges and not any(
            (a is None or number >= a) and (b is None or number <= b) for a, b in pdef.ranges
        ):
            return None, 9007
        return str(number), 0
    if t in ("dateTime", "hexBinary", "base64"):
        return text, 0
    # string
    if pdef.max_length is not None and len(value) > pdef.max_length:
        return None, 9007
    if pdef.enum and not pdef.is_list and value not in pdef.enum:
        return None, 9007
    return value, 0


# --- the shared template -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableDef:
    """A multi-instance object (model path ``...X.{i}.``)."""

    creatable: bool  # AddObject/DeleteObject allowed (BBF access="readWrite")
    count_parameter: str  # "XNumberOfEntries" in the parent object, "" if none
    proto_params: tuple[str, ...]  # parameter names relative to a new instance
    proto_objects: tuple[str, ...]  # sub-object names relative to a new instance
    proto_entries: tuple[str, ...]  # both, in tree order


class Template:
    """One root's template: immutable and shared by every CPE of that root."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.root: str = data["root"]
        self.model: str = data["model"]
        defs: dict[str, ParamDef] = {}
        for mpath, d in data["definitions"].items():
            defs[mpath] = ParamDef(
                type=d["type"],
                writable=d["writable"],
                default=d["default"],
                hidden=d.get("hidden", False),
                forced=d.get("forced", False),
                active_notify="activeNotify" in d,
                is_list=d.get("list", False),
                enum=tuple(d.get("enum", ())),
                ranges=tuple((r[0], r[1]) for r in d.get("ranges", ())),
                max_length=d.get("maxLength"),
            )
        self.definitions: dict[str, ParamDef] = defs
        # Instantiated names in tree order; objects end with ".", parameters don't.
        self.entries: tuple[str, ...] = tuple(data["entries"])
        self.values: dict[str, str] = dict(data["values"])
        self.params: dict[str, ParamDef] = {n: defs[model_path(n)] for n in self.values}
        self.objects: dict[str, bool] = {}
        self.model_objects: set[str] = set()
        tables_raw: dict[str, Any] = data["tables"]
        for name in self.entries:
            if name.endswith("."):
                mp = model_path(name)
                self.model_objects.add(mp)
                # Instances and their table container are writable when the table is
                # creatable (AddObject/DeleteObject allowed); other objects never are.
                table = tables_raw.get(mp if mp.endswith("{i}.") else mp + "{i}.")
                self.objects[name] = bool(table and table["creatable"])
        # A table's instances are objects even when the template has none of them.
        self.model_objects.update(tables_raw)
        self.tables: dict[str, TableDef] = {}
        for mpath, t in tables_raw.items():
            params = tuple(
                p[len(mpath) :]
                for p in defs
                if p.startswith(mpath) and "{i}" not in p[len(mpath) :]
            )
            model_order = dict.fromkeys(model_path(e) for e in self.entries if e.endswith("."))
            objects = tuple(
                o[len(mpath) :]
                for o in model_order
                if o.startswith(mpath) and o != mpath and "{i}" not in o[len(mpath) :]
            )
            self.tables[mpath] = TableDef(
                creatable=t["creatable"],
                count_parameter=t.get("countParameter", ""),
                proto_params=params,
                proto_objects=objects,
                proto_entries=tuple(_tree_order([*params, *objects])),
            )
        self.forced: tuple[str, ...] = tuple(n for n, p in self.params.items() if p.forced)
        self.parameter_key = self.root + "ManagementServer.ParameterKey"
        # Subtree indexes so that an untouched CPE answers partial-path GPN/GPV without
        # scanning the whole tree: object path ("" = root) -> entries / parameters below.
        subtree: dict[str, list[str]] = {"": []}
        for name in self.entries:
            subtree[""].append(name)
            base = name[:-1] if name.endswith(".") else name
            pos = base.find(".")
            while pos != -1:
                subtree.setdefault(base[: pos + 1], []).append(name)
                pos = base.find(".", pos + 1)
            if name.endswith("."):
                subtree.setdefault(name, []).append(name)  # an object is in its own subtree
        self.subtree_entries: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in subtree.items()}
        self.subtree_params: dict[str, tuple[str, ...]] = {
            k: tuple(n for n in v if not n.endswith(".")) for k, v in subtree.items()
        }

    @classmethod
    def load(cls, path: Path) -> Template:
        return cls(json.loads(path.read_text(encoding="utf-8")))


@cache
def load_template(name: str) -> Template:
    """The shared template ``"tr181"`` or ``"tr098"`` (loaded once per process)."""
    if name not in ("tr181", "tr098"):
        raise ValueError(f"unknown template {name!r}: expected 'tr181' or 'tr098'")
    return Template.load(TEMPLATE_DIR / f"{name}.json")


# --- the per-CPE runtime model ---------------------------------------------------------


class CwmpFault(Exception):
    """Raised inside the model; carries the ``rpc.Fault`` to send back."""

    def __init__(self, fault: rpc.Fault) -> None:
        super().__init__(fault.string)
        self.fault = fault


def _fault(code: int, string: str) -> CwmpFault:
    faultcode = "Client" if code == 9003 or 9005 <= code <= 9008 else "Server"
    return CwmpFault(rpc.Fault(code=code, string=string, faultcode=faultcode))


_FAULT_STRINGS = {
    9005: "Invalid parameter name",
    9006: "Invalid parameter type",
    9007: "Invalid parameter value",
    9008: "Attempt to set a non-writable parameter",
}


class DataModel:
    """The data model of one CPE, copy-on-write over a shared ``Template``.

    Only what differs from the template is stored: ``_values`` (set values, including
    those of added instances), ``_added`` (instance path -> table model path, in creation
    order), ``_deleted`` (deleted template instance paths) and ``_attrs`` (notification
    attributes). The containers other than ``_values`` stay ``None`` until first used so
    that an untouched CPE costs a few hundred bytes.
    """

    __slots__ = ("_added", "_attrs", "_deleted", "_next", "_values", "template")

    def __init__(self, template: Template, overrides: Mapping[str, str] | None = None) -> None:
        self.template = template
        self._values: dict[str, str] = {}
        self._added: dict[str, str] | None = None
        self._deleted: set[str] | None = None
        self._next: dict[str, int] | None = None
        self._attrs: dict[str, int] | None = None
        if overrides:
            for name, value in overrides.items():
                self.set_raw(name, value)

    @property
    def root(self) -> str:
        return self.template.root

    def reset(self, overrides: Mapping[str, str] | None = None) -> None:
        """Back to the template (FactoryReset), then apply ``overrides`` (identity)."""
        self._values = {}
        self._added = self._deleted = self._next = None
        self._attrs = None
        if overrides:
            for name, value in overrides.items():
                self.set_raw(name, value)

    # -- existence and lookup --

    def _is_deleted(self, name: str) -> bool:
        return bool(self._deleted) and any(name.startswith(d) for d in self._deleted or ())

    def param_def(self, name: str) -> ParamDef | None:
        """The definition of an existing parameter, None if there is no such parameter."""
        pdef = self.template.params.get(name)
        if pdef is not None:
            return None if self._is_deleted(name) else pdef
        if self._added and not name.endswith("."):
            owner = _owner(name)
            if owner is not None and owner in self._added:
                return self.template.definitions.get(model_path(name))
        return None

    def has_object(self, path: str) -> bool:
        if path in self.template.objects:
            return not self._is_deleted(path)
        if self._added:
            owner = _owner(path)
            if owner is not None and owner in self._added:
                return model_path(path) in self.template.model_objects
        return False

    def _object_writable(self, path: str) -> bool:
        if path in self.template.objects:
            return self.template.objects[path]
        mp = model_path(path)
        table = self.template.tables.get(mp if mp.endswith("{i}.") else mp + "{i}.")
        return table is not None and table.creatable

    def entries(self) -> Iterator[str]:
        """Every existing object and parameter name, objects ending with '.', tree order."""
        deleted = self._deleted
        for name in self.template.entries:
            if deleted and any(name.startswith(d) for d in deleted):
                continue
            yield name
        for inst, table in (self._added or {}).items():
            tdef = self.template.tables[table]
            yield inst
            for rel in tdef.proto_entries:
                yield inst + rel

    def names(self, prefix: str = "") -> list[str]:
        """Parameter names (not objects) under ``prefix`` ("" = all)."""
        if not self._added and not self._deleted and prefix in self.template.subtree_params:
            return list(self.template.subtree_params[prefix])
        return [n for n in self.entries() if not n.endswith(".") and n.startswith(prefix)]

    def _entries_under(self, path: str) -> Iterable[str]:
        if not self._added and not self._deleted and path in self.template.subtree_entries:
            return self.template.subtree_entries[path]
        return (n for n in self.entries() if n.startswith(path))

    def parameter_names(self, prefix: str = "") -> list[str]:
        """Every existing parameter name under ``prefix`` (the whole tree by default)."""
        return self.names(prefix)

    def get_raw(self, name: str) -> str | None:
        """The stored value (passwords included), None for an unknown parameter."""
        value = self._values.get(name)
        if value is not None:
            return value
        if name in self.template.values:
            return None if self._is_deleted(name) else self.template.values[name]
        pdef = self.param_def(name)
        return pdef.default if pdef is not None else None

    def set_raw(self, name: str, value: str) -> None:
        """Set without any CWMP check (the CPE's own changes: uptime, identity...)."""
        if self.param_def(name) is None:
            raise KeyError(name)
        if self.template.values.get(name) == value and not self._is_deleted(name):
            self._values.pop(name, None)
        else:
            self._values[name] = value

    def wire_value(self, name: str) -> rpc.ParameterValue:
        pdef = self.param_def(name)
        if pdef is None:
            raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {name}")
        value = "" if pdef.hidden else (self.get_raw(name) or "")
        return rpc.ParameterValue(name, value, "xsd:" + pdef.type)

    def values(self, names: Iterable[str]) -> list[rpc.ParameterValue]:
        return [self.wire_value(n) for n in names]

    # -- CWMP operations (raise CwmpFault) --

    def _expand(self, name: str) -> list[str]:
        """A GPV/GPA name: one parameter, or every parameter under a partial path."""
        if name == "" or name.endswith("."):
            if name != "" and not self.has_object(name):
                raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {name}")
            return self.names(name)
        if self.param_def(name) is None:
            self._check_not_object(name)
            raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {name}")
        return [name]

    def _check_not_object(self, name: str) -> None:
        if self.has_object(name + "."):
            raise _fault(9003, f"Invalid arguments: object path {name} must end with '.'")

    def get_parameter_values(self, names: Iterable[str]) -> list[rpc.ParameterValue]:
        out: list[rpc.ParameterValue] = []
        for name in names:
            out.extend(self.wire_value(n) for n in self._expand(name))
        return out

    def get_parameter_names(self, path: str, next_level: bool) -> list[rpc.ParameterInfo]:
        if path == "":
            if next_level:
                return [rpc.ParameterInfo(self.root, False)]
            return [self._info(n) for n in self.entries()]
        if not path.endswith("."):
            if self.param_def(path) is None:
                self._check_not_object(path)
                raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {path}")
            if next_level:
                raise _fault(9003, f"Invalid arguments: NextLevel=true on parameter {path}")
            return [self._info(path)]
        if not self.has_object(path):
            raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {path}")
        out: list[rpc.ParameterInfo] = []
        for name in self._entries_under(path):
            if next_level:
                rest = name[len(path) :]
                if rest == "" or "." in rest.removesuffix("."):
                    continue
            out.append(self._info(name))
        return out

    def _info(self, name: str) -> rpc.ParameterInfo:
        if name.endswith("."):
            return rpc.ParameterInfo(name, self._object_writable(name))
        pdef = self.param_def(name)
        return rpc.ParameterInfo(name, bool(pdef and pdef.writable))

    def set_parameter_values(
        self, parameters: Iterable[rpc.ParameterValue], parameter_key: str
    ) -> None:
        """All-or-nothing SPV; on any bad parameter raise a 9003 with one entry per fault."""
        params = list(parameters)
        faults: list[rpc.SetParameterValuesFault] = []
        updates: dict[str, str] = {}
        seen: set[str] = set()
        for pv in params:
            if pv.name in seen:
                raise _fault(9003, f"Invalid arguments: {pv.name} given twice")
            seen.add(pv.name)
            pdef = None if pv.name.endswith(".") else self.param_def(pv.name)
            if pdef is None:
                code = 9005
            elif not pdef.writable:
                code = 9008
            else:
                value, code = normalize_value(pdef, pv.value)
                if value is not None:
                    updates[pv.name] = value
            if code:
                faults.append(rpc.SetParameterValuesFault(pv.name, code, f"{_FAULT_STRINGS[code]}"))
        if faults:
            raise CwmpFault(
                rpc.Fault(
                    code=9003,
                    string="Invalid arguments",
                    faultcode="Client",
                    set_parameter_values_faults=tuple(faults),
                )
            )
        for name, value in updates.items():
            self.set_raw(name, value)
        self.set_raw(self.template.parameter_key, parameter_key)

    def add_object(self, object_name: str, parameter_key: str) -> int:
        if not object_name.endswith(".") or object_name == "":
            raise _fault(9003, f"Invalid arguments: object name must end with '.': {object_name}")
        tdef = self.template.tables.get(model_path(object_name) + "{i}.")
        if tdef is None or not self.has_object(object_name):
            raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {object_name} is not a table")
        if not tdef.creatable:
            raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {object_name} is not creatable")
        number = self.add_instance(object_name)
        self.set_raw(self.template.parameter_key, parameter_key)
        return number

    def add_instance(self, object_name: str) -> int:
        """A new instance of the table ``object_name`` (ending with "."), creatable or not:
        the CPE's own (a deployment unit it installs); its number. KeyError: no table."""
        table = model_path(object_name) + "{i}."
        tdef = self.template.tables.get(table)
        if tdef is None or not self.has_object(object_name):
            raise KeyError(object_name)
        if self._next is None:
            self._next = {}
        number = self._next.get(object_name)
        if number is None:
            # Never reuse an instance number, even one of a deleted template instance.
            used = [
                int(n[len(object_name) :].rstrip("."))
                for n in self.template.objects
                if n.startswith(object_name) and n[len(object_name) :].rstrip(".").isdigit()
            ]
            number = max(used, default=0) + 1
        self._next[object_name] = number + 1
        if self._added is None:
            self._added = {}
        self._added[f"{object_name}{number}."] = table
        self._update_count(object_name, tdef)
        return number

    def delete_object(self, object_name: str, parameter_key: str) -> None:
        if not object_name.endswith("."):
            raise _fault(9003, f"Invalid arguments: object name must end with '.': {object_name}")
        mp = model_path(object_name)
        tdef = self.template.tables.get(mp) if mp.endswith("{i}.") else None
        if tdef is None or not self.has_object(object_name):
            raise _fault(9005, f"{_FAULT_STRINGS[9005]}: no such instance {object_name}")
        if not tdef.creatable:
            raise _fault(9005, f"{_FAULT_STRINGS[9005]}: {object_name} cannot be deleted")
        self.remove_instance(object_name)
        self.set_raw(self.template.parameter_key, parameter_key)

    def remove_instance(self, object_name: str) -> None:
        """Delete the instance ``object_name`` (ending with "."), creatable or not: the
        CPE's own. KeyError: no such instance."""
        mp = model_path(object_name)
        tdef = self.template.tables.get(mp) if mp.endswith("{i}.") else None
        if tdef is None or not self.has_object(object_name):
            raise KeyError(object_name)
        if self._added:
            for inst in [i for i in self._added if i.startswith(object_name)]:
                del self._added[inst]
        if object_name in self.template.objects:
            if self._deleted is None:
                self._deleted = set()
            self._deleted.add(object_name)
        for name in [n for n in self._values if n.startswith(object_name)]:
            del self._values[name]
        if self._attrs:
            for name in [n for n in self._attrs if n.startswith(object_name)]:
                del self._attrs[name]
        container = object_name[: object_name.rstrip(".").rfind(".") + 1]
        self._update_count(container, tdef)

    def _update_count(self, container: str, tdef: TableDef) -> None:
        if not tdef.count_parameter:
            return
        parent = container[: container.rstrip(".").rfind(".") + 1]
        count_name = parent + tdef.count_parameter
        if self.param_def(count_name) is None:
            return
        count = sum(
            1
            for n in self.entries()
            if n.startswith(container) and n[len(container) :].rstrip(".").isdigit()
        )
        self.set_raw(count_name, str(count))

    def notification(self, name: str) -> int:
        """The parameter's notification attribute (0 off, 1 passive, 2 active, ...): what the
        ACS set, else 2 for a parameter the model makes active by default, else 0."""
        attribute = (self._attrs or {}).get(name)
        if attribute is not None:
            return attribute
        pdef = self.param_def(name)
        return ACTIVE_NOTIFICATION if pdef is not None and pdef.active_notify else 0

    def get_parameter_attributes(self, names: Iterable[str]) -> list[rpc.ParameterAttribute]:
        out: list[rpc.ParameterAttribute] = []
        for name in names:
            for n in self._expand(name):
                out.append(rpc.ParameterAttribute(n, self.notification(n), ()))
        return out

    def set_parameter_attributes(
        self, parameters: Iterable[rpc.SetParameterAttributesStruct]
    ) -> None:
        changes: dict[str, int] = {}
        for s in parameters:
            if not 0 <= s.notification <= 6:
                raise _fault(9003, f"Invalid arguments: notification {s.notification}")
            names = self._expand(s.name)
            if s.notification_change:
                for n in names:
                    changes[n] = s.notification
        if changes:
            if self._attrs is None:
                self._attrs = {}
            self._attrs.update(changes)


# --- the template builder ------------------------------------------------------------------

# Objects taken from each model, with the instance numbers to create for multi-instance
# ones (the same numbers under every parent instance). Every object's parent is listed.
SELECTIONS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "tr181": (
        ("Device.", ()),
        ("Device.DeviceInfo.", ()),
        ("Device.DeviceInfo.MemoryStatus.", ()),
        ("Device.ManagementServer.", ()),
        ("Device.Time.", ()),
        ("Device.WiFi.", ()),
        ("Device.WiFi.Radio.{i}.", (1, 2)),
        ("Device.WiFi.SSID.{i}.", (1, 2)),
        ("Device.WiFi.AccessPoint.{i}.", (1, 2)),
        ("Device.WiFi.AccessPoint.{i}.Security.", ()),
        ("Device.Ethernet.", ()),
        ("Device.Ethernet.Interface.{i}.", (1, 2, 3, 4)),
        ("Device.Ethernet.Interface.{i}.Stats.", ()),
        ("Device.IP.", ()),
        ("Device.IP.Interface.{i}.", (1, 2)),
        ("Device.IP.Interface.{i}.IPv4Address.{i}.", (1,)),
        ("Device.DHCPv4.", ()),
        ("Device.DHCPv4.Server.", ()),
        ("Device.DHCPv4.Server.Pool.{i}.", (1,)),
        ("Device.Hosts.", ()),
        ("Device.Hosts.Host.{i}.", (1, 2)),
        ("Device.DNS.", ()),
        ("Device.DNS.Client.", ()),
        ("Device.DNS.Client.Server.{i}.", (1, 2)),
        ("Device.NAT.", ()),
        ("Device.NAT.InterfaceSetting.{i}.", (1,)),
        ("Device.NAT.PortMapping.{i}.", (1,)),
        ("Device.IP.Diagnostics.", ()),
        ("Device.IP.Diagnostics.IPPing.", ()),
        ("Device.IP.Diagnostics.TraceRoute.", ()),
        ("Device.IP.Diagnostics.TraceRoute.RouteHops.{i}.", (1, 2, 3)),
        ("Device.IP.Diagnostics.DownloadDiagnostics.", ()),
        ("Device.IP.Diagnostics.UploadDiagnostics.", ()),
        ("Device.SoftwareModules.", ()),
        ("Device.SoftwareModules.ExecEnv.{i}.", (1,)),
        ("Device.SoftwareModules.DeploymentUnit.{i}.", ()),
        ("Device.SoftwareModules.ExecutionUnit.{i}.", ()),
        # XMPP connection requests (TR-069 Annex K): one connection, one server, disabled
        # unless the simulator runs with an XMPP server (``cpe-sim --xmpp``).
        ("Device.XMPP.", ()),
        ("Device.XMPP.Connection.{i}.", (1,)),
        ("Device.XMPP.Connection.{i}.Server.{i}.", (1,)),
    ),
    "tr098": (
        ("InternetGatewayDevice.", ()),
        ("InternetGatewayDevice.DeviceInfo.", ()),
        ("InternetGatewayDevice.ManagementServer.", ()),
        ("InternetGatewayDevice.Time.", ()),
        ("InternetGatewayDevice.Layer3Forwarding.", ()),
        ("InternetGatewayDevice.Layer3Forwarding.Forwarding.{i}.", (1,)),
        ("InternetGatewayDevice.LANDevice.{i}.", (1,)),
        ("InternetGatewayDevice.LANDevice.{i}.LANHostConfigManagement.", ()),
        ("InternetGatewayDevice.LANDevice.{i}.LANHostConfigManagement.IPInterface.{i}.", (1,)),
        ("InternetGatewayDevice.LANDevice.{i}.LANEthernetInterfaceConfig.{i}.", (1, 2, 3, 4)),
        ("InternetGatewayDevice.LANDevice.{i}.WLANConfiguration.{i}.", (1, 2)),
        ("InternetGatewayDevice.LANDevice.{i}.Hosts.", ()),
        ("InternetGatewayDevice.LANDevice.{i}.Hosts.Host.{i}.", (1, 2)),
        ("InternetGatewayDevice.WANDevice.{i}.", (1,)),
        ("InternetGatewayDevice.WANDevice.{i}.WANCommonInterfaceConfig.", ()),
        ("InternetGatewayDevice.WANDevice.{i}.WANEthernetInterfaceConfig.", ()),
        ("InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.", (1,)),
        ("InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.", (1,)),
        (
            "InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}"
            ".PortMapping.{i}.",
            (1,),
        ),
        ("InternetGatewayDevice.IPPingDiagnostics.", ()),
        ("InternetGatewayDevice.TraceRouteDiagnostics.", ()),
        ("InternetGatewayDevice.TraceRouteDiagnostics.RouteHops.{i}.", (1, 2, 3)),
        ("InternetGatewayDevice.DownloadDiagnostics.", ()),
        ("InternetGatewayDevice.UploadDiagnostics.", ()),
        ("InternetGatewayDevice.SoftwareModules.", ()),
        ("InternetGatewayDevice.SoftwareModules.ExecEnv.{i}.", (1,)),
        ("InternetGatewayDevice.SoftwareModules.DeploymentUnit.{i}.", ()),
        ("InternetGatewayDevice.SoftwareModules.ExecutionUnit.{i}.", ()),
    ),
}

# The BBF model each template is extracted from; the repository carries them xz-compressed
# under conformance/datamodels/ (``<name>.xz``), and the builder reads either form.
SOURCES = {"tr181": "tr-181-2-17-0-cwmp-full.xml", "tr098": "tr-098-1-8-0-full.xml"}


def model_file(folder: Path, source: str) -> Path | None:
    """``folder/source``, else ``folder/source.xz``, else None."""
    for candidate in (folder / source, folder / f"{source}.xz"):
        if candidate.is_file():
            return candidate
    return None


_MAC_BASE = "00:D0:9E:00:00:"

# Curated values (instantiated names); everything else comes from the model's default,
# a status-like enumeration value, or the type's zero value.
_COMMON_VALUES: dict[str, str] = {
    "DeviceInfo.Manufacturer": "Acme Networks",
    "DeviceInfo.ManufacturerOUI": "00D09E",
    "DeviceInfo.Description": "Acme dual-band home gateway",
    "DeviceInfo.SerialNumber": "SIM000000",
    "DeviceInfo.HardwareVersion": "HW-1.0",
    "DeviceInfo.SoftwareVersion": "1.0.0",
    "DeviceInfo.FirstUseDate": "2024-01-01T00:00:00Z",
    "ManagementServer.EnableCWMP": "true",
    "ManagementServer.URL": "http://127.0.0.1:7547/",
    "ManagementServer.PeriodicInformEnable": "true",
    "ManagementServer.PeriodicInformInterval": "300",
    "ManagementServer.ConnectionRequestURL": "http://127.0.0.1:7548/SIM000000",
    "ManagementServer.CWMPRetryMinimumWaitInterval": "5",
    "ManagementServer.CWMPRetryIntervalMultiplier": "2000",
    "ManagementServer.SupportedConnReqMethods": "HTTP",
    "ManagementServer.STUNServerPort": "3478",
    "ManagementServer.DefaultActiveNotificationThrottle": "0",
    "Time.Enable": "true",
    "Time.Status": "Synchronized",
    "Time.NTPServer1": "pool.ntp.org",
    "Time.NTPServer2": "time.example.net",
    # The one execution environment of SoftwareModules (TR-157).
    "SoftwareModules.ExecEnv.1.Name": "apps",
    "SoftwareModules.ExecEnv.1.Type": "Linux Container",
    "SoftwareModules.ExecEnv.1.Vendor": "Acme Networks",
    "SoftwareModules.ExecEnv.1.Version": "1.0",
}

_VALUES: dict[str, dict[str, str]] = {
    "tr181": {
        "Device.RootDataModelVersion": "2.17",
        "Device.DeviceInfo.ModelName": "HG-181 Home Gateway",
        "Device.DeviceInfo.ModelNumber": "HG181",
        "Device.DeviceInfo.ProductClass": "HG-181",
        "Device.DeviceInfo.HostName": "acme-gateway",
        "Device.DeviceInfo.MemoryStatus.Total": "262144",
        "Device.DeviceInfo.MemoryStatus.Free": "131072",
        "Device.DeviceInfo.MemoryStatus.TotalPersistent": "65536",
        "Device.DeviceInfo.MemoryStatus.FreePersistent": "32768",
        "Device.ManagementServer.InstanceMode": "InstanceNumber",
        "Device.ManagementServer.HTTPConnectionRequestEnable": "true",
        # The server table is the one way cpe_sim.xmpp finds its server (no DNS here).
        "Device.XMPP.SupportedServerConnectAlgorithms": "ServerTable",
        "Device.XMPP.Connection.1.Enable": "false",
        "Device.XMPP.Connection.1.Status": "Disabled",
        "Device.XMPP.Connection.1.ServerConnectAlgorithm": "ServerTable",
        "Device.XMPP.Connection.1.Server.1.Enable": "false",
        "Device.Time.LocalTimeZone": "UTC",
        "Device.WiFi.Radio.1.Enable": "true",
        "Device.WiFi.Radio.1.Name": "wl0",
        "Device.WiFi.Radio.1.SupportedFrequencyBands": "2.4GHz",
        "Device.WiFi.Radio.1.OperatingFrequencyBand": "2.4GHz",
        "Device.WiFi.Radio.1.SupportedStandards": "b,g,n,ax",
        "Device.WiFi.Radio.1.OperatingStandards": "g,n,ax",
        "Device.WiFi.Radio.1.PossibleChannels": "1-13",
        "Device.WiFi.Radio.1.ChannelsInUse": "6",
        "Device.WiFi.Radio.1.Channel": "6",
        "Device.WiFi.Radio.1.MaxBitRate": "574",
        "Device.WiFi.Radio.1.OperatingChannelBandwidth": "20MHz",
        "Device.WiFi.Radio.1.CurrentOperatingChannelBandwidth": "20MHz",
        "Device.WiFi.Radio.1.SupportedOperatingChannelBandwidths": "20MHz,40MHz",
        "Device.WiFi.Radio.2.Enable": "true",
        "Device.WiFi.Radio.2.Name": "wl1",
        "Device.WiFi.Radio.2.SupportedFrequencyBands": "5GHz",
        "Device.WiFi.Radio.2.OperatingFrequencyBand": "5GHz",
        "Device.WiFi.Radio.2.SupportedStandards": "a,n,ac,ax",
        "Device.WiFi.Radio.2.OperatingStandards": "a,n,ac,ax",
        "Device.WiFi.Radio.2.PossibleChannels": "36,40,44,48,52,56,60,64,100,104,108,112",
        "Device.WiFi.Radio.2.ChannelsInUse": "36",
        "Device.WiFi.Radio.2.Channel": "36",
        "Device.WiFi.Radio.2.MaxBitRate": "2402",
        "Device.WiFi.Radio.2.OperatingChannelBandwidth": "80MHz",
        "Device.WiFi.Radio.2.CurrentOperatingChannelBandwidth": "80MHz",
        "Device.WiFi.Radio.2.SupportedOperatingChannelBandwidths": "20MHz,40MHz,80MHz",
        "Device.WiFi.SSID.1.Enable": "true",
        "Device.WiFi.SSID.1.Name": "wl0",
        "Device.WiFi.SSID.1.SSID": "Acme-2G",
        "Device.WiFi.SSID.1.LowerLayers": "Device.WiFi.Radio.1.",
        "Device.WiFi.SSID.1.BSSID": _MAC_BASE + "21",
        "Device.WiFi.SSID.1.MACAddress": _MAC_BASE + "21",
        "Device.WiFi.SSID.2.Enable": "true",
        "Device.WiFi.SSID.2.Name": "wl1",
        "Device.WiFi.SSID.2.SSID": "Acme-5G",
        "Device.WiFi.SSID.2.LowerLayers": "Device.WiFi.Radio.2.",
        "Device.WiFi.SSID.2.BSSID": _MAC_BASE + "22",
        "Device.WiFi.SSID.2.MACAddress": _MAC_BASE + "22",
        "Device.WiFi.AccessPoint.1.Enable": "true",
        "Device.WiFi.AccessPoint.1.SSIDReference": "Device.WiFi.SSID.1.",
        "Device.WiFi.AccessPoint.1.SSIDAdvertisementEnabled": "true",
        "Device.WiFi.AccessPoint.1.MaxAllowedAssociations": "32",
        "Device.WiFi.AccessPoint.1.Security.ModesSupported": (
            "None,WPA2-Personal,WPA3-Personal,WPA2-WPA3-Personal"
        ),
        "Device.WiFi.AccessPoint.1.Security.ModeEnabled": "WPA2-Personal",
        "Device.WiFi.AccessPoint.1.Security.KeyPassphrase": "acme-wifi-secret",
        "Device.WiFi.AccessPoint.2.Enable": "true",
        "Device.WiFi.AccessPoint.2.SSIDReference": "Device.WiFi.SSID.2.",
        "Device.WiFi.AccessPoint.2.SSIDAdvertisementEnabled": "true",
        "Device.WiFi.AccessPoint.2.MaxAllowedAssociations": "32",
        "Device.WiFi.AccessPoint.2.Security.ModesSupported": (
            "None,WPA2-Personal,WPA3-Personal,WPA2-WPA3-Personal"
        ),
        "Device.WiFi.AccessPoint.2.Security.ModeEnabled": "WPA2-WPA3-Personal",
        "Device.WiFi.AccessPoint.2.Security.KeyPassphrase": "acme-wifi-secret",
        "Device.IP.IPv4Capable": "true",
        "Device.IP.IPv4Enable": "true",
        "Device.IP.IPv4Status": "Enabled",
        "Device.IP.Interface.1.Enable": "true",
        "Device.IP.Interface.1.IPv4Enable": "true",
        "Device.IP.Interface.1.Name": "br-lan",
        "Device.IP.Interface.1.LowerLayers": "Device.Ethernet.Interface.1.",
        "Device.IP.Interface.1.MaxMTUSize": "1500",
        "Device.IP.Interface.1.IPv4Address.1.Enable": "true",
        "Device.IP.Interface.1.IPv4Address.1.IPAddress": "192.168.1.1",
        "Device.IP.Interface.1.IPv4Address.1.SubnetMask": "255.255.255.0",
        "Device.IP.Interface.1.IPv4Address.1.AddressingType": "Static",
        "Device.IP.Interface.2.Enable": "true",
        "Device.IP.Interface.2.IPv4Enable": "true",
        "Device.IP.Interface.2.Name": "wan",
        "Device.IP.Interface.2.MaxMTUSize": "1500",
        "Device.IP.Interface.2.IPv4Address.1.Enable": "true",
        "Device.IP.Interface.2.IPv4Address.1.IPAddress": "203.0.113.10",
        "Device.IP.Interface.2.IPv4Address.1.SubnetMask": "255.255.255.0",
        "Device.IP.Interface.2.IPv4Address.1.AddressingType": "DHCP",
        "Device.DHCPv4.Server.Enable": "true",
        "Device.DHCPv4.Server.Pool.1.Enable": "true",
        "Device.DHCPv4.Server.Pool.1.Interface": "Device.IP.Interface.1.",
        "Device.DHCPv4.Server.Pool.1.MinAddress": "192.168.1.100",
        "Device.DHCPv4.Server.Pool.1.MaxAddress": "192.168.1.200",
        "Device.DHCPv4.Server.Pool.1.SubnetMask": "255.255.255.0",
        "Device.DHCPv4.Server.Pool.1.DNSServers": "192.168.1.1",
        "Device.DHCPv4.Server.Pool.1.DomainName": "lan",
        "Device.DHCPv4.Server.Pool.1.IPRouters": "192.168.1.1",
        "Device.DHCPv4.Server.Pool.1.LeaseTime": "86400",
        "Device.Hosts.Host.1.PhysAddress": "AA:BB:CC:00:00:01",
        "Device.Hosts.Host.1.IPAddress": "192.168.1.100",
        "Device.Hosts.Host.1.HostName": "laptop",
        "Device.Hosts.Host.1.Active": "true",
        "Device.Hosts.Host.1.Layer3Interface": "Device.IP.Interface.1.",
        "Device.Hosts.Host.2.PhysAddress": "AA:BB:CC:00:00:02",
        "Device.Hosts.Host.2.IPAddress": "192.168.1.101",
        "Device.Hosts.Host.2.HostName": "phone",
        "Device.Hosts.Host.2.Active": "true",
        "Device.Hosts.Host.2.Layer3Interface": "Device.IP.Interface.1.",
        "Device.DNS.Client.Enable": "true",
        "Device.DNS.Client.Server.1.Enable": "true",
        "Device.DNS.Client.Server.1.DNSServer": "198.51.100.53",
        "Device.DNS.Client.Server.1.Interface": "Device.IP.Interface.2.",
        "Device.DNS.Client.Server.2.Enable": "true",
        "Device.DNS.Client.Server.2.DNSServer": "198.51.100.54",
        "Device.DNS.Client.Server.2.Interface": "Device.IP.Interface.2.",
        "Device.NAT.MaxNumberOfPortMappings": "32",
        "Device.NAT.InterfaceSetting.1.Enable": "true",
        "Device.NAT.InterfaceSetting.1.Interface": "Device.IP.Interface.2.",
        "Device.NAT.PortMapping.1.Enable": "true",
        "Device.NAT.PortMapping.1.Interface": "Device.IP.Interface.2.",
        "Device.NAT.PortMapping.1.ExternalPort": "8080",
        "Device.NAT.PortMapping.1.InternalPort": "80",
        "Device.NAT.PortMapping.1.Protocol": "TCP",
        "Device.NAT.PortMapping.1.InternalClient": "192.168.1.100",
        "Device.NAT.PortMapping.1.Description": "web server",
    },
    "tr098": {
        "InternetGatewayDevice.DeviceSummary": (
            "InternetGatewayDevice:1.4[](Baseline:1, EthernetLAN:1, WiFiLAN:1, Time:1)"
        ),
        "InternetGatewayDevice.DeviceInfo.ModelName": "HG-098 Home Gateway",
        "InternetGatewayDevice.DeviceInfo.ModelNumber": "HG098",
        "InternetGatewayDevice.DeviceInfo.ProductClass": "HG-098",
        "InternetGatewayDevice.DeviceInfo.SpecVersion": "1.0",
        "InternetGatewayDevice.ManagementServer.InstanceMode": "InstanceNumber",
        "InternetGatewayDevice.Time.LocalTimeZoneName": "UTC",
        "InternetGatewayDevice.Layer3Forwarding.DefaultConnectionService": (
            "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ),
        "InternetGatewayDevice.Layer3Forwarding.Forwarding.1.Enable": "true",
        "InternetGatewayDevice.Layer3Forwarding.Forwarding.1.GatewayIPAddress": "203.0.113.1",
        "InternetGatewayDevice.Layer3Forwarding.Forwarding.1.Interface": (
            "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ),
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.MACAddress": _MAC_BASE + "01",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.DHCPServerConfigurable": (
            "true"
        ),
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.DHCPServerEnable": "true",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.MinAddress": "192.168.1.100",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.MaxAddress": "192.168.1.200",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.SubnetMask": "255.255.255.0",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.DNSServers": "192.168.1.1",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.DomainName": "lan",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.IPRouters": "192.168.1.1",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.DHCPLeaseTime": "86400",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.IPInterface.1.Enable": "true",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.IPInterface.1"
        ".IPInterfaceIPAddress": "192.168.1.1",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.IPInterface.1"
        ".IPInterfaceSubnetMask": "255.255.255.0",
        "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.IPInterface.1"
        ".IPInterfaceAddressingType": "Static",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.Enable": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.Name": "wl0",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.BSSID": _MAC_BASE + "21",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.Channel": "6",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID": "Acme-2G",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.BeaconType": "11i",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.Standard": "g",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.KeyPassphrase": "acme-wifi-secret",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.PossibleChannels": "1-13",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.ChannelsInUse": "6",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSIDAdvertisementEnabled": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.BeaconAdvertisementEnabled": (
            "true"
        ),
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.RadioEnabled": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.AutoChannelEnable": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.TransmitPower": "100",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.TransmitPowerSupported": (
            "25,50,75,100"
        ),
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.Enable": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.Name": "wl1",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.BSSID": _MAC_BASE + "22",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.Channel": "36",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.SSID": "Acme-5G",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.BeaconType": "11i",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.Standard": "a",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.KeyPassphrase": "acme-wifi-secret",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.PossibleChannels": (
            "36,40,44,48,52,56,60,64"
        ),
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.ChannelsInUse": "36",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.SSIDAdvertisementEnabled": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.BeaconAdvertisementEnabled": (
            "true"
        ),
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.RadioEnabled": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.AutoChannelEnable": "true",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.TransmitPower": "100",
        "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.TransmitPowerSupported": (
            "25,50,75,100"
        ),
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.1.IPAddress": "192.168.1.100",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.1.MACAddress": "AA:BB:CC:00:00:01",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.1.HostName": "laptop",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.1.Active": "true",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.1.LeaseTimeRemaining": "3600",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.2.IPAddress": "192.168.1.101",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.2.MACAddress": "AA:BB:CC:00:00:02",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.2.HostName": "phone",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.2.Active": "true",
        "InternetGatewayDevice.LANDevice.1.Hosts.Host.2.LeaseTimeRemaining": "3600",
        "InternetGatewayDevice.WANDevice.1.WANCommonInterfaceConfig.EnabledForInternet": "true",
        "InternetGatewayDevice.WANDevice.1.WANCommonInterfaceConfig.Layer1UpstreamMaxBitRate": (
            "100000000"
        ),
        "InternetGatewayDevice.WANDevice.1.WANCommonInterfaceConfig"
        ".Layer1DownstreamMaxBitRate": "1000000000",
        "InternetGatewayDevice.WANDevice.1.WANEthernetInterfaceConfig.Enable": "true",
        "InternetGatewayDevice.WANDevice.1.WANEthernetInterfaceConfig.MACAddress": (
            _MAC_BASE + "10"
        ),
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.Enable": (
            "true"
        ),
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.Name": ("wan"),
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".NATEnabled": "true",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".ExternalIPAddress": "203.0.113.10",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".SubnetMask": "255.255.255.0",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".DefaultGateway": "203.0.113.1",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".DNSEnabled": "true",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".DNSServers": "198.51.100.53,198.51.100.54",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".MaxMTUSize": "1500",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".MACAddress": _MAC_BASE + "10",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".PortMapping.1.PortMappingEnabled": "true",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".PortMapping.1.ExternalPort": "8080",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".PortMapping.1.InternalPort": "80",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".PortMapping.1.PortMappingProtocol": "TCP",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".PortMapping.1.InternalClient": "192.168.1.100",
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1"
        ".PortMapping.1.PortMappingDescription": "web server",
    },
}

# Status-like enumerations: the value a working gateway reports.
_PREFERRED_ENUM = ("Up", "Enabled", "Connected", "Synchronized", "Auto", "IP_Routed", "Normal")


def _curated(key: str, root: str) -> dict[str, str]:
    values = {root + k: v for k, v in _COMMON_VALUES.items()}
    values.update(_VALUES[key])
    return values


@dataclass
class _Syntax:
    type: str | None  # None: not representable in CWMP (decimal...)
    facets: dict[str, Any]


def _facets_of(el: Any) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    enum = [e.get("value") for e in el.findall("enumeration")]
    if enum:
        facets["enum"] = enum
    ranges = []
    for r in el.findall("range"):
        lo, hi = r.get("minInclusive"), r.get("maxInclusive")
        ranges.append([int(lo) if lo is not None else None, int(hi) if hi is not None else None])
    if ranges:
        facets["ranges"] = ranges
    sizes = [int(s.get("maxLength")) for s in el.findall("size") if s.get("maxLength")]
    if sizes:
        facets["maxLength"] = max(sizes)
    return facets


class _ModelReader:
    """Resolves BBF syntax (primitive types and named dataTypes) of one XML document."""

    def __init__(self, doc: Any) -> None:
        self.datatypes = {d.get("name"): d for d in doc.getroot().findall("dataType")}

    def datatype(self, name: str) -> _Syntax:
        el = self.datatypes[name]
        for child in el:
            if isinstance(child.tag, str) and child.tag in (*XSD_TYPES, "decimal"):
                t = child.tag if child.tag in XSD_TYPES else None
                return _Syntax(t, _facets_of(child))
        base = el.get("base")
        if base is None:
            raise ValueError(f"dataType {name} has neither a base nor a primitive type")
        inherited = self.datatype(base)
        return _Syntax(inherited.type, {**inherited.facets, **_facets_of(el)})

    def syntax(self, syntax: Any) -> _Syntax:
        for child in syntax:
            if not isinstance(child.tag, str):
                continue
            if child.tag == "dataType":
                resolved = self.datatype(child.get("ref") or child.get("base"))
                return _Syntax(resolved.type, {**resolved.facets, **_facets_of(child)})
            if child.tag in XSD_TYPES:
                return _Syntax(child.tag, _facets_of(child))
            if child.tag == "decimal":
                return _Syntax(None, {})
        raise ValueError("syntax without a type")


def describe_parameter(reader: _ModelReader, param: Any) -> dict[str, Any] | None:
    """The template definition of one BBF ``<parameter>``, None if not representable."""
    syntax = param.find("syntax")
    if param.get("status") in ("deleted", "obsoleted") or syntax is None:
        return None
    if syntax.get("command") == "true":
        return None  # a write-only trigger (Reset...), not state
    resolved = reader.syntax(syntax)
    if resolved.type is None:
        return None
    is_list = syntax.find("list") is not None
    d: dict[str, Any] = {
        # A list travels as a comma-separated string whatever its item type (TR-106).
        "type": "string" if is_list else resolved.type,
        "writable": param.get("access") == "readWrite",
    }
    if syntax.get("hidden") == "true" or syntax.get("secured") == "true":
        d["hidden"] = True
    if param.get("forcedInform") == "true":
        d["forced"] = True
    if param.get("activeNotify") in FORCED_ACTIVE_NOTIFY:
        d["activeNotify"] = param.get("activeNotify")
    if is_list:
        d["list"] = True
        list_el = syntax.find("list")
        sizes = [int(s.get("maxLength")) for s in list_el.findall("size") if s.get("maxLength")]
        if sizes:
            d["maxLength"] = max(sizes)
        if resolved.facets.get("enum"):
            d["enum"] = resolved.facets["enum"]
    elif d["type"] == "string":
        for key in ("enum", "maxLength"):
            if key in resolved.facets:
                d[key] = resolved.facets[key]
    elif d["type"] in INT_RANGES and "ranges" in resolved.facets:
        d["ranges"] = resolved.facets["ranges"]
    default_el = syntax.find("default")
    d["default"] = _pick_default(d, default_el.get("value") if default_el is not None else None)
    return d


def _pdef(d: Mapping[str, Any]) -> ParamDef:
    return ParamDef(
        type=d["type"],
        writable=d["writable"],
        default="",
        is_list=d.get("list", False),
        enum=tuple(d.get("enum", ())),
        ranges=tuple((r[0], r[1]) for r in d.get("ranges", ())),
        max_length=d.get("maxLength"),
    )


def _valid(d: Mapping[str, Any], value: str) -> bool:
    normalized, code = normalize_value(_pdef(d), value)
    return code == 0 and normalized == value


def _pick_default(d: Mapping[str, Any], model_default: str | None) -> str:
    if model_default is not None and _valid(d, model_default):
        return model_default
    if d.get("enum") and not d.get("list"):
        for preferred in _PREFERRED_ENUM:
            if preferred in d["enum"]:
                return str(preferred)
        return str(d["enum"][0])
    value = _TYPE_DEFAULTS[d["type"]]
    for lo, _hi in d.get("ranges", ()):
        if lo is not None and not _valid(d, value):
            value = str(lo)
    return value


def build_template(key: str, xml_path: Path) -> dict[str, Any]:
    """Extract the ``SELECTIONS[key]`` subset of the BBF model at ``xml_path`` (.xml or .xz)."""
    from lxml import etree  # only the builder needs the BBF XML

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    with lzma.open(xml_path) if xml_path.suffix == ".xz" else xml_path.open("rb") as f:
        doc = etree.parse(f, parser)
    reader = _ModelReader(doc)
    model = doc.getroot().find("model")
    if model is None:
        raise ValueError(f"{xml_path}: no <model>")
    objects = {o.get("name"): o for o in model.findall("object") if o.get("name")}
    selection = SELECTIONS[key]
    root = selection[0][0]
    curated = _curated(key, root)

    definitions: dict[str, dict[str, Any]] = {}
    tables: dict[str, dict[str, Any]] = {}
    instances: dict[str, list[str]] = {}  # model object path -> instantiated paths
    entries: list[str] = []
    values: dict[str, str] = {}
    selected = {path for path, _ in selection}

    for path, numbers in selection:
        obj = objects.get(path)
        if obj is None:
            raise ValueError(f"{xml_path}: no object {path}")
        parent_model = path.removesuffix("{i}.") if path.endswith("{i}.") else path
        parent_model = parent_model[: parent_model.rstrip(".").rfind(".") + 1]
        if path != root and parent_model not in selected:
            raise ValueError(f"selection lists {path} without its parent {parent_model}")
        if path.endswith("{i}."):
            tables[path] = {"creatable": obj.get("access") == "readWrite"}
            if obj.get("numEntriesParameter"):
                tables[path]["countParameter"] = obj.get("numEntriesParameter")
        params: list[tuple[str, dict[str, Any]]] = []
        for p in obj.findall("parameter"):
            d = describe_parameter(reader, p)
            pname = p.get("name")
            if d is not None and pname:
                params.append((pname, d))
                definitions[path + pname] = d
        # Instantiate under every instance of the parent.
        parents = instances.get(parent_model, [parent_model]) if path != root else [""]
        made: list[str] = []
        for parent in parents:
            if path.endswith("{i}."):
                table_name = path.removesuffix("{i}.")[len(parent_model) :]
                container = parent + table_name
                entries.append(container)
                made.extend(f"{container}{n}." for n in numbers)
            else:
                made.append(parent + path[len(parent_model) :] if path != root else root)
        instances[path] = made
        for inst in made:
            entries.append(inst)
            for pname, d in params:
                name = inst + pname
                entries.append(name)
                values[name] = curated.pop(name) if name in curated else _generated(name, pname, d)

    # Move each object's entries so that the tree order holds (children after parents).
    entries = _tree_order(entries)
    # Count parameters agree with the instances created.
    for table, t in tables.items():
        count = t.get("countParameter")
        if not count:
            continue
        for inst_parent in instances.get(_parent_object(table), [_parent_object(table)]):
            container = inst_parent + table.removesuffix("{i}.")[len(_parent_object(table)) :]
            name = inst_parent + count
            if name in values:
                values[name] = str(
                    sum(
                        1 for e in entries if e.startswith(container) and _is_instance(e, container)
                    )
                )
    if curated:
        raise ValueError(f"curated values for unknown parameters: {sorted(curated)}")
    for name, value in values.items():
        d = definitions[model_path(name)]
        if not _valid(d, value):
            raise ValueError(f"value {value!r} of {name} is not valid for {d}")
    model_name = model.get("name") or ""
    return {
        "root": root,
        "model": model_name,
        "source": xml_path.name.removesuffix(".xz"),
        "definitions": definitions,
        "tables": tables,
        "entries": entries,
        "values": values,
    }


def _parent_object(path: str) -> str:
    base = path.removesuffix("{i}.") if path.endswith("{i}.") else path
    return base[: base.rstrip(".").rfind(".") + 1]


def _is_instance(entry: str, container: str) -> bool:
    rest = entry[len(container) :]
    return rest.endswith(".") and rest[:-1].isdigit()


def _tree_order(entries: list[str]) -> list[str]:
    """Stable order where every entry follows its parent object and precedes the next
    sibling object's subtree (selection order is kept among siblings)."""
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    seen: set[str] = set()
    for e in entries:
        if e in seen:
            continue
        seen.add(e)
        base = e[:-1] if e.endswith(".") else e
        parent = base[: base.rfind(".") + 1]
        if parent == "":
            roots.append(e)
        else:
            children.setdefault(parent, []).append(e)
    out: list[str] = []

    def walk(name: str) -> None:
        out.append(name)
        kids = children.get(name, [])
        # Parameters first, then sub-objects: the usual GPN layout.
        for k in kids:
            if not k.endswith("."):
                out.append(k)
        for k in kids:
            if k.endswith("."):
                walk(k)

    for r in roots:
        walk(r)
    return out


def _generated(name: str, pname: str, d: Mapping[str, Any]) -> str:
    """A plausible value when neither the curated table nor the model gives one."""
    if pname == "Alias":
        # Alias values the CPE assigns itself start with "cpe-" (TR-181 Alias dataType).
        m = re.search(r"\.([A-Za-z0-9]+)\.(\d+)\.Alias$", name)
        if m:
            value = f"cpe-{m.group(1)}{m.group(2)}"
            if _valid(d, value):
                return value
    if pname == "Enable" and d["type"] == "boolean":
        return "true"
    return str(d["default"])


def write_templates(datamodels: Path, out_dir: Path = TEMPLATE_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, source in SOURCES.items():
        path = model_file(datamodels, source)
        if path is None:
            raise FileNotFoundError(f"{datamodels} lacks {source} (or {source}.xz)")
        data = build_template(key, path)
        target = out_dir / f"{key}.json"
        target.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cpe_sim.datamodel conformance/datamodels", file=sys.stderr)
        return 2
    folder = Path(args[0])
    missing = [s for s in SOURCES.values() if model_file(folder, s) is None]
    if missing:
        print(f"error: {folder} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    for path in write_templates(folder):
        template = Template.load(path)
        print(f"{path}: {len(template.params)} parameters, {len(template.objects)} objects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
