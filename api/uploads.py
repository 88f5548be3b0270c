"""The upload pipeline of the routes that store files (``/firmware_image/``, ``/file/``).

A body is either ``multipart/form-data`` with the file in the field ``file`` and the other
fields beside it, or the raw file with the fields in the URL's query (one source, never
both). The fields of a raw body are checked before the body is copied; the body is copied
into ``[storage] files`` while its SHA-256 is computed, in a worker thread and in chunks
(``acs.files.FileStorage``), so neither memory nor the reactor suffers from a big file. The
body limit (``[files] max_upload``) is applied from the headers by the listener's site
(``api.site``, for the paths in :data:`UPLOAD_PATHS`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from acs.files import FileStorage, Received, UploadError, multipart_boundary
from api.base import API_PREFIX, Api, ApiError, ApiRequest, bad_request
from api.fields import Errors

# The routes taking bodies up to [files] max_upload (every other route: 1 MiB).
UPLOAD_PATHS = (f"{API_PREFIX}/firmware_image", f"{API_PREFIX}/file")

Validate = Callable[[Mapping[str, Any]], tuple[dict[str, Any], Errors]]


def storage(api: Api) -> FileStorage:
    # The appliance's FileServer owns the storage (acs.service wires it as `files`).
    files: FileStorage = api.appliance.storage
    return files


def _body_size(content: IO[bytes] | None) -> int:
    if content is None:
        return 0
    content.seek(0, os.SEEK_END)
    size = content.tell()
    content.seek(0)
    return size


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


async def receive_upload(
    api: Api,
    req: ApiRequest,
    *,
    directory: Path,
    fields: tuple[str, ...],
    validate: Validate,
    raw_query: str,
) -> tuple[Received, dict[str, Any]]:
    """(the received file, its checked ``fields``); ``validate`` checks the fields (-> clean
    values, DRF errors). 400 for a JSON body, for fields in both the query and the form, for
    bad fields or a missing/empty file; 413 over ``[files] max_upload``. The caller stores
    the file or discards it (``FileStorage.discard``)."""
    limit = api.appliance.config.files.max_upload
    content = req.raw.content
    size = _body_size(content)
    if size > limit:  # the site refuses these from the headers; this covers other paths in
        raise ApiError(413, {"detail": f"Upload exceeds the limit of {limit} bytes."})
    header = req.raw.getHeader(b"content-type")
    content_type = header.decode("latin-1") if header else None
    if content_type and content_type.split(";")[0].strip().lower() == "application/json":
        raise bad_request(
            "Upload the file as multipart/form-data (field 'file') or as a raw body "
            f"with {raw_query}, not as JSON."
        )
    try:
        is_multipart = multipart_boundary(content_type) is not None
    except UploadError as exc:
        raise bad_request(exc.message) from None
    query = {k: v for k, v in _url_query(req).items() if k in fields}
    if is_multipart and query:
        # One source for the fields: a multipart upload's are its form fields. Taking the
        # query too would make a form missing a required field pass on the query's.
        raise ApiError(
            400, {key: ["Send this as a form field of the multipart body."] for key in query}
        )
    if not is_multipart:
        # Everything but the body is known: refuse before copying a big file for nothing.
        _, errors = validate(query)
        if size == 0:
            errors["file"] = ["The submitted file is empty."]
        if errors:
            raise ApiError(400, errors)
    assert content is not None  # size > 0 or multipart (which has a body)
    files = storage(api)
    try:
        received = await files.receive(
            content, directory, content_type=content_type, max_size=limit, file_field="file"
        )
    except UploadError as exc:
        body = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        raise ApiError(exc.status, body) from None
    try:
        checked, errors = validate(received.fields if is_multipart else query)
        errors.update(_file_errors(received))
        if errors:
            raise ApiError(400, errors)
    except BaseException:
        files.discard(received)
        raise
    return received, checked


def upload_query(form_fields: Mapping[str, Any], described: Mapping[str, str]) -> tuple[Any, ...]:
    """The OpenAPI query parameters of a raw-body upload: each field of ``described`` (->
    its description) with the form field's schema."""
    return tuple(
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"{description} Raw-body uploads only: with a multipart body -> "
            "400 (the form carries them).",
            "schema": form_fields[name].schema(),
        }
        for name, description in described.items()
    )
