"""What a training run saves so it can stop at any moment and resume exactly.

`TrainState` is everything that changes while training (weights, EMA, optimizer, schedule, crop
generator, global RNG, step, best validation figure) and turns into / comes back from a
checkpoint's training keys. `StopSignals` turns SIGINT/SIGTERM into a stop between steps,
`CheckpointSchedule` says when last.pt is due, and `truncate_metrics` drops the metrics a resumed
run will log again.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from wavenet.data.dataset import CropSampler
from wavenet.errors import CheckpointError, one_line
from wavenet.files import atomic_write
from wavenet.model.network import WaveNet
from wavenet.training.ema import EMA

log = logging.getLogger("wavenet.train")  # the trainer's logger


@dataclass
class TrainState:
    """The mutable state of a run. `ema` is None when the average is off (or on ranks > 0).

    With `ema_eval`, validation, best.pt, samples and a checkpoint's `model` use the average
    (`eval_model`); the raw weights are then saved as `train_model`.
    """

    model: WaveNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    crops: CropSampler
    ema: EMA | None
    ema_eval: bool
    step: int = 0
    best: float = math.inf

    @property
    def eval_model(self) -> WaveNet:
        return self.ema.module if self.ema is not None and self.ema_eval else self.model

    def state_dict(self) -> dict:
        """The checkpoint keys of the training state, as plain module state dicts (never DDP's
        or torch.compile's wrappers), so wavenet-generate and wavenet-evaluate read `model` as
        it is. With the EMA on and ema_eval, `model` is the EMA and `train_model` the raw
        weights; otherwise `model` is raw and `ema` holds the average."""
        state = {
            "model": self.eval_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "crops": self.crops.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "best_val_bits": None if math.isinf(self.best) else self.best,
        }
        if self.ema is not None:
            if self.eval_model is self.model:
                state["ema"] = self.ema.state_dict()
            else:
                state["train_model"] = self.model.state_dict()
                state["ema"] = {"updates": self.ema.updates}
        return state

    def load_state_dict(self, ckpt: dict, ema_decay: float) -> None:
        """Continue from a checkpoint written by state_dict (a run with or without an EMA).

        A run that had no EMA so far starts its average from the resumed weights (`ema_decay`).
        """
        try:
            self._load(ckpt, ema_decay)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            # Weights were checked by checkpoint.load; this is the optimizer, schedule or RNG.
            raise CheckpointError(
                f"checkpoint at step {ckpt.get('step')}: cannot resume its "
                f"training state ({one_line(e, 200)})"
            ) from e

    def start_from(self, weights: dict, ema_decay: float) -> None:
        """Step 0 from another run's (checked) weights: the model and its average start there;
        optimizer, schedule and crops stay fresh."""
        self.model.load_state_dict(weights)
        if self.ema is not None:
            self.ema = EMA(self.model, ema_decay)

    def _load(self, ckpt: dict, ema_decay: float) -> None:
        self.model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.crops.load_state_dict(ckpt["crops"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if self.ema is not None:
            if ckpt.get("ema"):
                weights = ckpt["model"] if "train_model" in ckpt else ckpt["ema"]["weights"]
                self.ema.load_state_dict({"weights": weights, "updates": ckpt["ema"]["updates"]})
            else:
                self.ema = EMA(self.model, ema_decay)
        self.step, self.best = ckpt["step"], ckpt.get("best_val_bits") or math.inf


class StopSignals:
    """While active, SIGINT and SIGTERM set `received` instead of stopping the process at once.

    The loop checks `received` at the end of each step, so it saves a checkpoint and exits
    between steps, never in the middle of one or of a checkpoint write. A second SIGINT raises
    KeyboardInterrupt as usual, for when the user will not wait. The previous handlers are
    restored on exit. Outside the main thread (where Python cannot set handlers) it does nothing.

    A job scheduler's preemption signal (SIGUSR1/SIGUSR2 with a handler installed, as submitit
    does for SLURM and its local executor) stops the loop the same way; on exit, with last.pt
    saved, the signal is raised again for the scheduler's own handler, which requeues the job:
    the requeued job resumes from last.pt.
    """

    PREEMPTION = (signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s received: stopping after this step", signal.Signals(signum).name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
            for signum in self.PREEMPTION:
                if callable(signal.getsignal(signum)):  # a scheduler's handler, not the default
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self.received in self.PREEMPTION and self.received in self._previous:
            signal.raise_signal(self.received)  # the scheduler's handler: requeue


class WallClock:
    """Seconds a run has trained, across resumes: the figure restored from its checkpoint plus
    this process's time since. Calling it reads it."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self.before, self.started = 0.0, clock()

    def resume(self, seconds: float) -> None:
        self.before, self.started = seconds, self.clock()

    def __call__(self) -> float:
        return self.before + self.clock() - self.started


class CheckpointSchedule:
    """When last.pt is due: every `every` steps or `minutes` of wall-clock time since the last
    save, whichever comes first; 0 turns either trigger off."""

    def __init__(self, every: int, minutes: float, clock=time.monotonic):
        self.every, self.seconds, self.clock = every, 60.0 * minutes, clock
        self.last_time = clock()

    def due(self, step: int) -> bool:
        return bool(
            (self.every and step % self.every == 0)
            or (self.seconds and self.clock() - self.last_time >= self.seconds)
        )

    def saved(self) -> None:
        self.last_time = self.clock()


def truncate_metrics(path: Path, step: int) -> None:
    """Keep metrics.jsonl records of steps <= `step` (a resumed run logs the later ones again)
    and drop lines a killed process left unreadable. Rewritten atomically, only if needed."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass
    if kept != lines:
        atomic_write(path, "".join(f"{line}\n" for line in kept).encode())
