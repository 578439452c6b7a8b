"""Self-describing, atomic checkpoints.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
`torch.load(weights_only=True)`: no code in a checkpoint file ever runs. It carries the model
architecture, sample rate and μ-law classes next to the weights, so generation needs nothing else.
"""

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from wavenet.errors import one_line
from wavenet.model.network import WaveNet, WaveNetConfig

FORMAT = "wavenet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; str() is one line naming the file and the problem."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (disk full, no permission, ...); the previous file
    at that path is unchanged. str() is one line naming the file and the cause."""


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any moment leaves the old file or the new one.

    The bytes go to a temporary file in the same directory (`.<name>.<random>.tmp`), are flushed
    to disk, and are renamed over `path` in one step; the rename is then made durable too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` left in `directory`; returns them.

    Only call this when no other process is writing into `directory`.
    """
    found = sorted(Path(directory).glob(".*.tmp")) if Path(directory).is_dir() else []
    for tmp in found:
        tmp.unlink(missing_ok=True)
    return found


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


def build_model(ckpt: dict[str, Any]) -> WaveNet:
    """The WaveNet described by a loaded checkpoint, with its weights, in eval mode."""
    model = WaveNet(WaveNetConfig(**ckpt["model_config"]), speakers=len(speakers(ckpt)))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def speakers(ckpt: dict[str, Any]) -> list[str]:
    """The speaker table of a speaker-conditioned checkpoint (id = position); [] otherwise."""
    return list(ckpt.get("speakers") or [])


def speaker_ids(ckpt: dict[str, Any], names: list[str]) -> list[int]:
    """Names -> ids in the checkpoint's speaker table; ValueError (one line) listing the known
    speakers for a name that is not there, or for a checkpoint without speakers."""
    table = speakers(ckpt)
    if not table:
        raise ValueError("this checkpoint has no speaker conditioning; drop speaker=")
    for name in names:
        if name not in table:
            raise ValueError(f"unknown speaker {name!r}; this checkpoint knows "
                             f"{', '.join(table)}")
    return [table.index(name) for name in names]




def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask
