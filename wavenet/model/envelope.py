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
