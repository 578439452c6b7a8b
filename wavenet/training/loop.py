"""The training loop: crops of real speech in, checkpoints, metrics and samples out.

`main` is the Hydra entry point (`wavenet-train`); it turns the composed config into typed
dataclasses and calls `train`, which knows nothing of Hydra beyond the run directory it is given.
"""

import copy
import hashlib
import json
import logging
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import hydra
import soundfile as sf
import torch
import torch.nn.functional as F
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from wavenet import checkpoint, mulaw
from wavenet.config import Config, check_known_keys, register
from wavenet.data.dataset import (
    Batch,
    Conditioning,
    CropSampler,
    Dataset,
    Utterance,
    load_dataset,
    speaker_hours,
    split_by_file,
    validation_batch,
)
from wavenet.data.layouts import detect_layout
from wavenet.errors import DataError, one_line
from wavenet.metrics import plots
from wavenet.metrics.baseline import bigram_bits_per_sample
from wavenet.model.features import log_mel, usable_samples
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.sampling.cached import generate
from wavenet.training import distributed
from wavenet.training.ema import EMA
from wavenet.training.state import (
    CheckpointSchedule,
    Interrupted,
    StopSignals,
    TrainState,
    truncate_metrics,
)

log = logging.getLogger("wavenet.train")
LN2 = math.log(2.0)


def bits_per_sample(model: WaveNet, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy in bits of the samples that have a full receptive field of context.

    batch: crops (batch, receptive_field + n) int64 and their conditioning -> scalar tensor
    (differentiable).
    """
    r = distributed.unwrap(model).receptive_field
    logits = model(batch.audio, batch.speaker, batch.mel)[:, :, r:]
    return F.cross_entropy(logits.float(), batch.audio[:, r:]) / LN2


@torch.no_grad()
def evaluate(model: WaveNet, crops: Batch, batch_size: int) -> float:
    """Validation bits/sample over fixed crops (n, length), weighted by predicted samples, in
    fp32; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total = 0.0
    for batch in crops.split(batch_size):
        total += bits_per_sample(model, batch).item() * len(batch)
    model.train(was_training)
    return total / len(crops)


def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float,
              schedule: str = "cosine") -> float:
    """Linear warmup to 1 over `warmup` steps, then "cosine" decay to `min_ratio` at max_steps,
    or "inverse_sqrt": sqrt(warmup / (step + 1)), never below `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "inverse_sqrt":
        return max(min_ratio, math.sqrt(max(1, warmup) / (step + 1)))
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def write_wav(path: Path, indices: torch.Tensor, sample_rate: int, classes: int) -> None:
    """(time,) μ-law class indices -> 16-bit PCM wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, mulaw.decode(indices, classes).numpy(), sample_rate, subtype="PCM_16")


