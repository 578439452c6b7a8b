"""wavenet-train: rejected configs, blocked or shared run dirs, bad resumes.

What every case holds: tests/bad_inputs.py.
"""

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bad_inputs import TRAIN, one_line, snapshot
from tools import env, exe

import wavenet.cli.train as train_cli

# ---------------------------------------------------------------------------- wavenet-train


TRAIN_CASES = [
    ("model.blocks=0", ["model.blocks"]),
    ("model.blocks=three", ["model.blocks", "three"]),
    ("model.residual_channels=0", ["model.residual_channels", "0"]),
    ("model.skip_channels=-8", ["model.skip_channels", "-8"]),
    ("model.layers_per_block=0", ["model.layers_per_block"]),  # no dilations at all
    ("train.max_bad_steps=0", ["train.max_bad_steps"]),
    ("model.residual_channels=1048576", ["model.residual_channels"]),
    ("model.layers_per_block=40", ["model.layers_per_block"]),
    ("model.classes=1", ["model.classes"]),
    ("model.kernel_size=1", ["model.kernel_size"]),
    ("model.gate_channels=7", ["model.gate_channels"]),
    ("model.speaker_channels=-1", ["model.speaker_channels"]),
    ("model.mel.n_mels=-1", ["model.mel.n_mels"]),
    ("model.mel.hop_length=100", ["model.mel.upsample"]),
    ("model.mel.fmin=nan", ["model.mel.fmin"]),
    ("model.mel.fmax=inf", ["model.mel.fmax"]),
    ("train.lr=inf", ["train.lr", "inf"]),
    ("train.lr=nan", ["train.lr", "nan"]),
    ("train.lr=0", ["train.lr"]),
    ("train.lr=-1", ["train.lr"]),
    ("train.grad_clip=nan", ["train.grad_clip", "nan"]),
    ("train.grad_clip=-1", ["train.grad_clip"]),
    ("train.checkpoint_minutes=nan", ["train.checkpoint_minutes", "nan"]),
    ("train.checkpoint_minutes=inf", ["train.checkpoint_minutes"]),
    ("train.weight_decay=nan", ["train.weight_decay"]),
    ("train.min_lr_ratio=2", ["train.min_lr_ratio"]),
    ("train.ema_decay=1", ["train.ema_decay"]),
    ("train.ema_decay=nan", ["train.ema_decay"]),
    ("train.sample_seconds=inf", ["train.sample_seconds"]),
    ("train.sample_temperature=nan", ["train.sample_temperature"]),
    ("train.max_steps=0", ["train.max_steps"]),
    ("train.batch_size=0", ["train.batch_size"]),
    # A step beyond any machine's memory: refused before any work, not after filling RAM.
    ("train.batch_size=65536", ["train.batch_size=65536", "GiB", "available"]),
    ("data.crop=16777216", ["data.crop=16777216", "GiB", "available"]),
    ("train.accumulate=0", ["train.accumulate"]),
    ("train.threads=-1", ["train.threads"]),
    ("train.seed=-1", ["train.seed"]),
    ("train.precision=fp8", ["train.precision", "fp8"]),
    ("train.device=tpu", ["train.device", "tpu"]),
    ("train.lr_schedule=linear", ["train.lr_schedule", "linear"]),
    ("train.resume=", ["train.resume"]),
    ("train.init=", ["train.init"]),
    ("data.val_fraction=nan", ["data.val_fraction"]),
    ("data.val_fraction=1", ["data.val_fraction"]),
    ("data.sample_rate=0", ["data.sample_rate"]),
    ("data.crop=0", ["data.crop"]),
    ("data.trim_db=nan", ["data.trim_db"]),
    ("data.trim_db=3", ["data.trim_db"]),
    ("data.layout=xml", ["data.layout", "xml"]),
    ("data.val_crops=0", ["data.val_crops"]),
    ("+train.colour=red", ["train.colour"]),
    ("train.max_stpes=3", ["max_stpes"]),
    ("model=huge", ["model/huge"]),
    ("logger=wandb", ["logger", "wandb"]),
    ("model.output=laplace", ["model.output", "laplace"]),
    ("model.mixtures=0", ["model.mixtures"]),
]
# Wrong only against the finished run: another output cannot resume its categorical checkpoint.
RESUME_CASES = [
    ("model.output=mol", ["last.pt", "'output': 'categorical'", "'output': 'mol'"]),
]


def train_in_process(monkeypatch, cwd: Path, *args: str):
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["wavenet-train", *args])
    return train_cli.main


# Every case aims at the finished run; a quarter also at a new run dir (keeps the file fast).
TRAIN_TARGETS = [(*case, "existing") for case in TRAIN_CASES + RESUME_CASES] + [
    (*case, "new") for case in TRAIN_CASES[::4]
]


