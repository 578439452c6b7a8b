"""The cached-queue sampler's generation loop compiled to machine code with numba.

`CachedSampler.step` costs ~30 small PyTorch calls per layer-step, so at batch 1 Python and
dispatch overhead, not arithmetic, set the speed. Here a whole chunk of samples (layers, gates,
head, softmax and the random draw) runs in one compiled call over the sampler's own state: the
same ring buffers and merged weights (`CachedSampler.merged_weights`), so both paths compute the
same numbers and stay interchangeable mid-run.

Once the loop is compiled, a sample costs a read of every weight (1.27 M for the default model,
5 MB in float32): more than one core's L2, so batch 1 runs at the speed the last-level cache
streams them. Two things cut that traffic:

- storage: weights kept as bfloat16 (the top 16 bits of a float32, widened back by a shift in
  registers; the arithmetic stays float32), half the bytes; or as int8 with one float32 scale
  per output row, a quarter of the bytes (the default model's 1.3 MB fit a 2 MB L2). The int8
  path also rounds each matrix input to int16 levels of its own largest value and sums the
  products exactly in int32 with pmaddwd (`_tdot`): widening int8 weights to float32 would
  cost more instructions than the multiply-adds, and the integer sum takes 32 products an
  instruction. Its matrices are tiled so that vector lanes are output rows (`tiled`): one
  broadcast pair of inputs meets 64 outputs' weights a pass and no sum is reduced across
  lanes. Arithmetic, not weight traffic, sets its speed;
- parts: the weights split between `parts` threads (one per core), each computing its share of
  every layer from its own cache; a spin barrier per layer exchanges the residual partial sums.
  With bfloat16 and two parts each core's share (1.3 MB) stays in its 2 MB L2.

Every part computes the whole batch, so the split works at batch 1; the threads' results are
combined in a fixed order, so a run gives the same numbers however its threads are scheduled.
With weights of one part, a stream can also run on two threads with no barrier (`_run_pair`:
the layers on one, the skip projections, head and draw on the other), the layout the int8 path
takes at batch 1 on two free cores.
"""

import math
import platform
import threading
from dataclasses import dataclass

import numpy as np
import torch

from wavenet.model import output

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, overload
except ImportError:  # the reference PyTorch path still works
    numba = None

STORAGES = ("float32", "bfloat16", "int8")


def available() -> bool:
    """True when numba is installed and the compiled path can run."""
    return numba is not None


# float32 constants keep float32 models' arithmetic in float32 (a float64 literal would promote).
_CLAMP = np.float32(7.90531110763549805)
_ALPHA = tuple(
    np.float32(v)
    for v in (
        -2.76076847742355e-16,
        2.00018790482477e-13,
        -8.60467152213735e-11,
        5.12229709037114e-08,
        1.48572235717979e-05,
        6.37261928875436e-04,
        4.89352455891786e-03,
    )
)
_BETA = tuple(
    np.float32(v)
    for v in (
        1.19825839466702e-06,
        1.18534705686654e-04,
        2.26843463243900e-03,
        4.89352518554385e-03,
    )
)
_HALF = np.float32(0.5)
_ZERO = np.float32(0.0)
_FLOOR = np.float32(1e-30)  # the int8 path's least input range (an all-zero row's)
_SPINS = 4000  # pause-spins before a barrier wait yields the core (shared or busy machines)
_LINE = 16  # int64s per barrier counter: each counter on its own 128-byte line pair


def _tanh(x):
    """float32-accurate tanh as a rational function (Eigen's fast tanh), which vectorizes.

    Max error about 1e-7 where tanh is ~1: far inside the 1e-4 logits tolerance, and several
    times faster than libm's scalar tanh in the gate loop, the hottest transcendental here.
    """
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x2 * _ALPHA[0] + _ALPHA[1]
    p = p * x2 + _ALPHA[2]
    p = p * x2 + _ALPHA[3]
    p = p * x2 + _ALPHA[4]
    p = p * x2 + _ALPHA[5]
    p = p * x2 + _ALPHA[6]
    q = x2 * _BETA[0] + _BETA[1]
    q = q * x2 + _BETA[2]
    q = q * x2 + _BETA[3]
    return x * p / q


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
            code_stride = cgutils.unpack_tuple(builder, codes.strides, 2)[0]
            sum_stride = cgutils.unpack_tuple(builder, sums.strides, 2)[0]
            tiles, pairs = cgutils.unpack_tuple(builder, wt.shape, 4)[:2]
            x_rows = [
                builder.gep(
                    builder.bitcast(codes.data, byte_p),
                    [builder.mul(builder.add(first, ir.Constant(i64, a)), code_stride)],
                )
                for a in range(xrows)
            ]
            s_rows = [
                builder.gep(
                    builder.bitcast(sums.data, byte_p),
                    [builder.mul(builder.add(first, ir.Constant(i64, a)), sum_stride)],
                )
                for a in range(xrows)
            ]
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


def int8_dot_available() -> bool:
    """True where the compiled int8 path's integer dot product runs (x86 with AVX2)."""
    return numba is not None and _LANES > 0


def _wait(sync, at, count):
    """Spin until the counter at sync[at] reaches count (counters only grow)."""
    spins = 0
    while _load_acquire(sync, at) < count:
        spins += 1
        _relax(spins > _SPINS)


def _barrier(sync, part, parts, count):
    """Wait until every part has arrived at barrier `count`."""
    _store_release(sync, part * _LINE, count)
    for q in range(parts):
        _wait(sync, q * _LINE, count)


def _project(x, w, scale, out, xq):
    """out = (x @ w.T) * scale for x (rows, k), w (n, k) (PyTorch's layout), scale (n,) (ones
    for float storage, which leaves the sums exact), out (rows, n); xq: the int8 path's scratch
    (`_project_int8`, which this dispatches to for int8 weights), unused here.

    Dot-product order: each weight row stays in L1 across the batch rows, and the inner loop is
    one vectorized reduction (about twice the throughput of an axpy over `out` here).
    """
    rows, k = x.shape
    for j in range(w.shape[0]):
        wj = w[j]
        for r in range(rows):
            acc = _ZERO
            xr = x[r]
            for c in range(k):
                acc += xr[c] * _widen(wj[c])
            out[r, j] = acc * scale[j]


