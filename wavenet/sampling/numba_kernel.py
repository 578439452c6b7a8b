"""The cached-queue sampler's generation loop compiled to machine code with numba.

`CachedSampler.step` costs ~30 small PyTorch calls per layer-step, so at batch 1 Python and
dispatch overhead, not arithmetic, set the speed. Here a whole chunk of samples (layers, gates,
head, softmax and the random draw) runs in one compiled call over the sampler's own state: the
same ring buffers and merged weights, so both paths compute the same numbers and stay
interchangeable mid-run. Batch rows are independent, so threads split the batch once per call
instead of synchronising every layer.
"""

import math

import numpy as np
import torch

try:
    import numba
except ImportError:  # the reference PyTorch path still works
    numba = None


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
                acc += xr[c] * wj[c]
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
                acc += xr[c] * wj[c]
            out[r, j] = acc


def _sample_row(logits, u, temperature, scratch):
    """Inverse-CDF draw from softmax(logits / temperature) with uniform u; argmax when T = 0."""
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


def _run_rows(b0, b1, n, t0, first_logits, uniforms, temperature, exact, out, buffer, offsets,
              spans, dilations, embed, conv_w, row_bias, has_local, local, res_w, res_b, skip_w,
              skip_b, skip_scale, w1, b1_, w2, b2):
    """Generate n samples for batch rows b0..b1-1; see `generate_chunk` for the arrays."""
    n_layers, gate, taps_c = conv_w.shape
    res = embed.shape[1]
    half = gate // 2
    skip_c = skip_w.shape[0]
    classes = w2.shape[0]
    kernel = taps_c // res
    rows = b1 - b0
    dt = embed.dtype
    h = np.empty((rows, res), dt)
    xcat = np.empty((rows, taps_c), dt)  # [current input, input d ago, 2d ago, ...]
    a = np.empty((rows, gate), dt)
    ab = np.empty((rows, gate), dt)  # this layer's gate bias per row: conv + speaker (+ mel)
    g = np.empty((rows, half), dt)
    gates = np.empty((rows, n_layers * half), dt)  # every layer's gated output, for the skips
    o = np.empty((rows, res), dt)
    skip = np.empty((rows, skip_c), dt)
    hidden = np.empty((rows, skip_c), dt)
    logits = np.empty((rows, classes), dt)
    scratch = np.empty(classes, np.float64)
    scale = dt.type(skip_scale)
    root_half = dt.type(math.sqrt(0.5))
    for r in range(rows):
        logits[r] = first_logits[b0 + r]
    for i in range(n):
        t = t0 + i
        for r in range(rows):
            x = _sample_row(logits[r], uniforms[i, b0 + r], temperature, scratch)
            out[b0 + r, i] = x
            h[r] = embed[x]
        for layer in range(n_layers):
            span = spans[layer]
            base = offsets[layer]
            for m in range(1, kernel):
                slot = base + (t - m * dilations[layer]) % span
                for r in range(rows):
                    xcat[r, m * res:(m + 1) * res] = buffer[slot, b0 + r]
            slot = base + t % span  # the oldest tap is in xcat now; its row is free
            for r in range(rows):
                xcat[r, :res] = h[r]
                buffer[slot, b0 + r] = h[r]
            for r in range(rows):
                for j in range(gate):
                    ab[r, j] = row_bias[b0 + r, layer, j]
                if has_local:
                    lo = layer * gate
                    for j in range(gate):
                        ab[r, j] += local[b0 + r, i, lo + j]
            _linear_rows(xcat, conv_w[layer], ab, a)
            for r in range(rows):
                if exact:  # float64 models: libm, to the last bit
                    for j in range(half):
                        g[r, j] = math.tanh(a[r, j]) / (1.0 + math.exp(-a[r, half + j]))
                else:  # sigmoid(y) = (1 + tanh(y / 2)) / 2
                    for j in range(half):
                        g[r, j] = _tanh(a[r, j]) * (_HALF + _HALF * _tanh(_HALF * a[r, half + j]))
                gates[r, layer * half:(layer + 1) * half] = g[r]
            if layer + 1 < n_layers:  # the last layer's residual output feeds nothing
                _linear(g, res_w[layer], res_b[layer], o)
                for r in range(rows):
                    for j in range(res):
                        h[r, j] = (h[r, j] + o[r, j]) * root_half
        # All skip projections as one long matmul: sum_l W_l g_l = [W_1 .. W_L] [g_1; ..; g_L].
        _linear(gates, skip_w, skip_b, skip)
        for r in range(rows):
            for j in range(skip_c):
                skip[r, j] = max(skip[r, j] * scale, _ZERO)
        _linear(skip, w1, b1_, hidden)
        for r in range(rows):
            for j in range(skip_c):
                hidden[r, j] = max(hidden[r, j], _ZERO)
        _linear(hidden, w2, b2, logits)
    for r in range(rows):
        first_logits[b0 + r] = logits[r]


