"""The log-mel convention of wavenet.model.features (see its module docstring)."""

import pytest
import torch

from wavenet.model.features import MelConfig, log_mel


def test_log_mel_frames_describe_whole_hops():
    cfg = MelConfig(n_mels=20, n_fft=256, win_length=256, hop_length=64, upsample=[8, 8])
    torch.manual_seed(0)
    audio = torch.randn(1000) * 0.1
    mel = log_mel(audio, 16000, cfg)
    assert mel.shape == (20, 1000 // 64)
    # A batch gives the rows' own spectra, and a clip cut at a hop boundary gives the same
    # frames away from its end (the analysis window reaches (n_fft - hop) / 2 past a hop).
    both = log_mel(torch.stack([audio, audio.flip(0)]), 16000, cfg)
    torch.testing.assert_close(both[0], mel)
    cut = log_mel(audio[:640], 16000, cfg)
    torch.testing.assert_close(cut[:, :8], mel[:, :8], atol=1e-4, rtol=1e-4)
    assert log_mel(torch.zeros(640), 16000, cfg).max() == pytest.approx(-11.5129, abs=1e-3)
    with pytest.raises(ValueError, match="upsample"):
        MelConfig(n_mels=20, hop_length=200, upsample=[16, 16])
