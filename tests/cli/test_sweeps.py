"""Searches and cluster sweeps through the real `wavenet-train -m`: Hydra's Optuna sweeper (the
shipped hparams_search=budget, a refused trial, bad search spaces) and the submitit launcher's
local executor (jobs as processes, a preempted job requeued and resumed)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tools
import yaml

OPTUNA = tools.importable("hydra_plugins.hydra_optuna_sweeper")
SUBMITIT = tools.importable("hydra_plugins.hydra_submitit_launcher")
needs_optuna = pytest.mark.requires(OPTUNA, "hydra-optuna-sweeper: pip install 'wavenet[sweeps]'")
needs_submitit = pytest.mark.requires(
    SUBMITIT, "hydra-submitit-launcher: pip install 'wavenet[sweeps]'"
)

# A trial of seconds: the tiny model, three steps of two short crops, one validation.
TINY = [
    "model=tiny",
    "train.batch_size=2",
    "data.crop=100",
    "data.val_crops=2",
    "train.max_steps=3",
    "train.val_every=3",
    "train.warmup_steps=1",
    "train.sample_seconds=0",
    "train.threads=1",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def speech(tmp_path_factory, demo_root) -> Path:
    """Four real demo utterances in a plain folder."""
    root = tmp_path_factory.mktemp("speech")
    for p in sorted((demo_root / "wavs").glob("*.flac"))[:4]:
        os.link(p, root / p.name)
    return root


def best_val_bits16(run: Path) -> float:
    """The oracle: the lowest val_bits16 written to the run's metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return min(r["val_bits16"] for r in records if "val_bits16" in r)


def run_dirs(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.rglob("metrics.jsonl"))


def overrides(run: Path) -> dict[str, str]:
    lines = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    return dict(line.split("=", 1) for line in lines)


def study_trials(db: Path) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="search", storage=f"sqlite:///{db}").trials


