"""Benchmark the dataset store on sets of any size; prints one JSON line per measurement.

    python scripts/bench_data.py --hours 2 6 20 100 --train      # docs/data.md's table
    python scripts/bench_data.py --hours 2 --decode --rate 22050 --workers 1 2   # decode scaling
    python scripts/bench_data.py --hours 20 --ceiling --rate 22050 --workers 2  # its ceiling
    python scripts/bench_data.py --hours 2 --ranks 2             # two torchrun ranks on one set
    python scripts/bench_data.py --tiny                          # seconds: what CI runs

A set of N hours is made in a temporary folder (--tmp) from hardlinked copies of real speech
(--source, default ../shared/speech/asterisk4, metadata layout), repeated until it holds N
hours; with --rate the source is first re-encoded once as FLAC at that rate, so decoding also
resamples. Nothing is written into the repository, and the folder is removed at the end.

Records ("what"):
  decode  load_dataset into a fresh store by `workers` processes: decode_s (load_dataset
          timed inside the process: what a training run waits), command_s (the whole
          command, the interpreter's start and imports included), files_per_s, hours_per_s
          (of decode_s), peak_rss_mb (the largest process: the main one or a worker)
  ceiling the machine's own ceiling for --decode: decode_file on every file in one process,
          then on 1/N of them in each of N independent processes (no pool, no transfer, no
          writer), every process timed from one start after its imports: one_s, n_s, speedup
  train   `wavenet-train data.root=SET model=tiny train.max_steps=3` as a user runs it, "cold"
          (no store) then "warm": first_step_s (command start to the first step's metrics
          line), wall_s, peak_rss_mb of the training process
  ranks   the same under `torchrun --nproc_per_node=N` (warm): first_step_s, peak_rss_mb
          of each rank and total_rss_mb, their sum (one process: the warm train record);
          peak_pss_mb (train and ranks): the largest sum of the process tree's proportional set
          sizes, shared pages counted once, what the run takes of the machine
  crops   CropSampler draws from the store at model=small's crop (batch 8): crops_per_s,
          mel_crops_per_s (each with its 80-band log-mel, computed per crop), and
          step_s of a model=small training step on this machine, crops_per_step_s (8 / step_s)
Each record also has cpu, load (1-minute load average before it), hours and files.
"""

import argparse
import contextlib
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
from bench_train import bench
from machine import cpu_model, load

from wavenet.config import model_config
from wavenet.data import store
from wavenet.data.dataset import Conditioning, CropSampler, load_dataset
from wavenet.data.layouts import find_audio
from wavenet.model.features import MelConfig

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "speech" / "asterisk4"
BIN = Path(sys.executable).parent
PSS_EVERY_S = 1.0  # how often watch() sums the tree's PSS (VmHWM, the RSS peak, is kept by Linux)


def make_set(source: Path, hours: float, folder: Path, rate: int | None) -> tuple[Path, int, float]:
    """A metadata-layout set of about `hours` in folder/set: hardlinked copies of source's
    files (re-encoded once at `rate` first, if given). Returns (root, files, hours)."""
    files = [source / name for name, _ in find_audio(source)]
    speakers = dict(find_audio(source))
    if rate is not None:  # one re-encoded copy of the source, then links to it
        encoded = folder / f"source-{rate}"
        for path in files:
            target = encoded / path.relative_to(source).with_suffix(".flac")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                audio, file_rate = sf.read(path, dtype="float32")
                audio = torch.from_numpy(audio)
                sf.write(target, AF.resample(audio, file_rate, rate).numpy(), rate, "PCM_16")
        names = {encoded / p.relative_to(source).with_suffix(".flac"): p for p in files}
    else:
        names = {p: p for p in files}
    seconds = sum(sf.info(p).duration for p in names)
    copies = max(1, math.ceil(hours * 3600 / seconds))
    root = folder / f"set-{hours:g}h{'-' + str(rate) if rate else ''}"
    rows = []
    for k in range(copies):
        for path, original in names.items():
            name = f"c{k:04d}/{path.name}"
            target = root / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
            rows.append((name, speakers[original.relative_to(source).as_posix()]))
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "speaker"])
        writer.writerows(rows)
    return root, len(rows), copies * seconds / 3600


def tree(pid: int) -> list[int]:
    """pid and its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def peak_rss(pid: int) -> tuple[int, str] | None:
    """(VmHWM in kB, command line) of a live process, or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]), cmd
    return None


