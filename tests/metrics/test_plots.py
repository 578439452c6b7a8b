"""Learning curves and spectrograms (wavenet.metrics.plots): valid images of a sensible size and
clear errors (wavenet-plot: cli/test_plot.py)."""

import json
import math

import numpy as np
import pytest
import torch
from builders import read_png, write_run

from wavenet.data.dataset import read_audio
from wavenet.metrics.plots import (
    learning_curves_figure,
    plot_learning_curves,
    read_metrics,
    save_figure,
    spectrograms_figure,
)


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_learning_curves_png(tmp_path):
    run = write_run(tmp_path / "runs" / "demo")
    out = plot_learning_curves([run], tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png"
    read_png(out)
    assert not list(out.parent.glob(".*.tmp"))  # the temporary file was renamed into place


def test_several_runs_in_one_figure_with_wall_time(tmp_path):
    sweep = tmp_path / "multirun"
    runs = [
        write_run(sweep / "0_train.lr=0.001", wall=True),
        write_run(sweep / "1_train.lr=0.01", wall=True, speed=2.0),
        write_run(sweep / "2_train.lr=0.1", steps=40, speed=3.0),
    ]  # older run: no wall_s
    fig = learning_curves_figure(runs)
    assert len(fig.axes) == 2  # against step, and against wall time
    assert fig.axes[1].get_xlabel() == "wall-clock time (s)"
    labels = legend_texts(fig)
    assert {"0_train.lr=0.001", "1_train.lr=0.01", "2_train.lr=0.1"} <= set(labels)
    assert {"train", "validation", "bigram baseline"} <= set(labels)
    # One colour per run: train, validation and bigram lines of run k share colour Ck.
    step_axes = fig.axes[0]
    colors = {line.get_color() for line in step_axes.get_lines()}
    assert colors == {"C0", "C1", "C2"}
    assert sum(line.get_linestyle() == "--" for line in step_axes.get_lines()) == 3

    wide = read_png(plot_learning_curves(runs, tmp_path / "sweep.png"))
    narrow = read_png(plot_learning_curves(runs[2:], tmp_path / "single.png"))
    assert wide.shape[1] > narrow.shape[1]  # the second panel


def with_bits16(run, offset: float):
    """Give a write_run run's validations val_bits16 = val_bits + offset (as wavenet-train
    logs it: offset ~6 for μ-law codes, 0 for 16-bit ones)."""
    path = run / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        if "val_bits" in r:
            r["val_bits16"] = r["val_bits"] + offset
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_runs_of_different_outputs_are_drawn_in_one_unit(tmp_path):
    mulaw = with_bits16(write_run(tmp_path / "mulaw"), 6.0)
    linear = with_bits16(write_run(tmp_path / "linear"), 0.0)
    fig = learning_curves_figure([mulaw, linear])
    ax = fig.axes[0]
    assert ax.get_ylabel() == "bits / 16-bit sample"
    lines = [line for line in ax.get_lines() if line.get_color() == "C0"]
    val = read_metrics(mulaw)
    # Every curve of the μ-law run, its bigram included, moved up by its own offset.
    drawn = {tuple(np.round(line.get_ydata(), 6)) for line in lines}
    assert tuple(np.round([r["val_bits"] + 6.0 for r in val if "val_bits" in r], 6)) in drawn
    assert tuple(np.round([r["train_bits"] + 6.0 for r in val], 6)) in drawn
    assert (11.2, 11.2) in drawn  # the bigram 5.2 + 6
    linear_val = [line for line in ax.get_lines() if line.get_color() == "C1"]
    assert max(max(line.get_ydata()) for line in linear_val) < 8.5  # the 16-bit run unmoved
    # Alone, each run keeps its own unit.
    assert learning_curves_figure([mulaw]).axes[0].get_ylabel() == "bits / μ-law sample"
    assert learning_curves_figure([linear]).axes[0].get_ylabel() == "bits / 16-bit sample"
    # A run that cannot be converted is named, not silently mixed in.
    with pytest.raises(ValueError, match="old: no val_bits16"):
        learning_curves_figure([mulaw, linear, write_run(tmp_path / "old")])


def test_same_names_get_their_parent_in_the_legend(tmp_path):
    runs = [write_run(tmp_path / "a" / "run"), write_run(tmp_path / "b" / "run")]
    assert {"a/run", "b/run"} <= set(legend_texts(learning_curves_figure(runs)))


def test_metrics_reading_tolerates_a_cut_line_and_resumes(tmp_path):
    run = write_run(tmp_path / "run", steps=20)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 20, "train_bits": 4.0}\n{"step": 25, "train_bi')
    records = read_metrics(run)
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert records[-1]["train_bits"] == 4.0  # the later record of a step wins


def test_missing_or_empty_metrics_are_clear_errors(tmp_path):
    good = write_run(tmp_path / "good")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no metrics\.jsonl"):
        plot_learning_curves([good, tmp_path / "empty"], tmp_path / "x.png")
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="no metrics records"):
        plot_learning_curves([tmp_path / "empty"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="unsupported image format"):
        plot_learning_curves([good], tmp_path / "x.bmpx")
    assert not (tmp_path / "x.png").exists()


def test_curves_of_a_real_training_run(tmp_path, demo_root, train_run):
    """The format wavenet-train writes today, read back: a guard against drift."""
    train_run(
        tmp_path / "run",
        "model=tiny",
        f"data.root={demo_root}",
        "data.crop=200",
        "data.val_crops=2",
        "train.max_steps=4",
        "train.log_every=1",
        "train.val_every=2",
        "train.batch_size=2",
        "train.sample_seconds=0",
        "train.threads=1",
        "train.progress=false",
    )
    fig = learning_curves_figure([tmp_path / "run"])
    lines = fig.axes[0].get_lines()
    assert [len(line.get_xdata()) for line in lines] == [4, 2, 2]  # train, validation, bigram
    read_png(plot_learning_curves([tmp_path / "run"], tmp_path / "curves.png"))


def test_spectrograms_png(tmp_path, demo_root):
    real = read_audio(next((demo_root / "wavs").glob("*.flac")), 16000)
    generated = 0.1 * torch.randn(1, 8000)  # (1, time) is accepted too
    out = save_figure(spectrograms_figure(real, generated, 16000), tmp_path / "spec.png")
    pixels = read_png(out)
    assert pixels.shape[1] > pixels.shape[0]  # two panels side by side

    fig = spectrograms_figure(real, generated, 16000)
    real_ax, generated_ax = fig.axes[:2]
    assert real_ax.get_xlabel() == "time (s)" and "Hz" in real_ax.get_ylabel()
    assert real_ax.get_xlim() == pytest.approx((0, len(real) / 16000))
    assert generated_ax.get_xlim() == pytest.approx((0, 0.5))
    assert [t.get_text() for t in real_ax.get_yticklabels()][-1] == "8k"  # Nyquist


@pytest.mark.parametrize(
    "real,match",
    [
        (torch.zeros(16000, dtype=torch.long), "float waveform"),
        (torch.zeros(2, 16000), "float waveform"),
        (torch.zeros(100), "too short"),
        (torch.full((16000,), math.nan), "NaN"),
    ],
)
def test_spectrogram_bad_input(real, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        spectrograms_figure(real, torch.zeros(16000), 16000)