def _absmax(x, k):
    """max |x[:k]|, in eight independent chains (one chain waits on every max's latency)."""
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = _ZERO
    for c in range(0, k - k % 8, 8):
        t0, t1 = max(t0, abs(x[c])), max(t1, abs(x[c + 1]))
        t2, t3 = max(t2, abs(x[c + 2])), max(t3, abs(x[c + 3]))
        t4, t5 = max(t4, abs(x[c + 4])), max(t5, abs(x[c + 5]))
        t6, t7 = max(t6, abs(x[c + 6])), max(t7, abs(x[c + 7]))
    top = max(max(max(t0, t1), max(t2, t3)), max(max(t4, t5), max(t6, t7)))
    for c in range(k - k % 8, k):
        top = max(top, abs(x[c]))
    return top


def _project_int8(x, w, scale, out, xq):
    """`_project` for int8 weights tiled by `tiled` (w: (tiles, k / 2, _TILE, 2)): each row of
    x rounded to int16 levels of its own step (max |x[r]| / levels), the products summed
    exactly in int32 (`_tdot`, two rows of x a pass), then scaled. xq: (int16 codes (rows,
    >= k + 1), float32 steps (rows,), int32 sums (rows, >= w's padded outputs)) scratch.

    levels = min(32767, (2^31 - 1) // (127 k)): no sum of k products can overflow int32, and
    a row's rounding error is at most half a step (1/65534 of its largest value for k <= 516).
    """
    codes, steps, sums = xq
    rows, k = x.shape
    n = scale.shape[0]
    levels = min(32767, (2**31 - 1) // (127 * k))
    for r in range(rows):
        xr, qr = x[r], codes[r]
        top = _absmax(xr, k)
        step = max(top, _FLOOR) / np.float32(levels)  # any step codes an all-zero row
        inv = np.float32(1.0) / step
        for c in range(k):
            qr[c] = np.int16(np.rint(xr[c] * inv))
        qr[k] = 0  # an odd k's last pair
        steps[r] = step
    for r in range(0, rows - rows % 2, 2):
        _tdot2(codes, r, w, sums)
    if rows % 2:
        _tdot1(codes, rows - 1, w, sums)
    for r in range(rows):
        step = steps[r]
        for j in range(n):
            out[r, j] = np.float32(sums[r, j]) * (scale[j] * step)


def _gates(a, g, exact):
    """g = tanh(filter) * sigmoid(gate) for a (rows, 2 * units) = [filter, gate] rows."""
    units = g.shape[1]
    for r in range(a.shape[0]):
        if exact:  # float64 models: libm, to the last bit
            for j in range(units):
                g[r, j] = math.tanh(a[r, j]) / (1.0 + math.exp(-a[r, units + j]))
        else:  # sigmoid(y) = (1 + tanh(y / 2)) / 2
            for j in range(units):
                g[r, j] = _tanh(a[r, j]) * (_HALF + _HALF * _tanh(_HALF * a[r, units + j]))


def _linear(x, w, scale, bias, out, xq):
    """out = (x @ w.T) * scale + bias; see `_project`."""
    _project(x, w, scale, out, xq)
    for r in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[r, j] += bias[j]


def _linear_rows(x, w, scale, bias, out, xq):
    """`_linear` with a bias per row: bias (rows, n)."""
    _project(x, w, scale, out, xq)
    for r in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[r, j] += bias[r, j]


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts: k * _LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_EXP_FLOOR = -700.0  # exp(-700) ~ 1e-304: a normal float64, and nothing beside a sum >= 1
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))


def _exp_neg(x):
    """exp(x) for float64 x <= 0, within ~2e-16 relative, in arithmetic that vectorizes (libm's
    exp is a call per element): x = k ln 2 + r with |r| <= ln 2 / 2, exp(r) by its Taylor
    series to r^13 (remainder < 2e-16), 2^k written into the exponent bits. x below
    _EXP_FLOOR counts as _EXP_FLOOR."""
    x = max(x, _EXP_FLOOR)
    k = np.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    c = _INV_FACT
    p = ((((c[13] * r + c[12]) * r + c[11]) * r + c[10]) * r + c[9]) * r + c[8]
    p = ((((p * r + c[7]) * r + c[6]) * r + c[5]) * r + c[4]) * r + c[3]
    p = ((p * r + c[2]) * r + c[1]) * r + c[0]
    return p * _f64_from_bits(np.int64(k + 1023.0) << 52)


def _sample_row(logits, u, temperature, scratch):
    """Inverse-CDF draw from softmax(logits / temperature) with uniform u; argmax (the first
    largest) when T = 0.

    The same draw as wavenet.model.output.categorical_draw: its float64 softmax to ~1e-15, so
    the draws differ only where u falls that close to a step of the CDF."""
    n = logits.shape[0]
    top = logits[0]
    for j in range(1, n):  # one vectorized max, then the first index that holds it
        top = max(top, logits[j])
    if temperature == 0.0:
        for j in range(n):
            if logits[j] == top:
                return j
        return 0  # no logit equals the max: NaN logits (the old loop's answer)
    inv = 1.0 / temperature
    total = 0.0
    for j in range(n):
        e = _exp_neg((logits[j] - top) * inv)
        scratch[j] = e
        total += e
    target = u * total
    acc = 0.0
    for j in range(n):
        acc += scratch[j]
        if acc > target:
            return j
    return n - 1


# wavenet.model.output's constants, as the compiled draws use them.
_LOG_SCALE_MIN = output.LOG_SCALE_MIN
_HALF_LEVELS = float(output.HALF)
_TINY = output.TINY
# Acklam's rational approximation of the standard normal quantile (relative error 1.2e-9),
# refined below by one Halley step to float64 accuracy.
_ACKLAM_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_ACKLAM_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_ACKLAM_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_ACKLAM_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)


