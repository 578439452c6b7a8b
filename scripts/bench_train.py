"""Benchmark training throughput; prints one JSON line per (precision, compile) setting.

    python scripts/bench_train.py                                    # wavenet, batch 8, crop 4000
    python scripts/bench_train.py --device cuda --precision fp32 bf16 --compile eager compiled
    python scripts/bench_train.py --model small --batch 16 --crop 8000 --threads 2

One step is what wavenet-train runs: forward under autocast, bits/sample loss, backward, gradient
clipping, AdamW. Fields: model, device, precision, compiled, batch, crop (scored samples per crop;
each crop is receptive_field + crop long), threads, step_s (median over --steps timed steps),
samples_per_s (batch * crop / step_s: audio samples trained on per second), first_step_s (the
first, untimed step, which includes torch.compile's compilation), crops_ms (time to draw the batch
with CropSampler from 10 minutes of audio in memory) and, on CUDA, peak_mem_mb.
"""

import argparse
import json
import statistics
import time

import torch

from wavenet.config import model_config
from wavenet.data.dataset import CropSampler, Utterance
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.training.loop import autocast, bits_per_sample


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(config: WaveNetConfig, device: torch.device, precision: str, compiled: bool,
          batch: int, crop: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = WaveNet(config).to(device).train()
    net = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    audio = torch.rand(16000 * 600, generator=torch.Generator().manual_seed(0)) * 2 - 1
    crops = CropSampler([Utterance("noise.wav", "", audio)], model.receptive_field + crop)

    def step() -> float:
        sync(device)
        start = time.perf_counter()
        x = crops.sample(batch).to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = bits_per_sample(net, x)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sync(device)
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = step()
    times = [step() for _ in range(steps)]
    start = time.perf_counter()
    for _ in range(10):
        crops.sample(batch)
    crops_ms = (time.perf_counter() - start) / 10 * 1000
    step_s = statistics.median(times)
    record = {"model": None, "device": str(device), "precision": precision, "compiled": compiled,
              "batch": batch, "crop": crop, "threads": torch.get_num_threads(),
              "step_s": round(step_s, 4), "samples_per_s": round(batch * crop / step_s, 1),
              "first_step_s": round(first, 2), "crops_ms": round(crops_ms, 2)}
    if device.type == "cuda":
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
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps the default")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = model_config(args.model)
    except ValueError as e:
        raise SystemExit(f"--model: {e}") from None
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    for mode in args.compile:
        for precision in args.precision:
            record = bench(config, device, precision, mode == "compiled", args.batch, args.crop,
                           args.steps)
            print(json.dumps({**record, "model": args.model}), flush=True)


if __name__ == "__main__":
    main()
