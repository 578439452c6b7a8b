"""The compiled sampler's machine-level pieces: numba intrinsics (bit casts, atomic loads and
stores, the spin-wait hint, the int8 path's integer dot product `_tdot`), the host's vector
features, and the spin barrier the threads of a layout meet at.

Imports numba where it is installed; without it every name here still exists, and nothing
compiled is called (`available()`).
"""

import platform

import numpy as np

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, overload
except ImportError:  # the reference PyTorch path still works
    numba = None

_SPINS = 4000  # pause-spins before a barrier wait yields the core (shared or busy machines)
_LINE = 16  # int64s per barrier counter: each counter on its own 128-byte line pair


def available() -> bool:
    """True when numba is installed and the compiled path can run."""
    return numba is not None


def njit(**options):
    """numba.njit(**options) as a decorator; without numba, the plain Python function."""
    return numba.njit(**options) if numba is not None else lambda f: f


def _widen(w):
    """A stored weight as arithmetic: bfloat16 bits (uint16) -> float32, floats unchanged."""
    return w


if numba is not None:

    @intrinsic
    def _f32_from_bits(typingctx, bits):
        """Reinterpret uint32 bits as a float32 (no conversion)."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.uint32), codegen

    @intrinsic
    def _f64_from_bits(typingctx, bits):
        """Reinterpret int64 bits as a float64 (no conversion)."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(types.int64), codegen

    @overload(_widen, inline="always")
    def _widen_overload(w):
        if isinstance(w, types.Integer):
            return lambda w: _f32_from_bits(np.uint32(w) << np.uint32(16))
        return lambda w: w

    def _element_pointer(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        return cgutils.get_item_pointer(context, builder, signature.args[0], ary, [index])

    @intrinsic
    def _load_acquire(typingctx, array, index):
        """array[index] (int64) read with acquire ordering: later reads see what the writer
        wrote before its release."""

        def codegen(context, builder, signature, args):
            return builder.load_atomic(
                _element_pointer(context, builder, signature, args), "acquire", 8
            )

        return types.int64(array, index), codegen

    @intrinsic
    def _store_release(typingctx, array, index, value):
        """array[index] = value (int64) with release ordering: publishes earlier writes."""

        def codegen(context, builder, signature, args):
            builder.store_atomic(
                args[2], _element_pointer(context, builder, signature, args), "release", 8
            )
            return context.get_dummy_value()

        return types.void(array, index, types.int64), codegen

    _X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    _LINUX = platform.system() == "Linux"

    @intrinsic
    def _relax(typingctx, yield_core):
        """One spin-wait step: the x86 `pause` hint, or with yield_core, sched_yield()."""

        def codegen(context, builder, signature, args):
            mod = builder.module
            if _X86:
                pause = cgutils.get_or_insert_function(
                    mod, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
                )
                builder.call(pause, [])
            if _LINUX:
                sched_yield = cgutils.get_or_insert_function(
                    mod, ir.FunctionType(ir.IntType(32), []), "sched_yield"
                )
                with builder.if_then(args[0]):
                    builder.call(sched_yield, [])
            return context.get_dummy_value()

        return types.void(types.boolean), codegen

    def _host_features() -> set:
        try:
            from llvmlite import binding

            return {k for k, v in binding.get_host_cpu_features().items() if v}
        except Exception:  # noqa: BLE001 - any failure means: no integer dot here
            return set()

    _FEATURES = _host_features() if _X86 else set()
    # The integer products: int16 inputs times int8 weights summed in int32 by pmaddwd (32
    # products an instruction with AVX-512BW, 16 with AVX2; fused to vpdpwssd with VNNI).
    if "avx512bw" in _FEATURES:
        _LANES, _MADD = 32, "llvm.x86.avx512.pmaddw.d.512"
    elif "avx2" in _FEATURES:
        _LANES, _MADD = 16, "llvm.x86.avx2.pmadd.wd"
    else:
        _LANES, _MADD = 0, ""

    _TILE = 2 * _LANES  # outputs a pass of the tiled product keeps in four accumulators

    def _row_pointers(builder, array, first, rows):
        """Byte pointers to rows first .. first + rows - 1 of a 2-d array's data."""
        i64, byte_p = ir.IntType(64), ir.IntType(8).as_pointer()
        stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
        data = builder.bitcast(array.data, byte_p)
        return [
            builder.gep(data, [builder.mul(builder.add(first, ir.Constant(i64, a)), stride)])
            for a in range(rows)
        ]

    def _tdot_codegen(xrows):
        def codegen(context, builder, signature, args):
            i32, i64, byte_p = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
            half = _LANES // 2
            xv_t = ir.VectorType(ir.IntType(16), _LANES)
            wv_t = ir.VectorType(ir.IntType(8), _LANES)
            acc_t = ir.VectorType(i32, half)
            madd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(acc_t, [xv_t, xv_t]), _MADD
            )
            codes = context.make_array(signature.args[0])(context, builder, args[0])
            wt = context.make_array(signature.args[2])(context, builder, args[2])
            sums = context.make_array(signature.args[3])(context, builder, args[3])
            first = context.cast(builder, args[1], signature.args[1], types.intp)
            tiles, pairs = cgutils.unpack_tuple(builder, wt.shape, 4)[:2]
            x_rows = _row_pointers(builder, codes, first, xrows)
            s_rows = _row_pointers(builder, sums, first, xrows)
            w_data = builder.bitcast(wt.data, byte_p)
            accs = [[cgutils.alloca_once(builder, acc_t) for _ in range(4)] for _ in range(xrows)]
            with cgutils.for_range(builder, tiles) as tile:
                for row in accs:
                    for acc in row:
                        builder.store(ir.Constant(acc_t, None), acc)
                tile_at = builder.mul(tile.index, pairs)
                with cgutils.for_range(builder, pairs) as pair:
                    at = builder.mul(builder.add(tile_at, pair.index), ir.Constant(i64, 2 * _TILE))
                    xs = []  # the pair x[2p], x[2p + 1] in every 32-bit lane
                    for x_row in x_rows:
                        word = builder.load(
                            builder.bitcast(
                                builder.gep(x_row, [builder.mul(pair.index, ir.Constant(i64, 4))]),
                                i32.as_pointer(),
                            ),
                            align=2,
                        )
                        splat = builder.insert_element(
                            ir.Constant(acc_t, None), word, ir.Constant(i32, 0)
                        )
                        splat = builder.shuffle_vector(splat, splat, ir.Constant(acc_t, None))
                        xs.append(builder.bitcast(splat, xv_t))
                    for i in range(4):  # outputs i * half .. of the tile, two weights each
                        ws = builder.sext(
                            builder.load(
                                builder.bitcast(
                                    builder.gep(
                                        w_data, [builder.add(at, ir.Constant(i64, i * _LANES))]
                                    ),
                                    wv_t.as_pointer(),
                                ),
                                align=1,
                            ),
                            xv_t,
                        )
                        for xv, row in zip(xs, accs, strict=True):
                            product = builder.call(madd, [xv, ws])
                            builder.store(builder.add(builder.load(row[i]), product), row[i])
                out_at = builder.mul(tile.index, ir.Constant(i64, _TILE * 4))
                for s_row, row in zip(s_rows, accs, strict=True):
                    for i, acc in enumerate(row):
                        where = builder.gep(
                            s_row, [builder.add(out_at, ir.Constant(i64, i * half * 4))]
                        )
                        builder.store(
                            builder.load(acc), builder.bitcast(where, acc_t.as_pointer()), align=4
                        )
            return context.get_dummy_value()

        return codegen

    def _tdot(xrows):
        """An intrinsic writing sums[r + a, o] = sum_c codes[r + a, c] * w[o, c] in int32 for
        a < xrows and every output o of a tiled int8 matrix wt (tiles, k / 2, _TILE, 2) (see
        `tiled`): each pass broadcasts one pair of inputs and multiplies it with the pairs of
        _TILE outputs at once, so no sum needs a horizontal reduction. codes: int16 (rows,
        >= k, k even); sums: int32 (rows, >= tiles * _TILE). `_tdot(2)(codes, r, wt, sums)`."""

        def typer(typingctx, codes, r, wt, sums):
            return types.void(codes, r, wt, sums), _tdot_codegen(xrows)

        return intrinsic(typer)

    _tdot2, _tdot1 = _tdot(2), _tdot(1)

else:  # nothing compiled runs (`available()`); the names stay importable
    _f32_from_bits = _f64_from_bits = _load_acquire = _store_release = _relax = None
    _tdot1 = _tdot2 = None
    _LANES = _TILE = 0


def int8_dot_available() -> bool:
    """True where the compiled int8 path's integer dot product runs (x86 with AVX2)."""
    return numba is not None and _LANES > 0


@njit(cache=True, inline="always")
def _wait(sync, at, count):
    """Spin until the counter at sync[at] reaches count (counters only grow)."""
    spins = 0
    while _load_acquire(sync, at) < count:
        spins += 1
        _relax(spins > _SPINS)


@njit(cache=True)
def _barrier(sync, part, parts, count):
    """Wait until every part has arrived at barrier `count`."""
    _store_release(sync, part * _LINE, count)
    for q in range(parts):
        _wait(sync, q * _LINE, count)
