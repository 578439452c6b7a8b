"""wavenet-plot and wavenet-report: bad run dirs, outputs and usage.

What every case holds: tests/bad_inputs.py.
"""

import pytest
from bad_inputs import _fill, one_line, snapshot

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
