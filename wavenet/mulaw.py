"""μ-law companding and quantization: waveform in [-1, 1] <-> class indices in [0, classes)."""

import torch
import torchaudio.functional as AF

DEFAULT_CLASSES = 256


def silence_class(classes: int = DEFAULT_CLASSES) -> int:
    """The class index that encodes 0.0 (silence)."""
    return classes // 2


def encode(audio: torch.Tensor, classes: int = DEFAULT_CLASSES) -> torch.Tensor:
    """Compand and quantize a waveform.

    audio: float tensor of any shape, values in [-1, 1].
    Returns int64 class indices of the same shape, in [0, classes).
    """
    if not audio.is_floating_point():
        raise ValueError(f"mu-law encode expects a float waveform, got dtype {audio.dtype}")
    if classes < 2:
        raise ValueError(f"mu-law classes must be >= 2, got {classes}")
    if audio.numel() and not torch.isfinite(audio).all():
        raise ValueError("mu-law encode got non-finite samples (NaN or inf)")
    # Values a hair outside [-1, 1] (resampling overshoot) are clipped rather than wrapped.
    return AF.mu_law_encoding(audio.clamp(-1.0, 1.0), classes).long()


def decode(indices: torch.Tensor, classes: int = DEFAULT_CLASSES) -> torch.Tensor:
    """Inverse of `encode`: int class indices of any shape -> float32 waveform in [-1, 1]."""
    if indices.is_floating_point():
        raise ValueError(f"mu-law decode expects integer class indices, got dtype {indices.dtype}")
    if indices.numel() and (indices.min() < 0 or indices.max() >= classes):
        raise ValueError(
            f"mu-law class indices must lie in [0, {classes}), "
            f"got range [{int(indices.min())}, {int(indices.max())}]"
        )
    return AF.mu_law_decoding(indices.long(), classes).float()


def preemphasis(audio: torch.Tensor, coef: float) -> torch.Tensor:
    """y[t] = x[t] - coef * x[t-1] along the last axis (x[-1] = 0); coef 0 returns `audio`.

    A model of pre-emphasised audio has its 8-bit quantisation noise, flat across frequency,
    tilted back down with the speech by `Deemphasis` at generation, so the noise lies under the
    speech spectrum instead of above its high end (LPCNet's trick, coef 0.85).
    """
    return AF.preemphasis(audio, coef) if coef else audio


class Deemphasis:
    """The inverse of `preemphasis`, y[t] = x[t] + coef * y[t-1], applied chunk by chunk.

    Call it on consecutive (batch, n) chunks of one stream: the filter's memory (each row's
    last output) carries across calls, so chunked output equals one pass over the whole.
    """

    def __init__(self, coef: float, batch: int = 1):
        self.coef = coef
        self.last = torch.zeros(batch)

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        """(batch, n) float -> (batch, n) float, clipped to [-1, 1]."""
        if not self.coef or chunk.shape[-1] == 0:
            return chunk
        # The zero-input response of the previous chunk's last output decays as coef ** k.
        decay = self.coef ** torch.arange(1, chunk.shape[-1] + 1, dtype=chunk.dtype)
        out = AF.deemphasis(chunk, self.coef) + self.last.to(chunk)[:, None] * decay
        self.last = out[:, -1]
        return out.clamp(-1.0, 1.0)
