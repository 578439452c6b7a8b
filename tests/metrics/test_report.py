"""The run report page (wavenet.metrics.report) and wavenet-report: what the written HTML holds.

A real tiny run is trained once per session; synthetic run directories cover the edge cases
(hostile names, missing samples, hundreds of validations, a vocoder, inferred status).
"""

import json
import os
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
import yaml
from tools import run_tool

from wavenet.cli.report import main as report_main
from wavenet.config import CONF_DIR
from wavenet.metrics.plots import learning_curves_figure, read_metrics
from wavenet.metrics.report import read_run, write_comparison, write_report, write_run_page
from wavenet.model import WaveNet, WaveNetConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((CONF_DIR / "model" / "tiny.yaml").read_text())
HOSTILE = '<script>alert("x")</script>&amp;'
# A 1x1 PNG: the report links spectrograms, it never reads them.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def train_tiny_run(base: Path, speech: Path) -> Path:
    """A real wavenet-train run (model=tiny train=quick on four demo files) in base/tiny-run,
    trained on the first call and reused by later ones (tests/cli/test_report_browser.py)."""
    run_dir = base / "tiny-run"
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        run_tool(
            "wavenet-train",
            "model=tiny",
            "train=quick",
            f"data.root={speech}",
            f"hydra.run.dir={run_dir}",
            "train.threads=1",
            "train.progress=false",
            "train.sample_seconds=0.25",  # long enough for a spectrogram
            f"data.cache_dir={base / 'tiny-run-cache'}",
            cwd=base,
            ok=True,
        )
    return run_dir


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, speech: Path) -> Path:
    return train_tiny_run(tmp_path_factory.getbasetemp(), speech)


