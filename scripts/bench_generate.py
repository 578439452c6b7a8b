"""Benchmark autoregressive generation speed on CPU; prints one JSON line per implementation.

    python scripts/bench_generate.py                                  # wavenet, batch 1, both impls
    python scripts/bench_generate.py --model small --batch 16 --threads 2
    python scripts/bench_generate.py --impl cached --samples 16000
    python scripts/bench_generate.py --checkpoint outputs/.../checkpoints/last.pt --impl naive

"cached" is `wavenet.sampler.generate` (per-layer queues, O(layers) per sample); "naive" is
`generate_naive` (a forward pass over the whole receptive field per sample). samples_per_s is the
aggregate over the batch: batch * samples / seconds. Weights are random unless --checkpoint.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from wavenet import checkpoint
from wavenet.model import WaveNet, WaveNetConfig
from wavenet.sampler import generate, generate_naive

CONF_MODEL = Path(__file__).resolve().parents[1] / "conf" / "model"


def build(model_name: str, checkpoint_path: str | None) -> tuple[str, WaveNet]:
    """(name to report, model in eval mode): from a checkpoint, or conf/model/NAME.yaml."""
    if checkpoint_path:
        return Path(checkpoint_path).stem, checkpoint.build_model(checkpoint.load(checkpoint_path))
    path = CONF_MODEL / f"{model_name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in CONF_MODEL.glob("*.yaml"))
        raise SystemExit(f"--model {model_name!r}: no {path}; choose from {choices}")
    torch.manual_seed(0)
    config = WaveNetConfig(**OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    return model_name, WaveNet(config).eval()


def run(model: WaveNet, impl: str, samples: int, batch: int) -> None:
    """Generate `samples` per item with one implementation, discarding the output."""
    generator = torch.Generator().manual_seed(0)
    if impl == "cached":
        for _ in generate(model, samples, batch, temperature=1.0, generator=generator):
            pass
    else:
        generate_naive(model, samples, batch, temperature=1.0, generator=generator)


def bench(model: WaveNet, impl: str, samples: int, batch: int, warmup: int) -> float:
    """Seconds of wall time for one timed run of `samples` per item, after an untimed warmup."""
    if warmup > 0:
        run(model, impl, warmup, batch)
    start = time.perf_counter()
    run(model, impl, samples, batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--samples", type=int, default=2000, help="per item, cached impl")
    parser.add_argument("--naive-samples", type=int, default=50, help="per item, naive impl")
    parser.add_argument("--model", default="wavenet", help="conf/model/NAME.yaml, random weights")
    parser.add_argument("--checkpoint", help="benchmark a trained checkpoint instead of --model")
    parser.add_argument("--impl", choices=["cached", "naive", "all"], default="all")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps before timing")
    args = parser.parse_args()
    for name in ("batch", "threads", "samples", "naive_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")

    torch.set_num_threads(args.threads)
    name, model = build(args.model, args.checkpoint)
    params = sum(p.numel() for p in model.parameters())
    impls = ["cached", "naive"] if args.impl == "all" else [args.impl]
    with torch.inference_mode():
        for impl in impls:
            samples = args.samples if impl == "cached" else args.naive_samples
            # The naive warmup never runs longer than its (short) timed run.
            warmup = args.warmup if impl == "cached" else min(args.warmup, samples)
            seconds = bench(model, impl, samples, args.batch, warmup)
            print(
                json.dumps(
                    {
                        "impl": impl,
                        "model": name,
                        "batch": args.batch,
                        "threads": args.threads,
                        "samples": samples,
                        "samples_per_s": round(args.batch * samples / seconds, 1),
                        "seconds": round(seconds, 4),
                        "device": "cpu",
                        "torch": torch.__version__,
                        "receptive_field": model.receptive_field,
                        "params": params,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
