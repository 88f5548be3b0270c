"""Exceptions the store raises; callers map them to protocol/API answers (409, 404...)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class Conflict(StoreError):
    """A uniqueness or state conflict: duplicate serial, cancelling a running task..."""


class NotFound(StoreError):
    """The id named by the call (device, task...) does not exist."""


class SchemaError(StoreError):
    """The database file was written by a newer version of this program."""


class StorageUnavailable(StoreError):
    """The database server cannot be reached (PostgreSQL: the connection was lost or is
    refused). The call's transaction did not commit; the client may try again later."""


class StoreExposed(StoreError):
    """The database file grants access to users other than its owner."""
