"""The output distributions: exact NLLs, normalised over every code, draws that follow them on
both sampler paths, and one unit (bits per 16-bit sample) shared with categorical models."""

import math

import numpy as np
import pytest
import torch
from tools import has

from wavenet import mulaw
from wavenet.model import output
from wavenet.sampling import kernel
from wavenet.sampling.kernel.draws import _draw

CODES = torch.arange(2**16)
H = 1 / 65536  # half a 16-bit step


def value(code: int) -> float:
    return (code - 32768) / 32768


def logistic_cdf(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z > -700 else 0.0


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def mol_params(weights, means, log_scales) -> torch.Tensor:
    """(1, 3K) parameters: weight logits, means, log-scales."""
    return torch.tensor([list(weights) + list(means) + list(log_scales)], dtype=torch.float64)


def every_code_nll(out: output.Output, params: torch.Tensor) -> torch.Tensor:
    """NLL (nats) of each of the 65536 codes under (1, C) parameters."""
    p = params[:, :, None].expand(-1, -1, len(CODES))
    return out.nll(p, CODES[None])[0]


def test_mixture_of_logistics_nll_is_the_interval_mass():
    """-log of sum_k w_k (sigmoid((x + h - mu_k) / s_k) - sigmoid((x - h - mu_k) / s_k)), the
    lowest and highest codes owning the tails, written out here with math."""
    weights, means, log_s = [0.3, -1.0, 2.0], [-0.2, 0.01, 0.5], [-3.0, -6.5, -2.0]
    out = output.Logistics(3)
    params = mol_params(weights, means, log_s)
    w = np.exp(weights) / np.exp(weights).sum()
    codes = [0, 1, 20000, 32768, 32769, 33100, 49152, 65534, 65535]
    nll = out.nll(params[:, :, None].expand(-1, -1, len(codes)), torch.tensor([codes]))[0]
    for code, got in zip(codes, nll.tolist(), strict=True):
        x, mass = value(code), 0.0
        for wk, mu, ls in zip(w, means, log_s, strict=True):
            s = math.exp(ls)
            upper = 1.0 if code == 65535 else logistic_cdf((x + H - mu) / s)
            lower = 0.0 if code == 0 else logistic_cdf((x - H - mu) / s)
            mass += wk * (upper - lower)
        assert got == pytest.approx(-math.log(mass), rel=1e-9, abs=1e-9), code


def test_gaussian_nll_is_the_interval_mass():
    out = output.Gaussian()
    mean, log_s = 0.1, -1.5
    params = torch.tensor([[mean, log_s]], dtype=torch.float64)
    codes = [0, 1, 20000, 35000, 36044, 36045, 36046, 50000, 65534, 65535]
    nll = out.nll(params[:, :, None].expand(-1, -1, len(codes)), torch.tensor([codes]))[0]
    s = math.exp(log_s)
    for code, got in zip(codes, nll.tolist(), strict=True):
        a, b = (value(code) - H - mean) / s, (value(code) + H - mean) / s
        # The mass from the nearer tail, each end's tail whole.
        if a > 0:
            mass = normal_cdf(-a) - (0.0 if code == 65535 else normal_cdf(-b))
        else:
            mass = (1.0 if code == 65535 else normal_cdf(b)) - (0.0 if code == 0 else normal_cdf(a))
        assert got == pytest.approx(-math.log(mass), rel=1e-9), code


@pytest.mark.parametrize("kind", ["mol", "gaussian"])
def test_continuous_probabilities_sum_to_one_over_every_code(kind):
    """Over all 65536 codes, for scales from the floor (30 steps) to wide, means at the edges."""
    g = torch.Generator().manual_seed(0)
    out = output.build(kind, mixtures=5)
    for trial in range(6):
        params = torch.randn(1, out.channels, generator=g, dtype=torch.float64)
        if kind == "mol":
            params[0, 5:10] = torch.rand(5, generator=g, dtype=torch.float64) * 2.4 - 1.2
            params[0, 10:] = -8 + 6 * torch.rand(5, generator=g, dtype=torch.float64)
        else:
            params[0] = torch.tensor(
                [
                    [-0.95, 0.3, 0.0, 1.0, 0.5, -0.99][trial],
                    [-9.0, -7.0, -5.0, -3.0, -1.0, 0.5][trial],
                ]
            )
        total = every_code_nll(out, params).neg().exp().sum().item()
        assert total == pytest.approx(1.0, abs=1e-9)


def test_categorical_in_16bit_units_is_its_mulaw_nll_plus_the_bin_widths():
    """A categorical model spreads each class's probability evenly over the 16-bit values it
    encodes: P16(v) = P(class of v) / (values in that class). The 16-bit NLL is therefore the
    μ-law NLL plus log2 of the width, and the 65536 probabilities sum to one."""
    out = output.Categorical(256)
    logits = torch.randn(1, 256, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    classes = mulaw.encode(CODES.float() / 32768 - 1)  # the class of every 16-bit value
    width = torch.bincount(classes, minlength=256).double()
    assert int(width.min()) >= 1 and int(width.sum()) == 2**16
    nll_mulaw = out.nll(logits[:, :, None].expand(-1, -1, 65536), classes[None])[0]
    bits16 = nll_mulaw / math.log(2) + mulaw.log2_widths(out.codec)[classes]
    assert torch.allclose(bits16, nll_mulaw / math.log(2) + width[classes].log2(), atol=1e-12)
    assert torch.exp2(-bits16).sum().item() == pytest.approx(1.0, abs=1e-9)
    # Widths run from a few values near silence to over a thousand at full scale.
    assert width[128] < 8 and width[255] > 500


def chi_square_p(observed: np.ndarray, expected: np.ndarray) -> float:
    """p-value of Pearson's chi-square statistic (bins of expected count >= 20)."""
    stat = float(((observed - expected) ** 2 / expected).sum())
    df = len(observed) - 1
    return float(
        torch.special.gammaincc(
            torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)
        )
    )


def equal_mass_bins(probs: np.ndarray, bins: int) -> np.ndarray:
    """Each code's bin (0 .. bins-1) so that every bin holds about 1 / bins of the mass."""
    return np.minimum((np.cumsum(probs) - probs / 2) * bins, bins - 1).astype(int)


def reference_draws(out, params, temperature, n, seed):
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return out.draw(params.expand(n, -1), temperature, u).numpy()


def compiled_draws(out, params, temperature, n, seed):
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    row = params[0].float().numpy()
    scratch = np.empty(max(out.channels, 1), np.float64)
    kind = output.KINDS[out.name]
    return np.array([_draw(kind, row, float(v), temperature, 0.0, scratch) for v in u.tolist()])


FIXED = {
    "mol": mol_params([0.5, -0.5, 1.0], [-0.1, 0.05, 0.2], [-4.0, -5.0, -3.5]),
    "gaussian": torch.tensor([[0.03, -4.5]], dtype=torch.float64),
    "categorical": torch.linspace(-3, 3, 256, dtype=torch.float64)[None] ** 2 / -2,
}
PATHS = [
    "reference",
    pytest.param(
        "compiled",
        marks=pytest.mark.requires(kernel.available(), "numba is not installed"),
    ),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["mol", "gaussian", "categorical"])
def test_draws_follow_the_density(kind, path):
    """40,000 draws from fixed parameters, binned into 40 bins of equal mass: the chi-square
    test accepts them (p > 1e-4), and rejects them against the same density with its scale
    10% wider or its softmax at temperature 1.1, so it has the power to see a wrong draw."""
    out = output.build(kind, mixtures=3)
    params = FIXED[kind].float().double()  # what a float32 model hands the compiled draw
    draw = reference_draws if path == "reference" else compiled_draws
    codes = draw(out, params, 1.0, 40000, seed=5)
    probs = (
        every_code_nll(out, params).neg().exp().numpy()
        if kind != "categorical"
        else torch.softmax(params[0], 0).numpy()
    )
    bins = equal_mass_bins(probs, 40)
    expected = np.bincount(bins, weights=probs * len(codes), minlength=40)
    observed = np.bincount(bins[codes], minlength=40)
    assert chi_square_p(observed, expected) > 1e-4
    wrong = params.clone()
    if kind == "mol":
        wrong[0, 6:] += math.log(1.1)
    elif kind == "gaussian":
        wrong[0, 1] += math.log(1.1)
    else:
        wrong = wrong / 1.1
    wrong_probs = (
        every_code_nll(out, wrong).neg().exp().numpy()
        if kind != "categorical"
        else torch.softmax(wrong[0], 0).numpy()
    )
    wrong_bins = equal_mass_bins(wrong_probs, 40)
    wrong_expected = np.bincount(wrong_bins, weights=wrong_probs * len(codes), minlength=40)
    assert chi_square_p(np.bincount(wrong_bins[codes], minlength=40), wrong_expected) < 1e-4


@pytest.mark.parametrize("kind", ["mol", "gaussian"])
def test_greedy_draw_is_the_mean_of_the_most_likely_component(kind):
    out = output.build(kind, mixtures=3)
    params = FIXED[kind]
    mean = 0.2 if kind == "mol" else 0.03  # component 2 has the largest weight
    expected = round(mean * 32768) + 32768
    assert reference_draws(out, params, 0.0, 3, seed=0).tolist() == [expected] * 3
    if has(kernel.available(), "numba is not installed"):
        assert compiled_draws(out, params.float().double(), 0.0, 3, 0).tolist() == [expected] * 3


def test_draws_clip_to_the_16bit_range():
    out = output.Gaussian()
    params = torch.tensor([[5.0, 0.0]], dtype=torch.float64)  # far above full scale
    assert set(reference_draws(out, params, 1.0, 1000, seed=1).tolist()) <= {65535, 65534}
    assert output.to_codes(torch.tensor([-3.0, -1.0, 0.0, 0.99999])).tolist() == [
        0,
        0,
        32768,
        65535,
    ]


def test_linear16_codec_round_trips_16bit_values():
    v = torch.arange(-32768, 32768)
    audio = v.float() / 32768
    codes = mulaw.LINEAR16.encode(audio)
    assert torch.equal(codes, v + 32768)
    assert torch.equal(mulaw.LINEAR16.decode(codes), audio)
    assert mulaw.LINEAR16.silence == 32768 and mulaw.LINEAR16.dtype == torch.int32
    with pytest.raises(ValueError, match="65536"):
        mulaw.LINEAR16.decode(torch.tensor([65536]))


def test_floor_never_draws_a_class_below_it():
    """With floor f, every class whose softmax probability is below f is never drawn, and the
    others are drawn in proportion to p - f (a chi-square-free check: frequencies within 4
    standard errors of (p - f) / sum(p - f))."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 256, generator=gen, dtype=torch.float64) * 2.0
    p = torch.softmax(logits[0], 0)
    floor = 0.004
    n = 40000
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    draws = output.categorical_draw(logits.expand(n, -1), 1.0, u, floor)
    counts = torch.bincount(draws, minlength=256).double()
    assert counts[p < floor].sum() == 0 and (p < floor).any()
    q = (p - floor).clamp(min=0)
    q /= q.sum()
    se = (q * (1 - q) / n).sqrt()
    assert ((counts / n - q).abs() <= 4 * se + 1e-12).all()


def test_floor_zero_and_per_row_temperatures_match_the_plain_draw():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 256, generator=gen, dtype=torch.float64)
    u = torch.rand(5, generator=gen, dtype=torch.float64)
    temps = torch.tensor([0.3, 0.6, 1.0, 1.7, 0.45], dtype=torch.float64)
    together = output.categorical_draw(logits, temps, u, 0.0)
    one_by_one = [
        output.categorical_draw(logits[i : i + 1], t, u[i : i + 1])
        for i, t in enumerate(temps.tolist())
    ]
    assert together.tolist() == torch.cat(one_by_one).tolist()
