"""What a training run writes into its directory, next to the code that decides when.

    run_dir/
      data_report.json     the files used (train / validation) and skipped, hours per speaker
      metrics.jsonl        one JSON object per logged step (`RunOutputs.log`)
      checkpoints/         last.pt and best.pt (`RunOutputs.save_last`, `save_best`)
      samples/             step_N.wav generated at each validation and step_N.png, its log-mel
                           spectrogram beside a real clip's (`write_sample`)
      learning_curves.png  redrawn at every validation
      report.html          the run's page (wavenet.metrics.report), rewritten at each validation
      tensorboard/         with `logger=tensorboard`

Only rank 0 writes; the other ranks of a torchrun job get a `RunOutputs` that writes nothing.
"""

from __future__ import annotations

import copy
import io
import json
import logging
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import soundfile as sf
import torch
from tqdm import tqdm

from wavenet import checkpoint, mulaw
from wavenet.config import Config
from wavenet.data.dataset import Batch, Dataset, Utterance, speaker_hours
from wavenet.errors import one_line
from wavenet.files import atomic_write, remove_temporaries
from wavenet.metrics import listening, plots, report
from wavenet.model.features import utterance_mel
from wavenet.model.network import WaveNet
from wavenet.training.state import CheckpointSchedule, TrainState, WallClock, truncate_metrics

log = logging.getLogger("wavenet.train")


def data_report(
    root: str, layout: str, dataset: Dataset, train_set: list[Utterance], val_set: list[Utterance]
) -> dict:
    """What data_report.json holds: the layout, hours per speaker, the files used (train /
    validation) and the files skipped, with why."""
    rate = dataset.sample_rate
    hours = lambda utts: {k: round(v, 5) for k, v in speaker_hours(utts, rate).items()}  # noqa: E731
    report_ = {
        "root": str(root),
        "layout": layout,
        "sample_rate": rate,
        "hours": round(sum(speaker_hours(dataset.utterances, rate).values()), 5),
        "hours_per_speaker": {"train": hours(train_set), "validation": hours(val_set)},
        "train": [u.name for u in train_set],
        "validation": [u.name for u in val_set],
        "skipped": [{"file": name, "reason": reason} for name, reason in dataset.skipped],
    }
    return report_


def write_wav(path: Path, audio: torch.Tensor, sample_rate: int) -> None:
    """(time,) float audio in [-1, 1] -> 16-bit PCM wav, written atomically."""
    buffer = io.BytesIO()
    sf.write(buffer, audio.numpy(), sample_rate, subtype="PCM_16", format="WAV")
    atomic_write(path, buffer.getvalue(), durable=False)


def write_sample(
    model: WaveNet,
    cfg: Config,
    run_dir: Path,
    step: int,
    val_batch: Batch,
    val_file: Utterance,
    board=None,
) -> torch.Tensor:
    """samples/step_N.wav: `train.sample_seconds` generated on the CPU, and step_N.png: its
    log-mel spectrogram beside real audio's (also to TensorBoard when `board` is given).
    Returns the sample, (time,) float.

    A speaker model speaks as the first validation crop's speaker; a vocoder re-synthesises the
    start of `val_file` from its log-mel (that start is samples/source.wav, drawn beside it).
    """
    tc, dc, mc = cfg.train, cfg.data, cfg.model
    n: int | None = int(tc.sample_seconds * dc.sample_rate)
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    first = val_batch.split(1)[0].to("cpu")
    real = mulaw.Deemphasis(dc.preemphasis)(mc.codec.decode(first.audio))[0]
    mel = None
    if mc.mel.enabled:
        real, mel = utterance_mel(val_file.audio[:n], dc.sample_rate, mc.mel)
        mel, n = mel[None], None  # as long as the mel
        source = run_dir / "samples" / "source.wav"
        if not source.exists():
            write_wav(source, real, dc.sample_rate)
    # The sampler's compiled kernels are imported only by runs that write samples.
    from wavenet.sampling.cached import generate

    gen = torch.Generator().manual_seed(tc.seed + step)
    audio = torch.cat(
        list(
            generate(
                model,
                n,
                generator=gen,
                temperature=tc.sample_temperature,
                speaker=first.speaker,
                mel=mel,
            )
        ),
        dim=1,
    )
    fake = mulaw.Deemphasis(dc.preemphasis)(mc.codec.decode(audio))[0]
    write_wav(run_dir / "samples" / f"step_{step:07d}.wav", fake, dc.sample_rate)
    if board is not None:
        board.add_audio("sample", fake[None], step, dc.sample_rate)
    try:
        figure = plots.spectrograms_figure(real, fake, dc.sample_rate)
    except ValueError as e:  # a sample too short to draw is no reason to stop
        log.warning("no spectrogram at step %d: %s", step, e)
        return fake
    plots.save_figure(figure, run_dir / "samples" / f"step_{step:07d}.png")
    if board is not None:
        board.add_figure("spectrograms", figure, step)
    return fake


