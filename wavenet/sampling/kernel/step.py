"""The pieces of a sampler step that every compiled layout shares: the matrix products in each
weight storage (`_project`: float32/float64 or bfloat16 bits, or tiled int8 through `_tdot`), the
gates with a vectorizing tanh, the linear layers and the output head.
"""

import math

import numpy as np

from wavenet.sampling.kernel.intrinsics import _TILE, _tdot1, _tdot2, _widen, available, njit

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


@njit(fastmath=True, cache=True, inline="always")
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


@njit(fastmath=True, cache=True)
def _project_float(x, w, scale, out, xq):
    """`_project` for float weights (float32, float64, or bfloat16 bits widened by `_widen`).

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


@njit(fastmath=True, cache=True)
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


@njit(fastmath=True, cache=True, inline="always")
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


def _project(x, w, scale, out, xq):
    """out = (x @ w.T) * scale for x (rows, k), w (n, k) (PyTorch's layout), scale (n,) (ones
    for float storage, which leaves the sums exact), out (rows, n); xq: the int8 path's scratch.
    Compiled, it is `_project_int8` for int8 weights and `_project_float` for the others."""
    _project_float(x, w, scale, out, xq)


if available():
    from numba import types
    from numba.extending import overload

    @overload(_project, inline="always")
    def _project_overload(x, w, scale, out, xq):
        if isinstance(w.dtype, types.Integer) and w.dtype.bitwidth == 8:
            return lambda x, w, scale, out, xq: _project_int8(x, w, scale, out, xq)
        return lambda x, w, scale, out, xq: _project_float(x, w, scale, out, xq)


@njit(fastmath=True, cache=True, inline="always", error_model="numpy")
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


@njit(fastmath=True, cache=True, inline="always")
def _linear(x, w, scale, bias, out, xq):
    """out = (x @ w.T) * scale + bias; see `_project`."""
    _project(x, w, scale, out, xq)
    for r in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[r, j] += bias[j]


@njit(fastmath=True, cache=True, inline="always")
def _linear_rows(x, w, scale, bias, out, xq):
    """`_linear` with a bias per row: bias (rows, n)."""
    _project(x, w, scale, out, xq)
    for r in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[r, j] += bias[r, j]


@njit(fastmath=True, cache=True, inline="always")
def _head(skip, w1, w1_s, b1, hidden, w2, w2_s, b2, logits, xq):
    """logits = w2 relu(w1 skip + b1) + b2 (skip already through its ReLU)."""
    _linear(skip, w1, w1_s, b1, hidden, xq)
    for r in range(hidden.shape[0]):
        for j in range(hidden.shape[1]):
            hidden[r, j] = max(hidden[r, j], _ZERO)
    _linear(hidden, w2, w2_s, b2, logits, xq)


@njit(fastmath=True, cache=True, inline="always")
def _residual(h, o, root_half):
    """The next layer's input: h = (h + o) * sqrt(1/2), o the residual projection."""
    for r in range(h.shape[0]):
        for j in range(h.shape[1]):
            h[r, j] = (h[r, j] + o[r, j]) * root_half


@njit(fastmath=True, cache=True, inline="always")
def _skip_relu(skip, scale):
    """The head's input: skip = relu(skip * scale), scale the model's skip_scale."""
    for r in range(skip.shape[0]):
        for j in range(skip.shape[1]):
            skip[r, j] = max(skip[r, j] * scale, _ZERO)


@njit(cache=True, inline="always")
def _int8_scratch(rows, inputs, outputs):
    """The scratch `_project_int8` takes (xq) for matrices of up to `inputs` inputs and
    `outputs` outputs; unused by float weights."""
    return (
        np.zeros((rows, inputs + 1), np.int16),
        np.empty(rows, np.float32),
        np.empty((rows, outputs + _TILE), np.int32),
    )
