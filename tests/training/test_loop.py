"""The training loop's guarantees, in process: the checkpoints it writes, exact resume after a
crash, signals, non-finite losses, failing checkpoint writes and the data report."""

import errno
import json
import logging
import math
import os
import shutil
import signal
from pathlib import Path

import pytest
import soundfile
import torch
from builders import TINY_TRAIN
from tools import importable, require

from wavenet import checkpoint
from wavenet.data.dataset import CropSampler
from wavenet.errors import Interrupted, TrainingStopped
from wavenet.training import loop as train

LOOP = [*TINY_TRAIN, "train.batch_size=2", "train.max_steps=8", "train.checkpoint_every=3"]


@pytest.fixture
def run(train_run):
    """run(run_dir, data, *overrides): train_run with a tiny config (validation only at the
    end, log every step, last.pt every 3 steps)."""
    return lambda run_dir, data, *overrides: train_run(
        run_dir, *LOOP, f"data.root={data}", *overrides
    )


def losses(run_dir: Path) -> list[tuple[int, float, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(m["step"], m["train_bits"], m["lr"]) for m in map(json.loads, lines)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def sample_hook(monkeypatch, action) -> list[int]:
    """Call action(n) before the n-th training batch is drawn (1-based); returns the call log."""
    calls: list[int] = []
    original = CropSampler.draw

    def draw(self, batch):
        calls.append(len(calls) + 1)
        action(len(calls))
        return original(self, batch)

    monkeypatch.setattr(CropSampler, "draw", draw)
    return calls


def test_last_checkpoint_every_n_steps_and_at_the_end(tmp_path, speech, monkeypatch, run):
    saved: list[tuple[str, int]] = []
    real_save = checkpoint.save
    monkeypatch.setattr(
        checkpoint,
        "save",
        lambda path, payload: (
            saved.append((Path(path).name, payload["step"])),
            real_save(path, payload),
        ),
    )
    run(tmp_path, speech, "train.max_steps=7")
    assert saved == [("last.pt", 3), ("last.pt", 6), ("best.pt", 7), ("last.pt", 7)]
    report = json.loads((tmp_path / "data_report.json").read_text())
    used = sorted(report["train"] + report["validation"])
    assert used == sorted(p.name for p in speech.iterdir()) and report["skipped"] == []


def test_resume_after_a_crash_is_exact(tmp_path, speech, monkeypatch, run):
    reference = tmp_path / "reference"
    run(reference, speech)

    crashed = tmp_path / "crashed"

    def crash_at_step_6(n):
        if n == 6:  # steps 1-5 done and logged; last.pt holds step 3
            raise RuntimeError("simulated crash")

    sample_hook(monkeypatch, crash_at_step_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(crashed, speech)
    monkeypatch.undo()
    assert checkpoint.load(crashed / "checkpoints" / "last.pt")["step"] == 3
    assert [s for s, _, _ in losses(crashed)] == [1, 2, 3, 4, 5]
    stale = crashed / "checkpoints" / ".last.pt.abc123.tmp"  # as a kill during a write leaves
    stale.write_bytes(b"half a checkpoint")

    run(crashed, speech)
    assert not stale.exists()
    assert losses(crashed) == losses(reference)  # steps 4-5 logged once, identically
    for name in ("last.pt", "best.pt"):
        assert same_weights(
            weights(crashed / "checkpoints" / name), weights(reference / "checkpoints" / name)
        )
    resumed = checkpoint.load(crashed / "checkpoints" / "last.pt")
    expected = checkpoint.load(reference / "checkpoints" / "last.pt")
    assert torch.equal(resumed["crops"]["generator"], expected["crops"]["generator"])
    assert resumed["scheduler"] == expected["scheduler"]


@pytest.mark.parametrize("signum,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signal_saves_a_checkpoint_and_stops(tmp_path, speech, monkeypatch, signum, exit_code, run):
    before = signal.getsignal(signum)
    sample_hook(monkeypatch, lambda n: n == 5 and signal.raise_signal(signum))
    with pytest.raises(Interrupted) as stop:
        run(tmp_path, speech)
    assert stop.value.exit_code == exit_code
    assert "step 5" in str(stop.value)
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 5  # after step 5
    assert signal.getsignal(signum) == before


def test_second_sigint_stops_at_once_without_a_partial_checkpoint(
    tmp_path, speech, monkeypatch, run
):
    before = signal.getsignal(signal.SIGINT)

    def impatient(n):
        if n == 5:
            signal.raise_signal(signal.SIGINT)  # stop after this step, please
            signal.raise_signal(signal.SIGINT)  # now!

    sample_hook(monkeypatch, impatient)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, speech)
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 3  # the scheduled one
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.pt"]
    assert signal.getsignal(signal.SIGINT) == before


def nan_hook(monkeypatch, bad_calls) -> None:
    """Make the loss NaN on the given (1-based) training forward passes."""
    original = train.bits_per_sample
    calls = [0]

    def bits(model, batch):
        loss = original(model, batch)
        if model.training:
            calls[0] += 1
            if calls[0] in bad_calls:
                return loss * math.nan
        return loss

    monkeypatch.setattr(train, "bits_per_sample", bits)


def test_non_finite_losses_are_skipped_and_reported(tmp_path, speech, monkeypatch, caplog, run):
    nan_hook(monkeypatch, {3, 4})
    calls = sample_hook(monkeypatch, lambda n: None)
    with caplog.at_level(logging.WARNING, logger="wavenet.train"):
        record = run(tmp_path, speech, "train.max_steps=5", "train.max_bad_steps=3")
    assert record["step"] == 5 and len(calls) == 7  # two batches skipped, five steps taken
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert warnings == [
        "step 3: non-finite loss nan, update skipped (1 in a row)",
        "step 3: non-finite loss nan, update skipped (2 in a row)",
    ]
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "checkpoints/last.pt").values())


def test_a_validation_above_the_bigram_after_learning_is_reported_as_divergence(
    tmp_path, speech, monkeypatch, caplog, run
):
    """A finite loss that stops learning (too high an lr) is named in the log and the metrics;
    best.pt keeps the step that had learned."""
    figures = iter([1.5, 7.5, 7.9])  # below any speech bigram, then above it
    monkeypatch.setattr(train, "validate", lambda model, crops, batch_size: next(figures))
    with caplog.at_level(logging.WARNING, logger="wavenet.train"):
        run(tmp_path, speech, "train.max_steps=6", "train.val_every=2")
    records = [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if "val_bits" in line
    ]
    assert [r["val_bits"] for r in records] == [1.5, 7.5, 7.9]
    assert [r.get("diverged", False) for r in records] == [False, True, True]
    warnings = [r.getMessage() for r in caplog.records if "diverged" in r.getMessage()]
    assert len(warnings) == 2 and "after reaching 1.500" in warnings[0]
    assert "train.lr" in warnings[0]
    assert checkpoint.load(tmp_path / "checkpoints/best.pt")["step"] == 2


@pytest.mark.parametrize(
    "val_bits,best,bigram,diverged",
    [
        (4.0, math.inf, 5.0, False),  # the first validation
        (6.0, math.inf, 5.0, False),  # never below the bigram yet: still learning, not diverged
        (4.5, 4.0, 5.0, False),  # worse than the best, still below the bigram
        (5.5, 4.0, 5.0, True),
    ],
)
def test_divergence_needs_a_run_that_had_learned(val_bits, best, bigram, diverged):
    assert (train.divergence(val_bits, best, bigram) is not None) == diverged


@pytest.mark.parametrize(
    "flags,asked,trains,warned",
    [
        ({"avx2", "avx512_bf16"}, "auto", "bf16", False),  # AVX512-BF16 (AMD Zen 4)
        ({"avx2", "amx_bf16"}, "auto", "bf16", False),  # AMX (Intel Sapphire Rapids on)
        ({"avx2", "fma"}, "auto", "fp32", False),  # no native bf16 (AMD Zen 3)
        ({"avx2", "fma"}, "bf16", "bf16", True),  # asked for: kept, but warned
        ({"avx2", "fma"}, "fp32", "fp32", False),
    ],
)
def test_precision_auto_picks_bf16_only_where_the_cpu_has_it(flags, asked, trains, warned, caplog):
    with caplog.at_level(logging.WARNING, logger=train.log.name):
        assert train.resolve_precision(asked, torch.device("cpu"), flags) == trains
    assert any("without native bfloat16" in r.message for r in caplog.records) == warned


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n"
    )
    assert train.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert train.cpu_flags(str(tmp_path / "absent")) == set()


