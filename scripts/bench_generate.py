"""Benchmark autoregressive generation speed; prints one JSON line per path (and machine facts).

    python scripts/bench_generate.py                               # wavenet, batch 1, every path
    python scripts/bench_generate.py --batch 16 --threads 2
    python scripts/bench_generate.py --baseline ../base   # + an older checkout, interleaved
    python scripts/bench_generate.py --impl compiled --seconds 600 # 10 min streamed to disk
    python scripts/bench_generate.py --end-to-end data/pretrained/asterisk4-small.pt
    python scripts/bench_generate.py --device cuda --impl reference cuda-graph
    python scripts/bench_generate.py --output categorical mol gaussian --impl compiled
    python scripts/bench_generate.py --condition mel --lpc-order 0 16 --impl compiled-int8
    python scripts/bench_generate.py --quick                       # tiny settings, for CI

The first line (`"kind": "machine"`) names the CPU and the read bandwidth one core gets from
arrays of 256 KB (L2), 4 MB (last-level cache) and 64 MB (memory), measured by a numba loop.
Then one line per path and --output (`"kind": "generate"`; every output kind's runs are
interleaved with the others'):
  path            compiled, compiled-bf16, compiled-int8 (numba), reference (CachedSampler.step),
                  cuda-graph,
                  naive (a forward pass over the whole receptive field per sample, primed with a
                  full receptive field), or baseline (--baseline's `compiled`, in a subprocess)
  samples_per_s_aggregate   batch * samples / seconds, summed over the batch rows
  samples_per_s_per_stream  samples / seconds, one batch row; realtime_factor = that / 16000
  seconds / runs_s         the median and every one of --repeats timed runs; the paths' runs are
                  interleaved (path A, path B, ..., A, B, ...) so machine load hits all alike
  first_call_s    the first call, untimed above: numba compilation or its cache load, capture
  parts, pair     the kernel's layout: every layer split between `parts` threads, or with pair
                  each stream on two threads (layers on one, skips and head on the other)
  weight_bytes    bytes of weights one sample reads; bound_samples_per_s: the batch-1 speed if
                  reading them at the measured bandwidth (L2 where each thread's share fits in
                  L2, else the last-level cache) were all a sample cost; fraction_of_bound
  load            /proc/loadavg's 1-minute load before and after the line's runs
With --end-to-end CKPT, lines of `"kind": "end_to_end"` time whole `wavenet-generate` processes
(start, model load, compile or cache load, generation, wav writing) for 2 s and 10 s of audio.
Weights are random unless --checkpoint.
"""

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_id, cpu_model, load

from wavenet import checkpoint
from wavenet.config import model_config
from wavenet.model.features import MelConfig
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.model.output import OUTPUTS
from wavenet.sampling import kernel
from wavenet.sampling.cached import STORAGE, generate, generate_naive
from wavenet.sampling.kernel.policy import kernel_pair, kernel_parts, l2_bytes
from wavenet.sampling.sampler import CachedSampler

RATE = 16000
PATHS = ("compiled", "compiled-bf16", "compiled-int8", "reference", "cuda-graph", "naive")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def _sum_loop(a, reps):
    total = np.float32(0.0)
    for _ in range(reps):
        for i in range(a.shape[0]):
            total += a[i]
    return total


