"""wavenet-evaluate: exact bits/sample of a checkpoint on every file of a dataset.

    wavenet-evaluate checkpoint=PATH data.root=DIR [batch=8] [chunk=65536] [json_out=FILE]

Arguments are key=value pairs checked against `EvaluateConfig`; the scoring itself is
wavenet.metrics.evaluate.evaluate.
"""

import json
import sys
from pathlib import Path

import torch

from wavenet import checkpoint
from wavenet.cli.common import parse_key_values, run_tool
from wavenet.config import EvaluateConfig
from wavenet.data.dataset import load_dataset
from wavenet.files import atomic_write
from wavenet.metrics.evaluate import evaluate

USAGE = """usage: wavenet-evaluate checkpoint=PATH data.root=DIR [batch=8] [chunk=65536]
                        [json_out=FILE | --json-out FILE] [progress=true] [threads=0]
                        [data.layout=auto] [data.trim_db=null] [data.cache_dir=null]
Prints one JSON line: bits_per_sample and per_speaker (per μ-law or per 16-bit sample, as
"unit" says), bits_per_16bit_sample (every output kind in one unit), samples, files,
uniform_bits_per_sample, unigram_bits_per_sample (and checkpoint, step, data_root)."""


def run(cfg: EvaluateConfig) -> dict:
    """Load the checkpoint and the dataset, evaluate, write `cfg.json_out`; returns the result."""
    if cfg.json_out and Path(cfg.json_out).is_dir():
        raise ValueError(f"json_out={cfg.json_out} is a directory; give a file name")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ckpt = checkpoint.load(cfg.checkpoint)
    model = checkpoint.build_model(ckpt, cfg.checkpoint)
    dataset = load_dataset(
        cfg.data.root,
        ckpt["sample_rate"],
        cfg.data.trim_db,
        min_samples=2,
        cache_dir=cfg.data.cache_dir,
        progress=cfg.progress,
        layout=cfg.data.layout,
    )
    for line in dataset.skipped_lines():
        print(f"wavenet-evaluate: {line}", file=sys.stderr)
    result = evaluate(
        model,
        dataset.utterances,
        cfg.batch,
        cfg.chunk,
        cfg.progress,
        checkpoint.speakers(ckpt),
        ckpt["sample_rate"],
        checkpoint.preemphasis(ckpt),
    )
    result = {
        **{k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()},
        "per_speaker": {k: round(v, 5) for k, v in result["per_speaker"].items()},
        "checkpoint": str(cfg.checkpoint),
        "step": ckpt["step"],
        "data_root": str(cfg.data.root),
        "preemphasis": checkpoint.preemphasis(ckpt),
    }
    if cfg.json_out:
        atomic_write(Path(cfg.json_out), (to_json(result) + "\n").encode(), durable=False)
    return result


def to_json(result: dict) -> str:
    """One JSON line; ValueError for a NaN or infinity, which JSON cannot hold."""
    return json.dumps(result, allow_nan=False)


def _main(argv: list[str]) -> None:
    # `--json-out FILE` is accepted as a spelling of json_out=FILE.
    if "--json-out" in argv:
        i = argv.index("--json-out")
        if i + 1 == len(argv):
            raise ValueError("--json-out needs a file name")
        argv = [*argv[:i], f"json_out={argv[i + 1]}", *argv[i + 2 :]]
    print(to_json(run(parse_key_values(EvaluateConfig, argv))))


def main(argv: list[str] | None = None) -> None:
    """wavenet-evaluate: prints one JSON line; user errors print one line and exit 2."""
    run_tool("wavenet-evaluate", USAGE, _main, argv)


if __name__ == "__main__":
    main()
