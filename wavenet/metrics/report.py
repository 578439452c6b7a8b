"""A run's report page: one self-contained HTML file to hear and judge what a run trained.

    write_report(run_dir)               -> run_dir/report.html (one run)
    write_comparison([run, ...], out)   -> out (a sweep: sortable table, curves, latest samples)

The page needs no server and no network: CSS, the learning-curve SVG and the little JavaScript
are inline, and audio and spectrograms are relative links to the run's own files, so the page
opens from disk and the folder can be zipped and shared. Audio is never inlined, and older
validations fold into a <details>, so a run with hundreds of validations stays small.

Every value that comes from a config, a file name or JSON is escaped (`_e`) and every link is
URL-quoted (`_href`). Nothing here imports Hydra: the run's YAML is read with PyYAML.
"""

import html
import json
import math
import os
import shlex
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import soundfile as sf
import yaml

from wavenet.files import atomic_write
from wavenet.metrics.plots import read_metrics, run_labels
from wavenet.model import WaveNet, WaveNetConfig

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
        mel = self.config.get("model", {}).get("mel") or {}
        return bool(mel.get("n_mels", 0))

    def sample_path(self, step: int, kind: str) -> Path:
        return self.path / "samples" / f"step_{step:07d}.{kind}"


def read_run(run_dir: str | Path, status: str | None = None) -> Run:
    """Read `run_dir` (written by wavenet-train). Raises ValueError naming the directory when
    it is missing or holds neither .hydra/config.yaml nor metrics.jsonl.

    status: running, finished or stopped; None infers it: finished when the last step reached
    train.max_steps or the log says done, stopped when the log says stopped or nothing was
    written for QUIET_S seconds, else running.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"{run_dir}: no such directory")
    hydra_dir = path / ".hydra"
    if not (hydra_dir / "config.yaml").is_file() and not (path / "metrics.jsonl").is_file():
        raise ValueError(
            f"{run_dir}: not a wavenet-train run directory "
            f"(no .hydra/config.yaml, no metrics.jsonl)"
        )
    config = _yaml(hydra_dir / "config.yaml", {})
    overrides = [str(o) for o in _yaml(hydra_dir / "overrides.yaml", [])]
    try:
        records = [_numbers(r) for r in read_metrics(path) if math.isfinite(r["step"])]
    except ValueError:  # no metrics yet
        records = []
    try:
        data = json.loads((path / "data_report.json").read_text())
    except (OSError, ValueError):
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
        path,
        config if isinstance(config, dict) else {},
        overrides,
        records,
        data if isinstance(data, dict) else None,
        status,
        samples,
    )


def _numbers(record: dict) -> dict:
    """The record's finite numbers only (a hand-edited or foreign line cannot break the page),
    with an integer step."""
    kept = {
        k: v
        for k, v in record.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    return {**kept, "step": int(record["step"])}


def _yaml(path: Path, default):
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return default
    return default if value is None else value


def _log_file(path: Path) -> Path | None:
    """The run's log: <hydra.job.name>.log (Hydra names it after the job), else any *.log."""
    job = _yaml(path / ".hydra" / "hydra.yaml", {})
    name = job.get("hydra", {}).get("job", {}).get("name") if isinstance(job, dict) else None
    if name and (path / f"{name}.log").is_file():
        return path / f"{name}.log"
    logs = sorted(path.glob("*.log"))
    return logs[0] if logs else None


def _infer_status(path: Path, config: dict, records: list[dict]) -> str:
    max_steps = (config.get("train") or {}).get("max_steps") if isinstance(config, dict) else None
    if records and max_steps and records[-1]["step"] >= max_steps:
        return "finished"
    log = _log_file(path)
    if log is not None:
        # The last word of the log since the run last (re)started.
        lines = [
            line
            for line in log.read_text(errors="replace").splitlines()
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
        model = WaveNet(mc, speakers=speakers)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    rate = (run.config.get("data") or {}).get("sample_rate") or 16000
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "receptive_field": mc.receptive_field,
        "ms": 1000 * mc.receptive_field / rate,
    }


# ---------------------------------------------------------------- formatting


def _e(value) -> str:
    """Any value as escaped HTML text (attributes included)."""
    return html.escape(str(value), quote=True)


def _href(target: Path, base: Path) -> str:
    """A relative, URL-quoted, escaped link from folder `base` to `target`."""
    return _e(quote(os.path.relpath(target, base).replace(os.sep, "/")))


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


