"""Spectral distances for copy-synthesis quality: zero for the same signal, growing with damage."""

import pytest
import soundfile as sf
import torch

from wavenet import mulaw
from wavenet.metrics.spectral import log_mel_distance, mel_cepstral_distortion


@pytest.fixture(scope="module")
def voice(demo_root):
    path = sorted((demo_root / "wavs").glob("*.flac"))[0]
    audio, rate = sf.read(path, dtype="float32")
    return torch.from_numpy(audio), rate


@pytest.mark.parametrize("metric", [mel_cepstral_distortion, log_mel_distance])
def test_distance_is_zero_for_the_same_signal_and_grows_with_noise(voice, metric):
    audio, rate = voice
    assert metric(audio, audio, rate) == pytest.approx(0.0, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(audio.shape, generator=g)
    distances = [metric(audio, audio + level * noise, rate) for level in (0.001, 0.01, 0.1)]
    assert 0 < distances[0] < distances[1] < distances[2]
    # Symmetric, and the μ-law round trip (the floor of any 8-bit model) is a small distance.
    assert metric(audio + 0.01 * noise, audio, rate) == pytest.approx(distances[1])
    quantised = mulaw.decode(mulaw.encode(audio, 256), 256)
    assert 0 < metric(audio, quantised, rate) < distances[2]


def test_mcd_is_level_invariant_and_aligned_lengths_are_cut(voice):
    audio, rate = voice
    # c0 carries the overall level and is left out: a gain change costs nothing.
    # (up to the -100 dB floor of the log, which a quiet frame can touch)
    assert mel_cepstral_distortion(audio, 0.5 * audio, rate) == pytest.approx(0.0, abs=0.01)
    assert log_mel_distance(audio, 0.5 * audio, rate) == pytest.approx(6.02, abs=0.05)
    longer = torch.cat([audio, torch.ones(5000)])
    assert mel_cepstral_distortion(audio, longer, rate) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="shorter than one"):
        mel_cepstral_distortion(audio[:500], audio[:500], rate)