def pss(pid: int) -> int:
    """Proportional set size of a live process in kB (shared pages divided among the processes
    that map them: the store in the page cache, torch's libraries), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def watch(cmd: list[str], env: dict, first_line: Path | None = None, poll_s: float = 0.05) -> dict:
    """Run cmd, polling its process tree's peak RSS per process (every poll_s) and the largest
    sum of their PSS (what the tree takes of the machine); the seconds until `first_line`
    holds a line (None: not waited for) and in all, and what the command printed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict[int, tuple[int, str]] = {}
    peak_pss = 0
    first = None
    output = []
    os.set_blocking(proc.stdout.fileno(), False)
    next_pss = start
    while proc.poll() is None:
        pids = tree(proc.pid)
        # smaps_rollup walks a process's page tables under its memory lock: read every 50 ms
        # it slowed a 2-worker decode by a quarter. PSS moves slowly; once a second will do.
        if time.perf_counter() >= next_pss:
            peak_pss = max(peak_pss, sum(pss(pid) for pid in pids))
            next_pss = time.perf_counter() + PSS_EVERY_S
        for pid in pids:
            got = peak_rss(pid)
            if got is not None and got[0] >= peaks.get(pid, (0, ""))[0]:
                peaks[pid] = got
        if first is None and first_line is not None and _has_a_line(first_line):
            first = time.perf_counter() - start
        chunk = proc.stdout.read()
        if chunk:
            output.append(chunk)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=poll_s)  # returns as the command ends: its wall time is exact
    wall = time.perf_counter() - start
    output.append(proc.stdout.read() or b"")
    text = b"".join(output).decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return {"first": first, "wall": wall, "peaks": peaks, "pss": peak_pss, "output": text}


def _has_a_line(path: Path) -> bool:
    try:
        return b"\n" in path.read_bytes()
    except OSError:
        return False


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


def record(what: str, **fields) -> None:
    print(json.dumps({"what": what, "cpu": cpu_model(), **fields}), flush=True)


def decode(root: Path, cache: Path, workers: int, info: dict) -> None:
    """Time load_dataset into a fresh store (in a child process, for its own peak RSS)."""
    shutil.rmtree(cache, ignore_errors=True)
    code = (
        "import sys, time; from wavenet.data import store; from wavenet.data.dataset import "
        "load_dataset; store.POOL_MIN_BYTES = 0; t = time.perf_counter(); "
        "load_dataset(sys.argv[1], cache_dir=sys.argv[2], workers=int(sys.argv[3]), "
        "progress=False); print('load_s', time.perf_counter() - t)"
    )
    before = load()
    # Polled slowly: with every core decoding, the watcher's own reads of /proc took a share
    # of a core from the decoders (peaks are VmHWM, kept by Linux; the processes live on).
    cmd = [sys.executable, "-c", code, str(root), str(cache), str(workers)]
    ran = watch(cmd, os.environ, poll_s=0.5)
    # Its own line: a warning printed after it (stderr is merged) must not be parsed with it.
    took = next(float(x.split()[1]) for x in ran["output"].splitlines() if x.startswith("load_s "))
    record(
        "decode",
        **info,
        workers=workers,
        load=before,
        decode_s=round(took, 1),
        command_s=round(ran["wall"], 1),
        files_per_s=round(info["files"] / took, 1),
        hours_per_s=round(info["hours"] / took, 4),
        peak_rss_mb=mb(max(kb for kb, _ in ran["peaks"].values())),
    )


CEILING = """
import sys, time
from pathlib import Path
import torch
from wavenet.data.layouts import find_audio
from wavenet.data.store import decode_file
torch.set_num_threads(1)
root, k, n, start = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
mine = [str(root / name) for name, _ in find_audio(root)][k::n]
while time.time() < start:
    time.sleep(0.01)
for path in mine:
    decode_file(path, 16000, None)
print(time.time())
"""


def ceiling(root: Path, processes: int, info: dict) -> None:
    """decode_file on every file: one process, then `processes` independent ones."""
    before = load()
    took = {}
    for n in (1, processes):
        start = time.time() + 10  # every process has imported torch by then
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CEILING, str(root), str(k), str(n), str(start)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(n)
        ]
        ends = [float(child.communicate()[0]) for child in children]
        if any(child.returncode for child in children):
            raise SystemExit("a ceiling process failed")
        took[n] = max(ends) - start
    record(
        "ceiling",
        **info,
        load=before,
        processes=processes,
        one_s=round(took[1], 1),
        n_s=round(took[processes], 1),
        speedup=round(took[1] / took[processes], 2),
    )


def train_args(root: Path, run: Path) -> list[str]:
    return [
        f"data.root={root}",
        "model=tiny",
        "train.max_steps=3",
        "train.log_every=1",
        "train.sample_seconds=0",
        "train.device=cpu",
        f"hydra.run.dir={run}",
    ]


def train(root: Path, cache: Path, folder: Path, info: dict, label: str) -> None:
    run = folder / f"run-{label}-{time.time_ns()}"
    env = {**os.environ, "WAVENET_CACHE_DIR": str(cache)}
    before = load()
    ran = watch([str(BIN / "wavenet-train"), *train_args(root, run)], env, run / "metrics.jsonl")
    main = max(
        (kb for kb, cmd in ran["peaks"].values() if "wavenet-train" in cmd and "spawn" not in cmd)
    )
    record(
        "train",
        **info,
        store=label,
        load=before,
        first_step_s=round(ran["first"], 1),
        wall_s=round(ran["wall"], 1),
        peak_rss_mb=mb(main),
        peak_pss_mb=mb(ran["pss"]),
    )
    shutil.rmtree(run, ignore_errors=True)


