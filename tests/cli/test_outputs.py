"""Continuous output distributions through the tools: a checkpoint records its output, and
training, resume, evaluation and generation follow it; every model reports bits per 16-bit
sample."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from wavenet import checkpoint, mulaw
from wavenet.sampling.cached import generate

TRAIN = [
    "model=tiny",
    "train=quick",
    "train.progress=false",
    "data.crop=500",
    "train.sample_seconds=0.05",
    "train.val_every=2",
]


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("output", ["mol", "gaussian"])
def test_a_continuous_model_trains_resumes_evaluates_and_generates(
    output, tmp_path, speech, train_run, cli_main
):
    run = tmp_path / "run"
    args = [*TRAIN, f"model.output={output}", f"data.root={speech}"]
    train_run(run, *args, "train.max_steps=4")
    last = run / "checkpoints" / "last.pt"
    ckpt = checkpoint.load(last)
    assert ckpt["model_config"]["output"] == output
    model = checkpoint.build_model(ckpt)
    assert model.config.codec == mulaw.LINEAR16

    # Validation is per 16-bit sample; so is the bigram it is drawn against (a 256-class μ-law
    # bigram spread over each class's 16-bit values), far above its μ-law figure (~5 bits).
    validated = [r for r in records(run) if "val_bits" in r]
    assert [r["step"] for r in validated] == [2, 4]
    assert all(r["val_bits16"] == r["val_bits"] for r in validated)
    assert 9 < validated[0]["bigram_val_bits"] < 16

    # Resume follows the checkpoint: the same output, steps 5 and 6 on top.
    train_run(run, *args, "train.max_steps=6")
    assert [r["step"] for r in records(run) if "val_bits" in r] == [2, 4, 6]

    proc = cli_main("wavenet-evaluate", f"checkpoint={last}", f"data.root={speech}", ok=True)
    result = json.loads(proc.stdout)
    assert result["unit"] == "16-bit" and result["uniform_bits_per_sample"] == 16.0
    assert result["bits_per_16bit_sample"] == result["bits_per_sample"]
    assert 0 < result["bits_per_sample"] < 20

    out = tmp_path / "gen"
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={last}",
        "seconds=0.05",
        "batch=2",
        f"out={out}",
        "progress=false",
        ok=True,
    )
    paths = proc.stdout.split()
    model = checkpoint.build_model(checkpoint.load(last))
    drawn = torch.cat(
        list(generate(model, 800, 2, generator=torch.Generator().manual_seed(0))), dim=1
    )
    for path, row in zip(paths, drawn, strict=True):
        audio, _ = sf.read(path, dtype="int16")
        assert sf.info(path).subtype == "PCM_16"
        # 16-bit codes are written as they are drawn: sample v = code - 32768, exactly.
        assert np.array_equal(audio.astype(np.int64), (row - 32768).numpy())


def test_categorical_evaluation_reports_the_16bit_unit(demo_run, demo_root, cli_main):
    """bits per 16-bit sample = bits per μ-law sample + the mean log2 of the scored classes'
    widths in 16-bit values (counted here over the 65536 values)."""
    last = demo_run / "checkpoints" / "last.pt"
    files = sorted((demo_root / "wavs").glob("*.flac"))[:2]
    folder = demo_run.parent / "two_files"
    folder.mkdir(exist_ok=True)
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    proc = cli_main("wavenet-evaluate", f"checkpoint={last}", f"data.root={folder}", ok=True)
    result = json.loads(proc.stdout)
    assert result["unit"] == "mulaw"
    width = np.bincount(mulaw.encode(torch.arange(-32768, 32768) / 32768).numpy(), minlength=256)
    scored = np.concatenate(
        [mulaw.encode(torch.from_numpy(sf.read(f, dtype="float32")[0])).numpy()[1:] for f in files]
    )
    offset = np.log2(width[scored]).mean()
    assert result["bits_per_16bit_sample"] == pytest.approx(
        result["bits_per_sample"] + offset, abs=2e-5
    )
    assert 3 < offset < 10
