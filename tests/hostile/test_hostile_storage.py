"""Secrets at rest (issue 9): the database, its WAL and the files directory are the
owner's only, since they hold device passwords, connection-request passwords, the
URL-signing key and configuration backups."""

from __future__ import annotations

import stat
from pathlib import Path

from acs.config import Config, StorageConfig
from acs.service import open_store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_and_files_directory_are_owner_only(tmp_path: Path) -> None:
    db, files = tmp_path / "var" / "acs.db", tmp_path / "var" / "files"
    store = open_store(Config(storage=StorageConfig(database=str(db), files=str(files))))
    try:
        store.ensure_organization("Default")  # a write, so the WAL exists
        assert mode(db) == 0o600
        assert mode(Path(f"{db}-wal")) == 0o600
        assert mode(files) == 0o700
    finally:
        store.close()


def test_an_existing_world_readable_database_is_made_owner_only(tmp_path: Path) -> None:
    db, files = tmp_path / "acs.db", tmp_path / "files"
    db.touch(mode=0o644)
    db.chmod(0o644)
    files.mkdir(mode=0o755)
    store = open_store(Config(storage=StorageConfig(database=str(db), files=str(files))))
    store.close()
    assert (mode(db), mode(files)) == (0o600, 0o700)
