"""Engines timed in alternating rounds, the one way every benchmark here compares engines.

This machine's memory speed drifts by tens of percent over minutes, so engines timed one after
the other are not comparable. Each round runs every engine once; ratios of medians over rounds
are the figures to quote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np


def alternate_calls(
    engines: dict[str, Callable[[int], object]],
    n: int,
    rounds: int,
    *,
    shuffle: bool = True,
    warmup: bool = True,
) -> dict[str, np.ndarray]:
    """Seconds of every call ``run(i)``, ``i < n``, per engine, after one warm-up pass.

    With ``shuffle`` the engines' order within a round is permuted (seeded), so neither drift nor
    the engine that ran before favours one. ``warmup=False`` skips the warm-up pass, for callers
    that warmed the engines up on smaller calls.
    """
    for run in engines.values() if warmup else ():
        for i in range(n):
            run(i)
    times: dict[str, list[float]] = {name: [] for name in engines}
    order = np.random.default_rng(0)
    for _ in range(rounds):
        for name in order.permutation(list(engines)) if shuffle else list(engines):
            run, values = engines[name], times[name]
            for i in range(n):
                start = time.perf_counter()
                run(i)
                values.append(time.perf_counter() - start)
    return {name: np.asarray(values) for name, values in times.items()}


def alternate(
    engines: dict[str, Callable[[], object]],
    rounds: int,
    *,
    shuffle: bool = True,
    warmup: bool = True,
) -> dict[str, float]:
    """Median seconds per engine over ``rounds`` rounds of one call each (see ``alternate_calls``)."""
    calls = {name: (lambda i, run=run: run()) for name, run in engines.items()}
    times = alternate_calls(calls, 1, rounds, shuffle=shuffle, warmup=warmup)
    return {name: float(np.median(values)) for name, values in times.items()}


@contextmanager
def faiss_threads(threads: int) -> Iterator[None]:
    """faiss on ``threads`` OpenMP threads inside the block, its previous count restored after."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)
