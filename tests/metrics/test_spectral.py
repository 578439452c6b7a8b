"""Log-mel distance for copy-synthesis quality: zero for the same signal, growing with damage."""

import pytest
import soundfile as sf
import torch

from wavenet import mulaw
from wavenet.metrics.spectral import log_mel_distance


@pytest.fixture(scope="module")
def voice(demo_root):
    path = sorted((demo_root / "wavs").glob("*.flac"))[0]
    audio, rate = sf.read(path, dtype="float32")
    return torch.from_numpy(audio), rate


def test_distance_is_zero_for_the_same_signal_and_grows_with_noise(voice):
    audio, rate = voice
    assert log_mel_distance(audio, audio, rate) == pytest.approx(0.0, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(audio.shape, generator=g)
    distances = [
        log_mel_distance(audio, audio + level * noise, rate) for level in (0.001, 0.01, 0.1)
    ]
    assert 0 < distances[0] < distances[1] < distances[2]
    # Symmetric, and the μ-law round trip (the floor of any 8-bit model) is a small distance.
    assert log_mel_distance(audio + 0.01 * noise, audio, rate) == pytest.approx(distances[1])
    quantised = mulaw.decode(mulaw.encode(audio, 256), 256)
    assert 0 < log_mel_distance(audio, quantised, rate) < distances[2]


def test_a_gain_is_its_level_in_db_and_aligned_lengths_are_cut(voice):
    audio, rate = voice
    assert log_mel_distance(audio, 0.5 * audio, rate) == pytest.approx(6.02, abs=0.05)
    longer = torch.cat([audio, torch.ones(5000)])
    assert log_mel_distance(audio, longer, rate) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="shorter than one"):
        log_mel_distance(audio[:500], audio[:500], rate)
