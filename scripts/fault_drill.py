"""Kill -9 drill: train, SIGKILL at random moments (some during a checkpoint write), resume, repeat.

    python scripts/fault_drill.py --runs 20

Each round restarts `wavenet-train model=tiny` in the same run directory (train.resume=auto),
kills it with SIGKILL, then checks that every checkpoint still loads, that metrics.jsonl and
data_report.json parse, and that the next start resumes from exactly the step last.pt holds.
Kills land at a random moment (often during start-up: imports, data loading), at a random
moment of training, or during a checkpoint write: the process is frozen (SIGSTOP) as soon as a
checkpoint's temporary file appears and killed if the file is still there (else it goes on to
the next write).
After the last kill the run is finished without interruption and compared with an uninterrupted
reference run: the weights and the logged losses must be identical. Prints one JSON line of
counts; exits 1 if any check failed.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from wavenet import checkpoint

PROJECT_DIR = Path(__file__).resolve().parent.parent
TRAIN_BIN = Path(sys.executable).parent / "wavenet-train"


def train_args(data: Path, run: Path, steps: int) -> list[str]:
    """A tiny run that writes last.pt every 5 steps and validates twice (best.pt, samples)."""
    return [
        str(TRAIN_BIN),
        "model=tiny",
        f"data.root={data}",
        "data.crop=200",
        "data.val_crops=4",
        "train.batch_size=4",
        f"train.max_steps={steps}",
        f"train.val_every={steps // 2}",
        "train.sample_seconds=0.01",
        "train.log_every=1",
        "train.checkpoint_every=5",
        "train.checkpoint_minutes=0",
        "train.threads=1",
        "train.progress=false",
        f"hydra.run.dir={run}",
    ]


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # the log survives
    with log.open("w") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_for(proc: subprocess.Popen, ready, timeout: float, poll: float = 0.005) -> bool:
    """Poll `ready()` until true (True) or the process ends or time runs out (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():
            return True
        if poll:
            time.sleep(poll)
    return False


def metric_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def last_logged(run: Path) -> int:
    """The last step in metrics.jsonl, 0 if none or unreadable (it is polled while written)."""
    try:
        return max(metric_steps(run), default=0)
    except (ValueError, KeyError):
        return 0


def logged_past(run: Path, step: int) -> bool:
    return last_logged(run) > step


def temporaries(ckpt_dir: Path) -> set[str]:
    return {n for n in os.listdir(ckpt_dir) if n.endswith(".tmp")} if ckpt_dir.is_dir() else set()


def new_temporary(ckpt_dir: Path, before: set[str]) -> bool:
    """Whether a checkpoint write is under way (or was cut) since `before` was listed."""
    return bool(temporaries(ckpt_dir) - before)


def stopped(proc: subprocess.Popen, timeout: float = 2.0) -> bool:
    """Wait until `proc` shows as stopped (state T in /proc/PID/stat) after a SIGSTOP."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("T", "t"):
            return True
        time.sleep(0.001)
    return False


def stop_during_write(
    proc: subprocess.Popen, ckpt_dir: Path, before: set[str], timeout: float
) -> None:
    """Freeze `proc` (SIGSTOP) while a checkpoint write is under way: stop it as soon as a new
    temporary file appears; if the write finished before the stop took hold (the temporary is
    gone), let it go on (SIGCONT) and try the next write. Returns with `proc` stopped inside a
    write, or running if `timeout` passed or it ended."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not wait_for(
            proc, partial(new_temporary, ckpt_dir, before), timeout=end - time.monotonic(), poll=0
        ):
            return
        proc.send_signal(signal.SIGSTOP)
        if stopped(proc) and new_temporary(ckpt_dir, before):
            return
        proc.send_signal(signal.SIGCONT)


def check_run_dir(run: Path) -> tuple[int, int, int]:
    """(corrupt checkpoints, other corrupt files, step of last.pt or 0)."""
    bad_ckpt, bad_files, step = 0, 0, 0
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        if path.exists():
            try:
                ckpt = checkpoint.load(path)
            except checkpoint.CheckpointError as e:
                print(f"corrupt: {e}", file=sys.stderr)
                bad_ckpt += 1
                continue
            if name == "last.pt":
                step = ckpt["step"]
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        text = metrics.read_text()
        try:
            assert text == "" or text.endswith("\n"), "torn last line"
            metric_steps(run)
        except (AssertionError, ValueError, KeyError) as e:
            print(f"corrupt: {metrics} ({e})", file=sys.stderr)
            bad_files += 1
    report = run / "data_report.json"
    if report.is_file():
        try:
            json.loads(report.read_text())
        except ValueError as e:
            print(f"corrupt: {report} ({e})", file=sys.stderr)
            bad_files += 1
    return bad_ckpt, bad_files, step


