"""What the log-mel says beyond its band energies (wavenet.model.envelope): the linear power
behind it, voicing, and the per-sample temperatures of voicing-dependent sharpening."""

import math

import numpy as np
import pytest
import torch
import torchaudio

from wavenet.model import envelope
from wavenet.model.config import MelConfig
from wavenet.model.features import log_mel

RATE = 16000
CFG = MelConfig(n_mels=80)


def pulse_train(f0: float, seconds: float = 1.0) -> torch.Tensor:
    """A glottal-like periodic signal: an impulse every 1 / f0 s through a one-pole low-pass."""
    n = int(seconds * RATE)
    x = np.zeros(n)
    x[:: int(RATE / f0)] = 1.0
    y = torchaudio.functional.lfilter(
        torch.from_numpy(x),
        torch.tensor([1.0, -0.9], dtype=torch.float64),
        torch.tensor([1.0, 0.0], dtype=torch.float64),
        clamp=False,
    )
    return (0.3 * y / y.abs().max()).float()


@pytest.mark.parametrize("f0", [100.0, 140.0, 220.0])
def test_periodic_speech_is_voiced_and_noise_is_not(f0):
    noise = 0.1 * torch.randn(RATE, generator=torch.Generator().manual_seed(0))
    voiced = envelope.voicing(log_mel(pulse_train(f0), RATE, CFG), RATE, CFG)
    unvoiced = envelope.voicing(log_mel(noise, RATE, CFG), RATE, CFG)
    assert voiced.shape == (RATE // CFG.hop_length,)
    assert voiced.min() >= 0 and voiced.max() <= 1 and unvoiced.min() >= 0
    assert voiced[2:-2].median() > 0.55, voiced  # the mel blurs low pitches: 0.62 at 100 Hz
    assert unvoiced[2:-2].median() < 0.35, unvoiced


def test_power_inverts_the_filterbank_where_it_is_invertible():
    """A flat spectrum (white noise's, on average) comes back flat from its mel: the bands'
    power within a factor of 2 of its median over 300 Hz..7 kHz."""
    noise = 0.1 * torch.randn(4 * RATE, generator=torch.Generator().manual_seed(1))
    p = envelope.power(log_mel(noise, RATE, CFG), RATE, CFG).mean(-1)
    hz = torch.arange(len(p)) * RATE / CFG.n_fft
    band = p[(hz > 300) & (hz < 7000)]
    assert (band / band.median()).log2().abs().max() < 1.0


def test_sharpening_is_lpcnets_exponent():
    g = torch.tensor([0.0, 1 / 3, 0.5, 1.0])
    expected = [1 + max(0.0, 1.5 * v - 0.5) for v in g.tolist()]
    assert envelope.sharpening(g, 1.5).tolist() == pytest.approx(expected)
    assert envelope.sharpening(g, 0.0).tolist() == [1.0] * 4


def test_sharpened_temperature_follows_each_samples_frame():
    """Sample s of the output (stream position start + s) takes its frame's exponent; samples
    past the mel's last frame take the last frame's."""
    mel = log_mel(torch.cat([pulse_train(120.0, 0.5), 0.05 * torch.randn(8000)]), RATE, CFG)
    mel = torch.stack([mel, mel.flip(-1)])  # two rows, voiced and unvoiced halves swapped
    c = envelope.sharpening(envelope.voicing(mel, RATE, CFG), 1.5).double()
    start, samples, hop = 100, mel.shape[-1] * CFG.hop_length, CFG.hop_length
    temps = envelope.sharpened_temperature(0.6, 1.5, mel, RATE, CFG, start, samples)
    assert temps.shape == (2, samples) and temps.dtype == torch.float64
    for row in range(2):
        for s in (0, 1, hop - start - 1, hop - start, 5000, samples - 1):
            frame = min((start + s) // hop, mel.shape[-1] - 1)
            assert temps[row, s].item() == pytest.approx(0.6 / c[row, frame].item()), (row, s)
    assert temps[0, :1000].max() < 0.6 and math.isclose(temps.max().item(), 0.6)


@pytest.mark.parametrize(
    ("temperature", "strength", "with_mel"), [(0.6, 0.0, True), (0.0, 1.5, True), (0.6, 1.5, False)]
)
def test_no_sharpening_keeps_the_plain_temperature(temperature, strength, with_mel):
    mel = log_mel(pulse_train(120.0), RATE, CFG)[None] if with_mel else None
    got = envelope.sharpened_temperature(temperature, strength, mel, RATE, CFG, 0, 100)
    assert got == temperature


def test_levinson_recovers_an_autoregressive_process():
    """x[t] = 1.3 x[t-1] - 0.6 x[t-2] + noise: its sample autocorrelation gives a ~ (1, -1.3,
    0.6) and zeros beyond; the prediction error power matches the noise's."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(200000, generator=gen, dtype=torch.float64)
    x = torchaudio.functional.lfilter(
        noise,
        torch.tensor([1.0, -1.3, 0.6], dtype=torch.float64),
        torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        clamp=False,
    )
    r = torch.stack([(x[: len(x) - k] * x[k:]).mean() for k in range(5)])
    a, k = envelope.levinson(r, 4)
    assert a.tolist() == pytest.approx([1.0, -1.3, 0.6, 0.0, 0.0], abs=0.02)
    assert (k.abs() < 1).all()


def test_levinson_stays_stable_on_a_bad_autocorrelation():
    """An r that is no autocorrelation (|r[1]| > r[0]) stops the recursion: |k| < 1 always."""
    a, k = envelope.levinson(torch.tensor([[1.0, 1.5, 0.2, 0.1], [1.0, 0.5, 0.2, 0.1]]), 3)
    assert (k.abs() < 1).all() and a[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert a[1, 1] != 0


def test_predict_is_the_past_weighted_by_each_frames_coefficients():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 50, generator=gen, dtype=torch.float64)
    a = torch.randn(2, 4, 4, generator=gen, dtype=torch.float64)  # 4 frames of hop 16, order 3
    p = envelope.predict(x, a, 16)
    for b in range(2):
        for t in range(50):
            frame = min(t // 16, 3)
            want = -sum(a[b, frame, i].item() * x[b, t - i].item() for i in (1, 2, 3) if t >= i)
            assert p[b, t].item() == pytest.approx(want, abs=1e-12), (b, t)


@pytest.mark.parametrize(
    "name", ["ast_en_US_f_Allison_agent-newlocation", "ast_it_IT_m_Carlo_agent-user"]
)
def test_lpc_from_the_mel_predicts_real_speech(demo_root, name):
    """The coefficients from an utterance's own log-mel remove most of its power: a
    prediction gain above 10 dB (18 dB over the 31 held-out asterisk4 files, docs/listening.md)."""
    import soundfile as sf

    path = demo_root / "wavs" / f"{name}.flac"
    x = torch.from_numpy(sf.read(path, dtype="float32")[0])
    mel = log_mel(x, RATE, CFG)
    n = mel.shape[-1] * CFG.hop_length
    a = envelope.lpc(mel, RATE, CFG, 16)
    e = x[:n].double() - envelope.predict(x[:n], a, CFG.hop_length)
    gain = 10 * torch.log10(x[:n].double().square().sum() / e.square().sum())
    assert gain > 10, gain
