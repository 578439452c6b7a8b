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
  registers; the arithmetic stays float32), half the bytes;
- parts: the weights split between `parts` threads (one per core), each computing its share of
  every layer from its own cache; a spin barrier per layer exchanges the residual partial sums.
  With bfloat16 and two parts each core's share (1.3 MB) stays in its 2 MB L2.

Every part computes the whole batch, so the split works at batch 1; the threads' results are
combined in a fixed order, so a run gives the same numbers however its threads are scheduled.
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

STORAGES = ("float32", "bfloat16")


def available() -> bool:
    """True when numba is installed and the compiled path can run."""
    return numba is not None


# float32 constants keep float32 models' arithmetic in float32 (a float64 literal would promote).
_CLAMP = np.float32(7.90531110763549805)
_ALPHA = tuple(np.float32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13,
                                       -8.60467152213735e-11, 5.12229709037114e-08,
                                       1.48572235717979e-05, 6.37261928875436e-04,
                                       4.89352455891786e-03))
_BETA = tuple(np.float32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04,
                                      2.26843463243900e-03, 4.89352518554385e-03))
_HALF = np.float32(0.5)
_ZERO = np.float32(0.0)
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
            return builder.load_atomic(_element_pointer(context, builder, signature, args),
                                       "acquire", 8)
        return types.int64(array, index), codegen

    @intrinsic
    def _store_release(typingctx, array, index, value):
        """array[index] = value (int64) with release ordering: publishes earlier writes."""
        def codegen(context, builder, signature, args):
            builder.store_atomic(args[2], _element_pointer(context, builder, signature, args),
                                 "release", 8)
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
                    mod, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
                builder.call(pause, [])
            if _LINUX:
                sched_yield = cgutils.get_or_insert_function(
                    mod, ir.FunctionType(ir.IntType(32), []), "sched_yield")
                with builder.if_then(args[0]):
                    builder.call(sched_yield, [])
            return context.get_dummy_value()
        return types.void(types.boolean), codegen


def _barrier(sync, part, parts, count):
    """Wait until every part has arrived at barrier `count` (counters only grow)."""
    _store_release(sync, part * _LINE, count)
    for q in range(parts):
        spins = 0
        while _load_acquire(sync, q * _LINE) < count:
            spins += 1
            _relax(spins > _SPINS)


def _linear(x, w, bias, out):
    """out = x @ w.T + bias for x (rows, k), w (n, k) (PyTorch's layout), out (rows, n).

    Dot-product order: each weight row stays in L1 across the batch rows, and the inner loop is
    one vectorized reduction (about twice the throughput of an axpy over `out` here).
    """
    rows, k = x.shape
    for j in range(w.shape[0]):
        wj = w[j]
        for r in range(rows):
            acc = bias[j]
            xr = x[r]
            for c in range(k):
                acc += xr[c] * _widen(wj[c])
            out[r, j] = acc


def _linear_rows(x, w, bias, out):
    """out = x @ w.T + bias for a bias per row: bias (rows, n); see `_linear`."""
    rows, k = x.shape
    for j in range(w.shape[0]):
        wj = w[j]
        for r in range(rows):
            acc = bias[r, j]
            xr = x[r]
            for c in range(k):
                acc += xr[c] * _widen(wj[c])
            out[r, j] = acc


def _sample_row(logits, u, temperature, scratch):
    """Inverse-CDF draw from softmax(logits / temperature) with uniform u; argmax when T = 0.

    The same draw as wavenet.model.output.categorical_draw."""
    n = logits.shape[0]
    best = 0
    for j in range(1, n):
        if logits[j] > logits[best]:
            best = j
    if temperature == 0.0:
        return best
    top = logits[best]
    total = 0.0
    for j in range(n):
        scratch[j] = math.exp((logits[j] - top) / temperature)
        total += scratch[j]
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
_ACKLAM_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
_ACKLAM_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
             6.680131188771972e+01, -1.328068155288572e+01)
_ACKLAM_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
_ACKLAM_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
             3.754408661907416e+00)


def _ndtri_lower(p):
    """The standard normal quantile of p in (0, 0.5]."""
    a, b, c, d = _ACKLAM_A, _ACKLAM_B, _ACKLAM_C, _ACKLAM_D
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        x = ((((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
             / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0))
    else:
        q = p - 0.5
        r = q * q
        x = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
             / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0))
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


