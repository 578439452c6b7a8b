"""Faults and bad input through the command-line tools: every one either survived or a one-line
error with a non-zero exit and no traceback. wavenet-train runs as a real process (Hydra's
command line, signals, exit codes); wavenet-generate's checks run its main() in process."""

import json
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tools
import torch
import torchaudio.functional as AF
from bad_inputs import one_line
from builders import save_model_checkpoint
from tools import exe, one_line_error

import wavenet.cli.train as train_cli
from wavenet import WaveNet, checkpoint, mulaw
from wavenet.config import PROJECT_DIR
from wavenet.data.dataset import read_audio

TRAIN = [
    "model=tiny",
    "data.crop=100",
    "data.val_crops=2",
    "train.batch_size=2",
    "train.sample_seconds=0",
    "train.threads=1",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def utterance(demo_root) -> tuple[np.ndarray, int]:
    """One real utterance, (time,) float32 at 16 kHz."""
    audio, rate = sf.read(sorted((demo_root / "wavs").glob("*.flac"))[0], dtype="float32")
    return audio, rate


def resampled(utterance: tuple[np.ndarray, int], rate: int) -> np.ndarray:
    audio, old = utterance
    return AF.resample(torch.from_numpy(audio), old, rate).numpy()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = WaveNet(
        blocks=1, layers_per_block=3, residual_channels=4, gate_channels=8, skip_channels=8
    )
    return save_model_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model)


# ------------------------------------------------------------------------------------ config


def test_bad_config_is_one_line_from_the_real_process(tmp_path, demo_root, cli):
    """The console script's own exit code and stderr (every other bad setting is checked in
    process, tests/cli/test_bad_train.py)."""
    run = tmp_path / "run"
    proc = cli(
        "wavenet-train",
        *TRAIN,
        "train.max_steps=2",
        "model.blocks=three",
        f"data.root={demo_root}",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        ok=False,
    )
    one_line_error(proc, "wavenet-train: error:", "model.blocks", "three")
    assert not (run / "data_report.json").exists()  # the data were never read


def test_help_and_printing_the_config_still_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, expected in (
        (["--help"], "Configuration groups"),
        (["model=tiny", "train.checkpoint_every=7", "--cfg", "job"], "checkpoint_every: 7"),
    ):
        monkeypatch.setattr(sys, "argv", ["wavenet-train", *args])
        try:
            train_cli.main()
        except SystemExit as e:
            assert e.code in (0, None), capsys.readouterr().err
        assert expected in capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # neither wrote a run dir


# -------------------------------------------------------------------------------------- data


