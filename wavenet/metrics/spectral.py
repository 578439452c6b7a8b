"""Log-mel distance between two recordings of the same utterance: how close a re-synthesis is.

`log_mel_distance` is the RMS difference, in dB, of the two signals' 80-band mel magnitude
spectra (torchaudio; 1024-sample windows, 256-sample hop, at the recordings' sample rate, a
-100 dB floor). The two signals must be time aligned (copy synthesis is); the longer one is cut
to the shorter. The mel-cepstral distortion of vocoder papers (SPTK mel-cepstra) lives with the
other listening metrics in wavenet.metrics.listening.
"""

import math

import torch
import torchaudio

N_MELS, N_FFT, HOP = 80, 1024, 256
FLOOR = 1e-5  # magnitude floor before the log: -100 dB


def _log_mel(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(time,) -> (frames, N_MELS) natural-log mel magnitude."""
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=1.0,
        norm="slaney", mel_scale="slaney").double()
    return torch.log(transform(audio.double()).clamp(min=FLOOR)).t()


def log_mel_distance(reference: torch.Tensor, test: torch.Tensor, sample_rate: int) -> float:
    """RMS difference in dB of two aligned (time,) float signals' log-mel magnitude spectra.

    Raises ValueError for signals that are not (time,) or shorter than one N_FFT frame.
    """
    if reference.dim() != 1 or test.dim() != 1:
        raise ValueError(f"expected two (time,) signals, got {tuple(reference.shape)} and "
                         f"{tuple(test.shape)}")
    n = min(len(reference), len(test))
    if n < N_FFT:
        raise ValueError(f"signals of {n} samples are shorter than one {N_FFT}-sample frame")
    ref, out = _log_mel(reference[:n], sample_rate), _log_mel(test[:n], sample_rate)
    return float((20.0 / math.log(10.0)) * (ref - out).pow(2).mean().sqrt())
