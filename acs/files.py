"""The file side of the appliance: signed expiring URLs, the ``[files]`` listener, blobs on disk.

Owns:

- :class:`UrlSigner`: the per-task URLs handed to CPEs in Download/Upload RPCs. A URL carries
  its task id, an expiry (``exp``, UNIX seconds: now + ``[files] url_ttl``) and ``sig`` =
  HMAC-SHA256(secret, ``"<get|put>|<path>|<task>|<exp>"``), so a leaked URL stops working when
  it expires and cannot be bent to another file, task or method. The secret is kept in the
  database (``Store.server_secret``): URLs survive a restart until they expire.
- :class:`FileServer`: the resource of the ``[files]`` listener. ``GET``/``HEAD`` of firmware
  images (``/firmware/<image>/<filename>``) and backups (``/backup/<task>/<backup>``, a restore)
  with single ``Range`` requests, ``ETag`` (the SHA-256), ``Last-Modified``,
  ``If-None-Match``/``If-Modified-Since``/``If-Range``; ``PUT``/``POST`` of a CPE's configuration
  file (``/backup/<task>``, the Upload RPC). Files are found by id in the database, never by a
  path taken from the URL; there is no listing. Files are streamed by a pull producer, never
  read whole.
- :class:`FileStorage`: the layout of ``[storage] files`` (``firmware/``, ``backups/``) and the
  upload path shared with the firmware API: a body is copied to a temporary file in the target
  directory while its SHA-256 is computed, in a worker thread (a 512 MiB image must not stall
  the reactor), multipart bodies parsed as a stream; the row is then written and the file
  renamed into place in one store transaction.

The listener's site is an ``acs.httplimits.BoundedSite``: bodies over ``max_upload`` are
refused with 413 from their headers, before Twisted buffers them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote, unquote, urlencode, urlsplit

import multipart  # type: ignore[import-untyped]  # streaming form-data parser (via treq)
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from acs.store import IN_PROGRESS, PENDING, Conflict, Store
from acs.store.health import FILES, STORAGE_FULL_RETRY_AFTER, is_storage_full
from acs.store.models import Backup, FirmwareImage

log = Logger(namespace="acs.files")

# Task kinds whose URLs this server honours (acs.tasks owns the kinds themselves).
FIRMWARE_TASK_KIND = "firmware_update"
BACKUP_TASK_KIND = "backup"
RESTORE_TASK_KIND = "restore"
ACTIVE_TASK_STATES = (PENDING, IN_PROGRESS)

SECRET_NAME = "signed_urls"
FIRMWARE_DIR = "firmware"
BACKUP_DIR = "backups"
DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024
CHUNK = 1024 * 1024
SEND_CHUNK = 64 * 1024  # per write to a client: keeps memory per download small
# Text form fields beside the file (name, version...): small, and only a few of them.
MAX_FIELD_BYTES = 4096
MAX_SEGMENTS = 16
# Bytes the full-storage probe writes (and removes) in the files directory, as uploads do.
PROBE_BYTES = 64 * 1024

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ID = re.compile(r"[1-9][0-9]{0,17}")
# A raw (still percent-encoded) URL path segment we are willing to look at.
_SEGMENT = re.compile(r"[A-Za-z0-9._~%-]+")
_HEX = re.compile(r"[0-9a-f]{64}")
# ASCII only: "²".isdigit() is true, and int() refuses it.
_EXPIRY = re.compile(r"[0-9]{1,12}")
_OFFSET = re.compile(r"[0-9]{1,18}")  # a byte offset past any file

ToThread = Callable[..., "Deferred[Any]"]


# --- helpers --------------------------------------------------------------------------------


def safe_filename(text: str | None, default: str) -> str:
    """A file name made of ``[A-Za-z0-9._-]`` only (no separators, no leading dot), at most
    100 characters: safe on disk, in a URL and as a Download's TargetFileName."""
    name = _SAFE.sub("_", Path((text or "").replace("\\", "/")).name).lstrip("._")[:100]
    return name or default