def _ndtri_lower(p):
    """The standard normal quantile of p in (0, 0.5]."""
    a, b, c, d = _ACKLAM_A, _ACKLAM_B, _ACKLAM_C, _ACKLAM_D
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
        )
    e = 0.5 * math.erfc(-x / math.sqrt(2.0)) - p
    v = e * math.sqrt(2.0 * math.pi) * math.exp(0.5 * x * x)
    return x - v / (1.0 + 0.5 * x * v)


def _ndtri(p):
    """The standard normal quantile (torch.special.ndtri) of p in (0, 1); 1 - p is exact for
    p >= 0.5, so the upper half mirrors the lower."""
    return _ndtri_lower(p) if p <= 0.5 else -_ndtri_lower(1.0 - p)


def _to_code(x):
    """A continuous value -> its 16-bit code (output.to_codes: round half to even, clipped)."""
    v = np.rint(x * _HALF_LEVELS)
    return int(min(max(v, -_HALF_LEVELS), _HALF_LEVELS - 1.0) + _HALF_LEVELS)


def _draw_mol(params, u, temperature, scratch):
    """A discretized mixture of logistics' draw (output.Logistics.draw) with uniform u."""
    k = params.shape[0] // 3
    best = 0
    for j in range(1, k):
        if params[j] > params[best]:
            best = j
    if temperature == 0.0:
        return _to_code(float(params[k + best]))
    top = float(params[best])
    total = 0.0
    for j in range(k):
        scratch[j] = math.exp((float(params[j]) - top) / temperature)
        total += scratch[j]
    target = u * total
    below = 0.0
    c = k - 1
    for j in range(k):
        if below + scratch[j] > target:
            c = j
            break
        below += scratch[j]
    v = min(max((target - below) / scratch[c], _TINY), 1.0 - _TINY)
    scale = math.exp(max(float(params[2 * k + c]), _LOG_SCALE_MIN))
    return _to_code(float(params[k + c]) + temperature * scale * (math.log(v) - math.log1p(-v)))


def _draw_gaussian(params, u, temperature):
    """A discretized Gaussian's draw (output.Gaussian.draw) with uniform u."""
    mean = float(params[0])
    if temperature == 0.0:
        return _to_code(mean)
    scale = math.exp(max(float(params[1]), _LOG_SCALE_MIN))
    v = min(max(u, _TINY), 1.0 - _TINY)
    return _to_code(mean + temperature * scale * _ndtri(v))


def _draw(kind, params, u, temperature, scratch):
    """The next code from one row's output parameters; kind as output.KINDS numbers them."""
    if kind == 1:
        return _draw_mol(params, u, temperature, scratch)
    if kind == 2:
        return _draw_gaussian(params, u, temperature)
    return _sample_row(params, u, temperature, scratch)


def _neg_log_prob(logits, x):
    """-ln softmax(logits)[x], in float64."""
    top = float(logits[0])
    for j in range(1, logits.shape[0]):
        top = max(top, float(logits[j]))
    total = 0.0
    for j in range(logits.shape[0]):
        total += math.exp(float(logits[j]) - top)
    return math.log(total) + top - float(logits[x])


def _next_code(r, i, t, logits, io, options, scratch, record):
    """Row r's code for chunk position i (stream position t): drawn from logits[r], or when
    scoring the forced one, whose -ln p is added to nll[r] from t = 2 on; recorded in `out`
    (and nll) where `record` (one thread of those computing the row)."""
    # Indexing, not unpacking: unpacking io with `_` twice in this inlined function lost
    # the writes to nll (numba 0.68; the scoring test caught it).
    if options[4]:  # scoring: teacher forcing; sample t - 1 is fed now
        x = io[4][r, i]
        if record and t >= 2:
            io[5][r] += _neg_log_prob(logits[r], x)
    else:
        x = _draw(options[3], logits[r], io[1][i, r], options[0], scratch)
    if record:
        io[2][r, i] = x
    return x


def _head(skip, w1, w1_s, b1, hidden, w2, w2_s, b2, logits, xq):
    """logits = w2 relu(w1 skip + b1) + b2 (skip already through its ReLU)."""
    _linear(skip, w1, w1_s, b1, hidden, xq)
    for r in range(hidden.shape[0]):
        for j in range(hidden.shape[1]):
            hidden[r, j] = max(hidden[r, j], _ZERO)
    _linear(hidden, w2, w2_s, b2, logits, xq)


