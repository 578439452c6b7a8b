"""Figures of training runs: learning curves from metrics.jsonl, real vs generated spectrograms.

Figures are drawn with matplotlib's object API on an Agg canvas: no pyplot, so no display, no
global figure registry to leak from a long training loop, and no backend switch imposed on a
notebook that imports this module. Files are written atomically (temporary file, then rename),
so a viewer never shows a half-written image while training redraws it. matplotlib is
imported by the functions that draw (a second of a training run's start otherwise).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torchaudio.functional as AF

from wavenet.errors import check_regular_file
from wavenet.files import atomic_write
from wavenet.model.features import MelConfig, log_mel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.jsonl"
DPI = 120
# Bounds of what a run logs: a step is an integer in [0, MAX_STEP] (exact as a float); every
# number is within ±MAX_VALUE (bits, seconds, samples/s, a learning rate: none comes near), so
# no axis or tick computation overflows. A finite number outside them is hand-edited or damaged.
MAX_STEP = 2**53
MAX_VALUE = 1e12


def read_metrics(run_dir: str | Path, empty: bool = False) -> list[dict]:
    """The records of `run_dir`/metrics.jsonl, one per step, in step order, with integer steps.

    Unreadable lines (a line cut short by a killed process, bytes that are not text) and
    records without a finite numeric step are skipped; NaN and infinite values (a diverged
    step's) are kept for the reader to leave out; when a step appears twice (a resumed run),
    the later record wins. Raises ValueError naming the directory when it has no metrics.jsonl
    or no record (with `empty`, a file without records gives []: a run just started), the file
    when it is not a regular file, and the line of a number no run writes (see MAX_STEP,
    MAX_VALUE): a damaged file is named, not drawn.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise ValueError(f"{run_dir}: no {METRICS_FILE} (not a wavenet-train run directory?)")
    check_regular_file(path)  # a FIFO would block
    by_step: dict[int, dict] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not _number(record.get("step")):
            continue
        step = record["step"]
        if isinstance(step, float) and not math.isfinite(step):
            continue
        if not (0 <= step <= MAX_STEP and step == int(step)):
            raise ValueError(
                f"{path}, line {number}: step {step!r:.40} is not an integer in [0, 2**53]"
            )
        for key, value in record.items():
            if key != "step" and _beyond(value):
                raise ValueError(
                    f"{path}, line {number}: {key!r:.40} is {value!r:.40}, beyond "
                    f"±{MAX_VALUE:.0e} (no run logs that)"
                )
        by_step[int(step)] = {**record, "step": int(step)}
    if not by_step and not empty:
        raise ValueError(f"{path}: no metrics records")
    return [by_step[step] for step in sorted(by_step)]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _beyond(value: object) -> bool:
    """A number beyond ±MAX_VALUE that is not an infinity (JSON's integers have no bound)."""
    infinite = isinstance(value, float) and math.isinf(value)
    return _number(value) and not infinite and abs(value) > MAX_VALUE


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Legend labels: each directory's name (a sweep's subdir name holds its overrides), or
    parent/name where two runs share a name."""
    names = [Path(d).resolve().name for d in run_dirs]
    return [
        f"{Path(d).resolve().parent.name}/{name}" if names.count(name) > 1 else name
        for d, name in zip(run_dirs, names, strict=True)
    ]


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds < 120:
        return 1.0, "s"
    if seconds < 2 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def _finite(record: dict, key: str) -> bool:
    value = record.get(key)
    return _number(value) and math.isfinite(value)


def bits16_offset(records: list[dict]) -> float | None:
    """What a run adds to its bits per code to give bits per 16-bit sample (`val_bits16` -
    `val_bits`: 0 for 16-bit outputs, ~6 for 8-bit μ-law), None for records without it."""
    for r in records:
        if _finite(r, "val_bits16") and _finite(r, "val_bits"):
            return r["val_bits16"] - r["val_bits"]
    return None


@dataclass(frozen=True)
class Point:
    """One logged value: its step, its wall-clock time (None in records without `wall_s`) and
    bits/sample in the unit of the `Curves` that holds it."""

    step: float
    wall_s: float | None
    bits: float


@dataclass
class Curve:
    """One run's learning curve: train and validation points in step order, and its last
    bigram baseline, all in the unit of the `Curves` that holds it."""

    label: str
    train: list[Point]
    val: list[Point]
    bigram: float | None


@dataclass
class Curves:
    """The learning curves of several runs in one unit (`unit` names it, for the y axis)."""

    runs: list[Curve]
    unit: str


def _points(records: list[dict], metric: str, up: float) -> list[Point]:
    return [
        Point(r["step"], r["wall_s"] if _finite(r, "wall_s") else None, r[metric] + up)
        for r in records
        if _finite(r, "step") and _finite(r, metric)
    ]


def learning_curves(runs: list[tuple[str, list[dict]]]) -> Curves:
    """(label, metrics records) of each run -> their curves in one unit: the one model behind
    the PNG (learning_curves_figure) and the report's chart (wavenet.metrics.report).

    Runs whose codes differ (a μ-law and a 16-bit output) are put in bits per 16-bit sample,
    each shifted by its own `bits16_offset`; otherwise they keep the runs' own unit. Values that
    are not finite numbers are left out. Raises ValueError naming a run that cannot be shifted
    (no `val_bits16`) beside runs whose outputs differ.
    """
    offsets = [bits16_offset(records) for _, records in runs]
    mixed = len({round(o, 3) for o in offsets if o is not None}) > 1
    if mixed and None in offsets:
        missing = [label for (label, _), o in zip(runs, offsets, strict=True) if o is None][0]
        raise ValueError(
            f"{missing}: no val_bits16 in its metrics, so its bits cannot be set "
            "beside the other runs' (their outputs differ); plot it apart"
        )
    sixteen = mixed or all(o is not None and abs(o) < 1e-3 for o in offsets)
    curves = []
    for (label, records), offset in zip(runs, offsets, strict=True):
        up = offset if mixed else 0.0
        bigram = [r["bigram_val_bits"] for r in records if _finite(r, "bigram_val_bits")]
        curves.append(
            Curve(
                label,
                _points(records, "train_bits", up),
                _points(records, "val_bits", up),
                bigram[-1] + up if bigram else None,
            )
        )
    return Curves(curves, "bits / 16-bit sample" if sixteen else "bits / μ-law sample")


def learning_curves_figure(run_dirs: list[Path]) -> Figure:
    """Train and validation bits/sample against step, one colour per run, each run's bigram
    baseline dashed; a second panel against wall time when the records carry `wall_s`.

    The values and their unit come from `learning_curves`."""
    if not run_dirs:
        raise ValueError("no run directories given")
    labels = run_labels(run_dirs)
    curves = learning_curves(list(zip(labels, [read_metrics(d) for d in run_dirs], strict=True)))
    walls = [p.wall_s for c in curves.runs for p in c.train + c.val if p.wall_s is not None]
    panels = [("step", 1.0, "step")]
    if walls:
        scale, unit = _time_unit(max(walls))
        panels.append(("wall_s", scale, f"wall-clock time ({unit})"))

    fig = _figure((5.5 * len(panels) + 3, 4.5))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for k, curve in enumerate(curves.runs):
        color = f"C{k % 10}"
        for ax, (key, scale, _) in zip(axes, panels, strict=True):
            for points, style in (
                (curve.train, dict(lw=1, alpha=0.45)),
                (curve.val, dict(lw=2, marker="o", ms=3)),
            ):
                xy = [
                    (getattr(p, key) / scale, p.bits) for p in points if getattr(p, key) is not None
                ]
                if xy:
                    ax.plot(*zip(*xy, strict=True), color=color, **style)
            if curve.bigram is not None:
                ax.axhline(curve.bigram, color=color, lw=1, ls="--")
    for ax, (_, _, xlabel) in zip(axes, panels, strict=True):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(curves.unit)

    from matplotlib.lines import Line2D

    styles = [
        Line2D([], [], color="gray", lw=1, alpha=0.45, label="train"),
        Line2D([], [], color="gray", lw=2, marker="o", ms=3, label="validation"),
        Line2D([], [], color="gray", lw=1, ls="--", label="bigram baseline"),
    ]
    colors = [
        Line2D([], [], color=f"C{k % 10}", lw=2, label=label) for k, label in enumerate(labels)
    ]
    fig.legend(handles=styles + colors, loc="outside right upper", fontsize="small")
    fig.suptitle("learning curves (lower is better)")
    return fig


def plot_learning_curves(run_dirs: list[Path], out: Path) -> Path:
    """Draw the learning curves of `run_dirs` (see learning_curves_figure) into `out`.

    The format follows out's suffix (.png, .pdf, .svg, ...). Returns `out`. Raises ValueError
    naming a directory without metrics.jsonl, or an unsupported suffix.
    """
    return save_figure(learning_curves_figure([Path(d) for d in run_dirs]), out)


# Spectrograms are drawn in the project's one log-mel convention (wavenet.model.features):
# magnitude, Slaney scale and norm, natural log of max(mel, 1e-5), shown in dB. The analysis is
# finer than a vocoder's (32 ms windows, 8 ms hop, 64 bands) so that short samples still draw.
DB_PER_NEPER = 20.0 / math.log(10.0)  # log-magnitude (natural) -> dB
DB_RANGE = 80.0


def display_mel(sample_rate: int) -> MelConfig:
    """The spectrograms' analysis at `sample_rate`: ~32 ms windows (a power of two), 1/4 hop."""
    n_fft = 2 ** math.ceil(math.log2(0.032 * sample_rate))
    return MelConfig(
        n_mels=64, n_fft=n_fft, win_length=n_fft, hop_length=n_fft // 4, upsample=[n_fft // 4]
    )