@pytest.mark.parametrize(
    "override,names,target", TRAIN_TARGETS, ids=[f"{c[0]}-{c[2]}" for c in TRAIN_TARGETS]
)
def test_train_rejected_config_touches_no_run_dir(
    world, capsys, monkeypatch, tmp_path, override, names, target
):
    run = world["run"] if target == "existing" else tmp_path / "runs" / "new"
    before = snapshot(world["base"])
    call = train_in_process(
        monkeypatch,
        tmp_path,
        *TRAIN,
        f"data.root={world['data']}",
        f"hydra.run.dir={run}",
        override,
    )
    one_line(capsys, call, names=["wavenet-train: error:", *names])
    assert snapshot(world["base"]) == before
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["tiny.pt", "tiny.pt/run"])
def test_train_run_dir_in_the_way_of_a_file(world, capsys, monkeypatch, tmp_path, where):
    before = snapshot(world["base"])
    call = train_in_process(
        monkeypatch,
        tmp_path,
        *TRAIN,
        f"data.root={world['data']}",
        f"hydra.run.dir={world['base'] / where}",
    )
    one_line(capsys, call, names=["tiny.pt"])
    assert snapshot(world["base"]) == before


def _train_proc(world, run: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [exe("wavenet-train"), *TRAIN, f"data.root={world['data']}", f"hydra.run.dir={run}", *args],
        cwd=world["base"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_two_runs_on_one_dir_the_second_is_refused(world, tmp_path, capsys, monkeypatch):
    run = tmp_path / "shared_run"
    first = _train_proc(
        world, run, "train.max_steps=100000", "train.val_every=100000", "train.checkpoint_every=5"
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()[1][-2000:]
            time.sleep(0.2)
        second = train_in_process(
            monkeypatch,
            world["base"],
            *TRAIN,
            f"data.root={world['data']}",
            f"hydra.run.dir={run}",
            "train.seed=1",
        )  # another process holds the lock: this one
        one_line(capsys, second, names=[str(run), f"pid {first.pid}"])
        assert first.poll() is None  # the first is untouched and still training
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err[-2000:]
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "seed: 0" in config and "seed: 1" not in config
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step logged twice


def test_kill_9_during_start_up_leaves_no_stale_lock(world, tmp_path, monkeypatch):
    run = tmp_path / "killed"
    proc = _train_proc(world, run)
    deadline = time.monotonic() + 60
    while not (run / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=60)
    train_in_process(
        monkeypatch, world["base"], *TRAIN, f"data.root={world['data']}", f"hydra.run.dir={run}"
    )()  # returns: the run took the lock and finished
    assert (run / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize(
    "damage,names",
    [
        ("nan", ["last.pt", "NaN"]),
        ("no_optimizer", ["last.pt", "optimizer"]),
        ("other_model", ["last.pt", "differs"]),
        ("no_data", ["no_such_data"]),
    ],
)
def test_resume_from_a_bad_checkpoint_changes_nothing(
    world, tmp_path, damage, names, capsys, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    if damage == "nan":
        ckpt["model"]["head.3.weight"].fill_(math.nan)
    elif damage == "no_optimizer":
        del ckpt["optimizer"]
    torch.save(ckpt, last)
    before = snapshot(run)
    other = ["model.residual_channels=8"] if damage == "other_model" else []
    data = tmp_path / "no_such_data" if damage == "no_data" else world["data"]
    call = train_in_process(
        monkeypatch,
        world["base"],
        *TRAIN,
        f"data.root={data}",
        f"hydra.run.dir={run}",
        "train.max_steps=4",
        *other,
    )
    one_line(capsys, call, names=["wavenet-train: error:", *names])
    assert snapshot(run) == before


def test_resume_from_a_named_bad_checkpoint(world, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    run = tmp_path / "fresh_run"
    call = train_in_process(
        monkeypatch,
        world["base"],
        *TRAIN,
        f"data.root={world['data']}",
        f"hydra.run.dir={run}",
        f"train.resume={bad}",
    )
    one_line(capsys, call, names=["bad.pt"])
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing but the lock


@pytest.mark.parametrize(
    "override,names",
    [
        (
            "model.residual_channels=8",
            ["last.pt", "train.init", "residual_channels=", "configured 8"],
        ),
        ("data.preemphasis=0.5", ["last.pt", "train.init", "preemphasis 0.0", "configured 0.5"]),
        (
            "data.sample_rate=8000",
            ["last.pt", "train.init", "sample_rate 16000", "configured 8000"],
        ),
    ],
)
def test_init_from_another_model_writes_nothing(
    world, tmp_path, override, names, capsys, monkeypatch
):
    """train.init names a checkpoint of another model, rate or pre-emphasis: one line naming
    it and what differs, before anything but the lock is written."""
    run, init = tmp_path / "fresh_run", world["run"] / "checkpoints" / "last.pt"
    call = train_in_process(
        monkeypatch,
        world["base"],
        *TRAIN,
        f"data.root={world['data']}",
        f"hydra.run.dir={run}",
        f"train.init={init}",
        override,
    )
    one_line(capsys, call, names=["wavenet-train: error:", *names])
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


@pytest.mark.parametrize("args", [["hydra.run.dir="], ["-m", "hydra.sweep.dir= "]])
def test_an_empty_run_dir_is_refused_before_the_current_dir_is_touched(
    world, capsys, monkeypatch, tmp_path, args
):
    """An empty hydra.run.dir (or sweep dir) would make the current directory the run's, its
    files resumed from or overwritten; -m after the overrides means a sweep as before them."""
    (tmp_path / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    call = train_in_process(
        monkeypatch, tmp_path, *TRAIN, f"data.root={world['data']}", *args[::-1]
    )
    one_line(capsys, call, names=["wavenet-train: error:", args[-1].split("=")[0], "empty"])
    assert snapshot(tmp_path) == before
