"""The chunked, memory-mapped corpus store and its errors."""

from .corpus import DEFAULT_CHUNK_ROWS, CorpusStore, Snapshot
from .errors import (
    StoreCorruptedError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
    StoreVersionError,
    StoreWriteError,
)
from .manifest import FORMAT_VERSION

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "FORMAT_VERSION",
    "CorpusStore",
    "Snapshot",
    "StoreCorruptedError",
    "StoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreVersionError",
    "StoreWriteError",
]
