"""Linear prediction (`model.lpc_order`) on every sampler path: the cached sampler and the
compiled layouts draw what the forward-pass reference draws, sample for sample.

The reference, `generate_naive`, analyses the whole output so far with `lpc.analyse` each
sample (prediction and excitation over whole sequences, as training computes them); the cached
paths carry the predictor one sample at a time (`lpc.Predictor`, `kernel.predictor`).
"""

import pytest
import torch

from wavenet.model import envelope, lpc
from wavenet.model.features import MelConfig, log_mel, pad_frames
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.sampling import kernel
from wavenet.sampling.cached import generate, generate_naive, resolve_impl, score
from wavenet.sampling.kernel import policy
from wavenet.sampling.paths import STORAGE as STORAGES

needs_numba = pytest.mark.requires(kernel.available(), "numba is not installed")
needs_int8 = pytest.mark.skipif(
    not kernel.int8_dot_available(), reason="the int8 path needs numba on an x86 CPU with AVX2"
)
HOP = 16
MEL = MelConfig(
    n_mels=10, n_fft=64, win_length=64, hop_length=HOP, channels=12, context=2, upsample=[4, 4]
)
RATE = 8000


def lpc_model(seed: int = 0, order: int = 6) -> WaveNet:
    """Two blocks of kernel 3, mel-conditioned, linear prediction of `order`; weights scaled up
    so the conditioning and the three input embeddings all matter."""
    torch.manual_seed(seed)
    config = WaveNetConfig(
        blocks=2,
        layers_per_block=4,
        kernel_size=3,
        residual_channels=8,
        gate_channels=16,
        skip_channels=16,
        mel=MEL,
        lpc_order=order,
    )
    model = WaveNet(config, sample_rate=RATE, preemphasis=0.85).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    return model


def speech_like_mel(batch: int, frames: int) -> torch.Tensor:
    """A log-mel whose envelope varies by frame: low bands loud, a moving formant, so the
    predictor's coefficients change every frame."""
    g = torch.Generator().manual_seed(9)
    bands = torch.arange(MEL.n_mels, dtype=torch.float32)[None, :, None]
    peak = torch.rand(batch, 1, frames, generator=g) * MEL.n_mels
    return -1.0 - 0.4 * bands - 2.0 * ((bands - peak) / 2).square().clamp(max=4)