def http_date(ts: float) -> str:
    return formatdate(int(ts), usegmt=True)


def _parse_http_date(text: str) -> float | None:
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def thread_runner(reactor: Any) -> ToThread:
    """Run a blocking function in ``reactor``'s thread pool; a reactor without threads
    (``task.Clock`` in tests) runs it inline."""
    if IReactorThreads.providedBy(reactor):

        def in_thread(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
            pool = reactor.getThreadPool()
            result: Deferred[Any] = deferToThreadPool(reactor, pool, f, *args, **kwargs)
            return result

        return in_thread
    return maybeDeferred


# --- signed URLs ------------------------------------------------------------------------------


class UrlSigner:
    """Makes and checks the signed, expiring URLs of the file server (module docstring)."""

    def __init__(self, secret: bytes, public_url: str, ttl: int, clock: IReactorTime) -> None:
        if not secret:
            raise ValueError("the URL signing secret must not be empty")
        if ttl <= 0:
            raise ValueError("url ttl must be > 0")
        self._secret = secret
        self.base = public_url.rstrip("/")
        self.ttl = ttl
        self.clock: Any = clock  # Any: zope interfaces don't type-check; tests pass a Clock

    # Paths are relative to the file server's root (public_url's own path excluded).
    @staticmethod
    def firmware_path(image: FirmwareImage) -> str:
        return f"/firmware/{image.id}/{quote(image.filename, safe='')}"

    @staticmethod
    def backup_upload_path(task_id: int) -> str:
        return f"/backup/{task_id}"

    @staticmethod
    def backup_download_path(task_id: int, backup: Backup) -> str:
        return f"/backup/{task_id}/{backup.id}"

    def _sig(self, method_class: str, path: str, task_id: int, exp: int) -> str:
        canonical = f"{method_class}|{path}|{task_id}|{exp}".encode()
        return hmac.new(self._secret, canonical, hashlib.sha256).hexdigest()

    def _expiry(self) -> int:
        return int(self.clock.seconds()) + self.ttl

    def firmware_url(self, task_id: int, image: FirmwareImage) -> str:
        """The URL a CPE downloads ``image`` from for task ``task_id`` (GET/HEAD, Range)."""
        path = self.firmware_path(image)
        exp = self._expiry()
        query = urlencode(
            {"task": task_id, "exp": exp, "sig": self._sig("get", path, task_id, exp)}
        )
        return f"{self.base}{path}?{query}"

    def backup_upload_url(self, task_id: int) -> str:
        """Where the CPE PUTs (or POSTs) its configuration file for backup task ``task_id``."""
        path = self.backup_upload_path(task_id)
        exp = self._expiry()
        query = urlencode({"exp": exp, "sig": self._sig("put", path, task_id, exp)})
        return f"{self.base}{path}?{query}"

    def backup_download_url(self, task_id: int, backup: Backup) -> str:
        """The URL a CPE fetches ``backup`` from for restore task ``task_id``."""
        path = self.backup_download_path(task_id, backup)
        exp = self._expiry()
        query = urlencode({"exp": exp, "sig": self._sig("get", path, task_id, exp)})
        return f"{self.base}{path}?{query}"

    def check(self, method_class: str, path: str, task_id: int, exp: str, sig: str) -> str | None:
        """None when ``sig`` is valid and ``exp`` not past, else why the URL is refused."""
        if not exp or not sig:
            return "unsigned URL"
        if not _EXPIRY.fullmatch(exp) or not _HEX.fullmatch(sig):
            return "malformed signature"
        expected = self._sig(method_class, path, task_id, int(exp))
        if not hmac.compare_digest(expected, sig):
            return "bad signature"
        if self.clock.seconds() > int(exp):
            return "expired URL"
        return None


# --- uploads: stream to a temporary file while hashing (runs in a worker thread) -------------


class UploadError(Exception):
    """An upload refused: ``status`` 400 (malformed) or 413 (too large)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass
class Received:
    """An uploaded body stored in a temporary file (``path``; None when no file part came)."""

    path: Path | None
    size: int = 0
    sha256: str = ""
    filename: str | None = None  # the client's file name (multipart), if any
    fields: dict[str, str] = field(default_factory=dict)


def _open_temp(directory: Path) -> tuple[IO[bytes], Path]:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by _Sink.close
        dir=directory, prefix=".upload-", suffix=".part", delete=False
    )
    return cast(IO[bytes], handle), Path(handle.name)


class _Sink:
    """A temporary file being written and hashed, with a size limit."""

    def __init__(self, directory: Path, max_size: int) -> None:
        self.handle, self.path = _open_temp(directory)
        self.max_size = max_size
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_size:
            raise UploadError(413, f"Upload exceeds the limit of {self.max_size} bytes.")
        self.digest.update(data)
        self.handle.write(data)

    def close(self) -> None:
        self.handle.close()


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    while True:
        data = source.read(CHUNK)
        if not data:
            return
        yield data


def multipart_boundary(content_type: str | None) -> str | None:
    """The boundary of a ``multipart/form-data`` content type; None for any other type."""
    if not content_type:
        return None
    kind, options = multipart.parse_options_header(content_type)
    if kind != "multipart/form-data":
        return None
    boundary = options.get("boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data without a boundary.")
    return str(boundary)


def receive_body(
    source: IO[bytes],
    directory: Path,
    *,
    content_type: str | None,
    max_size: int,
    file_field: str | None = "file",
) -> Received:
    """Copy an upload body into a temporary file in ``directory``, hashing it on the way.

    A ``multipart/form-data`` body is parsed as a stream: the part named ``file_field`` (or,
    with None, the first part that has a file name, else the first part) goes to the file,
    other parts are small text fields. Any other body is the file itself. Blocking: run it in
    a thread. Raises :class:`UploadError`; never leaves a temporary file behind on error.
    """
    directory.mkdir(parents=True, exist_ok=True)
    source.seek(0)
    boundary = multipart_boundary(content_type)
    sink: _Sink | None = None
    try:
        if boundary is None:
            sink = _Sink(directory, max_size)
            for data in _chunks(source):
                sink.write(data)
            sink.close()
            return Received(sink.path, sink.size, sink.digest.hexdigest())
        received = Received(None)
        parser = multipart.PushMultipartParser(
            boundary, max_header_count=8, max_segment_count=MAX_SEGMENTS
        )
        target: _Sink | bytearray | None = None
        field_name = ""
        try:
            for data in itertools.chain(_chunks(source), [b""]):  # b"": end of input
                for event in parser.parse(data):
                    if isinstance(event, multipart.MultipartSegment):
                        field_name = event.name or ""
                        # file_field None: the first part is the file (a CPE's POST).
                        is_file = field_name == file_field if file_field else sink is None
                        if is_file and sink is None:
                            sink = _Sink(directory, max_size)
                            received.filename = event.filename
                            target = sink
                        elif is_file or field_name in received.fields:
                            raise UploadError(400, "Duplicate form field.", field_name or "file")
                        else:
                            target = bytearray()
                    elif isinstance(event, bytes | bytearray):
                        if isinstance(target, _Sink):
                            target.write(bytes(event))
                        elif target is not None:
                            target.extend(event)
                            if len(target) > MAX_FIELD_BYTES:
                                raise UploadError(400, "Form field too long.", field_name)
                    else:  # None: end of the current segment
                        if isinstance(target, bytearray):
                            try:
                                received.fields[field_name] = target.decode("utf-8")
                            except UnicodeDecodeError:
                                raise UploadError(
                                    400, "Form field is not UTF-8.", field_name
                                ) from None
                        target = None
            if not parser.closed:
                raise UploadError(400, "Malformed multipart body: incomplete.")
        except multipart.MultipartError as exc:
            raise UploadError(400, f"Malformed multipart body: {exc}") from None
        if sink is not None:
            sink.close()
            received.path = sink.path
            received.size = sink.size
            received.sha256 = sink.digest.hexdigest()
        return received
    except BaseException:
        if sink is not None:
            try:
                sink.close()  # may fail again (a full disk refuses the buffered rest)
            finally:
                sink.path.unlink(missing_ok=True)
        raise


# --- files on disk ------------------------------------------------------------------------------


class FileStorage:
    """``[storage] files``: ``firmware/<id>-<filename>`` and ``backups/<id>-<filename>``.

    Rows and files change together: a new file is renamed into place inside the transaction
    that writes its row (a failed rename rolls the row back); a deleted row's file is removed
    right after the row is gone.
    """

    def __init__(self, root: str | Path, store: Store, to_thread: ToThread = maybeDeferred) -> None:
        self.root = Path(root)
        self.store = store
        self.to_thread = to_thread
        self.firmware_dir = self.root / FIRMWARE_DIR
        self.backup_dir = self.root / BACKUP_DIR
        for directory in (self.firmware_dir, self.backup_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def firmware_path(self, image: FirmwareImage) -> Path:
        return self.firmware_dir / f"{image.id}-{Path(image.filename).name}"

    def backup_path(self, backup: Backup) -> Path:
        return self.backup_dir / f"{backup.id}-{Path(backup.filename).name}"

    def receive(
        self,
        source: IO[bytes],
        directory: Path,
        *,
        content_type: str | None,
        max_size: int,
        file_field: str | None = "file",
    ) -> Deferred[Received]:
        """:func:`receive_body` in a worker thread; a body refused for lack of space marks the
        files directory full (``Store.health``), one stored clears it."""
        d = self.to_thread(
            receive_body,
            source,
            directory,
            content_type=content_type,
            max_size=max_size,
            file_field=file_field,
        )
        return d.addCallbacks(self._stored, self._not_stored)

    def _stored(self, received: Received) -> Received:
        if received.path is not None:
            self.store.health.wrote(FILES)
        return received

    def _not_stored(self, failure: Failure) -> Failure:
        if is_storage_full(failure.value):
            self.store.health.refused_write(FILES)
        return failure

    def probe_write(self) -> bool:
        """Write and remove ``PROBE_BYTES`` in the files directory the way uploads are
        written: True (and the directory no longer counts as full) if that worked, False if
        it is still full."""
        try:
            sink = _Sink(self.root, PROBE_BYTES)
            try:
                sink.write(bytes(PROBE_BYTES))
            finally:
                try:
                    sink.close()
                finally:
                    sink.path.unlink(missing_ok=True)
        except OSError as exc:
            if is_storage_full(exc):
                return False
            raise
        self.store.health.wrote(FILES)
        return True

    @staticmethod
    def discard(received: Received) -> None:
        if received.path is not None:
            received.path.unlink(missing_ok=True)

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("Cannot remove {path}: {error}", path=str(path), error=str(exc))

    def add_firmware_image(
        self,
        received: Received,
        *,
        name: str,
        version: str,
        filename: str,
        device_type_id: int | None,
        now: float,
        actor: str,
    ) -> FirmwareImage:
        """Record the uploaded image and move its file into place (audited)."""
        assert received.path is not None
        try:
            with self.store.transaction():
                image = self.store.create_firmware_image(
                    name=name,
                    version=version,
                    size=received.size,
                    sha256=received.sha256,
                    filename=filename,
                    device_type_id=device_type_id,
                    now=now,
                )
                os.replace(received.path, self.firmware_path(image))
                self.store.add_history(
                    None,
                    "firmware_image_created",
                    {
                        "firmware_image_id": image.id,
                        "name": name,
                        "version": version,
                        "size": received.size,
                        "sha256": received.sha256,
                    },
                    now=now,
                    actor=actor,
                )
        except BaseException:
            self.discard(received)
            raise
        return image

    def delete_firmware_image(self, image_id: int, *, now: float, actor: str) -> FirmwareImage:
        """Delete row then file; NotFound, or Conflict while a transfer uses the image."""
        image = self.store.delete_firmware_image(image_id, now=now, actor=actor)
        self._remove(self.firmware_path(image))
        return image

    def add_backup(self, received: Received, *, device_id: int, task_id: int, now: float) -> Backup:
        """Record the uploaded configuration of ``device_id`` for ``task_id``. A task's upload
        URL is single-use: Conflict if the task already has its backup (a second upload must
        not replace what the CPE sent first)."""
        assert received.path is not None
        filename = f"device{device_id}-task{task_id}.cfg"
        try:
            with self.store.transaction():
                if self.store.backups_for_task(task_id):
                    raise Conflict("the task already has its backup")
                backup = self.store.create_backup(
                    device_id,
                    task_id=task_id,
                    filename=filename,
                    size=received.size,
                    sha256=received.sha256,
                    now=now,
                )
                os.replace(received.path, self.backup_path(backup))
        except BaseException:
            self.discard(received)
            raise
        return backup

    def delete_backup(self, backup_id: int, *, now: float, actor: str = "acs") -> Backup:
        """Delete row then file; NotFound if unknown."""
        backup = self.store.delete_backup(backup_id, now=now, actor=actor)
        self._remove(self.backup_path(backup))
        return backup

    def delete_device(self, device_id: int, *, now: float, actor: str) -> None:
        """Delete the device (the store cascades its rows, backups included), then the backup
        files that only those rows pointed at. NotFound if unknown."""
        backups = self.store.list_backups(device_id)
        self.store.delete_device(device_id, now=now, actor=actor)
        for backup in backups:
            self._remove(self.backup_path(backup))


# --- the file server ----------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def _used() -> _Refused:
    return _Refused(409, "Conflict: this upload URL was already used (single use)")


def _storage_full() -> _Refused:
    return _Refused(
        503,
        "Storage is full; the file was not stored.",
        {"Retry-After": str(STORAGE_FULL_RETRY_AFTER)},
    )


def _not_found() -> _Refused:
    return _Refused(404, "Not found")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=`` range; None to ignore the header (not bytes,
    several ranges, malformed: RFC 9110 lets a server serve the whole file then). Raises
    _Refused(416) when the range cannot be satisfied."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    # ASCII digits, at most 18 (a byte offset past any file): "²" and a 5000-digit number
    # are malformed, not a crash in int().
    if not dash or not (first_text or last_text):
        return None
    if any(t and not _OFFSET.fullmatch(t) for t in (first_text, last_text)):
        return None
    unsatisfiable = _Refused(416, "Range not satisfiable", {"Content-Range": f"bytes */{size}"})
    if not first_text:  # suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # invalid, not unsatisfiable
    if first >= size:
        raise unsatisfiable
    return first, min(last, size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match semantics: weak comparison against any listed tag, or ``*``."""
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class _FileProducer:
    """A pull producer writing ``length`` bytes of ``handle`` from ``offset``, then finishing
    the request (twisted.web.static's producers, minus a module whose import warns, and
    minus their hang when a file is shorter than expected)."""

    def __init__(self, request: Request, handle: IO[bytes], offset: int, length: int) -> None:
        self.request: Request | None = request
        self.handle = handle
        self.offset = offset
        self.remaining = length

    def start(self) -> None:
        assert self.request is not None
        self.handle.seek(self.offset)
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self.request is None:
            return
        data = self.handle.read(min(SEND_CHUNK, self.remaining))
        if data:
            self.remaining -= len(data)
            # write() may call resumeProducing again before returning (Twisted's producers
            # say so too): state is updated first, and a finished producer ignores the call.
            self.request.write(data)
        if self.request is not None and (self.remaining == 0 or not data):
            request = self.request
            request.unregisterProducer()
            if self.remaining:  # the file shrank: end short, the client sees a broken body
                log.error(
                    "file shorter than announced; {missing} bytes missing", missing=self.remaining
                )
            request.finish()
            self.stopProducing()

    def pauseProducing(self) -> None:
        pass  # a pull producer is only asked for more; nothing to pause

    def stopProducing(self) -> None:
        self.handle.close()
        self.request = None


class FileServer(Resource):
    """The ``[files]`` listener's root resource (see the module docstring for the URL rules).

    Answers: 403 for unsigned, tampered, expired or foreign-task URLs and for tasks that are
    no longer waiting for the transfer; 404 for anything that is not one of the three URL
    shapes (including ``/``, ``..`` and encoded tricks) or names no stored file; 405 for other
    methods; 413 for uploads over ``max_upload``.
    """

    isLeaf = True

    def __init__(
        self,
        store: Store,
        storage: FileStorage,
        signer: UrlSigner,
        clock: IReactorTime,
        *,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        public_url: str = "",
    ) -> None:
        super().__init__()
        self.store = store
        self.storage = storage
        self.signer = signer
        self.clock: Any = clock
        self.max_upload = max_upload
        # public_url may carry a path (behind a proxy); accept URLs with or without it.
        self.prefix = urlsplit(public_url).path.rstrip("/")

    # -- dispatch --

    def render(self, request: Request) -> bytes | int:
        try:
            return self._dispatch(request)
        except _Refused as refused:
            return self._error(request, refused)
        except Exception as exc:
            if is_storage_full(exc):
                log.warn(
                    "file server: storage full, {method} {path} refused",
                    method=request.method,
                    path=request.path,
                )
                return self._error(request, _storage_full())
            log.failure(
                "file server: {method} {path} failed", method=request.method, path=request.path
            )
            return self._error(request, _Refused(500, "Internal server error"))

    def _segments(self, request: Request) -> list[str]:
        try:
            path = request.path.decode("ascii")
        except UnicodeDecodeError:
            raise _not_found() from None
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix) :]
        if not path.startswith("/"):
            raise _not_found()
        segments = path[1:].split("/")
        for raw in segments:
            decoded = unquote(raw)
            if (
                not _SEGMENT.fullmatch(raw)
                or decoded in (".", "..")
                or any(c in decoded for c in "/\\\0")
            ):
                raise _not_found()
        return segments

    def _dispatch(self, request: Request) -> bytes | int:
        segments = self._segments(request)
        method = request.method
        if segments[0] == "firmware" and len(segments) == 3:
            self._allow(method, (b"GET", b"HEAD"))
            image_id, task_id = self._id(segments[1]), self._query_task(request)
            path = "/" + "/".join(segments)
            self._verify(request, "get", path, task_id)
            self._active_task(task_id, FIRMWARE_TASK_KIND)
            image = self.store.get_firmware_image(image_id)
            if image is None or unquote(segments[2]) != image.filename:
                raise _not_found()
            return self._serve(
                request,
                self.storage.firmware_path(image),
                etag=image.sha256,
                modified=image.created,
                what=f"firmware image {image.id} (task {task_id})",
            )
        if segments[0] == "backup" and len(segments) == 2:
            self._allow(method, (b"PUT", b"POST"))
            task_id = self._id(segments[1])
            self._verify(request, "put", "/" + "/".join(segments), task_id)
            return self._store_backup(request, task_id)
        if segments[0] == "backup" and len(segments) == 3:
            self._allow(method, (b"GET", b"HEAD"))
            task_id, backup_id = self._id(segments[1]), self._id(segments[2])
            self._verify(request, "get", "/" + "/".join(segments), task_id)
            task = self._active_task(task_id, RESTORE_TASK_KIND)
            backup = self.store.get_backup(backup_id)
            if backup is None:
                raise _not_found()
            if backup.device_id != task.device_id:
                raise _Refused(403, "Forbidden: the backup belongs to another device")
            return self._serve(
                request,
                self.storage.backup_path(backup),
                etag=backup.sha256,
                modified=backup.created,
                what=f"backup {backup.id} (task {task_id})",
            )
        raise _not_found()

    @staticmethod
    def _allow(method: bytes, allowed: tuple[bytes, ...]) -> None:
        if method not in allowed:
            names = ", ".join(m.decode() for m in allowed)
            raise _Refused(405, "Method not allowed", {"Allow": names})

    @staticmethod
    def _id(text: str) -> int:
        if not _ID.fullmatch(text):
            raise _not_found()
        return int(text)

    @staticmethod
    def _arg(request: Request, name: str) -> str:
        values = (request.args or {}).get(name.encode(), [])
        if len(values) != 1:
            return ""  # absent or repeated: treated as unsigned
        return bytes(values[0]).decode("ascii", "replace")

    def _query_task(self, request: Request) -> int:
        text = self._arg(request, "task")
        if not _ID.fullmatch(text):
            raise _Refused(403, "Forbidden: unsigned URL")
        return int(text)

    def _verify(self, request: Request, method_class: str, path: str, task_id: int) -> None:
        problem = self.signer.check(
            method_class, path, task_id, self._arg(request, "exp"), self._arg(request, "sig")
        )
        if problem is not None:
            log.info(
                "Refused {method} {path}: {problem}",
                method=request.method.decode("ascii", "replace"),
                path=path,
                problem=problem,
            )
            raise _Refused(403, f"Forbidden: {problem}")

    def _active_task(self, task_id: int, kind: str) -> Any:
        task = self.store.get_task(task_id)
        if task is None or task.kind != kind or task.state not in ACTIVE_TASK_STATES:
            raise _Refused(403, "Forbidden: the task is not waiting for this transfer")
        return task

    @staticmethod
    def _error(request: Request, refused: _Refused) -> bytes:
        body = f"{refused.message}\n".encode()
        request.setResponseCode(refused.code)
        for name, value in refused.headers.items():
            request.setHeader(name.encode(), value.encode())
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", str(len(body)).encode())
        return body

    # -- downloads --

    def _serve(
        self, request: Request, path: Path, *, etag: str, modified: float, what: str
    ) -> bytes | int:
        try:
            handle = path.open("rb")
        except OSError as exc:
            log.error("{what}: file unreadable: {error}", what=what, error=str(exc))
            raise _not_found() from None
        try:
            size = os.fstat(handle.fileno()).st_size
            quoted = f'"{etag}"'
            last_modified = http_date(modified)
            request.setHeader(b"ETag", quoted.encode())
            request.setHeader(b"Last-Modified", last_modified.encode())
            request.setHeader(b"Accept-Ranges", b"bytes")
            request.setHeader(b"Cache-Control", b"private, no-cache")
            if self._not_modified(request, quoted, modified):
                handle.close()
                request.setResponseCode(304)
                return b""
            byte_range = self._wanted_range(request, size, quoted, modified)
        except BaseException:
            handle.close()
            raise
        request.setHeader(b"Content-Type", b"application/octet-stream")
        if byte_range is None:
            first, length = 0, size
        else:
            first, last = byte_range
            length = last - first + 1
            request.setResponseCode(206)
            request.setHeader(b"Content-Range", f"bytes {first}-{last}/{size}".encode())
        request.setHeader(b"Content-Length", str(length).encode())
        if request.method == b"HEAD" or length == 0:
            handle.close()
            return b""
        log.info(
            "Serving {what}: {length} bytes{part} to {address}",
            what=what,
            length=length,
            part="" if byte_range is None else f" from {byte_range[0]}",
            address=getattr(request.getClientAddress(), "host", "?"),
        )
        _FileProducer(request, handle, first, length).start()
        return NOT_DONE_YET

    @staticmethod
    def _not_modified(request: Request, etag: str, modified: float) -> bool:
        if_none_match = request.getHeader(b"if-none-match")
        if if_none_match is not None:  # takes precedence over If-Modified-Since
            return _etag_matches(if_none_match.decode("latin-1"), etag)
        since = request.getHeader(b"if-modified-since")
        if since is None:
            return False
        when = _parse_http_date(since.decode("latin-1"))
        return when is not None and int(modified) <= when

    @staticmethod
    def _wanted_range(
        request: Request, size: int, etag: str, modified: float
    ) -> tuple[int, int] | None:
        header = request.getHeader(b"range")
        if header is None:
            return None
        if_range = request.getHeader(b"if-range")
        if if_range is not None:
            condition = if_range.decode("latin-1").strip()
            if condition.startswith(('"', "W/")):
                if condition != etag:  # strong comparison; a weak tag never matches
                    return None
            else:
                when = _parse_http_date(condition)
                if when is None or int(modified) > when:
                    return None
        return _parse_range(header.decode("latin-1"), size)

    # -- backup uploads --

    def _store_backup(self, request: Request, task_id: int) -> bytes | int:
        task = self._active_task(task_id, BACKUP_TASK_KIND)
        if self.store.backups_for_task(task_id):
            raise _used()
        content = request.content
        if content is None:
            raise _Refused(400, "Empty body: the configuration file is missing")
        content.seek(0, os.SEEK_END)
        declared = content.tell()
        if declared > self.max_upload:
            raise _Refused(413, "Request body too large")
        if declared == 0:
            raise _Refused(400, "Empty body: the configuration file is missing")
        content_type = request.getHeader(b"content-type")
        d = self.storage.receive(
            content,
            self.storage.backup_dir,
            content_type=content_type.decode("latin-1") if content_type else None,
            max_size=self.max_upload,
            file_field=None,
        )
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def stored(received: Received) -> None:
            if received.path is None or received.size == 0:
                self.storage.discard(received)
                raise _Refused(400, "Empty body: the configuration file is missing")
            # The task may have timed out or been cancelled while the body was copied.
            current = self.store.get_task(task_id)
            if current is None or current.state not in ACTIVE_TASK_STATES:
                self.storage.discard(received)
                raise _Refused(403, "Forbidden: the task is not waiting for this transfer")
            backup = self.storage.add_backup(
                received, device_id=task.device_id, task_id=task_id, now=self.clock.seconds()
            )
            log.info(
                "Stored backup {backup} of device {device} ({size} bytes, task {task})",
                backup=backup.id,
                device=task.device_id,
                size=backup.size,
                task=task_id,
            )
            if not gone:
                body = f"Stored backup {backup.id}\n".encode()
                request.setResponseCode(200)
                request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
                request.setHeader(b"Content-Length", str(len(body)).encode())
                request.write(body)
                request.finish()

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, UploadError):
                refused = _Refused(failure.value.status, failure.value.message)
            elif isinstance(failure.value, _Refused):
                refused = failure.value
            elif isinstance(failure.value, Conflict):  # a concurrent upload stored first
                refused = _used()
            elif is_storage_full(failure.value):
                log.warn("file server: storage full, backup of task {task} refused", task=task_id)
                refused = _storage_full()
            else:
                log.failure(
                    "file server: storing the backup of task {task} failed", failure, task=task_id
                )
                refused = _Refused(500, "Internal server error")
            if not gone:
                request.write(self._error(request, refused))
                request.finish()

        d.addCallback(stored).addErrback(failed)
        return NOT_DONE_YET
