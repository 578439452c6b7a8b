"""Small builders shared by tests: test tones and audio files, tiny models and checkpoints,
run directories with metrics and their plots."""

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from matplotlib.image import imread

from wavenet import CachedSampler, WaveNet, checkpoint
from wavenet.model.features import MelConfig
from wavenet.model.network import WaveNetConfig

SR = 16000


def sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """A float32 tone of `seconds` at `sr`."""
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio(path: Path, audio: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    """Write `audio` ((time,) or (time, channels)) to `path`, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, subtype=subtype)
    return path


def metadata_rows(root: Path) -> list[dict[str, str]]:
    """The rows of root/metadata.csv as dicts."""
    with open(root / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ conditioned tiny models

COND_HOP = 16
COND_MEL = MelConfig(
    n_mels=10, n_fft=64, win_length=64, hop_length=COND_HOP, channels=12, context=2, upsample=[4, 4]
)


def conditioned_model(speaker: bool = True, mel: bool = True, seed: int = 0, **arch) -> WaveNet:
    """A two-block, kernel-3 WaveNet (receptive field 121) with 3 speakers and/or COND_MEL."""
    torch.manual_seed(seed)
    arch = {
        "blocks": 2,
        "layers_per_block": 5,
        "kernel_size": 3,
        "residual_channels": 8,
        "gate_channels": 16,
        "skip_channels": 16,
        **arch,
    }
    config = WaveNetConfig(
        **arch, speaker_channels=6 if speaker else 0, mel=COND_MEL if mel else MelConfig()
    )
    model = WaveNet(config, speakers=3 if speaker else 0).eval()
    # Fresh conditioning weights are small; make them matter so a wrong index shows up.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def conditioned_inputs(batch: int, frames: int, seed: int = 1):
    """Random classes, speaker ids and log-mel frames for `frames * COND_HOP` samples."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, frames * COND_HOP), generator=g)
    speaker = torch.randint(0, 3, (batch,), generator=g)
    mel = torch.randn(batch, COND_MEL.n_mels, frames, generator=g) * 2 - 5
    return x, speaker, mel


def stepwise_logits(
    model: WaveNet,
    x: torch.Tensor,
    prime_len: int,
    speaker: torch.Tensor | None = None,
    mel: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits for positions prime_len..T-1 from the cached sampler, (batch, classes, T-prime)."""
    sampler = CachedSampler(model)
    prime = x[:, :prime_len] if prime_len else None
    state, logits = sampler.start(x.shape[0], prime, speaker, mel)
    out = [logits]
    for t in range(prime_len + 1, x.shape[1]):
        out.append(sampler.step(state, x[:, t - 1]))
    return torch.stack(out, dim=2)


# ---------------------------------------------------------------------- runs and their plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(
    run: Path, steps: int = 100, val_every: int = 20, wall: bool = False, speed: float = 1.0
) -> Path:
    """A run directory with a metrics.jsonl in wavenet-train's format (optionally wall_s)."""
    run.mkdir(parents=True)
    lines = []
    for step in range(5, steps + 1, 5):
        record = {
            "step": step,
            "train_bits": 5 + 3 * math.exp(-step * speed / 40),
            "lr": 1e-3,
            "samples_per_s": 1e4,
        }
        if wall:
            record["wall_s"] = 0.7 * step
        if step % val_every == 0:
            record["val_bits"] = record["train_bits"] + 0.1
            record["bigram_val_bits"] = 5.2
        lines.append(json.dumps(record))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def read_png(path: Path) -> np.ndarray:
    """The pixels of a PNG of a sensible size with something drawn on it."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)  # (height, width, channels) floats in [0, 1]
    height, width = pixels.shape[:2]
    assert 300 <= height <= 2000 and 500 <= width <= 3000, pixels.shape
    assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    return pixels


# ----------------------------------------------------------------- tiny unconditioned models

# conf/model/tiny.yaml; receptive field 64
TINY_ARCH = dict(
    blocks=1,
    layers_per_block=6,
    kernel_size=2,
    residual_channels=16,
    gate_channels=32,
    skip_channels=32,
)


def random_model(config: dict, dtype: torch.dtype = torch.float32) -> WaveNet:
    """An untrained WaveNet of `config` (seed 0), its weights scaled up 3x, in eval mode."""
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig(**config)).to(dtype).eval()
    with torch.no_grad():  # sharper than the initial weights, so every input sample matters
        for p in model.parameters():
            p.mul_(3)
    return model


def save_model_checkpoint(path: Path, model: WaveNet, step: int = 0) -> Path:
    """Save `model` as a wavenet checkpoint at 16 kHz that the tools can read."""
    checkpoint.save(
        path,
        {
            "model": model.state_dict(),
            "model_config": asdict(model.config),
            "sample_rate": 16000,
            "classes": model.config.classes,
            "step": step,
        },
    )
    return path


# ------------------------------------------------------------------------ tiny training runs

# wavenet-train overrides for a run of seconds: the tiny model on 100-sample crops, validation
# only at the end (2 crops), a metrics line every step, no samples, one thread.
TINY_TRAIN = [
    "model=tiny",
    "data.crop=100",
    "data.val_crops=2",
    "train.val_every=1000",
    "train.log_every=1",
    "train.sample_seconds=0",
    "train.checkpoint_minutes=0",
    "train.threads=1",
    "train.progress=false",
]


def last_checkpoint(run_dir: Path) -> dict:
    """The run's checkpoints/last.pt, loaded."""
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")


def assert_weights_close(a: dict, b: dict, atol: float = 1e-5) -> None:
    """Two state dicts hold the same tensors, each within atol (rtol 1e-4)."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)
