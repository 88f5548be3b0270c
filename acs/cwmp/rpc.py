"""CWMP messages as frozen dataclasses, one class per SOAP body element.

The class name is the element's local name (``GetParameterValues``,
``GetParameterValuesResponse``...), so the codec maps between the two without a table.
``Fault`` is the SOAP Fault carrying a ``cwmp:Fault`` detail. Date-times are kept as the
strings seen on the wire: CPEs send malformed ones and the codec must not lose them.
Both sides use these classes: the ACS and the CPE simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNKNOWN_TIME = "0001-01-01T00:00:00Z"


# --- structures -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceId:
    manufacturer: str
    oui: str
    product_class: str
    serial_number: str


@dataclass(frozen=True)
class EventStruct:
    code: str
    command_key: str = ""


@dataclass(frozen=True)
class ParameterValue:
    name: str
    value: str
    # The xsi:type as written on the wire, with the conventional prefix: "xsd:string",
    # "xsd:unsignedInt", "xsd:boolean", "xsd:dateTime", "xsd:base64"...
    type: str = "xsd:string"


@dataclass(frozen=True)
class ParameterInfo:
    name: str
    writable: bool


@dataclass(frozen=True)
class ParameterAttribute:
    name: str
    notification: int
    access_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetParameterAttributesStruct:
    name: str
    notification_change: bool
    notification: int
    access_list_change: bool = False
    access_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class FaultStruct:
    code: int = 0
    string: str = ""


@dataclass(frozen=True)
class SetParameterValuesFault:
    name: str
    code: int
    string: str = ""


# --- RPCs the ACS sends to the CPE, and their responses --------------------------------


@dataclass(frozen=True)
class GetRPCMethods:
    """Sent by either side."""


@dataclass(frozen=True)
class GetRPCMethodsResponse:
    methods: tuple[str, ...]


@dataclass(frozen=True)
class GetParameterNames:
    path: str
    next_level: bool


@dataclass(frozen=True)
class GetParameterNamesResponse:
    parameters: tuple[ParameterInfo, ...]


@dataclass(frozen=True)
class GetParameterValues:
    names: tuple[str, ...]


@dataclass(frozen=True)
class GetParameterValuesResponse:
    parameters: tuple[ParameterValue, ...]


@dataclass(frozen=True)
class SetParameterValues:
    parameters: tuple[ParameterValue, ...]
    parameter_key: str = ""


@dataclass(frozen=True)
class SetParameterValuesResponse:
    status: int


@dataclass(frozen=True)
class GetParameterAttributes:
    names: tuple[str, ...]


@dataclass(frozen=True)
class GetParameterAttributesResponse:
    parameters: tuple[ParameterAttribute, ...]


@dataclass(frozen=True)
class SetParameterAttributes:
    parameters: tuple[SetParameterAttributesStruct, ...]


@dataclass(frozen=True)
class SetParameterAttributesResponse:
    pass


@dataclass(frozen=True)
class AddObject:
    object_name: str
    parameter_key: str = ""


@dataclass(frozen=True)
class AddObjectResponse:
    instance_number: int
    status: int


@dataclass(frozen=True)
class DeleteObject:
    object_name: str
    parameter_key: str = ""


@dataclass(frozen=True)
class DeleteObjectResponse:
    status: int


@dataclass(frozen=True)
class Reboot:
    command_key: str = ""


@dataclass(frozen=True)
class RebootResponse:
    pass


@dataclass(frozen=True)
class FactoryReset:
    pass


@dataclass(frozen=True)
class FactoryResetResponse:
    pass


@dataclass(frozen=True)
class Download:
    command_key: str
    file_type: str
    url: str
    username: str = ""
    password: str = ""
    file_size: int = 0
    target_file_name: str = ""
    delay_seconds: int = 0
    success_url: str = ""
    failure_url: str = ""


@dataclass(frozen=True)
class DownloadResponse:
    status: int
    start_time: str = UNKNOWN_TIME
    complete_time: str = UNKNOWN_TIME


@dataclass(frozen=True)
class Upload:
    command_key: str
    file_type: str
    url: str
    username: str = ""
    password: str = ""
    delay_seconds: int = 0


@dataclass(frozen=True)
class UploadResponse:
    status: int
    start_time: str = UNKNOWN_TIME
    complete_time: str = UNKNOWN_TIME


@dataclass(frozen=True)
class QueuedTransfer:
    """A transfer the CPE has queued or under way (QueuedTransferStruct, A.4.1.1)."""

    command_key: str
    state: int  # 1 not yet started, 2 in progress, 3 completed (finishing up)


@dataclass(frozen=True)
class GetQueuedTransfers:
    pass


@dataclass(frozen=True)
class GetQueuedTransfersResponse:
    transfers: tuple[QueuedTransfer, ...]


@dataclass(frozen=True)
class AllQueuedTransfer:
    """A transfer the CPE has queued or under way, whoever asked for it
    (AllQueuedTransferStruct, A.4.1.7)."""

    command_key: str
    state: int  # 1 not yet started, 2 in progress, 3 completed (finishing up)
    is_download: bool
    file_type: str
    file_size: int = 0
    target_file_name: str = ""


@dataclass(frozen=True)
class GetAllQueuedTransfers:
    pass


@dataclass(frozen=True)
class GetAllQueuedTransfersResponse:
    transfers: tuple[AllQueuedTransfer, ...]


@dataclass(frozen=True)
class TimeWindow:
    """When a scheduled download may happen (TimeWindowStruct, A.4.1.8): seconds from the
    RPC's receipt; ``mode`` "1 At Any Time", "2 Immediately", "3 When Idle", "4
    Confirmation Needed" or "X <OUI> <name>"; ``max_retries`` -1 = the CPE decides."""

    window_start: int
    window_end: int
    mode: str = "1 At Any Time"
    user_message: str = ""
    max_retries: int = -1