class Page(HTMLParser):
    """The tags of an HTML page: (tag, attributes) in order, and the visible text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]

    def links(self) -> list[str]:
        return [a[k] for _, a in self.tags for k in ("href", "src") if k in a]


def read_page(path: Path) -> Page:
    return Page(path.read_text())


def assert_links_resolve(page: Page, folder: Path) -> None:
    """Every link is relative and names an existing file or folder (no network, no server)."""
    assert page.links()
    for link in page.links():
        assert "://" not in link and not link.startswith("/"), link
        assert (folder / unquote(link)).exists(), link


def make_run(
    path: Path,
    *,
    steps: int = 100,
    val_every: int = 50,
    log_every: int = 10,
    wavs: list[int] | None = None,
    pngs: list[int] | None = None,
    overrides: list[str] = (),
    model: dict | None = None,
    max_steps: int | None = None,
    data: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """A synthetic run directory as wavenet-train writes it. wavs/pngs: the validation steps
    with sample files (default: all); extra: keys added to every validation record."""
    samples = path / "samples"
    samples.mkdir(parents=True)
    (path / ".hydra").mkdir()
    config = {
        "name": "test",
        "model": model or TINY,
        "data": {"sample_rate": 16000},
        "train": {"max_steps": max_steps or steps},
    }
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    validations = list(range(val_every, steps + 1, val_every))
    lines = []
    for step in range(log_every, steps + 1, log_every):
        record = {
            "step": step,
            "wall_s": step / 10,
            "train_bits": 8 - step / steps,
            "lr": 1e-3,
            "samples_per_s": 1000.0,
        }
        if step in validations:
            record |= {"val_bits": 7.5 - step / steps, "bigram_val_bits": 4.75, **(extra or {})}
        lines.append(json.dumps(record))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    tone = (0.1 * np.sin(np.arange(800) / 5)).astype(np.float32)
    for step in validations if wavs is None else wavs:
        sf.write(samples / f"step_{step:07d}.wav", tone, 16000, subtype="PCM_16")
    for step in validations if pngs is None else pngs:
        (samples / f"step_{step:07d}.png").write_bytes(PNG)
    report = {
        "root": "/data/speech",
        "layout": "folder",
        "sample_rate": 16000,
        "hours": 0.5,
        "hours_per_speaker": {"train": {"": 0.45}, "validation": {"": 0.05}},
        "train": ["a.flac", "b.flac"],
        "validation": ["c.flac"],
        "skipped": [],
    }
    (path / "data_report.json").write_text(json.dumps(data or report))
    return path


# ---------------------------------------------------------------- a real run


def test_report_of_a_real_run(real_run: Path):
    out = write_report(real_run)
    assert out == real_run / "report.html"
    page = read_page(out)
    text = " ".join(page.text)
    wavs = sorted((real_run / "samples").glob("step_*.wav"))
    assert len(wavs) == 2  # train=quick validates at steps 10 and 20
    audio = page.all("audio")
    assert [a["src"] for a in audio] == [f"samples/{w.name}" for w in reversed(wavs)]
    assert all(a["preload"] == "metadata" and "controls" in a for a in audio)
    pngs = sorted((real_run / "samples").glob("step_*.png"))
    assert [i["src"] for i in page.all("img")] == [f"samples/{p.name}" for p in reversed(pngs)]
    assert_links_resolve(page, real_run)
    assert "data_report.json" in page.links() and "learning_curves.png" in page.links()

    assert "finished" in text and "bigram" in text
    params = sum(p.numel() for p in WaveNet(WaveNetConfig(**TINY)).parameters())
    assert f"{params / 1e3:.3g} k parameters" in text
    assert "receptive field 64 samples (4.0 ms)" in text
    assert "wavenet-train model=tiny train=quick" in text
    best = min(r["val_bits"] for r in read_metrics(real_run) if "val_bits" in r)
    assert f"{best:.3f}" in text
    assert "3 train + 1 validation files, 0 skipped" in text

    paths = [a["d"] for a in page.all("path")]
    assert len(paths) == 2 and all(d.count("L") >= 1 for d in paths)  # train and validation
    assert not page.all("script") and not page.all("link")  # no code, nothing fetched


def test_report_links_relative_to_another_folder(real_run: Path, tmp_path: Path):
    out = write_run_page(real_run, tmp_path / "pages" / "run.html")
    assert_links_resolve(read_page(out), out.parent)


# ---------------------------------------------------------------- escaping and links


def test_every_value_from_configs_and_file_names_is_escaped(tmp_path: Path):
    run = make_run(
        tmp_path / f"run {HOSTILE}",
        overrides=[f"name={HOSTILE}", "train.lr=0.01"],
        data={
            "root": f"/data/{HOSTILE}",
            "layout": HOSTILE,
            "sample_rate": HOSTILE,
            "hours": 0.1,
            "train": [f"{HOSTILE}.flac"],
            "validation": [],
            "hours_per_speaker": {"train": {HOSTILE: 0.1}, "validation": {}},
            "skipped": [{"file": f"{HOSTILE}.wav", "reason": HOSTILE}],
        },
    )
    other = make_run(tmp_path / "plain", overrides=["name=plain", "train.lr=0.01"])
    pages = [write_report(run), write_comparison([run, other], tmp_path / "sweep.html")]
    for out in pages:
        text = out.read_text()
        assert "<script>alert" not in text and 'alert("x")' not in text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;amp;" in text
        page = read_page(out)
        assert len(page.all("script")) == (out.name == "sweep.html")  # only the sort code
        # What the browser reads back is the original value, character for character.
        assert any(HOSTILE in chunk for chunk in page.text)
        assert_links_resolve(page, out.parent)
    sweep = read_page(pages[1])
    assert any(f"run {HOSTILE}" in unquote(link) for link in sweep.links())


def test_one_player_per_sample_file_present(tmp_path: Path):
    # Validations at 20, 40, 60, 80: wav for 20 and 60, png for 20 and 40, nothing for 80.
    run = make_run(tmp_path / "run", steps=80, val_every=20, wavs=[20, 60], pngs=[20, 40])
    page = read_page(write_report(run))
    assert [a["src"] for a in page.all("audio")] == [
        "samples/step_0000060.wav",
        "samples/step_0000020.wav",
    ]
    assert [i["src"] for i in page.all("img")] == [
        "samples/step_0000040.png",
        "samples/step_0000020.png",
    ]
    assert_links_resolve(page, run)
    text = " ".join(page.text)
    assert text.count("no sample file") == 1  # step 80
    assert text.count("0.05 s") == 2  # players show whole seconds; the page shows the length
    (run / "samples" / "step_0000060.wav").write_bytes(b"not a wav")
    page = read_page(write_report(run))
    assert len(page.all("audio")) == 2 and "(unreadable)" in " ".join(page.text)


def test_sample_files_without_records_still_play(tmp_path: Path):
    # A resume truncates metrics.jsonl back to the checkpoint; samples written after it stay.
    run = make_run(tmp_path / "run", steps=50, val_every=50)
    sf.write(run / "samples" / "step_0000070.wav", np.zeros(400, np.float32), 16000)
    page = read_page(write_report(run))
    assert [a["src"] for a in page.all("audio")] == [
        "samples/step_0000070.wav",
        "samples/step_0000050.wav",
    ]


def test_200_validations_stay_small(tmp_path: Path):
    scores = {"dnsmos_sig": 3.1, "dnsmos_bak": 3.9, "dnsmos_ovrl": 2.8, "dnsmos_p808": 3.3}
    run = make_run(tmp_path / "run", steps=200_000, val_every=1000, log_every=10, extra=scores)
    out = write_report(run)
    text = out.read_text()
    assert len(text.encode()) < 300_000  # 20,000 train records, 200 validations
    page = read_page(out)
    assert len(page.all("audio")) == 200
    # The newest 20 are open; the other 180 fold into one <details>.
    before, after = text.split("<summary>180 older validations", 1)
    assert before.count("<audio") == 20 and after.count("<audio") == 180
    assert before.index("step 200000") < before.index("step 181000")
    assert "DNSMOS SIG 3.10 · BAK 3.90 · OVRL 2.80 · P.808 3.30" in text


def test_vocoder_run_plays_the_source_beside_the_copy_synthesis(tmp_path: Path):
    vocoder = {**TINY, "mel": {"n_mels": 80}}
    run = make_run(tmp_path / "run", model=vocoder)
    page = read_page(write_report(run))
    assert "samples/source.wav" not in page.links()  # the loop has not written it
    assert "copy synthesis" in " ".join(page.text)
    sf.write(run / "samples" / "source.wav", np.zeros(400, np.float32), 16000)
    page = read_page(write_report(run))
    assert page.all("audio")[0]["src"] == "samples/source.wav"
    assert "vocoder (mel-conditioned)" in " ".join(page.text)


# ---------------------------------------------------------------- status


def test_status_given_or_inferred_from_the_files(tmp_path: Path):
    finished = make_run(tmp_path / "finished", steps=100)
    assert read_run(finished).status == "finished"
    assert read_run(finished, "running").status == "running"
    with pytest.raises(ValueError, match="status"):
        read_run(finished, "paused")

    live = make_run(tmp_path / "live", steps=100, max_steps=1000)
    assert read_run(live).status == "running"  # written just now
    old = time.time() - 3600
    os.utime(live / "metrics.jsonl", (old, old))
    assert read_run(live).status == "stopped"
    assert "stopped at step 100" in " ".join(read_page(write_report(live)).text)

    signalled = make_run(tmp_path / "signalled", steps=100, max_steps=1000)
    (signalled / "loop.log").write_text(
        "[x][wavenet.train][INFO] - starting from step 0\n"
        "[x][wavenet.train][INFO] - stopped by SIGTERM at step "
        "100; resume with the same command\n"
    )
    assert read_run(signalled).status == "stopped"
    with (signalled / "loop.log").open("a") as log:
        log.write("[x][wavenet.train][INFO] - resumed from last.pt at step 100\n")
    assert read_run(signalled).status == "running"


# ---------------------------------------------------------------- several runs, the CLI


def test_comparison_page(tmp_path: Path):
    a = make_run(tmp_path / "multirun" / "0_lr=0.01", overrides=["model=tiny", "train.lr=0.01"])
    b = make_run(
        tmp_path / "multirun" / "1_lr=0.001",
        steps=50,
        wavs=[],
        overrides=["model=tiny", "train.lr=0.001", "train.batch_size=2"],
    )
    out = tmp_path / "pages" / "sweep.html"
    report_main([str(a), str(b), "--out", str(out)])
    page = read_page(out)
    text = " ".join(page.text)
    headers = [t for t, _ in page.tags if t == "th"]
    assert len(page.all("table")) == 1 and page.all("table")[0]["class"] == "sortable"
    assert len(page.all("script")) == 1
    assert len(headers) == 3 + 2 + 4  # swatch, run, status; two differing overrides; scores
    assert "train.lr" in text and "train.batch_size" in text and "model" not in headers
    assert "0_lr=0.01" in text and "1_lr=0.001" in text
    assert [x["src"] for x in page.all("audio")] == [
        "../multirun/0_lr%3D0.01/samples/step_0000100.wav"
    ]
    assert len([p for p in page.all("path") if p["class"] == "val"]) == 2
    assert_links_resolve(page, out.parent)


def with_bits16(run: Path, offset: float) -> Path:
    """Give a make_run run's validations val_bits16 = val_bits + offset (as wavenet-train logs
    it: offset ~6 for μ-law codes, 0 for 16-bit ones)."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for r in records:
        if "val_bits" in r:
            r["val_bits16"] = r["val_bits"] + offset
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_comparison_of_outputs_shows_the_16bit_unit(tmp_path: Path):
    """A μ-law run and a 16-bit run compare by val_bits16 (their val_bits are per code)."""
    runs = []
    for name, offset in (("categorical", 6.0), ("mol", 0.0)):
        run = with_bits16(make_run(tmp_path / name, overrides=[f"model.output={name}"]), offset)
        records = read_metrics(run)
        runs.append((run, min(r["val_bits"] for r in records if "val_bits" in r) + offset))
    out = tmp_path / "sweep.html"
    report_main([str(runs[0][0]), str(runs[1][0]), "--out", str(out)])
    page = read_page(out)
    assert "best val bits / 16-bit sample" in page.text
    text = " ".join(page.text)
    assert all(f"{best16:.3f}" in text for _, best16 in runs)


