"""``/api/v1/file/``: store (multipart or raw), list/detail/content, delete, organization
scope of CPE uploads. In memory (tests/apiharness.py, a Clock reactor: the copy runs inline);
the upload pipeline's limits are those of /firmware_image/ (tests/test_api_firmware.py).
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from apiharness import T0, ApiHarness
from factories import informed_device
from test_api_firmware import BOUNDARY, multipart_body

from acs.files import receive_body

URL = "/api/v1/file/"
CONTENT = b"<html>welcome</html>\n" * 50


def store_file(h: ApiHarness, fields: dict[str, str], file: bytes | None, token: str) -> Any:
    return h.call(
        "POST",
        URL,
        token=token,
        data=multipart_body(fields, file, filename="index.html"),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def on_disk(h: ApiHarness) -> list[str]:
    return sorted(p.name for p in h.appliance.storage.files_dir.iterdir())


def test_a_multipart_file_is_stored_with_its_type_and_metadata(harness: ApiHarness) -> None:
    admin = harness.token("admin", name="alice")
    fields = {
        "name": "Portal",
        "file_type": "2 Web Content",
        "oui": "00D09E",
        "product_class": "HG-181",
        "version": "7",
    }
    reply = store_file(harness, fields, CONTENT, admin)
    assert reply.status == 201, reply.json
    body = reply.json
    assert body == {
        "id": body["id"],
        **fields,
        "size": len(CONTENT),
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
        "filename": "index.html",
        "device": None,
        "task": None,
        "created": body["created"],
    }
    assert on_disk(harness) == [f"{body['id']}-index.html"]
    viewer = harness.token("viewer")
    assert harness.call("GET", f"{URL}{body['id']}/", token=viewer).json == body
    listed = harness.call("GET", URL, token=viewer).json
    assert (listed["count"], listed["results"]) == (1, [body])
    [audit] = [e for e in harness.store.history(None) if e.action == "file_created"]
    assert audit.actor == "alice"


def test_a_raw_body_takes_its_fields_from_the_query(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    reply = harness.call(
        "POST",
        f"{URL}?name=Ring&file_type=5%20Ringer%20File",
        token=admin,
        data=b"RIFF....",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status == 201, reply.json
    assert (reply.json["file_type"], reply.json["filename"]) == ("5 Ringer File", "Ring")
    assert (reply.json["oui"], reply.json["product_class"], reply.json["version"]) == (
        None,
        None,
        None,
    )


def test_the_content_is_streamed_with_ranges_and_its_etag(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    created = store_file(harness, {"name": "Portal", "file_type": "2 Web Content"}, CONTENT, admin)
    content = f"{URL}{created.json['id']}/content/"
    viewer = harness.token("viewer")
    whole = harness.call("GET", content, token=viewer)
    assert whole.status == 200
    assert whole.raw == CONTENT
    assert whole.header("etag") == f'"{created.json["sha256"]}"'
    part = harness.call("GET", content, token=viewer, headers={"Range": "bytes=0-5"})
    assert (part.status, part.raw) == (206, CONTENT[:6])
    same = harness.call(
        "GET", content, token=viewer, headers={"If-None-Match": whole.header("etag")}
    )
    assert same.status == 304
    assert harness.call("GET", content).status == 401
    assert harness.call("GET", f"{URL}999/content/", token=viewer).status == 404


def test_bad_files_get_field_errors_and_store_nothing(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    cases: list[tuple[dict[str, str], bytes | None, str]] = [
        ({"file_type": "2 Web Content"}, CONTENT, "name"),
        ({"name": "x"}, CONTENT, "file_type"),
        ({"name": "x", "file_type": "1 Firmware Upgrade Image"}, CONTENT, "file_type"),
        ({"name": "x", "file_type": "9 Anything"}, CONTENT, "file_type"),
        ({"name": "x", "file_type": "X 00d09e lower-case oui"}, CONTENT, "file_type"),
        ({"name": "x", "file_type": "2 Web Content", "oui": "00D09"}, CONTENT, "oui"),
        ({"name": "x", "file_type": "2 Web Content"}, None, "file"),
        ({"name": "x", "file_type": "2 Web Content"}, b"", "file"),
    ]
    for fields, file, field in cases:
        reply = store_file(harness, fields, file, admin)
        assert reply.status == 400, (fields, reply.json)
        assert field in reply.json, (fields, reply.json)
    raw = harness.call(
        "POST", f"{URL}?name=x", token=admin, data=b"abc",
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert (raw.status, list(raw.json)) == (400, ["file_type"])
    as_json = harness.call("POST", URL, token=admin, json_body={"name": "x"})
    assert as_json.status == 400
    assert harness.call("GET", URL, token=admin).json["count"] == 0
    assert on_disk(harness) == []


def test_only_an_unscoped_admin_stores_and_deletes(harness: ApiHarness) -> None:
    fields = {"name": "Portal", "file_type": "2 Web Content"}
    org = harness.store.ensure_organization("Default")
    for token in (harness.token("operator"), harness.token("admin", orgs=[org.id])):
        assert store_file(harness, fields, CONTENT, token).status == 403
    created = store_file(harness, fields, CONTENT, harness.token("admin")).json
    scoped = harness.token("admin", orgs=[org.id])
    assert harness.call("DELETE", f"{URL}{created['id']}/", token=scoped).status == 403
    assert on_disk(harness) == [f"{created['id']}-index.html"]


def test_delete_is_409_while_a_download_sends_the_file_then_204(harness: ApiHarness) -> None:
    admin = harness.token("admin")
    created = store_file(harness, {"name": "Portal", "file_type": "2 Web Content"}, CONTENT, admin)
    file_id = created.json["id"]
    device = informed_device(harness.store, "SN-FILE", provisioned=True)
    task = harness.store.queue_task(device.id, "download", {"file": file_id}, now=T0, actor="t")
    busy = harness.call("DELETE", f"{URL}{file_id}/", token=admin)
    assert busy.status == 409, busy.json
    harness.store.cancel_task(task.id, now=T0, actor="t")
    assert harness.call("DELETE", f"{URL}{file_id}/", token=admin).status == 204
    assert harness.call("GET", f"{URL}{file_id}/", token=admin).status == 404
    assert on_disk(harness) == []


def test_cpe_uploads_are_seen_only_within_their_organization(harness: ApiHarness) -> None:
    store = harness.store
    device = informed_device(store, "SN-UP", provisioned=True)
    other = store.create_organization(name="Other", code=None, now=T0, actor="t")
    operator_file = store.create_file(
        name="web", file_type="2 Web Content", size=1, sha256="0" * 64, filename="w", now=T0
    )
    upload = store.create_file(
        name="log", file_type="2 Vendor Log File", size=1, sha256="0" * 64, filename="l",
        now=T0, device_id=device.id, task_id=7,
    )  # fmt: skip
    own = harness.token("viewer", orgs=[device.organization_id])
    foreign = harness.token("viewer", orgs=[other.id])
    ids = {f["id"] for f in harness.call("GET", URL, token=own).json["results"]}
    assert ids == {operator_file.id, upload.id}
    ids = {f["id"] for f in harness.call("GET", URL, token=foreign).json["results"]}
    assert ids == {operator_file.id}
    assert harness.call("GET", f"{URL}{upload.id}/", token=foreign).status == 404
    assert harness.call("GET", f"{URL}{upload.id}/content/", token=foreign).status == 404
    shown = harness.call("GET", f"{URL}{upload.id}/", token=own).json
    assert (shown["device"], shown["task"]) == (device.id, 7)
    [entry] = [h for h in store.history(device.id) if h.action == "file_uploaded"]
    assert entry.detail["file_id"] == upload.id


def test_a_deleted_device_takes_its_uploads_with_it(harness: ApiHarness) -> None:
    store = harness.store
    device = informed_device(store, "SN-GONE", provisioned=True)
    files = harness.appliance.storage
    received = receive_body(io.BytesIO(b"log"), files.files_dir, content_type=None, max_size=100)
    upload = files.add_upload(
        received, device_id=device.id, task_id=5, file_type="2 Vendor Log File", now=T0
    )
    assert files.stored_path(upload).exists()
    admin = harness.token("admin")
    assert (
        harness.call("DELETE", f"/api/v1/inventory_device/{device.id}/", token=admin).status == 204
    )
    assert store.get_file(upload.id) is None
    assert on_disk(harness) == []
