"""Searching a store built by ``fastquant index`` with text queries, answers as source records."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._engine import DEFAULT_BACKEND, DEFAULT_K, DEFAULT_RESCORE_MULTIPLIER, DEFAULT_SCAN
from .encoders import Encoder, load_encoder
from .store import CorpusStore
from .text_store import TextStore


@dataclass(frozen=True)
class Hit:
    """One answer: its rank (1-based), row id, float32 score and source record."""

    rank: int
    id: int
    score: float
    record: dict[str, object]


@dataclass(frozen=True)
class TextResults:
    """The answers to one query and where the time went (seconds)."""

    query: str
    hits: list[Hit]
    seconds_embedding: float
    seconds_search: float


class TextIndex:
    """A store with its records and model; open one with :meth:`open`.

    ``description`` (:class:`~fastquant.text_store.IndexDescription`) says how the store was
    indexed; ``records`` holds the source record of each row. The model is loaded on the first
    search (or passed as ``encoder``).
    """

    def __init__(self, store: CorpusStore, text_store: TextStore, encoder: Encoder | None) -> None:
        self.store, self._encoder = store, encoder
        self.description = text_store.require_description()
        self.records = text_store.records
        self.records.require_rows(len(store))
        if encoder is not None and encoder.dim != store.dim:
            raise ValueError(f"the encoder makes {encoder.dim}-d vectors, the store {store.dim}-d")

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
        if self._encoder is None:
            self._encoder = load_encoder(self.description.model)
        return self._encoder

    def warm_up(self) -> None:
        """Load the model and the compiled kernels now, so that timings show steady-state searches.

        The first search in a process otherwise pays for both (about 0.5 s for the kernels).
        """
        if len(self.store):
            self.store.search(self.encoder.encode(["warm-up"]), 1)

    def search(
        self,
        queries: str | Sequence[str],
        k: int = DEFAULT_K,
        *,
        scan: str = DEFAULT_SCAN,
        rescore_multiplier: int = DEFAULT_RESCORE_MULTIPLIER,
        backend: str = DEFAULT_BACKEND,
        threads: int | None = None,
    ) -> list[TextResults]:
        """The top ``k`` records for each query (one ``TextResults`` per query, in order).

        Each query is embedded, then searched with ``CorpusStore.search`` (``scan`` of the bits
        for ``k * rescore_multiplier`` candidates, int8 rescoring); scores are float32 dot
        products.
        """
        texts = [queries] if isinstance(queries, str) else list(queries)
        if not texts or not all(isinstance(text, str) for text in texts):
            raise ValueError("queries must be a string or a non-empty sequence of strings")
        encoder = self.encoder  # loaded before the clock starts
        started = time.perf_counter()
        query_f32 = encoder.encode(texts)
        embedded = time.perf_counter()
        scores, ids = self.store.search(
            query_f32,
            k,
            scan=scan,
            rescore_multiplier=rescore_multiplier,
            backend=backend,
            threads=threads,
        )
        searched = time.perf_counter()
        per_query = len(texts)
        results = []
        for text, row_scores, row_ids in zip(texts, scores, ids):
            records = self.records.get(row_ids)
            hits = [
                Hit(rank, int(i), float(score), record)
                for rank, (i, score, record) in enumerate(zip(row_ids, row_scores, records), 1)
            ]
            results.append(
                TextResults(
                    text, hits, (embedded - started) / per_query, (searched - embedded) / per_query
                )
            )
        return results