def _status(run: Run) -> str:
    text = f"stopped at step {run.step}" if run.status == "stopped" else run.status
    return f'<span class="status {_e(run.status)}">{_e(text)}</span>'


def _scores(record: dict) -> str:
    """DNSMOS listening scores of a validation record, where it has them."""
    parts = [
        f"{label} {record[key]:.2f}"
        for key, label in DNSMOS
        if isinstance(record.get(key), int | float)
    ]
    return f'<span class="scores">DNSMOS {_e(" · ".join(parts))}</span>' if parts else ""


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


def curves_svg(runs: list[Run], width: int = 760, height: int = 320) -> str:
    """Train (thin) and validation (dots) bits/sample against step, one colour per run, each
    run's bigram baseline dashed, as an inline <svg>; empty string when no run has records."""
    series = []
    for k, run in enumerate(runs):
        color = COLORS[k % len(COLORS)]
        train = _thin(
            [
                (r["step"], r["train_bits"])
                for r in run.records
                if isinstance(r.get("train_bits"), int | float) and math.isfinite(r["train_bits"])
            ],
            CURVE_POINTS,
        )
        val = _thin(
            [
                (r["step"], r["val_bits"])
                for r in run.records
                if isinstance(r.get("val_bits"), int | float) and math.isfinite(r["val_bits"])
            ],
            CURVE_POINTS,
        )
        series.append((color, train, val, run.bigram))
    xs = [p[0] for _, t, v, _ in series for p in t + v]
    ys = [p[1] for _, t, v, _ in series for p in t + v] + [b for *_, b in series if b]
    if not xs:
        return ""
    x0, x1 = 0.0, max(xs) or 1.0
    y0, y1 = min(ys), max(ys)
    pad = 0.05 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = 52, 12, 12, 36
    w, h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + w * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + h * (y1 - y) / (y1 - y0)

    def path(points) -> str:
        return " ".join(
            f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(points)
        )

    out = [
        f'<svg class="curves" viewBox="0 0 {width} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="learning curves">'
    ]
    for y in _nice_ticks(y0, y1):
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + w}" y1="{py(y):.1f}" '
            f'y2="{py(y):.1f}"/><text class="tick" x="{left - 6}" y="{py(y) + 4:.1f}" '
            f'text-anchor="end">{y:g}</text>'
        )
    for x in _nice_ticks(x0, x1):
        out.append(
            f'<text class="tick" x="{px(x):.1f}" y="{top + h + 16}" '
            f'text-anchor="middle">{x:g}</text>'
        )
    out.append(
        f'<rect class="frame" x="{left}" y="{top}" width="{w}" height="{h}"/>'
        f'<text class="label" x="{left + w / 2}" y="{height - 4}" '
        f'text-anchor="middle">step</text>'
        f'<text class="label" transform="translate(12 {top + h / 2}) rotate(-90)" '
        f'text-anchor="middle">bits / μ-law sample</text>'
    )
    for color, train, val, bigram in series:
        if bigram:
            out.append(
                f'<line class="bigram" x1="{left}" x2="{left + w}" y1="{py(bigram):.1f}" '
                f'y2="{py(bigram):.1f}" stroke="{color}"><title>bigram baseline '
                f"{bigram:.3f}</title></line>"
            )
        if train:
            out.append(f'<path class="train" d="{path(train)}" stroke="{color}"/>')
        if val:
            out.append(f'<path class="val" d="{path(val)}" stroke="{color}"/>')
            out.extend(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}">'
                f"<title>step {x:g}: {y:.3f}</title></circle>"
                for x, y in val
            )
    out.append("</svg>")
    return "".join(out)


CURVE_KEY = (
    '<p class="key"><span class="k train"></span>train <span class="k val"></span>'
    'validation <span class="k bigram"></span>bigram baseline</p>'
)


# ---------------------------------------------------------------- one run