def log_mel_db(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """(time,) float waveform -> (n_mels, frames) log-mel magnitude in dB (floor -100 dB)."""
    cfg = display_mel(sample_rate)
    if len(audio) < cfg.n_fft:
        raise ValueError(f"clip too short for a spectrogram: {len(audio)} samples < {cfg.n_fft}")
    return DB_PER_NEPER * log_mel(audio, sample_rate, cfg)


def _band_of(hz: list[float], sample_rate: int) -> list[float]:
    """Fractional mel band index of each frequency: where it falls between band centres."""
    cfg = display_mel(sample_rate)
    n_freqs = cfg.n_fft // 2 + 1
    banks = AF.melscale_fbanks(
        n_freqs, 0.0, sample_rate / 2, cfg.n_mels, sample_rate, norm="slaney", mel_scale="slaney"
    )
    centres = banks.argmax(dim=0).double() * (sample_rate / 2) / (n_freqs - 1)
    return [
        float(
            np.interp(f, centres.numpy(), np.arange(cfg.n_mels) + 0.5, left=0.0, right=cfg.n_mels)
        )
        for f in hz
    ]


def _as_waveform(name: str, audio: torch.Tensor) -> torch.Tensor:
    if audio.dim() == 2 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.dim() != 1 or not audio.is_floating_point():
        raise ValueError(
            f"{name} must be a float waveform (time,) or (1, time), got "
            f"{tuple(audio.shape)} {audio.dtype} (decode μ-law classes first)"
        )
    if not torch.isfinite(audio).all():
        raise ValueError(f"{name} has NaN or infinite samples")
    return audio.detach().cpu()


def spectrograms_figure(
    real: torch.Tensor,
    generated: torch.Tensor,
    sample_rate: int,
    titles: tuple[str, str] = ("real", "generated"),
) -> Figure:
    """Log-mel spectrograms of two clips side by side, on one colour scale (80 dB range)."""
    if sample_rate < 1000:
        raise ValueError(f"sample_rate must be >= 1000 Hz for a spectrogram, got {sample_rate}")
    clips = [_as_waveform("real", real), _as_waveform("generated", generated)]
    specs = [log_mel_db(c, sample_rate) for c in clips]
    top = max(float(s.max()) for s in specs)
    durations = [len(c) / sample_rate for c in clips]
    # Panel widths follow the durations, so one second looks the same in both.
    widths = [max(d, 0.25 * max(durations)) for d in durations]

    fig = _figure((12, 4))
    axes = fig.subplots(1, 2, sharey=True, width_ratios=widths)
    n_mels = specs[0].shape[0]
    ticks = [
        hz for hz in (0, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000) if hz <= sample_rate / 2
    ]
    for ax, spec, duration, title in zip(axes, specs, durations, titles, strict=True):
        image = ax.imshow(
            spec.numpy(),
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(0, duration, 0, n_mels),
            vmin=top - DB_RANGE,
            vmax=top,
        )
        ax.set_title(title)
        ax.set_xlabel("time (s)")
    axes[0].set_yticks(
        _band_of(ticks, sample_rate), [f"{hz // 1000}k" if hz >= 1000 else str(hz) for hz in ticks]
    )
    axes[0].set_ylabel("frequency (Hz, mel scale)")
    fig.colorbar(image, ax=axes, label="magnitude (dB)")
    return fig


def _figure(size: tuple[float, float]) -> Figure:
    """An empty figure of `size` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Render `fig` in the format of out's suffix and write it atomically; returns out."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"{out}: unsupported image format {out.suffix!r} "
            f"(use one of {', '.join('.' + f for f in sorted(supported))})"
        )
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt)
    atomic_write(out, buffer.getvalue(), durable=False)
    return out
