"""The rows of stored files: firmware images, configuration backups (Upload RPC of a backup
task) and the other files of ``/api/v1/file/`` (what Download sends, what Upload tasks
stored). Files on disk are acs.files' business: these methods only keep the rows, and
callers remove a file after its row is gone.
"""

from __future__ import annotations

from typing import Any

from acs.store import codec
from acs.store.checks import (
    check_page,
    epoch,
)
from acs.store.db import Database
from acs.store.errors import NotFound
from acs.store.models import (
    Backup,
    FirmwareImage,
    StoredFile,
)

# Task kinds whose arguments may name a stored file ({"file": id}) to send to the CPE.
FILE_DOWNLOAD_KINDS = ("download", "schedule_download")


class Files(Database):
    """The `firmware_images`, `backups` and `files` tables (SQLite)."""

    def create_firmware_image(
        self,
        *,
        name: str,
        version: str,
        size: int,
        sha256: str,
        filename: str,
        now: float,
        device_type_id: int | None = None,
    ) -> FirmwareImage:
        now_f = epoch("now", now)
        for label, text in (("name", name), ("version", version), ("filename", filename)):
            if not isinstance(text, str) or not text:
                raise ValueError(f"firmware {label} must be a non-empty string")
        if type(size) is not int or size < 0:
            raise ValueError("firmware size must be a non-negative int")
        with self.transaction():
            if device_type_id is not None and not self._exists("device_types", device_type_id):
                raise ValueError(f"device_type_id {device_type_id} does not exist")
            row = self._insert(
                "firmware_images",
                "name, version, size, sha256, device_type_id, filename, created",
                (name, version, size, sha256, device_type_id, filename, now_f),
            )
        return codec.firmware_image(row)

    def get_firmware_image(self, image_id: int) -> FirmwareImage | None:
        row = self._one("SELECT * FROM firmware_images WHERE id = ?", (image_id,))
        return None if row is None else codec.firmware_image(row)

    def newest_firmware_image(self, device_type_id: int | None) -> FirmwareImage | None:
        """The newest image meant for this device type (a CPE's RequestDownload)."""
        if device_type_id is None:
            return None
        row = self._one(
            "SELECT * FROM firmware_images WHERE device_type_id = ? ORDER BY id DESC LIMIT 1",
            (device_type_id,),
        )
        return None if row is None else codec.firmware_image(row)

    def firmware_images_page(
        self, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[FirmwareImage]]:
        """(total, one page in ascending id) of the firmware images."""
        check_page(limit, offset)
        return self._page(
            "firmware_images", "", (), codec.firmware_image, limit=limit, offset=offset
        )

    def delete_firmware_image(self, image_id: int, *, now: float, actor: str) -> FirmwareImage:
        """Delete the row and return it (the caller removes the file); NotFound if unknown,
        Conflict while a pending or in-progress firmware_update task uses it. Devices naming
        it as their target lose it (ON DELETE SET NULL)."""
        return self._delete_unless_used(
            "firmware_images",
            "firmware image",
            image_id,
            codec.firmware_image,
            [
                (
                    "SELECT count(*) FROM tasks WHERE kind = 'firmware_update'"
                    " AND state IN ('pending', 'in_progress')"
                    " AND json_extract(args, '$.firmware_image') = ?",
                    "firmware image {id} is used by {n} pending or in-progress"
                    " firmware transfer(s)",
                )
            ],
            (
                "firmware_image_deleted",
                lambda f: {"firmware_image_id": image_id, "name": f.name, "version": f.version},
            ),
            now=now,
            actor=actor,
        )

    def create_backup(
        self,
        device_id: int,
        *,
        task_id: int | None,
        filename: str,
        size: int,
        sha256: str,
        now: float,
        actor: str = "acs",
    ) -> Backup:
        """Record a stored configuration backup of `device_id` (history: backup_stored)."""
        now_f = epoch("now", now)
        if not isinstance(filename, str) or not filename:
            raise ValueError("backup filename must be a non-empty string")
        if type(size) is not int or size < 0:
            raise ValueError("backup size must be a non-negative int")
        if not isinstance(sha256, str) or not sha256:
            raise ValueError("backup sha256 must be a non-empty string")
        with self.transaction():
            self._require_device(device_id)
            row = self._insert(
                "backups",
                "device_id, task_id, filename, size, sha256, created",
                (device_id, task_id, filename, size, sha256, now_f),
            )
            backup = codec.backup(row)
            self._insert_history(
                device_id,
                "backup_stored",
                {"backup_id": backup.id, "task_id": task_id, "size": size, "sha256": sha256},
                now_f,
                actor,
            )
        return backup

    def get_backup(self, backup_id: int) -> Backup | None:
        row = self._one("SELECT * FROM backups WHERE id = ?", (backup_id,))
        return None if row is None else codec.backup(row)

    def list_backups(self, device_id: int) -> list[Backup]:
        """Every backup of the device, oldest first."""
        found = self._all("SELECT * FROM backups WHERE device_id = ? ORDER BY id", (device_id,))
        return [codec.backup(r) for r in found]

    def backups_page(
        self, device_id: int, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[Backup]]:
        """(total, one page in ascending id) of the device's backups."""
        check_page(limit, offset)
        return self._page(
            "backups",
            " WHERE device_id = ?",
            (device_id,),
            codec.backup,
            limit=limit,
            offset=offset,
        )

    def backups_for_task(self, task_id: int) -> list[Backup]:
        """The backups a task stored (normally zero or one), oldest first."""
        found = self._all("SELECT * FROM backups WHERE task_id = ? ORDER BY id", (task_id,))
        return [codec.backup(r) for r in found]

    def delete_backup(self, backup_id: int, *, now: float, actor: str = "acs") -> Backup:
        """Delete the row and return it (the caller removes the file); NotFound if unknown."""
        now_f = epoch("now", now)
        with self.transaction():
            current = self.get_backup(backup_id)
            if current is None:
                raise NotFound(f"backup {backup_id!r} not found")
            self._conn.execute("DELETE FROM backups WHERE id = ?", (backup_id,))
            self._insert_history(
                current.device_id, "backup_deleted", {"backup_id": backup_id}, now_f, actor
            )
        return current

    # --- files (/api/v1/file/) ---

    def create_file(
        self,
        *,
        name: str,
        file_type: str,
        size: int,
        sha256: str,
        filename: str,
        now: float,
        oui: str | None = None,
        product_class: str | None = None,
        version: str | None = None,
        device_id: int | None = None,
        task_id: int | None = None,
        actor: str = "acs",
    ) -> StoredFile:
        """Record a stored file: audited as file_created, or for a CPE's upload (device_id
        set) in the device's history as file_uploaded."""
        now_f = epoch("now", now)
        for label, text in (("name", name), ("file_type", file_type), ("filename", filename)):
            if not isinstance(text, str) or not text:
                raise ValueError(f"file {label} must be a non-empty string")
        if type(size) is not int or size < 0:
            raise ValueError("file size must be a non-negative int")
        with self.transaction():
            if device_id is not None:
                self._require_device(device_id)
            row = self._insert(
                "files",
                "name, file_type, oui, product_class, version, size, sha256, filename,"
                " device_id, task_id, created",
                (
                    name,
                    file_type,
                    oui,
                    product_class,
                    version,
                    size,
                    sha256,
                    filename,
                    device_id,
                    task_id,
                    now_f,
                ),
            )
            stored = codec.stored_file(row)
            detail = {"file_id": stored.id, "file_type": file_type, "size": size, "sha256": sha256}
            if device_id is None:
                self._audit("file_created", {**detail, "name": name}, now_f, actor)
            else:
                self._insert_history(
                    device_id, "file_uploaded", {**detail, "task_id": task_id}, now_f, actor
                )
        return stored

    def get_file(self, file_id: int) -> StoredFile | None:
        row = self._one("SELECT * FROM files WHERE id = ?", (file_id,))
        return None if row is None else codec.stored_file(row)

    def files_page(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        organization_ids: tuple[int, ...] | None = None,
        file_type: str | None = None,
    ) -> tuple[int, list[StoredFile]]:
        """(total, one page in ascending id) of the files; with ``organization_ids``, only
        the operators' files and those uploaded by devices of these organizations."""
        check_page(limit, offset)
        clauses: list[str] = []
        params: list[Any] = []
        if organization_ids is not None:
            marks = ", ".join("?" for _ in organization_ids) or "NULL"
            clauses.append(
                "(device_id IS NULL OR device_id IN"
                f" (SELECT id FROM devices WHERE organization_id IN ({marks})))"
            )
            params.extend(organization_ids)
        if file_type is not None:
            clauses.append("file_type = ?")
            params.append(file_type)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._page("files", where, params, codec.stored_file, limit=limit, offset=offset)

    def files_for_task(self, task_id: int) -> list[StoredFile]:
        """The files a task's CPE uploaded (normally zero or one), oldest first."""
        found = self._all("SELECT * FROM files WHERE task_id = ? ORDER BY id", (task_id,))
        return [codec.stored_file(r) for r in found]

    def files_of_device(self, device_id: int) -> list[StoredFile]:
        """The files the device uploaded, oldest first."""
        found = self._all("SELECT * FROM files WHERE device_id = ? ORDER BY id", (device_id,))
        return [codec.stored_file(r) for r in found]

    def newest_file(
        self, file_type: str, *, oui: str | None, product_class: str | None
    ) -> StoredFile | None:
        """The newest operator file of ``file_type`` meant for a CPE of this OUI and product
        class (a file that names neither is meant for every CPE): what a RequestDownload
        gets."""
        row = self._one(
            "SELECT * FROM files WHERE file_type = ? AND device_id IS NULL"
            " AND (oui IS NULL OR oui = ?) AND (product_class IS NULL OR product_class = ?)"
            " ORDER BY id DESC LIMIT 1",
            (file_type, oui, product_class),
        )
        return None if row is None else codec.stored_file(row)

    def delete_file(self, file_id: int, *, now: float, actor: str) -> StoredFile:
        """Delete the row and return it (the caller removes the file); NotFound if unknown,
        Conflict while a pending or in-progress download task sends it."""
        kinds = ", ".join(f"'{k}'" for k in FILE_DOWNLOAD_KINDS)
        return self._delete_unless_used(
            "files",
            "file",
            file_id,
            codec.stored_file,
            [
                (
                    f"SELECT count(*) FROM tasks WHERE kind IN ({kinds})"
                    " AND state IN ('pending', 'in_progress')"
                    " AND json_extract(args, '$.file') = ?",
                    "file {id} is used by {n} pending or in-progress download(s)",
                )
            ],
            ("file_deleted", lambda f: {"file_id": file_id, "name": f.name}),
            now=now,
            actor=actor,
        )
