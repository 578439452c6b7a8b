import pytest
import torch
from builders import conditioned_inputs, conditioned_model
from torch.utils.flop_counter import FlopCounterMode

from wavenet import WaveNet, WaveNetConfig
from wavenet.config import model_config
from wavenet.model.features import pad_frames
from wavenet.model.network import CausalConv1d


@pytest.fixture
def model():
    torch.manual_seed(0)
    return WaveNet(
        blocks=2, layers_per_block=5, residual_channels=8, gate_channels=16, skip_channels=16
    ).double()


def test_shapes(model):
    x = torch.randint(0, 256, (3, 123))
    assert model(x).shape == (3, 256, 123)


def test_default_architecture_matches_the_paper_setup():
    c = WaveNetConfig()
    assert c.dilations == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] * 3
    model = WaveNet(c)
    layer = model.layers[0]
    assert layer.dilated.out_channels == 128  # 64 tanh + 64 sigmoid
    assert layer.res_skip.in_channels == 64
    assert layer.res_skip.out_channels == 64 + 256
    assert model.head[-1].out_channels == 256


def test_causality_gradient_of_logits_ignores_present_and_future(model):
    """d logits[t] / d embedding[s] is exactly zero for every s >= t."""
    x = torch.randint(0, 256, (1, 200))
    emb = model.embed(x).detach().requires_grad_(True)
    handle = model.embed.register_forward_hook(lambda m, a, o: emb)
    try:
        for t in (0, 1, 50, 199):
            emb.grad = None
            model(x)[0, :, t].sum().backward()
            assert torch.all(emb.grad[0, t:] == 0), f"logits at {t} see samples >= {t}"
            if t > 0:
                assert emb.grad[0, t - 1].abs().sum() > 0, "the previous sample must matter"
    finally:
        handle.remove()


def test_changing_future_samples_leaves_past_logits_unchanged(model):
    x = torch.randint(0, 256, (2, 300))
    y = x.clone()
    y[:, 150:] = torch.randint(0, 256, (2, 150))
    assert torch.equal(model(x)[:, :, :151], model(y)[:, :, :151])


def test_batch_equals_item_by_item(model):
    x = torch.randint(0, 256, (4, 100))
    whole = model(x)
    for i in range(4):
        torch.testing.assert_close(model(x[i : i + 1])[0], whole[i])


def test_causal_conv_pads_left_only():
    conv = CausalConv1d(1, 1, kernel_size=2, dilation=4)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.arange(10.0).view(1, 1, 10)
    assert conv(x).flatten().tolist() == [0, 1, 2, 3, 4, 6, 8, 10, 12, 14]  # x[t] + x[t-4]


@pytest.mark.parametrize("last", [1, 37, 123 - 31, 123 - 1, 123])
def test_the_last_positions_alone_equal_the_whole_output_and_its_gradients(model, last):
    """model(x, last=n) (what training scores: a crop's last positions) is the last n columns of
    model(x), and the gradients of a loss on them are the same: from 1 position to all, with
    receptive field 63 < 123 (a full crop's) and above it (the first layers padded)."""
    x = torch.randint(0, 256, (2, 123), generator=torch.Generator().manual_seed(3))
    weights = torch.randn(2, 256, last, dtype=torch.float64)
    grads = []
    for out in (lambda: model(x)[:, :, 123 - last :], lambda: model(x, last=last)):
        model.zero_grad()
        logits = out()
        (logits * weights).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        if len(grads) == 1:
            whole = logits.detach()
    torch.testing.assert_close(logits.detach(), whole, rtol=1e-12, atol=1e-12)
    for full, trimmed in zip(*grads, strict=True):
        torch.testing.assert_close(trimmed, full, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("last", [1, 100, 208])
def test_the_last_positions_of_a_conditioned_model_equal_the_whole_output(last):
    """Kernel 3, a speaker and mel frames (sliced per layer to the positions computed)."""
    model = conditioned_model().double()
    x, speaker, mel = conditioned_inputs(2, 13)  # 208 samples, receptive field 121
    padded = pad_frames(mel, model.config.mel.context).double()
    with torch.no_grad():
        whole = model(x, speaker, padded)[:, :, x.shape[1] - last :]
        torch.testing.assert_close(
            model(x, speaker, padded, last=last), whole, rtol=1e-12, atol=1e-12
        )


def test_scoring_a_crops_last_positions_skips_a_quarter_of_the_work():
    """The training crop of the small model (receptive field + 2000): the context positions
    need no skip outputs, no head, and the top layers fewer outputs."""
    model = WaveNet(model_config("small"))
    x = torch.randint(0, 256, (1, model.receptive_field + 2000))
    flops = []
    for last in (0, 2000):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, last=last)
        flops.append(counter.get_total_flops())
    assert flops[1] < 0.78 * flops[0], flops  # 0.755


@pytest.mark.parametrize("last", [-1, 124])
def test_a_last_outside_the_input_is_rejected(model, last):
    with pytest.raises(ValueError, match=f"last={last} is outside 0..123"):
        model(torch.zeros(1, 123, dtype=torch.long), last=last)


@pytest.mark.parametrize(
    "bad",
    [
        {"residual_channels": 0},
        {"gate_channels": 7},
        {"blocks": -1},
        {"kernel_size": 1},
        {"classes": 1},
    ],
)
def test_bad_architecture_is_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        WaveNetConfig(**bad)


def test_float_input_is_rejected(model):
    with pytest.raises(ValueError, match="integer codes"):
        model(torch.zeros(1, 10))
