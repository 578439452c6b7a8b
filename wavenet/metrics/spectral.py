"""Log-mel distance between two recordings of the same utterance: how close a re-synthesis is.

`log_mel_distance` is the RMS difference, in dB, of the two signals' log-mel magnitude spectra
in the project's one log-mel convention (wavenet.model.features: Slaney scale and norm, natural
log of max(mel, 1e-5), frame i = samples [i·hop, (i+1)·hop)) with the vocoder's analysis: 80
bands, 1024-sample windows, 256-sample hop, at the recordings' sample rate. The two signals must
be time aligned (copy synthesis is); the longer one is cut to the shorter. The mel-cepstral
distortion of vocoder papers (SPTK mel-cepstra) lives with the other listening metrics in
wavenet.metrics.listening.
"""

import math

import torch

from wavenet.model.features import MelConfig, log_mel

ANALYSIS = MelConfig(n_mels=80)  # 1024-sample windows, 256-sample hop
DB_PER_NEPER = 20.0 / math.log(10.0)  # natural-log magnitude -> dB


def log_mel_distance(reference: torch.Tensor, test: torch.Tensor, sample_rate: int) -> float:
    """RMS difference in dB of two aligned (time,) float signals' log-mel magnitude spectra.

    Raises ValueError for signals that are not (time,) or shorter than one n_fft frame.
    """
    if reference.dim() != 1 or test.dim() != 1:
        raise ValueError(
            f"expected two (time,) signals, got {tuple(reference.shape)} and {tuple(test.shape)}"
        )
    n = min(len(reference), len(test))
    if n < ANALYSIS.n_fft:
        raise ValueError(
            f"signals of {n} samples are shorter than one {ANALYSIS.n_fft}-sample frame"
        )
    ref = log_mel(reference[:n], sample_rate, ANALYSIS)
    out = log_mel(test[:n], sample_rate, ANALYSIS)
    return float(DB_PER_NEPER * (ref - out).pow(2).mean().sqrt())
