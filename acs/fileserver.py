"""The ``[files]`` listener: the resource CPEs fetch firmware, backups and stored files from
and upload files to.

Owns :class:`FileServer`. ``GET``/``HEAD`` of firmware images (``/firmware/<image>/<filename>``),
backups (``/backup/<task>/<backup>``, a restore) and stored files (``/file/<file>/<filename>``,
a download task) with single ``Range`` requests, ``ETag`` (the SHA-256), ``Last-Modified``,
``If-None-Match``/``If-Modified-Since``/``If-Range``; ``PUT``/``POST`` of a CPE's configuration
file (``/backup/<task>``, a backup task) or of any file an upload task asked for
(``/upload/<task>``). Every request must carry a URL signed by :class:`acs.files.UrlSigner`
for a task still active that is about that very file. Files are found by id in the database,
never by a path taken from the URL; there is no listing. Files are streamed by a pull
producer, never read whole (:func:`serve_file`, also the API's :class:`FileContent`); uploads
go through :class:`acs.files.FileStorage`.

The listener's site is an ``acs.httplimits.BoundedSite``: bodies over ``max_upload`` are
refused with 413 from their headers, before Twisted buffers them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from email.utils import formatdate, parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from acs.clock import Clock
from acs.files import FileStorage, Received, UploadError, UrlSigner
from acs.store import IN_PROGRESS, PENDING, Conflict, Store, Task
from acs.store.health import STORAGE_FULL_RETRY_AFTER, is_storage_full

log = Logger(namespace="acs.files")

# Task kinds whose URLs this server honours (acs.tasks owns the kinds themselves).
FIRMWARE_TASK_KIND = "firmware_update"
BACKUP_TASK_KIND = "backup"
RESTORE_TASK_KIND = "restore"
FILE_TASK_KINDS = ("download", "schedule_download")
UPLOAD_TASK_KIND = "upload"
ACTIVE_TASK_STATES = (PENDING, IN_PROGRESS)
DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024
SEND_CHUNK = 64 * 1024  # per write to a client: keeps memory per download small
_ID = re.compile(r"[1-9][0-9]{0,17}")
# A raw (still percent-encoded) URL path segment we are willing to look at.
_SEGMENT = re.compile(r"[A-Za-z0-9._~%-]+")
_OFFSET = re.compile(r"[0-9]{1,18}")  # a byte offset past any file


def http_date(ts: float) -> str:
    return formatdate(int(ts), usegmt=True)


def _parse_http_date(text: str) -> float | None:
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


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
    """A push producer writing ``length`` bytes of ``handle`` from ``offset``, then finishing
    the request. Push, not pull: the transport pauses it (synchronously, inside ``write``)
    when its buffer is full, so memory per download stays near the socket buffer, and no
    cooperator on the global reactor is involved (Twisted drives pull producers with one).
    Unlike twisted.web.static's producers, a file shorter than announced ends the answer
    short instead of hanging it."""

    def __init__(self, request: Request, handle: IO[bytes], offset: int, length: int) -> None:
        self.request: Request | None = request
        self.handle = handle
        self.offset = offset
        self.remaining = length
        self.paused = False

    def start(self) -> None:
        assert self.request is not None
        self.handle.seek(self.offset)
        self.request.registerProducer(self, True)
        self._produce()

    def _produce(self) -> None:
        while self.request is not None and not self.paused:
            data = self.handle.read(min(SEND_CHUNK, self.remaining))
            self.remaining -= len(data)
            if data:
                self.request.write(data)  # may pause us, or (connection lost) stop us
            if self.request is not None and (self.remaining == 0 or not data):
                self._finish(self.request)

    def _finish(self, request: Request) -> None:
        request.unregisterProducer()
        if self.remaining:  # the file shrank: end short, the client sees a broken body
            log.error(
                "file shorter than announced; {missing} bytes missing", missing=self.remaining
            )
        request.finish()
        self.stopProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self._produce()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.handle.close()
        self.request = None


def _refusal(request: Request, refused: _Refused) -> bytes:
    body = f"{refused.message}\n".encode()
    request.setResponseCode(refused.code)
    for name, value in refused.headers.items():
        request.setHeader(name.encode(), value.encode())
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return body


def serve_file(
    request: Request, path: Path, *, etag: str, modified: float, what: str
) -> bytes | int:
    """Answer ``request`` with the file at ``path`` (GET/HEAD): ETag/Last-Modified
    conditionals, a single Range, streamed by a pull producer. ``what`` names it in logs."""
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
        if _not_modified(request, quoted, modified):
            handle.close()
            request.setResponseCode(304)
            return b""
        byte_range = _wanted_range(request, size, quoted, modified)
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


def _not_modified(request: Request, etag: str, modified: float) -> bool:
    if_none_match = request.getHeader(b"if-none-match")
    if if_none_match is not None:  # takes precedence over If-Modified-Since
        return _etag_matches(if_none_match.decode("latin-1"), etag)
    since = request.getHeader(b"if-modified-since")
    if since is None:
        return False
    when = _parse_http_date(since.decode("latin-1"))
    return when is not None and int(modified) <= when


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


class FileContent(Resource):
    """One stored file as an answer (the API's ``/file/<id>/content/``): streamed, with the
    file server's conditional and Range handling."""

    isLeaf = True

    def __init__(self, path: Path, *, etag: str, modified: float, what: str) -> None:
        super().__init__()
        self.path = path
        self.etag = etag
        self.modified = modified
        self.what = what

    def render(self, request: Request) -> bytes | int:
        try:
            return serve_file(
                request, self.path, etag=self.etag, modified=self.modified, what=self.what
            )
        except _Refused as refused:
            return _refusal(request, refused)


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
        clock: Clock,
        *,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        public_url: str = "",
    ) -> None:
        super().__init__()
        self.store = store
        self.storage = storage
        self.signer = signer
        self.clock = clock
        self.max_upload = max_upload
        # public_url may carry a path (behind a proxy); accept URLs with or without it.
        self.prefix = urlsplit(public_url).path.rstrip("/")

    # -- dispatch --

    def render(self, request: Request) -> int:
        """The request's lookups (signature, task, stored row) are a unit of work (on
        PostgreSQL off the reactor thread); its answer is made on the reactor."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        looked_up = self.store.read(self._dispatch, request)
        looked_up.addCallback(lambda answer: None if gone else self._answer(request, answer()))
        looked_up.addErrback(lambda failure: None if gone else self._failed(request, failure))
        return NOT_DONE_YET

    def _answer(self, request: Request, body: bytes | int) -> None:
        """Write what a render would have returned (a body or NOT_DONE_YET), as
        twisted.web does with it."""
        if body is NOT_DONE_YET:
            return  # a producer or an upload answers by itself
        assert isinstance(body, bytes)
        if request.method != b"HEAD" or body:
            request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)  # nothing of it for HEAD (twisted.web drops it)
        request.finish()

    def _failed(self, request: Request, failure: Failure) -> None:
        exc = failure.value
        if isinstance(exc, _Refused):
            refused = exc
        elif is_storage_full(exc):
            log.warn(
                "file server: storage full, {method} {path} refused",
                method=request.method,
                path=request.path,
            )
            refused = _storage_full()
        else:
            log.failure(
                "file server: {method} {path} failed",
                failure,
                method=request.method,
                path=request.path,
            )
            refused = _Refused(500, "Internal server error")
        self._answer(request, self._error(request, refused))

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

    def _dispatch(self, request: Request) -> Callable[[], bytes | int]:
        """What answers the request once its lookups are done (called on the reactor)."""
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
            return partial(
                serve_file,
                request,
                self.storage.firmware_path(image),
                etag=image.sha256,
                modified=image.created,
                what=f"firmware image {image.id} (task {task_id})",
            )
        if segments[0] == "file" and len(segments) == 3:
            self._allow(method, (b"GET", b"HEAD"))
            file_id, task_id = self._id(segments[1]), self._query_task(request)
            self._verify(request, "get", "/" + "/".join(segments), task_id)
            task = self._active_task(task_id, *FILE_TASK_KINDS)
            stored = self.store.get_file(file_id)
            if stored is None or unquote(segments[2]) != stored.filename:
                raise _not_found()
            if task.args.get("file") != stored.id:
                raise _Refused(403, "Forbidden: the task sends another file")
            return partial(
                serve_file,
                request,
                self.storage.stored_path(stored),
                etag=stored.sha256,
                modified=stored.created,
                what=f"file {stored.id} (task {task_id})",
            )
        if segments[0] == "upload" and len(segments) == 2:
            self._allow(method, (b"PUT", b"POST"))
            task_id = self._id(segments[1])
            self._verify(request, "put", "/" + "/".join(segments), task_id)
            return self._store_upload(request, task_id)
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
            return partial(
                serve_file,
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

    def _active_task(self, task_id: int, *kinds: str) -> Any:
        task = self.store.get_task(task_id)
        if task is None or task.kind not in kinds or task.state not in ACTIVE_TASK_STATES:
            raise _Refused(403, "Forbidden: the task is not waiting for this transfer")
        return task

    @staticmethod
    def _error(request: Request, refused: _Refused) -> bytes:
        return _refusal(request, refused)

    # -- uploads (backup and upload tasks) --

    def _store_backup(self, request: Request, task_id: int) -> Callable[[], bytes | int]:
        task = self._active_task(task_id, BACKUP_TASK_KIND)
        if self.store.backups_for_task(task_id):
            raise _used()

        def save(received: Received, now: float) -> str:
            backup = self.storage.add_backup(
                received, device_id=task.device_id, task_id=task_id, now=now
            )
            return f"backup {backup.id}"

        return partial(self._receive, request, task, self.storage.backup_dir, save)

    def _store_upload(self, request: Request, task_id: int) -> Callable[[], bytes | int]:
        task = self._active_task(task_id, UPLOAD_TASK_KIND)
        if self.store.files_for_task(task_id):
            raise _used()

        def save(received: Received, now: float) -> str:
            stored = self.storage.add_upload(
                received,
                device_id=task.device_id,
                task_id=task_id,
                file_type=str(task.args.get("file_type", "")),
                now=now,
            )
            return f"file {stored.id}"

        return partial(self._receive, request, task, self.storage.files_dir, save)

    def _receive(
        self,
        request: Request,
        task: Task,
        directory: Path,
        save: Callable[[Received, float], str],
    ) -> bytes | int:
        """Copy the body into ``directory`` off the reactor, then ``save`` it for ``task``
        (-> what was stored, for the log and the answer) if the task still waits for it."""
        content = request.content
        if content is None:
            raise _Refused(400, "Empty body: the file is missing")
        content.seek(0, os.SEEK_END)
        declared = content.tell()
        if declared > self.max_upload:
            raise _Refused(413, "Request body too large")
        if declared == 0:
            raise _Refused(400, "Empty body: the file is missing")
        content_type = request.getHeader(b"content-type")
        d = self.storage.receive(
            content,
            directory,
            content_type=content_type.decode("latin-1") if content_type else None,
            max_size=self.max_upload,
            file_field=None,
        )
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def kept(received: Received) -> str:  # a unit of work
            # The task may have timed out or been cancelled while the body was copied.
            current = self.store.get_task(task.id)
            if current is None or current.state not in ACTIVE_TASK_STATES:
                self.storage.discard(received)
                raise _Refused(403, "Forbidden: the task is not waiting for this transfer")
            return save(received, self.clock.seconds())

        def stored(received: Received) -> Deferred[None]:
            if received.path is None or received.size == 0:
                self.storage.discard(received)
                raise _Refused(400, "Empty body: the file is missing")
            return self.store.run(kept, received).addCallback(answered, received.size)

        def answered(what: str, size: int) -> None:
            log.info(
                "Stored {what} of device {device} ({size} bytes, task {task})",
                what=what,
                device=task.device_id,
                size=size,
                task=task.id,
            )
            if not gone:
                body = f"Stored {what}\n".encode()
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
                log.warn("file server: storage full, upload of task {task} refused", task=task.id)
                refused = _storage_full()
            else:
                log.failure(
                    "file server: storing the upload of task {task} failed", failure, task=task.id
                )
                refused = _Refused(500, "Internal server error")
            if not gone:
                request.write(self._error(request, refused))
                request.finish()

        d.addCallback(stored).addErrback(failed)
        return NOT_DONE_YET
