"""The training loop: crops of real speech in, checkpoints, metrics and samples out.

`train(cfg, run_dir, resolved)` reads top to bottom as named steps: build the data, build or
restore the state, then step, log, validate and save until `train.max_steps` or a stop signal.
It takes the typed configs of wavenet.config and knows nothing of Hydra (wavenet.cli.train is the
command line). `train_step` is the one optimizer step, which scripts/bench_train.py times too.

Under torchrun every process calls `train`: they join one process group (see
wavenet.training.distributed), train their own share of each batch with DistributedDataParallel,
and only rank 0 logs, validates, samples and writes into run_dir.
"""

import gc
import hashlib
import json
import logging
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from wavenet import mulaw
from wavenet.config import Config, TrainConfig
from wavenet.data.dataset import (
    PCM16_SIGN,
    Batch,
    Conditioning,
    CropSampler,
    Utterance,
    load_dataset,
    pcm16_codes,
    speaker_table,
    split_by_file,
    validation_batch,
)
from wavenet.data.layouts import detect_layout
from wavenet.errors import Interrupted, TrainingStopped
from wavenet.files import available_memory
from wavenet.metrics.baseline import BIGRAM_ALPHA, LN2, bigram_cross_entropy
from wavenet.model import lpc
from wavenet.model.network import WaveNet
from wavenet.training import distributed
from wavenet.training.distributed import World
from wavenet.training.ema import EMA
from wavenet.training.outputs import RunOutputs, data_report, read_init
from wavenet.training.state import StopSignals, TrainState, WallClock

log = logging.getLogger("wavenet.train")


def train(
    cfg: Config, run_dir: Path, resolved: dict, listing: list[tuple[str, str]] | None = None
) -> dict:
    """Train per `cfg`, writing into `run_dir`; returns the last metrics record.

    `resolved` is the full resolved config, stored in every checkpoint. `listing` is
    find_audio's list of the dataset's files where the caller has read it (the metadata of
    100,000 files is read once, not twice). Raises Interrupted after
    SIGINT/SIGTERM (last.pt saved), TrainingStopped after `max_bad_steps` non-finite steps in a
    row, and ValueError/OSError for bad data, config or checkpoints, each with a one-line message.
    """
    tc = cfg.train
    world = distributed.setup(tc.device)
    net = ddp = None
    try:
        precision = set_up_process(tc, world)
        data = build_data(cfg, world, listing)
        clock = WallClock()  # seconds trained, across resumes
        state = build_state(cfg, data, world, clock)
        out = RunOutputs(cfg, run_dir, resolved, state, data.speakers, world.main, clock)
        restore(state, out, world, tc)
        out.write_data_report(data.report)
        net, ddp = wrap(state.model, world, tc.compile)
        bad = 0  # non-finite steps in a row
        seen, since = 0, time.perf_counter()  # samples trained on since the last log
        with StopSignals() as signals, out:
            state.model.train()
            while state.step < tc.max_steps and not out_of_time(tc, clock, world):
                result = train_step(state, net, data.crops, tc, precision, world, ddp)
                if result.problem is not None:  # the update was skipped
                    bad += 1
                    log.warning(
                        "step %d: non-finite %s, update skipped (%d in a row)",
                        state.step + 1,
                        result.problem,
                        bad,
                    )
                    if bad >= tc.max_bad_steps:
                        out.save_last()
                        out.write_report("stopped")
                        raise TrainingStopped(
                            f"{bad} steps in a row with a non-finite loss or gradient (last: "
                            f"{result.problem}) after step {state.step}: stopped; the last "
                            f"good state is in {out.last}; try a lower train.lr"
                        )
                else:
                    bad, step = 0, state.step
                    seen += result.samples
                    out.advance(result.bits)
                    last = step == tc.max_steps or out_of_time(tc, clock, world)
                    validate = step % tc.val_every == 0 or last
                    if step % tc.log_every == 0 or validate:
                        record = log_record(
                            state,
                            out,
                            world.mean(result.bits),
                            seen / (time.perf_counter() - since),
                        )
                        if validate and world.main:
                            record.update(validation(state, data, out))
                            record.update(out.sample(data.val_batch, data.val_file))
                        out.log(record)
                        seen, since = 0, time.perf_counter()
                    if validate and world.main:
                        out.validated(record["val_bits"])
                        since = time.perf_counter()  # keep validation out of the throughput
                    elif world.main:
                        out.save_if_due()
                # Every rank stops at the same step, whichever of them got the signal.
                if world.any_true(signals.received is not None):
                    if world.main:
                        out.save_unsaved()
                    out.write_report("stopped")
                    signum = signals.received or signal.SIGTERM
                    log.info(
                        "stopped by %s at step %d; resume with the same command",
                        signal.Signals(signum).name,
                        state.step,
                    )
                    raise Interrupted(signum, state.step, out.last)
        check_ranks_agree(state.model, world)
        out.write_report("finished")
        log.info(
            "done: step %d, best validation %.3f bits/sample; checkpoints in %s",
            state.step,
            state.best,
            out.last.parent,
        )
        # Every rank arrives before any leaves the group: a rank tearing down while another
        # still finishes its last step was seen to abort the other at exit (SIGABRT).
        world.barrier()
        return out.record
    finally:
        # DDP's reducer holds the process group: let both go before leaving the group, or
        # they are destroyed at interpreter exit, where gloo's threads were seen to abort the
        # process ("terminate called without an active exception", SIGABRT) after a finished
        # run on a loaded machine.
        net = ddp = None
        gc.collect()
        distributed.teardown(world)


