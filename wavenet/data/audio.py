"""One audio file in, (time,) float32 mono out: reading, downmixing, resampling, trimming, and the
16-bit PCM the dataset store keeps."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from wavenet.errors import DataError, check_regular_file, one_line

PCM16_SCALE = 32768  # a 16-bit sample v stands for v / 32768, as soundfile reads PCM_16
# soundfile subtypes whose samples are integers (FLAC files report PCM_16, PCM_24, PCM_S8).
INTEGER_SUBTYPES = ("PCM_", "ALAC_", "ULAW", "ALAW", "DPCM_", "DWVW_")


def read_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read one file as (time,) float32 mono in [-1, 1] at sample_rate.

    Channels are averaged; other sample rates are resampled. Raises DataError(f"{path}: ...")
    when the file is unreadable or not audio, has zero samples, or has NaN/inf samples.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    check_regular_file(path)  # a FIFO or device would block or never end
    try:
        with sf.SoundFile(str(path)) as file:
            data = file.read(dtype="float32", always_2d=True)
            file_rate, subtype = file.samplerate, file.subtype
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise DataError(f"{path}: cannot read audio ({one_line(e)})") from e
    if data.shape[0] == 0:
        raise DataError(f"{path}: no audio samples")
    audio = torch.from_numpy(data)  # (time, channels)
    # Integer samples (PCM, FLAC, ALAC, A-law, μ-law) are finite by construction: the check,
    # a pass over every sample, is for float and lossy-coded files.
    if not subtype.startswith(INTEGER_SUBTYPES) and not torch.isfinite(audio).all():
        raise DataError(f"{path}: contains NaN or infinite samples")
    audio = audio[:, 0] if audio.shape[1] == 1 else audio.mean(dim=1)
    if file_rate != sample_rate:
        audio = resampler(int(file_rate), sample_rate)(audio)
    # Float files may exceed full scale and resampling can overshoot slightly; μ-law encoding
    # maps anything beyond ±1 outside [0, classes), so clip here once.
    return audio.clamp_(-1.0, 1.0).contiguous()


@functools.lru_cache(maxsize=8)
def resampler(file_rate: int, sample_rate: int) -> torchaudio.transforms.Resample:
    """torchaudio's windowed-sinc resampler from file_rate to sample_rate, its kernel computed
    once (in float64, kept as float32): a set of thousands of files shares a rate or two, and
    building the kernel was half of resampling a file of a few seconds."""
    return torchaudio.transforms.Resample(file_rate, sample_rate)


def trim_silence(audio: torch.Tensor, threshold_db: float, frame: int = 256) -> torch.Tensor:
    """Drop leading/trailing frames whose peak is below threshold_db relative to the clip's peak.

    audio: (time,) float. Returns a (time',) view of audio; frames are `frame` samples long,
    so up to frame-1 quiet samples may remain at each edge. All-silent input gives (0,).
    """
    if audio.dim() != 1:
        raise ValueError(f"audio must be 1-D (time,), got shape {tuple(audio.shape)}")
    if frame < 1:
        raise ValueError(f"frame must be >= 1, got {frame}")
    if threshold_db > 0:
        raise ValueError(
            f"threshold_db is relative to the peak, so must be <= 0, got {threshold_db}"
        )
    magnitude = audio.abs()
    peak = magnitude.max() if audio.numel() else audio.new_zeros(())
    if peak <= 0:
        return audio[:0]
    n_frames = math.ceil(audio.numel() / frame)
    padded = torch.nn.functional.pad(magnitude, (0, n_frames * frame - audio.numel()))
    frame_peaks = padded.view(n_frames, frame).amax(dim=1)
    loud = torch.nonzero(frame_peaks >= peak * 10.0 ** (threshold_db / 20.0)).flatten()
    start = int(loud[0]) * frame
    end = min((int(loud[-1]) + 1) * frame, audio.numel())
    return audio[start:end]


def to_pcm16(audio: torch.Tensor) -> np.ndarray:
    """(time,) float in [-1, 1] -> (time,) int16: round(x * 32768), clipped to 16 bits.

    Lossless for audio read from 16-bit files at their own rate (every v / 32768 is exact in
    float32); otherwise within half a 16-bit step, as wavenet.mulaw.encode_linear16 rounds.
    """
    scaled = torch.round(audio.float() * PCM16_SCALE).clamp_(-PCM16_SCALE, PCM16_SCALE - 1)
    return scaled.to(torch.int16).numpy()


def from_pcm16(pcm: np.ndarray) -> torch.Tensor:
    """int16 array of any shape -> float32 tensor of the same shape, v / 32768 (exact)."""
    return torch.from_numpy(np.asarray(pcm, dtype=np.float32) / np.float32(PCM16_SCALE))
