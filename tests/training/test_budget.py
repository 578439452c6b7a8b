"""Runs bounded by wall time (train.max_minutes) and the listening scores of validation samples."""

import json
import math

import pytest
from tools import has

from wavenet.config import TrainConfig
from wavenet.metrics import listening
from wavenet.training.loop import lr_factor
from wavenet.training.state import WallClock


def test_the_cosine_runs_over_time_when_progress_is_given():
    # Past the warmup the step no longer matters, only the share of the time spent.
    early = lr_factor(500, 10, 100, 0.1, progress=lambda: 0.0)
    half = lr_factor(5, 10, 100, 0.1, progress=lambda: 0.5)  # still warming up: steps rule
    assert half == pytest.approx(0.6)
    assert early == pytest.approx(1.0)
    assert lr_factor(11, 10, 100, 0.1, progress=lambda: 0.5) == pytest.approx(0.55)
    assert lr_factor(11, 10, 100, 0.1, progress=lambda: 2.0) == pytest.approx(0.1)
    # Without a time budget the cosine runs over steps, as before.
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)


def test_wall_clock_continues_across_a_resume():
    now = [100.0]
    clock = WallClock(lambda: now[0])
    now[0] = 103.0
    assert clock() == pytest.approx(3.0)
    clock.resume(50.0)  # a checkpoint that had trained 50 s
    now[0] = 105.0
    assert clock() == pytest.approx(52.0)


def test_a_run_stops_by_time_and_validates_its_last_step(tmp_path, demo_root, train_run, capfd):
    overrides = [
        "model=tiny",
        "train=quick",
        f"data.root={demo_root}",
        "data.crop=300",
        "train.max_steps=100000",
        "train.max_minutes=0.05",
        "train.val_every=100000",
        "train.log_every=5",
        "train.sample_seconds=0.25",
        "train.threads=1",
        "train.progress=true",
        "train.warmup_steps=2",
    ]
    run = tmp_path / "run"
    train_run(run, *overrides)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    # The progress bar counts the 3 s of the budget, not the 100000 steps, and shows the step.
    bar = capfd.readouterr().err.replace("\r", "\n").splitlines()
    assert any(
        "3/3 s of train.max_minutes" in line and f"step={last['step']}" in line for line in bar
    ), bar[-3:]
    assert not any("/100000" in line for line in bar)
    # Stopped by the 3 s budget, far from max_steps, with a validation and a sample at the end.
    assert 3.0 <= last["wall_s"] < 60 and last["step"] < 100000
    assert "val_bits" in last and (run / "samples" / f"step_{last['step']:07d}.wav").is_file()
    # The schedule reached its floor with the time, not with the steps.
    assert last["lr"] == pytest.approx(TrainConfig.lr * 0.1, rel=0.05)
    if has(listening.available(), f"DNSMOS needs the metrics extra: {listening.INSTALL}"):
        # Every validation's sample is scored by ear (DNSMOS, about 1-5) in the step's record.
        for key in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"):
            assert 0.0 < last[key] <= 5.0 and math.isfinite(last[key])  # fits dip below 1
