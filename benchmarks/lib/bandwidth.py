"""The machine's memory read bandwidth, measured with the same thread pool as the kernels.

A Hamming scan of one query reads every corpus byte once, so ``corpus bytes / read time`` is the
physical limit for batch 1; the suite measures it in the same run as the kernels. The read loop
is as lean as a reader can be: 64-byte vector loads OR-ed into four independent accumulators, so
the kernels' own popcount work is not part of the limit. (Plain Numba or NumPy reduction loops
reached only ~26 GB/s on one thread here, below what the scan kernel itself reads.)
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_I64 = ir.IntType(64)
_V8 = ir.VectorType(_I64, 8)
_UNROLL = 4


@intrinsic
def _or_vectors(typingctx, data, first, count):
    """OR of ``count`` 64-byte vectors of flat ``uint8`` ``data`` from vector ``first`` (a multiple of 4)."""
    signature = types.uint64(data, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        base = context.make_array(sig.args[0])(context, builder, args[0]).data
        accumulators = [
            cgutils.alloca_once_value(builder, ir.Constant(_V8, None)) for _ in range(_UNROLL)
        ]
        groups = builder.udiv(args[2], ir.Constant(_I64, _UNROLL))
        with cgutils.for_range(builder, groups) as loop:
            vector = builder.add(args[1], builder.mul(loop.index, ir.Constant(_I64, _UNROLL)))
            for lane, accumulator in enumerate(accumulators):
                offset = builder.mul(
                    builder.add(vector, ir.Constant(_I64, lane)), ir.Constant(_I64, 64)
                )
                pointer = builder.bitcast(builder.gep(base, [offset]), _V8.as_pointer())
                builder.store(
                    builder.or_(builder.load(accumulator), builder.load(pointer, align=1)),
                    accumulator,
                )
        total = builder.load(accumulators[0])
        for accumulator in accumulators[1:]:
            total = builder.or_(total, builder.load(accumulator))
        reduce_or = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I64, [_V8]), "llvm.vector.reduce.or.v8i64"
        )
        return builder.call(reduce_or, [total])

    return signature, codegen


@njit(parallel=True, nogil=True, cache=True)
def _read(flat, threads):
    groups = flat.shape[0] // (64 * _UNROLL)
    partial = np.zeros(threads, dtype=np.uint64)
    for t in prange(threads):
        lo = groups * t // threads
        hi = groups * (t + 1) // threads
        partial[t] = _or_vectors(flat, lo * _UNROLL, (hi - lo) * _UNROLL)
    result = np.uint64(0)
    for value in partial:
        result |= value
    return result


def read_all(buffer: np.ndarray, threads: int) -> int:
    """Read ``buffer`` (C-contiguous; its last partial 256 bytes skipped) on ``threads`` threads."""
    return int(_read(buffer.reshape(-1).view(np.uint8), threads))
