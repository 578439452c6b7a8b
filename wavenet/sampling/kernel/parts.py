"""Two layouts in one loop (`_run_part`): the whole network on one thread, or every layer split
between `parts` threads (one per core), each computing its share of every layer from its own
cache and meeting the others at a spin barrier per layer to add the residual partial sums (in
part order: the same numbers however the threads are scheduled).
"""

import math

import numpy as np

from wavenet.sampling.kernel.draws import _next_code
from wavenet.sampling.kernel.intrinsics import _barrier, njit
from wavenet.sampling.kernel.predictor import _first_input
from wavenet.sampling.kernel.step import (
    _gates,
    _head,
    _int8_scratch,
    _linear,
    _linear_rows,
    _residual,
    _skip_relu,
)


@njit(fastmath=True, cache=True, inline="always")
def _read_taps(buffer, h, xcat, held, base, span, d, t, write):
    """xcat = [h, the layer's input d ago, 2d ago, ...] from its ring (rows base .. base + span
    - 1) at position t, and held = h; with `write` (no other part reads the ring), h goes to
    the ring's slot of t, whose oldest tap has just been read."""
    rows, res = h.shape
    for m in range(1, xcat.shape[1] // res):
        slot = base + (t - m * d) % span
        for r in range(rows):
            for c in range(res):
                xcat[r, m * res + c] = buffer[slot, r, c]
    for r in range(rows):
        for c in range(res):
            xcat[r, c] = h[r, c]
            held[r, c] = h[r, c]
    if write:
        for r in range(rows):
            for c in range(res):
                buffer[base + t % span, r, c] = h[r, c]


@njit(fastmath=True, cache=True, inline="always")
def _gate_bias(row_bias, local, has_local, i, layer, lo, ab):
    """ab = this part's filter rows, then its gate rows (gated outputs lo .. lo + share - 1), of
    `layer`'s gate bias per row: the convolution's and speaker's, plus the mel's at chunk
    position i where has_local."""
    share = ab.shape[1] // 2
    gate = row_bias.shape[2]
    half = gate // 2
    for r in range(ab.shape[0]):
        for jj in range(share):
            ab[r, jj] = row_bias[r, layer, lo + jj]
            ab[r, share + jj] = row_bias[r, layer, half + lo + jj]
        if has_local:
            for jj in range(share):
                ab[r, jj] += local[r, i, layer * gate + lo + jj]
                ab[r, share + jj] += local[r, i, layer * gate + half + lo + jj]


@njit(fastmath=True, cache=True, inline="always")
def _exchange(partials, mine, sync, part, parts, count):
    """mine = the sum of every part's `mine` (rows, width), added in part order: published in
    slot count & 1 of partials (2, parts, rows, width), read after barrier count + 1 (two slots,
    so a part running ahead never overwrites what another still reads). Returns count + 1."""
    par = count & 1
    partials[par, part] = mine
    count += 1
    _barrier(sync, part, parts, count)
    for r in range(mine.shape[0]):
        for j in range(mine.shape[1]):
            acc = partials[par, 0, r, j]
            for q in range(1, parts):
                acc += partials[par, q, r, j]
            mine[r, j] = acc
    return count


@njit(fastmath=True, cache=True, inline="always")
def _write_ring(buffer, slot, x):
    """Row `slot` of the ring = x (rows, residual): a layer's input, once every part has read
    its taps of the layer (with parts > 1, part 0 writes it)."""
    for r in range(x.shape[0]):
        buffer[slot, r] = x[r]


# One compiled loop: its scratch and barrier count live across every layer and sample.
@njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
def _run_part(part, parts, n, t0, io, ring, net, weights, exchange, options):
    """Generate n samples for every batch row, computing this part's share of each layer.

    io: (logits (batch, classes) in/out, uniforms (n, batch), out (batch, n), local (batch, n,
    layers * gate) or a dummy, forced (batch, n) codes to feed instead of drawing when scoring,
    nll (batch,) float64 accumulating -ln p of each forced code from sample 1 on,
    temperatures (n, batch) float64, one a draw, the linear predictor's state
    (kernel.predictor)); ring:
    (buffer, row_bias) of the SamplerState; net: (offsets, spans, dilations); weights:
    `CompiledWeights.arrays`; exchange: (sync counters, residual, skip and logits partials,
    each (2, parts, batch, width)); options: (floor: the categorical draws' probability floor,
    exact, has_local, kind: the output
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
    rows, res, dt = out.shape[0], embed.shape[1], embed.dtype
    skip_c, classes = skip_b.shape[0], b2.shape[0]
    n_layers, width = conv_s.shape[1:]  # width = this part's filter + gate rows
    share = width // 2  # gated outputs of this part per layer: part * share ..
    conv_p, res_p, skip_p, conv_sp = conv_w[part], res_w[part], skip_w[part], conv_s[part]
    w1_p, b1_p, w2_p, w1_sp = w1[part], b1[part], w2[part], w1_s[part]
    res_b_p = res_b if part == 0 else np.zeros_like(res_b)  # part 0 adds the biases
    skip_b_p = skip_b if part == 0 else np.zeros_like(skip_b)
    b2_p = b2 if part == 0 else np.zeros_like(b2)
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
    xq = _int8_scratch(rows, max(taps_c, gates.shape[1], skip_c), widest)
    scale = dt.type(skip_scale)
    root_half = dt.type(math.sqrt(0.5))
    count = 0  # barriers passed; partials alternate between two slots by its parity
    logits[:] = first_logits
    for i in range(n):
        t = t0 + i
        for r in range(rows):
            code = _next_code(r, i, t, logits, io, options, scratch, part == 0)
            _first_input(h, r, code, t, embed, io[7], out, i, part == 0)
        for layer in range(n_layers):
            base, span = offsets[layer], spans[layer]
            _read_taps(buffer, h, xcat, held[layer], base, span, dilations[layer], t, parts == 1)
            _gate_bias(row_bias, local, has_local, i, layer, part * share, ab)
            _linear_rows(xcat, conv_p[layer], conv_sp[layer], ab, a, xq)
            _gates(a, g, exact)
            for r in range(rows):
                for j in range(share):
                    gates[r, layer * share + j] = g[r, j]
            if layer + 1 == n_layers:
                break  # the last layer's residual output feeds nothing
            _linear(g, res_p[layer], res_s[layer], res_b_p[layer], o, xq)
            if parts > 1:
                count = _exchange(x_res, o, sync, part, parts, count)
                if part == 0:  # every part has read its taps of this layer
                    _write_ring(buffer, base + t % span, held[layer])
            _residual(h, o, root_half)
        # All skip projections as one long matmul: sum_l W_l g_l = [W_1 .. W_L] [g_1; ..; g_L].
        _linear(gates, skip_p, skip_s, skip_b_p, skip, xq)
        if parts > 1:
            count = _exchange(x_skip, skip, sync, part, parts, count)
            if part == 0:
                _write_ring(buffer, offsets[-1] + t % spans[-1], held[-1])
        _skip_relu(skip, scale)
        # This part's hidden units and their share of the logits.
        _head(skip, w1_p, w1_sp, b1_p, hidden, w2_p, w2_s, b2_p, logits, xq)
        if parts > 1:
            count = _exchange(x_logits, logits, sync, part, parts, count)
    if part == 0:
        first_logits[:] = logits