def tensorboard_writer(log_dir: Path):
    """A TensorBoard SummaryWriter into log_dir (`logger=tensorboard`); one-line error if the
    tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError("logger=tensorboard needs the tensorboard package: "
                         "pip install 'wavenet[tensorboard]'") from e
    return SummaryWriter(log_dir=str(log_dir))


class TrainingStopped(RuntimeError):
    """Training cannot go on (non-finite losses in a row); str() is one line."""


def write_data_report(path: Path, root: str, layout: str, dataset: Dataset,
                      train_set: list[Utterance], val_set: list[Utterance]) -> None:
    """data_report.json: the layout, hours per speaker, the files used (train / validation) and
    the files skipped, with why."""
    rate = dataset.sample_rate
    report = {"root": str(root), "layout": layout, "sample_rate": rate,
              "hours": round(sum(speaker_hours(dataset.utterances, rate).values()), 5),
              "hours_per_speaker": {
                  "train": {k: round(v, 5) for k, v in speaker_hours(train_set, rate).items()},
                  "validation": {k: round(v, 5) for k, v in speaker_hours(val_set, rate).items()},
              },
              "train": [u.name for u in train_set],
              "validation": [u.name for u in val_set],
              "skipped": [{"file": name, "reason": reason} for name, reason in dataset.skipped]}
    checkpoint.atomic_write(path, (json.dumps(report, indent=1) + "\n").encode())


def speaker_table(mc: WaveNetConfig, dataset: Dataset, root: str, layout: str) -> list[str]:
    """The speaker names of a speaker-conditioned model (id = position, sorted); [] when
    model.speaker_channels is 0. DataError when some file has no speaker label."""
    if not mc.speaker_channels:
        return []
    unlabelled = [u.name for u in dataset.utterances if not u.speaker]
    if unlabelled:
        raise DataError(f"{root}: model.speaker_channels={mc.speaker_channels} needs a speaker "
                        f"for every file, but layout {layout} gives none for "
                        f"{len(unlabelled)} files (first: {unlabelled[0]}); use a metadata.csv "
                        f"with a speaker column or VCTK folders, or model.speaker_channels=0")
    return sorted({u.speaker for u in dataset.utterances})


def write_sample(model: WaveNet, cfg: Config, run_dir: Path, step: int, val_batch: Batch,
                 val_file: Utterance, board=None) -> None:
    """samples/step_N.wav: `train.sample_seconds` generated on the CPU, and step_N.png: its
    log-mel spectrogram beside real audio's (also to TensorBoard when `board` is given).

    A speaker model speaks as the first validation crop's speaker; a vocoder re-synthesises the
    start of `val_file` from its log-mel (the real audio drawn beside it is that start).
    """
    tc, dc, mc = cfg.train, cfg.data, cfg.model
    n: int | None = int(tc.sample_seconds * dc.sample_rate)
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    first = val_batch.split(1)[0].to("cpu")
    real = mulaw.decode(first.audio[0], mc.classes)
    mel = None
    if mc.mel.enabled:
        real = val_file.audio[:n]
        real = real[:max(usable_samples(len(real), mc.mel), mc.mel.hop_length)]
        mel = log_mel(real, dc.sample_rate, mc.mel)[None]
        n = None  # as long as the mel
    gen = torch.Generator().manual_seed(tc.seed + step)
    audio = torch.cat(list(generate(model, n, generator=gen, temperature=tc.sample_temperature,
                                    speaker=first.speaker, mel=mel)), dim=1)
    write_wav(run_dir / "samples" / f"step_{step:07d}.wav", audio[0], dc.sample_rate, mc.classes)
    fake = mulaw.decode(audio[0], mc.classes)
    if board is not None:
        board.add_audio("sample", fake[None], step, dc.sample_rate)
    try:
        figure = plots.spectrograms_figure(real, fake, dc.sample_rate)
    except ValueError as e:  # a sample too short to draw is no reason to stop
        log.warning("no spectrogram at step %d: %s", step, e)
        return
    plots.save_figure(figure, run_dir / "samples" / f"step_{step:07d}.png")
    if board is not None:
        board.add_figure("spectrograms", figure, step)


def train(cfg: Config, run_dir: Path, resolved: dict) -> dict:
    """Train per `cfg`, writing into `run_dir`; returns the final metrics record.

    run_dir receives data_report.json, metrics.jsonl, checkpoints/{last,best}.pt and
    samples/step_*.wav. `resolved` is the full resolved config, stored in every checkpoint.
    Raises Interrupted after SIGINT/SIGTERM (last.pt saved), TrainingStopped after
    `max_bad_steps` non-finite steps in a row, and ValueError/OSError for bad data, config or
    checkpoints, each with a one-line message.

    Under torchrun every process calls this: they join one process group (see
    wavenet.distributed), train their own share of each batch with DistributedDataParallel, and
    only rank 0 logs, validates, samples and writes into run_dir (its run_dir is the one used).
    """
    world = distributed.setup(cfg.train.device)
    try:
        record = _train(cfg, run_dir, resolved, world)
        # Every rank arrives before any leaves the group: a rank tearing down while another
        # still finishes its last step was seen to abort the other at exit (SIGABRT).
        world.barrier()
        return record
    finally:
        distributed.teardown(world)


def autocast(device: torch.device, precision: str):
    """The forward pass's autocast context: bfloat16 for precision="bf16", off for "fp32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def weights_digest(model: nn.Module) -> str:
    """sha256 of every parameter's bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _train(cfg: Config, run_dir: Path, resolved: dict, world: distributed.World) -> dict:
    tc, dc, mc = cfg.train, cfg.data, cfg.model
    if not world.main:  # one voice: the other ranks only report problems
        log.setLevel(logging.WARNING)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    device = world.device
    precision = tc.precision
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bfloat16: training in fp32")
        precision = "fp32"

    r = mc.receptive_field
    # Rank 0 decodes the data first and fills the cache; the other ranks then read the cache.
    if not world.main:
        world.barrier()
    layout = detect_layout(dc.root) if dc.layout == "auto" else dc.layout
    dataset = load_dataset(dc.root, dc.sample_rate, dc.trim_db, min_samples=r + 1,
                           cache_dir=dc.cache_dir, progress=tc.progress and world.main,
                           layout=layout)
    if world.main:
        world.barrier()
    for name, reason in dataset.skipped:
        log.warning("skipped %s: %s", name, reason)
    train_set, val_set = split_by_file(dataset.utterances, dc.val_fraction)
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_data_report(run_dir / "data_report.json", dc.root, layout, dataset, train_set,
                          val_set)
    if not val_set:
        val_set = train_set  # val_fraction=0: report fit to the training data
    speakers = speaker_table(mc, dataset, dc.root, layout)
    model = WaveNet(mc, speakers=len(speakers))
    cond = Conditioning({name: i for i, name in enumerate(speakers)} if speakers else None,
                        mc.mel, dc.sample_rate)
    # With a mel, crops are whole hops: the crop is rounded up to the next multiple.
    length = math.ceil((r + dc.crop) / cond.hop) * cond.hop
    crops = CropSampler(train_set, length, mc.classes, seed=tc.seed, rank=world.rank,
                        world_size=world.size, cond=cond)
    val_batch = validation_batch(val_set, length, dc.val_crops, mc.classes, cond).to(device)
    log.info("data: %d files used (%d train, %d validation), %d skipped, %.1f s of audio; "
             "see data_report.json",
             len(dataset.utterances), len(train_set), len(val_set), len(dataset.skipped),
             sum(len(u.audio) for u in dataset.utterances) / dc.sample_rate)
    bigram = math.nan
    if world.main:
        bigram = bigram_bits_per_sample(
            [mulaw.encode(u.audio, mc.classes) for u in train_set],
            [mulaw.encode(u.audio, mc.classes) for u in val_set], mc.classes)
    log.info("model: %.2f M parameters, receptive field %d samples (%.1f ms); "
             "bigram baseline %.3f bits/sample on validation",
             sum(p.numel() for p in model.parameters()) / 1e6, r, 1000 * r / dc.sample_rate, bigram)
    if speakers:
        log.info("speaker conditioning: %d speakers (%s)", len(speakers), ", ".join(speakers))
    if mc.mel.enabled:
        log.info("mel conditioning: %d bands, hop %d, upsampling %s to %d channels",
                 mc.mel.n_mels, mc.mel.hop_length, mc.mel.upsample, mc.mel.channels)
    log.info("scale: %d process(es) on %s, %s, %d crops per step (batch %d x accumulate %d x "
             "%d), EMA %s%s", world.size, device, precision,
             tc.batch_size * tc.accumulate * world.size, tc.batch_size, tc.accumulate,
             world.size, tc.ema_decay or "off", ", compiled" if tc.compile else "")

    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio, tc.lr_schedule))
    # Only rank 0 validates and saves, so only rank 0 keeps the average.
    state = TrainState(model, optimizer, scheduler, crops,
                       EMA(model, tc.ema_decay) if tc.ema_decay and world.main else None,
                       tc.ema_eval)

    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    wall_before, started = 0.0, time.perf_counter()

    def wall_s() -> float:
        """Seconds this run has trained, across resumes (for the wall-time learning curve)."""
        return wall_before + time.perf_counter() - started

    resume_path = {"auto": last_path, "never": None}.get(tc.resume, Path(tc.resume))
    # Rank 0 reads the checkpoint and hands it to the others, so only rank 0 needs the run dir.
    found: object = None
    if world.main:
        for tmp in checkpoint.remove_temporaries(ckpt_dir):
            log.info("removed %s, left by an interrupted checkpoint write", tmp.name)
        try:
            if resume_path is not None and (resume_path.exists() or tc.resume != "auto"):
                found = checkpoint.load(resume_path)
        except (ValueError, OSError) as e:
            found = e
    found = world.broadcast(found)
    if isinstance(found, Exception):
        raise found
    if found is not None:
        ckpt: dict = found
        saved = asdict(WaveNetConfig(**ckpt["model_config"]))
        if saved != asdict(mc) or checkpoint.speakers(ckpt) != speakers:
            raise checkpoint.CheckpointError(
                f"{resume_path}: model {saved} with speakers {checkpoint.speakers(ckpt)} differs "
                f"from the configured {asdict(mc)} with {speakers}; use another hydra.run.dir "
                f"or train.resume=never")
        state.load_state_dict(ckpt, tc.ema_decay)
        wall_before = ckpt.get("wall_s", 0.0)
        log.info("resumed from %s at step %d", resume_path, state.step)
        del found, ckpt
    else:
        log.info("starting from step 0")
    if world.main:
        truncate_metrics(run_dir / "metrics.jsonl", state.step)

    # The module the training step runs: DDP (gradient all-reduce) and/or compiled.
    ddp = None
    net: nn.Module = model
    if world.size > 1:
        ddp = net = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    if tc.compile:
        net = torch.compile(net)

    saved_step = state.step if resume_path == last_path and state.step else None

    def save(path: Path) -> None:
        checkpoint.save(path, {
            "model_config": asdict(mc), "sample_rate": dc.sample_rate, "classes": mc.classes,
            "speakers": speakers, "config": resolved, **state.state_dict(), "wall_s": wall_s()})

    def save_last() -> None:
        nonlocal saved_step
        save(last_path)
        saved_step = state.step
        schedule.saved()

    schedule = CheckpointSchedule(tc.checkpoint_every, tc.checkpoint_minutes)
    metrics = (run_dir / "metrics.jsonl").open("a") if world.main else nullcontext()
    board = (tensorboard_writer(run_dir / "tensorboard")
             if cfg.logger == "tensorboard" and world.main else None)
    model.train()
    bar = tqdm(total=tc.max_steps, initial=state.step, unit="step",
               disable=not (tc.progress and world.main), dynamic_ncols=True, file=sys.stderr)
    record: dict = {}
    bad = 0  # non-finite steps in a row
    seen, clock = 0, time.perf_counter()
    with StopSignals() as signals, metrics, bar:
        while state.step < tc.max_steps:
            # One draw per optimizer step, split into micro-batches: batch b x accumulate k
            # trains on exactly the crops of batch k*b x accumulate 1, in the same order.
            micro = crops.draw(tc.batch_size * tc.accumulate).to(device, non_blocking=True)
            micro = micro.split(tc.batch_size)
            optimizer.zero_grad(set_to_none=True)
            problem, bits = None, 0.0
            for i, batch in enumerate(micro):
                # Gradients are all-reduced once, on the last micro-batch.
                sync = ddp.no_sync() if ddp is not None and i < len(micro) - 1 else nullcontext()
                with sync:
                    with autocast(device, precision):
                        loss = bits_per_sample(net, batch)
                    finite = bool(torch.isfinite(loss))
                    if not world.all_true(finite):  # every rank skips, or none does
                        problem = f"loss {loss.item()}" if not finite else "loss on another rank"
                        break
                    (loss / len(micro)).backward()
                bits += loss.item() / len(micro)
            if problem is None:
                # max_norm=inf measures without clipping (the scale factor is clamped to 1).
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or math.inf)
                problem = None if torch.isfinite(norm) else f"gradient norm {norm.item()}"
            if problem is not None:
                # Skip the update: weights, optimizer and schedule stay at the last good step.
                bad += 1
                log.warning("step %d: non-finite %s, update skipped (%d in a row)",
                            state.step + 1, problem, bad)
                if bad >= tc.max_bad_steps:
                    if world.main:
                        save_last()
                    raise TrainingStopped(
                        f"{bad} steps in a row with a non-finite loss or gradient (last: "
                        f"{problem}) after step {state.step}: stopped; the last good state is in "
                        f"{last_path}; try a lower train.lr")
            else:
                bad = 0
                optimizer.step()
                scheduler.step()
                if state.ema is not None:
                    state.ema.update(model)
                state.step += 1
                step = state.step  # the step just taken, for the figures and files below
                seen += world.size * sum(len(b) for b in micro) * (length - r)
                bar.update(1)
                bar.set_postfix(bits=f"{bits:.3f}")

                validate = step % tc.val_every == 0 or step == tc.max_steps
                if step % tc.log_every == 0 or validate:
                    bits = world.mean(bits)  # over every rank's crops
                    now = time.perf_counter()
                    record = {"step": step, "wall_s": round(wall_s(), 1),
                              "train_bits": round(bits, 5),
                              "lr": scheduler.get_last_lr()[0],
                              "samples_per_s": round(seen / (now - clock), 1)}
                    if validate and world.main:
                        val_bits = evaluate(state.eval_model, val_batch, tc.batch_size)
                        record["val_bits"] = round(val_bits, 5)
                        record["bigram_val_bits"] = round(bigram, 5)
                        bar.write(f"step {step}: train {bits:.3f}, validation "
                                  f"{record['val_bits']:.3f} bits/sample (bigram {bigram:.3f})")
                    if world.main:
                        metrics.write(json.dumps(record) + "\n")
                        metrics.flush()
                        if board is not None:
                            for key, value in record.items():
                                if key not in ("step", "wall_s"):
                                    board.add_scalar(key, value, step)
                    seen, clock = 0, time.perf_counter()
                if validate and world.main:
                    if record["val_bits"] < state.best:
                        state.best = record["val_bits"]
                        save(ckpt_dir / "best.pt")
                    save_last()
                    if tc.sample_seconds:
                        write_sample(state.eval_model, cfg, run_dir, step, val_batch, val_set[0],
                                     board)
                        model.train()
                    plots.plot_learning_curves([run_dir], run_dir / "learning_curves.png")
                    clock = time.perf_counter()  # keep validation out of the throughput figure
                elif world.main and schedule.due(step):
                    save_last()
            # Every rank stops at the same step, whichever of them got the signal.
            if world.any_true(signals.received is not None):
                signum = signals.received or signal.SIGTERM
                if world.main and saved_step != state.step:
                    save_last()
                log.info("stopped by %s at step %d; resume with the same command",
                         signal.Signals(signum).name, state.step)
                raise Interrupted(signum, state.step, last_path)
    if board is not None:
        board.close()
    if world.size > 1:
        digests = world.gather(weights_digest(model))
        if len(set(digests)) > 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")
        log.info("all %d ranks hold identical weights (sha256 %s)", world.size, digests[0])
    log.info("done: step %d, best validation %.3f bits/sample; checkpoints in %s",
             state.step, state.best, ckpt_dir)
    return record


register()


@hydra.main(config_path="pkg://wavenet.conf", config_name="config", version_base="1.3")
def hydra_main(dcfg: DictConfig) -> None:
    """The Hydra task: typed config in, training run out. User errors print one line."""
    from hydra.core.hydra_config import HydraConfig

    try:
        check_known_keys(dcfg)
        cfg: Config = OmegaConf.to_object(dcfg)
        resolved = OmegaConf.to_container(dcfg, resolve=True)
        train(cfg, Path(HydraConfig.get().runtime.output_dir), resolved)
    except Interrupted as e:  # SIGINT: 130 like any Ctrl-C'd tool; SIGTERM: a requested stop
        print(f"wavenet-train: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before training started, or a second one
        print("wavenet-train: interrupted", file=sys.stderr)
        sys.exit(130)
    except TrainingStopped as e:
        print(f"wavenet-train: error: {hydra_one_line(e)}", file=sys.stderr)
        sys.exit(1)
    except (ValueError, OSError) as e:  # DataError, CheckpointError and bad values
        print(f"wavenet-train: error: {hydra_one_line(e)}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """wavenet-train: Hydra's command line, with config errors as one line and exit status 2.

    Hydra prints a composition error (unknown key, wrong type, missing option) over several
    lines and exits 1; with HYDRA_FULL_ERROR set it raises instead, so we can print one line.
    Set HYDRA_FULL_ERROR=1 yourself to get Hydra's full traceback.
    """
    if os.environ.get("HYDRA_FULL_ERROR"):
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        cause = f" ({hydra_one_line(e.__cause__)})" if e.__cause__ else ""
        print(f"wavenet-train: error: {hydra_one_line(e)}{cause}", file=sys.stderr)
        sys.exit(2)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]


def hydra_one_line(e: BaseException) -> str:
    """An exception as one line, for user-facing errors, without OmegaConf's and Hydra's
    diagnostic tails (full_key, object_type, the config search path)."""
    text = one_line(e)
    for tail in (" full_key:", " Config search path:"):
        text = text.split(tail)[0]
    return text or type(e).__name__
