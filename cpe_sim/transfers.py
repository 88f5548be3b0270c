"""File transfers of a simulated CPE: fetch (with Range resume), upload, fault injection,
and the vendor configuration file (serialize for Upload, validate for a restore Download).

Everything here is side-effect free for the CPE: ``fetch``/``upload`` move bytes through an
injected HTTP client and raise ``TransferFailed`` with the CWMP FaultStruct code; the
``prepare_*`` functions validate a received file and say what installing it would change,
so ``SimulatedCPE`` applies nothing unless the whole transfer succeeded (a failed transfer
leaves the device exactly as it was).

Fault injection (``Faults``) is per CPE (``SimulatedCPE.inject``) or fleet-wide
(``Profile.faults``). An interruption is simulated on the CPE side: the response is cut
after ``interrupt_after`` bytes as if the connection dropped, once per transfer; the CPE
then resumes with ``Range: bytes=N-`` (or reports 9017 when ``resume`` is off), so the file
server's Range handling is what the resume exercises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from cpe_sim import firmware
from cpe_sim.datamodel import DataModel, normalize_value

# FaultStruct codes of TransferComplete (TR-069 A.3.3.1 / spec §5).
DOWNLOAD_FAILURE = 9010
UPLOAD_FAILURE = 9011
AUTH_FAILURE = 9012
CANNOT_CONTACT = 9015
CANNOT_ACCESS = 9016
INCOMPLETE = 9017
CORRUPTED = 9018

# TransferComplete fault codes added after CWMP 1.0 (cwmp-1-1.xsd: 9014-9018, cwmp-1-2.xsd:
# 9019-9020): an older CPE reports the generic download/upload failure instead.
_FAULTS_SINCE = {9014: (1, 1), 9015: (1, 1), 9016: (1, 1), 9017: (1, 1), 9018: (1, 1)}
_FAULTS_SINCE |= {9019: (1, 2), 9020: (1, 2)}

MAX_ATTEMPTS = 4  # the first GET plus up to three resumes
FAULT_STRING_MAX = 256

CONFIG_FORMAT = "cpe-sim-config/1"
CONFIG_FILE_TYPES = ("1 Vendor Configuration File", "3 Vendor Configuration File")
LOG_FILE_TYPES = ("2 Vendor Log File", "4 Vendor Log File")

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class TransferFailed(Exception):
    """A transfer failed with CWMP fault ``code`` (reported in TransferComplete)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message[:FAULT_STRING_MAX]


def transfer_fault_code(code: int, version: tuple[int, int], *, upload: bool) -> int:
    """``code`` as a CPE speaking CWMP ``version`` may report it in TransferComplete."""
    since = _FAULTS_SINCE.get(code)
    if since is None or version >= since:
        return code
    return UPLOAD_FAILURE if upload else DOWNLOAD_FAILURE


# GetAllQueuedTransfers in CWMP 1.1 lists an upload's FileType in one numbering with the
# downloads (cwmp-1-1.xsd AllQueuedTransferStruct); 1.2 lists it as the Upload named it.
_LISTED_UPLOAD_TYPES_1_1 = {
    "1 Vendor Configuration File": "3 Vendor Configuration File",
    "2 Vendor Log File": "4 Vendor Log File",
}


def listed_file_type(file_type: str, is_download: bool, version: tuple[int, int]) -> str:
    """A queued transfer's FileType as GetAllQueuedTransfers lists it in CWMP ``version``."""
    if is_download or version >= (1, 2):
        return file_type
    return _LISTED_UPLOAD_TYPES_1_1.get(file_type, file_type)


@dataclass(frozen=True)
class Faults:
    """Fault-injection switches for a CPE's transfers (all off by default)."""

    corrupt_download: bool = False  # flip payload bytes after the fetch -> 9018
    interrupt_after: int | None = None  # cut the first response after N bytes
    resume: bool = True  # after a cut, resume with Range; False -> 9017
    refuse_download: bool = False  # fail without fetching -> 9010
    fail_upload: bool = False  # fail without sending -> 9011

    def __post_init__(self) -> None:
        if self.interrupt_after is not None and self.interrupt_after < 0:
            raise ValueError(f"interrupt_after must not be negative, not {self.interrupt_after}")


