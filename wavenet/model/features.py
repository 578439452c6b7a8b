"""Log-mel features: the local conditioning of a mel-conditioned WaveNet (a vocoder).

One convention everywhere (training crops, copy synthesis, saved mel files):

- magnitude (power 1) mel spectrogram from torchaudio, Slaney mel scale and normalisation (the
  convention of Tacotron 2 and HiFi-GAN), natural log of max(mel, 1e-5), so silence is
  `SILENCE` = log(1e-5) ~ -11.51;
- shape (n_mels, frames) for one utterance, (batch, n_mels, frames) for several;
- frame i describes samples [i * hop, (i + 1) * hop): the audio is cut to a whole number of
  hops, then reflect-padded by (n_fft - hop) / 2 on each side and framed without centring, so
  `frames = samples // hop` and each window is centred on its hop.

A file saved as `.npy` or `.pt` with that shape and scaling, at the checkpoint's sample rate,
hop and mel settings, can be vocoded (`wavenet-generate mel_from=FILE`).
"""

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from wavenet.errors import check_regular_file, one_line
from wavenet.model.config import MelConfig

SILENCE = math.log(1e-5)  # the log-mel value of silence; pads frames beyond an utterance
MEL_FILE_EXTENSIONS = (".npy", ".pt")
MAX_LOG_MEL = 100.0  # |log-mel| bound of a saved mel: e^100 is no magnitude of real audio


def mel_transform(cfg: MelConfig, sample_rate: int) -> torchaudio.transforms.MelSpectrogram:
    """The torchaudio transform behind `log_mel` (frames already padded: center=False)."""
    fmax = cfg.fmax if cfg.fmax is not None else sample_rate / 2
    if fmax > sample_rate / 2:
        raise ValueError(f"model.mel.fmax={fmax} is above half the sample rate ({sample_rate})")
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        f_min=cfg.fmin,
        f_max=fmax,
        n_mels=cfg.n_mels,
        power=1.0,
        center=False,
        norm="slaney",
        mel_scale="slaney",
    )


def usable_samples(samples: int, cfg: MelConfig) -> int:
    """The samples a mel of this audio describes: a whole number of hops."""
    return samples // cfg.hop_length * cfg.hop_length


def log_mel(audio: torch.Tensor, sample_rate: int, cfg: MelConfig) -> torch.Tensor:
    """(..., time) float audio -> (..., n_mels, time // hop) float32 log-mel (see module doc).

    Audio shorter than one hop gives zero frames.
    """
    if not cfg.enabled:
        raise ValueError("log_mel needs model.mel.n_mels > 0")
    audio = audio[..., : usable_samples(audio.shape[-1], cfg)].float()
    frames = audio.shape[-1] // cfg.hop_length
    if frames == 0:
        return audio.new_zeros(*audio.shape[:-1], cfg.n_mels, 0)
    left = (cfg.n_fft - cfg.hop_length) // 2
    right = cfg.n_fft - cfg.hop_length - left
    shape = audio.shape
    flat = audio.reshape(-1, 1, shape[-1])
    # Reflection needs a pad shorter than the signal; very short clips are zero-padded instead.
    mode = "reflect" if max(left, right) < shape[-1] else "constant"
    flat = F.pad(flat, (left, right), mode=mode)
    mel = mel_transform(cfg, sample_rate)(flat[:, 0])
    return torch.log(mel.clamp(min=1e-5)).reshape(*shape[:-1], cfg.n_mels, frames)


def utterance_mel(
    audio: torch.Tensor, sample_rate: int, cfg: MelConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(time,) audio -> (the audio cut to whole hops, its (n_mels, frames) log-mel): what a
    vocoder re-synthesises and the mel it hears. ValueError when shorter than one hop."""
    if audio.shape[-1] < cfg.hop_length:
        raise ValueError(
            f"{audio.shape[-1]} samples are shorter than one mel frame ({cfg.hop_length} samples)"
        )
    audio = audio[..., : usable_samples(audio.shape[-1], cfg)]
    return audio, log_mel(audio, sample_rate, cfg)


def pad_frames(mel: torch.Tensor, context: int) -> torch.Tensor:
    """(..., n_mels, frames) -> (..., n_mels, frames + 2 * context): `context` silence frames on
    each side, what the upsampler sees beyond the ends of an utterance."""
    return F.pad(mel, (context, context), value=SILENCE)


def load_mel(path: str | Path, cfg: MelConfig) -> torch.Tensor:
    """A saved log-mel (.npy of either byte order, or .pt) as (n_mels, frames) or
    (batch, n_mels, frames) float32.

    Raises ValueError (one line naming the file) when it cannot be read or has the wrong shape.
    """
    path = check_regular_file(path)  # a FIFO or device would block or never end
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
            if not array.dtype.isnative:  # e.g. big-endian '>f4', which torch does not take
                array = array.astype(array.dtype.newbyteorder("="))
            mel = torch.from_numpy(array)
        else:
            with warnings.catch_warnings():  # torch warns over 2 lines before refusing a pickle
                warnings.simplefilter("ignore")
                mel = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # wrong format, pickled objects, truncated file, ...
        reason = one_line(e)[:200]
        raise ValueError(f"{path}: cannot read a mel tensor ({reason})") from e
    if not isinstance(mel, torch.Tensor) or mel.dim() not in (2, 3) or not mel.is_floating_point():
        got = tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__
        raise ValueError(
            f"{path}: expected a float tensor (n_mels, frames) or "
            f"(batch, n_mels, frames), got {got}"
        )
    if mel.shape[-2] != cfg.n_mels:
        raise ValueError(
            f"{path}: has {mel.shape[-2]} mel bands (shape {tuple(mel.shape)}), "
            f"the checkpoint expects {cfg.n_mels} (shape (n_mels, frames))"
        )
    if mel.shape[-1] == 0 or mel.numel() == 0:
        raise ValueError(f"{path}: has no frames (shape {tuple(mel.shape)})")
    if not torch.isfinite(mel).all():
        raise ValueError(f"{path}: contains NaN or infinite values")
    if mel.abs().max() > MAX_LOG_MEL:
        raise ValueError(
            f"{path}: holds values up to {mel.abs().max().item():.3g}, not a "
            f"natural-log mel (silence is {SILENCE:.2f}; |values| <= {MAX_LOG_MEL})"
        )
    return mel.float()