def _headline(run: Run, base: Path) -> str:
    best, bigram = run.best, run.bigram
    rows = [("steps", _e(run.step)), ("wall time", _e(_duration(run.wall_s)))]
    if best is not None:
        gain = f" ({best['val_bits'] - bigram:+.3f} vs bigram {bigram:.3f})" if bigram else ""
        rows.append(
            (
                "best validation",
                f"<b>{_e(_bits(best['val_bits']))}</b> bits/sample at "
                f"step {_e(best['step'])}{_e(gain)}",
            )
        )
    elif bigram:
        rows.append(("bigram baseline", f"{_e(_bits(bigram))} bits/sample"))
    if run.samples_per_s is not None:
        rows.append(("throughput", f"{_e(_count(run.samples_per_s))} samples/s"))
    rows.append(("command", f"<code>{_e(run.command)}</code>"))
    model = model_summary(run)
    if model is not None:
        kind = (
            "vocoder (mel-conditioned)"
            if run.vocoder
            else "speaker-conditioned"
            if run.config["model"].get("speaker_channels")
            else "unconditioned"
        )
        rows.append(
            (
                "model",
                f"{_e(_count(model['parameters']))} parameters, receptive field "
                f"{model['receptive_field']} samples ({model['ms']:.1f} ms), "
                f"{_e(kind)}",
            )
        )
    rows.append(("data", _data_summary(run, base)))
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<table class="headline">{body}</table>'


def _data_summary(run: Run, base: Path) -> str:
    if run.data is None:
        return "no data_report.json"
    try:
        return _data_text(run.data, run.path, base)
    except (TypeError, ValueError, AttributeError):  # written by another version, or by hand
        link = f'<a href="{_href(run.path / "data_report.json", base)}">data_report.json</a>'
        return f"unexpected contents in {link}"


def _data_text(data: dict, run_dir: Path, base: Path) -> str:
    link = f'<a href="{_href(run_dir / "data_report.json", base)}">data_report.json</a>'
    skipped = data.get("skipped") or []
    text = (
        f"{len(data.get('train') or [])} train + {len(data.get('validation') or [])} "
        f"validation files, {len(skipped)} skipped, "
        f"{_e(_duration(3600 * float(data.get('hours') or 0)))} of audio at "
        f"{_e(data.get('sample_rate', '?'))} Hz from <code>{_e(data.get('root', '?'))}</code> "
        f"({_e(data.get('layout', '?'))} layout); {link}"
    )
    per = data.get("hours_per_speaker") or {}
    speakers = sorted({s for split in per.values() for s in split})
    if speakers:
        rows = "".join(
            f"<tr><td>{_e(s or '(no label)')}</td>"
            + "".join(
                f"<td>{60 * float((per.get(split) or {}).get(s, 0)):.2f}</td>"
                for split in ("train", "validation")
            )
            + "</tr>"
            for s in speakers
        )
        table = (
            f'<table class="small"><tr><th>speaker</th><th>train (min)</th>'
            f"<th>validation (min)</th></tr>{rows}</table>"
        )
        text += (
            table
            if len(speakers) <= 8
            else f"<details><summary>{len(speakers)} speakers</summary>{table}</details>"
        )
    if skipped:
        items = "".join(
            f"<li><code>{_e(s.get('file'))}</code>: {_e(s.get('reason'))}</li>"
            for s in skipped[:100]
            if isinstance(s, dict)
        )
        more = f"<li>… {len(skipped) - 100} more</li>" if len(skipped) > 100 else ""
        text += f"<details><summary>skipped files</summary><ul>{items}{more}</ul></details>"
    return text


def _audio(path: Path, base: Path) -> str:
    """A player for `path` (with its length: players show whole seconds), or "" if absent."""
    if not path.is_file():
        return ""
    try:
        length = f' <span class="muted">{sf.info(path).duration:.2f} s</span>'
    except (RuntimeError, OSError):  # soundfile raises RuntimeError subclasses
        length = ' <span class="muted">(unreadable)</span>'
    return f'<audio controls preload="metadata" src="{_href(path, base)}"></audio>{length}'


def _sample_card(run: Run, record: dict, base: Path, lazy: bool) -> str:
    step = record["step"]
    wav, png = run.sample_path(step, "wav"), run.sample_path(step, "png")
    has = run.samples.get(step, {})
    head = f"step {step}"
    if "val_bits" in record:
        head += f" · validation {record['val_bits']:.3f} bits/sample"
    parts = [f'<div class="card"><h3>{_e(head)} {_scores(record)}</h3>']
    if has.get("wav"):
        label = "copy synthesis" if run.vocoder else "generated"
        parts.append(f"<p>{label} {_audio(wav, base)}</p>")
    if has.get("png"):
        loading = ' loading="lazy"' if lazy else ""
        parts.append(
            f'<a href="{_href(png, base)}"><img src="{_href(png, base)}"{loading} '
            f'alt="spectrograms at step {_e(step)}: real and generated"></a>'
        )
    if not has:
        parts.append('<p class="muted">no sample file</p>')
    parts.append("</div>")
    return "".join(parts)


