"""``madvise(MADV_WILLNEED)`` on the pages of chosen rows of a memory map, from compiled code.

Rescoring reads a few scattered rows of a large memory-mapped file. Touching them one by one
costs one page fault, and one disk round trip, per row when they are not cached; announcing
every row first lets the kernel fetch them all at once. Calling ``madvise`` from a jitted loop
keeps the cost when the rows are already cached at ~0.15 us per row (measured: 40 rows of a
2 GB map, 5.8 us).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .config import KERNEL

#: ``MADV_WILLNEED`` from ``<sys/mman.h>`` (Linux and the BSDs).
MADV_WILLNEED = 3


@intrinsic
def _madvise(typingctx, address, length, advice):
    """Call libc ``madvise(address, length, advice)``; returns its int32 result."""
    sig = types.int32(types.int64, types.int64, types.int32)

    def codegen(context, builder, signature, args):
        byte_ptr = ir.IntType(8).as_pointer()
        fn_type = ir.FunctionType(ir.IntType(32), [byte_ptr, ir.IntType(64), ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fn_type, "madvise")
        return builder.call(fn, [builder.inttoptr(args[0], byte_ptr), args[1], args[2]])

    return sig, codegen


@njit(**KERNEL)
def advise_rows(base_address, rows, row_bytes, page_bytes, advice):
    """``madvise`` the pages holding rows ``rows (m,) int64`` of a map at ``base_address``.

    Row ``r`` spans ``[base + r * row_bytes, base + (r + 1) * row_bytes)``; ``page_bytes`` is a
    power of two. Failures are ignored: advice only changes speed, never results.
    """
    for i in range(rows.shape[0]):
        start = base_address + rows[i] * row_bytes
        page_start = start & ~(page_bytes - 1)
        _madvise(page_start, start + row_bytes - page_start, advice)
