"""Training on several processes (wavenet.training.distributed): DDP over torchrun (gloo on
CPU). The DDP tests launch the real trainer under torchrun with two CPU processes and compare
it with one process on the same crops."""

import copy
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tools
import torch
from builders import TINY_ARCH, TINY_TRAIN, assert_weights_close, last_checkpoint

from wavenet import checkpoint
from wavenet.config import PROJECT_DIR
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.training import loop as train
from wavenet.training.distributed import World

BIN = Path(sys.executable).parent
TINY = [*TINY_TRAIN, "train.warmup_steps=2", "train.lr=3e-3"]


def torchrun(run_dir: Path, data: Path, *overrides: str) -> subprocess.CompletedProcess:
    """The real trainer under torchrun: two CPU processes (gloo) on this machine."""
    proc = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--standalone",
            "--nproc_per_node=2",
            str(PROJECT_DIR / "scripts" / "train.py"),
            *TINY,
            f"data.root={data}",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        cwd=run_dir.parent,
        env=tools.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stderr[-3000:]}"
    return proc


def test_ddp_matches_one_process_and_resumes_anywhere(tmp_path, speech, train_run):
    def run(run_dir, data, *overrides):
        return train_run(run_dir, *TINY, f"data.root={data}", *overrides)

    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # 2 ranks x batch 2 against 1 process x batch 4: the same crops, the same first update.
    torchrun(ddp, speech, "train.batch_size=2", "train.max_steps=1")
    run(single, speech, "train.batch_size=4", "train.max_steps=1")
    a, b = last_checkpoint(ddp), last_checkpoint(single)
    assert a["step"] == b["step"] == 1
    assert torch.equal(a["crops"]["generator"], b["crops"]["generator"])
    assert_weights_close(a["train_model"], b["train_model"])
    assert_weights_close(a["model"], b["model"])  # the EMA

    # Resume under DDP, and the same resume in one process: still the same training.
    proc = torchrun(ddp, speech, "train.batch_size=2", "train.max_steps=3")
    out = proc.stdout + proc.stderr
    assert "all 2 ranks hold identical weights" in out
    assert out.count("resumed from") == 1 and "starting from" not in out  # rank 0 logs
    run(single, speech, "train.batch_size=4", "train.max_steps=3")
    a, b = last_checkpoint(ddp), last_checkpoint(single)
    assert a["step"] == 3 and a["ema"]["updates"] == 3
    assert_weights_close(a["train_model"], b["train_model"])
    assert_weights_close(a["model"], b["model"])

    # The 2-rank checkpoint resumes in one process.
    run(ddp, speech, "train.batch_size=4", "train.max_steps=4")
    assert last_checkpoint(ddp)["step"] == 4
    checkpoint.build_model(last_checkpoint(ddp))  # and wavenet-generate can read it


@dataclass(frozen=True)
class TwoRanks(World):
    """Rank 0 of a world of two whose other rank reports `other` (a weights digest)."""

    other: str = ""

    def gather(self, obj: object) -> list:
        return [obj, self.other]


def test_ranks_whose_weights_differ_stop_the_run():
    """The end-of-run check: equal digests pass; one last weight one float step off fails."""
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig(**TINY_ARCH))
    train.check_ranks_agree(model, TwoRanks(size=2, other=train.weights_digest(model)))
    drifted = copy.deepcopy(model)
    with torch.no_grad():
        last = list(drifted.parameters())[-1].view(-1)
        last[-1] = torch.nextafter(last[-1], torch.tensor(math.inf))
    with pytest.raises(RuntimeError, match="different weights"):
        train.check_ranks_agree(model, TwoRanks(size=2, other=train.weights_digest(drifted)))
