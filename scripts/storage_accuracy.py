"""The accuracy gate of compressed weight storage: held-out bits/sample with each storage.

    python scripts/storage_accuracy.py --checkpoint data/pretrained/asterisk4-small.pt \
        --root ../shared/speech/asterisk4 --threads 2

Scores the held-out files of the root (split_by_file(..., 0.1), the split the shipped models
were trained with) in two ways, one JSON line per storage and way, each with its difference to
float32 (`minus_float32`):
  scored_by "forward"  the teacher-forced forward pass (wavenet.metrics.evaluate) of the model
                       with the weights each storage multiplies by (kernel.rounded_model);
  scored_by "kernel"   the compiled sampler path of that storage itself, fed the files' codes
                       (wavenet.sampling.cached.score): everything the path does, such as the
                       int8 path's rounding of each matrix input to int16 levels, is in it
                       (categorical outputs; --no-kernel skips these).
A storage passes when both are within 0.01 bits/sample of float32's forward pass.
"""

import argparse
import json
import math
import time

import torch
from machine import cpu_model

from wavenet import checkpoint, mulaw
from wavenet.data.dataset import load_dataset, speaker_ids, split_by_file
from wavenet.metrics.evaluate import evaluate
from wavenet.model.features import log_mel, usable_samples
from wavenet.sampling import kernel
from wavenet.sampling.cached import STORAGE, score
from wavenet.sampling.kernel import STORAGES, rounded_model

GATE = 0.01  # bits/sample
IMPL = {storage: impl for impl, storage in STORAGE.items()}


def kernel_bits(model, held_out, ckpt, storage: str, threads: int) -> tuple[float, int, int]:
    """(bits per code, files, codes scored) of the held-out files scored through the `storage`
    compiled path; files of fewer than 2 samples are skipped, as `evaluate` skips them."""
    cfg, rate = model.config, ckpt["sample_rate"]
    total, count, files = 0.0, 0, 0
    for utterance in held_out:
        audio = utterance.audio
        mel = None
        if model.upsampler is not None:
            audio = audio[: usable_samples(len(audio), cfg.mel)]
            mel = log_mel(audio, rate, cfg.mel)[None]
        speaker = None
        if model.speaker_embed is not None:
            speaker = speaker_ids(checkpoint.speakers(ckpt), [utterance.speaker])
        codes = cfg.codec.encode(mulaw.preemphasis(audio, checkpoint.preemphasis(ckpt)))
        if codes.numel() < 2:
            continue
        total += float(score(model, codes[None], IMPL[storage], threads, speaker, mel)[0])
        count += codes.numel() - 1
        files += 1
    return total / count / math.log(2), files, count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--root", required=True, help="dataset whose held-out files are scored")
    p.add_argument("--files", type=int, default=0, help="first N held-out files (0 = all)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-kernel", action="store_true", help="skip the compiled paths' scores")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = checkpoint.load(args.checkpoint)
    model = checkpoint.build_model(ckpt, args.checkpoint)
    dataset = load_dataset(args.root, ckpt["sample_rate"], min_samples=2)
    held_out = split_by_file(dataset.utterances, 0.1)[1][: args.files or None]
    reference = None

    def report(storage: str, way: str, bits: float, files: int, samples: int, start: float) -> None:
        print(
            json.dumps(
                {
                    "checkpoint": args.checkpoint,
                    "storage": storage,
                    "scored_by": way,
                    "bits_per_sample": round(bits, 5),
                    "minus_float32": round(bits - reference, 5),
                    "passes": abs(bits - reference) <= GATE,
                    "files": files,
                    "samples": samples,
                    "cpu": cpu_model(),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            ),
            flush=True,
        )

    for storage in STORAGES:
        start = time.perf_counter()
        result = evaluate(
            rounded_model(model, storage),
            held_out,
            batch=4,
            speakers=checkpoint.speakers(ckpt),
            sample_rate=ckpt["sample_rate"],
            preemphasis=checkpoint.preemphasis(ckpt),
        )
        reference = result["bits_per_sample"] if reference is None else reference
        report(
            storage, "forward", result["bits_per_sample"], result["files"], result["samples"], start
        )
    kernel_runs = kernel.available() and model.config.output == "categorical" and not args.no_kernel
    for storage in STORAGES if kernel_runs else ():
        if storage == "int8" and not kernel.int8_dot_available():
            continue
        start = time.perf_counter()
        bits, files, samples = kernel_bits(model, held_out, ckpt, storage, args.threads or 1)
        report(storage, "kernel", bits, files, samples, start)


if __name__ == "__main__":
    main()
