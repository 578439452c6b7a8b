"""End to end through the real command-line tools: train, resume, generate, a sweep, a missing
folder, the shipped model."""

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf


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


def test_train_resume_generate(tmp_path, small_data, cli):
    run = tmp_path / "run"
    args = [*TRAIN, f"data.root={small_data}", f"hydra.run.dir={run}"]
    cli("wavenet-train", *args, "train.max_steps=6", "train.val_every=3", cwd=tmp_path)
    first = metrics(run)
    assert [m["step"] for m in first if "val_bits" in m] == [3, 6]
    assert all(k in first[-1] for k in ("step", "train_bits", "val_bits", "lr", "samples_per_s"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert sorted(p.name for p in (run / "samples").glob("*.wav")) == ["step_0000003.wav",
                                                                      "step_0000006.wav"]
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "samples" / "step_0000006.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same run dir, more steps: resume=auto continues at step 6.
    proc = cli("wavenet-train", *args, "train.max_steps=10", "train.val_every=5", cwd=tmp_path)
    assert "resumed from" in proc.stderr + proc.stdout
    steps = [m["step"] for m in metrics(run)]
    assert steps[: len(first)] == [m["step"] for m in first]
    assert min(steps[len(first):]) > 6 and steps[-1] == 10

    out = tmp_path / "gen"
    proc = cli("wavenet-generate", f"checkpoint={run / 'checkpoints' / 'last.pt'}", "seconds=0.1",
               "batch=2", f"out={out}", "progress=false", cwd=tmp_path)
    paths = [Path(p) for p in proc.stdout.split()]
    assert len(paths) == 2
    for p in paths:
        audio, rate = sf.read(p)
        info = sf.info(p)
        assert rate == 16000 and info.subtype == "PCM_16" and len(audio) == 1600
        assert audio.std() > 0  # not all silence

    prime = next(small_data.iterdir())
    proc = cli("wavenet-generate", f"checkpoint={run / 'checkpoints' / 'best.pt'}",
               "seconds=0.05", f"prime={prime}", "prime_seconds=0.02", f"out={out}",
               "seed=3", "progress=false", cwd=tmp_path)
    audio, _ = sf.read(proc.stdout.split()[0])
    primed, _ = sf.read(prime)
    assert len(audio) == 320 + 800
    # The output starts with the μ-law-quantized end of the prime.
    assert abs(audio[:320] - primed[-320:]).max() < 0.05


def test_multirun_sweep_trains_each_setting(tmp_path, small_data, cli):
    sweep = tmp_path / "sweep"
    cli("wavenet-train", "-m", *TRAIN, f"data.root={small_data}", "train.max_steps=2",
        "train.val_every=2", "train.sample_seconds=0", "train.lr=0.001,0.01",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2
    for run in runs:
        assert (run / "checkpoints" / "last.pt").is_file()
        assert metrics(run)[-1]["step"] == 2


def test_train_on_a_missing_folder_is_one_line(tmp_path, cli):
    proc = cli("wavenet-train", *TRAIN, f"data.root={tmp_path / 'nowhere'}",
               f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, ok=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "nowhere" in errors[0], proc.stderr


def test_generate_without_a_checkpoint_uses_the_shipped_model(tmp_path, cli):
    from wavenet.config import PRETRAINED

    assert PRETRAINED.is_file(), f"{PRETRAINED} is not in the repository"
    proc = cli("wavenet-generate", "seconds=0.05", f"out={tmp_path}", "progress=false",
               cwd=tmp_path)
    (path,) = proc.stdout.split()
    audio, rate = sf.read(path)
    assert rate == 16000 and len(audio) == 800 and audio.std() > 0
