"""A run's report page: one self-contained HTML file to hear and judge what a run trained.

    write_report(run_dir)               -> run_dir/report.html (one run)
    write_comparison([run, ...], out)   -> out (a sweep: sortable table, curves, latest samples)
    write_comparison(runs, out, ranked=True)  -> a search's trials, best first
    sweep_runs(dir)                     -> the run dirs under a sweep (or search) dir

The page needs no server and no network: CSS, the learning-curve SVG and the little JavaScript
are inline, and audio and spectrograms are relative links to the run's own files, so the page
opens from disk and the folder can be zipped and shared. Audio is never inlined, and older
validations fold into a <details>, so a run with hundreds of validations stays small.

This module reads the run and builds plain data (numbers, strings, relative links); the markup,
style and script are Jinja2 templates in templates/, rendered with autoescape on, so every value
from a config, a file name or JSON is shown as text. Links are URL-quoted here (`_href`). The
learning curves are plots.learning_curves, the model the PNG is drawn from, so both show the same
values in the same unit. Nothing here imports Hydra: the run's YAML is read with PyYAML.
"""

import json
import math
import os
import shlex
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
import soundfile as sf
import yaml

from wavenet.errors import check_regular_file, one_line
from wavenet.files import atomic_write
from wavenet.metrics.plots import Curves, learning_curves, read_metrics, run_labels
from wavenet.model import WaveNetConfig

REPORT_FILE = "report.html"
EXPANDED = 20  # validations shown open; older ones fold into a <details>
CURVE_POINTS = 600  # train points per curve at most (bucket means), so long runs stay small
# A run that is not finished and wrote nothing for this long is taken to have stopped.
# last.pt is rewritten every checkpoint_minutes (30 s by default) while a run trains.
QUIET_S = 600
DNSMOS = (
    ("dnsmos_sig", "SIG"),
    ("dnsmos_bak", "BAK"),
    ("dnsmos_ovrl", "OVRL"),
    ("dnsmos_p808", "P.808"),
)
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


@dataclass
class Run:
    """What a run directory holds, read once: config, overrides, metrics and sample files."""

    path: Path
    config: dict
    overrides: list[str]
    records: list[dict]
    data: dict | None  # data_report.json
    status: str  # running, finished or stopped
    samples: dict[int, dict[str, bool]] = field(default_factory=dict)  # step -> {wav, png}

    @property
    def validations(self) -> list[dict]:
        """One record per validation or sample file, newest first ({"step": N} when only the
        sample survives, e.g. after a resume truncated metrics.jsonl)."""
        by_step = {r["step"]: r for r in self.records if "val_bits" in r}
        for step in self.samples:
            by_step.setdefault(step, {"step": step})
        return [by_step[s] for s in sorted(by_step, reverse=True)]

    @property
    def step(self) -> int:
        return int(self.records[-1]["step"]) if self.records else 0

    @property
    def best(self) -> dict | None:
        """The record of the lowest validation bits/sample."""
        vals = [r for r in self.records if "val_bits" in r]
        return min(vals, key=lambda r: r["val_bits"]) if vals else None

    @property
    def bigram(self) -> float | None:
        values = [r["bigram_val_bits"] for r in self.records if "bigram_val_bits" in r]
        return values[-1] if values else None

    @property
    def wall_s(self) -> float | None:
        values = [r["wall_s"] for r in self.records if "wall_s" in r]
        return values[-1] if values else None

    @property
    def samples_per_s(self) -> float | None:
        """Median training throughput over the logged steps."""
        values = [r["samples_per_s"] for r in self.records if "samples_per_s" in r]
        return statistics.median(values) if values else None

    @property
    def command(self) -> str:
        return shlex.join(["wavenet-train", *self.overrides])

    @property
    def vocoder(self) -> bool:
        mel = (self.config.get("model") or {}).get("mel") or {}
        return bool(mel.get("n_mels", 0))

    def sample_path(self, step: int, kind: str) -> Path:
        return self.path / "samples" / f"step_{step:07d}.{kind}"


