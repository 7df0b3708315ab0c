"""JSON files that carry their own checksum, read under a size cap and a nesting limit.

A checked JSON file is one object whose last field, ``"json_crc32"``, is the CRC-32 (``zlib.crc32``)
of the UTF-8 bytes of the other fields in canonical form::

    json.dumps(body_without_json_crc32, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

so any change of a value (not of whitespace or key order) is caught, and any tool can check or
rewrite one. Reading refuses, with :class:`StoreCorruptedError` naming the file: a file larger
than ``max_bytes``, bytes that are not UTF-8, nesting deeper than ``max_depth`` (checked before
parsing, so no ``RecursionError``), ``NaN``/``Infinity``, duplicate keys and invalid JSON.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StoreCorruptedError
from .safe_files import read_regular

CHECKSUM_KEY = "json_crc32"

#: Largest JSON file read (a manifest of 100,000 chunks is about 17 MiB).
MAX_JSON_BYTES = 64 << 20

#: Deepest nesting of arrays and objects accepted.
MAX_JSON_DEPTH = 32

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def read_json(
    file: Path, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """The JSON value in the regular file ``file`` (see the module docstring for what is refused).

    ``FileNotFoundError`` propagates.
    """
    return parse_json(file, read_regular(file, max_bytes), max_depth=max_depth)


def parse_json(file: Path, data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of ``data``, the bytes of ``file``; problems name ``file``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise StoreCorruptedError(f"{file} is corrupted: not UTF-8 text ({error})") from None
    depth = _nesting(data)
    if depth > max_depth:
        raise StoreCorruptedError(
            f"{file} is corrupted: its JSON nests {depth} levels deep, more than {max_depth}"
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as error:
        raise StoreCorruptedError(f"{file} is corrupted: not valid JSON ({error})") from None


def seal(body: dict[str, Any]) -> bytes:
    """``body`` as the bytes of a checked JSON file: indented, ``"json_crc32"`` added last."""
    sealed = {**body, CHECKSUM_KEY: _canonical_crc32(body)}
    return (json.dumps(sealed, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def unseal(file: Path, body: Any) -> dict[str, Any]:
    """The fields of the checked JSON object ``body`` read from ``file``, without its checksum.

    Raises :class:`StoreCorruptedError` if ``body`` is not an object, has no ``"json_crc32"`` or
    fails it.
    """
    if not isinstance(body, dict):
        raise StoreCorruptedError(
            f"{file} is corrupted: it holds {type(body).__name__}, not an object"
        )
    fields = dict(body)
    expected = fields.pop(CHECKSUM_KEY, None)
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise StoreCorruptedError(f"{file} is corrupted: it has no integer {CHECKSUM_KEY!r}")
    if _canonical_crc32(fields) != expected:
        raise StoreCorruptedError(
            f"{file} fails its checksum ({CHECKSUM_KEY}): it was changed or damaged after it was "
            "written"
        )
    return fields


def _canonical_crc32(body: dict[str, Any]) -> int:
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return zlib.crc32(text.encode())


def _nesting(data: bytes) -> int:
    """Deepest nesting of ``[`` and ``{`` in JSON ``data``, brackets inside strings left out."""
    outside = np.frombuffer(_STRING.sub(b"", data), dtype=np.uint8)
    steps = np.isin(outside, (ord("["), ord("{"))).astype(np.int64)
    steps -= np.isin(outside, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        keys = [key for key, _ in pairs]
        raise ValueError(f"key {next(k for k in keys if keys.count(k) > 1)!r} appears twice")
    return body
