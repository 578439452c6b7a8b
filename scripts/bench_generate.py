"""Benchmark autoregressive generation speed; prints one JSON line per implementation.

    python scripts/bench_generate.py                           # wavenet, batch 1, every impl
    python scripts/bench_generate.py --batch 16 --threads 2
    python scripts/bench_generate.py --impl compiled --seconds 600   # 10 min streamed to disk
    python scripts/bench_generate.py --checkpoint runs/demo/.../checkpoints/best.pt
    python scripts/bench_generate.py --condition both     # speaker + 80-band mel conditioning

Implementations (`impl` / `path` in the JSON):
  cached / compiled   the cached-queue sampler's numba loop (wavenet.fast), CPU only
  cached / reference  the cached-queue sampler in PyTorch ops, one step per call
  naive / forward     a forward pass over the whole receptive field per sample
samples_per_s is the aggregate over the batch (batch * samples / seconds); weights are random
unless --checkpoint. --condition adds a 16-channel speaker embedding (4 speakers) and/or an
80-band log-mel (64 channels after upsampling) to --model, fed random speakers and mels; a
conditioned --checkpoint gets what it needs automatically. peak_rss_mb is the process's peak
resident memory so far; with --seconds, rss_first_chunk_mb and rss_last_chunk_mb show whether
streaming kept memory flat.
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from wavenet import checkpoint, mulaw
from wavenet.config import model_config
from wavenet.model.features import MelConfig
from wavenet.model.network import WaveNet
from wavenet.sampling import numba_kernel
from wavenet.sampling.cached import generate, generate_naive

PATHS = {"compiled": "cached", "reference": "cached", "naive": "naive"}
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def build(model_name: str, checkpoint_path: str | None, condition: str
          ) -> tuple[str, WaveNet]:
    """(name to report, model in eval mode): from a checkpoint, or conf/model/NAME.yaml with
    the conditioning of `condition` (none, speaker, mel or both)."""
    if checkpoint_path:
        return Path(checkpoint_path).stem, checkpoint.build_model(checkpoint.load(checkpoint_path))
    try:
        config = model_config(model_name)
    except ValueError as e:
        raise SystemExit(f"--model: {e}") from None
    speakers = 0
    if condition in ("speaker", "both"):
        config.speaker_channels, speakers = 16, 4
    if condition in ("mel", "both"):
        config.mel = MelConfig(n_mels=80, channels=64)
    torch.manual_seed(0)
    return model_name, WaveNet(config, speakers=speakers).eval()


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


def run(model: WaveNet, impl: str, samples: int, batch: int, threads: int,
        sink: Path | None = None) -> dict:
    """Generate `samples` per item; with a sink, stream them to a wav file as generate.py does."""
    generator = torch.Generator().manual_seed(0)
    cond = conditioning(model, samples, batch)
    if impl == "naive":
        generate_naive(model, samples, batch, generator=generator, **cond)
        return {}
    rss = []
    with sf.SoundFile(sink, "w", 16000, batch, "PCM_16") if sink else _null() as f:
        for chunk in generate(model, samples, batch, generator=generator, impl=impl,
                              threads=threads, **cond):
            if f is not None:
                f.write(mulaw.decode(chunk.cpu()).t().numpy())
            rss.append(rss_mb())
    return {"rss_first_chunk_mb": round(rss[0], 1), "rss_last_chunk_mb": round(rss[-1], 1)}


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    parser.add_argument("--samples", type=int, default=4000, help="per item, cached impls")
    parser.add_argument("--naive-samples", type=int, default=30, help="per item, naive impl")
    parser.add_argument("--seconds", type=float, help="long mode: this much 16 kHz audio per "
                        "item, streamed to a temporary wav (cached impls only)")
    parser.add_argument("--model", default="wavenet", help="conf/model/NAME.yaml, random weights")
    parser.add_argument("--checkpoint", help="benchmark a trained checkpoint instead of --model")
    parser.add_argument("--condition", choices=["none", "speaker", "mel", "both"],
                        default="none", help="conditioning added to --model")
    parser.add_argument("--impl", choices=[*PATHS, "all"], default="all")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--warmup", type=int, default=100, help="untimed steps before timing")
    args = parser.parse_args()
    for name in ("batch", "threads", "samples", "naive_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    torch.set_num_threads(args.threads)
    name, model = build(args.model, args.checkpoint, args.condition)
    model = model.to(args.device, DTYPES[args.dtype])
    compiled_ok = numba_kernel.available() and args.device == "cpu" and args.dtype != "bfloat16"
    impls = [i for i in PATHS if i != "compiled" or compiled_ok] if args.impl == "all" \
        else [args.impl]
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        for impl in impls:
            if impl == "naive":
                samples = args.naive_samples
            elif args.seconds:
                samples = int(args.seconds * 16000)
            else:
                samples = args.samples
            run(model, impl, min(args.warmup, samples), args.batch, args.threads)
            start = time.perf_counter()
            extra = run(model, impl, samples, args.batch, args.threads,
                        Path(tmp) / "out.wav" if args.seconds and impl != "naive" else None)
            seconds = time.perf_counter() - start
            print(json.dumps({
                "impl": PATHS[impl], "path": "forward" if impl == "naive" else impl,
                "model": name, "batch": args.batch, "threads": args.threads,
                "samples": samples, "samples_per_s": round(args.batch * samples / seconds, 1),
                "seconds": round(seconds, 3), "device": args.device, "dtype": args.dtype,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                **extra, "torch": torch.__version__, "receptive_field": model.receptive_field,
                "params": sum(p.numel() for p in model.parameters()),
                "speaker_conditioned": model.speaker_embed is not None,
                "mel_conditioned": model.upsampler is not None,
            }), flush=True)


if __name__ == "__main__":
    main()