# What the report reads of .hydra/config.yaml, and what each must be where it is given: a
# config edited by hand into another shape is named, not half-read.
CONFIG_SHAPE = {
    "model": dict,
    "model.mel": dict,
    "model.mel.n_mels": int,
    "model.speaker_channels": int,
    "data": dict,
    "data.sample_rate": int,
    "train": dict,
    "train.max_steps": int,
}
_KINDS = {dict: "a mapping", list: "a list", int: "a non-negative integer"}


def read_run(run_dir: str | Path, status: str | None = None) -> Run:
    """Read `run_dir` (written by wavenet-train). Raises ValueError naming the directory when
    it is missing or holds neither .hydra/config.yaml nor metrics.jsonl, and naming the file
    when one the page is made from is damaged: a config or overrides file that is not YAML of
    its shape (CONFIG_SHAPE; overrides a list), a metrics line no run writes (see
    plots.read_metrics), or any of them not a regular file.

    status: running, finished or stopped; None infers it: finished when the last step reached
    train.max_steps or the log says done, stopped when the log says stopped or nothing was
    written for QUIET_S seconds, else running.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"{run_dir}: {'not a' if path.exists() else 'no such'} directory")
    hydra_dir = path / ".hydra"
    if not _is_run(path):
        raise ValueError(
            f"{run_dir}: not a wavenet-train run directory "
            f"(no .hydra/config.yaml, no metrics.jsonl)"
        )
    config = _yaml(hydra_dir / "config.yaml", {}, dict)
    _check_shape(hydra_dir / "config.yaml", config)
    overrides = [str(o) for o in _yaml(hydra_dir / "overrides.yaml", [], list)]
    has_metrics = (path / "metrics.jsonl").exists()
    records = [_numbers(r) for r in read_metrics(path, empty=True)] if has_metrics else []
    try:
        data = json.loads(_text(path / "data_report.json") or "null")
    except (ValueError, RecursionError):  # optional: the page says it is missing
        data = None
    samples: dict[int, dict[str, bool]] = {}
    for file in sorted((path / "samples").glob("step_*.*")):
        stem, kind = file.stem, file.suffix.lstrip(".")
        if kind in ("wav", "png") and stem[5:].isdigit():
            samples.setdefault(int(stem[5:]), {"wav": False, "png": False})[kind] = True
    if status is None:
        status = _infer_status(path, config, records)
    if status not in ("running", "finished", "stopped"):
        raise ValueError(f"status must be running, finished or stopped, got {status!r}")
    return Run(
        path, config, overrides, records, data if isinstance(data, dict) else None, status, samples
    )


def _numbers(record: dict) -> dict:
    """The record's finite numbers only (a diverged step's NaN cannot break the page)."""
    return {
        k: v
        for k, v in record.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _text(path: Path) -> str | None:
    """The text of `path` (bytes that are not UTF-8 replaced), None when there is no such file;
    ValueError naming it when it is not a regular file (a FIFO would block) or cannot be read."""
    if not path.exists():
        return None
    check_regular_file(path)
    try:
        return path.read_text(errors="replace")
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or one_line(e)})") from e


def _yaml(path: Path, default, kind: type):
    """The YAML value in `path`: `default` when the file is absent or empty, else a `kind`;
    ValueError naming the file when it cannot be read or parsed, or holds something else."""
    text = _text(path)
    if text is None:
        return default
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        raise ValueError(f"{path}: not YAML ({one_line(e, limit=120)})") from e
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ValueError(f"{path}: holds {_shown(value)}, not {_KINDS[kind]}")
    return value


def _check_shape(path: Path, config: dict) -> None:
    """ValueError naming `path` and the key where `config` breaks CONFIG_SHAPE."""
    for key, kind in CONFIG_SHAPE.items():
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        ok = isinstance(node, kind) and not isinstance(node, bool)
        if kind is int:
            ok = ok and node >= 0
        if not ok:
            raise ValueError(f"{path}: {key} is {_shown(node)}, not {_KINDS[kind]}")


def _shown(value: object) -> str:
    """A value for a message: short scalars as they are, anything else by its type."""
    if isinstance(value, str | int | float | bool):
        return f"{value!r:.40}"
    return f"a {type(value).__name__}"


def _log_file(path: Path) -> Path | None:
    """The run's log: <hydra.job.name>.log (Hydra names it after the job), else any *.log;
    only a regular file (a FIFO would block)."""
    try:
        job = _yaml(path / ".hydra" / "hydra.yaml", {}, dict)
    except ValueError:  # only the log's name is read from it; the glob below finds the log
        job = {}
    node = job
    for part in ("hydra", "job", "name"):
        node = node.get(part) if isinstance(node, dict) else None
    named = [path / f"{node}.log"] if isinstance(node, str) else []
    logs = [p for p in (*named, *sorted(path.glob("*.log"))) if p.is_file()]
    return logs[0] if logs else None


def _infer_status(path: Path, config: dict, records: list[dict]) -> str:
    max_steps = (config.get("train") or {}).get("max_steps")
    if records and max_steps and records[-1]["step"] >= max_steps:
        return "finished"
    log = _log_file(path)
    if log is not None:
        # The last word of the log since the run last (re)started.
        lines = [
            line
            for line in (_text(log) or "").splitlines()
            if "starting from step" in line
            or "resumed from" in line
            or "done: step" in line
            or "stopped by" in line
        ]
        if lines and "done: step" in lines[-1]:
            return "finished"
        if lines and "stopped by" in lines[-1]:
            return "stopped"
    written = [
        p.stat().st_mtime
        for p in (path / "metrics.jsonl", path / "checkpoints" / "last.pt")
        if p.exists()
    ]
    return "running" if written and time.time() - max(written) < QUIET_S else "stopped"


def model_summary(run: Run) -> dict | None:
    """{"parameters", "receptive_field" (samples), "ms"} of the run's model, or None when the
    config does not describe one (or a speaker model lacks its data report)."""
    try:
        mc = WaveNetConfig(**run.config["model"])
        speakers = 0
        if mc.speaker_channels:
            per = (run.data or {}).get("hours_per_speaker", {})
            speakers = len({s for split in per.values() for s in split})
        parameters = mc.parameters(speakers)  # counted, not built: the config is untrusted
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    rate = (run.config.get("data") or {}).get("sample_rate") or 16000
    return {
        "parameters": parameters,
        "receptive_field": mc.receptive_field,
        "ms": 1000 * mc.receptive_field / rate,
    }


# ---------------------------------------------------------------- formatting


def _href(target: Path, base: Path) -> str:
    """A relative, URL-quoted link from folder `base` to `target`."""
    return quote(os.path.relpath(target, base).replace(os.sep, "/"))


def _bits(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _count(n: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("wavenet.metrics", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
TEMPLATES.filters.update(bits=_bits, count=_count, duration=_duration)


def _render(template: str, **data) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return TEMPLATES.get_template(template).render(stamp=stamp, **data)


def _status(run: Run) -> dict:
    text = f"stopped at step {run.step}" if run.status == "stopped" else run.status
    return {"kind": run.status, "text": text}


# ---------------------------------------------------------------- the curves


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo or 1.0
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _thin(points: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """At most n points: means of consecutive buckets (keeps the shape of a noisy curve)."""
    if len(points) <= n:
        return points
    size = len(points) / n
    out = []
    for i in range(n):
        bucket = points[int(i * size) : int((i + 1) * size)]
        out.append(
            (sum(p[0] for p in bucket) / len(bucket), sum(p[1] for p in bucket) / len(bucket))
        )
    return out


def _chart(curves: Curves, width: int = 760, height: int = 320) -> dict | None:
    """The learning-curve chart (templates/parts.html.j2, `curves`) as pixel geometry: train
    (thin) and validation (dots) against step, one colour per run, each run's bigram baseline
    dashed, in the unit of `curves`; None when no run has a point. Coordinates are rounded to
    0.1 px."""
    series = []
    for curve in curves.runs:
        train = _thin([(p.step, p.bits) for p in curve.train], CURVE_POINTS)
        val = _thin([(p.step, p.bits) for p in curve.val], CURVE_POINTS)
        series.append((train, val, curve.bigram))
    xs = [p[0] for t, v, _ in series for p in t + v]
    ys = [p[1] for t, v, _ in series for p in t + v] + [b for *_, b in series if b]
    if not xs:
        return None
    x0, x1 = 0.0, max(xs) or 1.0
    y0, y1 = min(ys), max(ys)
    pad = 0.05 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = 52, 12, 12, 36
    w, h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return round(left + w * (x - x0) / (x1 - x0), 1)

    def py(y: float, below: float = 0.0) -> float:
        return round(top + h * (y1 - y) / (y1 - y0) + below, 1)

    def path(points) -> str:
        return " ".join(
            f"{'M' if i == 0 else 'L'}{px(x)},{py(y)}" for i, (x, y) in enumerate(points)
        )

    return {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "w": w,
        "h": h,
        "right": left + w,
        "y_ticks": [
            {"y": py(y), "text_y": py(y, below=4), "value": y} for y in _nice_ticks(y0, y1)
        ],
        "y_tick_x": left - 6,
        "x_ticks": [{"x": px(x), "value": x} for x in _nice_ticks(x0, x1)],
        "x_tick_y": top + h + 16,
        "x_label": {"x": left + w / 2, "y": height - 4},
        "y_label_y": top + h / 2,
        "unit": curves.unit,
        "series": [
            {
                "color": COLORS[k % len(COLORS)],
                "bigram": {"y": py(bigram), "bits": bigram} if bigram else None,
                "train": path(train),
                "val": path(val),
                "dots": [{"x": px(x), "y": py(y), "step": x, "bits": y} for x, y in val],
            }
            for k, (train, val, bigram) in enumerate(series)
        ],
    }


# ---------------------------------------------------------------- one run


def _headline(run: Run, base: Path) -> dict:
    model = model_summary(run)
    if model is not None:
        model["kind"] = (
            "vocoder (mel-conditioned)"
            if run.vocoder
            else "speaker-conditioned"
            if run.config["model"].get("speaker_channels")
            else "unconditioned"
        )
    return {
        "steps": run.step,
        "wall_s": run.wall_s,
        "best": run.best,
        "bigram": run.bigram,
        "samples_per_s": run.samples_per_s,
        "command": run.command,
        "model": model,
        "data": _data_summary(run, base),
    }


def _data_summary(run: Run, base: Path) -> dict:
    """What data_report.json says, for the headline; state "missing" or "unexpected" when it
    cannot say it."""
    href = _href(run.path / "data_report.json", base)
    if run.data is None:
        return {"state": "missing"}
    try:
        return {"state": "read", "href": href, **_data_facts(run.data)}
    except (TypeError, ValueError, AttributeError, OverflowError):  # another version's, by hand
        return {"state": "unexpected", "href": href}


def _data_facts(data: dict) -> dict:
    skipped = data.get("skipped") or []
    per = data.get("hours_per_speaker") or {}
    speakers = sorted({s for split in per.values() for s in split})
    return {
        "train": len(data.get("train") or []),
        "validation": len(data.get("validation") or []),
        "skipped": len(skipped),
        "seconds": 3600 * float(data.get("hours") or 0),
        "sample_rate": data.get("sample_rate", "?"),
        "root": data.get("root", "?"),
        "layout": data.get("layout", "?"),
        # (name, train minutes, validation minutes)
        "speakers": [
            (
                s or "(no label)",
                *(
                    60 * float((per.get(split) or {}).get(s, 0))
                    for split in ("train", "validation")
                ),
            )
            for s in speakers
        ],
        "skipped_files": [
            (s.get("file"), s.get("reason")) for s in skipped[:100] if isinstance(s, dict)
        ],
        "more": max(len(skipped) - 100, 0),
    }


def _audio(path: Path, base: Path) -> dict | None:
    """A player for `path` (its length: players show whole seconds; None when unreadable), or
    None if absent."""
    if not path.is_file():
        return None
    try:
        seconds = sf.info(path).duration
    except (RuntimeError, OSError):  # soundfile raises RuntimeError subclasses
        seconds = None
    return {"href": _href(path, base), "seconds": seconds}


def _sample_card(run: Run, record: dict, base: Path, lazy: bool) -> dict:
    step = record["step"]
    has = run.samples.get(step, {})
    return {
        "step": step,
        "val_bits": record.get("val_bits"),
        "scores": [
            (label, record[key])
            for key, label in DNSMOS
            if isinstance(record.get(key), int | float)
        ],
        "wav": has.get("wav", False),
        "wav_label": "copy synthesis" if run.vocoder else "generated",
        "audio": _audio(run.sample_path(step, "wav"), base) if has.get("wav") else None,
        "png": _href(run.sample_path(step, "png"), base) if has.get("png") else None,
        "lazy": lazy,
        "missing": not has,
    }


def _samples(run: Run, base: Path) -> dict:
    validations = run.validations
    source = run.path / "samples" / "source.wav"
    return {
        "source": _audio(source, base) if run.vocoder else None,
        "cards": [
            _sample_card(run, r, base, lazy=i > 2) for i, r in enumerate(validations[:EXPANDED])
        ],
        "older": [_sample_card(run, r, base, lazy=True) for r in validations[EXPANDED:]],
    }


def render_run(run: Run, base: Path | None = None) -> str:
    """The report page of one run as HTML text; links are relative to folder `base`
    (default: the run directory, where report.html goes)."""
    base = run.path if base is None else base
    label = run_labels([run.path])[0]
    png = run.path / "learning_curves.png"
    return _render(
        "run.html.j2",
        title=f"wavenet run {label}",
        label=label,
        status=_status(run),
        headline=_headline(run, base),
        chart=_chart(learning_curves([(label, run.records)])),
        png=_href(png, base) if png.is_file() else None,
        samples=_samples(run, base),
    )


def write_report(run_dir: Path, status: str | None = None) -> Path:
    """Write run_dir/report.html (atomically) and return its path.

    status: running, finished or stopped (the training loop knows); None infers it from the
    files (see read_run). Raises ValueError when run_dir is not a run directory.
    """
    run = read_run(run_dir, status)
    out = run.path / REPORT_FILE
    atomic_write(out, render_run(run).encode(), durable=False)
    return out


# ---------------------------------------------------------------- several runs


def _override_table(runs: list[Run]) -> tuple[list[str], list[dict[str, str]]]:
    """The override keys whose values differ between runs, and each run's key -> value."""
    values = []
    for run in runs:
        pairs = (o.lstrip("+~").split("=", 1) for o in run.overrides)
        values.append({p[0]: p[1] if len(p) > 1 else "" for p in pairs})
    keys = sorted({k for v in values for k in v})
    return [k for k in keys if len({v.get(k) for v in values}) > 1], values