def _run_part(part, parts, n, t0, io, ring, net, weights, exchange, options):
    """Generate n samples for every batch row, computing this part's share of each layer.

    io: (logits (batch, classes) in/out, uniforms (n, batch), out (batch, n), local (batch, n,
    layers * gate) or a dummy); ring: (buffer, row_bias) of the SamplerState; net: (offsets,
    spans, dilations); weights: `CompiledWeights.arrays`; exchange: (sync counters, residual,
    skip and logits partials, each (2, parts, batch, width)); options: (temperature, exact,
    has_local, kind: the output distribution, output.KINDS). With parts > 1 the other parts run
    the same call concurrently.
    """
    first_logits, uniforms, out, local = io
    buffer, row_bias = ring
    offsets, spans, dilations = net
    embed, conv_w, res_w, res_b, skip_w, skip_b, w1, b1, w2, b2, skip_scale = weights
    sync, x_res, x_skip, x_logits = exchange
    temperature, exact, has_local, kind = options
    rows = out.shape[0]
    n_layers, width, taps_c = conv_w.shape[1:]  # width = this part's filter + gate rows
    share = width // 2  # gated outputs of this part per layer
    gate = row_bias.shape[2]
    half = gate // 2
    lo = part * share  # this part's gated outputs: lo .. lo + share - 1
    res = embed.shape[1]
    skip_c = skip_b.shape[0]
    classes = b2.shape[0]
    kernel = taps_c // res
    dt = embed.dtype
    conv_p, res_p, skip_p, w1_p, b1_p, w2_p = (conv_w[part], res_w[part], skip_w[part],
                                               w1[part], b1[part], w2[part])
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
    hidden = np.empty((rows, w1_p.shape[0]), dt)
    logits = np.empty((rows, classes), dt)
    scratch = np.empty(classes, np.float64)
    scale = dt.type(skip_scale)
    root_half = dt.type(math.sqrt(0.5))
    count = 0  # barriers passed; partials alternate between two slots by its parity
    for r in range(rows):
        logits[r] = first_logits[r]
    for i in range(n):
        t = t0 + i
        for r in range(rows):
            x = _draw(kind, logits[r], uniforms[i, r], temperature, scratch)
            if part == 0:
                out[r, i] = x
            h[r] = embed[x]
        for layer in range(n_layers):
            span = spans[layer]
            base = offsets[layer]
            for m in range(1, kernel):
                slot = base + (t - m * dilations[layer]) % span
                for r in range(rows):
                    xcat[r, m * res:(m + 1) * res] = buffer[slot, r]
            for r in range(rows):
                xcat[r, :res] = h[r]
                held[layer, r] = h[r]
            if parts == 1:  # the oldest tap is in xcat now; its row is free
                for r in range(rows):
                    buffer[base + t % span, r] = h[r]
            for r in range(rows):
                for jj in range(width):
                    j = lo + jj if jj < share else half + lo + jj - share
                    ab[r, jj] = row_bias[r, layer, j]
                    if has_local:
                        ab[r, jj] += local[r, i, layer * gate + j]
            _linear_rows(xcat, conv_p[layer], ab, a)
            for r in range(rows):
                if exact:  # float64 models: libm, to the last bit
                    for j in range(share):
                        g[r, j] = math.tanh(a[r, j]) / (1.0 + math.exp(-a[r, share + j]))
                else:  # sigmoid(y) = (1 + tanh(y / 2)) / 2
                    for j in range(share):
                        g[r, j] = _tanh(a[r, j]) * (_HALF + _HALF * _tanh(_HALF * a[r, share + j]))
                gates[r, layer * share:(layer + 1) * share] = g[r]
            if layer + 1 == n_layers:
                break  # the last layer's residual output feeds nothing
            _linear(g, res_p[layer], res_b[layer] if part == 0 else zero_res, o)
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
        _linear(gates, skip_p, skip_b if part == 0 else zero_skip, skip)
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
        _linear(skip, w1_p, b1_p, hidden)  # this part's hidden units
        for r in range(rows):
            for j in range(hidden.shape[1]):
                hidden[r, j] = max(hidden[r, j], _ZERO)
        _linear(hidden, w2_p, b2 if part == 0 else zero_classes, logits)  # their share
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