def chart(text: str) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """The learning-curve SVG of a page read back: its y-axis label ("unit"), and for each run
    colour the validation points' "steps" and "val" bits from their titles, and "val_px" and
    "train_px", the bits that their pixel positions stand for on the y axis."""
    svg = text[text.index("<svg") : text.index("</svg>")]
    ticks = [
        (float(y), float(value))
        for y, value in re.findall(r'<text class="tick" x="46" y="([\d.]+)"[^>]*>([^<]+)<', svg)
    ]
    (y_a, v_a), (y_b, v_b) = ticks[0], ticks[-1]

    def value(px: str) -> float:  # tick labels sit 4 px below their grid line
        return v_a + (float(px) + 4 - y_a) * (v_b - v_a) / (y_b - y_a)

    runs: dict = {"unit": re.search(r"rotate\(-90\)[^>]*>([^<]+)<", svg)[1]}
    for cy, color, step, bits in re.findall(
        r'<circle cx="[\d.]+" cy="([\d.]+)" r="2.5" fill="(#\w+)"><title>step ([^:]+): ([^<]+)<',
        svg,
    ):
        run = runs.setdefault(color, {"steps": [], "val": [], "val_px": [], "train_px": []})
        run["steps"].append(float(step))
        run["val"].append(float(bits))
        run["val_px"].append(value(cy))
    for d, color in re.findall(r'<path class="train" d="([^"]+)" stroke="(#\w+)"', svg):
        runs[color]["train_px"] = [value(y) for y in re.findall(r",([\d.]+)", d)]
    return runs


