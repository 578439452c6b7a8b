"""wavenet-plot and wavenet-report: bad run dirs, outputs and usage.

What every case holds: tests/bad_inputs.py.
"""

import os
import shutil
from pathlib import Path

import pytest
import yaml
from bad_inputs import _fill, one_line, proc_line, snapshot
from tools import run_tool

import wavenet.cli.plot as plot_cli

# ----------------------------------------------------------------------------- wavenet-plot


PLOT_CASES = [
    ("{base}/no_such_run", ["no_such_run"]),
    ("{base}/mels", ["mels"]),
    ("{base}/tiny.pt", ["tiny.pt"]),
    ("{base}/plot_garbage", ["plot_garbage"]),
    ("{base}/plot_empty", ["plot_empty"]),
]


@pytest.mark.parametrize("run,names", PLOT_CASES, ids=[c[0] for c in PLOT_CASES])
def test_plot_bad_run_dir(world, capsys, tmp_path, run, names):
    base = world["base"]
    (base / "plot_garbage").mkdir(exist_ok=True)
    (base / "plot_garbage" / "metrics.jsonl").write_text("{not json\n\x00\x01\n")
    (base / "plot_empty").mkdir(exist_ok=True)
    (base / "plot_empty" / "metrics.jsonl").write_text("")
    before = snapshot(base)
    out = tmp_path / "curves.png"
    argv = [_fill([run], world)[0], "--out", str(out)]
    one_line(capsys, lambda: plot_cli.main(argv), names=_fill(names, world))
    assert snapshot(base) == before and not out.exists()


BAD_OUTPUTS = [
    ("plot", "{base}/tiny.pt/curves.png", ["tiny.pt"]),
    ("plot", "{base}/curves.xyz", ["xyz"]),
    ("plot", "{base}/folder.png", ["folder.png", "Is a directory"]),  # not its temporary
    ("report", "{base}/tiny.pt/page.html", ["tiny.pt"]),
    ("report", "{base}/folder.html", ["folder.html", "Is a directory"]),
]


@pytest.mark.parametrize("tool,out,names", BAD_OUTPUTS, ids=[c[1] for c in BAD_OUTPUTS])
def test_plot_or_report_bad_output(world, capsys, tool, out, names):
    import wavenet.cli.report as report_cli

    for folder in ("folder.png", "folder.html"):
        (world["base"] / folder).mkdir(exist_ok=True)
    main = {"plot": plot_cli.main, "report": report_cli.main}[tool]
    before = snapshot(world["base"])
    argv = [str(world["run"]), "--out", _fill([out], world)[0]]
    one_line(capsys, lambda: main(argv), names=names)
    assert snapshot(world["base"]) == before


# --------------------------------------------------------------------------- wavenet-report


@pytest.mark.parametrize("run,names", PLOT_CASES[:3], ids=[c[0] for c in PLOT_CASES[:3]])
def test_report_bad_run_dir(world, capsys, run, names):
    import wavenet.cli.report as report_cli

    before = snapshot(world["base"])
    argv = _fill([run], world)
    one_line(capsys, lambda: report_cli.main(argv), names=_fill(names, world))
    assert snapshot(world["base"]) == before


USAGE_CASES = [
    ([], ["RUN_DIR"]),
    (["{run}", "--bogus"], ["--bogus"]),
    (["{run}", "--out"], ["--out"]),
]


@pytest.mark.parametrize("tool", ["plot", "report"])
@pytest.mark.parametrize("argv,names", USAGE_CASES, ids=["no_run", "unknown_option", "no_out"])
def test_argparse_usage_errors_are_one_line(world, capsys, tool, argv, names):
    import wavenet.cli.report as report_cli

    main = {"plot": plot_cli.main, "report": report_cli.main}[tool]
    argv = [str(world["run"]) if a == "{run}" else a for a in argv]
    before = snapshot(world["base"])
    one_line(capsys, lambda: main(argv), names=[f"wavenet-{tool}: error:", *names])
    assert snapshot(world["base"]) == before


# ------------------------------------------------------------- damaged runs: plot and report


def _append(line: str):
    def edit(run: Path) -> None:
        with (run / "metrics.jsonl").open("a") as f:
            f.write(line + "\n")

    return edit


def _config(change):
    def edit(run: Path) -> None:
        path = run / ".hydra" / "config.yaml"
        config = yaml.safe_load(path.read_text())
        change(config)
        path.write_text(yaml.safe_dump(config))

    return edit


def _write(name: str, data: bytes):
    def edit(run: Path) -> None:
        (run / name).write_bytes(data)

    return edit


