"""Receptive-field arithmetic, and the model's receptive field measured by gradient probes."""

import pytest
import torch

from wavenet import WaveNet, WaveNetConfig
from wavenet.model.receptive_field import (
    causal_padding,
    growth,
    same_padding,
    stack_receptive_field,
)


def test_textbook_dilated_3x3_stack():
    # 3x3 convolutions at rates 1, 2, 4 (padding keeps the size): 3x3, 7x7, 15x15.
    assert growth(3, [1, 2, 4], dims=2) == [(3, 3), (7, 7), (15, 15)]
    assert stack_receptive_field(3, [1, 2, 4, 8], dims=2) == (31, 31)
    assert [same_padding(3, d) for d in (1, 2, 4)] == [1, 2, 4]


def test_wavenet_block_sees_1023_past_samples():
    rf = stack_receptive_field(2, [2**i for i in range(10)])[0]
    assert rf == 1024  # the current sample and 1023 past ones
    assert sum(causal_padding(2, 2**i) for i in range(10)) == 1023


def test_model_receptive_field_formula():
    assert WaveNetConfig(blocks=1).receptive_field == 1 + 1023
    assert WaveNetConfig(blocks=3).receptive_field == 1 + 3 * 1023
    config = WaveNetConfig(blocks=2, layers_per_block=4, kernel_size=3)
    assert config.receptive_field == 1 + 2 * 2 * 15


def test_bad_arguments():
    with pytest.raises(ValueError):
        stack_receptive_field(0, [1])
    with pytest.raises(ValueError):
        stack_receptive_field(3, [0])
    with pytest.raises(ValueError):
        same_padding(2, 1)  # even span: no symmetric padding


def input_gradient_extent(model: WaveNet, t: int, length: int) -> torch.Tensor:
    """Indices of input positions whose embedding gets gradient from the logits at t."""
    x = torch.randint(0, model.config.classes, (1, length))
    emb = model.embed(x).detach().requires_grad_(True)
    captured = {}

    def swap(module, args, output):  # feed the leaf tensor through the embedding layer
        captured["used"] = True
        return emb

    handle = model.embed.register_forward_hook(swap)
    try:
        model(x)[0, :, t].sum().backward()
    finally:
        handle.remove()
    assert captured["used"]
    return emb.grad[0].abs().sum(dim=1).nonzero().flatten()


@pytest.mark.parametrize("blocks", [1, 3])
def test_gradient_probe_extent_equals_receptive_field(blocks):
    torch.manual_seed(0)
    model = WaveNet(blocks=blocks, residual_channels=4, gate_channels=8, skip_channels=8).double()
    r = model.receptive_field
    t = r + 37
    seen = input_gradient_extent(model, t, length=t + 50)
    # Exactly the r samples before t: t - r .. t - 1, none at or after t.
    assert seen.tolist() == list(range(t - r, t))
