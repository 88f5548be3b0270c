"""``/api/v1/firmware_image/`` (spec section 7).

Owns the firmware image routes: list and detail (viewer), upload (``POST``) and delete
(admin; like device types, images are global, so writes need a token without organization
scope). An upload is either a ``multipart/form-data`` body with the image in the field
``file`` plus ``name``, ``version`` and optional ``device_type`` fields, or a raw body with
``?name=&version=[&device_type=]``. The body is copied into ``[storage] files`` while its
SHA-256 is computed, in a worker thread and in chunks (``acs.files.FileStorage``), so neither
memory nor the reactor suffers from a 512 MiB image. A delete is refused with 409 while a
pending or in-progress firmware_update task uses the image, and removes the file.
The upload's body limit is applied from the headers by the listener's site (``api.site``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from acs.files import (
    FileStorage,
    Received,
    UploadError,
    multipart_boundary,
    safe_filename,
)
from acs.store.models import FirmwareImage
from api.base import (
    API_PREFIX,
    Api,
    ApiError,
    ApiRequest,
    Result,
    bad_request,
    not_found,
    route,
    store_errors,
)
from api.docs import DETAIL, PAGE, READ, Doc, error_response
from api.fields import Errors, Form, Pk, Text, does_not_exist
from api.resources import paged, require_unscoped
from api.schema import SHA256_PATTERN, integer, read_only, ref, string
from api.views import Out, View, when

UPLOAD_PATH = f"{API_PREFIX}/firmware_image"
# An upload's fields: a multipart body's form fields, or a raw body's query.
UPLOAD_FORM = Form(
    "FirmwareImageUpload",
    {
        "name": Text(required=True, strip=True, description="Image name."),
        "version": Text(required=True, strip=True, description="Image version."),
        "device_type": Pk(form_text=True, description="Device type id; empty or 'null' = none."),
    },
    components={"FirmwareImageUpload": "create"},
    extra={
        "file": string(
            minLength=1, contentMediaType="application/octet-stream", description="The image."
        )
    },
    required_extra=("file",),
)
UPLOAD_FIELDS = tuple(UPLOAD_FORM.fields)


FIRMWARE_IMAGE_VIEW = View(
    "FirmwareImage",
    {
        "id": Out(read_only(integer())),
        "name": Out(string(minLength=1, maxLength=255)),
        "version": Out(
            string(
                minLength=1,
                maxLength=255,
                description="Checked against the CPE's software version after an upgrade.",
            )
        ),
        "size": Out(read_only(integer(minimum=1, description="Bytes."))),
        "sha256": Out(
            read_only(string(pattern=SHA256_PATTERN, description="Also the file's ETag."))
        ),
        "device_type": Out(
            integer(True, description="Device type id the image is meant for."), "device_type_id"
        ),
        "filename": Out(read_only(string(description="File name given to CPEs (TargetFileName)."))),
        "created": when(readOnly=True),
    },
)
firmware_image_json = FIRMWARE_IMAGE_VIEW.render


def _storage(api: Api) -> FileStorage:
    # The appliance's FileServer owns the storage (acs.service wires it as `files`).
    storage: FileStorage = api.appliance.storage
    return storage


def _image(api: Api, image_id: int) -> FirmwareImage:
    image = api.store.get_firmware_image(image_id)
    if image is None:
        raise not_found("No firmware image with this id.")
    return image


# --- the upload -------------------------------------------------------------------------------


def _body_size(content: IO[bytes] | None) -> int:
    if content is None:
        return 0
    content.seek(0, os.SEEK_END)
    size = content.tell()
    content.seek(0)
    return size


def _validate(api: Api, values: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    """name/version/device_type from query or form (and the received file, once there is
    one) -> (clean values, DRF-style errors)."""
    clean, errors = UPLOAD_FORM.check(values, mode="create")
    type_id = clean.get("device_type")
    if type_id is not None and api.store.get_device_type(type_id) is None:
        errors["device_type"] = [does_not_exist(type_id)]
    if "file" in values:
        errors.update(_file_errors(values["file"]))
    return clean, errors


def _url_query(req: ApiRequest) -> dict[str, str]:
    """The URL's own query (last value wins). Not ``req.query()``: a twisted.web request
    that parses form bodies (the default; acs.httplimits' requests do not) adds a multipart
    body's fields to its args, so the same upload would read differently under each."""
    query = urlsplit(req.raw.uri.decode("ascii", "replace")).query
    return dict(parse_qsl(query, keep_blank_values=True))


def _file_errors(received: Received) -> dict[str, list[str]]:
    if received.path is None:
        return {"file": ["No file was submitted."]}
    if received.size == 0:
        return {"file": ["The submitted file is empty."]}
    return {}


@route(
    "/firmware_image/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "list_firmware_images",
        "List firmware images",
        "firmware_image",
        "FirmwareImagePage",
        params=PAGE,
        errors=READ,
    ),
)
def list_firmware_images(api: Api, req: ApiRequest) -> Result:
    return paged(
        req,
        lambda limit, offset: api.store.firmware_images_page(limit=limit, offset=offset),
        firmware_image_json,
    )