# (case, edit of a copy of the finished tiny run, what the line names besides the file)
METRICS_DAMAGE = [
    ("step_20_digits", _append('{"step": 12345678901234567890}'), ["step 12345678901234567890"]),
    ("step_negative", _append('{"step": -5, "train_bits": 5}'), ["step -5"]),  # math domain
    ("step_fraction", _append('{"step": 2.5, "train_bits": 5}'), ["step 2.5"]),
    ("bits_20_digits", _append('{"step": 3, "train_bits": 12345678901234567890}'), ["train_bits"]),
    ("bits_1.7e308", _append('{"step": 3, "train_bits": 1.7e308}'), ["train_bits", "1.7e+308"]),
    ("val_bits_-1.7e308", _append('{"step": 3, "val_bits": -1.7e308}'), ["val_bits", "-1.7e+308"]),
    ("bigram_1.7e308", _append('{"step": 3, "bigram_val_bits": 1.7e308}'), ["bigram_val_bits"]),
    ("wall_s_1.7e308", _append('{"step": 3, "wall_s": 1.7e308, "train_bits": 5}'), ["wall_s"]),
]
CONFIG_DAMAGE = [
    ("train_list", _config(lambda c: c.update(train=[1, 2])), ["config.yaml", "train is a list"]),
    (
        "max_steps_twenty",
        _config(lambda c: c["train"].update(max_steps="twenty")),
        ["config.yaml", "train.max_steps is 'twenty'"],
    ),
    (
        "mel_x",
        _config(lambda c: c["model"].update(mel="x")),
        ["config.yaml", "model.mel is 'x'"],
    ),
    (
        "sample_rate_list",
        _config(lambda c: c["data"].update(sample_rate=[16000])),
        ["data.sample_rate is a list"],
    ),
    ("config_not_yaml", _write(".hydra/config.yaml", b"train: [\n"), ["config.yaml", "not YAML"]),
    ("config_binary", _write(".hydra/config.yaml", b"\xff\xfe\x00\x01"), ["config.yaml"]),
    ("config_a_word", _write(".hydra/config.yaml", b"hello\n"), ["holds 'hello', not a map"]),
    ("overrides_5", _write(".hydra/overrides.yaml", b"5\n"), ["overrides.yaml", "holds 5"]),
    ("overrides_mapping", _write(".hydra/overrides.yaml", b"a: 1\n"), ["overrides.yaml"]),
]
DAMAGED = [("plot", *c) for c in METRICS_DAMAGE] + [
    ("report", *c) for c in METRICS_DAMAGE + CONFIG_DAMAGE
]


def _damaged(world: dict, tmp_path: Path, case: str, edit) -> Path:
    run = tmp_path / case
    shutil.copytree(world["run"], run)
    edit(run)
    return run


@pytest.mark.filterwarnings("error")  # no warning of matplotlib's (or numpy's) either
@pytest.mark.parametrize("tool,case,edit,names", DAMAGED, ids=[f"{c[0]}-{c[1]}" for c in DAMAGED])
def test_a_damaged_run_alone_is_one_line(world, capsys, tmp_path, tool, case, edit, names):
    """A run with a damaged file is named in one line, exit 2: with a single run nothing
    usable remains, and nothing is written (not even RUN/report.html)."""
    import wavenet.cli.report as report_cli

    run = _damaged(world, tmp_path, case, edit)
    before = snapshot(tmp_path)
    argv = [str(run)] if tool == "report" else [str(run), "--out", str(tmp_path / "x.png")]
    main = {"plot": plot_cli.main, "report": report_cli.main}[tool]
    one_line(capsys, lambda: main(argv), names=[case, *names])
    assert snapshot(tmp_path) == before


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("tool,case,edit,names", DAMAGED, ids=[f"{c[0]}-{c[1]}" for c in DAMAGED])
def test_a_damaged_run_among_others_is_named_and_skipped(
    world, capsys, tmp_path, tool, case, edit, names
):
    """Beside a good run the damaged one is named on stderr (one line) and left out; the page
    or figure is written for the rest, exit 0."""
    import wavenet.cli.report as report_cli

    run = _damaged(world, tmp_path / "runs", case, edit)
    before = snapshot(world["base"], run)
    out = tmp_path / ("sweep.png" if tool == "plot" else "sweep.html")
    main = {"plot": plot_cli.main, "report": report_cli.main}[tool]
    main([str(world["run"]), str(run), "--out", str(out)])
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and out.stat().st_size > 0
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"wavenet-{tool}: skipped a run: {run}"), line
    assert all(name in line for name in names), line
    assert snapshot(world["base"], run) == before
    if tool == "report":
        page = out.read_text()
        assert world["run"].name in page and case not in page


@pytest.mark.parametrize("tool", ["plot", "report"])
def test_when_no_run_is_usable_one_line_names_each(world, capsys, tmp_path, tool):
    import wavenet.cli.report as report_cli

    runs = [
        _damaged(world, tmp_path, case, edit)
        for case, edit, _ in (METRICS_DAMAGE[0], METRICS_DAMAGE[4])
    ]
    out = tmp_path / ("sweep.png" if tool == "plot" else "sweep.html")
    main = {"plot": plot_cli.main, "report": report_cli.main}[tool]
    argv = [*map(str, runs), str(tmp_path / "missing"), "--out", str(out)]
    line = one_line(capsys, lambda: main(argv), names=["none of the 3 runs", *map(str, runs)])
    assert "missing" in line and not out.exists()


@pytest.mark.parametrize(
    "tool,file",
    [("plot", "metrics.jsonl"), ("report", "metrics.jsonl"), ("report", ".hydra/config.yaml")],
)
def test_a_fifo_in_a_run_is_named_without_blocking(world, tmp_path, tool, file):
    """A FIFO with no writer blocks whoever opens it: named instead. A real process, so a
    regression times out rather than hanging the suite."""
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    (run / file).unlink()
    os.mkfifo(run / file)
    out = tmp_path / ("x.png" if tool == "plot" else "x.html")
    proc = run_tool(f"wavenet-{tool}", str(run), "--out", str(out), cwd=tmp_path, timeout=120)
    proc_line(proc, names=[str(run / file), "a FIFO, not a regular file"])
    assert not out.exists()
