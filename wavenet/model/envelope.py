"""What the log-mel says about the signal besides its band energies: the linear-frequency power
spectrum behind it, its autocorrelation, how voiced each frame is, and the per-frame sharpening
of the sampling distribution that voicing asks for (LPCNet's, Valin & Skoglund 2019).

Everything here is computed from the log-mel alone (wavenet.model.features' convention), so a
vocoder needs nothing but its mel at generation time.

- power: the mel magnitudes mapped back to linear frequency through the pseudo-inverse of
  torchaudio's filterbank (Slaney scale and norm, as `log_mel`), floored, then squared:
  (..., n_fft // 2 + 1, frames);
- autocorrelation: the inverse real FFT of that power, (..., n_fft, frames) with lag on dim -2;
- voicing g in [0, 1]: the largest autocorrelation at a pitch lag (60-400 Hz) over the lag-0
  value. On real speech it follows the normalised autocorrelation of the waveform itself
  (correlation 0.91 over 10 asterisk4 files, docs/listening.md);
- sharpening c = 1 + strength * max(0, g - 1/3): the exponent on the next sample's
  distribution in a frame (p^c, i.e. the temperature divided by c). strength 1.5 is LPCNet's
  1 + max(0, 1.5 g - 0.5).
"""

import functools

import torch
import torchaudio

from wavenet.model.config import MelConfig

PITCH_HZ = (60.0, 400.0)  # the pitch range voicing looks for
MAGNITUDE_FLOOR = 1e-5  # the log-mel's own floor (features.SILENCE = log(1e-5))
VOICING_KNEE = 1.0 / 3.0  # below this voicing nothing is sharpened (LPCNet's 1.5 g - 0.5 = 0)


@functools.cache
def _inverse(n_fft: int, n_mels: int, fmin: float, fmax: float, sample_rate: int) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels): the pseudo-inverse of the log-mel's filterbank."""
    fb = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, fmin, fmax, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
    )  # (freqs, mels)
    return torch.linalg.pinv(fb.T.double()).float()


def power(mel: torch.Tensor, sample_rate: int, cfg: MelConfig) -> torch.Tensor:
    """(..., n_mels, frames) log-mel -> (..., n_fft // 2 + 1, frames) linear power estimate."""
    if mel.shape[-2] != cfg.n_mels:
        raise ValueError(f"mel has {mel.shape[-2]} bands, the config {cfg.n_mels}")
    fmax = cfg.fmax if cfg.fmax is not None else sample_rate / 2
    inverse = _inverse(cfg.n_fft, cfg.n_mels, cfg.fmin, fmax, sample_rate)
    magnitude = inverse @ mel.float().exp()
    return magnitude.clamp(min=MAGNITUDE_FLOOR).square()


def autocorrelation(mel: torch.Tensor, sample_rate: int, cfg: MelConfig) -> torch.Tensor:
    """(..., n_mels, frames) log-mel -> (..., n_fft, frames): lag 0, 1, ... on dim -2."""
    return torch.fft.irfft(power(mel, sample_rate, cfg), n=cfg.n_fft, dim=-2)