def _run_part(part, parts, n, t0, io, ring, net, weights, exchange, options):
    """Generate n samples for every batch row, computing this part's share of each layer.

    io: (logits (batch, classes) in/out, uniforms (n, batch), out (batch, n), local (batch, n,
    layers * gate) or a dummy, forced (batch, n) codes to feed instead of drawing when scoring,
    nll (batch,) float64 accumulating -ln p of each forced code from sample 1 on); ring:
    (buffer, row_bias) of the SamplerState; net: (offsets, spans, dilations); weights:
    `CompiledWeights.arrays`; exchange: (sync counters, residual, skip and logits partials,
    each (2, parts, batch, width)); options: (temperature, exact, has_local, kind: the output
    distribution, output.KINDS, scoring: feed `forced`, categorical only). With parts > 1 the
    other parts run the same call concurrently.
    """
    first_logits, out, local = io[0], io[2], io[3]
    buffer, row_bias = ring
    offsets, spans, dilations, taps_c = net  # taps_c: kernel size * residual channels
    embed, conv_w, res_w, res_b, skip_w, skip_b, w1, b1, w2, b2, skip_scale = weights[:11]
    conv_s, res_s, skip_s, w1_s, w2_s = weights[11:]  # per-row scales (ones for floats)
    sync, x_res, x_skip, x_logits = exchange
    exact, has_local = options[1:3]
    rows = out.shape[0]
    n_layers, width = conv_s.shape[1:]  # width = this part's filter + gate rows
    share = width // 2  # gated outputs of this part per layer
    gate = row_bias.shape[2]
    half = gate // 2
    lo = part * share  # this part's gated outputs: lo .. lo + share - 1
    res = embed.shape[1]
    skip_c = skip_b.shape[0]
    classes = b2.shape[0]
    kernel = taps_c // res
    dt = embed.dtype
    conv_p, res_p, skip_p, w1_p, b1_p, w2_p = (
        conv_w[part],
        res_w[part],
        skip_w[part],
        w1[part],
        b1[part],
        w2[part],
    )
    conv_sp, w1_sp = conv_s[part], w1_s[part]
    zero_res = np.zeros(res, dt)
    zero_skip = np.zeros(skip_c, dt)
    zero_classes = np.zeros(classes, dt)
    h = np.empty((rows, res), dt)
    xcat = np.empty((rows, taps_c), dt)  # [current input, input d ago, 2d ago, ...]
    held = np.empty((n_layers, rows, res), dt)  # layer inputs, written to the ring by part 0
    a = np.empty((rows, width), dt)
    g = np.empty((rows, share), dt)
    ab = np.empty((rows, width), dt)  # this layer's gate bias per row: conv + speaker (+ mel)
    gates = np.empty((rows, n_layers * share), dt)  # every layer's gated output, for the skips
    o = np.empty((rows, res), dt)
    skip = np.empty((rows, skip_c), dt)
    hidden = np.empty((rows, w1_sp.shape[0]), dt)
    logits = np.empty((rows, classes), dt)
    scratch = np.empty(classes, np.float64)
    widest = max(width, res, skip_c, hidden.shape[1], classes)
    xq = (
        np.zeros((rows, max(taps_c, gates.shape[1], skip_c) + 1), np.int16),  # int8 inputs
        np.empty(rows, np.float32),
        np.empty((rows, widest + _TILE), np.int32),
    )
    scale = dt.type(skip_scale)
    root_half = dt.type(math.sqrt(0.5))
    count = 0  # barriers passed; partials alternate between two slots by its parity
    for r in range(rows):
        logits[r] = first_logits[r]
    for i in range(n):
        t = t0 + i
        for r in range(rows):
            x = _next_code(r, i, t, logits, io, options, scratch, part == 0)
            h[r] = embed[x]
        for layer in range(n_layers):
            span = spans[layer]
            base = offsets[layer]
            for m in range(1, kernel):
                slot = base + (t - m * dilations[layer]) % span
                for r in range(rows):
                    for c in range(res):
                        xcat[r, m * res + c] = buffer[slot, r, c]
            for r in range(rows):
                for c in range(res):
                    xcat[r, c] = h[r, c]
                    held[layer, r, c] = h[r, c]
            if parts == 1:  # the oldest tap is in xcat now; its row is free
                for r in range(rows):
                    for c in range(res):
                        buffer[base + t % span, r, c] = h[r, c]
            for r in range(rows):  # this part's filter rows, then its gate rows
                for jj in range(share):
                    ab[r, jj] = row_bias[r, layer, lo + jj]
                    ab[r, share + jj] = row_bias[r, layer, half + lo + jj]
                if has_local:
                    for jj in range(share):
                        ab[r, jj] += local[r, i, layer * gate + lo + jj]
                        ab[r, share + jj] += local[r, i, layer * gate + half + lo + jj]
            _linear_rows(xcat, conv_p[layer], conv_sp[layer], ab, a, xq)
            _gates(a, g, exact)
            for r in range(rows):
                for j in range(share):
                    gates[r, layer * share + j] = g[r, j]
            if layer + 1 == n_layers:
                break  # the last layer's residual output feeds nothing
            _linear(g, res_p[layer], res_s[layer], res_b[layer] if part == 0 else zero_res, o, xq)
            if parts > 1:
                par = count & 1
                x_res[par, part] = o
                count += 1
                _barrier(sync, part, parts, count)
                if part == 0:  # every part has read its taps of this layer
                    for r in range(rows):
                        buffer[base + t % span, r] = held[layer, r]
                for r in range(rows):
                    for j in range(res):
                        acc = x_res[par, 0, r, j]
                        for q in range(1, parts):
                            acc += x_res[par, q, r, j]
                        o[r, j] = acc
            for r in range(rows):
                for j in range(res):
                    h[r, j] = (h[r, j] + o[r, j]) * root_half
        # All skip projections as one long matmul: sum_l W_l g_l = [W_1 .. W_L] [g_1; ..; g_L].
        _linear(gates, skip_p, skip_s, skip_b if part == 0 else zero_skip, skip, xq)
        if parts > 1:
            par = count & 1
            x_skip[par, part] = skip
            count += 1
            _barrier(sync, part, parts, count)
            if part == 0:
                last = n_layers - 1
                for r in range(rows):
                    buffer[offsets[last] + t % spans[last], r] = held[last, r]
            for r in range(rows):
                for j in range(skip_c):
                    acc = x_skip[par, 0, r, j]
                    for q in range(1, parts):
                        acc += x_skip[par, q, r, j]
                    skip[r, j] = acc
        for r in range(rows):
            for j in range(skip_c):
                skip[r, j] = max(skip[r, j] * scale, _ZERO)
        # This part's hidden units and their share of the logits.
        _head(
            skip,
            w1_p,
            w1_sp,
            b1_p,
            hidden,
            w2_p,
            w2_s,
            b2 if part == 0 else zero_classes,
            logits,
            xq,
        )
        if parts > 1:
            par = count & 1
            x_logits[par, part] = logits
            count += 1
            _barrier(sync, part, parts, count)
            for r in range(rows):
                for j in range(classes):
                    acc = x_logits[par, 0, r, j]
                    for q in range(1, parts):
                        acc += x_logits[par, q, r, j]
                    logits[r, j] = acc
    if part == 0:
        for r in range(rows):
            first_logits[r] = logits[r]