@route(
    "/firmware_image/<int:image_id>/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "get_firmware_image", "One firmware image", "firmware_image", "FirmwareImage", errors=DETAIL
    ),
)
def get_firmware_image(api: Api, req: ApiRequest, image_id: int) -> Result:
    return 200, firmware_image_json(_image(api, image_id))


_UPLOAD_QUERY = tuple(
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"{description} Raw-body uploads only: with a multipart body -> 400 (the "
        "form carries them).",
        "schema": schema,
    }
    for name, description, schema in (
        ("name", "Image name; required with a raw body.", UPLOAD_FORM.fields["name"].schema()),
        (
            "version",
            "Image version; required with a raw body.",
            UPLOAD_FORM.fields["version"].schema(),
        ),
        (
            "device_type",
            "Device type id; empty or 'null' = none.",
            UPLOAD_FORM.fields["device_type"].schema(),
        ),
    )
)


@route(
    "/firmware_image/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "create_firmware_image",
        "Upload a firmware image",
        "firmware_image",
        "FirmwareImage",
        201,
        params=_UPLOAD_QUERY,
        errors=("BadRequest",),
        description="multipart/form-data with the image in field 'file' (plus name, version, "
        "device_type), or the raw image as the body with ?name=&version=. Streamed to disk and "
        "hashed (SHA-256) off the reactor. Needs a token without organization scope. Bodies "
        "over [files] max_upload (default 512 MiB) -> 413, refused from their headers.",
        request_body={
            "required": True,
            "content": {
                "multipart/form-data": {"schema": ref("FirmwareImageUpload")},
                "application/octet-stream": {
                    "schema": string(minLength=1, contentMediaType="application/octet-stream")
                },
            },
        },
        responses={"413": error_response("Body over [files] max_upload.")},
    ),
)
async def upload_firmware_image(api: Api, req: ApiRequest) -> Result:
    """201 with the image; 400 (DRF errors), 413 over ``[files] max_upload``."""
    require_unscoped(req, "Uploading a firmware image")
    limit = api.appliance.config.files.max_upload
    content = req.raw.content
    size = _body_size(content)
    if size > limit:  # the site refuses these from the headers; this covers other paths in
        raise ApiError(413, {"detail": f"Upload exceeds the limit of {limit} bytes."})
    header = req.raw.getHeader(b"content-type")
    content_type = header.decode("latin-1") if header else None
    if content_type and content_type.split(";")[0].strip().lower() == "application/json":
        raise bad_request(
            "Upload the image as multipart/form-data (field 'file') or as a raw body "
            "with ?name=&version=, not as JSON."
        )
    try:
        is_multipart = multipart_boundary(content_type) is not None
    except UploadError as exc:
        raise bad_request(exc.message) from None
    query = {k: v for k, v in _url_query(req).items() if k in UPLOAD_FIELDS}
    if is_multipart and query:
        # One source for the image's fields: a multipart upload's are its form fields. Taking
        # the query too would make a form missing `version` pass on the query's.
        raise ApiError(
            400, {key: ["Send this as a form field of the multipart body."] for key in query}
        )
    if not is_multipart:
        # Everything but the body is known: refuse before copying a big file for nothing.
        _, errors = _validate(api, query)
        errors.pop("file", None)  # not received yet
        if size == 0:
            errors["file"] = ["The submitted file is empty."]
        if errors:
            raise ApiError(400, errors)
    assert content is not None  # size > 0 or multipart (which has a body)
    storage = _storage(api)
    try:
        received = await storage.receive(
            content,
            storage.firmware_dir,
            content_type=content_type,
            max_size=limit,
            file_field="file",
        )
    except UploadError as exc:
        body = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        raise ApiError(exc.status, body) from None
    try:
        fields = received.fields if is_multipart else query
        checked, errors = _validate(api, {**fields, "file": received})
        if errors:
            raise ApiError(400, errors)
        default = safe_filename(f"{checked['name']}-{checked['version']}.bin", "firmware.bin")
        with store_errors():
            image = storage.add_firmware_image(
                received,
                name=checked["name"],
                version=checked["version"],
                filename=safe_filename(received.filename, default),
                device_type_id=checked["device_type"],
                now=api.now(),
                actor=req.principal.name,
            )
    except BaseException:
        storage.discard(received)
        raise
    api.log.info(
        "Firmware image {id} {name} {version} stored ({size} bytes, sha256 {sha256})",
        id=image.id,
        name=image.name,
        version=image.version,
        size=image.size,
        sha256=image.sha256,
    )
    return 201, firmware_image_json(image)


@route(
    "/firmware_image/<int:image_id>/",
    methods=("DELETE",),
    role="admin",
    doc=Doc(
        "delete_firmware_image",
        "Delete a firmware image and its file",
        "firmware_image",
        None,
        204,
        errors=("NotFound", "Conflict"),
        description="409 while a pending or in-progress firmware_update task uses it. Needs a "
        "token without organization scope.",
    ),
)
def delete_firmware_image(api: Api, req: ApiRequest, image_id: int) -> Result:
    """204; 409 while a pending or in-progress firmware transfer uses the image."""
    _image(api, image_id)
    require_unscoped(req, "Deleting a firmware image")
    with store_errors():
        _storage(api).delete_firmware_image(image_id, now=api.now(), actor=req.principal.name)
    return 204, None
