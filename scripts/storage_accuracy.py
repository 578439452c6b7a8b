"""The accuracy gate of compressed weight storage: held-out bits/sample with each storage.

    python scripts/storage_accuracy.py --checkpoint data/pretrained/asterisk4-small.pt \
        --root ../shared/speech/asterisk4 --threads 2

Scores the held-out files of the root (split_by_file(..., 0.1), the split the shipped models
were trained with) exactly (wavenet.metrics.evaluate) with the float32 weights and with the
weights each compressed storage of the compiled sampler multiplies by (numba_kernel.
rounded_model), and prints one JSON line per storage with the difference to float32. A storage
passes when it is within 0.01 bits/sample of float32. (The int8 path also rounds each matrix
input to int16 levels; tests/sampling/test_kernels.py bounds that effect on the logits.)
"""

import argparse
import json
import time

import torch
from machine import cpu_model

from wavenet import checkpoint
from wavenet.data.dataset import load_dataset, split_by_file
from wavenet.metrics.evaluate import evaluate
from wavenet.sampling.numba_kernel import STORAGES, rounded_model

GATE = 0.01  # bits/sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--root", required=True, help="dataset whose held-out files are scored")
    p.add_argument("--files", type=int, default=0, help="first N held-out files (0 = all)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = checkpoint.load(args.checkpoint)
    model = checkpoint.build_model(ckpt, args.checkpoint)
    dataset = load_dataset(args.root, ckpt["sample_rate"], min_samples=2)
    held_out = split_by_file(dataset.utterances, 0.1)[1][: args.files or None]
    reference = None
    for storage in STORAGES:
        start = time.perf_counter()
        result = evaluate(rounded_model(model, storage), held_out, batch=4,
                          speakers=checkpoint.speakers(ckpt), sample_rate=ckpt["sample_rate"],
                          preemphasis=checkpoint.preemphasis(ckpt))
        bits = result["bits_per_sample"]
        reference = bits if reference is None else reference
        print(json.dumps({"checkpoint": args.checkpoint, "storage": storage,
                          "bits_per_sample": round(bits, 5),
                          "minus_float32": round(bits - reference, 5),
                          "passes": abs(bits - reference) <= GATE, "files": result["files"],
                          "samples": result["samples"], "cpu": cpu_model(),
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
