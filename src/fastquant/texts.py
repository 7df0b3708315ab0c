"""Searching a store built by ``fastquant index`` with text queries (or query vectors), answers as
source records."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._engine import DEFAULT_BACKEND, DEFAULT_K, DEFAULT_RESCORE_MULTIPLIER, DEFAULT_SCAN
from .encoders import Encoder, load_encoder
from .sources import InputError
from .store import CorpusStore
from .text_store import TextStore
from .where import matching_ids


@dataclass(frozen=True)
class Hit:
    """One answer: its rank (1-based), row id, float32 score and source record."""

    rank: int
    id: int
    score: float
    record: dict[str, object]


@dataclass(frozen=True)
class TextResults:
    """The answers to one query (its text, or ``"vector i"``) and where the time went (seconds)."""

    query: str
    hits: list[Hit]
    seconds_embedding: float
    seconds_search: float


class TextIndex:
    """A store with its records and model; open one with :meth:`open`.

    ``description`` (:class:`~fastquant.text_store.IndexDescription`) says how the store was
    indexed; ``records`` holds the source record of each row. The model is loaded on the first
    text search (or passed as ``encoder``, which a store of precomputed embeddings needs for text
    queries: one that makes vectors of the store's dimension); :meth:`search_vectors` searches
    with vectors.
    """

    def __init__(self, store: CorpusStore, text_store: TextStore, encoder: Encoder | None) -> None:
        self.store, self._encoder = store, encoder
        self.description = text_store.require_description()
        self.records = text_store.records
        self.records.require_rows(store.next_id)
        self._records_table: tuple[tuple, pa.Table] | None = None
        if encoder is not None and encoder.dim != store.dim:
            raise ValueError(
                f"model {encoder.name!r} makes {encoder.dim}-d vectors, but {store.path} holds "
                f"{store.dim}-d ones ({self.description.made_from})"
            )
        stored = self.description.model
        if encoder is not None and stored is not None and encoder.name != stored:
            raise InputError(
                f"{store.path} was indexed with {stored!r}: queries embedded by {encoder.name!r} "
                "would not compare with its rows; search without --model (or index with it)"
            )

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: Encoder | None = None,
        bits_in_memory: bool = False,
    ) -> TextIndex:
        """Open the store at ``path``, which ``fastquant index`` must have built."""
        store = CorpusStore.open(path, bits_in_memory=bits_in_memory)
        try:
            return cls(store, TextStore.open(path), encoder)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> TextIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def fields(self) -> list[str]:
        """The record's columns, in input order."""
        return list(self.description.columns)

    @property
    def encoder(self) -> Encoder:
        """The model that embeds text queries (ValueError for a store of precomputed embeddings
        opened without one)."""
        if self._encoder is None:
            if self.description.model is None:
                raise ValueError(
                    f"{self.path} holds {self.description.made_from}: embed text queries with a "
                    f"model that makes {self.store.dim}-d vectors (--model), or search with "
                    "vectors (--query-vector FILE.npy)"
                )
            self._encoder = load_encoder(self.description.model)
        return self._encoder

    def warm_up(self, text: bool = True) -> None:
        """Load the model (for ``text`` queries) and the compiled kernels now, so that timings
        show steady-state searches.

        The first search in a process otherwise pays for both (about 0.5 s for the kernels).
        """
        if len(self.store):
            query = self.encoder.encode(["warm-up"]) if text else np.ones((1, self.store.dim))
            self.store.search(query, 1)

    def search(
        self,
        queries: str | Sequence[str],
        k: int = DEFAULT_K,
        *,
        scan: str = DEFAULT_SCAN,
        rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
        backend: str = DEFAULT_BACKEND,
        threads: int | None = None,
        where: str | None = None,
    ) -> list[TextResults]:
        """The top ``k`` records for each query (one ``TextResults`` per query, in order).

        Each query is embedded, then searched with ``CorpusStore.search`` (``scan`` of the bits
        for ``k * rescore_multiplier`` candidates, int8 rescoring); scores are float32 dot
        products. ``where``, an SQL condition over the record columns (:meth:`where_ids`), keeps
        only the records it holds for: the answer is the one a store of those rows alone gives.
        """
        texts = [queries] if isinstance(queries, str) else list(queries)
        if not texts or not all(isinstance(text, str) for text in texts):
            raise ValueError("queries must be a string or a non-empty sequence of strings")
        encoder = self.encoder  # loaded before the clock starts
        started = time.perf_counter()
        query_f32 = encoder.encode(texts)
        embedding = time.perf_counter() - started
        return self._answers(
            texts, query_f32, embedding, k, scan, rescore_multiplier, backend, threads, where
        )

    def search_vectors(
        self,
        query_f32: Any,
        k: int = DEFAULT_K,
        *,
        scan: str = DEFAULT_SCAN,
        rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
        backend: str = DEFAULT_BACKEND,
        threads: int | None = None,
        where: str | None = None,
    ) -> list[TextResults]:
        """The top ``k`` records for each query vector of ``query_f32 (q, dim)`` (or one
        ``(dim,)``), as :meth:`search` answers text; the queries are named ``"vector i"``."""
        queries = np.asarray(query_f32)
        labels = [f"vector {i}" for i in range(len(queries) if queries.ndim == 2 else 1)]
        return self._answers(
            labels, queries, 0.0, k, scan, rescore_multiplier, backend, threads, where
        )

    def where_ids(self, where: str) -> np.ndarray:
        """``(m,) int64`` ascending ids of the live rows whose records satisfy ``where``, an SQL
        condition over the record columns evaluated by DuckDB (``"Uses" ILIKE '%fever%'``).

        ``ValueError`` naming the problem for bad SQL or an unknown column (see
        :func:`fastquant.where.matching_ids`).
        """
        return np.intersect1d(
            matching_ids(self._table(), where), self.store.live_ids(), assume_unique=True
        )

    def _table(self) -> pa.Table:
        """The records as one Arrow table, kept while the records files stay the same."""
        parts = self.records.parts
        if self._records_table is None or self._records_table[0] != parts:
            self._records_table = (parts, self.records.table())
        return self._records_table[1]

    def _answers(
        self,
        labels: list[str],
        query_f32: Any,
        embedding: float,
        k: int,
        scan: str,
        rescore_multiplier: int,
        backend: str,
        threads: int | None,
        where: str | None,
    ) -> list[TextResults]:
        """Search ``query_f32`` (only the rows of ``where``, if given); one :class:`TextResults`
        per query, named by ``labels``."""
        started = time.perf_counter()
        allowed = None if where is None else self.where_ids(where)
        scores, ids = self.store.search(
            query_f32,
            k,
            scan=scan,
            rescore_multiplier=rescore_multiplier,
            backend=backend,
            threads=threads,
            filter=allowed,
        )
        searching = time.perf_counter() - started
        self.records.require_rows(self.store.next_id)  # records deleted or reloaded since opening
        per_query = len(labels)
        results = []
        for label, row_scores, row_ids in zip(labels, scores, ids):
            records = self.records.get(row_ids)
            hits = [
                Hit(rank, int(i), float(score), record)
                for rank, (i, score, record) in enumerate(zip(row_ids, row_scores, records), 1)
            ]
            results.append(TextResults(label, hits, embedding / per_query, searching / per_query))
        return results