# ------------------------------------------------------------------------------ the steps


def step_memory(cfg: Config) -> int:
    """Bytes one training step's activations and their gradients take at least, per process:
    every layer's gate, residual and skip outputs and the output layers over each crop with its
    receptive field, forward and backward in float32 (measured 0.5-1x of the peak, 2026-12-07)."""
    c = cfg.model
    per_sample = len(c.dilations) * (c.gate_channels + 2 * c.residual_channels + c.skip_channels)
    per_sample += 2 * c.skip_channels + 4 * c.output_channels + c.mel.channels * (c.mel.n_mels > 0)
    length = cfg.data.crop + c.receptive_field
    return 4 * cfg.train.batch_size * length * per_sample


def check_step_memory(cfg: Config) -> None:
    """ValueError (one line) when a step cannot fit in the memory available where train.device
    puts this process (on a GPU, its free memory): an absurd batch or crop, not a traceback
    after filling RAM. wavenet-train calls it before the run dir changes."""
    need = step_memory(cfg)
    device = distributed.process_device(cfg.train.device)
    if device.type == "cuda":
        available, where = torch.cuda.mem_get_info(device)[0], f"{device} has"
    else:
        available, where = available_memory(), "the machine has"
    if need > available:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} crops of data.crop={cfg.data.crop} "
            f"samples (+{cfg.model.receptive_field} of receptive field) need about "
            f"{need / 2**30:.1f} GiB a step, {where} {available / 2**30:.1f} GiB available: "
            f"lower train.batch_size (train.accumulate keeps the batch) or data.crop"
        )


def set_up_process(tc: TrainConfig, world: World) -> str:
    """Threads, seed and log level of this process; returns the precision it trains in."""
    if not world.main:  # one voice: the other ranks only report problems
        log.setLevel(logging.WARNING)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    return resolve_precision(tc.precision, world.device)


