"""The cached sampler with speaker (global) and log-mel (local) conditioning.

The central invariant: with conditioning, the cached sampler (reference and compiled) computes
exactly the teacher-forced forward pass, and generation equals the naive recompute draw for draw.
"""

import pytest
import torch
from builders import COND_MEL, conditioned_inputs, conditioned_model, stepwise_logits

from wavenet import CachedSampler, WaveNet, generate
from wavenet.model.features import MelConfig, pad_frames
from wavenet.model.network import WaveNetConfig
from wavenet.sampling import kernel as fast
from wavenet.sampling.cached import generate_naive
from wavenet.sampling.sampler import UniformStream

needs_numba = pytest.mark.requires(fast.available(), "numba is not installed")
IMPLS = ["reference", pytest.param("compiled", marks=needs_numba)]


@pytest.mark.parametrize("speaker,mel", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("prime_len", [0, 45])
@pytest.mark.parametrize("output", ["categorical", "mol", "gaussian"])
def test_cached_steps_equal_forward_with_conditioning(speaker, mel, prime_len, output):
    model = conditioned_model(speaker, mel, output=output, mixtures=4)
    x, s, m = conditioned_inputs(3, 20)  # 320 samples, past the 121-sample receptive field
    if output != "categorical":  # 16-bit codes
        x = x * 256 + torch.randint_like(x, 256)
    s, m = (s if speaker else None), (m if mel else None)
    with torch.no_grad():
        expected = model(x, s, pad_frames(m, COND_MEL.context) if mel else None)[:, :, prime_len:]
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
    model = conditioned_model().double()
    _, speaker, mel = conditioned_inputs(2, 15)
    prime = torch.randint(0, 256, (2, 30))
    # samples=None: all that the mel covers after the prime (15 * 16 - 30 = 210).
    a = torch.cat(
        list(
            generate(
                model,
                None,
                2,
                prime=prime,
                chunk=64,
                impl=impl,
                generator=torch.Generator().manual_seed(3),
                speaker=speaker,
                mel=mel.double(),
            )
        ),
        dim=1,
    )
    b = generate_naive(
        model,
        None,
        2,
        prime=prime,
        generator=torch.Generator().manual_seed(3),
        speaker=speaker,
        mel=mel.double(),
    )
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
    out = torch.cat(
        [
            fast.generate_chunk(
                weights, state, logits, part, 1.0, 2, sampler.local_bias(state, len(part))
            )
            for part in u.split(128)
        ],
        dim=1,
    )
    assert out.shape == (batch, n) and state.position == prime_len + n + 1
    seq = torch.cat([prime, out, out.new_zeros(batch, frames * hop - prime_len - n)], dim=1)
    with torch.no_grad():
        expected = model(seq, speaker, pad_frames(mel, config.mel.context))
    assert (logits - expected[:, :, prime_len + n]).abs().max() < 1e-4


def test_batch_rows_follow_their_own_speaker():
    model = conditioned_model(mel=False)
    x = torch.randint(0, 256, (1, 200)).expand(3, -1)
    speaker = torch.tensor([0, 1, 2])
    batched = stepwise_logits(model, x, 50, speaker, None)
    for i in range(3):
        alone = stepwise_logits(model, x[i : i + 1], 50, speaker[i : i + 1], None)
        torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 1e-2
