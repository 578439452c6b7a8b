"""Self-describing, atomic checkpoints.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
`torch.load(weights_only=True)`: no code in a checkpoint file ever runs. It carries the model
architecture, sample rate and μ-law classes next to the weights, so generation needs nothing else.
"""

import io
from pathlib import Path
from typing import Any

import torch

from wavenet.errors import CheckpointError, CheckpointWriteError, one_line
from wavenet.files import atomic_write
from wavenet.model.network import WaveNet, WaveNetConfig

FORMAT = "wavenet-checkpoint"
VERSION = 1


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (+ format tag and version) to `path` atomically (see `atomic_write`).

    Raises CheckpointWriteError naming the file and the cause (e.g. no space left on device);
    the checkpoint previously at `path`, if any, is then unchanged.
    """
    # Serialise in memory first: torch.save turns a failing file write into an opaque
    # RuntimeError, while our own write reports the OS error (errno and reason) as it is.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    try:
        atomic_write(path, buffer.getvalue())
    except OSError as e:
        raise CheckpointWriteError(f"{path}: cannot write checkpoint ({one_line(e)}); "
                                   "the previous checkpoint is unchanged") from e


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint written by `save`. Raises CheckpointError (one line)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle with code in it, not a torch file, ...
        raise CheckpointError(f"{path}: not a readable wavenet checkpoint "
                              f"({one_line(e, 200)})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a wavenet checkpoint")
    if not isinstance(ckpt.get("version"), int) or ckpt["version"] > VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('version')} is newer "
                              f"than this wavenet reads ({VERSION}); upgrade wavenet")
    for key in ("model", "model_config", "sample_rate", "step"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    return ckpt


# What generation and evaluation read; `export` keeps only these (no optimizer, RNG, ...).
INFERENCE_KEYS = ("model", "model_config", "sample_rate", "classes", "speakers", "config", "step",
                  "best_val_bits", "wall_s")


def export(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Write a slim copy of checkpoint `src` to `dst`: the inference keys only (the weights
    `wavenet-generate` uses, EMA when the run had it), a fraction of the size. Returns it."""
    ckpt = load(src)
    slim = {k: ckpt[k] for k in INFERENCE_KEYS if k in ckpt}
    save(dst, slim)
    return slim


def build_model(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> WaveNet:
    """The WaveNet described by a loaded checkpoint, with its weights, in eval mode.

    Raises CheckpointError naming `path` when the config or the weights do not make a model.
    """
    try:
        model = WaveNet(WaveNetConfig(**ckpt["model_config"]), speakers=len(speakers(ckpt)))
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot build the model ({one_line(e, 200)})") from e
    return model.eval()


def speakers(ckpt: dict[str, Any]) -> list[str]:
    """The speaker table of a speaker-conditioned checkpoint (id = position); [] otherwise."""
    return list(ckpt.get("speakers") or [])
