import math

import pytest
import torch

from wavenet import mulaw


def test_round_trip_error_is_within_half_a_quantization_step():
    x = torch.linspace(-1, 1, 20001)
    y = mulaw.decode(mulaw.encode(x))
    # The μ-law step at amplitude |x| is d|x|/dc = (1 + mu|x|) ln(1 + mu) / mu * 2/mu-ish;
    # bound the error by half the widest step, which sits at |x| = 1.
    mu = 255
    widest = (1 + mu) * math.log1p(mu) / mu * (2 / mu)
    assert (y - x).abs().max() <= widest / 2 + 1e-6
    # Near silence the steps are fine: quiet speech keeps its detail.
    quiet = x.abs() < 0.01
    assert (y - x)[quiet].abs().max() < 1e-3


def test_classes_span_the_range_and_silence_is_the_middle():
    idx = mulaw.encode(torch.linspace(-1, 1, 100001))
    assert idx.dtype == torch.int64
    assert idx.min() == 0 and idx.max() == 255
    assert len(idx.unique()) == 256
    assert mulaw.encode(torch.zeros(1)).item() == mulaw.silence_class() == 128
    assert torch.all(idx[1:] >= idx[:-1])  # monotone


def test_out_of_range_input_is_clipped_not_wrapped():
    assert mulaw.encode(torch.tensor([1.5, -3.0])).tolist() == [255, 0]


@pytest.mark.parametrize("classes", [16, 256, 1024])
def test_other_quantizations_round_trip(classes):
    idx = torch.arange(classes)
    assert torch.equal(mulaw.encode(mulaw.decode(idx, classes), classes), idx)


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="float"):
        mulaw.encode(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="non-finite"):
        mulaw.encode(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        mulaw.decode(torch.tensor([0, 256]))
    with pytest.raises(ValueError, match="integer"):
        mulaw.decode(torch.zeros(3))
