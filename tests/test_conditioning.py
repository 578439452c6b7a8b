"""Speaker (global) and log-mel (local) conditioning: the model, its upsampler and the samplers.

The central invariant: with conditioning, the cached sampler (reference and compiled) computes
exactly the teacher-forced forward pass, and generation equals the naive recompute draw for draw.
"""

import pytest
import torch

from wavenet import CachedSampler, WaveNet, generate
from wavenet.model.features import MelConfig, log_mel, pad_frames
from wavenet.model.network import WaveNetConfig
from wavenet.sampling import numba_kernel as fast
from wavenet.sampling.cached import UniformStream, generate_naive

needs_numba = pytest.mark.skipif(not fast.available(), reason="numba is not installed")
IMPLS = ["reference", pytest.param("compiled", marks=needs_numba)]
HOP = 16
MEL = MelConfig(n_mels=10, n_fft=64, win_length=64, hop_length=HOP, channels=12, context=2,
                upsample=[4, 4])


def make_model(speaker: bool = True, mel: bool = True, seed: int = 0, **arch) -> WaveNet:
    torch.manual_seed(seed)
    arch = {"blocks": 2, "layers_per_block": 5, "kernel_size": 3, "residual_channels": 8,
            "gate_channels": 16, "skip_channels": 16, **arch}
    config = WaveNetConfig(**arch, speaker_channels=6 if speaker else 0,
                           mel=MEL if mel else MelConfig())
    model = WaveNet(config, speakers=3 if speaker else 0).eval()
    # Fresh conditioning weights are small; make them matter so a wrong index shows up.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def inputs(batch: int, frames: int, seed: int = 1):
    """Random classes, speaker ids and log-mel frames for `frames * HOP` samples."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, frames * HOP), generator=g)
    speaker = torch.randint(0, 3, (batch,), generator=g)
    mel = torch.randn(batch, MEL.n_mels, frames, generator=g) * 2 - 5
    return x, speaker, mel


def stepwise_logits(model, x, prime_len, speaker, mel):
    sampler = CachedSampler(model)
    prime = x[:, :prime_len] if prime_len else None
    state, logits = sampler.start(x.shape[0], prime, speaker, mel)
    out = [logits]
    for t in range(prime_len + 1, x.shape[1]):
        out.append(sampler.step(state, x[:, t - 1]))
    return torch.stack(out, dim=2)


@pytest.mark.parametrize("speaker,mel", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("prime_len", [0, 45])
def test_cached_steps_equal_forward_with_conditioning(speaker, mel, prime_len):
    model = make_model(speaker, mel)
    x, s, m = inputs(3, 20)  # 320 samples, past the 121-sample receptive field
    s, m = (s if speaker else None), (m if mel else None)
    with torch.no_grad():
        expected = model(x, s, pad_frames(m, MEL.context) if mel else None)[:, :, prime_len:]
    got = stepwise_logits(model, x, prime_len, s, m)
    assert (got - expected).abs().max() < 1e-4
    # The conditioning is not ignored: another speaker / another mel changes the logits.
    if speaker:
        other = stepwise_logits(model, x, prime_len, (s + 1) % 3, m)
        assert (other - expected).abs().max() > 1e-2
    if mel:
        other = stepwise_logits(model, x, prime_len, s, m.flip(-1))
        assert (other - expected).abs().max() > 1e-2


@pytest.mark.parametrize("impl", IMPLS)
def test_conditioned_generation_equals_naive_recompute(impl):
    model = make_model().double()
    _, speaker, mel = inputs(2, 15)
    prime = torch.randint(0, 256, (2, 30))
    # samples=None: all that the mel covers after the prime (15 * 16 - 30 = 210).
    a = torch.cat(list(generate(model, None, 2, prime=prime, chunk=64, impl=impl,
                                generator=torch.Generator().manual_seed(3), speaker=speaker,
                                mel=mel.double())), dim=1)
    b = generate_naive(model, None, 2, prime=prime, generator=torch.Generator().manual_seed(3),
                       speaker=speaker, mel=mel.double())
    assert a.shape == (2, 210)
    assert torch.equal(a, b)


@needs_numba
@pytest.mark.parametrize("batch", [1, 5])
def test_compiled_conditioned_path_equals_forward_for_the_default_architecture(batch):
    """float32, default layer stack with both conditionings: after the compiled loop draws
    samples, its logits equal the teacher-forced forward pass over everything drawn."""
    torch.manual_seed(batch)
    config = WaveNetConfig(speaker_channels=16, mel=MelConfig(n_mels=80, channels=64))
    model = WaveNet(config, speakers=4).eval()
    frames, hop = 14, config.mel.hop_length  # 3584 samples, past the 3070 receptive field
    prime_len, n = 3200, 300
    prime = torch.randint(0, 256, (batch, prime_len))
    speaker = torch.arange(batch) % 4
    mel = torch.randn(batch, 80, frames) - 4
    sampler = CachedSampler(model)
    state, logits = sampler.start(batch, prime, speaker, mel)
    weights = fast.CompiledWeights(sampler)
    u = UniformStream(batch, torch.Generator().manual_seed(0)).take(n)
    out = torch.cat([fast.generate_chunk(weights, state, logits, part, 1.0, 2,
                                         sampler.local_bias(state, len(part)))
                     for part in u.split(128)], dim=1)
    assert out.shape == (batch, n) and state.position == prime_len + n + 1
    seq = torch.cat([prime, out, out.new_zeros(batch, frames * hop - prime_len - n)], dim=1)
    with torch.no_grad():
        expected = model(seq, speaker, pad_frames(mel, config.mel.context))
    assert (logits - expected[:, :, prime_len + n]).abs().max() < 1e-4


def test_batch_rows_follow_their_own_speaker():
    model = make_model(mel=False)
    x = torch.randint(0, 256, (1, 200)).expand(3, -1)
    speaker = torch.tensor([0, 1, 2])
    batched = stepwise_logits(model, x, 50, speaker, None)
    for i in range(3):
        alone = stepwise_logits(model, x[i:i + 1], 50, speaker[i:i + 1], None)
        torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 1e-2


def test_upsampling_a_crop_equals_the_same_span_of_the_whole_utterance():
    """What makes crop training match whole-utterance generation: the upsampler only looks
    `context` frames each side."""
    model = make_model(speaker=False)
    mel = torch.randn(2, MEL.n_mels, 30) - 5
    with torch.no_grad():
        whole = model.local_features(mel)  # (2, 12, 30 * HOP)
        padded = pad_frames(mel, MEL.context)
        for start, frames in [(0, 5), (7, 9), (25, 5)]:
            crop = padded[:, :, start:start + frames + 2 * MEL.context]
            torch.testing.assert_close(model.upsample(crop),
                                       whole[:, :, start * HOP:(start + frames) * HOP])
    assert whole.shape == (2, MEL.channels, 30 * HOP)


def test_conditioning_never_lets_a_prediction_see_its_own_or_future_samples():
    model = make_model()
    x, speaker, mel = inputs(1, 10)
    padded = pad_frames(mel, MEL.context)
    with torch.no_grad():
        base = model(x, speaker, padded)
        t = 77
        changed = x.clone()
        changed[:, t:] = (changed[:, t:] + 100) % 256
        after = model(changed, speaker, padded)
    assert torch.equal(base[:, :, : t + 1], after[:, :, : t + 1])
    assert (base[:, :, t + 1] - after[:, :, t + 1]).abs().max() > 0


def test_missing_or_unexpected_conditioning_is_a_clear_error():
    x, speaker, mel = inputs(2, 10)
    model = make_model()
    with pytest.raises(ValueError, match="speaker-conditioned"):
        model(x, None, pad_frames(mel, 2))
    with pytest.raises(ValueError, match="mel-conditioned"):
        model(x, speaker)
    with pytest.raises(ValueError, match="no speaker conditioning"):
        make_model(speaker=False)(x, speaker, pad_frames(mel, 2))
    with pytest.raises(ValueError, match="mel"):
        model(x, speaker, mel)  # frames without their context
    with pytest.raises(ValueError, match="speaker-conditioned"):
        CachedSampler(model).start(2, mel=mel)
    with pytest.raises(ValueError, match="cover"):
        next(generate(model, 10 * HOP + 1, 2, speaker=speaker, mel=mel))
    with pytest.raises(ValueError, match="speaker table"):
        WaveNet(WaveNetConfig(speaker_channels=4))


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
