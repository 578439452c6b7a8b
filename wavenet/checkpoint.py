"""Self-describing, atomic checkpoints.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
`torch.load(weights_only=True)`: no code in a checkpoint file ever runs. It carries the model
architecture, sample rate and μ-law classes next to the weights, so generation needs nothing else.
"""

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from wavenet.config import MAX_SAMPLE_RATE
from wavenet.errors import (
    CheckpointError,
    CheckpointWriteError,
    check_float,
    check_int,
    check_regular_file,
    one_line,
)
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
        raise CheckpointWriteError(
            f"{path}: cannot write checkpoint ({one_line(e)}); the previous checkpoint is unchanged"
        ) from e


def load(
    path: str | Path, map_location: str | torch.device = "cpu", training: bool = False
) -> dict[str, Any]:
    """Read and check a checkpoint written by `save`, as untrusted data: the format, the keys
    and types of `model_config` and their bounds (WaveNetConfig's, which cap the size a file
    may ask for), the sample rate, the speaker table, every weight's name and shape against the
    model it builds, and finite weights. With `training`, also the keys a resumed run reads.

    Raises CheckpointError (one line naming the file); nothing is allocated for the model.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:  # a FIFO would block the read, a device never end
        check_regular_file(path)
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    try:
        with warnings.catch_warnings():  # torch warns over 2 lines before refusing a pickle
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle with code in it, not a torch file, ...
        raise CheckpointError(
            f"{path}: not a readable wavenet checkpoint ({one_line(e, 200)})"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a wavenet checkpoint")
    if (
        not isinstance(ckpt.get("version"), int)
        or isinstance(ckpt["version"], bool)
        or ckpt["version"] < 1
    ):
        raise CheckpointError(
            f"{path}: checkpoint format version {ckpt.get('version')!r} is "
            f"not a version this wavenet reads ({VERSION})"
        )
    if ckpt["version"] > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {ckpt.get('version')} is newer "
            f"than this wavenet reads ({VERSION}); upgrade wavenet"
        )
    for key in ("model", "model_config", "sample_rate", "step"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    try:
        check(ckpt, training)
    except ValueError as e:
        raise CheckpointError(f"{path}: {one_line(e, 300)}") from e
    return ckpt


# model_config keys: those every checkpoint has, and those added later (defaults when absent).
CONFIG_KEYS = (
    "blocks",
    "layers_per_block",
    "kernel_size",
    "residual_channels",
    "gate_channels",
    "skip_channels",
    "classes",
)
LATER_CONFIG_KEYS = ("speaker_channels", "mel", "output", "mixtures", "lpc_order")
MAX_SPEAKERS = 2**16


def model_config(ckpt: dict[str, Any]) -> WaveNetConfig:
    """The checked WaveNetConfig of a checkpoint's `model_config`; ValueError (one line)."""
    raw = ckpt["model_config"]
    if not isinstance(raw, dict):
        raise ValueError(f"model_config must be a mapping, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in CONFIG_KEYS + LATER_CONFIG_KEYS)
    missing = [k for k in CONFIG_KEYS if k not in raw]
    if unknown or missing:
        raise ValueError(f"model_config has unknown keys {unknown} and lacks {missing}")
    return WaveNetConfig(**raw)


def check(ckpt: dict[str, Any], training: bool = False) -> None:
    """ValueError (one line) unless a loaded checkpoint makes a usable model (see `load`)."""
    config = model_config(ckpt)
    check_int("sample_rate", ckpt["sample_rate"], 1, MAX_SAMPLE_RATE)
    check_int("step", ckpt["step"], 0, 2**62)
    if ckpt.get("classes", config.classes) != config.classes:
        raise ValueError(
            f"classes={ckpt['classes']!r} differs from model_config's {config.classes}"
        )
    names = ckpt.get("speakers") or []
    if (
        not isinstance(names, list | tuple)
        or len(names) > MAX_SPEAKERS
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(f"speakers must be a list of distinct names, got {repr(names)[:80]}")
    if bool(names) != (config.speaker_channels > 0):
        raise ValueError(
            f"{len(names)} speakers with model_config speaker_channels={config.speaker_channels}"
        )
    for key in ("wall_s", "best_val_bits"):
        if ckpt.get(key) is not None:
            check_float(key, ckpt[key], 0, 1e12)
    check_float("preemphasis", ckpt.get("preemphasis", 0.0), 0, 0.99)
    for name, (default, low, high) in sampling_bounds(config.classes).items():
        check_float(name, ckpt.get(name, default), low, high)
    if config.output != "categorical" and (ckpt.get("floor") or ckpt.get("sharpen")):
        raise ValueError(f"floor and sharpen apply to a categorical output, not {config.output}")
    with torch.device("meta"):  # shapes only: nothing is allocated
        skeleton = WaveNet(
            config, len(names), ckpt["sample_rate"], float(ckpt.get("preemphasis", 0.0))
        )
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    check_weights("model", ckpt["model"], shapes)
    if training:
        check_weights("train_model", ckpt.get("train_model", ckpt["model"]), shapes)
        for key in ("optimizer", "scheduler", "crops"):
            if not isinstance(ckpt.get(key), dict):
                raise ValueError(f"cannot resume: '{key}' is missing or not a mapping")
        if not isinstance(ckpt.get("torch_rng"), torch.Tensor):
            raise ValueError("cannot resume: 'torch_rng' is missing or not a tensor")
        ema = ckpt.get("ema")
        if ema is not None and not isinstance(ema, dict):
            raise ValueError("cannot resume: 'ema' is not a mapping")
        if ema and "train_model" not in ckpt:
            check_weights("ema weights", ema.get("weights"), shapes)


def check_weights(name: str, weights: object, shapes: dict[str, tuple[int, ...]]) -> None:
    """ValueError unless `weights` holds exactly the tensors of `shapes`, each of that shape,
    dense floating point and finite."""
    if not isinstance(weights, dict):
        raise ValueError(f"'{name}' must be a mapping of tensors, got {type(weights).__name__}")
    unknown = sorted(str(k) for k in weights if k not in shapes)
    missing = sorted(k for k in shapes if k not in weights)
    if unknown or missing:
        raise ValueError(
            f"'{name}' does not fit its model_config: unknown tensors "
            f"{unknown[:3]}, missing {missing[:3]}"
        )
    for key, shape in shapes.items():
        t = weights[key]
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise ValueError(f"'{name}' tensor {key} is not a dense tensor")
        if tuple(t.shape) != shape:
            raise ValueError(
                f"'{name}' tensor {key} has shape {tuple(t.shape)}, the model needs {shape}"
            )
        if not t.is_floating_point():
            raise ValueError(f"'{name}' tensor {key} is {t.dtype}, not floating point")
        if not torch.isfinite(t).all():
            raise ValueError(f"'{name}' tensor {key} holds NaN or infinite weights")


# What generation and evaluation read; `export` keeps only these (no optimizer, RNG, ...).
INFERENCE_KEYS = (
    "model",
    "model_config",
    "sample_rate",
    "classes",
    "preemphasis",
    "speakers",
    "temperature",
    "floor",
    "sharpen",
    "config",
    "step",
    "best_val_bits",
    "wall_s",
)


def sampling_bounds(classes: int) -> dict[str, tuple[float, float, float]]:
    """Each sampling setting a checkpoint may carry: (default, lowest, highest). temperature
    divides the logits (0 = greedy); floor is the probability floor of the categorical draw
    (below 1 / classes, so the top class survives it); sharpen is the strength of the
    voicing-dependent sharpening of a vocoder's draws (wavenet.model.envelope)."""
    return {
        "temperature": (1.0, 0.0, 1e3),
        "floor": (0.0, 0.0, 0.9 / classes),
        "sharpen": (0.0, 0.0, 10.0),
    }


def export(src: str | Path, dst: str | Path, **sampling: float | None) -> dict[str, Any]:
    """Write a slim copy of checkpoint `src` to `dst`: the inference keys only (the weights
    `wavenet-generate` uses, EMA when the run had it), a fraction of the size, with the
    sampling settings given (temperature=, floor=, sharpen=; see `sampling_bounds`) stored as
    its defaults. Returns it."""
    ckpt = load(src)
    slim = {k: ckpt[k] for k in INFERENCE_KEYS if k in ckpt}
    bounds = sampling_bounds(int(slim.get("classes") or 256))
    for name, value in sampling.items():
        if name not in bounds:
            raise ValueError(f"export: unknown sampling setting {name}")
        if value is not None:
            slim[name] = check_float(name, value, *bounds[name][1:])
    check(slim)
    save(dst, slim)
    return slim


def sampling(ckpt: dict[str, Any], **given: float | None) -> dict[str, float]:
    """The sampling settings to generate from a checkpoint with: each given one (not None),
    else the checkpoint's own (its run's `train.sample_temperature`, or export's), else the
    default (temperature 1, no floor, no sharpening)."""
    bounds = sampling_bounds(int(ckpt.get("classes") or 256))
    out = {}
    for name, (default, low, high) in bounds.items():
        value = given.get(name)
        out[name] = float(ckpt.get(name, default)) if value is None else float(value)
        check_float(name, out[name], low, high)
    config = ckpt.get("model_config") or {}
    kind = config.get("output", "categorical")
    if kind != "categorical" and (out["floor"] or out["sharpen"]):
        raise ValueError(f"floor= and sharpen= apply to a categorical output, not {kind}")
    if out["sharpen"] and not (config.get("mel") or {}).get("n_mels"):
        raise ValueError("sharpen= needs a mel-conditioned checkpoint (a vocoder): drop it")
    return out


def temperature(ckpt: dict[str, Any], given: float | None = None) -> float:
    """The temperature to sample a checkpoint at (see `sampling`)."""
    return sampling(ckpt, temperature=given)["temperature"]


def preemphasis(ckpt: dict[str, Any]) -> float:
    """The pre-emphasis the model's audio had in training (0.0: none; see wavenet.mulaw)."""
    return float(ckpt.get("preemphasis", 0.0))


def build_model(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> WaveNet:
    """The WaveNet described by a checkpoint from `load` (so checked), with its weights, in
    eval mode.

    Raises CheckpointError naming `path` when the config or the weights do not make a model.
    """
    try:
        model = WaveNet(
            model_config(ckpt), len(speakers(ckpt)), ckpt["sample_rate"], preemphasis(ckpt)
        )
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot build the model ({one_line(e, 200)})") from e
    return model.eval()


def speakers(ckpt: dict[str, Any]) -> list[str]:
    """The speaker table of a speaker-conditioned checkpoint (id = position); [] otherwise."""
    return list(ckpt.get("speakers") or [])