# CPU flags of native bfloat16 arithmetic (x86 AVX512-BF16 and AMX; Arm's BF16 extension).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (x86 `flags`, Arm `Features`);
    empty where there is no such file."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device, flags: set[str] | None = None) -> bool:
    """Whether `device` runs bfloat16 matmuls natively: a CUDA GPU with bfloat16, or a CPU
    with one of BF16_FLAGS. Elsewhere autocast emulates them (a bf16 step of model=small ran
    6.5x slower than fp32 on an AMD EPYC without AVX512-BF16, docs/speed.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device, flags: set[str] | None = None) -> str:
    """train.precision for `device`: auto -> bf16 where it is native, else fp32; bf16 on a GPU
    without it -> fp32 (warned); bf16 on a CPU without it stays (asked for) but is warned."""
    native = native_bf16(device, flags)
    if precision == "auto":
        chosen = "bf16" if native else "fp32"
        log.info(
            "train.precision=auto: %s (%s bfloat16 on %s)",
            chosen,
            "native" if native else "no native",
            device.type,
        )
        return chosen
    if precision == "bf16" and not native:
        if device.type == "cuda":
            log.warning("this GPU has no bfloat16: training in fp32")
            return "fp32"
        log.warning(
            "train.precision=bf16 on a CPU without native bfloat16 (none of %s): "
            "autocast emulates it, several times slower than fp32; "
            "train.precision=auto picks fp32 here",
            ", ".join(BF16_FLAGS),
        )
    return precision


@dataclass
class TrainingData:
    """The data side of a run: training crops, the fixed validation batch, the speaker table
    and the bigram baseline's validation bits/sample (NaN on ranks > 0), in the model's unit
    (per μ-law sample for a categorical model, per 16-bit sample for a continuous one)."""

    crops: CropSampler
    val_batch: Batch
    val_file: Utterance  # the first validation file: a vocoder's samples re-synthesise it
    speakers: list[str]
    bigram: float
    bits16_offset: float  # validation bits per code -> per 16-bit sample (0 for 16-bit codes)
    report: dict  # data_report.json, written once the run is known to go on (after resume)


def build_data(
    cfg: Config, world: World, listing: list[tuple[str, str]] | None = None
) -> TrainingData:
    """Decode the dataset into its store (or open it), split it by file, and build the crop
    sampler, the validation batch and data_report.json's content. `listing`: find_audio's
    result for the dataset, if the caller has it."""
    dc, mc, tc = cfg.data, cfg.model, cfg.train
    r = mc.receptive_field
    # One process per machine (local rank 0) decodes into the store while the others wait
    # on the store's lock (no collective: a decode may outlast the process group's timeout);
    # all then map the same files, which the page cache holds once.
    layout = detect_layout(dc.root) if dc.layout == "auto" else dc.layout
    dataset = load_dataset(
        dc.root,
        dc.sample_rate,
        dc.trim_db,
        min_samples=r + 1,
        cache_dir=dc.cache_dir,
        progress=tc.progress and world.main,
        layout=layout,
        workers=dc.workers,
        decode=world.local_rank == 0,
        listing=listing,
    )
    for line in dataset.skipped_lines():  # every one is in data_report.json
        log.warning(line)
    train_set, val_set = split_by_file(dataset.utterances, dc.val_fraction)
    report = data_report(dc.root, layout, dataset, train_set, val_set)
    if not val_set:
        val_set = train_set  # val_fraction=0: report fit to the training data
    speakers = speaker_table(dataset.utterances, dc.root, layout) if mc.speaker_channels else []
    cond = Conditioning(speakers or None, mc.mel, dc.sample_rate, dc.preemphasis)
    # With a mel, crops are whole hops: the crop is rounded up to the next multiple.
    length = math.ceil((r + dc.crop) / cond.hop) * cond.hop
    crops = CropSampler(
        train_set, length, mc.codec, seed=tc.seed, rank=world.rank, world_size=world.size, cond=cond
    )
    val_batch = validation_batch(val_set, length, dc.val_crops, mc.codec, cond)
    targets = val_batch.audio
    if mc.lpc_order:  # the model's codes are the excitation's
        targets = torch.cat(
            [
                lpc.codes(
                    b.audio, b.mel, mc.mel, mc.lpc_order, dc.sample_rate, dc.preemphasis, mc.classes
                )[2]
                for b in val_batch.split(64)
            ]
        )
    offset = mulaw.mean_log2_width(mc.codec, targets[:, mc.receptive_field :])
    bigram = math.nan
    if world.main:
        bigram = bigram_baseline(train_set, val_set, mc.codec, dc.preemphasis, tc.progress)
    log.info(
        "data: %d files used (%d train, %d validation), %d skipped, %.1f s of audio; "
        "see data_report.json",
        len(dataset.utterances),
        len(train_set),
        len(val_set),
        len(dataset.skipped),
        sum(u.samples for u in dataset.utterances) / dc.sample_rate,
    )
    if speakers:
        log.info("speaker conditioning: %d speakers (%s)", len(speakers), ", ".join(speakers))
    return TrainingData(
        crops, val_batch.to(world.device), val_set[0], speakers, bigram, offset, report
    )


CHUNK_SAMPLES = 2**22  # audio encoded at once by the baseline: ~100 MB of working memory


def bigram_baseline(
    train_set: list[Utterance],
    val_set: list[Utterance],
    codec: mulaw.Codec,
    preemphasis: float,
    progress: bool = False,
) -> float:
    """The validation bits of a previous-sample model of μ-law classes, per code of `codec`:
    per μ-law sample for μ-law codes; per 16-bit sample for 16-bit codes (a 256-class bigram
    spreading each class's probability evenly over its 16-bit values; a 65536-level bigram
    table would hold 4 G cells).

    Equal to wavenet.metrics.baseline.bigram_bits_per_sample of the encoded utterances, counted
    in chunks so memory stays bounded; utterances from a store remember the figure there, so a
    run on the same split computes it once.
    """
    mu = codec if codec.kind == "mulaw" else mulaw.Codec()
    store = train_set[0].store
    key = None
    if store is not None and all(u.store is store for u in [*train_set, *val_set]):
        where = [[(u.offset, u.samples) for u in s] for s in (train_set, val_set)]
        blob = json.dumps([codec.kind, mu.classes, preemphasis, BIGRAM_ALPHA, where])
        key = "bigram-" + hashlib.sha256(blob.encode()).hexdigest()
        remembered = store.memo(key)
        if remembered is not None:
            return remembered
    c = mu.classes
    files = len(train_set) + len(val_set)
    with tqdm(total=files, desc="bigram baseline", unit="file", disable=not progress) as bar:
        train = bigram_counts(train_set, mu, preemphasis, bar).double().view(c, c)
        val = bigram_counts(val_set, mu, preemphasis, bar).double().view(c, c)
    bits = bigram_cross_entropy(train, val, BIGRAM_ALPHA)
    if codec.kind != "mulaw":
        bits += float((val.sum(dim=0) * mulaw.log2_widths(mu)).sum() / val.sum())
    if key is not None:
        store.remember(key, bits)
    return bits


def bigram_counts(
    utterances: list[Utterance], codec: mulaw.Codec, preemphasis: float, bar: tqdm | None = None
) -> torch.Tensor:
    """(classes * classes,) int64 counts of (previous, current) code pairs within each
    utterance (pre-emphasised, encoded), read CHUNK_SAMPLES at a time."""
    c = codec.classes
    counts = np.zeros(c * c, dtype=np.int64)
    # Stored 16-bit samples without pre-emphasis: each sample's code by lookup.
    table = pcm16_codes(codec)
    i = 0
    while i < len(utterances):
        group, size = [], 0
        while i < len(utterances) and (not group or size + utterances[i].samples <= CHUNK_SAMPLES):
            group.append(utterances[i])
            size += utterances[i].samples
            i += 1
        sizes = np.array([u.samples for u in group])
        first = np.cumsum(sizes) - sizes  # where each utterance starts in the chunk
        if not preemphasis and all(u.store is not None for u in group):
            samples = np.concatenate([u.store.read(u.offset, u.samples) for u in group])
            codes = table[samples.view(np.uint16) ^ PCM16_SIGN]
        else:
            audio = torch.cat([u.audio for u in group])
            emphasised = mulaw.preemphasis(audio, preemphasis)
            if preemphasis:
                emphasised[first] = audio[first]  # each utterance starts from silence
            codes = codec.encode(emphasised).numpy()
        pairs = codes[:-1].astype(np.intp)
        pairs *= c
        pairs += codes[1:]
        counts += np.bincount(pairs, minlength=c * c)
        np.subtract.at(counts, pairs[first[1:] - 1], 1)  # no pair across two utterances
        if bar is not None:
            bar.update(len(group))
    return torch.from_numpy(counts)


def build_state(cfg: Config, data: TrainingData, world: World, clock: WallClock) -> TrainState:
    """A fresh model on this process's device, AdamW, the LR schedule and (rank 0) the EMA.

    With train.max_minutes the schedule's progress is the share of that time `clock` has run.
    """
    mc, tc = cfg.model, cfg.train
    model = WaveNet(mc, len(data.speakers), cfg.data.sample_rate, cfg.data.preemphasis)
    r = mc.receptive_field
    log.info(
        "model: %.2f M parameters, receptive field %d samples (%.1f ms); "
        "bigram baseline %.3f bits/sample on validation",
        sum(p.numel() for p in model.parameters()) / 1e6,
        r,
        1000 * r / cfg.data.sample_rate,
        data.bigram,
    )
    if mc.mel.enabled:
        log.info(
            "mel conditioning: %d bands, hop %d, upsampling %s to %d channels",
            mc.mel.n_mels,
            mc.mel.hop_length,
            mc.mel.upsample,
            mc.mel.channels,
        )
    log.info(
        "scale: %d process(es) on %s, %s, %d crops per step (batch %d x accumulate %d x "
        "%d), EMA %s%s",
        world.size,
        world.device,
        tc.precision,
        tc.batch_size * tc.accumulate * world.size,
        tc.batch_size,
        tc.accumulate,
        world.size,
        tc.ema_decay or "off",
        ", compiled" if tc.compile else "",
    )
    model.to(world.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    budget = 60.0 * tc.max_minutes
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(
            s,
            tc.warmup_steps,
            tc.max_steps,
            tc.min_lr_ratio,
            tc.lr_schedule,
            progress=(lambda: clock() / budget) if budget else None,
        ),
    )
    # Only rank 0 validates and saves, so only rank 0 keeps the average.
    ema = EMA(model, tc.ema_decay) if tc.ema_decay and world.main else None
    return TrainState(model, optimizer, scheduler, data.crops, ema, tc.ema_eval)


def restore(state: TrainState, out: RunOutputs, world: World, tc: TrainConfig) -> None:
    """Continue from the checkpoint `train.resume` names, if any, or else start from the
    weights of `train.init`, if set. Rank 0 reads them and hands them to the others (so only
    rank 0 needs the run dir); an error on rank 0 stops every rank."""
    found: object = (None, None)  # (checkpoint to resume, checkpoint to start from)
    if world.main:
        try:
            resumed = out.read_resume()
            init = None
            if resumed is None and tc.init:
                init = read_init(out.cfg, Path(tc.init), out.speakers)
            found = (resumed, init)
        except (ValueError, OSError) as e:
            found = e
    found = world.broadcast(found)
    if isinstance(found, Exception):
        raise found
    resumed, init = found
    if resumed is not None:
        state.load_state_dict(resumed, tc.ema_decay)
    elif init is not None:
        state.start_from(init["model"], tc.ema_decay)
    out.resumed(resumed, init)


def wrap(
    model: WaveNet, world: World, compile: bool
) -> tuple[nn.Module, DistributedDataParallel | None]:
    """The module the training step runs: DDP (gradient all-reduce) and/or compiled."""
    ddp = None
    net: nn.Module = model
    if world.size > 1:
        device_ids = [world.device] if world.device.type == "cuda" else None
        ddp = net = DistributedDataParallel(model, device_ids=device_ids)
    if compile:
        net = torch.compile(net)
    return net, ddp


@dataclass
class StepResult:
    bits: float  # this rank's training bits/sample (mean over its micro-batches)
    problem: str | None  # why the update was skipped (a non-finite loss or gradient), or None
    samples: int  # scored audio samples trained on, over every rank


def train_step(
    state: TrainState,
    net: nn.Module,
    crops: CropSampler,
    tc: TrainConfig,
    precision: str,
    world: World | None = None,
    ddp: DistributedDataParallel | None = None,
) -> StepResult:
    """One optimizer step as wavenet-train takes it: draw the crops, forward (autocast) and
    backward per micro-batch, skip the update if any rank's loss or the gradient norm is not
    finite, else clip, AdamW, LR schedule, EMA and step += 1. `world`: one process on the CPU
    by default."""
    world = world or World()
    device = world.device
    # One draw per optimizer step, split into micro-batches: batch b x accumulate k trains on
    # exactly the crops of batch k*b x accumulate 1, in the same order.
    micro = crops.draw(tc.batch_size * tc.accumulate).to(device, non_blocking=True)
    noise = None
    if tc.input_noise:
        seed = (tc.seed * 1_000_003 + state.step) * 4099 + world.rank  # exact on resume
        noise = input_noise(
            micro.audio,
            tc.input_noise,
            distributed.unwrap(net).config.classes,
            torch.Generator().manual_seed(seed),
        ).split(tc.batch_size)
    micro = micro.split(tc.batch_size)
    state.optimizer.zero_grad(set_to_none=True)
    bits = 0.0
    for i, batch in enumerate(micro):
        # Gradients are all-reduced once, on the last micro-batch.
        sync = ddp.no_sync() if ddp is not None and i < len(micro) - 1 else nullcontext()
        with sync:
            with autocast(device, precision):
                loss = (
                    bits_per_sample(net, batch)
                    if noise is None
                    else bits_per_sample(net, batch, noise[i])
                )
            finite = bool(torch.isfinite(loss))
            if not world.all_true(finite):  # every rank skips, or none does
                return StepResult(
                    bits, f"loss {loss.item()}" if not finite else "loss on another rank", 0
                )
            (loss / len(micro)).backward()
        bits += loss.item() / len(micro)
    # max_norm=inf measures without clipping (the scale factor is clamped to 1).
    norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), tc.grad_clip or math.inf)
    if not torch.isfinite(norm):
        return StepResult(bits, f"gradient norm {norm.item()}", 0)
    state.optimizer.step()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.model)
    state.step += 1
    samples = world.size * sum(len(b) for b in micro) * (crops.length - _receptive_field(net))
    return StepResult(bits, None, samples)


def log_record(state: TrainState, out: RunOutputs, bits: float, samples_per_s: float) -> dict:
    """The metrics.jsonl record of a logged step."""
    return {
        "step": state.step,
        "wall_s": round(out.wall_s(), 1),
        "train_bits": round(bits, 5),
        "lr": state.scheduler.get_last_lr()[0],
        "samples_per_s": round(samples_per_s, 1),
    }


def validation(state: TrainState, data: TrainingData, out: RunOutputs) -> dict:
    """Rank 0: the validation figures of this step's record: val_bits (per code) against the
    bigram's, and val_bits16, per 16-bit sample, which compares models of any output."""
    val_bits = validate(state.eval_model, data.val_batch, out.cfg.train.batch_size)
    out.bar.write(
        f"step {state.step}: validation {val_bits:.3f} bits/sample (bigram {data.bigram:.3f})"
    )
    record = {
        "val_bits": round(val_bits, 5),
        "bigram_val_bits": round(data.bigram, 5),
        "val_bits16": round(val_bits + data.bits16_offset, 5),
    }
    problem = divergence(val_bits, state.best, data.bigram)
    if problem:
        log.warning("step %d: %s", state.step, problem)
        record["diverged"] = True
    return record


