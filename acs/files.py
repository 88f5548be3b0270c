"""The file side of the appliance: signed expiring URLs and blobs on disk (the ``[files]``
listener that serves them is :mod:`acs.fileserver`).

Owns:

- :class:`UrlSigner`: the per-task URLs handed to CPEs in Download/Upload RPCs. A URL carries
  its task id, an expiry (``exp``, UNIX seconds: now + ``[files] url_ttl``) and ``sig`` =
  HMAC-SHA256(secret, ``"<get|put>|<path>|<task>|<exp>"``), so a leaked URL stops working when
  it expires and cannot be bent to another file, task or method. The secret is kept in the
  database (``Store.server_secret``): URLs survive a restart until they expire.
- :class:`FileStorage`: the layout of ``[storage] files`` (``firmware/``, ``backups/``,
  ``files/``: the other files of ``/api/v1/file/``, CPE uploads included) and the
  upload path shared with the firmware API: a body is copied to a temporary file in the target
  directory while its SHA-256 is computed, in a worker thread (a 512 MiB image must not stall
  the reactor), multipart bodies parsed as a stream; the row is then written and the file
  renamed into place in one store transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote, urlencode

import multipart  # type: ignore[import-untyped]  # streaming form-data parser (via treq)
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs.clock import Clock, Reactor
from acs.store import Conflict, Store
from acs.store.health import FILES, is_storage_full
from acs.store.models import Backup, FirmwareImage, StoredFile

log = Logger(namespace="acs.files")


SECRET_NAME = "signed_urls"
FIRMWARE_DIR = "firmware"
BACKUP_DIR = "backups"
FILES_DIR = "files"
CHUNK = 1024 * 1024
# Text form fields beside the file (name, version...): small, and only a few of them.
MAX_FIELD_BYTES = 4096
MAX_SEGMENTS = 16
# Bytes the full-storage probe writes (and removes) in the files directory, as uploads do.
PROBE_BYTES = 64 * 1024

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HEX = re.compile(r"[0-9a-f]{64}")
# ASCII only: "²".isdigit() is true, and int() refuses it.
_EXPIRY = re.compile(r"[0-9]{1,12}")

ToThread = Callable[..., "Deferred[Any]"]


# --- helpers --------------------------------------------------------------------------------


def safe_filename(text: str | None, default: str) -> str:
    """A file name made of ``[A-Za-z0-9._-]`` only (no separators, no leading dot), at most
    100 characters: safe on disk, in a URL and as a Download's TargetFileName."""
    name = _SAFE.sub("_", Path((text or "").replace("\\", "/")).name).lstrip("._")[:100]
    return name or default


def thread_runner(reactor: Reactor) -> ToThread:
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

    def __init__(self, secret: bytes, public_url: str, ttl: int, clock: Clock) -> None:
        if not secret:
            raise ValueError("the URL signing secret must not be empty")
        if ttl <= 0:
            raise ValueError("url ttl must be > 0")
        self._secret = secret
        self.base = public_url.rstrip("/")
        self.ttl = ttl
        self.clock = clock

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

    @staticmethod
    def file_path(stored: StoredFile) -> str:
        return f"/file/{stored.id}/{quote(stored.filename, safe='')}"

    @staticmethod
    def upload_path(task_id: int) -> str:
        return f"/upload/{task_id}"

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

    def file_url(self, task_id: int, stored: StoredFile) -> str:
        """The URL a CPE downloads a stored file from for task ``task_id`` (GET/HEAD, Range)."""
        path = self.file_path(stored)
        exp = self._expiry()
        query = urlencode(
            {"task": task_id, "exp": exp, "sig": self._sig("get", path, task_id, exp)}
        )
        return f"{self.base}{path}?{query}"

    def upload_url(self, task_id: int) -> str:
        """Where the CPE PUTs (or POSTs) the file of upload task ``task_id``."""
        path = self.upload_path(task_id)
        exp = self._expiry()
        query = urlencode({"exp": exp, "sig": self._sig("put", path, task_id, exp)})
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
    """``[storage] files``: ``firmware/<id>-<filename>``, ``backups/<id>-<filename>`` and
    ``files/<id>-<filename>``.

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
        self.files_dir = self.root / FILES_DIR
        for directory in (self.firmware_dir, self.backup_dir, self.files_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def firmware_path(self, image: FirmwareImage) -> Path:
        return self.firmware_dir / f"{image.id}-{Path(image.filename).name}"

    def backup_path(self, backup: Backup) -> Path:
        return self.backup_dir / f"{backup.id}-{Path(backup.filename).name}"

    def stored_path(self, stored: StoredFile) -> Path:
        return self.files_dir / f"{stored.id}-{Path(stored.filename).name}"

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
        """Delete row, then file once that committed; NotFound, or Conflict while a transfer
        uses the image."""
        image = self.store.delete_firmware_image(image_id, now=now, actor=actor)
        self.store.after_commit(self._remove, self.firmware_path(image))
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
        """Delete row, then file once that committed; NotFound if unknown."""
        backup = self.store.delete_backup(backup_id, now=now, actor=actor)
        self.store.after_commit(self._remove, self.backup_path(backup))
        return backup

    def add_file(
        self,
        received: Received,
        *,
        name: str,
        file_type: str,
        filename: str,
        now: float,
        actor: str,
        oui: str | None = None,
        product_class: str | None = None,
        version: str | None = None,
    ) -> StoredFile:
        """Record a file an operator uploaded and move it into place (audited)."""
        return self._add_stored(
            received,
            name=name,
            file_type=file_type,
            filename=filename,
            now=now,
            actor=actor,
            oui=oui,
            product_class=product_class,
            version=version,
        )

    def add_upload(
        self, received: Received, *, device_id: int, task_id: int, file_type: str, now: float
    ) -> StoredFile:
        """Record the file ``device_id`` sent for upload task ``task_id``. Single-use like a
        backup's URL: Conflict if the task already has its file."""
        name = f"device{device_id}-task{task_id}"
        return self._add_stored(
            received,
            name=name,
            file_type=file_type,
            filename=f"{name}.{'log' if 'Log' in file_type else 'bin'}",
            now=now,
            actor="acs",
            device_id=device_id,
            task_id=task_id,
        )

    def _add_stored(self, received: Received, **row: Any) -> StoredFile:
        assert received.path is not None
        try:
            with self.store.transaction():
                task_id = row.get("task_id")
                if task_id is not None and self.store.files_for_task(task_id):
                    raise Conflict("the task already has its file")
                stored = self.store.create_file(size=received.size, sha256=received.sha256, **row)
                os.replace(received.path, self.stored_path(stored))
        except BaseException:
            self.discard(received)
            raise
        return stored

    def delete_file(self, file_id: int, *, now: float, actor: str) -> StoredFile:
        """Delete row, then file once that committed; NotFound, or Conflict while a
        download sends it."""
        stored = self.store.delete_file(file_id, now=now, actor=actor)
        self.store.after_commit(self._remove, self.stored_path(stored))
        return stored

    def delete_device(self, device_id: int, *, now: float, actor: str) -> None:
        """Delete the device (the store cascades its rows, backups and uploads included),
        then (once that committed) the files that only those rows pointed at. NotFound if
        unknown."""
        backups = self.store.list_backups(device_id)
        uploads = self.store.files_of_device(device_id)
        self.store.delete_device(device_id, now=now, actor=actor)
        for backup in backups:
            self.store.after_commit(self._remove, self.backup_path(backup))
        for upload in uploads:
            self.store.after_commit(self._remove, self.stored_path(upload))
