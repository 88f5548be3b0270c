"""TR-143 diagnostics of a simulated CPE: IP ping, trace route, download and upload tests on
either data-model root.

An ACS requests a test by setting the test object's ``DiagnosticsState`` to ``Requested``
(with its parameters); after the session (``requested``) the CPE "runs" it: ``DELAY``
seconds later ``complete`` writes plausible results into the object and sets the state to
``Complete`` (``Error_CannotResolveHostName`` for a host ending in ``.invalid``), and the
CPE informs ``8 DIAGNOSTICS COMPLETE``. No packet is sent: the results are made up from the
test's parameters, the same every run.
"""

from __future__ import annotations

from collections.abc import Iterable

from acs.cwmp import rpc
from cpe_sim.datamodel import DataModel

EVENT = "8 DIAGNOSTICS COMPLETE"
DELAY = 0.2  # seconds a test takes
HOPS = 3  # hops of a trace route (the templates carry three RouteHops instances)

# The test objects, relative to the data-model root.
OBJECTS = {
    "Device.": (
        "IP.Diagnostics.IPPing.",
        "IP.Diagnostics.TraceRoute.",
        "IP.Diagnostics.DownloadDiagnostics.",
        "IP.Diagnostics.UploadDiagnostics.",
    ),
    "InternetGatewayDevice.": (
        "IPPingDiagnostics.",
        "TraceRouteDiagnostics.",
        "DownloadDiagnostics.",
        "UploadDiagnostics.",
    ),
}


def requested(root: str, values: Iterable[rpc.ParameterValue]) -> list[str]:
    """The test objects an accepted SetParameterValues asked to run."""
    objects = {root + relative for relative in OBJECTS.get(root, ())}
    return [
        v.name[: -len("DiagnosticsState")]
        for v in values
        if v.value == "Requested"
        and v.name.endswith(".DiagnosticsState")
        and v.name[: -len("DiagnosticsState")] in objects
    ]


def complete(model: DataModel, obj: str, when: str) -> None:
    """Write the results of the test at ``obj`` (``when``: the time, ISO 8601)."""
    if model.get_raw(f"{obj}DiagnosticsState") != "Requested":
        return  # cancelled meanwhile (a parameter of the test was set again)
    host = model.get_raw(f"{obj}Host") or ""
    if host.endswith(".invalid"):
        _set(model, obj, {"DiagnosticsState": "Error_CannotResolveHostName"})
        return
    results: dict[str, str] = {"DiagnosticsState": "Complete", "IPAddressUsed": "192.168.1.1"}
    if obj.endswith(("IPPing.", "IPPingDiagnostics.")):
        count = model.get_raw(f"{obj}NumberOfRepetitions") or "1"
        results.update(
            SuccessCount=count,
            FailureCount="0",
            AverageResponseTime="12",
            MinimumResponseTime="9",
            MaximumResponseTime="17",
            AverageResponseTimeDetailed="12000",
            MinimumResponseTimeDetailed="9000",
            MaximumResponseTimeDetailed="17000",
        )
    elif obj.endswith(("TraceRoute.", "TraceRouteDiagnostics.")):
        results["ResponseTime"] = "30"
        prefix = "" if obj.startswith("Device.") else "Hop"
        for n in range(1, HOPS + 1):
            hop = f"{obj}RouteHops.{n}.{prefix}"
            results_hop = {
                f"{hop}Host": host if n == HOPS else f"hop{n}.example.net",
                f"{hop}HostAddress": f"10.0.{n}.1",
                f"{hop}ErrorCode": "0",
                f"{hop}RTTimes": f"{n * 5},{n * 5 + 1},{n * 5 + 2}",
            }
            for name, value in results_hop.items():
                if model.param_def(name) is not None:
                    model.set_raw(name, value)
    else:
        size = model.get_raw(f"{obj}TestFileLength") or "1048576"
        results.update(
            ROMTime=when,
            BOMTime=when,
            EOMTime=when,
            TCPOpenRequestTime=when,
            TCPOpenResponseTime=when,
            TestBytesReceived="1048576",
            TotalBytesReceived="1049600",
            TestBytesSent=size,
            TotalBytesSent=size,
        )
    _set(model, obj, results)


def _set(model: DataModel, obj: str, values: dict[str, str]) -> None:
    """The values the test object has (the roots' objects differ), set as results."""
    for name, value in values.items():
        if model.param_def(obj + name) is not None:
            model.set_raw(obj + name, value)