def test_the_objective_is_the_best_validation_not_the_last(tmp_path):
    from wavenet.cli.sweeps import objective

    assert objective(tmp_path) == math.inf  # no metrics.jsonl: ranked last
    lines = [
        {"step": 1, "train_bits": 7.0},
        {"step": 2, "val_bits": 6.5, "val_bits16": 12.25},
        "not json",
        {"step": 3, "val_bits": 6.0, "val_bits16": 11.75},
        {"step": 4, "val_bits": 6.9, "val_bits16": 12.5},  # diverging: the best stays
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    (tmp_path / "metrics.jsonl").write_text(text + "\n")
    assert objective(tmp_path) == 11.75


@needs_optuna
def test_a_search_returns_each_runs_best_and_resumes_its_study(tmp_path, speech, cli):
    search = [
        "-m",
        "hparams_search=budget",
        "name=search",
        *TINY,
        f"data.root={speech}",
        "train.lr=tag(log, interval(1e-3, 3e-2))",
        "hydra.sweeper.n_trials=3",
    ]
    first = cli("wavenet-train", *search, cwd=tmp_path)
    db = tmp_path / "multirun" / "search" / "search" / "optuna.db"
    trials = study_trials(db)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    runs = run_dirs(tmp_path / "multirun")
    assert len(runs) == 3
    # Each trial's value is its run's best validation bits per 16-bit sample, and each trial
    # trained what it was given (its run's overrides hold the proposed values).
    by_lr = {float(overrides(run)["train.lr"]): run for run in runs}
    for trial in trials:
        run = by_lr[trial.params["train.lr"]]
        assert trial.value == pytest.approx(best_val_bits16(run), abs=1e-9)
        assert overrides(run)["data.preemphasis"] == str(trial.params["data.preemphasis"])
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3
    best = min(trials, key=lambda t: t.value)
    [line] = [x for x in first.stdout.splitlines() if x.startswith("best trial:")]
    assert f"{best.value:.4f}" in line and f"train.lr={best.params['train.lr']}" in line
    assert "Traceback" not in first.stderr

    # The same command again: the study goes on (4 trials), the first three untouched, and
    # the new trial's run is in a sweep dir of its own.
    cli("wavenet-train", *search[:-1], "hydra.sweeper.n_trials=1", cwd=tmp_path)
    again = study_trials(db)
    assert len(again) == 4 and [t.value for t in again[:3]] == [t.value for t in trials]
    runs = run_dirs(tmp_path / "multirun")
    assert len(runs) == 4 and len({run.parent for run in runs}) == 2

    # wavenet-report over the search ranks all four trials, lowest value first.
    page = tmp_path / "multirun" / "search" / "search" / "report.html"
    proc = cli("wavenet-report", str(page.parent), cwd=tmp_path)
    assert proc.stdout.split() == [str(page)]
    text = page.read_text()
    ranked = sorted(runs, key=best_val_bits16)
    at = [text.index(f'href="{run.parent.name}/{run.name}/') for run in ranked]
    assert at == sorted(at), "the trials are not listed best first"


@needs_optuna
def test_a_refused_trial_ranks_last_and_the_search_goes_on(tmp_path, speech, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli(
        "wavenet-train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        *TINY,
        f"data.root=choice({speech},{empty})",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    [run] = run_dirs(tmp_path / "sweep")
    assert results["best_params"]["data.root"] == str(speech)
    assert results["best_value"] == pytest.approx(best_val_bits16(run), abs=1e-9)
    # The refused trial said why in one line and was scored, not raised.
    [refused] = [x for x in proc.stderr.splitlines() if x.startswith("wavenet-train:")]
    assert str(empty) in refused and "Traceback" not in proc.stderr


@needs_optuna
@pytest.mark.parametrize(
    "space, named",
    [
        ("train.lrr=interval(1e-3, 1e-2)", "train.lrr"),  # no such key
        ("train.lr=interval(0.1, 0.01)", "empty interval"),
        ("train.lr=interval(0, 0.1)", "train.lr=0"),  # lr <= 0
        ("train.batch_size=interval(8, 32)", "8.0"),  # floats for an int
        ("model=choice(tiny, huge)", "model=huge"),  # no such config
    ],
)
def test_a_bad_search_space_fails_before_any_trial(tmp_path, speech, cli, space, named):
    proc = cli(
        "wavenet-train",
        "-m",
        "hparams_search=budget",
        *TINY,
        f"data.root={speech}",
        space,
        cwd=tmp_path,
        ok=False,
    )
    line = tools.one_line_error(proc, "wavenet-train: error:", "search space", named)
    assert len(line) < 400
    assert not (tmp_path / "multirun").exists(), "a trial ran or the study was made"


def submitit_sweep(tmp_path: Path, speech: Path, *args: str) -> list[str]:
    return [
        tools.exe("wavenet-train"),
        "-m",
        "hydra/launcher=submitit_local",
        *TINY,
        f"data.root={speech}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *args,
    ]


def run_sweep(tmp_path: Path, speech: Path, *args: str) -> None:
    """The submitit_local sweep of `args`, asserted to exit 0."""
    proc = subprocess.run(
        submitit_sweep(tmp_path, speech, *args),
        cwd=tmp_path,
        env=tools.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_submitit
def test_submitit_local_runs_each_job_in_its_own_process_and_run_dir(tmp_path, speech):
    run_sweep(tmp_path, speech, "train.lr=1e-3,2e-3")
    runs = run_dirs(tmp_path / "sweep")
    assert sorted(float(overrides(run)["train.lr"]) for run in runs) == [1e-3, 2e-3]
    for run in runs:
        assert (run / "checkpoints" / "last.pt").is_file()
        assert math.isfinite(best_val_bits16(run))
    # Each job ran in a process of its own: submitit's per-job logs.
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))) == 2


def task_pid(sweep: Path) -> int | None:
    """The pid of the submitit task process running a job of `sweep`."""
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "submitit.core._submit" in cmd and str(sweep) in cmd:
            return int(proc.name)
    return None


@needs_submitit
def test_a_preempted_job_is_requeued_and_resumes_from_last_pt(tmp_path, speech):
    sweep = tmp_path / "sweep"
    steps = 100  # long enough that the signal lands mid-run on a fast machine
    sweeper = subprocess.Popen(
        submitit_sweep(
            tmp_path,
            speech,
            f"train.max_steps={steps}",
            f"train.val_every={steps}",
            "train.log_every=1",
        ),
        cwd=tmp_path,
        env=tools.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            metrics = list(sweep.glob("*/metrics.jsonl"))
            if metrics and len(metrics[0].read_text().splitlines()) >= 3:
                break
            assert sweeper.poll() is None, sweeper.stdout.read()
            time.sleep(0.2)
        pid = task_pid(sweep)
        assert pid is not None, "no submitit task process found"
        os.kill(pid, signal.SIGUSR2)  # submitit's preemption signal
        out, _ = sweeper.communicate(timeout=240)
    finally:
        if sweeper.poll() is None:
            sweeper.kill()
    assert sweeper.returncode == 0, out[-3000:]
    [run] = run_dirs(sweep)
    log = (run / "train.log").read_text()
    assert "stopped by SIGUSR2" in log and "resumed from" in log, log[-2000:]
    # One history, no step trained twice or skipped: the requeued job went on from last.pt.
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    trained = [r["step"] for r in records if "train_bits" in r]
    assert trained == list(range(1, steps + 1))
    assert len(list(sweep.glob(".submitit/*/*_log.out"))) == 1  # one job, run twice


@needs_submitit
def test_the_tasks_of_one_job_train_as_one_ddp_group(tmp_path, speech, cli):
    # Two tasks of one submitit job x batch 2 against one process x batch 4: torchrun's
    # equivalence (tests/training/test_distributed.py), so the tasks formed one group.
    from builders import assert_weights_close

    from wavenet import checkpoint

    run_sweep(tmp_path, speech, "hydra.launcher.tasks_per_node=2", "train.max_steps=2")
    [run] = run_dirs(tmp_path / "sweep")
    assert "scale: 2 process(es)" in (run / "train.log").read_text()
    single = tmp_path / "single"
    args = [*TINY, f"data.root={speech}", "train.max_steps=2", "train.batch_size=4"]
    cli("wavenet-train", *args, f"hydra.run.dir={single}", cwd=tmp_path)
    a = checkpoint.load(run / "checkpoints" / "last.pt")
    b = checkpoint.load(single / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 2
    assert_weights_close(a["train_model"], b["train_model"])


def test_without_the_sweeps_extra_a_search_says_what_to_install(tmp_path, speech):
    # The plugins hidden from import, as in a base install.
    code = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('optuna', 'submitit') or 'optuna_sweeper' in name:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        f"sys.argv = ['wavenet-train', '-m', 'hparams_search=budget', 'data.root={speech}']\n"
        "from wavenet.cli.train import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=tools.env(), capture_output=True, text=True
    )
    tools.one_line_error(proc, "wavenet-train: error:", "pip install 'wavenet[sweeps]'")
    assert not (tmp_path / "multirun").exists()
