"""wavenet-evaluate: exact whole-file bits/sample, chunked and batched, and the real CLI."""

import json
import math
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tools import run_tool

from wavenet import checkpoint, mulaw
from wavenet.cli.common import register
from wavenet.cli.evaluate import main
from wavenet.config import CONF_DIR
from wavenet.data.dataset import Utterance, load_dataset, split_by_file
from wavenet.metrics.evaluate import chunk_windows, evaluate
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.training.loop import train

TINY = dict(blocks=1, layers_per_block=6, kernel_size=2, residual_channels=16, gate_channels=32,
            skip_channels=32)  # conf/model/tiny.yaml; receptive field 64
TWO_BLOCKS_K3 = {**TINY, "blocks": 2, "layers_per_block": 5, "kernel_size": 3}  # field 125


@pytest.fixture(scope="module")
def demo(demo_root, tmp_path_factory) -> list[Utterance]:
    """Every demo utterance at 16 kHz (decoded once for the module)."""
    cache = tmp_path_factory.mktemp("cache")
    return load_dataset(demo_root, 16000, cache_dir=cache).utterances


@pytest.fixture(scope="module")
def long_utterance(demo) -> Utterance:
    """About 10 s of real speech: the first demo files end to end, as one file."""
    audio = torch.cat([u.audio for u in demo[:4]])
    assert 8 * 16000 < len(audio) < 14 * 16000
    return Utterance("long.flac", "", audio)


def random_model(config: dict, dtype: torch.dtype = torch.float32) -> WaveNet:
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig(**config)).to(dtype).eval()
    with torch.no_grad():  # sharper than the initial weights, so every input sample matters
        for p in model.parameters():
            p.mul_(3)
    return model


def whole_file_bits(model: WaveNet, audio: torch.Tensor) -> float:
    """The definition: one forward pass over the file, positions 1.. scored, in bits/sample."""
    seq = mulaw.encode(audio, model.config.classes)
    with torch.no_grad():
        logits = model(seq[None])[0, :, 1:].t()
    nll = F.cross_entropy(logits, seq[1:], reduction="none").double().sum().item()
    return nll / (len(seq) - 1) / math.log(2)


def test_chunk_windows_cover_every_position_once():
    windows = chunk_windows(2500, 1000, 64)
    assert windows == [(0, 1, 1001), (937, 1001, 2001), (1937, 2001, 2500)]
    assert chunk_windows(1, 1000, 64) == []  # a single sample has nothing to predict
    assert chunk_windows(30, 10, 64) == [(0, 1, 11), (0, 11, 21), (0, 21, 30)]


@pytest.mark.parametrize("config", [TINY, TWO_BLOCKS_K3], ids=["tiny", "2blocks_k3"])
def test_chunked_equals_one_pass_over_a_long_file(config, long_utterance, monkeypatch):
    # float64 makes "equal" sharp: a chunk one sample short of context is caught below.
    model = random_model(config, torch.float64)
    utterance = Utterance("part.flac", "", long_utterance.audio[: 6 * 16000])
    reference = whole_file_bits(model, utterance.audio)
    chunked = evaluate(model, [utterance], batch=8, chunk=500)
    assert chunked["samples"] == len(utterance.audio) - 1
    assert chunked["bits_per_sample"] == pytest.approx(reference, rel=1e-13)

    # The check can fail: one sample less of left context per chunk changes the result.
    short = model.receptive_field - 1
    monkeypatch.setattr(WaveNet, "receptive_field", property(lambda self: short))
    wrong = evaluate(model, [utterance], batch=8, chunk=500)["bits_per_sample"]
    print(f"one sample short of context: off by {abs(wrong - reference) / reference:.1e}")
    assert abs(wrong - reference) > 1e-12 * reference


def test_chunked_equals_one_pass_in_float32(long_utterance):
    model = random_model(TINY)
    reference = whole_file_bits(model, long_utterance.audio)
    for chunk in (1000, 10**7):
        result = evaluate(model, [long_utterance], batch=8, chunk=chunk)
        assert result["bits_per_sample"] == pytest.approx(reference, rel=1e-6)


def test_batched_equals_file_by_file(demo):
    # The two shortest files of each speaker (0.5 to 1.5 s); chunk 5000 splits them unevenly,
    # so batches mix chunks of different files and lengths, right-padded and masked.
    files = []
    for speaker in sorted({u.speaker for u in demo}):
        files += sorted((u for u in demo if u.speaker == speaker), key=lambda u: len(u.audio))[:2]
    model = random_model(TINY)
    batched = evaluate(model, files, batch=4, chunk=5000)
    alone = [evaluate(model, [u], batch=1, chunk=5000) for u in files]

    assert batched["files"] == len(files)
    assert batched["samples"] == sum(r["samples"] for r in alone) == sum(len(u.audio) - 1
                                                                         for u in files)
    total = sum(r["bits_per_sample"] * r["samples"] for r in alone)
    assert batched["bits_per_sample"] == pytest.approx(total / batched["samples"], rel=1e-6)
    assert sorted(batched["per_speaker"]) == sorted({u.speaker for u in files})
    for speaker, bits in batched["per_speaker"].items():
        mine = [r for r, u in zip(alone, files, strict=True) if u.speaker == speaker]
        expected = sum(r["bits_per_sample"] * r["samples"] for r in mine) / sum(
            r["samples"] for r in mine)
        assert bits == pytest.approx(expected, rel=1e-6)