@dataclass(frozen=True)
class ScheduleDownload:
    command_key: str
    file_type: str
    url: str
    time_windows: tuple[TimeWindow, ...]
    username: str = ""
    password: str = ""
    file_size: int = 0
    target_file_name: str = ""


@dataclass(frozen=True)
class ScheduleDownloadResponse:
    pass


@dataclass(frozen=True)
class CancelTransfer:
    command_key: str


@dataclass(frozen=True)
class CancelTransferResponse:
    pass


@dataclass(frozen=True)
class InstallOp:
    """Install a deployment unit from ``url`` (InstallOpStruct of a ChangeDUState,
    A.4.1.10); an empty string is an optional field left out (the UUID then is the CPE's to
    compute)."""

    url: str
    uuid: str = ""
    username: str = ""
    password: str = ""
    execution_env_ref: str = ""


@dataclass(frozen=True)
class UpdateOp:
    """Update the deployment unit ``uuid`` (or the one installed from ``url``; neither:
    every unit) to ``version`` (UpdateOpStruct)."""

    uuid: str = ""
    version: str = ""
    url: str = ""
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class UninstallOp:
    """Uninstall the deployment unit ``uuid`` (UninstallOpStruct)."""

    uuid: str
    version: str = ""
    execution_env_ref: str = ""


# The concrete OperationStructs of a ChangeDUState, by their xsi:type (a ChangeDUState's
# Operations are typed on the wire, not a SOAP array).
DUOperation = InstallOp | UpdateOp | UninstallOp
DU_OPERATION_TYPES: dict[str, type] = {
    "InstallOpStruct": InstallOp,
    "UpdateOpStruct": UpdateOp,
    "UninstallOpStruct": UninstallOp,
}


@dataclass(frozen=True)
class ChangeDUState:
    operations: tuple[DUOperation, ...]
    command_key: str = ""


