"""Training at scale: DDP over torchrun (gloo on CPU), gradient accumulation, the EMA of the
weights and the LR schedules. The DDP tests launch the real trainer under torchrun with two CPU
processes and compare it with one process on the same crops."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from wavenet import checkpoint
from wavenet.cli.common import register
from wavenet.config import CONF_DIR, PROJECT_DIR
from wavenet.data.dataset import CropSampler, Utterance
from wavenet.training import loop as train
from wavenet.training.ema import EMA

BIN = Path(sys.executable).parent
TINY = ["model=tiny", "data.crop=100", "data.val_crops=2", "train.val_every=1000",
        "train.log_every=1", "train.sample_seconds=0", "train.checkpoint_minutes=0",
        "train.threads=1", "train.progress=false", "train.warmup_steps=2", "train.lr=3e-3"]


def run(run_dir: Path, data: Path, *overrides: str) -> dict:
    """train.train in this process with the tiny config."""
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        dcfg = compose("config", overrides=[*TINY, f"data.root={data}", *overrides])
    try:
        return train.train(OmegaConf.to_object(dcfg), run_dir, OmegaConf.to_container(dcfg))
    finally:
        torch.set_num_threads(1)


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stderr[-3000:]}"
    return proc


def torchrun(run_dir: Path, data: Path, *overrides: str) -> subprocess.CompletedProcess:
    """The real trainer under torchrun: two CPU processes (gloo) on this machine."""
    return cli([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
                str(PROJECT_DIR / "scripts" / "train.py"), *TINY, f"data.root={data}",
                f"hydra.run.dir={run_dir}", *overrides], cwd=run_dir.parent)


def ckpt(run_dir: Path) -> dict:
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")


def assert_close(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)


def test_ddp_matches_one_process_and_resumes_anywhere(tmp_path, speech):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # 2 ranks x batch 2 against 1 process x batch 4: the same crops, the same first update.
    torchrun(ddp, speech, "train.batch_size=2", "train.max_steps=1")
    run(single, speech, "train.batch_size=4", "train.max_steps=1")
    a, b = ckpt(ddp), ckpt(single)
    assert a["step"] == b["step"] == 1
    assert torch.equal(a["crops"]["generator"], b["crops"]["generator"])
    assert_close(a["train_model"], b["train_model"])
    assert_close(a["model"], b["model"])  # the EMA

    # Resume under DDP, and the same resume in one process: still the same training.
    proc = torchrun(ddp, speech, "train.batch_size=2", "train.max_steps=3")
    out = proc.stdout + proc.stderr
    assert "all 2 ranks hold identical weights" in out
    assert out.count("resumed from") == 1 and "starting from" not in out  # rank 0 logs
    run(single, speech, "train.batch_size=4", "train.max_steps=3")
    a, b = ckpt(ddp), ckpt(single)
    assert a["step"] == 3 and a["ema"]["updates"] == 3
    assert_close(a["train_model"], b["train_model"])
    assert_close(a["model"], b["model"])

    # The 2-rank checkpoint resumes in one process.
    run(ddp, speech, "train.batch_size=4", "train.max_steps=4")
    assert ckpt(ddp)["step"] == 4
    checkpoint.build_model(ckpt(ddp))  # and wavenet-generate can read it


def test_accumulation_and_ema_through_the_cli(tmp_path, speech):
    accumulated, plain, raw_eval = tmp_path / "acc", tmp_path / "plain", tmp_path / "raw"
    cli([str(BIN / "wavenet-train"), *TINY, f"data.root={speech}", f"hydra.run.dir={accumulated}",
         "train.batch_size=2", "train.accumulate=2", "train.ema_decay=0.9", "train.max_steps=3"],
        cwd=tmp_path)
    run(plain, speech, "train.batch_size=4", "train.ema_decay=0.9", "train.max_steps=3")
    run(raw_eval, speech, "train.batch_size=4", "train.ema_decay=0.9", "train.max_steps=3",
        "train.ema_eval=false")
    acc, one, raw = ckpt(accumulated), ckpt(plain), ckpt(raw_eval)
    # batch 2 x 2 micro-batches trains on the crops of batch 4, with the same gradients.
    assert_close(acc["train_model"], one["train_model"])
    assert_close(acc["model"], one["model"])
    # `model` is the EMA (what generation reads), `train_model` the raw weights; ema_eval=false
    # swaps them: `model` raw, the EMA under `ema`.
    assert not torch.equal(acc["model"]["head.3.weight"], acc["train_model"]["head.3.weight"])
    assert "train_model" not in raw and raw["ema"]["updates"] == 3
    assert_close(raw["model"], one["train_model"], atol=0)
    assert_close(raw["ema"]["weights"], one["model"], atol=0)


def test_ema_follows_the_weights_with_a_warmed_up_decay():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.99)
    start = model.weight.detach().clone()
    history = [start]
    for _ in range(5):
        with torch.no_grad():
            model.weight.add_(1.0)
        history.append(model.weight.detach().clone())
        ema.update(model)
    expected = start
    for n, w in enumerate(history[1:]):
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * w
    torch.testing.assert_close(ema.module.weight, expected)
    assert not ema.module.weight.requires_grad
    resumed = EMA(torch.nn.Linear(3, 2), decay=0.99)
    resumed.load_state_dict(ema.state_dict())
    assert resumed.updates == 5 and torch.equal(resumed.module.weight, ema.module.weight)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_lr_schedules():
    cosine = [train.lr_factor(s, 10, 110, 0.1) for s in range(120)]
    assert cosine[0] == 0.1 and cosine[9] == 1.0 and cosine[10] == 1.0
    assert cosine[110] == pytest.approx(0.1) and cosine[119] == pytest.approx(0.1)
    inv = [train.lr_factor(s, 100, 10**6, 0.01, "inverse_sqrt") for s in range(10**5)]
    assert inv[99] == 1.0 and inv[399] == pytest.approx(0.5) and inv[9999] == pytest.approx(0.1)
    assert train.lr_factor(10**7, 100, 10**6, 0.01, "inverse_sqrt") == 0.01
    assert all(a >= b for a, b in zip(inv[99:], inv[100:], strict=False))


def test_crop_shards_are_one_global_draw():
    gen = torch.Generator().manual_seed(0)
    utts = [Utterance(f"{i}.wav", "", torch.rand(n, generator=gen) * 2 - 1)
            for i, n in enumerate([900, 1500, 700])]
    whole = CropSampler(utts, 200, seed=5)
    ranks = [CropSampler(utts, 200, seed=5, rank=k, world_size=3) for k in range(3)]
    for _ in range(2):
        expected = whole.draw(12).audio
        assert torch.equal(torch.cat([s.draw(4).audio for s in ranks]), expected)
    assert all(torch.equal(s.state_dict()["generator"], whole.state_dict()["generator"])
               for s in ranks)
    with pytest.raises(ValueError, match="rank"):
        CropSampler(utts, 200, rank=2, world_size=2)


@pytest.mark.parametrize("key,value", [("ema_decay", 1.0), ("accumulate", 0),
                                       ("precision", "fp16"), ("lr_schedule", "step"),
                                       ("device", "tpu")])
def test_scale_keys_are_checked(key, value):
    from wavenet.config import TrainConfig

    with pytest.raises(ValueError, match=f"train.{key}"):
        TrainConfig(**{key: value})


def test_bf16_autocast_trains_fp32_weights(tmp_path, speech):
    record = run(tmp_path, speech, "train.precision=bf16", "train.max_steps=2")
    assert math.isfinite(record["train_bits"]) and math.isfinite(record["val_bits"])
    assert all(w.dtype == torch.float32 for w in ckpt(tmp_path)["model"].values())
