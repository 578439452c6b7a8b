"""wavenet-plot on the command line: the figure it writes and its one-line errors (main() in
process, except the end-to-end run of the installed script)."""

from builders import read_png, write_run
from tools import one_line_error


def test_cli_end_to_end(tmp_path, cli):
    runs = [write_run(tmp_path / "r1", wall=True), write_run(tmp_path / "r2")]
    proc = cli("wavenet-plot", str(runs[0]), str(runs[1]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "learning_curves.png"  # default: in the current directory
    read_png(tmp_path / "learning_curves.png")


def test_main_names_and_skips_a_dir_without_metrics(tmp_path, cli_main):
    """Among several runs one that cannot be drawn is named and left out; alone, it is an
    error: one line, nothing written."""
    run = write_run(tmp_path / "run")
    nothing, out = tmp_path / "nothing", tmp_path / "x.png"
    proc = cli_main("wavenet-plot", str(run), str(nothing), "--out", str(out))
    assert proc.returncode == 0 and proc.stdout.strip() == str(out)
    assert proc.stderr.strip().splitlines() == [
        f"wavenet-plot: skipped a run: {nothing}: no metrics.jsonl "
        "(not a wavenet-train run directory?)"
    ]
    read_png(out)
    out.unlink()
    proc = cli_main("wavenet-plot", str(nothing), "--out", str(out))
    line = one_line_error(proc, "nothing", "metrics.jsonl")
    assert line.startswith("wavenet-plot: error:") and proc.stdout == ""
    assert not out.exists()


def test_main_writes_where_told(tmp_path, cli_main):
    run = write_run(tmp_path / "run")
    proc = cli_main("wavenet-plot", str(run), "--out", str(tmp_path / "figs" / "lc.svg"))
    assert proc.returncode == 0 and proc.stdout.strip() == str(tmp_path / "figs" / "lc.svg")
    assert (tmp_path / "figs" / "lc.svg").read_text().lstrip().startswith("<?xml")