if numba is not None:
    _tanh = numba.njit(fastmath=True, cache=True, inline="always")(_tanh)
    _barrier = numba.njit(cache=True)(_barrier)
    _linear = numba.njit(fastmath=True, cache=True, inline="always")(_linear)
    _linear_rows = numba.njit(fastmath=True, cache=True, inline="always")(_linear_rows)
    _sample_row = numba.njit(fastmath=True, cache=True)(_sample_row)
    # The continuous draws keep IEEE semantics: they mirror torch's float64 arithmetic.
    _ndtri_lower = numba.njit(cache=True)(_ndtri_lower)
    _ndtri = numba.njit(cache=True)(_ndtri)
    _to_code = numba.njit(cache=True)(_to_code)
    _draw_mol = numba.njit(cache=True)(_draw_mol)
    _draw_gaussian = numba.njit(cache=True)(_draw_gaussian)
    _draw = numba.njit(cache=True)(_draw)
    _run_part = numba.njit(fastmath=True, cache=True, nogil=True)(_run_part)


def _bf16_bits(w: torch.Tensor) -> np.ndarray:
    """float tensor -> its bfloat16 rounding (to nearest even) as uint16 bits."""
    return w.detach().cpu().to(torch.bfloat16).contiguous().view(torch.int16).numpy() \
        .view(np.uint16)


def rounded_model(model, storage: str):
    """A copy of `model` whose weights are what the `storage` kernel multiplies by.

    The stored matrices (dilated convolutions, residual/skip projections, the head's two
    convolutions) are rounded to bfloat16 and back; embeddings, biases and the conditioning
    projections stay float32. Teacher-forced on this copy, `model.forward` gives the logits the
    compiled-bf16 path computes, so the copy is what accuracy is measured on.
    """
    import copy

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    out = copy.deepcopy(model)
    if storage == "float32":
        return out
    with torch.no_grad():
        for layer in out.layers:
            for p in (layer.dilated.weight, layer.res_skip.weight):
                p.copy_(p.to(torch.bfloat16).to(p.dtype))
        for conv in (out.head[1], out.head[3]):
            conv.weight.copy_(conv.weight.to(torch.bfloat16).to(conv.weight.dtype))
    return out


@dataclass
class CompiledWeights:
    """The sampler's merged weights split into `parts` shares, as contiguous numpy arrays.

    merged: `CachedSampler.merged_weights()` (or the sampler itself). storage: 'float32' keeps
    the model's dtype; 'bfloat16' stores the matrices as bfloat16 bits (float32 models only).
    Part p computes gated outputs p*share .. (p+1)*share - 1 of every layer (share = gate / 2 /
    parts), their residual and skip contributions, hidden units p*skip/parts .. of the head and
    their share of the logits. The gate biases are not here: they are per row, in the state.
    """

    arrays: tuple
    offsets: np.ndarray
    spans: np.ndarray
    dilations: np.ndarray
    parts: int
    storage: str
    kind: int  # the output distribution (output.KINDS)

    def __init__(self, merged, storage: str = "float32", parts: int = 1) -> None:
        if hasattr(merged, "merged_weights"):
            merged = merged.merged_weights()
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        if storage == "bfloat16" and merged.embed.dtype != torch.float32:
            raise ValueError(f"bfloat16 storage needs a float32 model, got {merged.embed.dtype}")
        layers, gate, _ = merged.conv_w.shape
        half, skip_c = gate // 2, merged.skip_b.shape[0]
        if parts < 1 or half % parts or skip_c % parts:
            raise ValueError(f"parts must divide gate / 2 = {half} and skip = {skip_c}, "
                             f"got {parts}")
        share, hid = half // parts, skip_c // parts
        as_np = lambda t: t.detach().cpu().contiguous().numpy()  # noqa: E731
        store = _bf16_bits if storage == "bfloat16" else as_np
        conv, res_w = merged.conv_w, merged.res_w
        skip_w = merged.skip_w.view(skip_c, layers, half)
        shares = [slice(p * share, (p + 1) * share) for p in range(parts)]
        conv_parts = torch.stack([torch.cat([conv[:, s], conv[:, half:][:, s]], dim=1)
                                  for s in shares])  # (parts, layers, 2 * share, taps)
        res_parts = torch.stack([res_w[:, :, s] for s in shares])  # (parts, layers, res, share)
        skip_parts = torch.stack([skip_w[:, :, s].reshape(skip_c, layers * share)
                                  for s in shares])  # (parts, skip, layers * share)
        w1 = merged.head_w1.view(parts, hid, skip_c)
        b1 = merged.head_b1.view(parts, hid)
        w2 = torch.stack(list(merged.head_w2.view(-1, parts, hid).unbind(1)))  # (parts, cls, hid)
        self.arrays = (as_np(merged.embed), store(conv_parts), store(res_parts),
                       as_np(merged.res_b), store(skip_parts), as_np(merged.skip_b), store(w1),
                       as_np(b1), store(w2), as_np(merged.head_b2), float(merged.skip_scale))
        self.offsets = np.asarray(merged.offsets, dtype=np.int64)
        self.spans = np.asarray(merged.spans, dtype=np.int64)
        self.dilations = np.asarray(merged.dilations, dtype=np.int64)
        self.parts, self.storage, self.kind = parts, storage, merged.kind

    @property
    def nbytes(self) -> int:
        """Bytes of every weight a sample reads (of the input table, one row)."""
        embed = self.arrays[0]
        return sum(a.nbytes for a in self.arrays[1:] if isinstance(a, np.ndarray)) \
            + embed[0].nbytes


