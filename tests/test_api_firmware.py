"""``/api/v1/firmware_image/``: upload (multipart or raw), list/detail, delete, limits.

Validation and bookkeeping run through the in-memory harness (a Clock reactor, so the copy
runs inline). Big bodies, the early 413 and "hashing happens off the reactor thread" run
against a real Appliance on loopback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import treq
from apiharness import T0, ApiHarness
from test_files import Reply, _RawClient, parse_reply
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

import acs.files
from acs.config import ApiConfig, Config, CwmpConfig, FilesConfig, StorageConfig, StunConfig
from acs.service import Appliance

URL = "/api/v1/firmware_image/"
BOUNDARY = "fwboundary"
WAIT = 20.0


def multipart_body(fields: dict[str, str], file: bytes | None, filename: str = "fw.bin") -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    if file is not None:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + file
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def upload(h: ApiHarness, fields: dict[str, str], file: bytes | None, token: str, **kw: str) -> Any:
    return h.call(
        "POST",
        URL,
        token=token,
        data=multipart_body(fields, file, **kw),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def files_on_disk(h: ApiHarness) -> list[str]:
    return sorted(p.name for p in h.appliance.storage.firmware_dir.iterdir())


def test_multipart_upload_records_size_and_sha256_and_stores_the_file(
    harness: ApiHarness,
) -> None:
    admin = harness.token("admin", name="alice")
    image = b"ACMEFW1 version=2.0\n" + bytes(range(256)) * 100
    reply = upload(harness, {"name": "ACME router", "version": "2.0"}, image, admin)
    assert reply.status == 201, reply.json
    body = reply.json
    assert body == {
        "id": body["id"],
        "name": "ACME router",
        "version": "2.0",
        "size": len(image),
        "sha256": hashlib.sha256(image).hexdigest(),
        "device_type": None,
        "filename": "fw.bin",
        "created": "2024-01-15T09:30:00Z",
    }
    stored = harness.store.get_firmware_image(body["id"])
    assert stored is not None
    assert harness.appliance.storage.firmware_path(stored).read_bytes() == image
    assert files_on_disk(harness) == [f"{body['id']}-fw.bin"]  # no temporary file left
    assert ("firmware_image_created", "alice") in [
        (e.action, e.actor) for e in harness.store.history(None)
    ]
    viewer = harness.token("viewer")
    assert harness.call("GET", f"{URL}{body['id']}/", token=viewer).json == body
    listed = harness.call("GET", URL, token=viewer).json
    assert (listed["count"], listed["results"]) == (1, [body])


def test_raw_upload_with_query_parameters_and_a_device_type(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    device_type = harness.store.create_device_type(now=1.0, actor="t", name="Router")
    image = b"\x00\x01raw image"
    reply = harness.call(
        "POST",
        f"{URL}?name=ACME&version=3.1&device_type={device_type.id}",
        token=admin,
        data=image,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status == 201, reply.json
    assert reply.json["device_type"] == device_type.id
    assert reply.json["filename"] == "ACME-3.1.bin"
    assert reply.json["sha256"] == hashlib.sha256(image).hexdigest()
    # curl --data-binary sends a form content type: still a raw image.
    form = harness.call(
        "POST",
        f"{URL}?name=ACME&version=3.2",
        token=admin,
        data=b"a=b&c=d",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (form.status, form.json["size"]) == (201, 7)


def test_bad_uploads_get_field_errors_and_store_nothing(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    cases: list[tuple[Any, dict[str, list[str]]]] = [
        (upload(harness, {"version": "1"}, b"img", admin), {"name": ["This field is required."]}),
        (
            upload(harness, {"name": " ", "version": "1"}, b"img", admin),
            {"name": ["This field may not be blank."]},
        ),
        (
            upload(harness, {"name": "a", "version": "1"}, None, admin),
            {"file": ["No file was submitted."]},
        ),
        (
            upload(harness, {"name": "a", "version": "1"}, b"", admin),
            {"file": ["The submitted file is empty."]},
        ),
        (
            upload(harness, {"name": "a", "version": "1", "device_type": "99"}, b"x", admin),
            {"device_type": ['Invalid pk "99" - object does not exist.']},
        ),
        (
            upload(harness, {"name": "a", "version": "1", "colour": "red"}, b"x", admin),
            {"colour": ["Unknown field."]},
        ),
        (
            harness.call("POST", f"{URL}?version=1", token=admin, data=b"img"),
            {"name": ["This field is required."]},
        ),
        (
            harness.call("POST", f"{URL}?name=a&version=1", token=admin, data=b""),
            {"file": ["The submitted file is empty."]},
        ),
    ]
    for reply, errors in cases:
        assert (reply.status, reply.json) == (400, errors)
    as_json = harness.call("POST", URL, token=admin, json_body={"name": "a", "version": "1"})
    assert as_json.status == 400 and "multipart" in as_json.json["detail"]
    truncated = harness.call(
        "POST",
        URL,
        token=admin,
        data=multipart_body({"name": "a", "version": "1"}, b"x")[:-20],
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert truncated.status == 400 and "multipart" in truncated.json["detail"]
    assert harness.store.firmware_images_page() == (0, [])
    assert files_on_disk(harness) == []


def test_upload_needs_an_unscoped_admin(harness: ApiHarness) -> None:
    fields = {"name": "a", "version": "1"}
    assert upload(harness, fields, b"x", harness.token("operator")).status == 403
    org = harness.store.ensure_organization("Other").id
    assert upload(harness, fields, b"x", harness.token("admin", [org])).status == 403
    assert harness.call("POST", URL, data=b"x").status == 401
    assert harness.store.firmware_images_page() == (0, [])


def test_upload_over_max_upload_is_413(harness: ApiHarness) -> None:
    appliance = harness.appliance
    appliance.config = dataclasses.replace(
        appliance.config, files=dataclasses.replace(appliance.config.files, max_upload=100)
    )
    admin = harness.token("admin")
    raw = harness.call("POST", f"{URL}?name=a&version=1", token=admin, data=b"x" * 101)
    assert raw.status == 413
    # The multipart framing fits but the file part alone is over the limit.
    part = upload(harness, {"name": "a", "version": "1"}, b"x" * 101, admin)
    assert part.status == 413
    assert harness.store.firmware_images_page() == (0, []) and files_on_disk(harness) == []


def test_delete_is_409_while_a_firmware_update_uses_the_image_then_204(
    harness: ApiHarness,
) -> None:
    admin = harness.token("admin")
    image = upload(harness, {"name": "a", "version": "1"}, b"img", admin).json
    device = harness.store.create_device(
        serial_number="S1", name="S1", organization_id=1, now=T0, actor="test"
    )
    task = harness.store.queue_task(
        device.id, "firmware_update", {"firmware_image": image["id"]}, now=T0, actor="test"
    )
    busy = harness.call("DELETE", f"{URL}{image['id']}/", token=admin)
    assert busy.status == 409 and "transfer" in busy.json["detail"]
    assert files_on_disk(harness) == [f"{image['id']}-fw.bin"]
    harness.store.cancel_task(task.id, now=T0, actor="test")
    assert (
        harness.call("DELETE", f"{URL}{image['id']}/", token=harness.token("operator")).status
        == 403
    )
    assert harness.call("DELETE", f"{URL}{image['id']}/", token=admin).status == 204
    assert files_on_disk(harness) == []
    assert harness.call("GET", f"{URL}{image['id']}/", token=admin).status == 404
    assert harness.call("DELETE", f"{URL}{image['id']}/", token=admin).status == 404


def test_list_is_paginated_in_id_order(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    ids = [
        upload(harness, {"name": f"n{i}", "version": "1"}, b"x", admin).json["id"] for i in range(3)
    ]
    page = harness.call("GET", f"{URL}?limit=2", token=admin).json
    assert [r["id"] for r in page["results"]] == ids[:2]
    assert page["next"] == "http://testserver/api/v1/firmware_image/?limit=2&offset=2"
    assert harness.call("GET", f"{URL}?limit=x", token=admin).status == 400


# --- over real HTTP ------------------------------------------------------------------------------


class FirmwareUploadOverHttp(unittest.TestCase):
    """A real Appliance on loopback: big bodies, early 413, hashing off the reactor thread."""

    async def start(self, max_upload: int = 64 * 1024 * 1024) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="acs-fw-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        loopback = "tcp:0:interface=127.0.0.1"
        config = Config(
            storage=StorageConfig(database=str(tmp / "acs.db"), files=str(tmp / "files")),
            cwmp=CwmpConfig(listen=loopback),
            api=ApiConfig(listen=loopback),
            files=FilesConfig(listen=loopback, max_upload=max_upload),
            stun=StunConfig(listen=""),
        )
        self.appliance = Appliance(config, reactor)
        self.appliance.service.startService()
        self.addCleanup(self.appliance.service.stopService)
        d = self.appliance.when_listening()
        d.addTimeout(WAIT, reactor)
        ports = await d
        self.api_port = ports["api"].getHost().port
        self.base = f"http://127.0.0.1:{self.api_port}{URL}"
        _, self.token = self.appliance.store.create_token("admin", "admin", [], now=T0)
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    def headers(self, **extra: str) -> dict[str, list[str]]:
        return {"Authorization": [f"Bearer {self.token}"], **{k: [v] for k, v in extra.items()}}

    async def raw(self, request: bytes) -> Reply:
        done: defer.Deferred[bytes] = defer.Deferred()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.api_port)
        await endpoint.connect(Factory.forProtocol(lambda: _RawClient(request, done)))
        done.addTimeout(WAIT, reactor)
        return parse_reply(await done)

    async def test_a_20_mib_raw_upload_is_copied_and_hashed_off_the_reactor_thread(self) -> None:
        await self.start()
        threads: list[threading.Thread] = []
        real = acs.files.receive_body

        def spy(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread())
            return real(*args, **kwargs)

        self.patch(acs.files, "receive_body", spy)
        image = bytes(range(256)) * (20 * 4096)  # 20 MiB
        response = await treq.post(
            f"{self.base}?name=big&version=9.9",
            data=image,
            headers=self.headers(**{"Content-Type": "application/octet-stream"}),
            pool=self.pool,
        )
        body = await response.json()
        self.assertEqual(response.code, 201, body)
        self.assertEqual(body["size"], len(image))
        self.assertEqual(body["sha256"], hashlib.sha256(image).hexdigest())
        self.assertEqual(len(threads), 1)
        self.assertIsNot(threads[0], threading.main_thread())
        stored = self.appliance.store.get_firmware_image(body["id"])
        assert stored is not None
        path = self.appliance.storage.firmware_path(stored)
        self.assertEqual(path.stat().st_size, len(image))

    async def test_multipart_upload_over_http(self) -> None:
        await self.start()
        image = b"ACMEFW1 version=4.0\n" + b"\xab" * 300_000
        response = await treq.post(
            self.base,
            data={"name": "acme", "version": "4.0"},
            files={"file": ("acme-4.0.img", "application/octet-stream", io.BytesIO(image))},
            headers=self.headers(),
            pool=self.pool,
        )
        body = await response.json()
        self.assertEqual(response.code, 201, body)
        self.assertEqual((body["size"], body["filename"]), (len(image), "acme-4.0.img"))
        self.assertEqual(body["sha256"], hashlib.sha256(image).hexdigest())

    async def test_declared_oversize_bodies_are_413_before_the_body_is_sent(self) -> None:
        await self.start(max_upload=4 * 1024 * 1024)
        auth = f"Authorization: Bearer {self.token}\r\n"
        upload_head = (
            f"POST {URL}?name=a&version=1 HTTP/1.1\r\nHost: x\r\n{auth}"
            f"Content-Length: {4 * 1024 * 1024 + 1}\r\nExpect: 100-continue\r\n\r\n"
        )
        reply = await self.raw(upload_head.encode())
        self.assertEqual(reply.status, 413)
        self.assertIn(b"detail", reply.body)
        # 2 MiB is fine for the upload route, but over the 1 MiB of every JSON route.
        json_head = (
            f"PATCH /api/v1/inventory_device/1/ HTTP/1.1\r\nHost: x\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n"
        )
        reply = await self.raw(json_head.encode())
        self.assertEqual(reply.status, 413)
        self.assertIn(b"1 MiB", reply.body)
        self.assertEqual(self.appliance.store.firmware_images_page(), (0, []))

    async def test_a_chunked_upload_is_stopped_once_past_the_limit(self) -> None:
        await self.start(max_upload=64 * 1024)
        chunk = b"x" * 16384
        head = (
            f"POST {URL}?name=a&version=1 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {self.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
        reply = await self.raw(head + body)
        self.assertEqual(reply.status, 413)
        self.assertEqual(self.appliance.store.firmware_images_page(), (0, []))
        storage = self.appliance.storage
        self.assertEqual(list(storage.firmware_dir.iterdir()), [])

    async def test_a_multipart_body_twisted_could_not_parse_gets_our_own_answer(self) -> None:
        # The listener leaves bodies to the routes: Twisted's own form parsing (in memory,
        # on the reactor) would answer this with a bare 400 and close the connection.
        await self.start()
        body = b"--b0undary--\r\n"
        response = await treq.post(
            f"{self.base}?name=x",
            data=body,
            headers=self.headers(**{"Content-Type": "multipart/form-data; boundary=b0undary"}),
            pool=self.pool,
        )
        answer = await response.json()
        self.assertEqual(response.code, 400)
        self.assertEqual(answer, {"name": ["Send this as a form field of the multipart body."]})
