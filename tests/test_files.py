"""The file server (acs/files.py): signed expiring URLs, Range/ETag downloads, backup uploads.

The server runs on a real loopback listener (Twisted's static producers need a real
transport); requests are written as raw bytes so that paths reach the server exactly as
sent (no client-side ``..`` normalisation). URL expiry runs on a ``task.Clock`` given to the
signer and the server, so "an hour later" is one ``advance`` call.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from acs.files import (
    FileStorage,
    Received,
    UploadError,
    UrlSigner,
    receive_body,
    safe_filename,
)
from acs.fileserver import FileServer
from acs.httplimits import BoundedSite
from acs.store import Conflict, Store
from acs.store.models import Backup, FirmwareImage, StoredFile, Task

T0 = 1705311000.0
TTL = 3600
PUBLIC = "http://127.0.0.1:7567"
WAIT = 10.0
IMAGE = bytes(range(256)) * 1200  # 300 KiB: several producer chunks


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _RawClient(Protocol):
    def __init__(self, request: bytes, done: defer.Deferred[bytes]) -> None:
        self.request = request
        self.done = done
        self.data = bytearray()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data.extend(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(bytes(self.data))


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body)


class FileServerTests(unittest.TestCase):
    """Downloads and uploads against a real listener; expiry on a Clock. On PostgreSQL the
    server's lookups run in the store's pool, as in the appliance."""

    def setUp(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="acs-files-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.tmp = tmp
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = Store.open(tmp / "acs.db")
        self.addCleanup(self.store.close)
        self.store.start_pool(reactor, 2)
        self.storage = FileStorage(tmp / "files", self.store)
        self.signer = UrlSigner(self.store.server_secret("signed_urls"), PUBLIC, TTL, self.clock)
        self.server = FileServer(
            self.store, self.storage, self.signer, self.clock, max_upload=1024 * 1024
        )
        org = self.store.ensure_organization("Default")
        self.device = self.store.create_device(
            serial_number="SN1", name="SN1", organization_id=org.id, now=T0, actor="test"
        )
        self.other_device = self.store.create_device(
            serial_number="SN2", name="SN2", organization_id=org.id, now=T0, actor="test"
        )
        self.image = self.add_image(IMAGE, "fw-2.0.bin")

    async def listen(self, max_body: int = 1024 * 1024) -> None:
        site = BoundedSite(self.server, max_body=max_body, access_log=False)
        port: Any = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        self.port = port.getHost().port

    def add_image(self, data: bytes, filename: str) -> FirmwareImage:
        received = receive_body(
            io.BytesIO(data), self.storage.firmware_dir, content_type=None, max_size=len(data)
        )
        return self.storage.add_firmware_image(
            received,
            name="fw",
            version="2.0",
            filename=filename,
            device_type_id=None,
            now=T0,
            actor="test",
        )

    def task(self, kind: str, args: dict[str, Any] | None = None, device: int = 0) -> Task:
        return self.store.queue_task(
            device or self.device.id, kind, args or {}, now=T0, actor="test"
        )

    def firmware_url(self) -> tuple[Task, str]:
        task = self.task("firmware_update", {"firmware_image": self.image.id})
        return task, self.signer.firmware_url(task.id, self.image)

    async def raw(self, request: bytes) -> Reply:
        done: defer.Deferred[bytes] = defer.Deferred()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        await endpoint.connect(Factory.forProtocol(lambda: _RawClient(request, done)))
        done.addTimeout(WAIT, reactor)
        return parse_reply(await done)

    async def call(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        """One request; ``target`` is a URL (its path and query are sent) or a raw path."""
        if target.startswith("http"):
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        return await self.raw(request)

    # --- downloads ------------------------------------------------------------------------

    async def test_signed_firmware_url_serves_the_image_with_length_etag_and_date(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        reply = await self.call("GET", url)
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, IMAGE)
        self.assertEqual(reply.header("content-length"), str(len(IMAGE)))
        self.assertEqual(reply.header("etag"), f'"{hashlib.sha256(IMAGE).hexdigest()}"')
        self.assertEqual(reply.header("last-modified"), "Mon, 15 Jan 2024 09:30:00 GMT")
        self.assertEqual(reply.header("accept-ranges"), "bytes")

    async def test_head_gives_the_headers_and_no_body(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        reply = await self.call("HEAD", url)
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.header("content-length"), str(len(IMAGE)))
        self.assertEqual(reply.body, b"")

    async def test_range_resume_from_an_offset_yields_the_exact_tail(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        offset = 123_457
        reply = await self.call("GET", url, {"Range": f"bytes={offset}-"})
        self.assertEqual(reply.status, 206)
        self.assertEqual(reply.body, IMAGE[offset:])
        self.assertEqual(reply.header("content-length"), str(len(IMAGE) - offset))
        self.assertEqual(
            reply.header("content-range"), f"bytes {offset}-{len(IMAGE) - 1}/{len(IMAGE)}"
        )

    async def test_closed_and_suffix_ranges_and_unsatisfiable_ones(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        middle = await self.call("GET", url, {"Range": "bytes=10-19"})
        self.assertEqual((middle.status, middle.body), (206, IMAGE[10:20]))
        suffix = await self.call("GET", url, {"Range": "bytes=-100"})
        self.assertEqual((suffix.status, suffix.body), (206, IMAGE[-100:]))
        past_end = await self.call("GET", url, {"Range": f"bytes={len(IMAGE)}-"})
        self.assertEqual(past_end.status, 416)
        self.assertEqual(past_end.header("content-range"), f"bytes */{len(IMAGE)}")
        # Several ranges, or nonsense: the whole file (a server may ignore Range).
        several = await self.call("GET", url, {"Range": "bytes=0-1,5-6"})
        self.assertEqual((several.status, len(several.body)), (200, len(IMAGE)))
        nonsense = await self.call("GET", url, {"Range": "bytes=9-3"})
        self.assertEqual(nonsense.status, 200)

    async def test_etag_revalidation_and_if_range(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        etag = f'"{hashlib.sha256(IMAGE).hexdigest()}"'
        cached = await self.call("GET", url, {"If-None-Match": etag})
        self.assertEqual((cached.status, cached.body), (304, b""))
        changed = await self.call("GET", url, {"If-None-Match": '"something-else"'})
        self.assertEqual(changed.status, 200)
        resume = await self.call("GET", url, {"Range": "bytes=100-", "If-Range": etag})
        self.assertEqual((resume.status, resume.body), (206, IMAGE[100:]))
        stale = await self.call("GET", url, {"Range": "bytes=100-", "If-Range": '"old"'})
        self.assertEqual((stale.status, stale.body), (200, IMAGE))

    async def test_url_is_refused_once_expired(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        self.clock.advance(TTL)
        self.assertEqual((await self.call("GET", url)).status, 200)  # the last valid second
        self.clock.advance(1)
        reply = await self.call("GET", url)
        self.assertEqual(reply.status, 403)
        self.assertIn(b"expired", reply.body)

    async def test_unsigned_and_tampered_urls_are_refused(self) -> None:
        await self.listen()
        task, url = self.firmware_url()
        path, _, query = url.partition("?")
        params = dict(p.split("=") for p in query.split("&"))
        flipped = params["sig"][:-1] + ("0" if params["sig"][-1] != "0" else "1")
        later = int(params["exp"]) + 3600
        cases = {
            "unsigned": path,
            "no sig": f"{path}?task={task.id}&exp={params['exp']}",
            "tampered sig": f"{path}?task={task.id}&exp={params['exp']}&sig={flipped}",
            "extended exp": f"{path}?task={task.id}&exp={later}&sig={params['sig']}",
            "repeated sig": f"{url}&sig={params['sig']}",
        }
        for name, target in cases.items():
            reply = await self.call("GET", target)
            self.assertEqual(reply.status, 403, name)
            self.assertNotIn(b"Traceback", reply.body)

    async def test_a_url_signed_for_another_task_or_image_is_refused(self) -> None:
        await self.listen()
        task, url = self.firmware_url()
        other_task = self.task("firmware_update", {"firmware_image": self.image.id})
        other_image = self.add_image(b"another image", "other.bin")
        foreign_task = url.replace(f"task={task.id}&", f"task={other_task.id}&")
        foreign_image = url.replace(
            f"/firmware/{self.image.id}/fw-2.0.bin", f"/firmware/{other_image.id}/other.bin"
        )
        self.assertEqual((await self.call("GET", foreign_task)).status, 403)
        self.assertEqual((await self.call("GET", foreign_image)).status, 403)
        self.assertEqual((await self.call("GET", url)).status, 200)  # the genuine one works

    async def test_a_url_of_a_finished_or_cancelled_task_is_refused(self) -> None:
        await self.listen()
        task, url = self.firmware_url()
        self.store.cancel_task(task.id, now=T0, actor="test")
        reply = await self.call("GET", url)
        self.assertEqual(reply.status, 403)
        self.assertIn(b"task", reply.body)

    async def test_no_listing_and_no_path_traversal(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        query = url.partition("?")[2]
        targets = [
            "/",
            "/firmware",
            "/firmware/",
            f"/firmware/{self.image.id}/",
            f"/firmware/{self.image.id}/../../acs.db?{query}",
            f"/firmware/{self.image.id}/%2e%2e/%2e%2e/acs.db?{query}",
            f"/firmware/{self.image.id}/..%2f..%2facs.db?{query}",
            f"/firmware/..%2f{self.image.id}/fw-2.0.bin?{query}",
            f"//etc/passwd?{query}",
            f"/{self.tmp}/acs.db",
            "/etc/passwd",
            f"/firmware/{self.image.id}/fw-2.0.bin/extra?{query}",
            f"/firmware/0{self.image.id}/fw-2.0.bin?{query}",
        ]
        for target in targets:
            reply = await self.call("GET", target)
            self.assertIn(reply.status, (403, 404), target)
            self.assertNotIn(b"SQLite", reply.body, target)
            self.assertNotEqual(reply.body, IMAGE, target)

    async def test_other_methods_are_405_with_allow(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        reply = await self.call("DELETE", url)
        self.assertEqual(reply.status, 405)
        self.assertEqual(reply.header("allow"), "GET, HEAD")
        self.assertEqual(self.store.get_firmware_image(self.image.id), self.image)

    async def test_a_missing_file_is_404_not_a_traceback(self) -> None:
        await self.listen()
        _, url = self.firmware_url()
        self.storage.firmware_path(self.image).unlink()
        reply = await self.call("GET", url)
        self.assertEqual(reply.status, 404)
        self.assertNotIn(b"Traceback", reply.body)

    async def test_public_url_path_prefix_is_accepted(self) -> None:
        self.signer = UrlSigner(b"k" * 32, "http://acs.example/dl/", TTL, self.clock)
        self.server = FileServer(
            self.store, self.storage, self.signer, self.clock, public_url="http://acs.example/dl"
        )
        await self.listen()
        _, url = self.firmware_url()
        self.assertTrue(url.startswith("http://acs.example/dl/firmware/"))
        self.assertEqual((await self.call("GET", url)).body, IMAGE)
        # A proxy that strips the prefix: the same URL still verifies.
        self.assertEqual((await self.call("GET", url.replace("/dl/", "/"))).status, 200)

    # --- backups ----------------------------------------------------------------------------

    async def test_backup_put_is_stored_for_the_tasks_device(self) -> None:
        await self.listen()
        task = self.task("backup")
        config = b'{"Device.WiFi.SSID.1.SSID": "home"}'
        reply = await self.call("PUT", self.signer.backup_upload_url(task.id), body=config)
        self.assertEqual(reply.status, 200, reply.body)
        [backup] = self.store.list_backups(self.device.id)
        self.assertEqual((backup.task_id, backup.size), (task.id, len(config)))
        self.assertEqual(backup.sha256, hashlib.sha256(config).hexdigest())
        self.assertEqual(self.storage.backup_path(backup).read_bytes(), config)
        self.assertEqual(self.store.backups_for_task(task.id), [backup])
        self.assertIn("backup_stored", [e.action for e in self.store.history(self.device.id)])

    async def test_backup_post_multipart_and_the_url_is_single_use(self) -> None:
        await self.listen()
        task = self.task("backup")
        url = self.signer.backup_upload_url(task.id)
        body = (
            b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="upload"; filename="config.xml"\r\n'
            b"Content-Type: application/xml\r\n\r\n"
            b"<config/>\r\n--XyZ--\r\n"
        )
        headers = {"Content-Type": "multipart/form-data; boundary=XyZ"}
        first = await self.call("POST", url, headers, body)
        self.assertEqual(first.status, 200, first.body)
        # Whoever else holds the URL cannot replace what the CPE sent, while the task waits.
        second = await self.call("PUT", url, body=b"forged")
        self.assertEqual(second.status, 409, second.body)
        self.assertIn(b"single use", second.body)
        [backup] = self.store.list_backups(self.device.id)
        self.assertEqual(self.storage.backup_path(backup).read_bytes(), b"<config/>")
        self.assertEqual(
            sorted(p.name for p in self.storage.backup_dir.iterdir()),
            [f"{backup.id}-{backup.filename}"],
        )

    async def test_concurrent_uploads_store_one_backup(self) -> None:
        await self.listen()
        task = self.task("backup")
        url = self.signer.backup_upload_url(task.id)
        replies = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(self.call("PUT", url, body=b"one" * 1000)),
                defer.Deferred.fromCoroutine(self.call("PUT", url, body=b"two" * 1000)),
            ]
        )
        self.assertEqual(sorted(r.status for r in replies), [200, 409])
        [backup] = self.store.list_backups(self.device.id)
        stored = self.storage.backup_path(backup).read_bytes()
        winner = next(i for i, r in enumerate(replies) if r.status == 200)
        self.assertEqual(stored, [b"one", b"two"][winner] * 1000)
        self.assertEqual(len(list(self.storage.backup_dir.iterdir())), 1)

    async def test_backup_upload_refused_without_a_waiting_backup_task(self) -> None:
        await self.listen()
        reboot = self.task("reboot")
        finished = self.task("backup")
        self.store.cancel_task(finished.id, now=T0, actor="test")
        for task in (reboot, finished):
            reply = await self.call("PUT", self.signer.backup_upload_url(task.id), body=b"cfg")
            self.assertEqual(reply.status, 403)
        backup = self.task("backup")
        url = self.signer.backup_upload_url(backup.id)
        self.assertEqual(
            (await self.call("PUT", url.replace("sig=", "sig=0"), body=b"x")).status, 403
        )
        self.assertEqual((await self.call("GET", url)).status, 405)
        self.assertEqual(self.store.list_backups(self.device.id), [])
        self.assertEqual([p for p in self.storage.backup_dir.iterdir()], [])

    async def test_empty_and_oversize_backups_are_refused(self) -> None:
        await self.listen(max_body=64)
        task = self.task("backup")
        url = self.signer.backup_upload_url(task.id)
        empty = await self.call("PUT", url, body=b"")
        self.assertEqual(empty.status, 400)
        oversize = await self.call("PUT", url, body=b"x" * 65)
        self.assertEqual(oversize.status, 413)
        self.assertEqual(self.store.list_backups(self.device.id), [])

    async def test_restore_task_downloads_its_devices_backup_only(self) -> None:
        await self.listen()
        backup = self.stored_backup(b"saved configuration")
        restore = self.task("restore", {"backup": backup.id})
        reply = await self.call("GET", self.signer.backup_download_url(restore.id, backup))
        self.assertEqual((reply.status, reply.body), (200, b"saved configuration"))
        resume = await self.call(
            "GET", self.signer.backup_download_url(restore.id, backup), {"Range": "bytes=6-"}
        )
        self.assertEqual((resume.status, resume.body), (206, b"configuration"))
        other = self.task("restore", {"backup": backup.id}, device=self.other_device.id)
        foreign = await self.call("GET", self.signer.backup_download_url(other.id, backup))
        self.assertEqual(foreign.status, 403)
        firmware_task, _ = self.firmware_url()
        wrong_kind = self.signer.backup_download_url(firmware_task.id, backup)
        self.assertEqual((await self.call("GET", wrong_kind)).status, 403)

    def stored_backup(self, data: bytes) -> Backup:
        task = self.task("backup")
        received = receive_body(
            io.BytesIO(data), self.storage.backup_dir, content_type=None, max_size=1000
        )
        return self.storage.add_backup(received, device_id=self.device.id, task_id=task.id, now=T0)

    def stored_file(self, data: bytes) -> StoredFile:
        received = receive_body(
            io.BytesIO(data), self.storage.files_dir, content_type=None, max_size=1000
        )
        return self.storage.add_file(
            received, name="portal", file_type="2 Web Content", filename="portal.tar",
            now=T0, actor="test",
        )  # fmt: skip

    async def test_a_download_task_fetches_its_stored_file_only(self) -> None:
        await self.listen()
        stored = self.stored_file(b"web content")
        other = self.stored_file(b"other content")
        task = self.task("download", {"file": stored.id})
        url = self.signer.file_url(task.id, stored)
        self.assertIn(f"/file/{stored.id}/portal.tar?task={task.id}&", url)
        reply = await self.call("GET", url)
        self.assertEqual((reply.status, reply.body), (200, b"web content"))
        resume = await self.call("GET", url, {"Range": "bytes=4-"})
        self.assertEqual((resume.status, resume.body), (206, b"content"))
        # The task's URL for another file, another kind's task, a tampered name: refused.
        self.assertEqual((await self.call("GET", self.signer.file_url(task.id, other))).status, 403)
        firmware_task, _ = self.firmware_url()
        wrong_kind = self.signer.file_url(firmware_task.id, stored)
        self.assertEqual((await self.call("GET", wrong_kind)).status, 403)
        renamed = url.replace("portal.tar", "portal.tgz")
        self.assertIn((await self.call("GET", renamed)).status, (403, 404))
        self.store.cancel_task(task.id, now=T0, actor="test")
        self.assertEqual((await self.call("GET", url)).status, 403)

    async def test_an_upload_task_stores_one_file_of_its_device(self) -> None:
        await self.listen()
        task = self.task("upload", {"file_type": "2 Vendor Log File"})
        url = self.signer.upload_url(task.id)
        reply = await self.call("PUT", url, body=b"log line\n")
        self.assertEqual(reply.status, 200, reply.body)
        [stored] = self.store.files_for_task(task.id)
        self.assertEqual(
            (stored.device_id, stored.file_type, stored.size),
            (self.device.id, "2 Vendor Log File", 9),
        )
        self.assertEqual(self.storage.stored_path(stored).read_bytes(), b"log line\n")
        self.assertEqual((await self.call("PUT", url, body=b"again")).status, 409)
        backup = self.task("backup")
        self.assertEqual(
            (await self.call("PUT", self.signer.upload_url(backup.id), body=b"x")).status, 403
        )
        self.assertEqual(len(list(self.storage.files_dir.iterdir())), 1)

    async def test_declared_oversize_length_is_413_before_the_body_is_sent(self) -> None:
        await self.listen(max_body=1000)
        task = self.task("backup")
        url = urlsplit(self.signer.backup_upload_url(task.id))
        head = (
            f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n"
        )
        reply = await self.raw(head.encode())  # no body at all: the answer comes anyway
        self.assertEqual(reply.status, 413)
        self.assertEqual(self.store.list_backups(self.device.id), [])


# --- signing, storage and parsing without a listener ------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store.open(tmp_path / "acs.db")
    yield s
    s.close()


def image_row(image_id: int = 7, filename: str = "fw.bin") -> FirmwareImage:
    return FirmwareImage(image_id, "fw", "1", 3, "ab" * 32, None, filename, T0)


def test_signed_urls_have_the_documented_shape_and_bind_method_path_task_and_expiry() -> None:
    clock = Clock()
    clock.advance(T0)
    signer = UrlSigner(b"secret", "http://files.example:7567/", 60, clock)
    url = urlsplit(signer.firmware_url(3, image_row()))
    assert (url.netloc, url.path) == ("files.example:7567", "/firmware/7/fw.bin")
    params = dict(p.split("=") for p in url.query.split("&"))
    assert list(params) == ["task", "exp", "sig"]
    assert (params["task"], params["exp"]) == ("3", str(int(T0) + 60))
    assert signer.check("get", "/firmware/7/fw.bin", 3, params["exp"], params["sig"]) is None
    assert signer.check("put", "/firmware/7/fw.bin", 3, params["exp"], params["sig"])
    assert signer.check("get", "/firmware/8/fw.bin", 3, params["exp"], params["sig"])
    assert signer.check("get", "/firmware/7/fw.bin", 4, params["exp"], params["sig"])
    assert signer.check("get", "/firmware/7/fw.bin", 3, "", "") == "unsigned URL"
    clock.advance(61)
    assert signer.check("get", "/firmware/7/fw.bin", 3, params["exp"], params["sig"]) == (
        "expired URL"
    )
    upload = urlsplit(signer.backup_upload_url(9))
    assert upload.path == "/backup/9" and upload.query.startswith("exp=")
    backup = Backup(5, 1, 9, "c.cfg", 1, "00", T0)
    assert urlsplit(signer.backup_download_url(9, backup)).path == "/backup/9/5"
    other_key = UrlSigner(b"other", "http://files.example:7567/", 60, clock)
    assert other_key.check("get", "/firmware/7/fw.bin", 3, params["exp"], params["sig"])


def test_the_signing_secret_survives_a_restart(tmp_path: Path) -> None:
    with Store.open(tmp_path / "acs.db") as first:
        secret = first.server_secret("signed_urls")
        assert len(secret) == 32
        assert first.server_secret("signed_urls") == secret
        assert first.server_secret("another") != secret
    with Store.open(tmp_path / "acs.db") as again:
        assert again.server_secret("signed_urls") == secret


def test_multipart_body_is_streamed_to_a_file_with_fields_in_any_order(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 5000
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="../../evil.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n"
        b'--b\r\nContent-Disposition: form-data; name="version"\r\n\r\n2.0\r\n'
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nACME\r\n--b--\r\n'
    )
    received = receive_body(
        io.BytesIO(body),
        tmp_path,
        content_type="multipart/form-data; boundary=b",
        max_size=len(payload),
    )
    assert received.path is not None and received.path.parent == tmp_path
    assert received.path.read_bytes() == payload
    assert (received.size, received.sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert received.fields == {"version": "2.0", "name": "ACME"}
    assert safe_filename(received.filename, "x") == "evil.bin"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc', "b", 400),
        (b"garbage without boundaries", "b", 400),
        (b"x" * 101, None, 413),
        (b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + b"x" * 101, "b", 413),
    ],
)
def test_bad_or_oversize_bodies_raise_and_leave_no_temporary_file(
    tmp_path: Path, body: bytes, content_type: str | None, status: int
) -> None:
    with pytest.raises(UploadError) as raised:
        receive_body(
            io.BytesIO(body),
            tmp_path,
            content_type=f"multipart/form-data; boundary={content_type}" if content_type else None,
            max_size=100,
        )
    assert raised.value.status == status
    assert list(tmp_path.iterdir()) == []


def test_safe_filename_keeps_names_usable_in_urls_and_on_disk() -> None:
    assert safe_filename("C:\\fw\\Router FW 2.0.bin", "d") == "Router_FW_2.0.bin"
    assert safe_filename("../.hidden", "d") == "hidden"
    assert safe_filename("", "default.bin") == "default.bin"
    assert safe_filename("ü" * 300, "d") == "d"


def test_image_delete_is_refused_while_a_transfer_uses_it(store: Store, tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "files", store)
    received = receive_body(
        io.BytesIO(b"img"), storage.firmware_dir, content_type=None, max_size=10
    )
    image = storage.add_firmware_image(
        received, name="a", version="1", filename="a.bin", device_type_id=None, now=T0, actor="t"
    )
    org = store.ensure_organization("Default")
    device = store.create_device(
        serial_number="S", name="S", organization_id=org.id, now=T0, actor="t"
    )
    task = store.queue_task(
        device.id, "firmware_update", {"firmware_image": image.id}, now=T0, actor="t"
    )
    with pytest.raises(Conflict):
        storage.delete_firmware_image(image.id, now=T0, actor="t")
    assert storage.firmware_path(image).exists()
    store.cancel_task(task.id, now=T0, actor="t")
    storage.delete_firmware_image(image.id, now=T0, actor="t")
    assert store.get_firmware_image(image.id) is None
    assert not storage.firmware_path(image).exists()
    assert ("firmware_image_deleted", "t") in [(e.action, e.actor) for e in store.history(None)]


def test_a_failed_rename_keeps_neither_row_nor_file(store: Store, tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "files", store)
    received = receive_body(
        io.BytesIO(b"img"), storage.firmware_dir, content_type=None, max_size=10
    )
    shutil.rmtree(storage.firmware_dir)  # the rename into place now fails
    with pytest.raises(OSError):
        storage.add_firmware_image(
            received,
            name="a",
            version="1",
            filename="a.bin",
            device_type_id=None,
            now=T0,
            actor="t",
        )
    assert store.firmware_images_page() == (0, [])


def test_thread_runner_runs_inline_on_a_clock_and_in_a_thread_on_a_reactor() -> None:
    from acs.files import thread_runner

    seen: list[threading.Thread] = []
    inline = thread_runner(Clock())
    results: list[Any] = []
    inline(lambda: seen.append(threading.current_thread())).addCallback(results.append)
    assert seen == [threading.current_thread()] and results == [None]
    assert thread_runner(reactor) is not inline


def test_received_without_file_is_discarded_safely(tmp_path: Path) -> None:
    FileStorage.discard(Received(None))
    path = tmp_path / "x.part"
    path.write_bytes(b"x")
    FileStorage.discard(Received(path))
    assert not path.exists()
