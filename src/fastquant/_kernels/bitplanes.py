"""AND + popcount block scans of packed bit rows against queries held as signed digit planes (LLVM IR).

A query quantized to signed 4-bit values, ``w (d,)`` in ``-8..7``, is written in balanced
ternary, ``w_j = sum_k 3^k u_kj`` with digits ``u_kj`` in ``-1..1`` (``k < 3``), each digit as two
packed planes: ``P_k`` holds the bits of ``u_kj = 1`` and ``N_k`` those of ``u_kj = -1`` (MSB
first, like the rows). ``P_k`` and ``N_k`` are disjoint, so for a row of bits ``b``

    popcount(P_k AND b) - popcount(N_k AND b) = popcount((P_k AND b) OR (N_k AND NOT b)) - popcount(N_k)

and ``t = sum_j w_j b_j = sum_k 3^k popcount((P_k AND b) OR (N_k AND NOT b)) - sum_k 3^k
popcount(N_k)``: one ``vpternlogq`` and one popcount per digit and word, three per word instead of
the four of the query's two's complement bit-planes (in cache, one thread, one or four queries:
0.78-0.88x their time on 384- and 1024-bit rows). The last sum, the *offset* of the *raw* total
before it, does not depend on the row: it is counted once per call and subtracted from each row's
raw total. The coarse scan's ternary queries, ``u (d,)`` in ``-1..1``, are one such digit
(``COARSE_WEIGHTS``); on rows wider than ``ONE_POPCOUNT_WORDS`` it takes two popcounts,
``popcount(P AND b) + popcount(N AND NOT b)``, the same raw total.

``plane_block_1`` and ``plane_block_4`` (``coarse_block_1`` and ``coarse_block_4``) write ``t``
of one or four queries per row, for rows ``[row_lo, row_hi)``, query by query
(``dist[j * SCAN_BLOCK_ROWS + r]``), so the caller's per-query loops read them contiguously, and
return each query's largest; the caller turns them into scores. A single query's rows are summed
four at a time by one shuffle tree.

They are built like the Hamming scan of :mod:`fastquant._kernels.popcount` (whole ``<8 x i64>``
vectors, ``vpopcntq`` on zmm, loops specialised per row width up to 16 words, several queries
per corpus load, software prefetch) and share its vector helpers. Totals count whole 64-bit
words only; callers add the ``nbytes % 8`` trailing bytes with ``digit_count_byte``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .config import SCAN_BLOCK_ROWS
from .popcount import (
    _I32,
    _I64,
    _MASK8,
    _SPECIALISED_WORDS,
    _V4_I32,
    QUERIES_PER_SCAN,
    _Emitter,
    _i64,
    _shuffle,
)

#: Bits per query value: signed 4-bit, ``-8..7``.
QUERY_BITS = 4
#: Bit-planes per query: three balanced-ternary digits of two planes each, ``P_k`` and ``N_k``.
PLANES = 6
#: Weight of each plane's popcount: ``3^k`` for ``P_k``, ``-3^k`` for ``N_k``.
PLANE_WEIGHTS = (1, -1, 3, -3, 9, -9)
#: Bit-planes of a coarse (ternary) query, and their weights: ``u_j = +1`` sets bit ``j`` of the
#: first plane, ``u_j = -1`` of the second.
COARSE_PLANES = 2
COARSE_WEIGHTS = (1, -1)
#: Row widths (64-bit words) at which four rows fill whole vectors: a single query's scan loads
#: them packed.
PACKED_WORDS = (2, 4, 6)
#: The ternary scan counts both planes with one popcount on rows up to this width, where it is
#: compute-bound (384-d, one thread: 1.14 against 1.38 ns/row); on wider rows two SMT threads
#: streaming memory-mapped rows ran slower with it than with two popcounts (1024-d: 1.25-1.47x
#: against 1.03-1.14x the 4-bit scan's time, alternating rounds).
ONE_POPCOUNT_WORDS = 8


class _PlaneEmitter(_Emitter):
    """Emits one block scan of ``n_queries`` (1 or 4) queries of ``len(weights)`` planes each.

    Query ``j``'s plane ``p`` starts at byte ``q_off + (len(weights) * j + p) * nbytes`` of
    ``queries``; totals go to ``dist[(col + j) * SCAN_BLOCK_ROWS + r]`` (``r`` relative to
    ``row_lo``).
    """

    def __init__(
        self, builder, n_queries, weights, corpus, queries, dist, nbytes, q_off, col, ahead
    ):
        super().__init__(builder, n_queries, corpus, queries, dist, nbytes, q_off, col, ahead)
        self.weights = weights
        least = ir.Constant(_I32, -(2**31))
        self.maximum = cgutils.alloca_once_value(builder, ir.Constant(_V4_I32, [least] * 4))
        self.words = None  # row width of the loop being emitted, when specialised
        self.plane_offsets = [
            [
                builder.add(q_off, builder.mul(nbytes, _i64(len(weights) * j + p)))
                for p in range(len(weights))
            ]
            for j in range(n_queries)
        ]
        offsets = [self.digit_offset(planes) for planes in self.plane_offsets]
        offsets += offsets[-1:] * (QUERIES_PER_SCAN - n_queries)
        self.offsets = ir.Constant(_V4_I32, ir.Undefined)
        for j, offset in enumerate(offsets):
            self.offsets = builder.insert_element(self.offsets, offset, ir.Constant(_I32, j))

    def digit_offset(self, planes):
        """``i32`` ``sum_k 3^k popcount(N_k)`` over the whole words of one query's ``planes``
        (byte offsets): what its raw totals exceed its totals by."""
        b = self.b
        offset = cgutils.alloca_once_value(b, _i64(0))
        ctpop = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(_I64, [_I64]), "llvm.ctpop.i64"
        )
        with cgutils.for_range(b, b.udiv(self.nbytes, _i64(8))) as loop:
            total = b.load(offset)
            for weight, minus in zip(self.weights[0::2], planes[1::2]):
                at = b.add(minus, b.mul(loop.index, _i64(8)))
                word = b.load(self._pointer(self.queries, at, _I64), align=1)
                total = b.add(total, b.mul(b.call(ctpop, [word]), _i64(weight)))
            b.store(total, offset)
        return b.trunc(b.load(offset), _I32)

    def plane_sum(self, row_vector, planes):
        """``<8 x i64>`` lanes of the raw total ``sum_k 3^k popcount((P_k AND b) OR (N_k AND NOT
        b))`` over the digits ``(P_k, N_k)`` of ``planes`` (weights: ``self.weights``), summed
        from the top digit down."""
        b = self.b
        one_popcount = self.words is not None and self.words <= ONE_POPCOUNT_WORDS
        counts = []
        for plus, minus in zip(planes[0::2], planes[1::2]):
            hit, miss = b.and_(plus, row_vector), b.and_(minus, b.not_(row_vector))
            if one_popcount or self.weights != COARSE_WEIGHTS:
                counts.append(b.call(self.ctpop, [b.or_(hit, miss)]))
            else:
                counts.append(b.add(b.call(self.ctpop, [hit]), b.call(self.ctpop, [miss])))
        digit_weights = self.weights[0::2]
        total = counts[-1]
        for k in range(len(counts) - 2, -1, -1):
            ratio = digit_weights[k + 1] // digit_weights[k]
            total = b.add(b.mul(total, ir.Constant(total.type, [ratio] * 8)), counts[k])
        return total

    def row_totals(self, row_index_in_block, row_lo, chunks, plane_vectors):
        """Prefetch ahead; the ``<8 x i64>`` lanes of each query's ``t`` for one row."""
        b = self.b
        row_offset = b.mul(b.add(row_lo, row_index_in_block), self.nbytes)
        for off, _ in chunks:
            self.prefetch_ahead(b.add(row_offset, _i64(off)))
        sums = [self.zero] * self.n_queries
        for (off, w), per_query in zip(chunks, plane_vectors):
            row_vector = self.load_words(self.corpus, b.add(row_offset, _i64(off)), w)
            sums = [
                b.add(s, self.plane_sum(row_vector, planes)) for s, planes in zip(sums, per_query)
            ]
        return sums

    def sum_at(self, query, row_index):
        column = self.b.add(self.col, _i64(query))
        return self.b.gep(
            self.dist, [self.b.add(self.b.mul(column, _i64(SCAN_BLOCK_ROWS)), row_index)]
        )

    def store_row(self, row_index, lanes):
        """Write one row's totals (one per query)."""
        b = self.b
        if self.n_queries == 1:
            offset = b.extract_element(self.offsets, ir.Constant(_I32, 0))
            totals = [b.sub(b.trunc(b.call(self.reduce_add, [lanes[0]]), _I32), offset)]
            undefined = ir.Constant(_V4_I32, ir.Undefined)
            one = b.insert_element(undefined, totals[0], ir.Constant(_I32, 0))
            four = _shuffle(b, one, undefined, [0] * QUERIES_PER_SCAN)
        else:
            four = b.sub(self.reduce_four(lanes), self.offsets)
            totals = [b.extract_element(four, ir.Constant(_I32, j)) for j in range(self.n_queries)]
        for j, total in enumerate(totals):
            b.store(total, self.sum_at(j, row_index))
        self.raise_maximum(four)

    def raise_maximum(self, four):
        """Lanewise ``maximum = max(maximum, four)`` (``<4 x i32>``: four rows of one query, or
        one row of four queries)."""
        b = self.b
        current = b.load(self.maximum)
        b.store(b.select(b.icmp_signed(">", four, current), four, current), self.maximum)

    def maxima(self, context, return_type):
        """The largest total written: ``int32`` for one query, a 4-tuple for four."""
        b = self.b
        value = b.load(self.maximum)
        lanes = [b.extract_element(value, ir.Constant(_I32, j)) for j in range(QUERIES_PER_SCAN)]
        if self.n_queries == 1:
            largest = lanes[0]
            for lane in lanes[1:]:
                largest = b.select(b.icmp_signed(">", lane, largest), lane, largest)
            return largest
        return context.make_tuple(b, return_type, lanes)

    def specialised_rows(self, row_lo, count, words):
        """Row loop for a width of exactly ``words`` words; planes held in registers. A single
        query's rows go four at a time through one shuffle tree, the rest one by one."""
        b = self.b
        self.words = words
        chunks = self.chunks(words)
        plane_vectors = [
            [
                [self.load_words(self.queries, b.add(p_off, _i64(off)), w) for p_off in offsets]
                for offsets in self.plane_offsets
            ]
            for off, w in chunks
        ]
        done = _i64(0)
        if self.n_queries == 1:
            groups = b.udiv(count, _i64(QUERIES_PER_SCAN))
            unpacked = b.icmp_unsigned("!=", self.nbytes, _i64(8 * words))
            if words in PACKED_WORDS:
                with b.if_else(unpacked) as (plain, packed):
                    with plain:
                        self.four_row_groups(groups, row_lo, chunks, plane_vectors)
                    with packed:
                        self.packed_groups(groups, row_lo, words)
            else:
                self.four_row_groups(groups, row_lo, chunks, plane_vectors)
            done = b.mul(groups, _i64(QUERIES_PER_SCAN))
        with cgutils.for_range(b, b.sub(count, done)) as loop:
            row = b.add(done, loop.index)
            self.store_row(row, self.row_totals(row, row_lo, chunks, plane_vectors))

    def four_row_groups(self, groups, row_lo, chunks, plane_vectors):
        """A single query's rows four at a time, each row loaded alone, summed by one tree."""
        b = self.b
        with cgutils.for_range(b, groups) as loop:
            first = b.mul(loop.index, _i64(QUERIES_PER_SCAN))
            lanes = [
                self.row_totals(b.add(first, _i64(i)), row_lo, chunks, plane_vectors)[0]
                for i in range(QUERIES_PER_SCAN)
            ]
            self.store_four(first, self.reduce_four(lanes))

    def packed_groups(self, groups, row_lo, words):
        """A single query's rows four at a time when four rows fill whole vectors (``words`` in
        ``PACKED_WORDS``, no trailing bytes): ``words / 2`` full loads per four rows instead of
        four partial ones, and no idle lanes. Lane ``l`` of vector ``z`` holds word ``8 z + l``
        of the four rows, of row ``(8 z + l) // words``; the planes are laid out to match."""
        b = self.b
        vectors = words // 2
        word_of = [[(8 * z + lane) % words for lane in range(8)] for z in range(vectors)]
        row_of = [[(8 * z + lane) // words for lane in range(8)] for z in range(vectors)]
        planes = [
            [self.lanes_of_words(p_off, word_of[z]) for p_off in self.plane_offsets[0]]
            for z in range(vectors)
        ]
        with cgutils.for_range(b, groups) as loop:
            first = b.mul(loop.index, _i64(QUERIES_PER_SCAN))
            offset = b.mul(b.add(row_lo, first), self.nbytes)
            sums = []
            for z in range(vectors):
                at = b.add(offset, _i64(64 * z))
                self.prefetch_ahead(at)
                sums.append(self.plane_sum(self.load_words(self.corpus, at, 8), planes[z]))
            rows = []
            for i in range(QUERIES_PER_SCAN):
                total = None
                for z in range(vectors):
                    mine = [row == i for row in row_of[z]]
                    if not any(mine):
                        continue
                    part = sums[z]
                    if not all(mine):
                        part = b.select(ir.Constant(_MASK8, mine), part, self.zero)
                    total = part if total is None else b.add(total, part)
                rows.append(total)
            self.store_four(first, self.reduce_four(rows))

    def lanes_of_words(self, offset, words):
        """``<8 x i64>`` whose lane ``l`` is the word ``words[l]`` of the bytes at ``offset``."""
        vector = self.zero
        for lane, word in enumerate(words):
            value = self.b.load(
                self._pointer(self.queries, self.b.add(offset, _i64(8 * word)), _I64), align=1
            )
            vector = self.b.insert_element(vector, value, ir.Constant(_I32, lane))
        return vector

    def store_four(self, first, four):
        """Store a single query's totals of rows ``first .. first + 3`` (raw: ``four``)."""
        four = self.b.sub(
            four, _shuffle(self.b, self.offsets, self.offsets, [0] * QUERIES_PER_SCAN)
        )
        self.b.store(four, self.b.bitcast(self.sum_at(0, first), four.type.as_pointer()), align=4)
        self.raise_maximum(four)

    def general_rows(self, row_lo, count, nwords):
        """Row loop for any width: whole chunks with plain loads, the last one masked."""
        b = self.b
        self.words = None  # a width known at run time only, past every specialised one
        full = b.udiv(nwords, _i64(8))
        tail = b.urem(nwords, _i64(8))
        with cgutils.for_range(b, count) as loop:
            row_offset = b.mul(b.add(row_lo, loop.index), self.nbytes)
            sums = [cgutils.alloca_once_value(b, self.zero) for _ in range(self.n_queries)]

            def accumulate(load, byte):
                row_vector = load(self.corpus, b.add(row_offset, byte))
                for s, offsets in zip(sums, self.plane_offsets):
                    planes = [load(self.queries, b.add(p_off, byte)) for p_off in offsets]
                    b.store(b.add(b.load(s), self.plane_sum(row_vector, planes)), s)

            with cgutils.for_range(b, full) as chunk:
                accumulate(lambda d, o: self.load_words(d, o, 8), b.mul(chunk.index, _i64(64)))
            with b.if_then(b.icmp_unsigned("!=", tail, _i64(0))):
                accumulate(lambda d, o: self.load_tail_masked(d, o, tail), b.mul(full, _i64(64)))
            self.store_row(loop.index, [b.load(s) for s in sums])


def _make_plane_block(n_queries: int, weights: tuple[int, ...]):
    @intrinsic
    def plane_block(typingctx, corpus, row_lo, row_hi, nbytes, planes, q_off, dist, col, ahead):
        result = types.int32 if n_queries == 1 else types.UniTuple(types.int32, QUERIES_PER_SCAN)
        signature = result(
            corpus, types.intp, types.intp, types.intp, planes, types.intp, dist, types.intp,
            types.intp,
        )  # fmt: skip

        def codegen(context, builder, sig, args):
            corpus_, row_lo_, row_hi_, nbytes_, planes_, q_off_, dist_, col_, ahead_ = args
            data = [
                context.make_array(sig.args[i])(context, builder, a).data
                for i, a in ((0, corpus_), (4, planes_), (6, dist_))
            ]
            emit = _PlaneEmitter(
                builder, n_queries, weights, data[0], data[1], data[2], nbytes_, q_off_, col_,
                ahead_,
            )  # fmt: skip
            count = builder.sub(row_hi_, row_lo_)
            nwords = builder.udiv(nbytes_, _i64(8))
            done = builder.append_basic_block("planes_done")
            general = builder.append_basic_block("planes_general")
            switch = builder.switch(nwords, general)
            for words in range(_SPECIALISED_WORDS + 1):
                case = builder.append_basic_block(f"planes_words_{words}")
                switch.add_case(_i64(words), case)
                builder.position_at_end(case)
                emit.specialised_rows(row_lo_, count, words)
                builder.branch(done)
            builder.position_at_end(general)
            emit.general_rows(row_lo_, count, nwords)
            builder.branch(done)
            builder.position_at_end(done)
            return emit.maxima(context, sig.return_type)

        return signature, codegen

    return plane_block


#: ``plane_block_1(corpus, row_lo, row_hi, nbytes, planes, q_off, dist, col, ahead) -> int32``
#: writes ``t`` of corpus row ``r`` and the query at byte ``q_off`` to ``dist[col *
#: SCAN_BLOCK_ROWS + r - row_lo]`` and returns the largest one written.
plane_block_1 = _make_plane_block(1, PLANE_WEIGHTS)
#: ``plane_block_4`` does the same for the four queries at ``q_off + j * PLANES * nbytes``, into
#: columns 0..3, and returns their four maxima.
plane_block_4 = _make_plane_block(QUERIES_PER_SCAN, PLANE_WEIGHTS)
#: ``coarse_block_1`` and ``coarse_block_4``: the same for ternary queries of ``COARSE_PLANES``.
coarse_block_1 = _make_plane_block(1, COARSE_WEIGHTS)
coarse_block_4 = _make_plane_block(QUERIES_PER_SCAN, COARSE_WEIGHTS)


@intrinsic
def bfloat16_pair(typingctx, bits):
    """The two float32 values of the ``uint32`` ``bits`` holding two bfloat16 (low half first),
    like a little-endian ``(2,) uint16`` pair read as one word (exact)."""
    signature = types.UniTuple(types.float32, 2)(types.uint32)

    def codegen(context, builder, sig, args):
        low = builder.shl(args[0], ir.Constant(_I32, 16))
        high = builder.and_(args[0], ir.Constant(_I32, 0xFFFF0000))
        values = [builder.bitcast(half, ir.FloatType()) for half in (low, high)]
        return context.make_tuple(builder, sig.return_type, values)

    return signature, codegen


@intrinsic
def float32_bits(typingctx, value):
    """The ``uint32`` bit pattern of the float32 ``value``."""
    signature = types.uint32(types.float32)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], _I32)

    return signature, codegen


