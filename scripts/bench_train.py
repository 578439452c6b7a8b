"""Benchmark training throughput; prints one JSON line per (precision, compile) setting.

    python scripts/bench_train.py                                    # wavenet, batch 8, crop 4000
    python scripts/bench_train.py --device cuda --precision fp32 bf16 --compile eager compiled
    python scripts/bench_train.py --model small --batch 16 --crop 8000 --threads 2
    python scripts/bench_train.py --score last all --repeats 2   # against the untrimmed step

One step is the step wavenet-train runs, by the same function (wavenet.training.loop.train_step):
drawing the crops, forward under autocast, bits/sample loss, the finiteness checks, backward,
gradient clipping, AdamW, the LR schedule and the EMA update.

Fields: cpu (the processor; cpu_family_model and isa tell its generation), load (1-minute load
average before the run), model, device, precision, compiled, score (last: the trainer's forward,
which computes only what the crop's scored positions need; all: every position computed and the
context sliced off, as the step was before 2026-12-05), ema, batch, crop (scored samples per crop;
each crop is receptive_field + crop long), threads, step_s (median over --steps timed steps),
samples_per_s (batch * crop / step_s: audio samples trained on per second), first_step_s (the
first, untimed step, which includes torch.compile's compilation), crops_ms (time to draw the batch
with CropSampler from 10 minutes of audio in memory) and, on CUDA, gpu and peak_mem_mb."""

import argparse
import json
import statistics
import time

import torch
from machine import cpu_id, cpu_model, load
from torch import nn

from wavenet.config import TrainConfig, model_config
from wavenet.data.dataset import CropSampler, Utterance
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.training.distributed import World
from wavenet.training.ema import EMA
from wavenet.training.loop import lr_factor, train_step
from wavenet.training.state import TrainState


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ScoreAll(nn.Module):
    """The model computing every position of a crop; the loss keeps the scored ones."""

    def __init__(self, model: WaveNet):
        super().__init__()
        self.model = model
        self.receptive_field = model.receptive_field
        self.nll = model.nll

    def forward(self, x, speaker=None, mel=None, last=0):
        return self.model(x, speaker, mel)[:, :, x.shape[1] - last :]


def bench(
    config: WaveNetConfig,
    device: torch.device,
    precision: str,
    compiled: bool,
    score: str,
    batch: int,
    crop: int,
    steps: int,
    ema_decay: float,
) -> dict:
    torch.manual_seed(0)
    tc = TrainConfig(
        batch_size=batch,
        precision=precision,
        compile=compiled,
        ema_decay=ema_decay,
        max_steps=steps + 1,
    )
    model = WaveNet(config).to(device).train()
    net = model if score == "last" else ScoreAll(model)
    net = torch.compile(net) if compiled else net
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio, tc.lr_schedule),
    )
    audio = torch.rand(16000 * 600, generator=torch.Generator().manual_seed(0)) * 2 - 1
    crops = CropSampler([Utterance("noise.wav", "", audio)], model.receptive_field + crop)
    ema = EMA(model, ema_decay) if ema_decay else None
    state = TrainState(model, optimizer, scheduler, crops, ema, ema_eval=True)
    world = World(device=device)

    def step() -> float:
        sync(device)
        start = time.perf_counter()
        result = train_step(state, net, crops, tc, precision, world)
        sync(device)
        if result.problem is not None:
            raise SystemExit(f"step {state.step + 1}: non-finite {result.problem}")
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = load()
    first = step()
    times = [step() for _ in range(steps)]
    start = time.perf_counter()
    for _ in range(10):
        crops.draw(batch)
    crops_ms = (time.perf_counter() - start) / 10 * 1000
    step_s = statistics.median(times)
    record = {
        "model": None,
        "cpu": cpu_model(),
        **cpu_id(),
        "load": before,
        "device": str(device),
        "precision": precision,
        "compiled": compiled,
        "score": score,
        "ema": bool(ema_decay),
        "batch": batch,
        "crop": crop,
        "threads": torch.get_num_threads(),
        "step_s": round(step_s, 4),
        "samples_per_s": round(batch * crop / step_s, 1),
        "first_step_s": round(first, 2),
        "crops_ms": round(crops_ms, 2),
    }
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
        record["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="wavenet", help="conf/model/NAME.yaml (default: wavenet)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=4000)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one untimed)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--compile", nargs="+", default=["eager"], choices=["eager", "compiled"])
    p.add_argument(
        "--score",
        nargs="+",
        default=["last"],
        choices=["last", "all"],
        help="last: the trainer's forward (only what the scored positions need); "
        "all: every position, the context sliced off (the step before 2026-12-05)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds over all the settings, interleaved (default 1)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps the default")
    p.add_argument(
        "--ema-decay",
        type=float,
        default=TrainConfig.ema_decay,
        help="EMA decay as in train.ema_decay (0: off)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke settings: the tiny model, batch 2, crop 200, 2 timed steps",
    )
    args = p.parse_args()
    if args.quick:
        args.model, args.batch, args.crop, args.steps = "tiny", 2, 200, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = model_config(args.model)
    except ValueError as e:
        raise SystemExit(f"--model: {e}") from None
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    settings = [
        (mode, precision, score)
        for mode in args.compile
        for precision in args.precision
        for score in args.score
    ]
    for _ in range(args.repeats):
        for mode, precision, score in settings:
            record = bench(
                config,
                device,
                precision,
                mode == "compiled",
                score,
                args.batch,
                args.crop,
                args.steps,
                args.ema_decay,
            )
            print(json.dumps({**record, "model": args.model}), flush=True)


if __name__ == "__main__":
    main()