def resumed_step(log: Path) -> int | None:
    """The step a run said it resumed from; 0 when it started fresh; None if it got no further."""
    for line in log.read_text().splitlines():
        if "resumed from" in line or "starting from step" in line:
            return int(line.rsplit(" ", 1)[1])
    return None


def drill(runs: int, workdir: Path, steps: int | None = None, seed: int = 0) -> dict:
    """Run the drill in workdir; returns the counts (see the module docstring).

    steps: length of the training run; by default 60 per round (at least 300), so that the
    rounds, each of which keeps a few seconds of progress, end before the run does.
    """
    steps = steps or max(300, 60 * runs)
    rng = random.Random(seed)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for path in sorted((PROJECT_DIR / "data" / "demo" / "wavs").glob("*.flac"))[:6]:
        shutil.copy(path, data / path.name)
    os.environ.setdefault("WAVENET_CACHE_DIR", str(workdir / "cache"))
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    run, reference = workdir / "run", workdir / "reference"
    counts = {
        "runs": runs,
        "kills": 0,
        "kills_during_checkpoint_write": 0,
        "kills_during_startup": 0,
        "resumes": 0,
        "resume_mismatches": 0,
        "corrupt_checkpoints": 0,
        "corrupt_files": 0,
    }
    t0 = time.monotonic()

    proc = start(train_args(data, reference, steps), logs / "reference.log")
    if proc.wait() != 0:
        raise RuntimeError(f"reference run failed, see {logs / 'reference.log'}")

    expected = 0  # the step the next start must resume from
    finished = False
    for i in range(runs):
        log = logs / f"round_{i:03d}.log"
        ckpt_dir = run / "checkpoints"
        left_before = temporaries(ckpt_dir)
        # Steps logged after last.pt by the killed run are logged again: wait for new ones.
        trained = partial(logged_past, run, max(last_logged(run), expected))
        proc = start(train_args(data, run, steps), log)
        mode = i % 3
        if mode == 0:  # anywhere: start-up, data loading, resuming or training
            time.sleep(rng.uniform(0.5, 4.5))
        elif mode == 1:  # during a checkpoint write: stopped with its temporary file open
            wait_for(proc, trained, timeout=60)
            time.sleep(rng.uniform(0.0, 0.3))  # not always the first write after the resume
            stop_during_write(proc, ckpt_dir, left_before, timeout=20)
        else:  # during training: a random moment after the first new step was logged
            wait_for(proc, trained, timeout=60)
            time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:  # ran to the end before the kill
            finished = proc.returncode == 0
            if not finished:
                raise RuntimeError(f"training failed (exit {proc.returncode}), see {log}")
        else:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            counts["kills"] += 1
        if new_temporary(ckpt_dir, left_before):  # a write was cut before its rename
            counts["kills_during_checkpoint_write"] += 1

        said = resumed_step(log)
        if said is None:
            counts["kills_during_startup"] += 1
        elif said == expected:
            counts["resumes"] += said > 0
        else:
            print(f"round {i}: resumed from step {said}, last.pt held {expected}", file=sys.stderr)
            counts["resume_mismatches"] += 1
        bad_ckpt, bad_files, expected = check_run_dir(run)
        counts["corrupt_checkpoints"] += bad_ckpt
        counts["corrupt_files"] += bad_files
        if finished:
            break

    if not finished:  # the final, uninterrupted stretch
        log = logs / "final.log"
        proc = start(train_args(data, run, steps), log)
        if proc.wait() != 0:
            raise RuntimeError(f"final run failed (exit {proc.returncode}), see {log}")
        said = resumed_step(log)
        counts["resumes"] += bool(said) and said == expected
        counts["resume_mismatches"] += said != expected
        bad_ckpt, bad_files, _ = check_run_dir(run)
        counts["corrupt_checkpoints"] += bad_ckpt
        counts["corrupt_files"] += bad_files

    final, ref = (
        checkpoint.load(run / "checkpoints/last.pt"),
        checkpoint.load(reference / "checkpoints/last.pt"),
    )
    counts["final_step"] = final["step"]
    same_weights = all(torch.equal(final["model"][k], ref["model"][k]) for k in ref["model"])

    def losses(path: Path) -> list[tuple[int, float]]:
        lines = (path / "metrics.jsonl").read_text().splitlines()
        return [(m["step"], m["train_bits"]) for m in map(json.loads, lines)]

    counts["matches_uninterrupted"] = same_weights and losses(run) == losses(reference)
    counts["seconds"] = round(time.monotonic() - t0, 1)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="kill/resume rounds (default 20)")
    parser.add_argument("--steps", type=int, help="training steps (default: 60 per round, >= 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wavenet-drill-"))
    try:
        counts = drill(args.runs, workdir, args.steps, args.seed)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(counts))
    ok = (
        counts["corrupt_checkpoints"] == counts["corrupt_files"] == 0
        and counts["resume_mismatches"] == 0
        and counts["matches_uninterrupted"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
