"""How audio becomes the integer codes a model reads and predicts, and back.

μ-law companding and quantization (waveform in [-1, 1] <-> class indices in [0, classes)) for
categorical models; 16-bit linear PCM (code = sample + 32768, in [0, 65536)) for the continuous
output distributions (wavenet.model.output). `Codec` names one of the two.
"""

import functools
from dataclasses import dataclass

import torch
import torchaudio.functional as AF

DEFAULT_CLASSES = 256
LINEAR16_LEVELS = 2**16  # 16-bit PCM: sample values -32768 .. 32767


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


def encode_linear16(audio: torch.Tensor) -> torch.Tensor:
    """float audio in [-1, 1] -> int64 codes in [0, 65536): round(x * 32768) + 32768, clipped.

    The 16-bit sample v = code - 32768 stands for x = v / 32768, as soundfile reads PCM_16.
    """
    if not audio.is_floating_point():
        raise ValueError(f"linear16 encode expects a float waveform, got dtype {audio.dtype}")
    if audio.numel() and not torch.isfinite(audio).all():
        raise ValueError("linear16 encode got non-finite samples (NaN or inf)")
    half = LINEAR16_LEVELS // 2
    return (torch.round(audio.double() * half).clamp(-half, half - 1) + half).long()


def decode_linear16(codes: torch.Tensor) -> torch.Tensor:
    """Inverse of `encode_linear16`: int codes -> float32 audio (code - 32768) / 32768."""
    if codes.is_floating_point():
        raise ValueError(f"linear16 decode expects integer codes, got dtype {codes.dtype}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= LINEAR16_LEVELS):
        raise ValueError(
            f"linear16 codes must lie in [0, {LINEAR16_LEVELS}), "
            f"got range [{int(codes.min())}, {int(codes.max())}]"
        )
    half = LINEAR16_LEVELS // 2
    return ((codes.long() - half).double() / half).float()


@dataclass(frozen=True)
class Codec:
    """Audio <-> integer codes: kind "mulaw" (`classes` μ-law classes) or "linear16" (16-bit
    PCM, 65536 levels). Crops, primes, evaluation and generated audio all go through it."""

    kind: str = "mulaw"
    classes: int = DEFAULT_CLASSES

    def __post_init__(self) -> None:
        if self.kind not in ("mulaw", "linear16"):
            raise ValueError(f"codec kind must be 'mulaw' or 'linear16', got {self.kind!r}")
        if self.kind == "linear16" and self.classes != LINEAR16_LEVELS:
            raise ValueError(f"a linear16 codec has {LINEAR16_LEVELS} levels, got {self.classes}")

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """float audio in [-1, 1] -> int64 codes in [0, classes)."""
        return encode(audio, self.classes) if self.kind == "mulaw" else encode_linear16(audio)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """int codes -> float32 audio in [-1, 1]."""
        return decode(codes, self.classes) if self.kind == "mulaw" else decode_linear16(codes)

    @property
    def silence(self) -> int:
        """The code of 0.0."""
        return silence_class(self.classes)

    @property
    def dtype(self) -> torch.dtype:
        """The compact integer type that holds every code (uint8 for 256 classes)."""
        return torch.uint8 if self.classes <= 256 else torch.int32


LINEAR16 = Codec("linear16", LINEAR16_LEVELS)


def as_codec(codec: "Codec | int") -> Codec:
    """A Codec, or an int read as that many μ-law classes."""
    return codec if isinstance(codec, Codec) else Codec("mulaw", int(codec))


@functools.cache
def log2_widths(codec: Codec) -> torch.Tensor:
    """(classes,) float64: log2 of how many 16-bit values each code stands for.

    A model of codes spreads each code's probability evenly over its 16-bit values, so its NLL
    in bits per 16-bit sample is its NLL per code plus log2 of the code's width (0 for linear16).
    Codes that no 16-bit value maps to count as width 1.
    """
    if codec.kind == "linear16":
        return torch.zeros(codec.classes, dtype=torch.float64)
    # float32, as audio is read: every v / 32768 is exact in it.
    grid = torch.arange(-LINEAR16_LEVELS // 2, LINEAR16_LEVELS // 2, dtype=torch.float32)
    counts = torch.bincount(codec.encode(grid / (LINEAR16_LEVELS // 2)), minlength=codec.classes)
    return counts.clamp(min=1).double().log2()


def mean_log2_width(codec: Codec, codes: torch.Tensor) -> float:
    """The mean of `log2_widths` over `codes`: what turns a mean NLL in bits per code into bits
    per 16-bit sample (0 for 16-bit codes)."""
    return float(log2_widths(codec)[codes.long().cpu()].mean()) if codes.numel() else 0.0
