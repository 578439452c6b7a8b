"""The pair layout: one stream (or a few batch rows) on two threads with no barrier per layer,
the layers on one (the chain, `_chain`), the skip projections, head and draw on the other
(`_tail`); see `_run_pair`. The layout the int8 path takes at batch 1 on two free cores.
"""

import math

import numpy as np

from wavenet.sampling.kernel.draws import _next_code
from wavenet.sampling.kernel.intrinsics import _LINE, _store_release, _wait, njit
from wavenet.sampling.kernel.predictor import _lookup, _publish
from wavenet.sampling.kernel.step import (
    _gates,
    _head,
    _int8_scratch,
    _linear,
    _linear_rows,
    _project,
    _residual,
    _skip_relu,
)
from wavenet.sampling.kernel.storage import CompiledWeights


@njit(cache=True, inline="always")
def _handed(layers):
    """Layers (the first ones) whose older taps `_run_pair`'s role 1 computes: 7/15 of them,
    which balanced the two threads best on the default model (see `_run_pair`)."""
    return layers * 7 // 15


def pair_shares(weights: CompiledWeights) -> tuple[int, int]:
    """Bytes of weights each thread of `_run_pair` reads a sample: (the chain: current taps,
    its older taps, residual projections; role 1: skip projections, head, the older taps of
    the layers handed to it)."""
    cur, past, _ = (a.nbytes for a in weights.pair)
    layers = weights.offsets.shape[0]
    handed = past * _handed(layers) // layers
    a = weights.arrays
    return cur + past - handed + a[2].nbytes, a[4].nbytes + a[6].nbytes + a[8].nbytes + handed


@njit(fastmath=True, cache=True, error_model="numpy")
def _older_taps(t, i, layer, past, pre):
    """pre[layer] = the older taps' products of `layer` at position t (row i of the chunk)
    plus its gate bias per row (speaker, and mel at i): all of the dilated convolution that
    does not wait on sample t - 1, read from the ring before t writes it. past: (buffer,
    row_bias, local, has_local, (offsets, spans, dilations), the older taps' matrices, their
    scales, taps scratch (rows, taps - residual), xq scratch)."""
    buffer, row_bias, local, has_local, net, conv_past, conv_s, taps, xq = past
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


@njit(fastmath=True, cache=True, inline="always")
def _chain(n, t0, io, ring, net, weights, exchange, options, past, xq):
    """`_run_pair`'s role 0: each sample's layers, once role 1 has drawn its input, publishing
    every layer's gated units as they are computed; then, for the next position, the older
    taps of the layers not handed to role 1."""
    buffer, offsets, spans = ring[0], net[0], net[1]
    embed, res_w, res_b, res_s = weights[0], weights[2], weights[3], weights[12]
    conv_s0, conv_cur = weights[11][0], weights[16]
    sync, codes, gated, pre = exchange
    rows, res, dt = io[2].shape[0], embed.shape[1], embed.dtype
    n_layers, half = gated.shape[0], gated.shape[2]
    h = np.empty((rows, res), dt)
    a = np.empty((rows, 2 * half), dt)
    g = np.empty((rows, half), dt)
    o = np.empty((rows, res), dt)
    root_half = dt.type(math.sqrt(0.5))
    for layer in range(n_layers):
        _older_taps(t0, 0, layer, past, pre)
    for i in range(n):
        t = t0 + i
        _wait(sync, _LINE, i + 1)
        for r in range(rows):
            _lookup(h, r, codes, embed, io[7][0])
        for layer in range(n_layers):
            slot = offsets[layer] + t % spans[layer]
            for r in range(rows):
                for c in range(res):
                    buffer[slot, r, c] = h[r, c]
            _linear_rows(h, conv_cur[layer], conv_s0[layer], pre[layer], a, xq)
            _gates(a, g, options[1])
            gl = gated[layer]
            for r in range(rows):
                for j in range(half):
                    gl[r, j] = g[r, j]
            _store_release(sync, 0, i * n_layers + layer + 1)
            if layer + 1 == n_layers:
                break
            _linear(g, res_w[0, layer], res_s[layer], res_b[layer], o, xq)
            _residual(h, o, root_half)
        if i + 1 < n:
            for layer in range(_handed(n_layers), n_layers):
                _older_taps(t + 1, i + 1, layer, past, pre)


@njit(fastmath=True, cache=True, inline="always")
def _tail(n, t0, io, weights, exchange, options, past, xq):
    """`_run_pair`'s role 1: each sample's draw, published to the chain; the sum of the skip
    projections of the layers' gated units as the chain publishes them, with the next
    position's older taps of the first `_handed` layers between them; then the head."""
    first_logits = io[0]
    skip_b, w1, b1, w2, b2, skip_scale = weights[5:11]
    skip_s, w1_s, w2_s, skip_layers = weights[13], weights[14], weights[15], weights[18]
    sync, codes, gated, pre = exchange
    rows, dt = io[2].shape[0], weights[0].dtype
    n_layers, skip_c, classes = gated.shape[0], skip_b.shape[0], b2.shape[0]
    handed = _handed(n_layers)
    skip = np.empty((rows, skip_c), dt)
    part = np.empty((rows, skip_c), dt)
    hidden = np.empty((rows, w1_s.shape[1]), dt)
    logits = np.empty((rows, classes), dt)
    scratch = np.empty(classes, np.float64)
    scale = dt.type(skip_scale)
    for r in range(rows):
        logits[r] = first_logits[r]
    for i in range(n):
        t = t0 + i
        for r in range(rows):
            x = _next_code(r, i, t, logits, io, options, scratch, True)
            _publish(codes, r, x, t, io[7], io[2], i)
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
                _older_taps(t + 1, i + 1, layer, past, pre)
        _skip_relu(skip, scale)
        _head(skip, w1[0], w1_s[0], b1[0], hidden, w2[0], w2_s, b2, logits, xq)
    for r in range(rows):
        first_logits[r] = logits[r]


@njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
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
    counters: the chain's published layers at 0, draws at _LINE; the rows of `embed` the
    chain sums, (rows, 3) (kernel.predictor._publish);
    gated units (layers, rows, gate / 2); the older taps' products and gate biases (layers,
    rows, gate)). Other arguments as `_run_part`. Both roles read the ring: role 1 reads
    position t + 1's older taps before it publishes the draw that lets the chain write t + 1.
    """
    buffer, row_bias = ring
    taps_c = net[3]  # kernel size * residual channels
    embed, skip_b, w1_s, b2 = weights[0], weights[5], weights[14], weights[9]
    rows, res, dt = io[2].shape[0], embed.shape[1], embed.dtype
    skip_c, hid, gate = skip_b.shape[0], w1_s.shape[1], exchange[3].shape[2]
    xq = _int8_scratch(rows, max(taps_c, skip_c, hid), max(gate, res, skip_c, hid, b2.shape[0]))
    taps = np.empty((rows, taps_c - res), dt)
    # What `_older_taps` reads, both roles alike (xq shared with the role's own products).
    past = (buffer, row_bias, io[3], options[2], net[:3], weights[17], weights[11][0], taps, xq)
    if role == 0:
        _chain(n, t0, io, ring, net, weights, exchange, options, past, xq)
    else:
        _tail(n, t0, io, weights, exchange, options, past, xq)
