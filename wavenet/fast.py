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


def _sample_row(logits, u, temperature):
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
        total += math.exp((logits[j] - top) / temperature)
    target = u * total
    acc = 0.0
    for j in range(n):
        acc += math.exp((logits[j] - top) / temperature)
        if acc > target:
            return j
    return n - 1


def _run_rows(b0, b1, n, t0, first_logits, uniforms, temperature, out, buffer, offsets, spans,
              dilations, embed, conv_w, conv_b, rs_w, rs_b, skip_scale, w1, b1_, w2, b2):
    """Generate n samples for batch rows b0..b1-1; see `generate_chunk` for the arrays."""
    n_layers, taps_c, gate = conv_w.shape
    res = embed.shape[1]
    half = gate // 2
    skip_c = rs_w.shape[2] - res
    classes = w2.shape[1]
    kernel = taps_c // res
    rows = b1 - b0
    dt = embed.dtype
    h = np.empty((rows, res), dt)
    a = np.empty((rows, gate), dt)
    g = np.empty((rows, half), dt)
    o = np.empty((rows, res + skip_c), dt)
    skip = np.empty((rows, skip_c), dt)
    z = np.empty((rows, skip_c), dt)
    logits = np.empty((rows, classes), dt)
    for r in range(rows):
        logits[r] = first_logits[b0 + r]
    root_half = math.sqrt(0.5)
    for i in range(n):
        t = t0 + i
        for r in range(rows):
            x = _sample_row(logits[r], uniforms[i, b0 + r], temperature)
            out[b0 + r, i] = x
            h[r] = embed[x]
        skip[:] = 0
        for layer in range(n_layers):
            span = spans[layer]
            base = offsets[layer]
            for r in range(rows):
                a[r] = conv_b[layer]
            # Dilated conv: tap 0 is the current input, tap m the input m * dilation ago.
            for m in range(kernel):
                wm = conv_w[layer, m * res:(m + 1) * res]
                slot = base + (t - m * dilations[layer]) % span
                for r in range(rows):
                    src = h[r] if m == 0 else buffer[slot, b0 + r]
                    for c in range(res):
                        xc = src[c]
                        for j in range(gate):
                            a[r, j] += xc * wm[c, j]
            slot = base + t % span  # the oldest tap was read above; its row is free
            for r in range(rows):
                buffer[slot, b0 + r] = h[r]
                for j in range(half):
                    g[r, j] = math.tanh(a[r, j]) / (1.0 + math.exp(-a[r, half + j]))
                o[r] = rs_b[layer]
                for c in range(half):
                    gc = g[r, c]
                    for j in range(res + skip_c):
                        o[r, j] += gc * rs_w[layer, c, j]
                for j in range(res):
                    h[r, j] = (h[r, j] + o[r, j]) * root_half
                for j in range(skip_c):
                    skip[r, j] += o[r, res + j]
        for r in range(rows):
            for j in range(skip_c):
                z[r, j] = max(skip[r, j] * skip_scale, 0.0)
            hidden = b1_.copy()
            for c in range(skip_c):
                zc = z[r, c]
                for j in range(skip_c):
                    hidden[j] += zc * w1[c, j]
            logits[r] = b2
            for c in range(skip_c):
                hc = max(hidden[c], 0.0)
                for j in range(classes):
                    logits[r, j] += hc * w2[c, j]
    for r in range(rows):
        first_logits[b0 + r] = logits[r]


def _run_parallel(parts, n, t0, first_logits, uniforms, temperature, out, buffer, offsets, spans,
                  dilations, embed, conv_w, conv_b, rs_w, rs_b, skip_scale, w1, b1_, w2, b2):
    """Split the batch into `parts` contiguous row ranges, one thread each."""
    batch = out.shape[0]
    for p in numba.prange(parts):
        lo = p * batch // parts
        hi = (p + 1) * batch // parts
        _run_rows(lo, hi, n, t0, first_logits, uniforms, temperature, out, buffer, offsets,
                  spans, dilations, embed, conv_w, conv_b, rs_w, rs_b, skip_scale, w1, b1_, w2,
                  b2)


if numba is not None:
    _sample_row = numba.njit(fastmath=True, cache=True)(_sample_row)
    _run_rows = numba.njit(fastmath=True, cache=True)(_run_rows)
    _run_parallel = numba.njit(fastmath=True, cache=True, parallel=True)(_run_parallel)


class CompiledWeights:
    """The sampler's merged weights as contiguous numpy arrays, in the model's dtype."""

    def __init__(self, sampler) -> None:
        model = sampler.model
        as_np = lambda t: t.detach().cpu().contiguous().numpy()  # noqa: E731
        self.embed = as_np(model.embed.weight)
        self.conv_w = as_np(torch.stack(sampler.conv_w))
        self.conv_b = as_np(torch.stack(sampler.conv_b))
        self.rs_w = as_np(torch.stack(sampler.rs_w))
        self.rs_b = as_np(torch.stack(sampler.rs_b))
        self.w1 = as_np(model.head[1].weight[:, :, 0].t())
        self.b1 = as_np(model.head[1].bias)
        self.w2 = as_np(model.head[3].weight[:, :, 0].t())
        self.b2 = as_np(model.head[3].bias)
        self.skip_scale = float(sampler.skip_scale)
        self.offsets = np.asarray(sampler.offsets, dtype=np.int64)
        self.spans = np.asarray(sampler.spans, dtype=np.int64)
        self.dilations = np.asarray(sampler.dilations, dtype=np.int64)


def generate_chunk(weights: CompiledWeights, state, logits: torch.Tensor, uniforms: torch.Tensor,
                   temperature: float, threads: int = 1) -> torch.Tensor:
    """Draw len(uniforms) samples per row, advancing `state` and `logits` in place.

    logits: (batch, classes) float, the next sample's logits (updated to the following one).
    uniforms: (n, batch) float in [0, 1), one per draw. state: a SamplerState on the CPU.
    Returns (batch, n) int64 class indices.
    """
    n, batch = uniforms.shape
    out = np.empty((batch, n), dtype=np.int64)
    lg = logits.numpy()
    parts = max(1, min(threads, batch))
    args = (n, state.position, lg, uniforms.numpy().astype(lg.dtype), float(temperature), out,
            state.buffer.numpy(), weights.offsets, weights.spans, weights.dilations,
            weights.embed, weights.conv_w, weights.conv_b, weights.rs_w, weights.rs_b,
            weights.skip_scale, weights.w1, weights.b1, weights.w2, weights.b2)
    if parts == 1:
        _run_rows(0, batch, *args)
    else:
        numba.set_num_threads(min(parts, numba.config.NUMBA_NUM_THREADS))
        _run_parallel(parts, *args)
    state.position += n
    return torch.from_numpy(out)
