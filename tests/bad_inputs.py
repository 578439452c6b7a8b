"""Shared by the bad-input tests (tests/cli/test_bad_*.py): the world they aim at, the
snapshot that proves nothing changed, and the one-line checks.

Untrusted input through every tool: bad arguments, config values, checkpoint contents, audio,
mels, metadata rows, run directories and the disk. Each case: the exit status, exactly one line
on stderr naming the bad value or file, no traceback, and every pre-existing output and run dir
byte-for-byte unchanged (hashed before and after), with no new run dir.

Most cases call the tools in-process (`main(argv)` raises SystemExit); the few where the process
itself matters (Ctrl-C, two runs on one dir, kill -9) run the installed commands."""

import hashlib
import math
import os
import pickle
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from tools import run_tool

import wavenet.cli.generate as generate_cli
from wavenet import checkpoint
from wavenet.config import model_config
from wavenet.model.network import WaveNet, WaveNetConfig


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file and the name of every folder under `roots` (hidden ones too)."""
    seen = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            seen[str(path)] = (
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            )
    return seen


def save_tiny(path: Path, seed: int = 0, sample_rate: int = 16000, **config) -> dict:
    """A tiny untrained checkpoint at `path`; returns its payload."""
    torch.manual_seed(seed)
    cfg = WaveNetConfig(**{**asdict(model_config("tiny")), **config})
    speakers = ["anna", "bert"] if cfg.speaker_channels else []
    model = WaveNet(cfg, speakers=len(speakers))
    payload = {
        "model": model.state_dict(),
        "model_config": asdict(cfg),
        "sample_rate": sample_rate,
        "classes": cfg.classes,
        "speakers": speakers,
        "step": 0,
    }
    checkpoint.save(path, payload)
    return torch.load(path, weights_only=True)


VOCODER = {
    "mel": {
        "n_mels": 8,
        "n_fft": 64,
        "win_length": 64,
        "hop_length": 16,
        "channels": 4,
        "context": 1,
        "upsample": [4, 4],
    }
}


def build_world(base: Path, demo_root: Path) -> dict:
    """Everything the cases share, built once into `base`: data, checkpoints, a prime, mels,
    earlier generated output and a finished training run."""
    data = base / "data"
    data.mkdir()
    for path in sorted((demo_root / "wavs").glob("*.flac"))[:4]:
        shutil.copy(path, data / path.name)
    w = {"base": base, "data": data, "prime": data / sorted(os.listdir(data))[0]}
    w["ckpt"] = base / "tiny.pt"
    w["payload"] = save_tiny(w["ckpt"])
    w["vocoder"] = base / "vocoder.pt"
    save_tiny(w["vocoder"], **VOCODER)
    w["speaker"] = base / "speaker.pt"
    save_tiny(w["speaker"], speaker_channels=4)
    w["rate48k"] = base / "rate48k.pt"
    save_tiny(w["rate48k"], sample_rate=48000)
    mels = base / "mels"
    mels.mkdir()
    good = torch.full((8, 20), -5.0)
    variants = {
        "good.npy": good,
        "bands.npy": torch.zeros(5, 20),
        "flat.npy": torch.zeros(20),
        "ints.npy": torch.zeros(8, 20, dtype=torch.int32),
        "empty_batch.npy": torch.zeros(0, 8, 10),
        "no_frames.npy": torch.zeros(8, 0),
        "nan.npy": good.clone().fill_(math.nan),
        "huge.npy": good.clone().fill_(1e30),
        "batch3.npy": good.expand(3, -1, -1).contiguous(),
        "big_batch.npy": torch.zeros(5000, 8, 1),
    }
    for name, tensor in variants.items():
        np.save(mels / name, tensor.numpy())
    torch.save(good, mels / "good.pt")
    (mels / "pickle.pt").write_bytes(pickle.dumps(Evil()))
    (mels / "garbage.npy").write_bytes(b"not numpy at all")
    w["mels"] = mels
    # Earlier output of each generator, which no failed run may touch.
    w["out"] = base / "generated"
    for ckpt, extra in ((w["ckpt"], []), (w["vocoder"], [f"mel_from={mels / 'good.npy'}"])):
        generate_cli.main(
            [
                f"checkpoint={ckpt}",
                "seconds=0.01",
                f"out={w['out']}",
                "progress=false",
                "impl=reference",
                *extra,
            ]
        )
    assert len(list(w["out"].glob("*.wav"))) == 2
    # A finished tiny run.
    w["run"] = base / "run"
    run_tool(
        "wavenet-train", *TRAIN, f"data.root={data}", f"hydra.run.dir={w['run']}", cwd=base, ok=True
    )
    assert (w["run"] / ".hydra" / "config.yaml").is_file()
    return w


class Evil:
    """A pickle payload that would run code on load."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/wavenet-pwned",))


TRAIN = [
    "model=tiny",
    "data.crop=100",
    "data.val_crops=2",
    "train.batch_size=2",
    "train.max_steps=2",
    "train.val_every=2",
    "train.sample_seconds=0",
    "train.threads=1",
    "train.progress=false",
]


# What a one-line error never says: the temporary file beside an output (atomic_write's
# `.<name>.<8 random>.tmp`) instead of the output, or Python's words for an unchecked value.
TEMPORARY = re.compile(r"\.[^/\s']+\.[a-z0-9_]{8}\.tmp\b")
INTERNAL = ("math domain error", "cannot convert float", "has no attribute", "between instances")


def _single_line(code: int, expected: int, err: str, out: str, names) -> str:
    """The one stderr line of a tool that exited with `code` (must be `expected`), naming
    every one of `names`, with no traceback anywhere, no temporary file and none of Python's
    words for an unchecked value (INTERNAL)."""
    assert code == expected, err[-2000:]
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    assert not TEMPORARY.search(lines[0]), lines[0]
    assert not any(words in lines[0] for words in INTERNAL), lines[0]
    return lines[0]


def one_line(capsys, call, code: int = 2, names: tuple[str, ...] = ()) -> str:
    """Call `call`, which must exit with `code` after exactly one stderr line naming `names`."""
    with pytest.raises(SystemExit) as exit_:
        call()
    out = capsys.readouterr()
    return _single_line(exit_.value.code, code, out.err, out.out, names)


def proc_line(proc: subprocess.CompletedProcess, code: int = 2, names=()) -> str:
    """The same for a finished process."""
    return _single_line(proc.returncode, code, proc.stderr, proc.stdout, names)


def _fill(args: list[str], w: dict) -> list[str]:
    return [
        a.format(
            ckpt=w["ckpt"],
            mels=w["mels"],
            prime=w["prime"],
            base=w["base"],
            data=w["data"],
            vocoder=w["vocoder"],
            speaker=w["speaker"],
        )
        for a in args
    ]