def _score(value, show) -> tuple[str, object]:
    """A score's table cell: (shown text, sort key; "" sorts last)."""
    return show(value), "" if value is None else value


def objective(run: Run) -> float:
    """The value a search ranks a run by: its best validation bits per 16-bit sample (bits per
    code for a run that predates them), inf without a validation."""
    values = [r.get("val_bits16", r.get("val_bits")) for r in run.records if "val_bits" in r]
    return min((v for v in values if v is not None), default=math.inf)


def sweep_runs(sweep_dir: Path) -> list[Path]:
    """The run directories under `sweep_dir` at any depth (a search keeps one sweep dir per
    invocation), in path order; [] when there is none or `sweep_dir` is itself a run."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir() or _is_run(sweep_dir):
        return []
    found = {p.parent for p in sweep_dir.rglob("metrics.jsonl")}
    found |= {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
    return sorted(d for d in found if d != sweep_dir)


def _is_run(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").exists() or (path / "metrics.jsonl").exists()


def render_comparison(runs: list[Run], base: Path, ranked: bool = False) -> str:
    """One page comparing `runs`: a sortable table of the overrides that differ and the
    scores, their curves on one chart, and each run's latest sample; links relative to `base`.
    `ranked`: rows best first by `objective`, numbered (a search's trials)."""
    if ranked:
        runs = sorted(runs, key=objective)
    labels = run_labels([r.path for r in runs])
    keys, values = _override_table(runs)
    scores = [
        ("best val bits", lambda r: r.best and r.best["val_bits"], _bits),
        ("bigram", lambda r: r.bigram, _bits),
        ("steps", lambda r: r.step, str),
        ("wall time", lambda r: r.wall_s, _duration),
    ]
    if any("val_bits16" in r for run in runs for r in run.records):
        # Per 16-bit sample: the one unit in which μ-law and 16-bit outputs compare.
        scores.insert(
            1,
            ("best val bits / 16-bit sample", lambda r: r.best and r.best.get("val_bits16"), _bits),
        )
    if any(k in r for run in runs for r in run.records for k, _ in DNSMOS):
        scores.append(
            (
                "DNSMOS ovrl",
                lambda r: next(
                    (x["dnsmos_ovrl"] for x in r.validations if "dnsmos_ovrl" in x), None
                ),
                _bits,
            )
        )
    rows = []
    for k, (run, label, vals) in enumerate(zip(runs, labels, values, strict=True)):
        report = run.path / REPORT_FILE
        latest = next((r for r in run.validations if run.samples.get(r["step"])), None)
        rows.append(
            {
                "color": COLORS[k % len(COLORS)],
                "label": label,
                "href": _href(report if report.is_file() else run.path, base),
                "status": _status(run),
                "overrides": [(vals.get(key, "—"), vals.get(key, "")) for key in keys],
                "scores": [_score(get(run), show) for _, get, show in scores],
                "latest": _sample_card(run, latest, base, lazy=True) if latest else None,
            }
        )
    try:
        curves = learning_curves(list(zip(labels, [r.records for r in runs], strict=True)))
        chart, chart_error = _chart(curves), None
    except ValueError as e:  # outputs differ and a run has no val_bits16 to convert by
        chart, chart_error = None, str(e)
    return _render(
        "comparison.html.j2",
        title=f"{len(runs)} wavenet runs",
        ranked=ranked,
        headers=["rank" if ranked else "", "run", "status", *keys, *(n for n, *_ in scores)],
        rows=rows,
        chart=chart,
        chart_error=chart_error,
    )


def write_comparison(run_dirs: list[Path], out: Path, ranked: bool = False) -> Path:
    """Write the comparison page of `run_dirs` to `out` (atomically); returns out. Raises
    ValueError naming a directory that is not a run directory."""
    if not run_dirs:
        raise ValueError("no run directories given")
    out = Path(out)
    runs = [read_run(d) for d in run_dirs]
    page = render_comparison(runs, out.absolute().parent, ranked)
    atomic_write(out, page.encode(), durable=False)
    return out


def write_run_page(run_dir: Path, out: Path) -> Path:
    """Write the report page of one run to `out` with links relative to out's folder."""
    out = Path(out)
    page = render_run(read_run(run_dir), out.absolute().parent)
    atomic_write(out, page.encode(), durable=False)
    return out