def bandwidths(quick: bool) -> dict:
    """Single-core read bandwidth (GB/s) from arrays of 256 KB, 4 MB and 64 MB: a vectorized
    numba sum, each size repeated until ~0.2 s (quick: ~0.02 s) of reading, best of 3."""
    if not kernel.available():
        return {}
    import numba

    loop = numba.njit(fastmath=True, cache=True)(_sum_loop)
    out = {}
    for name, size in (("l2_256kb", 2**18), ("llc_4mb", 2**22), ("memory_64mb", 2**26)):
        a = np.ones(size // 4, np.float32)
        loop(a, 1)
        reps = max(1, int((2e8 if quick else 2e9) * 0.1 // size))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            loop(a, reps)
            best = min(best, time.perf_counter() - start)
        out[f"read_gb_s_{name}"] = round(reps * size / best / 1e9, 1)
    return out


def build(
    model_name: str,
    checkpoint_path: str | None,
    condition: str,
    output: str | None = None,
    lpc_order: int = 0,
) -> tuple[str, WaveNet]:
    """(name to report, model in eval mode): from a checkpoint, or conf/model/NAME.yaml with
    the conditioning of `condition` (none, speaker, mel or both), the output distribution
    `output` (default: the config's) and linear prediction of `lpc_order` (mel only)."""
    if checkpoint_path:
        return Path(checkpoint_path).stem, checkpoint.build_model(checkpoint.load(checkpoint_path))
    try:
        config = model_config(model_name)
    except ValueError as e:
        raise SystemExit(f"--model: {e}") from None
    config.output = output or config.output
    speakers = 0
    if condition in ("speaker", "both"):
        config.speaker_channels, speakers = 16, 4
    if condition in ("mel", "both"):
        config.mel = MelConfig(n_mels=80, channels=64)
    config.lpc_order = lpc_order
    torch.manual_seed(0)
    try:
        model = WaveNet(WaveNetConfig(**dataclasses.asdict(config)), speakers, RATE, 0.85)
    except ValueError as e:
        raise SystemExit(f"--lpc-order: {e}") from None
    return model_name, model.eval()


def conditioning(model: WaveNet, samples: int, batch: int) -> dict:
    """Random speaker ids and log-mel frames covering `samples`, as the model needs them."""
    out: dict = {}
    g = torch.Generator().manual_seed(1)
    if model.speaker_embed is not None:
        out["speaker"] = torch.randint(0, model.speakers, (batch,), generator=g)
    if model.upsampler is not None:
        mel = model.config.mel
        frames = -(-samples // mel.hop_length)
        out["mel"] = torch.randn(batch, mel.n_mels, frames, generator=g) * 2 - 5
    return out


def rss_mb() -> float:
    """Current resident memory of this process in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def run(
    model: WaveNet, impl: str, samples: int, batch: int, threads: int, sink: Path | None = None
) -> dict:
    """Generate `samples` per item; with a sink, stream them to a wav file as generate.py does."""
    generator = torch.Generator().manual_seed(0)
    if impl == "naive":
        # Primed with a whole receptive field, so every forward covers what a real step sees.
        prime = torch.randint(
            0, model.config.codec.classes, (batch, model.receptive_field), generator=generator
        )
        cond = conditioning(model, model.receptive_field + samples, batch)
        generate_naive(
            model,
            samples,
            batch,
            prime=prime.to(model.embed.weight.device),
            generator=generator,
            **cond,
        )
        return {}
    cond = conditioning(model, samples, batch)
    rss = []
    if sink:
        import soundfile as sf  # only long mode writes audio

        f = sf.SoundFile(sink, "w", RATE, batch, "PCM_16")
    for chunk in generate(
        model, samples, batch, generator=generator, impl=impl, threads=threads, **cond
    ):
        if sink:
            f.write(model.config.codec.decode(chunk.cpu()).t().numpy())
        rss.append(rss_mb())
    if sink:
        f.close()
    return {"rss_first_chunk_mb": round(rss[0], 1), "rss_last_chunk_mb": round(rss[-1], 1)}


def weight_facts(model: WaveNet, impl: str, threads: int, batch: int, bw: dict) -> dict:
    """Bytes one sample reads and the batch-1 speed that reading them at the measured
    bandwidth allows (see the module docstring)."""
    pair = False
    if impl in STORAGE:
        merged = CachedSampler(model).merged_weights()
        parts = kernel_parts(threads, merged, STORAGE[impl], batch)
        pair = kernel_pair(threads, batch, parts)
        compiled = kernel.CompiledWeights(merged, STORAGE[impl], parts)
        nbytes = compiled.nbytes
        share = nbytes / parts
        if pair:  # the larger of the two threads' reads (wavenet.sampling.kernel.pair)
            share = max(kernel.pair_shares(compiled))
    else:
        parts = 1
        nbytes = share = sum(p.numel() * p.element_size() for p in model.parameters())
    out = {"parts": parts, "pair": pair, "weight_bytes": nbytes}
    if bw and model.embed.weight.device.type == "cpu":
        fits = share <= 0.9 * l2_bytes()
        gb_s = bw["read_gb_s_l2_256kb"] if fits else bw["read_gb_s_llc_4mb"]
        out["bound_source"] = "l2" if fits else "llc"
        out["bound_samples_per_s"] = round(gb_s * 1e9 / share)
    return out


BASELINE_WORKER = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
try:
    from wavenet.sampling.cached import generate
    from wavenet.model.network import WaveNet, WaveNetConfig
except ImportError:  # the package before wavenet/sampling/
    from wavenet.sampler import generate
    from wavenet.model import WaveNet, WaveNetConfig
saved = torch.load(sys.argv[1], weights_only=False)
import dataclasses
known = {f.name: f.default for f in dataclasses.fields(WaveNetConfig)}
extra = {k: v for k, v in saved["config"].items() if k not in known}
if any(v != saved["defaults"].get(k) for k, v in extra.items()):  # only keys at their default
    sys.exit(f"the baseline checkout cannot build this model: {extra}")
config = {k: v for k, v in saved["config"].items() if k in known}
model = WaveNet(WaveNetConfig(**config), speakers=saved["speakers"]).eval()
model.load_state_dict(saved["state"])
batch, threads, samples = (int(v) for v in sys.argv[2:5])
def once(n):
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in generate(model, n, batch, generator=g, impl="compiled", threads=threads):
        pass
    return time.perf_counter() - start
print(json.dumps({"first_call_s": once(min(100, samples))}), flush=True)
for line in sys.stdin:
    print(json.dumps({"seconds": once(samples)}), flush=True)
"""


class Baseline:
    """An older checkout's `compiled` path in a subprocess (PYTHONPATH=root), timed on demand."""

    def __init__(
        self, root: str, model: WaveNet, batch: int, threads: int, samples: int, tmp: Path
    ):
        path = tmp / "baseline_model.pt"
        defaults = {f.name: f.default for f in dataclasses.fields(model.config)}
        torch.save(
            {
                "config": dataclasses.asdict(model.config),
                "defaults": defaults,
                "speakers": model.speakers,
                "state": model.state_dict(),
            },
            path,
        )
        env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BASELINE_WORKER,
                str(path),
                str(batch),
                str(threads),
                str(samples),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp,
        )
        self.first_call_s = json.loads(self.proc.stdout.readline())["first_call_s"]

    def time(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def end_to_end(ckpt: str, seconds_list: list[float], threads: int, repeats: int, tmp: Path) -> None:
    """Wall time of whole `wavenet-generate` processes, printed as JSON lines."""
    exe = shutil.which("wavenet-generate") or str(Path(sys.executable).parent / "wavenet-generate")
    for seconds in seconds_list:
        for impl in ("auto", "compiled"):
            runs = []
            for _ in range(repeats):
                before = load()
                start = time.perf_counter()
                subprocess.run(
                    [
                        exe,
                        f"checkpoint={ckpt}",
                        f"seconds={seconds}",
                        f"impl={impl}",
                        f"threads={threads}",
                        f"out={tmp / 'e2e'}",
                        "progress=false",
                    ],
                    check=True,
                    capture_output=True,
                )
                runs.append(time.perf_counter() - start)
            wall = statistics.median(runs)
            print(
                json.dumps(
                    {
                        "kind": "end_to_end",
                        "checkpoint": ckpt,
                        "impl": impl,
                        "audio_seconds": seconds,
                        "threads": threads,
                        "wall_s": round(wall, 2),
                        "runs_s": [round(r, 2) for r in runs],
                        "realtime_factor": round(seconds / wall, 3),
                        "load": [before, load()],
                        "cpu": cpu_model(),
                    }
                ),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch and kernel threads")
    parser.add_argument("--samples", type=int, default=16000, help="per stream, cached paths")
    parser.add_argument("--naive-samples", type=int, default=40, help="per stream, naive path")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path")
    parser.add_argument(
        "--seconds",
        type=float,
        help="long mode: this much 16 kHz audio per "
        "stream, streamed to a temporary wav (cached paths only)",
    )
    parser.add_argument("--model", default="wavenet", help="conf/model/NAME.yaml, random weights")
    parser.add_argument("--checkpoint", help="benchmark a trained checkpoint instead of --model")
    parser.add_argument(
        "--lpc-order",
        type=int,
        nargs="+",
        default=[0],
        help="linear prediction orders (with --condition mel), timed side by side",
    )
    parser.add_argument(
        "--condition",
        choices=["none", "speaker", "mel", "both"],
        default="none",
        help="conditioning added to --model",
    )
    parser.add_argument(
        "--output",
        nargs="+",
        choices=list(OUTPUTS),
        help="output distributions of --model to time side by side",
    )
    parser.add_argument("--impl", nargs="+", choices=[*PATHS, "all"], default=["all"])
    parser.add_argument("--baseline", help="also time this checkout's compiled path")
    parser.add_argument(
        "--end-to-end",
        nargs="*",
        metavar="CKPT",
        help="time wavenet-generate processes on these checkpoints",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.model, args.samples, args.naive_samples, args.repeats = "tiny", 200, 2, 1
    if args.output and args.checkpoint:
        parser.error("--output builds models of --model; a checkpoint has its own output")
    if args.lpc_order != [0] and args.checkpoint:
        parser.error("--lpc-order builds models of --model; a checkpoint has its own predictor")
    for name in ("batch", "threads", "samples", "naive_samples", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    torch.set_num_threads(args.threads)
    bw = bandwidths(args.quick) if args.device == "cpu" else {}
    machine = {
        "kind": "machine",
        "cpu": cpu_model(),
        **cpu_id(),
        "cores": os.cpu_count(),
        "l2_bytes_per_core": l2_bytes(),
        **bw,
        "torch": torch.__version__,
        "numba": getattr(sys.modules.get("numba"), "__version__", None),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "load": load(),
    }
    print(json.dumps(machine), flush=True)
    models = {}
    for output in args.output or [None]:
        for order in args.lpc_order:
            name, model = build(args.model, args.checkpoint, args.condition, output, order)
            lpc = model.config.lpc_order  # a checkpoint's own, not --lpc-order's default
            key = model.config.output + (f"+lpc{lpc}" if lpc else "")
            models[key] = (name, model.to(args.device, DTYPES[args.dtype]))
    name, model = next(iter(models.values()))  # the baseline's
    on_cpu, wanted = args.device == "cpu", set(args.impl)
    runs_here = {
        "compiled": on_cpu and kernel.available() and args.dtype != "bfloat16",
        "compiled-bf16": on_cpu and kernel.available() and args.dtype == "float32",
        "compiled-int8": on_cpu and kernel.int8_dot_available() and args.dtype == "float32",
        "reference": True,
        "cuda-graph": not on_cpu,
        "naive": True,
    }
    impls = [i for i in PATHS if runs_here[i] and ("all" in wanted or i in wanted)]
    jobs = [(output, impl) for output in models for impl in impls]
    samples = int(args.seconds * RATE) if args.seconds else args.samples
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        first, times, extra, loads = {}, {job: [] for job in jobs}, {}, {}
        baseline = None
        for job in jobs:
            output, impl = job
            start = time.perf_counter()
            run(models[output][1], impl, 100 if impl != "naive" else 1, args.batch, args.threads)
            first[job] = time.perf_counter() - start
            loads[job] = [load()]
        base = (model.config.output, "baseline")
        if args.baseline:
            baseline = Baseline(args.baseline, model, args.batch, args.threads, samples, tmp)
            first[base], times[base], loads[base] = baseline.first_call_s, [], [load()]
        for _ in range(args.repeats):  # interleaved: every path once per round
            for job in jobs:
                output, impl = job
                n = args.naive_samples if impl == "naive" else samples
                sink = tmp / "out.wav" if args.seconds and impl != "naive" else None
                start = time.perf_counter()
                extra[job] = run(models[output][1], impl, n, args.batch, args.threads, sink)
                times[job].append(time.perf_counter() - start)
            if baseline:
                times[base].append(baseline.time())
        if baseline:
            baseline.close()
        for job, runs in times.items():
            output, impl = job
            name, model = models[output]
            n = args.naive_samples if impl == "naive" else samples
            seconds = statistics.median(runs)
            per_stream = n / seconds
            facts = weight_facts(
                model,
                "compiled" if impl == "baseline" else impl,
                1 if impl == "baseline" else args.threads,
                args.batch,
                bw,
            )
            if impl == "baseline":
                facts["parts"], facts["pair"] = 1, False
            line = {
                "kind": "generate",
                "path": impl,
                "output": output,
                "model": name,
                "cpu": machine["cpu"],
                "device": args.device,
                "dtype": args.dtype,
                "batch": args.batch,
                "threads": args.threads,
                "samples": n,
                "repeats": len(runs),
                "seconds": round(seconds, 3),
                "runs_s": [round(r, 3) for r in runs],
                "samples_per_s_aggregate": round(args.batch * per_stream, 1),
                "samples_per_s_per_stream": round(per_stream, 1),
                "realtime_factor": round(per_stream / RATE, 4),
                "first_call_s": round(first[job], 3),
                **facts,
                "load": [*loads[job], load()],
                **extra.get(job, {}),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "receptive_field": model.receptive_field,
                "params": sum(p.numel() for p in model.parameters()),
                "speaker_conditioned": model.speaker_embed is not None,
                "mel_conditioned": model.upsampler is not None,
                "lpc_order": model.config.lpc_order,
            }
            if "bound_samples_per_s" in facts and args.batch == 1:
                line["fraction_of_bound"] = round(per_stream / facts["bound_samples_per_s"], 3)
            print(json.dumps(line), flush=True)
        for ckpt in args.end_to_end or []:
            end_to_end(
                ckpt,
                [2.0] if args.quick else [2.0, 10.0],
                args.threads,
                1 if args.quick else args.repeats,
                tmp,
            )


if __name__ == "__main__":
    main()
