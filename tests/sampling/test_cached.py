"""The cached-queue sampler computes exactly what the teacher-forced forward pass computes."""

import pytest
import torch
from builders import stepwise_logits

from wavenet import CachedSampler, WaveNet, generate
from wavenet.sampling import kernel as fast
from wavenet.sampling.cached import generate_naive, resolve_impl
from wavenet.sampling.sampler import UniformStream, draw

needs_numba = pytest.mark.requires(fast.available(), "numba is not installed")
needs_int8 = pytest.mark.skipif(
    not fast.int8_dot_available(), reason="the int8 path needs numba on an x86 CPU with AVX2"
)
EXACT_IMPLS = ["reference", pytest.param("compiled", marks=needs_numba)]  # float64 models too
IMPLS = [*EXACT_IMPLS, pytest.param("compiled-int8", marks=needs_int8)]


@pytest.fixture
def model():
    torch.manual_seed(0)
    # Two blocks and kernel 3 exercise multi-tap queues and block wrap-around.
    return WaveNet(
        blocks=2,
        layers_per_block=5,
        kernel_size=3,
        residual_channels=8,
        gate_channels=16,
        skip_channels=16,
    ).eval()


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("prime_len", [0, 1, 37, 150])
@pytest.mark.parametrize("output", ["categorical", "mol", "gaussian"])
def test_cached_steps_equal_forward(batch, prime_len, output):
    torch.manual_seed(batch + prime_len)
    model = WaveNet(
        blocks=2,
        layers_per_block=5,
        kernel_size=3,
        residual_channels=8,
        gate_channels=16,
        skip_channels=16,
        output=output,
        mixtures=4,
    ).eval()
    # Longer than the receptive field (121); codes of the model's codec.
    x = torch.randint(0, model.config.codec.classes, (batch, 300))
    with torch.no_grad():
        expected = model(x)[:, :, prime_len:]
    got = stepwise_logits(model, x, prime_len)
    assert (got - expected).abs().max() < 1e-4


def test_cached_steps_equal_forward_for_the_default_architecture():
    torch.manual_seed(0)
    model = WaveNet().eval()
    x = torch.randint(0, 256, (2, 3300))  # past the 3070-sample receptive field
    with torch.no_grad():
        expected = model(x)[:, :, 3200:]
    got = stepwise_logits(model, x, 3200)
    assert (got - expected).abs().max() < 1e-4


def test_batched_generation_equals_item_by_item_logits(model):
    x = torch.randint(0, 256, (3, 80))
    batched = stepwise_logits(model, x, 20)
    for i in range(3):
        torch.testing.assert_close(
            stepwise_logits(model, x[i : i + 1], 20)[0], batched[i], atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("impl", EXACT_IMPLS)
def test_generate_equals_naive_recompute_with_the_same_random_draws(model, impl):
    model = model.double()  # identical draws need identical probabilities, not just close ones
    prime = torch.randint(0, 256, (2, 30))
    a = torch.cat(
        list(
            generate(
                model,
                200,
                2,
                prime=prime,
                chunk=64,
                impl=impl,
                generator=torch.Generator().manual_seed(3),
            )
        ),
        dim=1,
    )
    b = generate_naive(model, 200, 2, prime=prime, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 200)
    assert torch.equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_generate_streams_chunks_of_the_requested_total(model, impl):
    chunks = list(generate(model, 250, batch=2, chunk=100, impl=impl))
    assert [c.shape for c in chunks] == [(2, 100), (2, 100), (2, 50)]
    assert all(c.dtype == torch.int64 and c.min() >= 0 and c.max() < 256 for c in chunks)


def test_draws_follow_the_softmax_and_temperature_sharpens():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5]]).repeat(20000, 1)
    u = UniformStream(20000, torch.Generator().manual_seed(0))
    assert draw(logits, 0.0, u.take(1)[0]).tolist() == [2] * 20000
    freq = torch.bincount(draw(logits, 1.0, u.take(1)[0]), minlength=4) / 20000
    torch.testing.assert_close(freq, torch.softmax(logits[0], 0), atol=0.015, rtol=0)
    cold = (draw(logits, 0.3, u.take(1)[0]) == 2).float().mean()
    hot = (draw(logits, 3.0, u.take(1)[0]) == 2).float().mean()
    assert cold > 0.9 > 0.5 > hot
    with pytest.raises(ValueError, match="temperature"):
        draw(logits, -1.0, u.take(1)[0])


def test_uniform_stream_does_not_depend_on_how_it_is_taken():
    a = UniformStream(3, torch.Generator().manual_seed(5))
    b = UniformStream(3, torch.Generator().manual_seed(5))
    whole = a.take(5000)
    parts = torch.cat([b.take(n) for n in (1, 999, 4000)])
    assert torch.equal(whole, parts)


@needs_numba
@pytest.mark.parametrize("batch", [1, 4])
def test_compiled_path_equals_forward_for_the_default_architecture(batch):
    """float32, primed: after the compiled loop draws 200 samples per row, its logits and
    queues equal the teacher-forced forward pass over prime + those samples. Batch 4 splits
    its rows between the two threads (batch 16 is held on a small model, test_kernels.py)."""
    torch.manual_seed(batch)
    model = WaveNet().eval()
    prime = torch.randint(0, 256, (batch, 3100))
    sampler = CachedSampler(model)
    state, logits = sampler.start(batch, prime)
    weights = fast.CompiledWeights(sampler)
    u = UniformStream(batch, torch.Generator().manual_seed(0)).take(200)
    out = fast.generate_chunk(weights, state, logits, u, 1.0, threads=2)
    assert out.shape == (batch, 200) and state.position == 3100 + 200 + 1
    seq = torch.cat([prime, out, out.new_zeros(batch, 1)], dim=1)
    with torch.no_grad():
        expected = model(seq)
    assert (logits - expected[:, :, -1]).abs().max() < 1e-4
    # The state stays the reference sampler's: it can take over mid-run.
    x = logits.argmax(dim=1)
    after = sampler.step(state, x)
    seq[:, -1] = x
    with torch.no_grad():
        expected = model(torch.cat([seq, seq.new_zeros(batch, 1)], dim=1))[:, :, -1]
    assert (after - expected).abs().max() < 1e-4


def test_auto_picks_the_compiled_path_only_where_it_runs(model):
    expected = (
        "compiled-int8"
        if fast.int8_dot_available()
        else "compiled"
        if fast.available()
        else "reference"
    )
    assert resolve_impl("auto", model) == expected
    assert resolve_impl("reference", model) == "reference"
    assert resolve_impl("auto", model.to(torch.bfloat16)) == "reference"
    with pytest.raises(ValueError, match="impl"):
        resolve_impl("quantum", model)


@pytest.mark.parametrize("impl", IMPLS)
def test_seeded_generation_is_reproducible(model, impl):
    a = next(generate(model, 50, generator=torch.Generator().manual_seed(7), impl=impl))
    b = next(generate(model, 50, generator=torch.Generator().manual_seed(7), impl=impl))
    c = next(generate(model, 50, generator=torch.Generator().manual_seed(8), impl=impl))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_prime_shape(model):
    with pytest.raises(ValueError, match="prime"):
        CachedSampler(model).start(2, torch.zeros(3, 10, dtype=torch.long))
