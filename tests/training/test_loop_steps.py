"""The pieces of one training step (wavenet.training.loop): the loss, autocast, clipping,
torch.compile and the LR schedules."""

import math

import pytest
import torch
from builders import TINY_TRAIN, last_checkpoint

from wavenet.training import loop as train


def test_lr_schedules():
    cosine = [train.lr_factor(s, 10, 110, 0.1) for s in range(120)]
    assert cosine[0] == 0.1 and cosine[9] == 1.0 and cosine[10] == 1.0
    assert cosine[110] == pytest.approx(0.1) and cosine[119] == pytest.approx(0.1)
    inv = [train.lr_factor(s, 100, 10**6, 0.01, "inverse_sqrt") for s in range(10**5)]
    assert inv[99] == 1.0 and inv[399] == pytest.approx(0.5) and inv[9999] == pytest.approx(0.1)
    assert train.lr_factor(10**7, 100, 10**6, 0.01, "inverse_sqrt") == 0.01
    assert all(a >= b for a, b in zip(inv[99:], inv[100:], strict=False))



def test_bf16_autocast_trains_fp32_weights(tmp_path, speech, train_run):
    record = train_run(tmp_path, *TINY_TRAIN, f"data.root={speech}", "train.precision=bf16",
                       "train.max_steps=2")
    assert math.isfinite(record["train_bits"]) and math.isfinite(record["val_bits"])
    assert all(w.dtype == torch.float32 for w in last_checkpoint(tmp_path)["model"].values())
