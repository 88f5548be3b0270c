"""``/api/v1/firmware_image/`` (spec section 7).

Owns the firmware image routes: list and detail (viewer), upload (``POST``) and delete
(admin; like device types, images are global, so writes need a token without organization
scope). An upload is either a ``multipart/form-data`` body with the image in the field
``file`` plus ``name``, ``version`` and optional ``device_type`` fields, or a raw body with
``?name=&version=[&device_type=]`` (the pipeline of ``api.uploads``). A delete is refused
with 409 while a pending or in-progress firmware_update task uses the image, and removes
the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from acs.files import safe_filename
from acs.store.models import FirmwareImage
from api.base import (
    Api,
    ApiRequest,
    Result,
    not_found,
    route,
    store_errors,
)
from api.docs import DETAIL, PAGE, READ, Doc, error_response
from api.fields import Errors, Form, Pk, Text, does_not_exist
from api.resources import paged, require_unscoped
from api.schema import SHA256_PATTERN, integer, read_only, ref, string
from api.uploads import receive_upload, storage, upload_query
from api.views import Out, View, when

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


def _image(api: Api, image_id: int) -> FirmwareImage:
    image = api.store.get_firmware_image(image_id)
    if image is None:
        raise not_found("No firmware image with this id.")
    return image


# --- the upload -------------------------------------------------------------------------------


def _validate(api: Api, values: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    """name/version/device_type from query or form -> (clean values, DRF-style errors)."""
    clean, errors = UPLOAD_FORM.check(values, mode="create")
    type_id = clean.get("device_type")
    if type_id is not None and api.store.get_device_type(type_id) is None:
        errors["device_type"] = [does_not_exist(type_id)]
    return clean, errors


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


_UPLOAD_QUERY = upload_query(
    UPLOAD_FORM.fields,
    {
        "name": "Image name; required with a raw body.",
        "version": "Image version; required with a raw body.",
        "device_type": "Device type id; empty or 'null' = none.",
    },
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
    files = storage(api)
    received, checked = await receive_upload(
        api,
        req,
        directory=files.firmware_dir,
        fields=UPLOAD_FIELDS,
        validate=lambda values: _validate(api, values),
        raw_query="?name=&version=",
    )
    default = safe_filename(f"{checked['name']}-{checked['version']}.bin", "firmware.bin")
    with store_errors():
        image = await api.store.run(
            partial(
                files.add_firmware_image,
                received,
                name=checked["name"],
                version=checked["version"],
                filename=safe_filename(received.filename, default),
                device_type_id=checked["device_type"],
                now=api.now(),
                actor=req.principal.name,
            )
        )
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
        storage(api).delete_firmware_image(image_id, now=api.now(), actor=req.principal.name)
    return 204, None