def test_result_keys_and_reference_points(long_utterance):
    result = evaluate(random_model(TINY), [long_utterance], chunk=4000)
    assert result["uniform_bits_per_sample"] == 8.0
    assert result["per_speaker"] == {"": result["bits_per_sample"]}
    assert result["files"] == 1
    assert 6.0 < result["unigram_bits_per_sample"] < 8.0
    with pytest.raises(ValueError, match="chunk"):
        evaluate(random_model(TINY), [long_utterance], chunk=0)
    with pytest.raises(ValueError, match="nothing to score"):
        evaluate(random_model(TINY), [Utterance("one.wav", "", torch.zeros(1))])


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory) -> Path:
    """last.pt of a tiny model trained in-process for 150 steps on data/demo (~15 s)."""
    register()
    run = tmp_path_factory.mktemp("run")
    overrides = ["model=tiny", f"data.root={demo_root}", "data.crop=1000",
                 f"data.cache_dir={tmp_path_factory.mktemp('cache')}",
                 "train.max_steps=150", "train.batch_size=8", "train.lr=5e-3",
                 "train.warmup_steps=20", "train.val_every=150", "train.sample_seconds=0",
                 "train.threads=1", "train.progress=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        dcfg = compose("config", overrides=overrides)
    train(OmegaConf.to_object(dcfg), run, OmegaConf.to_container(dcfg, resolve=True))
    torch.set_num_threads(1)
    return run / "checkpoints" / "last.pt"


def test_trained_tiny_model_beats_the_unigram_entropy(trained, demo):
    # Scored on the files training held out (scoring all 265 s takes 20 s on one thread).
    model = checkpoint.build_model(checkpoint.load(trained))
    _, held_out = split_by_file(demo, 0.1)
    result = evaluate(model, held_out, batch=8, chunk=16384)
    print(json.dumps(result))
    assert result["files"] == len(held_out) >= 5
    assert result["bits_per_sample"] < result["unigram_bits_per_sample"] < 8.0
    assert all(bits < result["unigram_bits_per_sample"] for bits in result["per_speaker"].values())


# --- the command line --------------------------------------------------------------------------

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_tool("wavenet-evaluate", *args, cwd=cwd)


@pytest.fixture(scope="module")
def small_set(demo_root, tmp_path_factory) -> Path:
    """Four demo files of two speakers, with a metadata.csv."""
    root = tmp_path_factory.mktemp("speech")
    rows = [line.split(",") for line in (demo_root / "metadata.csv").read_text().splitlines()[1:]]
    chosen = [r for r in rows if r[1] == "allison"][:2] + [r for r in rows if r[1] == "june"][:2]
    (root / "wavs").mkdir()
    for name, _, _ in chosen:
        shutil.copy(demo_root / name, root / name)
    (root / "metadata.csv").write_text("file,speaker\n" + "".join(f"{r[0]},{r[1]}\n"
                                                                  for r in chosen))
    return root


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    model = random_model(TINY)
    checkpoint.save(path, {"model": model.state_dict(), "model_config": asdict(model.config),
                           "sample_rate": 16000, "step": 0})
    return path


def test_cli_prints_and_writes_json(random_checkpoint, small_set, tmp_path):
    out = tmp_path / "results" / "eval.json"
    proc = cli(f"checkpoint={random_checkpoint}", f"data.root={small_set}", "batch=2",
               "chunk=8000", f"json_out={out}", "progress=false", "threads=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert json.loads(out.read_text()) == result
    for key in ("bits_per_sample", "per_speaker", "samples", "files", "uniform_bits_per_sample",
                "unigram_bits_per_sample"):
        assert key in result, key
    assert result["files"] == 4 and sorted(result["per_speaker"]) == ["allison", "june"]
    # The same numbers as the function, rounded to 5 decimals.
    utterances = load_dataset(small_set, 16000, min_samples=2).utterances
    direct = evaluate(random_model(TINY), utterances, chunk=8000)
    assert result["samples"] == direct["samples"]
    assert result["bits_per_sample"] == pytest.approx(direct["bits_per_sample"], abs=1e-5)


def test_cli_accepts_the_json_out_flag(random_checkpoint, small_set, tmp_path):
    out = tmp_path / "flag.json"
    proc = cli(f"checkpoint={random_checkpoint}", f"data.root={small_set}", "--json-out",
               str(out), "progress=false", "threads=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == json.loads(proc.stdout)


@pytest.mark.parametrize("make_args,match", [
    (lambda ck, data, tmp: [f"checkpoint={data / 'metadata.csv'}", f"data.root={data}"],
     "metadata.csv"),
    (lambda ck, data, tmp: [f"checkpoint={ck}", f"data.root={tmp / 'nowhere'}"], "nowhere"),
])
def test_cli_user_errors_are_one_line(make_args, match, random_checkpoint, small_set, tmp_path):
    proc = cli(*make_args(random_checkpoint, small_set, tmp_path), "progress=false", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wavenet-evaluate: error:") and match in lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("args,match", [
    (["data.root=x"], "checkpoint"),
    (["checkpoint=x.pt"], "data.root"),
    (["checkpoint=x.pt", "data.root=x", "batch=0"], "batch"),
    (["checkpoint=x.pt", "data.root=x", "chunk=-5"], "chunk"),
    (["checkpoint=x.pt", "data.root=x", "colour=red"], "colour"),
    (["stray"], "key=value"),
    (["checkpoint=/nonexistent/x.pt", "data.root=x"], "checkpoint not found"),
])
def test_bad_arguments_are_one_line(args, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