def _run_parallel(parts, n, t0, first_logits, uniforms, temperature, exact, out, buffer, offsets,
                  spans, dilations, embed, conv_w, row_bias, has_local, local, res_w, res_b,
                  skip_w, skip_b, skip_scale, w1, b1_, w2, b2):
    """Split the batch into `parts` contiguous row ranges, one thread each."""
    batch = out.shape[0]
    for p in numba.prange(parts):
        lo = p * batch // parts
        hi = (p + 1) * batch // parts
        _run_rows(lo, hi, n, t0, first_logits, uniforms, temperature, exact, out, buffer, offsets,
                  spans, dilations, embed, conv_w, row_bias, has_local, local, res_w, res_b,
                  skip_w, skip_b, skip_scale, w1, b1_, w2, b2)


if numba is not None:
    _tanh = numba.njit(fastmath=True, cache=True, inline="always")(_tanh)
    _linear = numba.njit(fastmath=True, cache=True, inline="always")(_linear)
    _linear_rows = numba.njit(fastmath=True, cache=True, inline="always")(_linear_rows)
    _sample_row = numba.njit(fastmath=True, cache=True)(_sample_row)
    _run_rows = numba.njit(fastmath=True, cache=True)(_run_rows)
    _run_parallel = numba.njit(fastmath=True, cache=True, parallel=True)(_run_parallel)


class CompiledWeights:
    """The sampler's merged weights as contiguous numpy arrays, in the model's dtype.

    The gate biases are not here: they are per row (speaker conditioning), in the state.
    """

    def __init__(self, sampler) -> None:
        model = sampler.model
        as_np = lambda t: t.detach().cpu().contiguous().numpy()  # noqa: E731
        self.embed = as_np(model.embed.weight)
        # (out, in) layouts: row j holds every weight that output j reads.
        self.conv_w = as_np(torch.stack(sampler.conv_w).transpose(1, 2))
        res = model.config.residual_channels
        rs_w = torch.stack(sampler.rs_w).transpose(1, 2)  # (layers, residual + skip, gate / 2)
        rs_b = torch.stack(sampler.rs_b)
        self.res_w, self.res_b = as_np(rs_w[:, :res]), as_np(rs_b[:, :res])
        # Skip weights side by side, (skip, layers * gate / 2); their biases summed.
        self.skip_w = as_np(torch.cat(list(rs_w[:, res:]), dim=1))
        self.skip_b = as_np(rs_b[:, res:].sum(dim=0))
        self.w1 = as_np(model.head[1].weight[:, :, 0])
        self.b1 = as_np(model.head[1].bias)
        self.w2 = as_np(model.head[3].weight[:, :, 0])
        self.b2 = as_np(model.head[3].bias)
        self.skip_scale = float(sampler.skip_scale)
        self.offsets = np.asarray(sampler.offsets, dtype=np.int64)
        self.spans = np.asarray(sampler.spans, dtype=np.int64)
        self.dilations = np.asarray(sampler.dilations, dtype=np.int64)


def generate_chunk(weights: CompiledWeights, state, logits: torch.Tensor, uniforms: torch.Tensor,
                   temperature: float, threads: int = 1,
                   local: torch.Tensor | None = None) -> torch.Tensor:
    """Draw len(uniforms) samples per row, advancing `state` and `logits` in place.

    logits: (batch, classes) float, the next sample's logits (updated to the following one).
    uniforms: (n, batch) float in [0, 1), one per draw. state: a SamplerState on the CPU.
    local: (batch, n, layers * gate) the mel projections of these n positions
    (`CachedSampler.local_bias`), for a mel-conditioned model; None otherwise.
    Returns (batch, n) int64 class indices.
    """
    n, batch = uniforms.shape
    out = np.empty((batch, n), dtype=np.int64)
    lg = logits.numpy()
    parts = max(1, min(threads, batch))
    exact = lg.dtype == np.float64
    has_local = local is not None
    if has_local and tuple(local.shape[:2]) != (batch, n):
        raise ValueError(f"local must be (batch={batch}, n={n}, layers * gate), "
                         f"got {tuple(local.shape)}")
    local_np = local.numpy() if has_local else np.zeros((1, 1, 1), lg.dtype)
    args = (n, state.position, lg, uniforms.numpy().astype(lg.dtype), float(temperature), exact,
            out,
            state.buffer.numpy(), weights.offsets, weights.spans, weights.dilations,
            weights.embed, weights.conv_w, state.bias.numpy(), has_local, local_np,
            weights.res_w, weights.res_b,
            weights.skip_w, weights.skip_b, weights.skip_scale, weights.w1, weights.b1,
            weights.w2, weights.b2)
    if parts == 1:
        _run_rows(0, batch, *args)
    else:
        numba.set_num_threads(min(parts, numba.config.NUMBA_NUM_THREADS))
        _run_parallel(parts, *args)
    state.position += n
    return torch.from_numpy(out)
