"""Spectral distance between two recordings of the same utterance: how close a re-synthesis is.

Mel-cepstral distortion (MCD), in dB, as vocoder papers report it, computed with torchaudio:
cepstra c1..c24 are the orthonormal DCT-II of the natural-log 80-band mel magnitude spectrum
(1024-sample windows, 256-sample hop, at the recordings' sample rate), and per frame

    MCD = (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d) ** 2)

averaged over frames. c0 (overall level) is left out, as usual. The two signals must be time
aligned (copy synthesis is); the longer one is cut to the shorter. `log_mel_distance` is the RMS
difference of the log-mel spectra themselves, in dB.
"""

import math

import torch
import torchaudio

N_MELS, N_CEPS, N_FFT, HOP = 80, 24, 1024, 256
FLOOR = 1e-5  # magnitude floor before the log: -100 dB


def _log_mel(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(time,) -> (frames, N_MELS) natural-log mel magnitude."""
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=1.0,
        norm="slaney", mel_scale="slaney").double()
    return torch.log(transform(audio.double()).clamp(min=FLOOR)).t()


def _aligned(reference: torch.Tensor, test: torch.Tensor, sample_rate: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    if reference.dim() != 1 or test.dim() != 1:
        raise ValueError(f"expected two (time,) signals, got {tuple(reference.shape)} and "
                         f"{tuple(test.shape)}")
    n = min(len(reference), len(test))
    if n < N_FFT:
        raise ValueError(f"signals of {n} samples are shorter than one {N_FFT}-sample frame")
    return _log_mel(reference[:n], sample_rate), _log_mel(test[:n], sample_rate)


def mel_cepstrum(log_mel: torch.Tensor) -> torch.Tensor:
    """(frames, N_MELS) log-mel -> (frames, N_CEPS) cepstra c1..c24."""
    dct = torchaudio.functional.create_dct(N_CEPS + 1, N_MELS, norm="ortho").to(log_mel)
    return (log_mel @ dct)[:, 1:]


def mel_cepstral_distortion(reference: torch.Tensor, test: torch.Tensor,
                            sample_rate: int) -> float:
    """Mean MCD in dB between two aligned (time,) float signals (see the module docstring)."""
    ref, out = _aligned(reference, test, sample_rate)
    diff = mel_cepstrum(ref) - mel_cepstrum(out)
    per_frame = (10.0 / math.log(10.0)) * torch.sqrt(2.0 * (diff ** 2).sum(dim=1))
    return float(per_frame.mean())


def log_mel_distance(reference: torch.Tensor, test: torch.Tensor, sample_rate: int) -> float:
    """RMS difference in dB of the two aligned signals' log-mel magnitude spectra."""
    ref, out = _aligned(reference, test, sample_rate)
    return float((20.0 / math.log(10.0)) * (ref - out).pow(2).mean().sqrt())