def drawn(model, impl, samples=120, batch=2, threads=1, prime=None, temperature=1.0, **kw):
    mel = speech_like_mel(batch, -(-(samples + (0 if prime is None else prime.shape[1])) // HOP))
    g = torch.Generator().manual_seed(4)
    if impl == "naive":
        return generate_naive(model, samples, batch, temperature, prime, g, mel=mel)
    chunks = generate(
        model,
        samples,
        batch,
        temperature,
        prime,
        g,
        chunk=50,
        impl=impl,
        threads=threads,
        mel=mel,
        **kw,
    )
    return torch.cat(list(chunks), dim=1)


def resonance(batch: int, samples: int) -> torch.Tensor:
    """(batch, samples) float64: white noise through a resonance near 1 kHz at 8 kHz, a signal
    whose own mel describes it."""
    torch.manual_seed(0)
    noise = torch.randn(batch, samples, dtype=torch.float64) * 0.02
    x = torch.zeros_like(noise)
    for t in range(2, samples):
        x[:, t] = noise[:, t] + 1.4 * x[:, t - 1] - 0.9 * x[:, t - 2]
    return x


def test_the_predictor_one_sample_at_a_time_equals_the_whole_sequence_analysis():
    """Fed the excitation codes the analysis found, the predictor gives back the signal to
    within the two codes' rounding, and every next prediction code equals the analysis's."""
    x = resonance(2, 1200)
    a = lpc.coefficients(log_mel(x.float(), RATE, MEL), RATE, MEL, 6, 0.85)
    signal = lpc.quantize(x - 0.85 * torch.nn.functional.pad(x, (1, 0))[:, :-1], 256)
    p, e, target = lpc.analyse(signal, a, HOP, 256)
    assert torch.equal(e, target)
    levels = lpc.levels(256)
    width = torch.cat([levels.diff(), levels.diff()[-1:]])  # each code's step up
    predictor = lpc.Predictor(a, HOP, 256)
    assert torch.equal(predictor.first(), p[:, 0])
    for i in range(signal.shape[1] - 1):
        s, _, _ = predictor.feed(e[:, i])
        error = (levels[s] - levels[signal[:, i]]).abs()
        assert bool((error <= width[e[:, i]] / 2 + width[s] + 1e-12).all()), i
        # Continue from the true signal, as the analysis does.
        predictor.past[:, 0] = levels[signal[:, i]]
        predictor.p = predictor._predict()
        assert torch.equal(lpc.quantize(predictor.p, 256), p[:, i + 1])


def test_prediction_removes_the_envelope_the_mel_describes():
    """On a signal with the mel's own spectrum, the excitation carries a fraction of the
    signal's power: the point of the split."""
    x = resonance(1, 4000)
    a = lpc.coefficients(log_mel(x.float(), RATE, MEL), RATE, MEL, 6, 0.0)
    s = lpc.levels(256)[lpc.quantize(x, 256)]
    e = s - envelope.predict(s, a, HOP)
    assert e[0, 200:].square().mean() < 0.15 * s[0, 200:].square().mean()


def test_forward_reads_its_past_only():
    """Causality with the predictor: the output at t does not move when samples >= t do."""
    model = lpc_model()
    mel = pad_frames(speech_like_mel(1, 10), MEL.context)
    x = torch.randint(0, 256, (1, 10 * HOP), generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[0, 90:] = torch.randint(0, 256, (y.shape[1] - 90,))
    with torch.no_grad():
        assert torch.allclose(model(x, mel=mel)[:, :, :91], model(y, mel=mel)[:, :, :91])
        assert not torch.allclose(model(x, mel=mel)[:, :, 91:], model(y, mel=mel)[:, :, 91:])


def test_reference_path_draws_the_forward_pass_draws():
    model = lpc_model()
    naive = drawn(model, "naive")
    assert torch.equal(drawn(model, "reference"), naive)
    prime = torch.randint(0, 256, (2, 37), generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn(model, "reference", prime=prime), drawn(model, "naive", prime=prime))
    # The prediction matters: the same weights without it draw something else.
    plain = lpc_model()
    plain.embed_p.weight.data.zero_()
    assert not torch.equal(drawn(plain, "reference"), naive)


@needs_numba
@pytest.mark.parametrize(
    "impl", ["compiled", "compiled-bf16", pytest.param("compiled-int8", marks=needs_int8)]
)
@pytest.mark.parametrize("threads, batch", [(1, 2), (2, 2), (2, 1)])
def test_compiled_layouts_draw_the_reference_draws(impl, threads, batch, monkeypatch):
    """Rows split, the pair (batch 1 on 2 threads) and, with int8's one part, each layout;
    bf16/int8 against the reference on the rounded model; a floor and a prime on top."""
    monkeypatch.setattr(policy, "busy_cores", lambda: 0.0)
    model = lpc_model()
    rounded = kernel.rounded_model(model, STORAGES[impl])
    prime = torch.randint(0, 256, (batch, 29), generator=torch.Generator().manual_seed(3))
    for kw in ({}, {"floor": 0.002, "prime": prime}):
        reference = drawn(rounded, "reference", batch=batch, **kw)
        assert torch.equal(drawn(model, impl, batch=batch, threads=threads, **kw), reference)


@needs_numba
def test_the_layer_split_carries_one_predictor(monkeypatch):
    """Two parts each run the predictor on their own copy; the state keeps part 0's."""
    monkeypatch.setattr(policy, "busy_cores", lambda: 0.0)
    monkeypatch.setattr("wavenet.sampling.cached.kernel_parts", lambda *a: 2)
    model = lpc_model()
    assert torch.equal(drawn(model, "compiled", threads=2), drawn(model, "reference"))


def test_paths_that_cannot_run_it_say_so():
    model = lpc_model()
    with pytest.raises(ValueError, match="linear predictor"):
        resolve_impl("cuda-graph", model)
    with pytest.raises(ValueError, match="linear prediction"):
        score(model, torch.zeros(1, 32, dtype=torch.long), mel=speech_like_mel(1, 2))
    with pytest.raises(ValueError, match="sample rate"):
        WaveNet(model.config)
    with pytest.raises(ValueError, match="lpc_order"):
        WaveNetConfig(lpc_order=8)  # no mel
