"""The rows of stored files: firmware images and configuration backups (Upload RPC). Files
on disk are acs.files' business: these methods only keep the rows, and callers remove a
file after its row is gone.
"""

from __future__ import annotations

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
)


class Files(Database):
    """The `firmware_images` and `backups` tables (SQLite)."""

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