def _handed(layers):
    """Layers (the first ones) whose older taps `_run_pair`'s role 1 computes: 7/15 of them,
    which balanced the two threads best on the default model (see `_run_pair`)."""
    return layers * 7 // 15


def _older_taps(
    t, i, layer, buffer, row_bias, local, has_local, net, conv_past, conv_s, taps, pre, xq
):
    """pre[layer] = the older taps' products of `layer` at position t (row i of the chunk)
    plus its gate bias per row (speaker, and mel at i): all of the dilated convolution that
    does not wait on sample t - 1, read from the ring before t writes it."""
    offsets, spans, dilations = net
    rows, res = taps.shape[0], buffer.shape[2]
    gate = pre.shape[2]
    base, span, d = offsets[layer], spans[layer], dilations[layer]
    for m in range(taps.shape[1] // res):
        slot = base + (t - (m + 1) * d) % span
        for r in range(rows):
            for c in range(res):
                taps[r, m * res + c] = buffer[slot, r, c]
    _linear_rows(taps, conv_past[layer], conv_s[layer], row_bias[:, layer], pre[layer], xq)
    if has_local:
        for r in range(rows):
            for j in range(gate):
                pre[layer, r, j] += local[r, i, layer * gate + j]


def _run_pair(role, n, t0, io, ring, net, weights, exchange, options):
    """`_run_part` for one stream (or a few rows) on two cores, with no barrier per layer:
    role 0, the chain, runs the layers (the current tap's products, the gates, the residual
    projections) and publishes each layer's gated units; role 1 sums their skip projections
    layer by layer as they arrive, then runs the head and draws the next sample, which the
    chain waits for. The older taps' half of the dilated convolutions does not wait on the
    draw (`_older_taps`): role 1 computes the next position's for the first 7/15 of the
    layers as their gated units arrive, the chain the rest while role 1 runs the head. A
    sample's critical path is the chain's layers plus the head and the draw.

    Where the time goes (default model, int8, batch 1, AMD EPYC Zen 3, cycle counters): the
    chain's layers ~20 us a sample, its older taps ~6 us; role 1's head 3.4 us, draw 0.9 us.
    With every older tap on the chain, role 1 waited ~12 us a sample for it (30,100 vs
    34,600 samples/s; 10/30 layers handed over 33,600, 17/30 33,200, 24/30 30,500).

    weights: `CompiledWeights.arrays` of one part, then its `pair` arrays (the current tap's
    and the older taps' convolution matrices, the skip projection per layer). exchange: (sync
    counters: the chain's published layers at 0, draws at _LINE; the drawn codes (rows,);
    gated units (layers, rows, gate / 2); the older taps' products and gate biases (layers,
    rows, gate)). Other arguments as `_run_part`. Both roles read the ring: role 1 reads
    position t + 1's older taps before it publishes the draw that lets the chain write t + 1.
    """
    first_logits, out, local = io[0], io[2], io[3]
    buffer, row_bias = ring
    offsets, spans, dilations, taps_c = net
    embed, _, res_w, res_b, _, skip_b, w1, b1, w2, b2, skip_scale = weights[:11]
    conv_s, res_s, skip_s, w1_s, w2_s = weights[11:16]
    conv_cur, conv_past, skip_layers = weights[16:19]
    sync, codes, gated, pre = exchange
    exact, has_local = options[1:3]
    rows = out.shape[0]
    n_layers, half = gated.shape[0], gated.shape[2]
    handed = _handed(n_layers)
    gate = 2 * half
    res = embed.shape[1]
    skip_c = skip_b.shape[0]
    classes = b2.shape[0]
    hid = w1_s.shape[1]
    dt = embed.dtype
    conv_s0 = conv_s[0]
    widest = max(gate, res, skip_c, hid, classes)
    xq = (
        np.zeros((rows, max(taps_c, skip_c, hid) + 1), np.int16),
        np.empty(rows, np.float32),
        np.empty((rows, widest + _TILE), np.int32),
    )
    taps = np.empty((rows, taps_c - res), dt)
    net_ = (offsets, spans, dilations)
    if role == 0:
        h = np.empty((rows, res), dt)
        a = np.empty((rows, gate), dt)
        g = np.empty((rows, half), dt)
        o = np.empty((rows, res), dt)
        root_half = dt.type(math.sqrt(0.5))
        for layer in range(n_layers):
            _older_taps(
                t0,
                0,
                layer,
                buffer,
                row_bias,
                local,
                has_local,
                net_,
                conv_past,
                conv_s0,
                taps,
                pre,
                xq,
            )
        for i in range(n):
            t = t0 + i
            _wait(sync, _LINE, i + 1)
            for r in range(rows):
                h[r] = embed[codes[r]]
            for layer in range(n_layers):
                slot = offsets[layer] + t % spans[layer]
                for r in range(rows):
                    for c in range(res):
                        buffer[slot, r, c] = h[r, c]
                _linear_rows(h, conv_cur[layer], conv_s0[layer], pre[layer], a, xq)
                _gates(a, g, exact)
                gl = gated[layer]
                for r in range(rows):
                    for j in range(half):
                        gl[r, j] = g[r, j]
                _store_release(sync, 0, i * n_layers + layer + 1)
                if layer + 1 == n_layers:
                    break
                _linear(g, res_w[0, layer], res_s[layer], res_b[layer], o, xq)
                for r in range(rows):
                    for j in range(res):
                        h[r, j] = (h[r, j] + o[r, j]) * root_half
            if i + 1 < n:
                for layer in range(handed, n_layers):
                    _older_taps(
                        t + 1,
                        i + 1,
                        layer,
                        buffer,
                        row_bias,
                        local,
                        has_local,
                        net_,
                        conv_past,
                        conv_s0,
                        taps,
                        pre,
                        xq,
                    )
        return
    skip = np.empty((rows, skip_c), dt)
    part = np.empty((rows, skip_c), dt)
    hidden = np.empty((rows, hid), dt)
    logits = np.empty((rows, classes), dt)
    scratch = np.empty(classes, np.float64)
    scale = dt.type(skip_scale)
    for r in range(rows):
        logits[r] = first_logits[r]
    for i in range(n):
        t = t0 + i
        for r in range(rows):
            codes[r] = _next_code(r, i, t, logits, io, options, scratch, True)
        _store_release(sync, _LINE, i + 1)
        for r in range(rows):
            for j in range(skip_c):
                skip[r, j] = skip_b[j]
        for layer in range(n_layers):
            _wait(sync, 0, i * n_layers + layer + 1)
            _project(gated[layer], skip_layers[layer], skip_s, part, xq)
            for r in range(rows):
                for j in range(skip_c):
                    skip[r, j] += part[r, j]
            if layer < handed and i + 1 < n:
                _older_taps(
                    t + 1,
                    i + 1,
                    layer,
                    buffer,
                    row_bias,
                    local,
                    has_local,
                    net_,
                    conv_past,
                    conv_s0,
                    taps,
                    pre,
                    xq,
                )
        for r in range(rows):
            for j in range(skip_c):
                skip[r, j] = max(skip[r, j] * scale, _ZERO)
        _head(skip, w1[0], w1_s[0], b1[0], hidden, w2[0], w2_s, b2, logits, xq)
    for r in range(rows):
        first_logits[r] = logits[r]


if numba is not None:
    _tanh = numba.njit(fastmath=True, cache=True, inline="always")(_tanh)
    _wait = numba.njit(cache=True, inline="always")(_wait)
    _barrier = numba.njit(cache=True)(_barrier)
    _project_float = numba.njit(fastmath=True, cache=True)(_project)
    _absmax = numba.njit(fastmath=True, cache=True)(_absmax)
    _project_int8 = numba.njit(fastmath=True, cache=True, inline="always")(_project_int8)

    def _project_dispatch(x, w, scale, out, xq):
        """`_project` by the weights' type: int8 -> `_project_int8`, else the float loop."""

    @overload(_project_dispatch, inline="always")
    def _project_overload(x, w, scale, out, xq):
        if isinstance(w.dtype, types.Integer) and w.dtype.bitwidth == 8:
            return lambda x, w, scale, out, xq: _project_int8(x, w, scale, out, xq)
        return lambda x, w, scale, out, xq: _project_float(x, w, scale, out, xq)

    _project = _project_dispatch
    _gates = numba.njit(fastmath=True, cache=True, inline="always", error_model="numpy")(_gates)
    _linear = numba.njit(fastmath=True, cache=True, inline="always")(_linear)
    _linear_rows = numba.njit(fastmath=True, cache=True, inline="always")(_linear_rows)
    _exp_neg = numba.njit(cache=True, inline="always")(_exp_neg)
    _sample_row = numba.njit(fastmath=True, cache=True, error_model="numpy")(_sample_row)
    # The continuous draws keep IEEE semantics: they mirror torch's float64 arithmetic.
    _ndtri_lower = numba.njit(cache=True)(_ndtri_lower)
    _ndtri = numba.njit(cache=True)(_ndtri)
    _to_code = numba.njit(cache=True)(_to_code)
    _draw_mol = numba.njit(cache=True)(_draw_mol)
    _draw_gaussian = numba.njit(cache=True)(_draw_gaussian)
    _draw = numba.njit(cache=True)(_draw)
    _neg_log_prob = numba.njit(cache=True)(_neg_log_prob)
    _next_code = numba.njit(cache=True, inline="always")(_next_code)
    _head = numba.njit(fastmath=True, cache=True, inline="always")(_head)
    _run_part = numba.njit(fastmath=True, cache=True, nogil=True, error_model="numpy")(_run_part)
    _handed = numba.njit(cache=True, inline="always")(_handed)
    _older_taps = numba.njit(fastmath=True, cache=True, error_model="numpy")(_older_taps)
    _run_pair = numba.njit(fastmath=True, cache=True, nogil=True, error_model="numpy")(_run_pair)


def _bf16_bits(w: torch.Tensor) -> np.ndarray:
    """float tensor -> its bfloat16 rounding (to nearest even) as uint16 bits."""
    return (
        w.detach().cpu().to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16)
    )


