"""Exceptions raised by :class:`~fastquant.store.CorpusStore`, each naming the store or file at fault."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every corpus-store error."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """The path holds no corpus store (no manifest)."""


class StoreCorruptedError(StoreError, ValueError):
    """A store file is missing, truncated, unreadable or fails its checksum; the message names it."""


class StoreVersionError(StoreError):
    """The store was written in a format newer than this fastquant reads."""


class StoreLockedError(StoreError):
    """Another writer holds the store's lock."""


class StoreWriteError(StoreError, OSError):
    """An append failed in the file system (disk full, I/O error); the message says what was committed."""