def test_too_many_non_finite_losses_stop_with_the_last_good_checkpoint(
    tmp_path, speech, monkeypatch, run
):
    nan_hook(monkeypatch, set(range(3, 100)))
    states: list[tuple[int, dict]] = []
    real_save = checkpoint.save
    monkeypatch.setattr(
        checkpoint,
        "save",
        lambda path, payload: (
            states.append((payload["step"], payload["model"])),
            real_save(path, payload),
        ),
    )
    with pytest.raises(TrainingStopped, match="3 steps in a row") as stop:
        run(tmp_path, speech, "train.checkpoint_every=1", "train.max_bad_steps=3")
    assert "after step 2" in str(stop.value) and "last.pt" in str(stop.value)
    assert "\n" not in str(stop.value)
    last = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert last["step"] == 2
    good = dict(states)[2]  # saved by the schedule right after step 2
    assert same_weights(last["model"], good)


def test_failing_checkpoint_write_keeps_the_previous_one(tmp_path, speech, monkeypatch, run):
    real_fdopen = os.fdopen
    writes = [0]

    class FullDisk:
        """A file that takes half of what it is given, then reports a full disk."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        writes[0] += 1
        return FullDisk(f) if writes[0] > 2 else f  # data_report.json, last.pt at 3, then full

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(checkpoint.CheckpointWriteError) as err:
        run(tmp_path, speech)
    monkeypatch.undo()
    message = str(err.value)
    assert "last.pt" in message and "No space left on device" in message, message
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.pt"]


def test_unreadable_file_is_skipped_and_reported(tmp_path, speech, monkeypatch, run):
    # Tests run as root, where chmod 000 does not stop reads: simulate the permission error.
    data = tmp_path / "data"
    shutil.copytree(speech, data)
    locked = sorted(data.iterdir())[0]
    real_open = soundfile.SoundFile

    def open_(path, *args, **kwargs):  # how wavenet.data.audio opens every file
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(soundfile, "SoundFile", open_)
    run(tmp_path / "run", data, "train.max_steps=1")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert [s["file"] for s in report["skipped"]] == [locked.name]
    assert "Permission denied" in report["skipped"][0]["reason"]
    assert len(report["train"] + report["validation"]) == 3


def test_tensorboard_logger_writes_scalars_audio_and_spectrograms(tmp_path, speech, run):
    require(
        importable("tensorboard"),
        "tensorboard is not installed: pip install 'wavenet[tensorboard]'",
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(
        tmp_path,
        speech,
        "logger=tensorboard",
        "train.max_steps=4",
        "train.val_every=4",
        "data.crop=600",  # a validation clip long enough for a spectrogram
        "train.sample_seconds=0.1",
    )
    events = EventAccumulator(
        str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "audio": 0, "images": 0}
    ).Reload()
    tags = events.Tags()
    assert {"train_bits", "val_bits", "lr"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train_bits")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("val_bits")] == [4]
    assert tags["audio"] == ["sample"] and tags["images"] == ["spectrograms"]


def test_resume_never_starts_afresh_beside_a_checkpoint(tmp_path, speech, run):
    """train.resume=never in a run dir whose last.pt is at step 3 trains from step 0 (auto would
    find nothing left to do at max_steps=2 and keep step 3)."""
    reference, again = tmp_path / "reference", tmp_path / "again"
    run(reference, speech, "train.max_steps=2")
    run(again, speech, "train.max_steps=3")
    earlier = (again / "metrics.jsonl").read_text()
    run(again, speech, "train.max_steps=2", "train.resume=never")
    last = checkpoint.load(again / "checkpoints" / "last.pt")
    assert last["step"] == 2
    assert same_weights(last["model"], weights(reference / "checkpoints" / "last.pt"))
    # The first run's records are kept beside the new run's, not cut to step 0.
    assert (again / "metrics.1.jsonl").read_text() == earlier
    steps = [
        json.loads(line)["step"] for line in (again / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2]


def test_resume_from_a_path_continues_that_run_exactly(tmp_path, speech, run):
    """train.resume=PATH in a new run dir continues the run PATH came from: 3 steps there, 3
    here, equal to 6 steps at once (a schedule that does not depend on max_steps)."""
    schedule = ["train.lr_schedule=inverse_sqrt", "train.warmup_steps=2"]
    straight, first, second = tmp_path / "straight", tmp_path / "first", tmp_path / "second"
    run(straight, speech, *schedule, "train.max_steps=6")
    run(first, speech, *schedule, "train.max_steps=3")
    run(
        second,
        speech,
        *schedule,
        "train.max_steps=6",
        f"train.resume={first / 'checkpoints' / 'last.pt'}",
    )
    assert [s for s, _, _ in losses(second)] == [4, 5, 6]
    assert losses(second) == losses(straight)[3:]
    assert same_weights(
        weights(second / "checkpoints" / "last.pt"), weights(straight / "checkpoints" / "last.pt")
    )
    assert checkpoint.load(first / "checkpoints" / "last.pt")["step"] == 3  # left as it was


def test_init_starts_a_fresh_run_from_another_runs_weights(tmp_path, speech, run):
    """train.init=PATH: step 0 with PATH's weights (an lr of 1e-30 keeps them through a step),
    a fresh optimizer; a run without it starts elsewhere; a resumed run ignores it."""
    source, tuned, fresh = tmp_path / "source", tmp_path / "tuned", tmp_path / "fresh"
    run(source, speech, "train.max_steps=3", "train.sample_temperature=0.5")
    start = weights(source / "checkpoints" / "last.pt")
    still = ["train.lr=1e-30", "train.max_steps=1"]
    run(tuned, speech, *still, f"train.init={source / 'checkpoints' / 'last.pt'}")
    run(fresh, speech, *still)
    tuned_last = checkpoint.load(tuned / "checkpoints" / "last.pt")
    assert tuned_last["step"] == 1 and [s for s, _, _ in losses(tuned)] == [1]
    assert all(torch.allclose(tuned_last["model"][k], start[k], atol=1e-6) for k in start)
    assert not same_weights(weights(fresh / "checkpoints" / "last.pt"), start)
    assert tuned_last["optimizer"]["state"][0]["step"] == 1  # a fresh optimizer (source: 3)
    # Resuming the tuned run continues it; train.init (another run now) is not read again.
    run(
        tuned,
        speech,
        "train.lr=1e-30",
        "train.max_steps=2",
        f"train.init={fresh / 'checkpoints' / 'last.pt'}",
    )
    resumed = checkpoint.load(tuned / "checkpoints" / "last.pt")
    assert resumed["step"] == 2 and [s for s, _, _ in losses(tuned)] == [1, 2]
    assert all(torch.allclose(resumed["model"][k], start[k], atol=1e-6) for k in start)


def test_checkpoints_carry_the_sample_temperature(tmp_path, speech, run):
    """train.sample_temperature is saved as the checkpoint's temperature, kept by export, and
    export can set another."""
    run(tmp_path, speech, "train.max_steps=1", "train.sample_temperature=0.7")
    last = tmp_path / "checkpoints" / "last.pt"
    assert checkpoint.temperature(checkpoint.load(last)) == 0.7
    assert checkpoint.export(last, tmp_path / "slim.pt")["temperature"] == 0.7
    checkpoint.export(last, tmp_path / "cold.pt", temperature=0.25)
    assert checkpoint.temperature(checkpoint.load(tmp_path / "cold.pt")) == 0.25
    with pytest.raises(ValueError, match="temperature"):
        checkpoint.export(last, tmp_path / "bad.pt", temperature=-1)
