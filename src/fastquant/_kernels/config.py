"""Compiler flags and size thresholds shared by every kernel: the one place to tune them.

Every jitted function in ``fastquant._kernels`` is compiled with one of the flag sets below
(``tests/test_kernel_config.py`` checks it). ``fastmath`` is kept off wherever results must
match NumPy bit for bit (quantization); it is on only for float reductions whose order may change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba

#: Plain kernels: no Python objects, GIL released, compiled once and cached on disk.
KERNEL = {"nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}

#: Float reductions that may be reassociated (dot products for rescoring).
FASTMATH_KERNEL = {**KERNEL, "fastmath": True}

#: Drivers that split work across Numba's thread pool with ``prange``.
PARALLEL_KERNEL = {**KERNEL, "parallel": True}

#: Parallel drivers of float reductions.
PARALLEL_FASTMATH_KERNEL = {**PARALLEL_KERNEL, "fastmath": True}

#: Small helpers inlined into their callers at the Numba IR level.
INLINE_KERNEL = {**KERNEL, "inline": "always"}

#: Rows of the corpus scanned per block before their distances are merged into the top-k heaps:
#: 256 rows x 128 bytes stay in L1 while a batch of queries reuses them.
SCAN_BLOCK_ROWS = 256

#: The scan prefetches the corpus this many bytes ahead of the row it reads. Measured here with
#: 1M x 1024-bit rows, 2 threads: +17-24% queries/s at batch 16 for 4-16 KiB, no change at batch 1.
PREFETCH_BYTES = 8192

#: Cache level the scan's prefetches fill (``llvm.prefetch`` locality: 1 is ``prefetcht2``, into
#: L2 on this CPU; 3, ``prefetcht0``, into L1 too). Measured here, 1M rows, 2 threads, batch 1,
#: alternating processes: the Hamming and the 4-bit scans took 0.75-0.95x the time with 1 as with 3
#: (384-d and 1024-d); at batch 16 no difference beyond the noise.
PREFETCH_LOCALITY = 1

#: Rescoring requests the cache lines of the candidate row this many rows ahead of the one it
#: scores. Measured here on 40 random rows of a warm 1 GiB map of 1024-d codes: 8 us without,
#: 3.7 us at 2 rows ahead, 3.0 us at 4, 2.9 us at 8.
RESCORE_PREFETCH_ROWS = 8

#: Below this many bytes of work (rows x bytes per row x queries) a kernel runs on one thread:
#: waking an idle vCPU costs more than it saves.
PARALLEL_MIN_WORK_BYTES = 1 << 22

#: Quantizing or packing fewer elements (rows x dims) than this runs on one thread.
QUANTIZE_PARALLEL_MIN_ELEMENTS = 1 << 20


@contextmanager
def numba_threads(threads: int) -> Iterator[int]:
    """Run Numba's parallel kernels on at most ``threads`` threads inside the block; yields that count."""
    threads = min(threads, int(numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    if previous == threads:  # setting it costs ~15 us a call
        yield threads
        return
    numba.set_num_threads(threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(previous)