@dataclass(frozen=True)
class ChangeDUStateResponse:
    pass


@dataclass(frozen=True)
class OpResult:
    """What one deployment unit operation did (OpResultStruct; with
    ``operation_performed`` "Install", "Update", "Uninstall" or a vendor's, the
    AutonOpResultStruct of an AutonomousDUStateChangeComplete)."""

    uuid: str
    deployment_unit_ref: str
    version: str
    current_state: str  # "Installed", "Uninstalled" or "Failed"
    resolved: bool
    execution_unit_refs: str  # comma-separated paths (ExecutionUnitRefList)
    start_time: str = UNKNOWN_TIME
    complete_time: str = UNKNOWN_TIME
    fault: FaultStruct = field(default_factory=FaultStruct)
    operation_performed: str = ""


@dataclass(frozen=True)
class ScheduleInform:
    delay_seconds: int
    command_key: str = ""


@dataclass(frozen=True)
class ScheduleInformResponse:
    pass


# --- RPCs the CPE sends to the ACS, and their responses --------------------------------


@dataclass(frozen=True)
class Inform:
    device_id: DeviceId
    events: tuple[EventStruct, ...]
    current_time: str
    retry_count: int = 0
    parameters: tuple[ParameterValue, ...] = ()
    max_envelopes: int = 1

    def has_event(self, code: str) -> bool:
        return any(e.code == code for e in self.events)

    def parameter(self, suffix: str) -> str | None:
        """Value of the first parameter whose name ends with ``suffix`` (root-agnostic)."""
        for p in self.parameters:
            if p.name.endswith(suffix):
                return p.value
        return None


@dataclass(frozen=True)
class InformResponse:
    max_envelopes: int = 1


@dataclass(frozen=True)
class TransferComplete:
    command_key: str
    fault: FaultStruct = field(default_factory=FaultStruct)
    start_time: str = UNKNOWN_TIME
    complete_time: str = UNKNOWN_TIME


@dataclass(frozen=True)
class TransferCompleteResponse:
    pass


@dataclass(frozen=True)
class AutonomousTransferComplete:
    announce_url: str
    transfer_url: str
    is_download: bool
    file_type: str
    file_size: int
    target_file_name: str = ""
    fault: FaultStruct = field(default_factory=FaultStruct)
    start_time: str = UNKNOWN_TIME
    complete_time: str = UNKNOWN_TIME


@dataclass(frozen=True)
class AutonomousTransferCompleteResponse:
    pass


@dataclass(frozen=True)
class RequestDownload:
    file_type: str
    file_type_args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RequestDownloadResponse:
    pass


@dataclass(frozen=True)
class DUStateChangeComplete:
    results: tuple[OpResult, ...]
    command_key: str = ""


@dataclass(frozen=True)
class DUStateChangeCompleteResponse:
    pass


@dataclass(frozen=True)
class AutonomousDUStateChangeComplete:
    results: tuple[OpResult, ...]


@dataclass(frozen=True)
class AutonomousDUStateChangeCompleteResponse:
    pass


@dataclass(frozen=True)
class Kicked:
    command: str
    referer: str
    arg: str
    next: str


@dataclass(frozen=True)
class KickedResponse:
    next_url: str


# --- faults ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A SOAP Fault with a cwmp:Fault detail (answers a request, never a response)."""

    code: int
    string: str = ""
    # SOAP faultcode: "Client" when the requester erred, else "Server".
    faultcode: str = "Server"
    set_parameter_values_faults: tuple[SetParameterValuesFault, ...] = ()


