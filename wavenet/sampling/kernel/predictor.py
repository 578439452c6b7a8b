"""The linear predictor of a model with `lpc_order` > 0 inside the compiled loop: the drawn
excitation becomes the next sample, and the first layer reads the signal's, the prediction's and
the excitation's embeddings summed (wavenet.model.lpc; `Predictor` is its PyTorch twin).

lpc: (on, a (rows, frames, order + 1) float64 coefficients, past (rows, order) float64 signal
values newest first, p (rows,) float64 the pending prediction, levels (classes,) float64 each
μ-law code's value, hop). Without linear prediction `on` is False and the arrays are dummies.
"""

import math

from wavenet.sampling.kernel.intrinsics import njit


@njit(cache=True)
def _mulaw(x, classes):
    """A float64 in [-1, 1] (clipped) -> its μ-law code, torchaudio's formula in float64."""
    mu = float(classes - 1)
    x = min(1.0, max(-1.0, x))
    y = math.copysign(math.log1p(mu * abs(x)) / math.log1p(mu), x)
    return int((y + 1.0) / 2.0 * mu + 0.5)


# Not fastmath: the prediction and the codes must round as wavenet.model.lpc's float64 do.
@njit(cache=True)
def _lpc_step(r, t, e, lpc):
    """Row r's drawn excitation code e of sample t - 1 -> (its signal code, the excitation
    code read back, _mulaw(s - p), the prediction code of sample t), advancing the row's
    predictor (`lpc.Predictor.feed`)."""
    a, past, p, levels, hop = lpc[1], lpc[2], lpc[3], lpc[4], lpc[5]
    classes = levels.shape[0]
    s = _mulaw(p[r] + levels[e], classes)
    e_in = _mulaw(levels[s] - p[r], classes)
    for k in range(past.shape[1] - 1, 0, -1):
        past[r, k] = past[r, k - 1]
    past[r, 0] = levels[s]
    frame = min(t // hop, a.shape[1] - 1)
    acc = 0.0
    for k in range(past.shape[1]):
        acc += a[r, frame, k + 1] * past[r, k]
    p[r] = -acc
    return s, e_in, _mulaw(-acc, classes)


@njit(fastmath=True, cache=True, inline="always")
def _first_input(h, r, code, t, embed, lpc, out, i, record):
    """h[r] = the first layer's input at position t after drawing `code` (sample t - 1): its
    embedding, or with linear prediction embed[s] + embed[2C + e] + embed[C + p] (e read back
    from s), C the classes; `out[r, i]` = the sample's code (the signal's) where `record`."""
    if not lpc[0]:
        h[r] = embed[code]
        return
    s, e, pc = _lpc_step(r, t, code, lpc)
    classes = lpc[4].shape[0]
    for c in range(h.shape[1]):
        h[r, c] = embed[s, c] + embed[2 * classes + e, c] + embed[classes + pc, c]
    if record:
        out[r, i] = s


@njit(cache=True, inline="always")
def _publish(codes, r, x, t, lpc, out, i):
    """The pair layout's draw side: codes[r] = the rows of `embed` the chain sums for the
    drawn code x (sample t - 1): [x], or with linear prediction [s, 2C + e, C + p] (e read
    back from s), the signal's code recorded in `out[r, i]`."""
    if not lpc[0]:
        codes[r, 0] = x
        return
    s, e, pc = _lpc_step(r, t, x, lpc)
    classes = lpc[4].shape[0]
    codes[r, 0], codes[r, 1], codes[r, 2] = s, 2 * classes + e, classes + pc
    out[r, i] = s


@njit(fastmath=True, cache=True, inline="always")
def _lookup(h, r, codes, embed, on):
    """h[r] = the sum of the `embed` rows `_publish` chose."""
    if not on:
        h[r] = embed[codes[r, 0]]
        return
    for c in range(h.shape[1]):
        h[r, c] = embed[codes[r, 0], c] + embed[codes[r, 1], c] + embed[codes[r, 2], c]