def voicing(mel: torch.Tensor, sample_rate: int, cfg: MelConfig) -> torch.Tensor:
    """(..., n_mels, frames) log-mel -> (..., frames) voicing in [0, 1] (see the module doc)."""
    r = autocorrelation(mel, sample_rate, cfg)
    lo = max(1, int(sample_rate / PITCH_HZ[1]))
    hi = min(cfg.n_fft // 2, int(sample_rate / PITCH_HZ[0]))
    return (r[..., lo : hi + 1, :].amax(dim=-2) / r[..., 0, :]).clamp(0.0, 1.0)


def sharpening(g: torch.Tensor, strength: float) -> torch.Tensor:
    """Voicing (any shape) -> the exponent c >= 1 on each frame's distribution."""
    return 1.0 + strength * (g - VOICING_KNEE).clamp(min=0.0)


def sharpened_temperature(
    temperature: float,
    strength: float,
    mel: torch.Tensor | None,
    sample_rate: int,
    cfg: MelConfig,
    start: int,
    samples: int,
) -> float | torch.Tensor:
    """The temperature of each draw: `temperature` itself without sharpening (strength 0 or no
    mel), else (batch, samples) float64, temperature / c of the frame holding each sample
    `start`, `start` + 1, ... (frame i covers samples [i * hop, (i + 1) * hop); samples past the
    mel's last frame take its value). mel: (batch, n_mels, frames) log-mel."""
    if not strength or mel is None or temperature == 0:
        return temperature
    c = sharpening(voicing(mel, sample_rate, cfg), strength).double()
    frames = (torch.arange(start, start + samples) // cfg.hop_length).clamp(max=c.shape[-1] - 1)
    return temperature / c[..., frames]


def levinson(r: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Levinson-Durbin over the last dim: autocorrelation r (..., >= order + 1), float64 ->
    (a (..., order + 1) with a[..., 0] = 1, reflection coefficients k (..., order)), the
    predictor x[t] ~ -sum_{i>=1} a[i] x[t - i]. Where an update would make |k| >= 1 (a
    non-positive definite r, e.g. rounding on a near-silent frame) the recursion stops there
    for that row (later coefficients 0), so the filter 1 / A(z) is always stable."""
    r = r.double()
    a = torch.zeros(*r.shape[:-1], order + 1, dtype=torch.float64)
    a[..., 0] = 1.0
    ks = torch.zeros(*r.shape[:-1], order, dtype=torch.float64)
    err = r[..., 0].clone()
    live = err > 0
    for i in range(1, order + 1):
        acc = r[..., i] + (a[..., 1:i] * r[..., 1:i].flip(-1)).sum(-1)
        k = torch.where(live, -acc / err.clamp(min=1e-300), torch.zeros_like(acc))
        live = live & (k.abs() < 1.0)
        k = torch.where(live, k, torch.zeros_like(k))
        a[..., 1 : i + 1] = a[..., 1 : i + 1] + k[..., None] * torch.cat(
            [a[..., 1:i].flip(-1), torch.ones_like(k)[..., None]], dim=-1
        )
        err = err * (1.0 - k * k)
        ks[..., i - 1] = k
    return a, ks


# LPCNet's conditioning of the autocorrelation before Levinson-Durbin: a white-noise floor
# (-40 dB) and a Gaussian lag window (about 60 Hz of bandwidth expansion at 16 kHz).
NOISE_FLOOR, LAG_WINDOW = 1e-4, 6e-5


def lpc(
    mel: torch.Tensor, sample_rate: int, cfg: MelConfig, order: int, preemphasis: float = 0.0
) -> torch.Tensor:
    """(..., n_mels, frames) log-mel -> (..., frames, order + 1) float64 prediction
    coefficients per frame (a[0] = 1), from the autocorrelation of the mel's power; with
    `preemphasis` a, of the pre-emphasised signal x[t] - a x[t-1] (the power weighted by
    |1 - a e^{-jw}|^2 = 1 + a^2 - 2a cos w)."""
    p = power(mel, sample_rate, cfg)
    if preemphasis:
        w = torch.linspace(0.0, torch.pi, p.shape[-2], dtype=torch.float64)
        p = p * (1.0 + preemphasis**2 - 2.0 * preemphasis * torch.cos(w)).float()[:, None]
    r = torch.fft.irfft(p, n=cfg.n_fft, dim=-2)[..., : order + 1, :].double().transpose(-1, -2)
    lags = torch.arange(order + 1, dtype=torch.float64)
    r = r * (1.0 - LAG_WINDOW * lags.square())
    r[..., 0] = r[..., 0] * (1.0 + NOISE_FLOOR) + 1e-10
    return levinson(r, order)[0]


def predict(signal: torch.Tensor, a: torch.Tensor, hop: int) -> torch.Tensor:
    """The linear prediction of each sample from the ones before it: signal (..., time), a
    (..., frames, order + 1) per frame of `hop` samples (samples past the last frame use it)
    -> (..., time) p[t] = -sum_{i=1..order} a[frame(t), i] signal[t - i] (zeros before 0)."""
    order = a.shape[-1] - 1
    time = signal.shape[-1]
    frames = (torch.arange(time) // hop).clamp(max=a.shape[-2] - 1)
    coef = a[..., frames, 1:]  # (..., time, order)
    past = torch.nn.functional.pad(signal.double(), (order, 0))
    taps = past.unfold(-1, order, 1)[..., :time, :].flip(-1)  # taps[t, i-1] = signal[t - i]
    return -(coef * taps).sum(-1)