def listening_scores(audio: torch.Tensor, sample_rate: int) -> dict:
    """DNSMOS of a generated sample as metrics.jsonl keys (dnsmos_sig, _bak, _ovrl, _p808), when
    the `metrics` extra is installed; {} without it or for a clip it cannot score."""
    if not listening.available():
        return {}
    try:
        scores = listening.dnsmos(audio, sample_rate)
    except ValueError as e:  # too short, silent: no score is no reason to stop
        log.warning("no listening scores: %s", one_line(e))
        return {}
    return {f"dnsmos_{key}": round(value, 3) for key, value in scores.items()}


def tensorboard_writer(log_dir: Path):
    """A TensorBoard SummaryWriter into log_dir (`logger=tensorboard`); one-line error if the
    tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError(
            "logger=tensorboard needs the tensorboard package: pip install 'wavenet[tensorboard]'"
        ) from e
    return SummaryWriter(log_dir=str(log_dir))


def resume_path(cfg: Config, run_dir: Path) -> Path | None:
    """The checkpoint `train.resume` asks for: auto (checkpoints/last.pt, when it exists),
    never (None), or a path."""
    resume = cfg.train.resume
    if resume == "never":
        return None
    last = run_dir / "checkpoints" / "last.pt"
    if resume == "auto":
        return last if last.exists() else None
    return Path(resume)


def read_resume(cfg: Config, path: Path, speakers: list[str] | None = None) -> dict:
    """The checkpoint at `path`, checked for resuming a run of `cfg` (and `speakers`, when
    known). CheckpointError when it is unusable or another model's. The command line calls it
    before writing anything into the run dir, the loop again when it resumes."""
    ckpt = checkpoint.load(path, training=True)
    saved, mc = asdict(checkpoint.model_config(ckpt)), asdict(cfg.model)
    if saved != mc or (speakers is not None and checkpoint.speakers(ckpt) != speakers):
        raise checkpoint.CheckpointError(
            f"{path}: model {saved} with speakers {checkpoint.speakers(ckpt)} differs from "
            f"the configured {mc}"
            + (f" with {speakers}" if speakers is not None else "")
            + "; use another hydra.run.dir or train.resume=never"
        )
    return ckpt


def read_init(cfg: Config, path: Path, speakers: list[str] | None = None) -> dict:
    """The checkpoint `train.init` names, checked to start a run of `cfg` (and `speakers`, when
    known) from its weights: the same model, sample rate and pre-emphasis. CheckpointError
    (one line naming the file) otherwise."""
    ckpt = checkpoint.load(path)
    saved, mc = asdict(checkpoint.model_config(ckpt)), asdict(cfg.model)
    problems = []
    if saved != mc:
        changed = sorted(k for k in mc if saved.get(k) != mc[k])
        problems.append(
            "model " + ", ".join(f"{k}={saved.get(k)} (configured {mc[k]})" for k in changed)
        )
    if speakers is not None and checkpoint.speakers(ckpt) != speakers:
        problems.append(f"speakers {checkpoint.speakers(ckpt)} (the data's {speakers})")
    if ckpt["sample_rate"] != cfg.data.sample_rate:
        problems.append(f"sample_rate {ckpt['sample_rate']} (configured {cfg.data.sample_rate})")
    if checkpoint.preemphasis(ckpt) != cfg.data.preemphasis:
        problems.append(
            f"preemphasis {checkpoint.preemphasis(ckpt)} (configured {cfg.data.preemphasis})"
        )
    if problems:
        raise checkpoint.CheckpointError(
            f"{path}: cannot start train.init from it: " + "; ".join(problems)
        )
    return ckpt


class RunOutputs:
    """The run directory of one training run: checkpoints, metrics, samples, figures, report.

    A context manager: entering opens metrics.jsonl, the progress bar and TensorBoard; leaving
    closes them. `main` is False on ranks > 0, which then write nothing.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        resolved: dict,
        state: TrainState,
        speakers: list[str],
        main: bool = True,
        clock: WallClock | None = None,
    ):
        self.cfg, self.run_dir, self.resolved, self.state = cfg, run_dir, resolved, state
        self.speakers, self.main = speakers, main
        self.last = run_dir / "checkpoints" / "last.pt"
        self.schedule = CheckpointSchedule(cfg.train.checkpoint_every, cfg.train.checkpoint_minutes)
        self.saved_step: int | None = None  # the step last.pt holds, when known
        self.wall_s = clock or WallClock()  # seconds trained, across resumes
        self.record: dict = {}
        self._stack = ExitStack()
        self.metrics = None
        self.board = None
        self.bar = None

    # ----------------------------------------------------------------- resume
    def resume_path(self) -> Path | None:
        """The checkpoint `train.resume` asks for: auto (last.pt, when it exists), never, a path."""
        return resume_path(self.cfg, self.run_dir)

    def read_resume(self) -> dict | None:
        """Rank 0: clear temporaries a killed write left, then load the checkpoint to resume
        from (None to start afresh). CheckpointError when it is unusable or another model's."""
        for tmp in remove_temporaries(self.last.parent):
            log.info("removed %s, left by an interrupted checkpoint write", tmp.name)
        path = self.resume_path()
        return None if path is None else read_resume(self.cfg, path, self.speakers)

    def write_data_report(self, report_: dict) -> None:
        if self.main:
            atomic_write(
                self.run_dir / "data_report.json",
                (json.dumps(report_, indent=1) + "\n").encode(),
                durable=False,
            )

    def resumed(self, ckpt: dict | None, init: dict | None = None) -> None:
        """Note where this run starts: the wall time already trained, and drop metrics past it."""
        if ckpt is not None:
            self.wall_s.resume(ckpt.get("wall_s", 0.0))
            if self.resume_path() == self.last:
                self.saved_step = self.state.step
            log.info("resumed from %s at step %d", self.resume_path(), self.state.step)
        elif init is not None:
            log.info(
                "starting from step 0 with the weights of %s (step %d of its run)",
                self.cfg.train.init,
                init["step"],
            )
        else:
            log.info("starting from step 0")
        if not self.main:
            return
        metrics = self.run_dir / "metrics.jsonl"
        if ckpt is None and metrics.is_file() and metrics.stat().st_size:
            # A fresh start in a folder holding another run's records (its checkpoints gone,
            # or it died before the first): they are kept beside, not appended to or lost.
            kept = next(
                p for n in range(1, 10**6) if not (p := metrics.with_suffix(f".{n}.jsonl")).exists()
            )
            metrics.rename(kept)
            log.warning("%s holds an earlier run's records: kept as %s", metrics.name, kept.name)
        truncate_metrics(metrics, self.state.step)

    # ----------------------------------------------------------------- writing
    def __enter__(self) -> RunOutputs:
        tc = self.cfg.train
        if self.main:
            self.metrics = self._stack.enter_context((self.run_dir / "metrics.jsonl").open("a"))
            if self.cfg.logger == "tensorboard":
                self.board = tensorboard_writer(self.run_dir / "tensorboard")
                self._stack.callback(self.board.close)
        hide = not (tc.progress and self.main)
        if tc.max_minutes:  # the bar counts the budget's seconds; the step goes in its postfix
            budget = 60.0 * tc.max_minutes
            self.bar = self._stack.enter_context(
                tqdm(
                    total=budget,
                    initial=min(budget, self.wall_s()),
                    dynamic_ncols=True,
                    disable=hide,
                    bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of "
                    "train.max_minutes [{elapsed}<{remaining}{postfix}]",
                )
            )
        else:
            self.bar = self._stack.enter_context(
                tqdm(
                    total=tc.max_steps,
                    initial=self.state.step,
                    unit="step",
                    dynamic_ncols=True,
                    disable=hide,
                )
            )
        return self

    def advance(self, bits: float) -> None:
        """A step is done: move the bar (a step, or the seconds trained of train.max_minutes)
        and show its training bits."""
        if self.cfg.train.max_minutes:
            self.bar.update(min(self.bar.total, self.wall_s()) - self.bar.n)
            self.bar.set_postfix(step=self.state.step, bits=f"{bits:.3f}")
        else:
            self.bar.update(1)
            self.bar.set_postfix(bits=f"{bits:.3f}")

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def save(self, path: Path) -> None:
        mc, dc = self.cfg.model, self.cfg.data
        checkpoint.save(
            path,
            {
                "model_config": asdict(mc),
                "sample_rate": dc.sample_rate,
                "classes": mc.classes,
                "preemphasis": dc.preemphasis,
                "temperature": self.cfg.train.sample_temperature,
                "speakers": self.speakers,
                "config": self.resolved,
                **self.state.state_dict(),
                "wall_s": self.wall_s(),
            },
        )

    def save_last(self) -> None:
        if self.main:
            self.save(self.last)
            self.saved_step = self.state.step
            self.schedule.saved()

    def save_if_due(self) -> None:
        if self.schedule.due(self.state.step):
            self.save_last()

    def save_unsaved(self) -> None:
        """last.pt at the current step, unless it already holds it (a stop right after a save)."""
        if self.saved_step != self.state.step:
            self.save_last()

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl (and TensorBoard)."""
        self.record = record
        if not self.main:
            return
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.board is not None:
            for key, value in record.items():
                if key not in ("step", "wall_s"):
                    self.board.add_scalar(key, value, record["step"])

    def sample(self, val_batch: Batch, val_file: Utterance) -> dict:
        """At a validation: write the step's sample (train.sample_seconds; 0 = none) and return
        its listening scores for the step's record."""
        state = self.state
        if not (self.main and self.cfg.train.sample_seconds):
            return {}
        audio = write_sample(
            state.eval_model, self.cfg, self.run_dir, state.step, val_batch, val_file, self.board
        )
        state.model.train()
        return listening_scores(audio, self.cfg.data.sample_rate)

    def validated(self, val_bits: float) -> None:
        """After a validation: best.pt when it is the best so far, last.pt, the learning curves
        and the report."""
        if not self.main:
            return
        state = self.state
        if val_bits < state.best:
            state.best = val_bits
            self.save(self.run_dir / "checkpoints" / "best.pt")
        self.save_last()
        try:
            plots.plot_learning_curves([self.run_dir], self.run_dir / "learning_curves.png")
        except ValueError as e:  # metrics.jsonl edited by hand: no reason to stop training
            log.warning("no learning_curves.png at step %d: %s", state.step, one_line(e))
        self.write_report("running")

    def write_report(self, status: str) -> None:
        """report.html; a page that cannot be written is no reason to stop training."""
        if self.main:
            try:
                report.write_report(self.run_dir, status)
            except (ValueError, OSError) as e:
                log.warning("no report.html at step %d: %s", self.state.step, one_line(e))
