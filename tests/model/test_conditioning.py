"""Speaker (global) and log-mel (local) conditioning of the network: its upsampler, causality
and the errors for missing or unexpected conditioning (the samplers: sampling/test_conditioned.py).
"""

import pytest
import torch
from builders import COND_HOP, COND_MEL, conditioned_inputs, conditioned_model

from wavenet import CachedSampler, WaveNet, generate
from wavenet.model.features import pad_frames
from wavenet.model.network import WaveNetConfig


def test_upsampling_a_crop_equals_the_same_span_of_the_whole_utterance():
    """What makes crop training match whole-utterance generation: the upsampler only looks
    `context` frames each side."""
    model = conditioned_model(speaker=False)
    mel = torch.randn(2, COND_MEL.n_mels, 30) - 5
    with torch.no_grad():
        whole = model.local_features(mel)  # (2, 12, 30 * COND_HOP)
        padded = pad_frames(mel, COND_MEL.context)
        for start, frames in [(0, 5), (7, 9), (25, 5)]:
            crop = padded[:, :, start : start + frames + 2 * COND_MEL.context]
            torch.testing.assert_close(
                model.upsample(crop), whole[:, :, start * COND_HOP : (start + frames) * COND_HOP]
            )
    assert whole.shape == (2, COND_MEL.channels, 30 * COND_HOP)


def test_conditioning_never_lets_a_prediction_see_its_own_or_future_samples():
    model = conditioned_model()
    x, speaker, mel = conditioned_inputs(1, 10)
    padded = pad_frames(mel, COND_MEL.context)
    with torch.no_grad():
        base = model(x, speaker, padded)
        t = 77
        changed = x.clone()
        changed[:, t:] = (changed[:, t:] + 100) % 256
        after = model(changed, speaker, padded)
    assert torch.equal(base[:, :, : t + 1], after[:, :, : t + 1])
    assert (base[:, :, t + 1] - after[:, :, t + 1]).abs().max() > 0


def test_missing_or_unexpected_conditioning_is_a_clear_error():
    x, speaker, mel = conditioned_inputs(2, 10)
    model = conditioned_model()
    with pytest.raises(ValueError, match="speaker-conditioned"):
        model(x, None, pad_frames(mel, 2))
    with pytest.raises(ValueError, match="mel-conditioned"):
        model(x, speaker)
    with pytest.raises(ValueError, match="no speaker conditioning"):
        conditioned_model(speaker=False)(x, speaker, pad_frames(mel, 2))
    with pytest.raises(ValueError, match="mel"):
        model(x, speaker, mel)  # frames without their context
    with pytest.raises(ValueError, match="speaker-conditioned"):
        CachedSampler(model).start(2, mel=mel)
    with pytest.raises(ValueError, match="cover"):
        next(generate(model, 10 * COND_HOP + 1, 2, speaker=speaker, mel=mel))
    with pytest.raises(ValueError, match="speaker table"):
        WaveNet(WaveNetConfig(speaker_channels=4))