def generate_chunk(weights: CompiledWeights, state, logits: torch.Tensor, uniforms: torch.Tensor,
                   temperature: float, threads: int = 1,
                   local: torch.Tensor | None = None) -> torch.Tensor:
    """Draw len(uniforms) samples per row, advancing `state` and `logits` in place.

    logits: (batch, channels) float, the next sample's output parameters (updated to the
    following one's). uniforms: (n, batch) float in [0, 1), one per draw (used as float64).
    state: a SamplerState on the CPU.
    local: (batch, n, layers * gate) the mel projections of these n positions
    (`CachedSampler.local_bias`), for a mel-conditioned model; None otherwise.
    threads: with weights of one part (weights that fit a core's cache), batch rows are split
    across this many threads instead, each running its rows independently.
    Returns (batch, n) int64 codes.
    """
    n, batch = uniforms.shape
    out = np.empty((batch, n), dtype=np.int64)
    lg = logits.numpy()
    has_local = local is not None
    if has_local and tuple(local.shape[:2]) != (batch, n):
        raise ValueError(f"local must be (batch={batch}, n={n}, layers * gate), "
                         f"got {tuple(local.shape)}")
    dt = lg.dtype
    local_np = local.numpy() if has_local else np.zeros((batch, 1, 1), dt)
    u = uniforms.numpy().astype(np.float64)
    buffer, bias = state.buffer.numpy(), state.bias.numpy()
    parts = weights.parts
    net = (weights.offsets, weights.spans, weights.dilations)
    options = (float(temperature), dt == np.float64, has_local, weights.kind)

    def rows_args(b0: int, b1: int, parts: int) -> tuple:
        embed, skip_b, b2 = weights.arrays[0], weights.arrays[5], weights.arrays[9]
        rows = b1 - b0
        exchange = (np.zeros(parts * _LINE, np.int64),
                    np.empty((2, parts, rows, embed.shape[1]), dt),
                    np.empty((2, parts, rows, skip_b.shape[0]), dt),
                    np.empty((2, parts, rows, b2.shape[0]), dt))
        io = (lg[b0:b1], u[:, b0:b1], out[b0:b1], local_np[b0:b1])
        return n, state.position, io, (buffer[:, b0:b1], bias[b0:b1]), net, weights.arrays, \
            exchange, options

    if parts > 1:
        # Plain threads, not numba's pool: the parts spin-wait on each other, so all of them
        # must be running at once. _run_part releases the GIL.
        args = rows_args(0, batch, parts)
        jobs = [(p, parts, *args) for p in range(parts)]
    else:
        split = max(1, min(threads, batch))
        bounds = [p * batch // split for p in range(split + 1)]
        jobs = [(0, 1, *rows_args(bounds[p], bounds[p + 1], 1)) for p in range(split)]
    others = [threading.Thread(target=_run_part, args=job, daemon=True) for job in jobs[1:]]
    for th in others:
        th.start()
    _run_part(*jobs[0])
    for th in others:
        th.join()
    state.position += n
    return torch.from_numpy(out)