def divergence(val_bits: float, best: float, bigram: float) -> str | None:
    """Why a run looks diverged, or None: its validation has risen above the bigram baseline
    after having been below it (a finite loss that no longer learns; seen at too high a
    learning rate). best.pt keeps the best weights either way."""
    if best < bigram < val_bits:
        return (
            f"validation {val_bits:.3f} bits/sample is above the bigram baseline "
            f"{bigram:.3f} after reaching {best:.3f}: the run has diverged (best.pt keeps "
            f"the {best:.3f} weights); try a lower train.lr"
        )
    return None


def check_ranks_agree(model: WaveNet, world: World) -> None:
    """RuntimeError unless every rank ended with bit-identical weights (DDP kept them in step)."""
    if world.size == 1:
        return
    digests = world.gather(weights_digest(model))
    if len(set(digests)) > 1:
        raise RuntimeError(f"ranks ended with different weights: {digests}")
    log.info("all %d ranks hold identical weights (sha256 %s)", world.size, digests[0])


# ----------------------------------------------------------------------------- the pieces


def bits_per_sample(
    model: nn.Module, batch: Batch, noisy: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean NLL in bits per code of the samples that have a full receptive field of context.

    batch: crops (batch, receptive_field + n) int64 and their conditioning -> scalar tensor
    (differentiable). Only the last n positions of each crop are scored. noisy: the crops'
    codes with noise (`input_noise`) for the network to read instead; it predicts the clean
    ones (a model with linear prediction: the excitation of the clean signal from the noisy
    signal's prediction, `WaveNet.targets`).
    """
    r = _receptive_field(model)
    x = batch.audio if noisy is None else noisy
    bare = distributed.unwrap(model)
    target, codes = batch.audio, None
    if getattr(bare, "embed_p", None) is not None:  # linear prediction: the excitation's codes
        # One analysis gives the inputs and the targets (the clean signal's excitation).
        p, e, target = bare.lpc_codes(x, batch.mel, None if noisy is None else batch.audio)
        codes = (p, e)
    extra = {} if codes is None else {"lpc_codes": codes}  # stand-in networks take no codes
    params = model(x, batch.speaker, batch.mel, last=batch.audio.shape[1] - r, **extra)
    nll = bare.nll(params.float(), target[:, r:])
    return nll.mean().float() / LN2


def input_noise(
    codes: torch.Tensor, level: float, classes: int, generator: torch.Generator
) -> torch.Tensor:
    """(batch, time) μ-law codes moved by round(L * u), u uniform in [-1, 1] per sample and L
    uniform in [0, level] per crop, clipped to [0, classes) (LPCNet's noise injection)."""
    batch, time = codes.shape
    crop = torch.rand(batch, 1, generator=generator, dtype=torch.float64) * level
    u = torch.rand(batch, time, generator=generator, dtype=torch.float64) * 2.0 - 1.0
    moved = codes.cpu().long() + torch.round(crop * u).long()
    return moved.clamp(0, classes - 1).to(codes.device)


def _receptive_field(model: nn.Module) -> int:
    return distributed.unwrap(model).receptive_field


@torch.no_grad()
def validate(model: WaveNet, crops: Batch, batch_size: int) -> float:
    """Validation bits/sample over fixed crops (n, length), weighted by predicted samples, in
    fp32; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total = 0.0
    for batch in crops.split(batch_size):
        total += bits_per_sample(model, batch).item() * len(batch)
    model.train(was_training)
    return total / len(crops)


def lr_factor(
    step: int,
    warmup: int,
    max_steps: int,
    min_ratio: float,
    schedule: str = "cosine",
    progress=None,
) -> float:
    """Linear warmup to 1 over `warmup` steps, then "cosine" decay to `min_ratio` at max_steps,
    or "inverse_sqrt": sqrt(warmup / (step + 1)), never below `min_ratio`.

    progress: for a run bounded by time, a callable giving the share of the time budget spent;
    the cosine then runs over time instead of over steps.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "inverse_sqrt":
        return max(min_ratio, math.sqrt(max(1, warmup) / (step + 1)))
    if progress is not None:
        share = min(1.0, progress())
    else:
        share = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * share))


def out_of_time(tc: TrainConfig, clock: WallClock, world: World) -> bool:
    """Whether train.max_minutes is spent (every rank answers alike: any rank's clock)."""
    return bool(tc.max_minutes) and world.any_true(clock() >= 60.0 * tc.max_minutes)


def autocast(device: torch.device, precision: str):
    """The forward pass's autocast context: bfloat16 for precision="bf16", off for "fp32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def weights_digest(model: nn.Module) -> str:
    """sha256 of every parameter's bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