def int8_scale(amax: torch.Tensor) -> torch.Tensor:
    """Per-row scales of int8 storage from each row's largest |weight|: amax / 127 (1 for an
    all-zero row), so that a row's weights are scale * q for integers q in -127 .. 127."""
    return torch.where(amax > 0, amax / 127, torch.ones_like(amax))


def int8_codes(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The int8 codes q of weights w with scales broadcast against w: round(w / scale)."""
    return torch.round(w / scale).clamp(-127, 127)


def rounded_model(model, storage: str):
    """A copy of `model` whose weights are what the `storage` kernel multiplies by.

    The stored matrices (dilated convolutions, residual/skip projections, the head's two
    convolutions) are rounded to bfloat16 and back, or for int8 to scale * q with one scale per
    output row of the matrices the kernel multiplies (a dilated convolution's or residual
    projection's output channel in each layer; a skip channel over all layers, since the kernel
    computes every layer's skip projection as one matrix; a head convolution's output channel);
    embeddings, biases and the conditioning projections stay float32. Teacher-forced on this
    copy, `model.forward` gives the logits the compiled path of that storage computes, so the
    copy is what accuracy is measured on.
    """
    import copy

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    out = copy.deepcopy(model)
    if storage == "float32":
        return out
    heads = [out.head[1].weight, out.head[3].weight]
    with torch.no_grad():
        if storage == "bfloat16":
            for p in [
                w for layer in out.layers for w in (layer.dilated.weight, layer.res_skip.weight)
            ] + heads:
                p.copy_(p.to(torch.bfloat16).to(p.dtype))
            return out
        res = out.config.residual_channels
        skip_scale = int8_scale(
            torch.stack(
                [layer.res_skip.weight[res:].abs().amax(dim=(1, 2)) for layer in out.layers]
            ).amax(dim=0)
        )
        for layer in out.layers:
            w = layer.res_skip.weight
            scale = torch.cat([int8_scale(w[:res].abs().amax(dim=(1, 2))), skip_scale])
            w.copy_(int8_codes(w, scale[:, None, None]) * scale[:, None, None])
        for w in [layer.dilated.weight for layer in out.layers] + heads:  # (out, in, taps)
            scale = int8_scale(w.abs().amax(dim=(1, 2), keepdim=True))
            w.copy_(int8_codes(w, scale) * scale)
    return out


def tiled(q: torch.Tensor, tile: int) -> torch.Tensor:
    """int8 matrices (..., n, k) -> (..., tiles, k / 2, tile, 2), the layout `_tdot` reads:
    for each tile of `tile` outputs and each pair of inputs, the outputs' two weights side by
    side. n is padded to a multiple of `tile` and k to an even number with zeros."""
    n, k = q.shape[-2:]
    q = torch.nn.functional.pad(q, (0, k % 2, 0, -n % tile))
    lead = q.shape[:-2]
    q = q.reshape(*lead, q.shape[-2] // tile, tile, q.shape[-1] // 2, 2)
    return q.transpose(-3, -2).contiguous()


@dataclass
class CompiledWeights:
    """The sampler's merged weights split into `parts` shares, as contiguous numpy arrays.

    merged: `CachedSampler.merged_weights()` (or the sampler itself). storage: 'float32' keeps
    the model's dtype; 'bfloat16' stores the matrices as bfloat16 bits, 'int8' as int8 codes
    with a float32 scale per output row (`rounded_model` says which rows); both for float32
    models only. Part p computes gated outputs p*share .. (p+1)*share - 1 of every layer
    (share = gate / 2 / parts), their residual and skip contributions, hidden units
    p*skip/parts .. of the head and their share of the logits. The gate biases are not here:
    they are per row, in the state.
    """

    arrays: tuple
    offsets: np.ndarray
    spans: np.ndarray
    dilations: np.ndarray
    parts: int
    storage: str
    kind: int  # the output distribution (output.KINDS)
    taps: int  # inputs of a dilated convolution: kernel size * residual channels

    def __init__(self, merged, storage: str = "float32", parts: int = 1) -> None:
        if hasattr(merged, "merged_weights"):
            merged = merged.merged_weights()
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        if storage == "int8" and not int8_dot_available():
            raise ValueError("int8 storage needs an x86 CPU with AVX2 (its integer dot product)")
        if storage != "float32" and merged.embed.dtype != torch.float32:
            raise ValueError(f"{storage} storage needs a float32 model, got {merged.embed.dtype}")
        layers, gate, _ = merged.conv_w.shape
        half, skip_c = gate // 2, merged.skip_b.shape[0]
        if parts < 1 or half % parts or skip_c % parts:
            raise ValueError(
                f"parts must divide gate / 2 = {half} and skip = {skip_c}, got {parts}"
            )
        share, hid = half // parts, skip_c // parts
        as_np = lambda t: t.detach().cpu().contiguous().numpy()  # noqa: E731
        matrices = [merged.conv_w, merged.res_w, merged.skip_w, merged.head_w1, merged.head_w2]
        if storage == "int8":  # one scale per output row: the last dimension is the input
            scales = [int8_scale(w.abs().amax(dim=-1)) for w in matrices]
            matrices = [
                int8_codes(w, s[..., None]).to(torch.int8)
                for w, s in zip(matrices, scales, strict=True)
            ]
        else:
            scales = [w.new_ones(w.shape[:-1]) for w in matrices]
        if storage == "bfloat16":
            store = _bf16_bits
        elif storage == "int8":
            store = lambda t: as_np(tiled(t, _TILE))  # noqa: E731
        else:
            store = as_np
        (conv, res_w, skip_w, w1, w2), (conv_s, res_s, skip_s, w1_s, w2_s) = matrices, scales
        skip_w = skip_w.view(skip_c, layers, half)
        shares = [slice(p * share, (p + 1) * share) for p in range(parts)]

        def gate_rows(t):  # (layers, gate, ...) -> (parts, layers, 2 * share, ...)
            return torch.stack([torch.cat([t[:, s], t[:, half:][:, s]], dim=1) for s in shares])

        res_parts = torch.stack([res_w[:, :, s] for s in shares])  # (parts, layers, res, share)
        skip_parts = torch.stack(
            [skip_w[:, :, s].reshape(skip_c, layers * share) for s in shares]
        )  # (parts, skip, layers * share)
        w2 = torch.stack(list(w2.view(-1, parts, hid).unbind(1)))  # (parts, classes, hid)
        self.arrays = (
            as_np(merged.embed),
            store(gate_rows(conv)),
            store(res_parts),
            as_np(merged.res_b),
            store(skip_parts),
            as_np(merged.skip_b),
            store(w1.view(parts, hid, skip_c)),
            as_np(merged.head_b1.view(parts, hid)),
            store(w2),
            as_np(merged.head_b2),
            float(merged.skip_scale),
            as_np(gate_rows(conv_s)),
            as_np(res_s),
            as_np(skip_s),
            as_np(w1_s.view(parts, hid)),
            as_np(w2_s),
        )
        # For two threads on one stream (`_run_pair`): the current tap's and the older taps'
        # convolution matrices apart, and the skip projection per layer; same codes and scales.
        res = merged.res_b.shape[1]
        self.pair = (
            (store(conv[:, :, :res]), store(conv[:, :, res:]), store(skip_w.transpose(0, 1)))
            if parts == 1
            else ()
        )
        self.offsets = np.asarray(merged.offsets, dtype=np.int64)
        self.spans = np.asarray(merged.spans, dtype=np.int64)
        self.dilations = np.asarray(merged.dilations, dtype=np.int64)
        self.parts, self.storage, self.kind = parts, storage, merged.kind
        self.taps = merged.conv_w.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes of every weight a sample reads (of the input table, one row)."""
        embed = self.arrays[0]
        return sum(a.nbytes for a in self.arrays[1:] if isinstance(a, np.ndarray)) + embed[0].nbytes


def pair_shares(weights: CompiledWeights) -> tuple[int, int]:
    """Bytes of weights each thread of `_run_pair` reads a sample: (the chain: current taps,
    its older taps, residual projections; role 1: skip projections, head, the older taps of
    the layers handed to it)."""
    cur, past, _ = (a.nbytes for a in weights.pair)
    layers = weights.offsets.shape[0]
    handed = past * _handed(layers) // layers
    a = weights.arrays
    return cur + past - handed + a[2].nbytes, a[4].nbytes + a[6].nbytes + a[8].nbytes + handed


def generate_chunk(
    weights: CompiledWeights,
    state,
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    threads: int = 1,
    local: torch.Tensor | None = None,
    pair: bool = False,
) -> torch.Tensor:
    """Draw len(uniforms) samples per row, advancing `state` and `logits` in place.

    logits: (batch, channels) float, the next sample's output parameters (updated to the
    following one's). uniforms: (n, batch) float in [0, 1), one per draw (used as float64).
    state: a SamplerState on the CPU.
    local: (batch, n, layers * gate) the mel projections of these n positions
    (`CachedSampler.local_bias`), for a mel-conditioned model; None otherwise.
    threads: with weights of one part (weights that fit a core's cache), batch rows are split
    across this many threads instead, each running its rows independently; with `pair`, each
    group of rows runs on two threads (`_run_pair`: the layers on one, the skips, head and
    draw on the other), min(batch, threads // 2) groups.
    Returns (batch, n) int64 codes.
    """
    return _run(weights, state, logits, uniforms, temperature, threads, local, None, pair)[0]


def score_chunk(
    weights: CompiledWeights,
    state,
    logits: torch.Tensor,
    codes: torch.Tensor,
    threads: int = 1,
    local: torch.Tensor | None = None,
    pair: bool = False,
) -> torch.Tensor:
    """Teacher forcing through the kernel: feed codes (batch, n) instead of drawing, advancing
    `state` and `logits` like `generate_chunk`. Returns (batch,) float64: the sum of -ln p of
    each fed code under the kernel's logits, skipping sample 0 of the stream (as
    `wavenet.metrics.evaluate` does). Categorical outputs only.
    """
    if weights.kind != 0:
        raise ValueError("scoring through the kernel needs a categorical output")
    batch, n = codes.shape
    forced = codes.long().contiguous()
    return _run(
        weights,
        state,
        logits,
        torch.zeros(n, batch, dtype=torch.float64),
        1.0,
        threads,
        local,
        forced,
        pair,
    )[1]


def _run(weights, state, logits, uniforms, temperature, threads, local, forced, pair):
    """generate_chunk, or with forced codes, score_chunk: (codes, nll)."""
    n, batch = uniforms.shape
    out = np.empty((batch, n), dtype=np.int64)
    nll = np.zeros(batch, dtype=np.float64)
    lg = logits.numpy()
    has_local = local is not None
    if has_local and tuple(local.shape[:2]) != (batch, n):
        raise ValueError(
            f"local must be (batch={batch}, n={n}, layers * gate), got {tuple(local.shape)}"
        )
    dt = lg.dtype
    local_np = local.numpy() if has_local else np.zeros((batch, 1, 1), dt)
    forced_np = forced.numpy() if forced is not None else np.zeros((batch, 1), np.int64)
    u = uniforms.numpy().astype(np.float64)
    buffer, bias = state.buffer.numpy(), state.bias.numpy()
    parts = weights.parts
    net = (weights.offsets, weights.spans, weights.dilations, weights.taps)
    options = (float(temperature), dt == np.float64, has_local, weights.kind, forced is not None)

    def rows_args(b0: int, b1: int, parts: int) -> tuple:
        embed, skip_b, b2 = weights.arrays[0], weights.arrays[5], weights.arrays[9]
        rows = b1 - b0
        exchange = (
            np.zeros(parts * _LINE, np.int64),
            np.empty((2, parts, rows, embed.shape[1]), dt),
            np.empty((2, parts, rows, skip_b.shape[0]), dt),
            np.empty((2, parts, rows, b2.shape[0]), dt),
        )
        io = (lg[b0:b1], u[:, b0:b1], out[b0:b1], local_np[b0:b1], forced_np[b0:b1], nll[b0:b1])
        return (
            n,
            state.position,
            io,
            (buffer[:, b0:b1], bias[b0:b1]),
            net,
            weights.arrays,
            exchange,
            options,
        )

    if parts > 1:
        # Plain threads, not numba's pool: the parts spin-wait on each other, so all of them
        # must be running at once. _run_part releases the GIL.
        args = rows_args(0, batch, parts)
        jobs = [(_run_part, (p, parts, *args)) for p in range(parts)]
    elif pair and threads >= 2:
        groups = max(1, min(batch, threads // 2))
        bounds = [p * batch // groups for p in range(groups + 1)]
        layers, gate = weights.arrays[11].shape[1:]  # the gate scales: (1, layers, gate)
        jobs = []
        for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
            args = rows_args(b0, b1, 1)
            exchange = (
                np.zeros(2 * _LINE, np.int64),
                np.zeros(b1 - b0, np.int64),
                np.empty((layers, b1 - b0, gate // 2), dt),
                np.empty((layers, b1 - b0, gate), dt),
            )
            jobs += [
                (_run_pair, (role, *args[:5], weights.arrays + weights.pair, exchange, options))
                for role in (0, 1)
            ]
    else:
        split = max(1, min(threads, batch))
        bounds = [p * batch // split for p in range(split + 1)]
        jobs = [(_run_part, (0, 1, *rows_args(bounds[p], bounds[p + 1], 1))) for p in range(split)]
    others = [threading.Thread(target=f, args=a, daemon=True) for f, a in jobs[1:]]
    for th in others:
        th.start()
    jobs[0][0](*jobs[0][1])
    for th in others:
        th.join()
    state.position += n
    return torch.from_numpy(out), torch.from_numpy(nll)
