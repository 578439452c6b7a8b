"""End to end through the real command-line tools: train, resume, generate, a sweep, a missing
folder, the shipped model."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tools
import torch
import yaml
from bad_inputs import one_line

import wavenet.cli.train as train_cli
from wavenet import checkpoint, mulaw
from wavenet.sampling.cached import generate


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, demo_root) -> Path:
    """Eight real demo utterances (two per speaker) in a plain folder, no metadata.csv."""
    root = tmp_path_factory.mktemp("speech")
    names = sorted((demo_root / "wavs").glob("*.flac"))
    by_speaker: dict[str, list[Path]] = {}
    for p in names:
        by_speaker.setdefault(p.name.split("_")[3], []).append(p)
    for files in by_speaker.values():
        for p in files[:2]:
            shutil.copy(p, root / p.name)
    return root


TRAIN = ["model=tiny", "train=quick", "train.progress=false", "data.crop=500"]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_resume_generate(tmp_path, small_data, cli, cli_main, train_run):
    """The real wavenet-train process, then resume and generation in process."""
    run = tmp_path / "run"
    args = [*TRAIN, f"data.root={small_data}", f"hydra.run.dir={run}"]
    cli("wavenet-train", *args, "train.max_steps=6", "train.val_every=3", cwd=tmp_path)
    first = metrics(run)
    assert [m["step"] for m in first if "val_bits" in m] == [3, 6]
    assert all(k in first[-1] for k in ("step", "train_bits", "val_bits", "lr", "samples_per_s"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert sorted(p.name for p in (run / "samples").glob("*.wav")) == [
        "step_0000003.wav",
        "step_0000006.wav",
    ]
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "samples" / "step_0000006.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same run dir, more steps: resume=auto continues at step 6.
    train_run(run, *TRAIN, f"data.root={small_data}", "train.max_steps=10", "train.val_every=5")
    steps = [m["step"] for m in metrics(run)]
    assert steps[: len(first)] == [m["step"] for m in first]
    assert min(steps[len(first) :]) > 6 and steps[-1] == 10

    out = tmp_path / "gen"
    last = run / "checkpoints" / "last.pt"
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={last}",
        "seconds=0.1",
        "batch=2",
        f"out={out}",
        "progress=false",
        "impl=reference",
        ok=True,
    )
    paths = [Path(p) for p in proc.stdout.split()]
    assert len(paths) == 2
    # The files hold what the checkpoint's model draws with seed 0, row by row, as 16-bit PCM.
    model = checkpoint.build_model(checkpoint.load(last))
    drawn = torch.cat(
        list(
            generate(model, 1600, 2, generator=torch.Generator().manual_seed(0), impl="reference")
        ),
        dim=1,
    )
    for p, row in zip(paths, mulaw.decode(drawn).numpy(), strict=True):
        audio, rate = sf.read(p)
        assert rate == 16000 and sf.info(p).subtype == "PCM_16" and len(audio) == 1600
        assert np.abs(audio - row).max() <= 1 / 32767

    # A prime from the loud middle of an utterance (a quiet end would hide an offset).
    speech, rate = sf.read(next(small_data.iterdir()), dtype="float32")
    loudest = int(np.argmax(np.convolve(speech**2, np.ones(320), "valid")))
    prime = tmp_path / "prime.wav"
    sf.write(prime, speech[: loudest + 320], rate, subtype="FLOAT")
    tail = torch.from_numpy(speech[loudest : loudest + 320])
    assert tail.pow(2).mean().sqrt() > 0.05
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={run / 'checkpoints' / 'best.pt'}",
        "seconds=0.05",
        f"prime={prime}",
        "prime_seconds=0.02",
        f"out={out}",
        "seed=3",
        "progress=false",
        ok=True,
    )
    audio, _ = sf.read(proc.stdout.split()[0])
    assert len(audio) == 320 + 800
    # The output starts with the prime's last 320 samples, μ-law quantized (then 16-bit PCM).
    assert np.abs(audio[:320] - mulaw.decode(mulaw.encode(tail)).numpy()).max() <= 1 / 32767


def test_multirun_sweep_trains_each_setting(tmp_path, small_data, cli):
    sweep = tmp_path / "sweep"
    cli(
        "wavenet-train",
        "-m",
        *TRAIN,
        f"data.root={small_data}",
        "train.max_steps=2",
        "train.val_every=2",
        "train.sample_seconds=0",
        "train.lr=0.001,0.01",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2
    # Each run trained with its own setting: its overrides, its composed config, its checkpoint
    # and the rate it logged (the same schedule, so 10 times the other's at every step).
    logged = {}
    for run in runs:
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        [lr] = [float(o.split("=", 1)[1]) for o in overrides if o.startswith("train.lr=")]
        assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["train"]["lr"] == lr
        ckpt = checkpoint.load(run / "checkpoints" / "last.pt")
        assert ckpt["config"]["train"]["lr"] == lr and ckpt["step"] == 2
        records = metrics(run)
        assert records[-1]["step"] == 2
        logged[lr] = [r["lr"] for r in records if "lr" in r]
    assert sorted(logged) == [0.001, 0.01]
    assert logged[0.01] == pytest.approx([10 * x for x in logged[0.001]], rel=1e-6)
    assert logged[0.001]


def test_train_on_a_missing_folder_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "wavenet-train",
            *TRAIN,
            f"data.root={tmp_path / 'nowhere'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    one_line(capsys, train_cli.main, names=("wavenet-train: error:", "nowhere"))


def test_generate_without_a_checkpoint_uses_the_shipped_model(tmp_path, cli_main):
    from wavenet.config import PRETRAINED

    assert PRETRAINED.is_file(), f"{PRETRAINED} is not in the repository"
    proc = cli_main(
        "wavenet-generate", "seconds=0.25", f"out={tmp_path}", "progress=false", ok=True
    )
    (path,) = proc.stdout.split()
    audio, rate = sf.read(path)
    assert rate == 16000 and len(audio) == 4000
    # Speech-like, not noise: neighbouring samples move together (lag-1 autocorrelation 0.7 to
    # 0.99 over seeds 0-3, as in real speech; an untrained model's output is near 0).
    centred = audio - audio.mean()
    lag1 = (centred[1:] * centred[:-1]).sum() / (centred**2).sum()
    assert lag1 > 0.5 and 0.01 < audio.std() < 0.5, (lag1, audio.std())


def test_library_deprecation_notices_stay_off_the_tools_stderr(tmp_path):
    """A new FutureWarning or DeprecationWarning inside torch or numba must not add a line to
    every tool's one-line errors; a warning from this package, or about the input, still shows."""
    code = """if True:
        import warnings
        import wavenet.cli
        for module, category in [("torch._dynamo.x", FutureWarning),
                                 ("numba.core", DeprecationWarning),
                                 ("torch.nn", UserWarning), ("wavenet.x", FutureWarning)]:
            warnings.warn_explicit(f"{module} notice", category, "x.py", 1, module=module)
    """
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=tools.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "x.py:1: UserWarning: torch.nn notice",
        "x.py:1: FutureWarning: wavenet.x notice",
    ]
