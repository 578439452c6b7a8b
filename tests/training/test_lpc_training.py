"""Training a model with linear prediction and noise in its input: the target is the clean
signal's excitation from the noisy signal's prediction; the noise stays within its bounds."""

import pytest
import torch

from wavenet.config import Config, TrainConfig
from wavenet.model import envelope, lpc
from wavenet.model.config import MelConfig, WaveNetConfig
from wavenet.model.features import log_mel, pad_frames
from wavenet.model.network import WaveNet
from wavenet.training.loop import input_noise

MEL = MelConfig(n_mels=20, n_fft=256, win_length=256, hop_length=64, upsample=[8, 8], channels=8)


def test_input_noise_moves_each_code_within_its_crops_level():
    codes = torch.full((64, 500), 128)
    codes[:, :5] = 0  # clipped at the ends of the code range
    noisy = input_noise(codes, 3.0, 256, torch.Generator().manual_seed(1))
    moved = (noisy - codes)[:, 5:]
    assert moved.abs().max() <= 3 and noisy.min() >= 0
    # Each crop draws its own level: some crops barely move, others reach +-3.
    reach = moved.abs().amax(dim=1)
    assert reach.min() <= 1 and reach.max() == 3
    assert torch.equal(noisy, input_noise(codes, 3.0, 256, torch.Generator().manual_seed(1)))
    assert not torch.equal(noisy, input_noise(codes, 3.0, 256, torch.Generator().manual_seed(2)))


def test_the_target_is_the_clean_excitation_from_the_noisy_prediction():
    torch.manual_seed(0)
    model = WaveNet(
        WaveNetConfig(
            blocks=1,
            layers_per_block=3,
            residual_channels=4,
            gate_channels=8,
            skip_channels=8,
            mel=MEL,
            lpc_order=6,
        ),
        sample_rate=16000,
        preemphasis=0.85,
    )
    signal = 0.3 * torch.sin(torch.arange(640) / 7.0)[None] + 0.01 * torch.randn(1, 640)
    clean = lpc.quantize(signal.double(), 256).expand(4, -1)  # four crops, four noise levels
    noisy = input_noise(clean, 3.0, 256, torch.Generator().manual_seed(3))
    assert not torch.equal(noisy, clean)
    mel = pad_frames(log_mel(signal, 16000, MEL), MEL.context).expand(4, -1, -1)
    assert torch.equal(model.targets(clean, mel, clean), model.targets(clean, mel))
    a = model.lpc_coefficients(mel)
    levels = lpc.levels(256)
    predicted = envelope.predict(levels[noisy], a, MEL.hop_length)
    expected = lpc.quantize(levels[clean] - predicted, 256)
    assert torch.equal(model.targets(noisy, mel, clean), expected)
    assert not torch.equal(expected, model.targets(noisy, mel))
    # Without linear prediction the target is the clean codes themselves.
    plain = WaveNet(WaveNetConfig(blocks=1, layers_per_block=3, mel=MEL))
    assert torch.equal(plain.targets(noisy, mel, clean), clean)


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="input_noise"):
        Config(model=WaveNetConfig(output="mol"), train=TrainConfig(input_noise=2))
    with pytest.raises(ValueError, match="train.input_noise"):
        TrainConfig(input_noise=-1)
    with pytest.raises(ValueError, match="lpc_order"):
        WaveNetConfig(lpc_order=16, mel=MEL, output="gaussian")
    with pytest.raises(ValueError, match="lpc_order"):
        WaveNetConfig(lpc_order=65, mel=MEL)