Message = (
    GetRPCMethods
    | GetRPCMethodsResponse
    | GetParameterNames
    | GetParameterNamesResponse
    | GetParameterValues
    | GetParameterValuesResponse
    | SetParameterValues
    | SetParameterValuesResponse
    | GetParameterAttributes
    | GetParameterAttributesResponse
    | SetParameterAttributes
    | SetParameterAttributesResponse
    | AddObject
    | AddObjectResponse
    | DeleteObject
    | DeleteObjectResponse
    | Reboot
    | RebootResponse
    | FactoryReset
    | FactoryResetResponse
    | Download
    | DownloadResponse
    | Upload
    | UploadResponse
    | GetQueuedTransfers
    | GetQueuedTransfersResponse
    | ScheduleInform
    | ScheduleInformResponse
    | GetAllQueuedTransfers
    | GetAllQueuedTransfersResponse
    | ScheduleDownload
    | ScheduleDownloadResponse
    | CancelTransfer
    | CancelTransferResponse
    | ChangeDUState
    | ChangeDUStateResponse
    | Inform
    | InformResponse
    | TransferComplete
    | TransferCompleteResponse
    | AutonomousTransferComplete
    | AutonomousTransferCompleteResponse
    | RequestDownload
    | RequestDownloadResponse
    | DUStateChangeComplete
    | DUStateChangeCompleteResponse
    | AutonomousDUStateChangeComplete
    | AutonomousDUStateChangeCompleteResponse
    | Kicked
    | KickedResponse
    | Fault
)

# Requests the ACS sends, mapped to the response the CPE must answer with.
ACS_REQUESTS: dict[type, type] = {
    GetRPCMethods: GetRPCMethodsResponse,
    GetParameterNames: GetParameterNamesResponse,
    GetParameterValues: GetParameterValuesResponse,
    SetParameterValues: SetParameterValuesResponse,
    GetParameterAttributes: GetParameterAttributesResponse,
    SetParameterAttributes: SetParameterAttributesResponse,
    AddObject: AddObjectResponse,
    DeleteObject: DeleteObjectResponse,
    Reboot: RebootResponse,
    FactoryReset: FactoryResetResponse,
    Download: DownloadResponse,
    Upload: UploadResponse,
    GetQueuedTransfers: GetQueuedTransfersResponse,
    ScheduleInform: ScheduleInformResponse,
    GetAllQueuedTransfers: GetAllQueuedTransfersResponse,
    ScheduleDownload: ScheduleDownloadResponse,
    CancelTransfer: CancelTransferResponse,
    ChangeDUState: ChangeDUStateResponse,
}

# Requests the CPE sends, mapped to the response the ACS answers with.
CPE_REQUESTS: dict[type, type] = {
    Inform: InformResponse,
    GetRPCMethods: GetRPCMethodsResponse,
    TransferComplete: TransferCompleteResponse,
    AutonomousTransferComplete: AutonomousTransferCompleteResponse,
    RequestDownload: RequestDownloadResponse,
    DUStateChangeComplete: DUStateChangeCompleteResponse,
    AutonomousDUStateChangeComplete: AutonomousDUStateChangeCompleteResponse,
    Kicked: KickedResponse,
}

# The CWMP version that introduced each method not in 1.0 (every other one is in
# cwmp-1-0.xsd): a session of an older version must neither send nor answer it.
INTRODUCED_IN: dict[type, str] = {
    AutonomousTransferComplete: "1.1",
    AutonomousTransferCompleteResponse: "1.1",
    GetAllQueuedTransfers: "1.1",
    GetAllQueuedTransfersResponse: "1.1",
    ScheduleDownload: "1.2",
    ScheduleDownloadResponse: "1.2",
    CancelTransfer: "1.2",
    CancelTransferResponse: "1.2",
    ChangeDUState: "1.2",
    ChangeDUStateResponse: "1.2",
    DUStateChangeComplete: "1.2",
    DUStateChangeCompleteResponse: "1.2",
    AutonomousDUStateChangeComplete: "1.2",
    AutonomousDUStateChangeCompleteResponse: "1.2",
}

# Every message class by its SOAP element local name.
MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (*ACS_REQUESTS, *ACS_REQUESTS.values(), *CPE_REQUESTS, *CPE_REQUESTS.values())
}