def _samples(run: Run, base: Path) -> str:
    validations = run.validations
    if not validations:
        return '<p class="muted">no validation yet</p>'
    out = []
    source = run.path / "samples" / "source.wav"
    if run.vocoder and source.is_file():
        out.append(
            f"<p>source clip (the real audio the vocoder re-synthesises from its "
            f"log-mel) {_audio(source, base)}</p>"
        )
    out.extend(_sample_card(run, r, base, lazy=i > 2) for i, r in enumerate(validations[:EXPANDED]))
    older = validations[EXPANDED:]
    if older:
        cards = "".join(_sample_card(run, r, base, lazy=True) for r in older)
        out.append(
            f"<details><summary>{len(older)} older validations (steps "
            f"{older[-1]['step']}–{older[0]['step']})</summary>{cards}</details>"
        )
    return "".join(out)


def render_run(run: Run, base: Path | None = None) -> str:
    """The report page of one run as HTML text; links are relative to folder `base`
    (default: the run directory, where report.html goes)."""
    base = run.path if base is None else base
    label = run_labels([run.path])[0]
    svg = curves_svg([run])
    png = run.path / "learning_curves.png"
    png_link = (
        f' (also as <a href="{_href(png, base)}">learning_curves.png</a>)' if png.is_file() else ""
    )
    body = [
        f"<h1>{_e(label)} {_status(run)}</h1>",
        _headline(run, base),
        f"<h2>Learning curves</h2>{svg or '<p class=muted>no metrics yet</p>'}"
        f"{CURVE_KEY if svg else ''}<p class='muted'>lower is better{png_link}</p>",
        f"<h2>Samples, newest first</h2>{_samples(run, base)}",
    ]
    return _page(f"wavenet run {label}", "".join(body))


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


def _cell(text: str, sort_key=None) -> str:
    key = f' data-sort="{_e(sort_key)}"' if sort_key is not None else ""
    return f"<td{key}>{text}</td>"


