"""Checkpoint -> wav files: `wavenet-generate checkpoint=PATH seconds=2 batch=1 ...`.

Arguments are key=value pairs checked against `GenerateConfig`. Output is streamed to 16-bit PCM
wav files chunk by chunk, so long generations run in flat memory.
"""

from contextlib import ExitStack
from pathlib import Path

import soundfile as sf
import torch

from wavenet import checkpoint, mulaw
from wavenet.cli import parse_key_values, run_tool
from wavenet.config import GenerateConfig
from wavenet.data import read_audio
from wavenet.sampler import generate

USAGE = """usage: wavenet-generate [checkpoint=PATH] [seconds=2] [batch=1] [temperature=1.0]
                        [seed=0] [prime=WAV] [prime_seconds=1.0] [out=DIR]
                        [impl=auto|compiled|reference] [threads=0] [progress=true]
checkpoint defaults to the shipped model, data/pretrained/asterisk4-small.pt"""


def run(cfg: GenerateConfig) -> list[Path]:
    """Generate `cfg.batch` wav files into `cfg.out`; returns their paths."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ckpt = checkpoint.load(cfg.checkpoint)
    model = checkpoint.build_model(ckpt)
    rate, classes = ckpt["sample_rate"], model.config.classes

    prime = None
    if cfg.prime:
        audio = read_audio(cfg.prime, rate)[-int(cfg.prime_seconds * rate):]
        prime = mulaw.encode(audio, classes).expand(cfg.batch, -1)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(cfg.checkpoint).stem
    paths = [out / f"{stem}_seed{cfg.seed}_{i}.wav" for i in range(cfg.batch)]
    gen = torch.Generator().manual_seed(cfg.seed)
    with ExitStack() as stack:
        files = [stack.enter_context(sf.SoundFile(p, "w", rate, 1, "PCM_16")) for p in paths]
        if prime is not None:  # outputs continue the prime, so it starts each file
            for f in files:
                f.write(mulaw.decode(prime[0], classes).numpy())
        for chunk in generate(model, int(cfg.seconds * rate), cfg.batch, cfg.temperature, prime,
                              gen, progress=cfg.progress, impl=cfg.impl):
            for f, row in zip(files, mulaw.decode(chunk, classes).numpy(), strict=True):
                f.write(row)
    return paths


def _main(argv: list[str]) -> None:
    for path in run(parse_key_values(GenerateConfig, argv)):
        print(path)


def main(argv: list[str] | None = None) -> None:
    """wavenet-generate: prints each generated path; user errors print one line, exit 2."""
    run_tool("wavenet-generate", USAGE, _main, argv)


if __name__ == "__main__":
    main()
