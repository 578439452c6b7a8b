"""The pieces of one training step (wavenet.training.loop): the loss, autocast, clipping,
torch.compile and the LR schedules."""

import math

import pytest
import torch
import torch.nn.functional as F
from builders import TINY_ARCH, TINY_TRAIN, last_checkpoint

from wavenet.config import TrainConfig
from wavenet.data.dataset import Batch, CropSampler, load_dataset
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.training import loop as train
from wavenet.training.state import TrainState


def test_lr_schedules():
    cosine = [train.lr_factor(s, 10, 110, 0.1) for s in range(120)]
    assert cosine[0] == 0.1 and cosine[9] == 1.0 and cosine[10] == 1.0
    assert cosine[110] == pytest.approx(0.1) and cosine[119] == pytest.approx(0.1)
    inv = [train.lr_factor(s, 100, 10**6, 0.01, "inverse_sqrt") for s in range(10**5)]
    assert inv[99] == 1.0 and inv[399] == pytest.approx(0.5) and inv[9999] == pytest.approx(0.1)
    assert train.lr_factor(10**7, 100, 10**6, 0.01, "inverse_sqrt") == 0.01
    assert all(a >= b for a, b in zip(inv[99:], inv[100:], strict=False))


def test_bf16_autocast_trains_fp32_weights(tmp_path, speech, train_run, monkeypatch):
    """train.precision=bf16 reaches the training step (its forward passes run under bfloat16
    autocast; validation does not), and the weights stay float32."""
    autocast: list[tuple[bool, torch.dtype]] = []
    real = train.bits_per_sample

    def bits(model, batch):
        if model.training:
            autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real(model, batch)

    monkeypatch.setattr(train, "bits_per_sample", bits)
    record = train_run(
        tmp_path, *TINY_TRAIN, f"data.root={speech}", "train.precision=bf16", "train.max_steps=2"
    )
    assert autocast == [(True, torch.bfloat16)] * 2
    assert math.isfinite(record["train_bits"]) and math.isfinite(record["val_bits"])
    assert all(w.dtype == torch.float32 for w in last_checkpoint(tmp_path)["model"].values())


# ------------------------------------------------------------------------------ the loss


class FixedLogits(torch.nn.Module):
    """A stand-in network: the same random logits whatever the input, receptive field 10."""

    receptive_field = 10

    def __init__(self, batch: int, length: int):
        super().__init__()
        self.logits = torch.randn(batch, 256, length, generator=torch.Generator().manual_seed(0))

    def forward(self, audio, speaker=None, mel=None, last=0):
        return self.logits[:, :, self.logits.shape[2] - last :]

    def nll(self, params, target):  # WaveNet.nll of a categorical model
        return F.cross_entropy(params, target, reduction="none")


def test_the_loss_scores_only_the_positions_with_a_full_receptive_field():
    """bits_per_sample of a crop (receptive_field + n) is the mean cross-entropy in bits of its
    last n positions: the targets before them do not count, each of those does."""
    net, r = FixedLogits(2, 40), FixedLogits.receptive_field
    audio = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    loss = train.bits_per_sample(net, Batch(audio))
    expected = F.cross_entropy(net.logits[:, :, r:], audio[:, r:]) / math.log(2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for t in (0, r - 1):  # unscored targets
        changed = audio.clone()
        changed[:, t] = (changed[:, t] + 1) % 256
        assert train.bits_per_sample(net, Batch(changed)).item() == loss.item()
    for t in (r, 39):  # the first and the last scored target
        changed = audio.clone()
        changed[:, t] = (changed[:, t] + 1) % 256
        assert train.bits_per_sample(net, Batch(changed)).item() != loss.item()


# ------------------------------------------------------------------ one step, as the loop


@pytest.fixture
def step_parts(speech):
    """(state, crops) for train.train_step with the tiny model on real demo crops."""

    def make(**train_config) -> tuple[TrainState, CropSampler, TrainConfig]:
        torch.manual_seed(0)
        model = WaveNet(WaveNetConfig(**TINY_ARCH))
        utterances = load_dataset(speech, 16000).utterances
        crops = CropSampler(utterances, model.receptive_field + 200, seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        state = TrainState(model, optimizer, scheduler, crops, None, False)
        return state, crops, TrainConfig(batch_size=2, **train_config)

    return make


def grad_norm(model: torch.nn.Module) -> float:
    return torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
    ).item()


def test_grad_clip_bounds_the_gradient_the_update_sees(step_parts):
    state, crops, tc = step_parts(grad_clip=0)
    train.train_step(state, state.model, crops, tc, "fp32")
    raw = grad_norm(state.model)
    assert raw > 0.05
    state, crops, tc = step_parts(grad_clip=raw / 10)
    result = train.train_step(state, state.model, crops, tc, "fp32")
    assert result.problem is None and state.step == 1
    assert grad_norm(state.model) == pytest.approx(raw / 10, rel=1e-4)


def test_bf16_runs_the_forward_pass_in_bfloat16(step_parts):
    """precision=bf16 changes what the step computes: the logits come out of autocast in
    bfloat16, and the loss differs from fp32's on the same crops."""
    seen = {}
    results = {}
    for precision in ("fp32", "bf16"):
        state, crops, tc = step_parts()
        state.model.register_forward_hook(
            lambda module, args, out, p=precision: seen.update({p: out.dtype}) and None
        )
        results[precision] = train.train_step(state, state.model, crops, tc, precision).bits
    assert seen == {"fp32": torch.float32, "bf16": torch.bfloat16}
    assert math.isfinite(results["bf16"]) and results["bf16"] != results["fp32"]
    assert results["bf16"] == pytest.approx(results["fp32"], abs=0.05)


def test_compile_wraps_the_training_step_and_checkpoints_hold_plain_weights(
    tmp_path, speech, train_run, monkeypatch
):
    """train.compile=true trains through torch.compile's wrapper (here with the eager backend,
    which needs no C++ compiler), and last.pt holds the plain module's keys."""
    real_compile = torch.compile
    compiled: list[torch.nn.Module] = []

    def compile_eager(module, **kwargs):
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_eager)
    calls = []
    monkeypatch.setattr(
        WaveNet,
        "forward",
        lambda self, *a, real=WaveNet.forward, **k: (
            calls.append(torch.compiler.is_compiling()),
            real(self, *a, **k),
        )[1],
    )
    train_run(
        tmp_path,
        *TINY_TRAIN,
        f"data.root={speech}",
        "train.compile=true",
        "train.max_steps=2",
        "train.ema_decay=0",
    )
    assert len(compiled) == 1 and isinstance(compiled[0], WaveNet)
    assert any(calls), "no forward pass ran under torch.compile"
    keys = last_checkpoint(tmp_path)["model"].keys()
    assert keys == WaveNet(WaveNetConfig(**TINY_ARCH)).state_dict().keys()
