"""Every script in scripts/ runs, with tiny settings, so none can rot unnoticed.

Each case runs the script as a user would (a subprocess from the repository root) and checks
what it printed or wrote. A script added to scripts/ without a case here fails
`test_every_script_has_a_smoke_test`.
"""

import csv
import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tools import has, require

from wavenet import checkpoint
from wavenet.metrics import listening
from wavenet.sampling import kernel

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# Scripts run by another test module (which must name the script and the option given), and
# the shell entry points that
# install the environment (demo.sh and test.sh are what CI and the README run; setup.sh is
# sourced by both; install_browser.sh is run by .ci/run; gpu_check.sh needs a GPU).
ELSEWHERE = {
    "fault_drill.py": "--runs",
    "bench_generate.py": "--quick",
    "listening_table.py": "--speakers",
    "demo.sh": None,
    "test.sh": None,
    "setup.sh": None,
    "install_browser.sh": None,
    "gpu_check.sh": None,
    "machine.py": None,
}
HERE = {
    "bench_train.py",
    "bench_data.py",
    "heldout_files.py",
    "copy_synthesis.py",
    "train.py",
    "generate.py",
    "evaluate.py",
    "plot.py",
    "storage_accuracy.py",
    "prediction_gain.py",
}


def run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"
    return proc


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_script_has_a_smoke_test():
    scripts = {p.name for p in SCRIPTS.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts == HERE | set(ELSEWHERE), "a script without a smoke test (add it here)"
    tests = REPO / "tests"
    for script, marker in ELSEWHERE.items():
        if marker is not None:
            found = [
                p
                for p in tests.rglob("test_*.py")
                if p != Path(__file__) and marker in p.read_text() and script in p.read_text()
            ]
            assert found, f"no test runs scripts/{script}"


@pytest.mark.parametrize("script", ["train.py", "generate.py", "evaluate.py", "plot.py"])
def test_entry_point_scripts_answer_help(script, capsys, monkeypatch, tmp_path):
    """Each script run as __main__ (in this process: the console scripts' own processes are
    tested in tests/cli)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / script), "--help"])
    try:
        runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr()
    assert "wavenet" in out.out.lower() and "Traceback" not in out.err


def test_bench_train_quick_prints_a_line_per_setting():
    proc = run("bench_train.py", "--quick", "--precision", "fp32", "bf16", "--score", "last", "all")
    records = json_lines(proc.stdout)
    assert [(r["precision"], r["score"]) for r in records] == [
        ("fp32", "last"),
        ("fp32", "all"),
        ("bf16", "last"),
        ("bf16", "all"),
    ]
    for r in records:
        assert r["model"] == "tiny" and r["ema"] is True and r["cpu"]
        assert r["step_s"] > 0 and r["samples_per_s"] == pytest.approx(
            r["batch"] * r["crop"] / r["step_s"], rel=0.01
        )


def test_bench_data_tiny_prints_every_measurement():
    records = json_lines(run("bench_data.py", "--tiny").stdout)
    assert [(r["what"], r.get("workers"), r.get("store")) for r in records] == [
        ("decode", 1, None),
        ("decode", 2, None),
        ("train", None, "cold"),
        ("train", None, "warm"),
        ("crops", None, None),
    ]
    for r in records:
        assert r["cpu"] and r["files"] == 154 and r["hours"] > 0
    decode, _, cold, warm, crops = records
    assert decode["decode_s"] > 0 and decode["files_per_s"] > 0 and decode["peak_rss_mb"] > 0
    assert decode["decode_s"] < decode["command_s"]  # the command also starts an interpreter
    assert 0 < cold["first_step_s"] <= cold["wall_s"] and warm["first_step_s"] > 0
    assert warm["peak_rss_mb"] > 0 and crops["crops_per_s"] > 0


@pytest.fixture
def fake_run(tmp_path, demo_root) -> Path:
    """A run dir whose data_report.json holds out two demo files."""
    rows = list(csv.DictReader((demo_root / "metadata.csv").open()))[:2]
    run = tmp_path / "run"
    run.mkdir()
    report = {"root": str(demo_root), "validation": [r["file"] for r in rows], "train": []}
    (run / "data_report.json").write_text(json.dumps(report))
    return run


def test_heldout_files_copies_the_validation_files_with_speakers(fake_run, tmp_path, demo_root):
    out = tmp_path / "heldout"
    run("heldout_files.py", str(fake_run), str(out))
    report = json.loads((fake_run / "data_report.json").read_text())
    for name in report["validation"]:
        assert (out / name).read_bytes() == (demo_root / name).read_bytes()
    rows = list(csv.DictReader((out / "metadata.csv").open()))
    assert [r["file"] for r in rows] == report["validation"] and all(r["speaker"] for r in rows)


@pytest.mark.parametrize("grid", ["1.0:0.5:1.5", "1.0:0.002", "one:0:0"])
def test_copy_synthesis_refuses_a_bad_grid_before_synthesising(fake_run, repo_root, grid):
    """A setting out of range (a floor above 0.9/256), short or not a number: one line naming
    it, before minutes of synthesis of the settings before it."""
    vocoder = repo_root / "data" / "pretrained" / "asterisk4-vocoder.pt"
    args = ["--vocoder", str(vocoder), "--run", str(fake_run), "--files", "1"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "copy_synthesis.py"), *args, "--grid", "1:0:0", grid],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.startswith("copy_synthesis.py: ") and proc.stderr.count("\n") == 1


def test_copy_synthesis_scores_the_shipped_vocoder_on_one_file(fake_run, repo_root, tmp_path):
    require(
        listening.available(), f"the listening metrics extra is not installed: {listening.INSTALL}"
    )
    vocoder = repo_root / "data" / "pretrained" / "asterisk4-vocoder.pt"
    figure = tmp_path / "copy.png"
    proc = run(
        "copy_synthesis.py",
        "--vocoder",
        str(vocoder),
        "--run",
        str(fake_run),
        "--files",
        "1",
        "--batch",
        "1",
        "--threads",
        "1",
        "--figure",
        str(figure),
        timeout=600,
    )
    rows = {r["system"]: r for r in json_lines(proc.stdout)}
    assert set(rows) == {"mulaw", "vocoder"}
    shipped = checkpoint.load(vocoder)  # each row names the settings it drew with: the vocoder's
    assert {k: rows["vocoder"][k] for k in ("temperature", "floor", "sharpen")} == {
        "temperature": shipped["temperature"],
        "floor": shipped["floor"],
        "sharpen": shipped["sharpen"],
    }
    assert rows["vocoder"]["sharpen"] > 0 and rows["vocoder"]["floor"] > 0
    # The μ-law round trip is the floor: the vocoder cannot be closer to the source than it,
    # nor, 8-bit noise and all, sound cleaner than it.
    assert rows["mulaw"]["log_mel_distance_db"] < rows["vocoder"]["log_mel_distance_db"]
    assert rows["mulaw"]["pesq_wb"] > rows["vocoder"]["pesq_wb"]
    assert rows["mulaw"]["dnsmos_ovrl"] > rows["vocoder"]["dnsmos_ovrl"]
    assert all(1 <= r[f"dnsmos_{k}"] <= 5 for r in rows.values() for k in ("sig", "bak", "ovrl"))
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_storage_accuracy_scores_every_storage(repo_root, demo_root):
    ckpt = repo_root / "data" / "pretrained" / "asterisk4-small.pt"
    proc = run(
        "storage_accuracy.py",
        "--checkpoint",
        str(ckpt),
        "--root",
        str(demo_root),
        "--files",
        "1",
        "--threads",
        "1",
    )
    rows = {(r["storage"], r["scored_by"]): r for r in json_lines(proc.stdout)}
    storages = ["float32", "bfloat16", "int8"]
    assert [s for s, way in rows if way == "forward"] == storages
    assert all(r["files"] == 1 for r in rows.values())
    assert rows["float32", "forward"]["minus_float32"] == 0
    # Rounding the weights moves the figure by what it really costs on this file: +0.0001
    # bits/sample for bfloat16, +0.0040 for int8 (2026-12-06; the same on any CPU but for float
    # sums' last digits). The bounds leave a margin and no more: int8 codes a third coarser
    # (scale amax / 95, not / 127) give +0.0078, inside the script's 0.01 gate but not in them.
    forward = {s: rows[s, "forward"]["minus_float32"] for s in storages[1:]}
    assert 0 < abs(forward["bfloat16"]) < 0.001 and 0 < abs(forward["int8"]) < 0.006, forward
    assert all(r["passes"] for r in rows.values())
    if has(kernel.available(), "numba is not installed"):  # float32 is the forward's
        assert abs(rows["float32", "kernel"]["minus_float32"]) < 1e-4
        assert rows["float32", "kernel"]["samples"] == rows["float32", "forward"]["samples"]
        # Each compiled path scores what its rounded model's forward pass does (they agreed to
        # 1e-5; the int8 path also rounds its inputs to int16 levels).
        for s in storages[1:] if kernel.int8_dot_available() else storages[1:2]:
            assert abs(rows[s, "kernel"]["minus_float32"] - forward[s]) < 0.001, (s, forward)


def test_demo_vocodes_a_file_the_shipped_vocoder_never_trained_on(asterisk_root):
    """demo.sh ends with the shipped vocoder's copy synthesis of a bundled file: one held out
    by the split the shipped models were trained with (split_by_file(asterisk4, 0.1)), so a
    newcomer hears what the vocoder does with speech it has not seen."""
    import re

    import torch

    from wavenet.data.dataset import Utterance, split_by_file
    from wavenet.data.layouts import find_audio

    text = (SCRIPTS / "demo.sh").read_text()
    assert "checkpoint=data/pretrained/asterisk4-vocoder.pt" in text
    (mel_from,) = re.findall(r"mel_from=(\S+)", text)
    assert (REPO / mel_from).is_file(), mel_from
    found = [Utterance(n, s, torch.empty(0)) for n, s in find_audio(asterisk_root)]
    train, held_out = split_by_file(found, 0.1)
    assert Path(mel_from).name in {Path(u.name).name for u in held_out}
    assert Path(mel_from).name not in {Path(u.name).name for u in train}


def test_prediction_gain_of_each_predictor(demo_root):
    proc = run("prediction_gain.py", "--root", str(demo_root), "--files", "2", "--hop", "256", "16")
    gains = {(r["coefficients"], r["preemphasis"]): r["gain_db"] for r in json_lines(proc.stdout)}
    assert len(gains) == 6 and all(math.isfinite(g) and g > 0 for g in gains.values()), gains
    # Pre-emphasis whitens speech: less is left for any predictor to take.
    for name in ("mel", "past, every 256", "past, every 16"):
        assert gains[name, 0.0] > gains[name, 0.85], gains


def test_the_backward_predictor_reads_only_the_past():
    """A frame's coefficients come from the samples before it: changing samples from a frame's
    start on leaves that frame's (and earlier frames') coefficients as they were."""
    sys.path.insert(0, str(SCRIPTS))
    from prediction_gain import backward_coefficients

    s = torch.randn(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = backward_coefficients(s, 16, 64, 256)
    assert a.shape == (63, 17)
    assert torch.equal(a[0, 1:], torch.zeros(16))  # the first frame's past is silence
    for frame in (1, 10, 40):
        t = s.clone()
        t[frame * 64 :] = torch.randn(4000 - frame * 64, dtype=torch.float64)
        b = backward_coefficients(t, 16, 64, 256)
        assert torch.equal(a[: frame + 1], b[: frame + 1])
        assert not torch.equal(a[frame + 1], b[frame + 1])