def render_comparison(runs: list[Run], base: Path) -> str:
    """One page comparing `runs`: a sortable table of the overrides that differ and the
    scores, their curves on one chart, and each run's latest sample; links relative to `base`."""
    labels = run_labels([r.path for r in runs])
    keys, values = _override_table(runs)
    scores = [
        ("best val bits", lambda r: r.best and r.best["val_bits"]),
        ("bigram", lambda r: r.bigram),
        ("steps", lambda r: r.step),
        ("wall time", lambda r: r.wall_s),
    ]
    if any("val_bits16" in r for run in runs for r in run.records):
        # Per 16-bit sample: the one unit in which μ-law and 16-bit outputs compare.
        scores.insert(
            1, ("best val bits / 16-bit sample", lambda r: r.best and r.best.get("val_bits16"))
        )
    if any(k in r for run in runs for r in run.records for k, _ in DNSMOS):
        scores.append(
            (
                "DNSMOS ovrl",
                lambda r: next(
                    (x["dnsmos_ovrl"] for x in r.validations if "dnsmos_ovrl" in x), None
                ),
            )
        )
    head = "".join(
        f"<th>{_e(h)}</th>" for h in ["", "run", "status", *keys, *(name for name, _ in scores)]
    )
    rows = []
    for k, (run, label, vals) in enumerate(zip(runs, labels, values, strict=True)):
        report = run.path / REPORT_FILE
        name = (
            f'<a href="{_href(report, base)}">{_e(label)}</a>'
            if report.is_file()
            else f'<a href="{_href(run.path, base)}">{_e(label)}</a>'
        )
        cells = [
            _cell(f'<span class="swatch" style="background:{COLORS[k % len(COLORS)]}"></span>', k),
            _cell(name, label),
            _cell(_status(run), run.status),
        ]
        cells += [
            _cell(f"<code>{_e(vals.get(key, '—'))}</code>", vals.get(key, "")) for key in keys
        ]
        for score, get in scores:
            value = get(run)
            text = (
                _duration(value)
                if score == "wall time"
                else str(value)
                if score == "steps"
                else _bits(value)
            )
            cells.append(_cell(_e(text), "" if value is None else value))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    table = (
        f'<table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    grid = []
    for run, label in zip(runs, labels, strict=True):
        latest = next((r for r in run.validations if run.samples.get(r["step"])), None)
        card = (
            _sample_card(run, latest, base, lazy=True)
            if latest
            else '<p class="muted">no sample yet</p>'
        )
        grid.append(f'<div><h3 class="run">{_e(label)}</h3>{card}</div>')
    svg = curves_svg(runs)
    body = [
        f"<h1>{len(runs)} wavenet runs</h1>",
        "<p class='muted'>click a column header to sort; differing overrides shown</p>",
        table,
        f"<h2>Learning curves</h2>{svg}{CURVE_KEY if svg else ''}",
        f'<h2>Latest samples</h2><div class="grid">{"".join(grid)}</div>',
    ]
    return _page(f"{len(runs)} wavenet runs", "".join(body), sortable=True)


def write_comparison(run_dirs: list[Path], out: Path) -> Path:
    """Write the comparison page of `run_dirs` to `out` (atomically); returns out. Raises
    ValueError naming a directory that is not a run directory."""
    if not run_dirs:
        raise ValueError("no run directories given")
    out = Path(out)
    runs = [read_run(d) for d in run_dirs]
    atomic_write(out, render_comparison(runs, out.absolute().parent).encode(), durable=False)
    return out


def write_run_page(run_dir: Path, out: Path) -> Path:
    """Write the report page of one run to `out` with links relative to out's folder."""
    out = Path(out)
    page = render_run(read_run(run_dir), out.absolute().parent)
    atomic_write(out, page.encode(), durable=False)
    return out


# ---------------------------------------------------------------- the page

CSS = """
:root{color-scheme:light;--fg:#1d2127;--muted:#68707c;--line:#d8dce2;--bg:#fff;--card:#f6f7f9}
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);
 background:var(--bg);max-width:1100px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
 var(--line);padding-bottom:4px}h3{font-size:15px;margin:0 0 6px}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--card);padding:1px 4px;
 border-radius:3px;word-break:break-all}
table{border-collapse:collapse}th,td{text-align:left;padding:4px 10px;vertical-align:top;
 border-bottom:1px solid var(--line)}table.headline th{color:var(--muted);font-weight:500;
 white-space:nowrap}table.small{margin:6px 0;font-size:13px}
.status{font-size:13px;padding:2px 8px;border-radius:10px;vertical-align:middle;color:#fff}
.status.running{background:#1f77b4}.status.finished{background:#2a8a3e}
.status.stopped{background:#b5541c}.muted{color:var(--muted)}
.scores{font-weight:400;color:var(--muted);font-size:13px;margin-left:8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 12px;
 margin:10px 0}.card img{width:100%;max-width:900px;display:block;margin-top:6px}
audio{vertical-align:middle;height:36px;width:340px;max-width:100%}
details{margin:10px 0}summary{cursor:pointer;color:var(--muted)}
svg.curves{width:100%;max-width:900px;height:auto;display:block}
svg .grid{stroke:#e6e8ec}svg .frame{fill:none;stroke:#b8bec6}svg .tick{font-size:11px;
 fill:#68707c}svg .label{font-size:12px;fill:#444}svg .train{fill:none;stroke-width:1;
 opacity:.45}svg .val{fill:none;stroke-width:2}svg .bigram{stroke-width:1;stroke-dasharray:5 4}
.key{font-size:13px;color:var(--muted)}.k{display:inline-block;width:22px;height:0;
 margin:0 4px 3px 12px;border-top:2px solid #777}.k.train{border-top-width:1px;opacity:.6}
.k.bigram{border-top:1px dashed #777}.swatch{display:inline-block;width:12px;height:12px;
 border-radius:2px}
table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
h3.run{margin-top:8px;word-break:break-all}
"""

SORT_JS = """
document.querySelectorAll("table.sortable").forEach(table => {
  table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    const key = row => row.cells[col].dataset.sort ?? row.cells[col].textContent;
    const body = table.tBodies[0];
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      const order = x === "" ? 1 : y === "" ? -1 : !isNaN(nx) && !isNaN(ny) ? nx - ny
        : x.localeCompare(y, undefined, {numeric: true});
      return asc || x === "" || y === "" ? order : -order;
    });
    body.append(...rows);
  }));
});
"""


def _page(title: str, body: str, sortable: bool = False) -> str:
    script = f"<script>{SORT_JS}</script>" if sortable else ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}"
        f'<p class="muted">written {_e(stamp)} (wavenet.metrics.report)</p>{script}'
        f"</body></html>\n"
    )