def ranks(root: Path, cache: Path, folder: Path, info: dict, n: int) -> None:
    run = folder / f"run-ranks-{time.time_ns()}"
    env = {**os.environ, "WAVENET_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [
        str(BIN / "torchrun"),
        "--standalone",
        f"--nproc_per_node={n}",
        str(REPO / "scripts" / "train.py"),
        *train_args(root, run),
        "train.threads=1",
    ]
    before = load()
    ran = watch(cmd, env, run / "metrics.jsonl")
    per_rank = sorted(
        mb(kb) for kb, c in ran["peaks"].values() if "train.py" in c and "torchrun" not in c
    )
    record(
        "ranks",
        **info,
        ranks=n,
        load=before,
        first_step_s=round(ran["first"], 1),
        peak_rss_mb=per_rank,
        total_rss_mb=round(sum(per_rank), 1),
        peak_pss_mb=mb(ran["pss"]),
    )
    shutil.rmtree(run, ignore_errors=True)


def crops(root: Path, cache: Path, info: dict, seconds: float, step_model: str | None) -> None:
    """Crops drawn per second from the (warm) store at model=small's crop length."""
    small = model_config("small")
    length = small.receptive_field + 4000  # data.crop's default
    utterances = load_dataset(root, cache_dir=cache).utterances
    sampler = CropSampler(utterances, length, small.codec, seed=0)
    before = load()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sampler.draw(8)
        n += 8
    fields = {
        "crops_per_s": round(n / (time.perf_counter() - start), 1),
        "length": length,
        "threads": torch.get_num_threads(),
    }
    # With an 80-band log-mel computed per crop (the vocoders' analysis), in whole hops.
    mel = MelConfig(n_mels=80)
    hop_length = math.ceil(length / mel.hop_length) * mel.hop_length
    sampler = CropSampler(utterances, hop_length, small.codec, cond=Conditioning(mel=mel))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sampler.draw(8)
        n += 8
    fields["mel_crops_per_s"] = round(n / (time.perf_counter() - start), 1)
    if step_model:  # what a training step consumes, on this machine
        step = bench(
            model_config(step_model), torch.device("cpu"), "fp32", False, "last", 8, 4000, 2, 0.999
        )
        fields.update(
            step_model=step_model,
            step_s=step["step_s"],
            crops_per_step_s=round(8 / step["step_s"], 2),
            ratio=round(fields["crops_per_s"] * step["step_s"] / 8, 1),
        )
    record("crops", **info, load=before, batch=8, **fields)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, nargs="+", default=[2.0])
    p.add_argument("--source", type=Path, default=SOURCE, help="the speech copied (any layout)")
    p.add_argument(
        "--rate", type=int, default=None, help="re-encode the source as FLAC at this rate"
    )
    p.add_argument("--tmp", type=Path, default=None, help="where the sets go (default: $TMPDIR)")
    p.add_argument("--decode", action="store_true", help="time decoding into a fresh store")
    p.add_argument(
        "--workers", type=int, nargs="+", default=[0], help="for --decode; 0: every core"
    )
    p.add_argument(
        "--ceiling", action="store_true", help="--decode's ceiling: independent processes"
    )
    p.add_argument("--train", action="store_true", help="wavenet-train cold and warm")
    p.add_argument("--ranks", type=int, default=0, help="also torchrun with this many ranks")
    p.add_argument("--crops", action="store_true", help="crops drawn per second")
    p.add_argument("--step-model", default="small", help="--crops: the model whose step to time")
    p.add_argument("--threads", type=int, default=0, help="--crops: torch threads; 0: default")
    p.add_argument(
        "--tiny", action="store_true", help="CI: the demo set, every measurement, seconds"
    )
    args = p.parse_args()
    if args.tiny:
        args.source, args.hours = REPO / "data" / "demo", [0.1]
        args.decode = args.train = args.crops = True
        args.workers, args.ranks, args.step_model = [1, 2], 0, None
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.source.is_dir():
        raise SystemExit(f"--source: {args.source} is not a folder")
    if args.tmp is not None and not args.tmp.is_dir():
        raise SystemExit(f"--tmp: {args.tmp} is not a folder")
    folder = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.tmp))
    try:
        for hours in args.hours:
            root, files, got = make_set(args.source, hours, folder, args.rate)
            info = {"hours": round(got, 2), "files": files, "rate": args.rate}
            cache = folder / f"cache-{hours:g}"
            if args.decode:
                for workers in args.workers:
                    decode(root, cache, workers or store.default_workers(), info)
            if args.ceiling:
                for workers in args.workers:
                    ceiling(root, workers or store.default_workers(), info)
            if args.train:
                shutil.rmtree(cache, ignore_errors=True)
                train(root, cache, folder, info, "cold")
                train(root, cache, folder, info, "warm")
            if args.ranks:
                ranks(root, cache, folder, info, args.ranks)
            if args.crops:
                crops(root, cache, info, 1.0 if args.tiny else 5.0, args.step_model)
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
