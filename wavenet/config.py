"""Dataclass schemas of the tools' settings: the single source of every default.

`wavenet-train`'s YAML files (wavenet/conf) hold only what differs from these and are merged onto
`Config` by Hydra, so an unknown key or a wrong type fails at composition, before any work starts;
`wavenet-generate` and `wavenet-evaluate` merge key=value arguments onto theirs. The entry points
(wavenet.cli) convert to these dataclasses once, which runs the `__post_init__` range checks; the
rest of the package only sees plain typed objects and never imports Hydra.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wavenet.data.layouts import LAYOUTS
from wavenet.errors import check_float, check_int
from wavenet.model.config import WaveNetConfig
from wavenet.sampling.paths import IMPLS

PROJECT_DIR = Path(__file__).resolve().parent.parent


# What an installed wheel carries in the package (pyproject.toml maps the checkout's folders in):
# the Hydra groups (conf/ -> wavenet/conf) and what the defaults read of data/ (-> wavenet/shipped:
# the demo speech, the shipped models). A checkout, installed editable or not, reads its own.
_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else PROJECT_DIR / "conf"
DATA_DIR = _PACKAGE / "shipped" if (_PACKAGE / "shipped").is_dir() else PROJECT_DIR / "data"
PRETRAINED = DATA_DIR / "pretrained" / "asterisk4-small.pt"
MISSING = "???"  # OmegaConf's mark of a required value
MAX_SAMPLE_RATE = 384_000
MAX_SECONDS = 86_400.0  # one day; the wav format's 4 GiB limit is checked against the rate
MAX_BATCH = 4096  # files generated at once (each is an open file while it is written)


@dataclass
class DatasetConfig:
    """Where a dataset is and how to read it (`data.*` of every tool)."""

    root: str = MISSING  # folder of wav/flac/ogg files (recursive) or with a metadata.csv
    # auto (detected), folder, metadata (metadata.csv: file,speaker,...), ljspeech, vctk
    layout: str = "auto"
    trim_db: float | None = None  # trim edge frames quieter than this (dB below the peak)
    cache_dir: str | None = None  # decoded-audio cache (default ~/.cache/wavenet)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(
                f"data.layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}"
            )
        if self.trim_db is not None:
            check_float("data.trim_db", self.trim_db, -200, 0)
        for name in ("root", "cache_dir"):
            if getattr(self, name) == "":
                raise ValueError(f"data.{name} is empty; give a directory")


@dataclass
class DataConfig(DatasetConfig):
    """The training data (`data.*` of wavenet-train): the dataset, its rate, crops and split."""

    sample_rate: int = 16000
    crop: int = 4000  # predicted samples per training crop, on top of the receptive field
    val_fraction: float = 0.1  # share of files held out for validation (split by file)
    val_crops: int = 32  # validation crops evaluated at each validation
    # Pre-emphasis coefficient: the model learns y[t] = x[t] - a * x[t-1] (0.85 in LPCNet), and
    # generation undoes it, so 8-bit noise lies under the speech spectrum; 0 = off. Kept in the
    # checkpoint: generation and evaluation follow it.
    preemphasis: float = 0.0
    workers: int = 0  # processes decoding the dataset into its store; 0 = every core

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("data.preemphasis", self.preemphasis, 0, 0.99)
        check_int("data.workers", self.workers, 0, 4096)
        check_int("data.sample_rate", self.sample_rate, 1, MAX_SAMPLE_RATE)
        check_int("data.crop", self.crop, 1, 2**24)
        check_int("data.val_crops", self.val_crops, 1, 2**16)
        check_float("data.val_fraction", self.val_fraction, 0, 1)
        if self.val_fraction == 1:
            raise ValueError("data.val_fraction must be in [0, 1), got 1.0: nothing to train on")


@dataclass
class TrainConfig:
    max_steps: int = 20000
    # Also stop after this many minutes of training (across resumes; validation and checkpoints
    # count), with the cosine schedule laid over time instead of steps; 0 = by max_steps only.
    max_minutes: float = 0.0
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200  # linear warmup, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.1
    lr_schedule: str = "cosine"  # after warmup: cosine (to lr * min_lr_ratio at max_steps) or
    # inverse_sqrt (lr * sqrt(warmup_steps / step), floored at lr * min_lr_ratio)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    # Noise in the past the network reads (LPCNet's): each crop's input codes moved by up to
    # +-L μ-law codes, L uniform in [0, input_noise] per crop, while the target stays the clean
    # signal, so training sees a past as imperfect as generation's. 0 = off; categorical only.
    input_noise: float = 0.0
    # Crops per optimizer step: batch_size x accumulate (micro-batches) x processes (torchrun).
    accumulate: int = 1
    # EMA of the weights, used for validation, best.pt, samples and the checkpoint's `model`
    # (so wavenet-generate uses it) unless ema_eval=false; decay 0 turns it off.
    ema_decay: float = 0.999
    ema_eval: bool = True
    device: str = "auto"  # auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu or cuda
    # bf16: bfloat16 autocast of forward and loss (weights stay fp32); auto: bf16 where the
    # device runs it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), else fp32
    precision: str = "fp32"
    compile: bool = False  # torch.compile the model for the training step
    log_every: int = 10
    val_every: int = 500  # validation, checkpoint and a generated sample every this many steps
    # last.pt is also written every checkpoint_every steps or checkpoint_minutes of wall-clock
    # time, whichever comes first (0 turns either off), so a crash loses little work.
    checkpoint_every: int = 100
    checkpoint_minutes: float = 0.5
    max_bad_steps: int = 10  # stop after this many non-finite losses/gradients in a row
    sample_seconds: float = 1.0  # length of the sample generated at each validation; 0 disables
    # The temperature of the validation samples, saved in the checkpoints as the one
    # wavenet-generate draws at unless told otherwise (0.6 for the vocoders: docs/conditioning.md).
    sample_temperature: float = 1.0
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    resume: str = "auto"  # auto: continue from the run dir's last checkpoint; never; or a path
    # A fresh run starts from this checkpoint's weights (the same model; fine-tuning): step 0,
    # a new optimizer and schedule. A resumed run continues from its own checkpoint instead.
    init: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        ints = {
            "max_steps": (1, 2**40),
            "batch_size": (1, 2**16),
            "log_every": (1, 2**40),
            "val_every": (1, 2**40),
            "max_bad_steps": (1, 2**20),
            "accumulate": (1, 2**16),
            "warmup_steps": (0, 2**40),
            "threads": (0, 4096),
            "checkpoint_every": (0, 2**40),
            "seed": (0, 2**63 - 1),
        }
        for name, (low, high) in ints.items():
            check_int(f"train.{name}", getattr(self, name), low, high)
        floats = {
            "lr": (0, 1e30, True),
            "weight_decay": (0, 1e3, False),
            "min_lr_ratio": (0, 1, False),
            "grad_clip": (0, 1e12, False),
            "input_noise": (0, 64, False),
            "ema_decay": (0, 1, False),
            "checkpoint_minutes": (0, 1e6, False),
            "max_minutes": (0, 1e7, False),
            "sample_seconds": (0, 3600, False),
            "sample_temperature": (0, 1e3, False),
        }
        for name, (low, high, low_open) in floats.items():
            check_float(f"train.{name}", getattr(self, name), low, high, low_open)
        if self.ema_decay == 1:
            raise ValueError(
                "train.ema_decay must be in [0, 1), got 1.0: the average would never move"
            )
        if self.resume == "":
            raise ValueError("train.resume is empty: give auto, never or a checkpoint path")
        if self.init == "":
            raise ValueError("train.init is empty: give a checkpoint path or leave it unset")
        choices = {
            "lr_schedule": ("cosine", "inverse_sqrt"),
            "device": ("auto", "cpu", "cuda"),
            "precision": ("fp32", "bf16", "auto"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"train.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )


@dataclass
class Config:
    name: str = "default"  # experiment name, part of the run directory
    logger: str = "none"  # also log to TensorBoard (run dir/tensorboard) with `tensorboard`
    model: WaveNetConfig = field(default_factory=WaveNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.logger not in ("none", "tensorboard"):
            raise ValueError(f"logger must be none or tensorboard, got {self.logger!r}")
        if self.train.input_noise and self.model.output != "categorical":
            raise ValueError(
                f"train.input_noise is in μ-law codes: it needs model.output=categorical, "
                f"got {self.model.output}"
            )


@dataclass
class GenerateConfig:
    # A .pt file written by wavenet-train; by default the model shipped in data/pretrained.
    checkpoint: str = str(PRETRAINED)
    seconds: float = 2.0  # length of each generated file
    batch: int = 1  # number of files generated at once
    # Sampling temperature (0 is greedy); unset: the checkpoint's own (its run's
    # train.sample_temperature, or export's: 0.8 for the shipped vocoder), else 1.0.
    temperature: float | None = None
    # Probability floor of each draw (categorical outputs; LPCNet's 0.002): each class's
    # probability less it, clipped at 0, renormalised; unset: the checkpoint's own, else 0.
    floor: float | None = None
    # Vocoders: sharpen voiced frames' draws, the exponent 1 + sharpen * max(0, g - 1/3) on the
    # distribution, g the frame's voicing from its mel (LPCNet: 1.5); unset: the checkpoint's
    # own, else 0 (none).
    sharpen: float | None = None
    seed: int = 0
    prime: str | None = None  # wav/flac file whose samples start every output
    prime_seconds: float = 1.0  # length of the prime's end that is used (and kept in the output)
    # Speaker-conditioned checkpoints: one name for every file, or a list, one per file
    # (speaker=[a,b]; batch defaults to its length).
    speaker: Any = None
    # Mel-conditioned checkpoints (vocoders): the log-mel to synthesise, from an audio file (copy
    # synthesis) or a saved .npy/.pt tensor (n_mels, frames) or (batch, n_mels, frames), see
    # wavenet/features.py. The output is as long as the mel; `seconds` is not used.
    mel_from: str | None = None
    out: str = "generated"  # output folder
    impl: str = "auto"  # sampler path: auto (the fastest here) or one of sampling.paths.IMPLS
    # Where the model runs: auto (the CPU where the compiled sampler runs, faster than the CUDA
    # graph at batch 1 and 16 as measured, docs/speed.md; else CUDA where there is one; CUDA
    # for impl=cuda-graph), cpu, or cuda / cuda:N.
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    progress: bool = True

    def __post_init__(self) -> None:
        check_float("seconds", self.seconds, 0, MAX_SECONDS, low_open=True)
        check_int("batch", self.batch, 1, MAX_BATCH)
        if self.temperature is not None:
            check_float("temperature", self.temperature, 0, 1e3)
        if self.floor is not None:  # its bound by the checkpoint's classes is checked there
            check_float("floor", self.floor, 0, 0.5)
        if self.sharpen is not None:
            check_float("sharpen", self.sharpen, 0, 10)
        check_float("prime_seconds", self.prime_seconds, 0, MAX_SECONDS, low_open=True)
        check_int("threads", self.threads, 0, 4096)
        check_int("seed", self.seed, 0, 2**63 - 1)
        for name in ("checkpoint", "out", "prime", "mel_from"):
            if getattr(self, name) == "":
                raise ValueError(f"{name}= is empty; give a path or leave the argument out")
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {self.impl!r}")
        device = str(self.device)
        if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d{1,3}", device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if device == "cpu" and self.impl == "cuda-graph":
            raise ValueError("impl=cuda-graph runs on a CUDA device, not device=cpu")
        if isinstance(self.speaker, list | tuple):
            self.speaker = [str(name) for name in self.speaker]
            if not self.speaker:
                raise ValueError("speaker=[] names no speaker")
            if self.batch == 1:
                self.batch = len(self.speaker)
            elif self.batch != len(self.speaker):
                raise ValueError(
                    f"speaker lists {len(self.speaker)} names but batch="
                    f"{self.batch}; give one name per file"
                )
            check_int("batch (the speaker list's length)", self.batch, 1, MAX_BATCH)
        elif self.speaker is not None:
            self.speaker = str(self.speaker)

    @property
    def speakers(self) -> list[str] | None:
        """One speaker name per generated file, or None."""
        if self.speaker is None:
            return None
        return self.speaker if isinstance(self.speaker, list) else [self.speaker] * self.batch


@dataclass
class EvaluateConfig:
    """wavenet-evaluate's arguments."""

    checkpoint: str = MISSING  # a .pt file written by wavenet-train
    data: DatasetConfig = field(default_factory=DatasetConfig)
    batch: int = 8  # chunks scored at once
    chunk: int = 65536  # predicted positions per chunk (plus the receptive field of context)
    json_out: str | None = None  # also write the JSON result to this file
    progress: bool = True
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        check_int("batch", self.batch, 1, 4096)
        check_int("chunk", self.chunk, 1, 2**24)
        check_int("threads", self.threads, 0, 4096)
        for name in ("checkpoint", "json_out"):
            if getattr(self, name) == "":
                raise ValueError(f"{name}= is empty; give a path or leave the argument out")


def model_config(name: str) -> WaveNetConfig:
    """The architecture of `model=NAME` (wavenet/conf/model/NAME.yaml over WaveNetConfig's
    defaults: wavenet, small, tiny, ...), checked."""
    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"model {name!r}: no {path}; choose from {choices}")
    return WaveNetConfig(**(yaml.safe_load(path.read_text()) or {}))