def test_mixed_dataset_trains_on_the_usable_files_and_reports_the_rest(tmp_path, utterance, cli):
    data = tmp_path / "data"
    data.mkdir()
    good = {
        "stereo_44k.wav": (np.stack([resampled(utterance, 44100)] * 2, axis=1), 44100, "PCM_16"),
        "u8_8k.wav": (resampled(utterance, 8000), 8000, "PCM_U8"),
        "s24_22k.flac": (resampled(utterance, 22050), 22050, "PCM_24"),
        "s32_48k.wav": (resampled(utterance, 48000), 48000, "PCM_32"),
        "float_16k.wav": (utterance[0], 16000, "FLOAT"),
    }
    for name, (audio, rate, subtype) in good.items():
        sf.write(data / name, audio, rate, subtype=subtype)
    nan = utterance[0].copy()
    nan[1000] = np.nan
    sf.write(data / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(data / "short.wav", utterance[0][:30], 16000)  # tiny's receptive field is 64
    (data / "corrupt.flac").write_bytes(random.Random(0).randbytes(4096))
    (data / "empty.wav").write_bytes(b"")
    (data / "notes.wav").write_text("not audio, despite the name\n")
    bad = {
        "nan.wav": "NaN",
        "short.wav": "too short",
        "corrupt.flac": "cannot read audio",
        "empty.wav": "cannot read audio",
        "notes.wav": "cannot read audio",
        "missing.wav": "file not found",
    }
    names = sorted(good) + sorted(bad)
    (data / "metadata.csv").write_text("file,speaker\n" + "".join(f"{n},s\n" for n in names))

    run = tmp_path / "run"
    proc = cli(
        "wavenet-train",
        *TRAIN,
        "train.max_steps=2",
        f"data.root={data}",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 2
    report = json.loads((run / "data_report.json").read_text())
    assert sorted(report["train"] + report["validation"]) == sorted(good)
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert reasons.keys() == bad.keys()
    for name, reason in bad.items():
        assert reason in reasons[name], (name, reasons[name])
    for name in bad:
        assert f"skipped {name}" in proc.stdout  # also in the log


@pytest.mark.parametrize(
    "layout,names",
    [
        ("empty", ["no audio files"]),
        ("corrupt", ["no usable audio", "bad.wav", "cannot read audio"]),
        ("missing", ["no usable audio", "gone.wav", "file not found"]),
    ],
)
def test_dataset_with_nothing_usable_is_one_line(tmp_path, layout, names, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    if layout == "corrupt":
        (data / "bad.wav").write_bytes(random.Random(1).randbytes(1000))
    elif layout == "missing":
        (data / "metadata.csv").write_text("file,speaker\ngone.wav,a\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        ["wavenet-train", *TRAIN, f"data.root={data}", f"hydra.run.dir={tmp_path / 'run'}"],
    )
    one_line(capsys, train_cli.main, names=("wavenet-train: error:", str(data), *names))


# ------------------------------------------------------------------------------- checkpoints


class _Payload:
    """Pickles to a call that would create a file when unpickled."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def evil_checkpoint(path: Path, target: Path) -> Path:
    torch.save(
        {
            "format": checkpoint.FORMAT,
            "version": 1,
            "model": _Payload(target),
            "model_config": {},
            "sample_rate": 16000,
            "step": 0,
        },
        path,
    )
    return path


def test_malicious_checkpoint_never_runs_through_either_tool(tmp_path, speech, cli, cli_main):
    live = tmp_path / "live"  # the payload is real: an unsafe load runs it
    torch.load(evil_checkpoint(tmp_path / "live.pt", live), weights_only=False)
    assert live.exists()
    target = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", target)
    with pytest.raises(pickle.UnpicklingError):  # weights_only refuses it, as the tools do
        torch.load(evil, weights_only=True)
    proc = cli_main("wavenet-generate", f"checkpoint={evil}", "seconds=0.01", f"out={tmp_path}")
    one_line_error(proc, "wavenet-generate: error:", "evil.pt")
    proc = cli(
        "wavenet-train",
        *TRAIN,
        f"data.root={speech}",
        f"train.resume={evil}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        ok=False,
    )
    one_line_error(proc, "wavenet-train: error:", "evil.pt")
    assert not target.exists()


@pytest.mark.parametrize(
    "damage,names",
    [
        ("truncated", ["truncated.pt", "not a readable wavenet checkpoint"]),
        ("newer", ["newer.pt", "newer than this wavenet reads"]),
    ],
)
def test_damaged_or_newer_checkpoint_is_one_line(
    tmp_path, tiny_checkpoint, damage, names, cli_main
):
    path = tmp_path / f"{damage}.pt"
    if damage == "truncated":
        data = tiny_checkpoint.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        ckpt = checkpoint.load(tiny_checkpoint)
        torch.save({**ckpt, "version": checkpoint.VERSION + 1}, path)
    proc = cli_main("wavenet-generate", f"checkpoint={path}", "seconds=0.01", f"out={tmp_path}")
    one_line_error(proc, "wavenet-generate: error:", *names)


# -------------------------------------------------------------------------------- generation


def test_prime_at_another_rate_and_layout_is_resampled(
    tmp_path, tiny_checkpoint, utterance, cli_main
):
    audio_8k = resampled(utterance, 8000)
    loudest = int(np.argmax(np.convolve(audio_8k**2, np.ones(800), "valid")))
    prime = tmp_path / "prime_8k_stereo.wav"  # ends with its loudest 0.1 s
    sf.write(prime, np.stack([audio_8k[: loudest + 800]] * 2, axis=1), 8000, subtype="PCM_16")
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={tiny_checkpoint}",
        f"prime={prime}",
        "prime_seconds=0.1",
        "seconds=0.05",
        f"out={tmp_path / 'out'}",
        "progress=false",
    )
    assert proc.returncode == 0, proc.stderr
    audio, rate = sf.read(proc.stdout.split()[0])
    assert rate == 16000 and len(audio) == 1600 + 800
    # The output starts with the prime's last 0.1 s, down-mixed and resampled to 16 kHz, then
    # μ-law quantized: exactly (to 16-bit PCM) what read_audio and the μ-law round trip give.
    tail = read_audio(prime, 16000)[-1600:]
    assert tail.pow(2).mean().sqrt() > 0.05  # loud: an offset or a wrong rate shows
    assert np.abs(audio[:1600] - mulaw.decode(mulaw.encode(tail)).numpy()).max() <= 1 / 32767
    independent = resampled((audio_8k[: loudest + 800], 8000), 16000)[-1600:]
    assert np.corrcoef(audio[:1600], independent)[0, 1] > 0.99


@pytest.mark.parametrize(
    "args,names",
    [
        (["temperature=-0.5"], ["temperature", "-0.5"]),
        (["seconds=0"], ["seconds", "0"]),
        (["batch=-2"], ["batch", "-2"]),
        (["prime=/nonexistent/prime.wav"], ["/nonexistent/prime.wav"]),
        (["prime=README.md"], ["README.md", "cannot read audio"]),
    ],
)
def test_bad_generation_arguments_are_one_line(
    tmp_path, tiny_checkpoint, args, names, cli_main, monkeypatch
):
    monkeypatch.chdir(PROJECT_DIR)  # prime=README.md
    proc = cli_main(
        "wavenet-generate", f"checkpoint={tiny_checkpoint}", *args, f"out={tmp_path / 'out'}"
    )
    one_line_error(proc, "wavenet-generate: error:", *names)


# ------------------------------------------------------------------------ signals and losses


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signal_saves_last_checkpoint_and_exits_cleanly(
    tmp_path, speech, signum, code, capsys, monkeypatch
):
    run = tmp_path / "run"
    args = [
        *TRAIN,
        f"data.root={speech}",
        "train.log_every=1",
        "train.checkpoint_every=0",
        "train.checkpoint_minutes=0",
        f"hydra.run.dir={run}",
    ]
    proc = subprocess.Popen(
        [exe("wavenet-train"), *args, "train.max_steps=100000"],
        cwd=tmp_path,
        env=tools.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics = run / "metrics.jsonl"
        deadline = time.monotonic() + 60
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    completed = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    line = one_line_error(completed, f"stopped by {signal.Signals(signum).name}", code=code)
    step = checkpoint.load(run / "checkpoints" / "last.pt")["step"]
    assert f"at step {step};" in line
    assert json.loads(metrics.read_text().splitlines()[-1])["step"] == step
    if signum == signal.SIGINT:
        return  # resuming is the same either way; once is enough
    monkeypatch.chdir(tmp_path)  # resumes in this process
    monkeypatch.setattr(sys, "argv", ["wavenet-train", *args, f"train.max_steps={step + 2}"])
    capsys.readouterr()
    train_cli.main()
    out = capsys.readouterr().out
    assert f"at step {step}" in out and "resumed from" in out, out


def test_diverging_run_stops_after_max_bad_steps(tmp_path, speech, cli):
    run = tmp_path / "run"
    proc = cli(
        "wavenet-train",
        *TRAIN,
        f"data.root={speech}",
        "train.lr=1e30",
        "train.warmup_steps=0",
        "train.max_steps=50",
        "train.max_bad_steps=3",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        ok=False,
    )
    one_line_error(proc, "3 steps in a row with a non-finite loss", "last.pt", code=1)
    assert proc.stdout.count("update skipped") == 3
    step = checkpoint.load(run / "checkpoints" / "last.pt")["step"]
    assert f"after step {step}:" in proc.stderr


# ------------------------------------------------------------------------------------ kill -9


@pytest.mark.slow
def test_kill_drill_three_rounds(tmp_path):
    """scripts/fault_drill.py: SIGKILL at a random moment, during a checkpoint write and during
    training (one round of each; `--runs 20` for the full drill, docs/reliability.md)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_DIR / "scripts" / "fault_drill.py"),
            "--runs",
            "3",
            "--steps",
            "150",
            "--workdir",
            str(tmp_path),
        ],
        env=tools.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["kills"] == 3, counts
    # The second round's kill cut a checkpoint write (its temporary file was left): else the
    # drill never tested what the atomic write is for.
    assert counts["kills_during_checkpoint_write"] >= 1, counts
    assert counts["corrupt_checkpoints"] == counts["corrupt_files"] == 0, counts
    assert counts["resume_mismatches"] == 0 and counts["resumes"] >= 1, counts
    assert counts["matches_uninterrupted"], counts
