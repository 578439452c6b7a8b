"""The compiled draw of the next sample from one row's output parameters, in each output
distribution (output.KINDS): the categorical softmax by inverse CDF, the mixture of logistics
and the Gaussian, each the draw of wavenet.model.output from the same uniform; and, when
scoring, -ln p of a fed code instead.

The categorical draw vectorizes (fastmath); the continuous draws keep IEEE semantics: they
mirror torch's float64 arithmetic.
"""

import math

import numpy as np

from wavenet.model import output
from wavenet.sampling.kernel.intrinsics import _f64_from_bits, njit

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts: k * _LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_EXP_FLOOR = -700.0  # exp(-700) ~ 1e-304: a normal float64, and nothing beside a sum >= 1
_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(14))


@njit(cache=True, inline="always")
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


@njit(fastmath=True, cache=True, error_model="numpy")
def _sample_row(logits, u, temperature, floor, scratch):
    """Inverse-CDF draw from softmax(logits / temperature) with uniform u; argmax (the first
    largest) when T = 0. floor > 0: each probability less floor, clipped at 0, renormalised.

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
    if floor > 0.0:  # p_j - floor = (e_j - floor * total) / total
        cut = floor * total
        total = 0.0
        for j in range(n):
            e = max(scratch[j] - cut, 0.0)
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


@njit(cache=True)
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


@njit(cache=True)
def _ndtri(p):
    """The standard normal quantile (torch.special.ndtri) of p in (0, 1); 1 - p is exact for
    p >= 0.5, so the upper half mirrors the lower."""
    return _ndtri_lower(p) if p <= 0.5 else -_ndtri_lower(1.0 - p)


@njit(cache=True)
def _to_code(x):
    """A continuous value -> its 16-bit code (output.to_codes: round half to even, clipped)."""
    v = np.rint(x * _HALF_LEVELS)
    return int(min(max(v, -_HALF_LEVELS), _HALF_LEVELS - 1.0) + _HALF_LEVELS)


@njit(cache=True)
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


@njit(cache=True)
def _draw_gaussian(params, u, temperature):
    """A discretized Gaussian's draw (output.Gaussian.draw) with uniform u."""
    mean = float(params[0])
    if temperature == 0.0:
        return _to_code(mean)
    scale = math.exp(max(float(params[1]), _LOG_SCALE_MIN))
    v = min(max(u, _TINY), 1.0 - _TINY)
    return _to_code(mean + temperature * scale * _ndtri(v))


@njit(cache=True)
def _draw(kind, params, u, temperature, floor, scratch):
    """The next code from one row's output parameters; kind as output.KINDS numbers them;
    floor: the categorical draw's probability floor."""
    if kind == 1:
        return _draw_mol(params, u, temperature, scratch)
    if kind == 2:
        return _draw_gaussian(params, u, temperature)
    return _sample_row(params, u, temperature, floor, scratch)


@njit(cache=True)
def _neg_log_prob(logits, x):
    """-ln softmax(logits)[x], in float64."""
    top = float(logits[0])
    for j in range(1, logits.shape[0]):
        top = max(top, float(logits[j]))
    total = 0.0
    for j in range(logits.shape[0]):
        total += math.exp(float(logits[j]) - top)
    return math.log(total) + top - float(logits[x])


@njit(cache=True, inline="always")
def _next_code(r, i, t, logits, io, options, scratch, record):
    """Row r's code for chunk position i (stream position t): drawn from logits[r] at the
    temperature io[6][i, r] with the floor options[0], or when
    scoring the forced one, whose -ln p is added to nll[r] from t = 2 on; recorded in `out`
    (and nll) where `record` (one thread of those computing the row)."""
    # Indexing, not unpacking: unpacking io with `_` twice in this inlined function lost
    # the writes to nll (numba 0.68; the scoring test caught it).
    if options[4]:  # scoring: teacher forcing; sample t - 1 is fed now
        x = io[4][r, i]
        if record and t >= 2:
            io[5][r] += _neg_log_prob(logits[r], x)
    else:
        x = _draw(options[3], logits[r], io[1][i, r], io[6][i, r], options[0], scratch)
    if record:
        io[2][r, i] = x
    return x