def test_comparison_of_outputs_draws_both_curves_in_bits_per_16bit_sample(tmp_path: Path):
    """A μ-law run's curves are drawn shifted by its val_bits16 - val_bits, beside a 16-bit
    run's, on the page's chart as in the PNG: one model (plots.learning_curves), one unit."""
    offsets = (6.0, 0.0)  # categorical 8-bit μ-law codes, mol 16-bit
    runs = [
        with_bits16(make_run(tmp_path / n), o) for n, o in zip(("cat", "mol"), offsets, strict=True)
    ]
    svg = chart(write_comparison(runs, tmp_path / "sweep.html").read_text())
    figure = learning_curves_figure(runs).axes[0]
    assert svg["unit"] == figure.get_ylabel() == "bits / 16-bit sample"
    for run, offset, color, c in zip(
        runs, offsets, ("#1f77b4", "#ff7f0e"), ("C0", "C1"), strict=True
    ):
        records = read_metrics(run)
        val16 = [r["val_bits16"] for r in records if "val_bits16" in r]
        train16 = [r["train_bits"] + offset for r in records]
        assert svg[color]["steps"] == [r["step"] for r in records if "val_bits16" in r]
        assert svg[color]["val"] == pytest.approx(val16, abs=1e-3)
        assert svg[color]["val_px"] == pytest.approx(val16, abs=0.01)
        assert svg[color]["train_px"] == pytest.approx(train16, abs=0.01)
        png = [list(line.get_ydata()) for line in figure.get_lines() if line.get_color() == c]
        assert pytest.approx(val16) in png and pytest.approx(train16) in png
    # A run whose bits cannot be converted leaves the chart out, saying why; the page stays.
    old = make_run(tmp_path / "old")
    page = write_comparison([*runs, old], tmp_path / "sweep.html").read_text()
    assert "<svg" not in page and "old: no val_bits16" in page
    assert len(read_page(tmp_path / "sweep.html").all("audio")) == 3


def test_one_run_without_out_writes_its_report(tmp_path: Path, capsys):
    run = make_run(tmp_path / "run")
    report_main([str(run)])
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert (run / "report.html").is_file()


@pytest.mark.parametrize("case", ["missing", "not a run", "several without --out"])
def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys, case: str):
    run = make_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    argv = {
        "missing": [str(tmp_path / "nope")],
        "not a run": [str(tmp_path / "empty")],
        "several without --out": [str(run), str(run)],
    }[case]
    with pytest.raises(SystemExit) as exit_:
        report_main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wavenet-report: error: ") and err.count("\n") == 1, err


def test_installed_command_reports_errors_without_traceback(tmp_path: Path):
    proc = run_tool("wavenet-report", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"wavenet-report: error: {tmp_path / 'nope'}: no such directory\n"
