"""The EMA of the weights (wavenet.training.ema) and gradient accumulation, in a run."""

import pytest
import torch
from builders import TINY_TRAIN, assert_weights_close, last_checkpoint

from wavenet.training.ema import EMA

TINY = [*TINY_TRAIN, "train.warmup_steps=2", "train.lr=3e-3"]


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


def test_accumulation_and_ema_through_the_cli(tmp_path, speech, cli, train_run):
    accumulated, plain, raw_eval = tmp_path / "acc", tmp_path / "plain", tmp_path / "raw"
    cli(
        "wavenet-train",
        *TINY,
        f"data.root={speech}",
        f"hydra.run.dir={accumulated}",
        "train.batch_size=2",
        "train.accumulate=2",
        "train.ema_decay=0.9",
        "train.max_steps=3",
        cwd=tmp_path,
    )
    train_run(
        plain,
        *TINY,
        f"data.root={speech}",
        "train.batch_size=4",
        "train.ema_decay=0.9",
        "train.max_steps=3",
    )
    train_run(
        raw_eval,
        *TINY,
        f"data.root={speech}",
        "train.batch_size=4",
        "train.ema_decay=0.9",
        "train.max_steps=3",
        "train.ema_eval=false",
    )
    acc, one, raw = last_checkpoint(accumulated), last_checkpoint(plain), last_checkpoint(raw_eval)
    # batch 2 x 2 micro-batches trains on the crops of batch 4, with the same gradients.
    assert_weights_close(acc["train_model"], one["train_model"])
    assert_weights_close(acc["model"], one["model"])
    # `model` is the EMA (what generation reads), `train_model` the raw weights; ema_eval=false
    # swaps them: `model` raw, the EMA under `ema`.
    assert not torch.equal(acc["model"]["head.3.weight"], acc["train_model"]["head.3.weight"])
    assert "train_model" not in raw and raw["ema"]["updates"] == 3
    assert_weights_close(raw["model"], one["train_model"], atol=0)
    assert_weights_close(raw["ema"]["weights"], one["model"], atol=0)
