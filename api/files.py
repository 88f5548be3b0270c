"""``/api/v1/file/``: the stored files other than firmware images.

Owns the file routes: list, detail and content (viewer), upload (``POST``) and delete
(admin, a token without organization scope). An operator stores what a ``download`` task
sends (vendor configuration, web content, tones, ringers, vendor-specific ``X <OUI> <name>``
types) with its ``file_type`` and optional ``oui``/``product_class``/``version`` (what a
CPE's RequestDownload is matched on); uploads are those of ``api.uploads`` (multipart field
``file``, or a raw body with ``?name=&file_type=``). What CPEs send for ``upload`` tasks
appears here too, with its ``device``: a token scoped to organizations sees the operators'
files and those of its own devices. ``GET .../content/`` streams a file (Range and
conditional requests as on the file server); CPEs fetch files from the file server with
signed URLs, never from here. A delete is refused with 409 while a pending or in-progress
download sends the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from acs.files import safe_filename
from acs.fileserver import FileContent
from acs.store.models import StoredFile
from acs.tasks.filekinds import MAX_FILE_TYPE, STORED_FILE_TYPE_PATTERN
from api.base import Api, ApiRequest, Result, not_found, route, store_errors
from api.docs import DETAIL, PAGE, READ, Doc, error_response
from api.fields import Errors, Form, Matching, Text
from api.resources import paged, require_unscoped
from api.schema import SHA256_PATTERN, integer, read_only, ref, string
from api.uploads import receive_upload, storage, upload_query
from api.views import Out, View, when

OUI_PATTERN = "^[0-9A-F]{6}$"
FILE_FORM = Form(
    "FileUpload",
    {
        "name": Text(required=True, strip=True, description="File name."),
        "file_type": Matching(
            required=True,
            pattern=STORED_FILE_TYPE_PATTERN,
            max_length=MAX_FILE_TYPE,
            message="Use a Download FileType other than a firmware image (those go to "
            "/firmware_image/): '2 Web Content', '3 Vendor Configuration File', '4 Tone "
            "File', '5 Ringer File' or 'X <OUI> <name>'.",
            description="The TR-069 FileType the file is sent as.",
        ),
        "oui": Matching(
            pattern=OUI_PATTERN,
            max_length=6,
            message="An OUI is six upper-case hexadecimal digits.",
            description="Meant for CPEs of this manufacturer OUI only (RequestDownload).",
        ),
        "product_class": Text(
            blank_null=True, description="Meant for CPEs of this product class only."
        ),
        "version": Text(blank_null=True, description="The file's own version, if any."),
    },
    components={"FileUpload": "create"},
    extra={
        "file": string(
            minLength=1, contentMediaType="application/octet-stream", description="The file."
        )
    },
    required_extra=("file",),
)
FILE_FIELDS = tuple(FILE_FORM.fields)

FILE_VIEW = View(
    "File",
    {
        "id": Out(read_only(integer())),
        "name": Out(string(minLength=1, maxLength=255)),
        "file_type": Out(string(minLength=1, maxLength=MAX_FILE_TYPE)),
        "oui": Out(string(True)),
        "product_class": Out(string(True)),
        "version": Out(string(True)),
        "size": Out(read_only(integer(minimum=0, description="Bytes."))),
        "sha256": Out(
            read_only(string(pattern=SHA256_PATTERN, description="Also the file's ETag."))
        ),
        "filename": Out(read_only(string(description="TargetFileName given to CPEs."))),
        "device": Out(
            read_only(integer(True, description="The CPE that uploaded it (upload task).")),
            "device_id",
        ),
        "task": Out(
            read_only(integer(True, description="The upload task that stored it.")), "task_id"
        ),
        "created": when(readOnly=True),
    },
    description="A stored file: one to send with a download task, or one a CPE uploaded.",
)
file_json = FILE_VIEW.render


def visible_file(api: Api, req: ApiRequest, file_id: int) -> StoredFile:
    """The file with this id: 404 if unknown or uploaded by a device outside the caller's
    organizations."""
    stored = api.store.get_file(file_id)
    if stored is not None and stored.device_id is not None:
        device = api.store.get_device(stored.device_id)
        if device is None or not req.principal.may_see(device.organization_id):
            stored = None
    if stored is None:
        raise not_found("No file with this id.")
    return stored


def _validate(values: Mapping[str, Any]) -> tuple[dict[str, Any], Errors]:
    return FILE_FORM.check(values, mode="create")


@route(
    "/file/",
    methods=("GET",),
    role="viewer",
    doc=Doc("list_files", "List stored files", "file", "FilePage", params=PAGE, errors=READ),
)
def list_files(api: Api, req: ApiRequest) -> Result:
    scope = req.principal.scope
    return paged(
        req,
        lambda limit, offset: api.store.files_page(
            limit=limit, offset=offset, organization_ids=scope
        ),
        file_json,
    )


@route(
    "/file/<int:file_id>/",
    methods=("GET",),
    role="viewer",
    doc=Doc("get_file", "One stored file", "file", "File", errors=DETAIL),
)
def get_file(api: Api, req: ApiRequest, file_id: int) -> Result:
    return 200, file_json(visible_file(api, req, file_id))


@route(
    "/file/<int:file_id>/content/",
    methods=("GET", "HEAD"),
    role="viewer",
    doc=Doc(
        "get_file_content",
        "The stored file's bytes",
        "file",
        None,
        errors=DETAIL,
        description="application/octet-stream, streamed; a single Range, If-None-Match (the "
        "sha256 is the ETag), If-Modified-Since and If-Range are honoured.",
        responses={
            "200": {
                "description": "The file.",
                "content": {"application/octet-stream": {"schema": string()}},
            },
            "206": {
                "description": "The requested range.",
                "content": {"application/octet-stream": {"schema": string()}},
            },
            "304": {"description": "Not modified."},
            "416": error_response("Range not satisfiable."),
        },
    ),
)
def get_file_content(api: Api, req: ApiRequest, file_id: int) -> Result:
    stored = visible_file(api, req, file_id)
    content = FileContent(
        storage(api).stored_path(stored),
        etag=stored.sha256,
        modified=stored.created,
        what=f"file {stored.id} (API, {req.principal.name})",
    )
    return 200, content


@route(
    "/file/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "create_file",
        "Store a file",
        "file",
        "File",
        201,
        params=upload_query(
            FILE_FORM.fields,
            {
                "name": "File name; required with a raw body.",
                "file_type": "TR-069 FileType; required with a raw body.",
                "oui": "Manufacturer OUI the file is meant for.",
                "product_class": "Product class the file is meant for.",
                "version": "The file's own version.",
            },
        ),
        errors=("BadRequest",),
        description="multipart/form-data with the file in field 'file' (plus name, "
        "file_type, oui, product_class, version), or the raw file as the body with "
        "?name=&file_type=. Streamed to disk and hashed (SHA-256) off the reactor. Needs a "
        "token without organization scope. Bodies over [files] max_upload -> 413, refused "
        "from their headers.",
        request_body={
            "required": True,
            "content": {
                "multipart/form-data": {"schema": ref("FileUpload")},
                "application/octet-stream": {
                    "schema": string(minLength=1, contentMediaType="application/octet-stream")
                },
            },
        },
        responses={"413": error_response("Body over [files] max_upload.")},
    ),
)
async def upload_file(api: Api, req: ApiRequest) -> Result:
    """201 with the file; 400 (DRF errors), 413 over ``[files] max_upload``."""
    require_unscoped(req, "Storing a file")
    files = storage(api)
    received, checked = await receive_upload(
        api,
        req,
        directory=files.files_dir,
        fields=FILE_FIELDS,
        validate=_validate,
        raw_query="?name=&file_type=",
    )
    with store_errors():
        stored = await api.store.run(
            partial(
                files.add_file,
                received,
                name=checked["name"],
                file_type=checked["file_type"],
                filename=safe_filename(received.filename, safe_filename(checked["name"], "file")),
                oui=checked["oui"],
                product_class=checked["product_class"],
                version=checked["version"],
                now=api.now(),
                actor=req.principal.name,
            )
        )
    api.log.info(
        "File {id} {name} ({file_type}) stored ({size} bytes, sha256 {sha256})",
        id=stored.id,
        name=stored.name,
        file_type=stored.file_type,
        size=stored.size,
        sha256=stored.sha256,
    )
    return 201, file_json(stored)


@route(
    "/file/<int:file_id>/",
    methods=("DELETE",),
    role="admin",
    doc=Doc(
        "delete_file",
        "Delete a stored file",
        "file",
        None,
        204,
        errors=("NotFound", "Conflict"),
        description="409 while a pending or in-progress download task sends it. Needs a "
        "token without organization scope.",
    ),
)
def delete_file(api: Api, req: ApiRequest, file_id: int) -> Result:
    visible_file(api, req, file_id)
    require_unscoped(req, "Deleting a file")
    with store_errors():
        storage(api).delete_file(file_id, now=api.now(), actor=req.principal.name)
    return 204, None