NO_FAULTS = Faults()


# --- the HTTP seam (``cpe.SessionClient`` satisfies it) ---------------------------------------


class Response(Protocol):
    @property
    def code(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    def header(self, name: str) -> str | None: ...


class Client(Protocol):
    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Deferred[Any]: ...


# --- download --------------------------------------------------------------------------


def _status_fault(code: int, what: str) -> TransferFailed:
    if code in (401, 403):
        return TransferFailed(AUTH_FAILURE, f"{what}: file server refused access (HTTP {code})")
    if code in (404, 410):
        return TransferFailed(CANNOT_ACCESS, f"{what}: file not found (HTTP {code})")
    return TransferFailed(DOWNLOAD_FAILURE, f"{what}: file server answered HTTP {code}")


def _content_length(response: Response) -> int | None:
    value = response.header("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _range_start(response: Response) -> int | None:
    match = _CONTENT_RANGE.fullmatch((response.header("content-range") or "").strip())
    return int(match.group(1)) if match else None


async def fetch(
    client: Client,
    url: str,
    *,
    headers: Mapping[str, str],
    file_size: int = 0,
    faults: Faults = NO_FAULTS,
    on_resume: Callable[[int], None] | None = None,
) -> bytes:
    """The whole file at ``url``, resuming with Range after a cut; TransferFailed otherwise.

    Checks each response's body against its Content-Length and the total against
    ``file_size`` (the Download's FileSize, 0 = unknown). ``on_resume(offset)`` is called for
    each partial response (206) the server resumed from.
    """
    if faults.refuse_download:
        raise TransferFailed(DOWNLOAD_FAILURE, "download refused (injected fault)")
    data = b""
    cut_done = False
    for _ in range(MAX_ATTEMPTS):
        request_headers = dict(headers)
        if data:
            request_headers["Range"] = f"bytes={len(data)}-"
        try:
            response: Response = await client.request("GET", url, None, request_headers)
        except Exception as e:
            raise TransferFailed(
                CANNOT_CONTACT, f"cannot reach the file server: {type(e).__name__}"
            ) from None
        if response.code == 206 and data:
            if _range_start(response) != len(data):
                raise TransferFailed(INCOMPLETE, "resume answered from the wrong offset")
            if on_resume is not None:
                on_resume(len(data))
        elif response.code == 200:
            data = b""  # the whole file again (a server that ignores Range starts over)
        elif response.code == 416 and data:
            raise TransferFailed(INCOMPLETE, "file server refused to resume (HTTP 416)")
        else:
            raise _status_fault(response.code, "download failed")
        body = response.body
        cut = False
        limit = faults.interrupt_after
        if limit is not None and not cut_done and len(data) + len(body) > limit:
            body = body[: max(0, limit - len(data))]
            cut = cut_done = True
        declared = _content_length(response)
        data += body
        if cut or (declared is not None and len(body) < declared):
            if not faults.resume:
                raise TransferFailed(INCOMPLETE, f"connection lost after {len(data)} bytes")
            continue
        break
    else:
        raise TransferFailed(INCOMPLETE, f"download incomplete after {MAX_ATTEMPTS} attempts")
    if file_size and len(data) != file_size:
        code = INCOMPLETE if len(data) < file_size else CORRUPTED
        raise TransferFailed(code, f"received {len(data)} bytes, FileSize says {file_size}")
    if faults.corrupt_download:
        data = corrupt(data)
    return data


def corrupt(data: bytes) -> bytes:
    """``data`` with bytes flipped in the middle and at the end (what a bad transfer does)."""
    if not data:
        return data
    out = bytearray(data)
    out[len(out) // 2] ^= 0xFF
    out[-1] ^= 0xFF
    return bytes(out)


def prepare_firmware(data: bytes, file_name: str, *, corrupted: bool = False) -> str | None:
    """The version installing ``data`` yields (None: unknown, keep the current one).

    A file with the ``cpe_sim.firmware`` header must verify; one without it takes its
    version from ``file_name``. ``corrupted`` says the bytes were damaged on purpose: a
    header-less file has no hash to catch it, so the device's own check is simulated.
    """
    try:
        image = firmware.parse_image(data)
    except firmware.ImageError as e:
        raise TransferFailed(CORRUPTED, f"firmware image rejected: {e}") from None
    if image is not None:
        return image.version
    if corrupted:
        raise TransferFailed(CORRUPTED, "firmware image rejected: signature check failed")
    return firmware.version_from_name(file_name)


# --- the vendor configuration file ---------------------------------------------------------


def serialize_config(model: DataModel, serial: str) -> bytes:
    """The CPE's writable configuration as JSON (what a config backup Upload sends)."""
    values: dict[str, str] = {}
    for name in model.names():
        pdef = model.param_def(name)
        if pdef is not None and pdef.writable:
            values[name] = model.get_raw(name) or ""
    document = {
        "format": CONFIG_FORMAT,
        "root": model.root,
        "serial": serial,
        "parameters": values,
    }
    return json.dumps(document, indent=1, sort_keys=True).encode()


def is_config(data: bytes) -> bool:
    """True when ``data`` claims to be a simulator config file (a JSON object)."""
    return data.lstrip()[:1] == b"{"


def prepare_config(model: DataModel, data: bytes) -> dict[str, str]:
    """The parameter changes restoring ``data`` makes; TransferFailed(9018) if invalid.

    All or nothing: an unreadable file, another data-model root, or any unknown,
    read-only or ill-typed parameter rejects the whole file.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise TransferFailed(CORRUPTED, "configuration file is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != CONFIG_FORMAT:
        raise TransferFailed(CORRUPTED, f"configuration file is not {CONFIG_FORMAT}")
    if document.get("root") != model.root:
        raise TransferFailed(CORRUPTED, f"configuration file is not for a {model.root} device")
    parameters = document.get("parameters")
    if not isinstance(parameters, dict):
        raise TransferFailed(CORRUPTED, "configuration file has no parameters object")
    changes: dict[str, str] = {}
    for name, value in parameters.items():
        pdef = model.param_def(name) if isinstance(name, str) else None
        if pdef is None or not pdef.writable or not isinstance(value, str):
            raise TransferFailed(CORRUPTED, f"configuration file cannot set {name!r}"[:200])
        normalized, code = normalize_value(pdef, value)
        if code or normalized is None:
            raise TransferFailed(CORRUPTED, f"configuration file has a bad value for {name}")
        if model.get_raw(name) != normalized:
            changes[name] = normalized
    return changes


def log_file(serial: str, lines: list[str]) -> bytes:
    """A small vendor log file (Upload FileType 2)."""
    return "".join(f"{serial} {line}\n" for line in lines).encode()


# --- upload ----------------------------------------------------------------------------


async def upload(
    client: Client,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    faults: Faults = NO_FAULTS,
) -> None:
    """PUT ``body`` to ``url``; TransferFailed (9011, or 9012 when refused) otherwise."""
    if faults.fail_upload:
        raise TransferFailed(UPLOAD_FAILURE, "upload failed (injected fault)")
    request_headers = {**headers, "Content-Type": "application/octet-stream"}
    try:
        response: Response = await client.request("PUT", url, body, request_headers)
    except Exception as e:
        raise TransferFailed(UPLOAD_FAILURE, f"upload failed: {type(e).__name__}") from None
    if response.code in (401, 403):
        raise TransferFailed(AUTH_FAILURE, f"upload refused (HTTP {response.code})")
    if not 200 <= response.code < 300:
        raise TransferFailed(UPLOAD_FAILURE, f"upload failed (HTTP {response.code})")
