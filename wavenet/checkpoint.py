"""Self-describing, atomic checkpoints.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
`torch.load(weights_only=True)`: no code in a checkpoint file ever runs. It carries the model
architecture, sample rate and μ-law classes next to the weights, so generation needs nothing else.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from wavenet.model import WaveNet, WaveNetConfig

FORMAT = "wavenet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; str() is one line naming the file and the problem."""


def save(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (+ format tag and version) to `path` atomically.

    The bytes go to a temporary file in the same directory, are flushed to disk, and are renamed
    over `path` in one step: a crash leaves either the old checkpoint or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint written by `save`. Raises CheckpointError (one line)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle with code in it, not a torch file, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable wavenet checkpoint ({reason[:200]})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a wavenet checkpoint")
    if not isinstance(ckpt.get("version"), int) or ckpt["version"] > VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('version')} is newer "
                              f"than this wavenet reads ({VERSION}); upgrade wavenet")
    for key in ("model", "model_config", "sample_rate", "step"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    return ckpt


def build_model(ckpt: dict[str, Any]) -> WaveNet:
    """The WaveNet described by a loaded checkpoint, with its weights, in eval mode."""
    model = WaveNet(WaveNetConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()