def _make_digit_count(bits: int):
    @intrinsic
    def digit_count(typingctx, a, ia, planes, plus, minus):
        signature = types.int64(a, types.intp, planes, types.intp, types.intp)

        def codegen(context, builder, sig, args):
            unit = ir.IntType(bits)
            values = []
            for array, offset, array_type in (
                (args[0], args[1], sig.args[0]),
                (args[2], args[3], sig.args[2]),
                (args[2], args[4], sig.args[2]),
            ):
                data = context.make_array(array_type)(context, builder, array).data
                pointer = builder.bitcast(builder.gep(data, [offset]), unit.as_pointer())
                values.append(builder.load(pointer, align=1))
            row, p, n = values
            either = builder.or_(builder.and_(row, p), builder.and_(builder.not_(row), n))
            ctpop = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(unit, [unit]), f"llvm.ctpop.i{bits}"
            )
            return builder.zext(builder.call(ctpop, [either]), _I64)

        return signature, codegen

    return digit_count


#: ``digit_count_word(a, ia, planes, plus, minus)``: ``popcount((b AND P) OR (NOT b AND N))`` of
#: the 8-byte words at byte offsets ``ia`` of ``a`` (``b``) and ``plus``, ``minus`` of ``planes``
#: (flat ``uint8`` arrays, unaligned loads): one signed digit's count plus ``popcount(N)``.
digit_count_word = _make_digit_count(64)
#: ``digit_count_byte``: the same for single bytes.
digit_count_byte = _make_digit_count(8)
