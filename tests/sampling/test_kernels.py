"""Every fast sampler path computes what the teacher-forced forward pass computes.

Tolerances: float32 paths match `model.forward` to 1e-4 in the logits. The bfloat16-storage path
multiplies by weights rounded to bfloat16, so it matches the forward pass of the model with
those weights rounded (`kernel.rounded_model`) to 1e-4, and the original model only to the
rounding's effect (checked below at 0.15 in the logits of random-weight models; what matters,
held-out bits/sample, moves < 0.01, see docs/speed.md). The int8 path multiplies by int8 weights
(a scale per row) and also rounds every matrix input to int16 levels of its own largest value
(at most 1/65534 of it, 1/17612 for the long skip sum): it matches the forward pass of the model
with int8-rounded weights to 1e-3 (measured up to 3.5e-4 on these models).

Draws: every path takes the same uniforms and draws by inverse CDF, so where two paths' logits
agree to ~1e-6 they pick the same class unless a uniform falls within ~1e-6 of a CDF step; with
the seeds below that never happens, so float32 compiled and reference audio are equal sample for
sample (a property of these seeds, not a guarantee: over long runs one near-tie can make them
part ways, after which each is a different valid sample of the same model). A continuous output
rounds its draw to one of 65536 codes, where a 1e-7 difference in the parameters moves a draw
across a code boundary about once in 200 samples: its paths are held equal draw for draw in
float64 (differences ~1e-15), and in float32 by their parameters against the forward pass.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tools import has

from wavenet.model.features import MelConfig, pad_frames
from wavenet.model.network import WaveNet, WaveNetConfig
from wavenet.sampling import kernel
from wavenet.sampling.cached import IMPLS, generate, resolve_impl
from wavenet.sampling.kernel import policy
from wavenet.sampling.kernel.draws import _exp_neg, _sample_row
from wavenet.sampling.kernel.intrinsics import _TILE
from wavenet.sampling.kernel.policy import busy_cores, kernel_pair, kernel_parts
from wavenet.sampling.kernel.step import _project_int8
from wavenet.sampling.sampler import CachedSampler, UniformStream

needs_numba = pytest.mark.requires(kernel.available(), "numba is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
ROOT = Path(__file__).resolve().parents[2]
HOP = 16
MEL = MelConfig(
    n_mels=10, n_fft=64, win_length=64, hop_length=HOP, channels=12, context=2, upsample=[4, 4]
)
STORAGES = {"compiled": "float32", "compiled-bf16": "bfloat16", "compiled-int8": "int8"}
TOLERANCE = {"compiled": 1e-4, "compiled-bf16": 1e-4, "compiled-int8": 1e-3}
needs_int8 = pytest.mark.skipif(
    not kernel.int8_dot_available(),
    reason="the int8 path needs numba on an x86 CPU with AVX2",
)
COMPILED = ["compiled", "compiled-bf16", pytest.param("compiled-int8", marks=needs_int8)]


OUTPUTS = ["categorical", "mol", "gaussian"]


def small_model(
    conditioned: bool = False,
    seed: int = 0,
    output: str = "categorical",
    dtype: torch.dtype = torch.float32,
) -> WaveNet:
    """Two blocks, kernel 3 (multi-tap queues, block wrap-around); optionally speaker + mel."""
    torch.manual_seed(seed)
    config = WaveNetConfig(
        blocks=2,
        layers_per_block=5,
        kernel_size=3,
        residual_channels=8,
        gate_channels=16,
        skip_channels=16,
        speaker_channels=6 if conditioned else 0,
        mel=MEL if conditioned else MelConfig(),
        output=output,
        mixtures=4,
    )
    model = WaveNet(config, speakers=3 if conditioned else 0).eval()
    if conditioned:  # fresh conditioning weights are small; make them matter
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3.0)
    return model.to(dtype)


def conditioning(model: WaveNet, batch: int, samples: int) -> dict:
    g = torch.Generator().manual_seed(9)
    if model.speaker_embed is None:
        return {}
    return {
        "speaker": torch.randint(0, 3, (batch,), generator=g),
        "mel": torch.randn(batch, MEL.n_mels, -(-samples // HOP), generator=g) * 2 - 5,
    }


def compiled_run(model, impl, batch, prime_len, n, parts, cond):
    """Prime, draw n samples on the compiled path split in `parts`; return (seq with a zero
    placeholder at the end, the logits the kernel left for that placeholder position)."""
    prime = torch.randint(
        0,
        model.config.codec.classes,
        (batch, prime_len),
        generator=torch.Generator().manual_seed(2),
    )
    sampler = CachedSampler(model)
    state, logits = sampler.start(batch, prime, **cond)
    pair = parts == "pair"  # one part, run on two threads by `_run_pair`
    weights = kernel.CompiledWeights(sampler.merged_weights(), STORAGES[impl], 1 if pair else parts)
    u = UniformStream(batch, torch.Generator().manual_seed(0)).take(n)
    local = sampler.local_bias(state, n) if "mel" in cond else None
    out = kernel.generate_chunk(weights, state, logits, u, 1.0, 2 if pair else 1, local, pair)
    assert out.shape == (batch, n) and state.position == prime_len + n + 1
    return torch.cat([prime, out, out.new_zeros(batch, 1)], dim=1), logits


def forward_last(model, seq, cond):
    mel = pad_frames(cond["mel"], MEL.context) if "mel" in cond else None
    with torch.no_grad():
        return model(seq, cond.get("speaker"), mel)[:, :, -1]


@needs_numba
@pytest.mark.parametrize("impl", COMPILED)
@pytest.mark.parametrize("parts", [1, 2, "pair"])
@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("output", OUTPUTS)
def test_compiled_paths_equal_forward(impl, parts, batch, conditioned, output):
    model = small_model(conditioned, output=output)
    prime_len, n = 150, 105  # past the 121-sample receptive field; 256 = 16 mel frames
    cond = conditioning(model, batch, prime_len + n + 1)
    seq, logits = compiled_run(model, impl, batch, prime_len, n, parts, cond)
    expected = forward_last(kernel.rounded_model(model, STORAGES[impl]), seq, cond)
    assert (logits - expected).abs().max() < TOLERANCE[impl]
    if impl != "compiled":  # the rounding's own effect, against the float32 model
        assert (logits - forward_last(model, seq, cond)).abs().max() < 0.15


@needs_int8
@pytest.mark.parametrize("n, k", [(128, 128), (7, 45), (256, 1920), (5, 3)])
def test_int8_products_are_the_exact_sums_of_the_rounded_operands(n, k):
    """`_project_int8` against float64 arithmetic on the same int16 and int8 operands, over
    shapes that leave tails (n % tile, odd k), and at the largest magnitudes (an overflowing
    int32 sum would be off by 2^32); an all-zero input row gives zeros."""
    g = torch.Generator().manual_seed(k)
    x = torch.randn(4, k, generator=g)
    x[2] = x[2].abs().max()  # every input at the row's maximum
    x[3] = 0
    w = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    w[-1] = 127  # with the row above, every product at its largest
    scale = torch.rand(n, generator=g) + 0.5
    out = torch.full((4, n), 5.0)
    codes = torch.zeros(4, k + 1, dtype=torch.int16)
    sums = torch.zeros(4, n + _TILE, dtype=torch.int32)
    wt = kernel.tiled(w, _TILE)
    _project_int8(
        x.numpy(),
        wt.numpy(),
        scale.numpy(),
        out.numpy(),
        (codes.numpy(), torch.zeros(4).numpy(), sums.numpy()),
    )
    assert out[3].eq(0).all()
    x, out, xq = x[:3], out[:3], codes[:3, :k]
    levels = min(32767, (2**31 - 1) // (127 * k))
    step = x.abs().amax(dim=1, keepdim=True) / levels
    assert ((xq - x / step).abs() <= 0.5 + 1e-3).all() and xq.abs().max() <= levels
    exact = (xq.double() @ w.double().t()) * scale.double() * step.double()
    assert torch.allclose(out.double(), exact, rtol=1e-6, atol=0)


def test_tiled_layout_puts_each_outputs_pair_side_by_side():
    w = torch.arange(5 * 3, dtype=torch.int8).view(5, 3)  # 5 outputs, 3 inputs
    t = kernel.tiled(w, 4)  # 2 tiles of 4 outputs, 2 pairs of inputs
    assert t.shape == (2, 2, 4, 2)
    for o in range(5):
        for c in range(3):
            assert t[o // 4, c // 2, o % 4, c % 2] == w[o, c]
    assert t[1, :, 1:].eq(0).all() and t[:, 1, :, 1].eq(0).all()  # the padding


@needs_numba
@pytest.mark.parametrize("conditioned", [False, True])
def test_scoring_through_the_kernel_equals_the_forward_pass(conditioned):
    """`score` feeds real codes through a compiled path: float32 gives the forward pass's
    -ln p sums (samples 1 .. T-1); int8 (weights and inputs rounded) stays close to them."""
    from wavenet.sampling.cached import score

    model = small_model(conditioned)
    batch, length = 2, 320  # 20 mel frames; past the receptive field
    cond = conditioning(model, batch, length)
    codes = torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(6))
    mel = pad_frames(cond["mel"], MEL.context) if conditioned else None
    with torch.no_grad():
        logits = model(codes, cond.get("speaker"), mel)
    expected = (
        torch.nn.functional.cross_entropy(logits[:, :, 1:], codes[:, 1:], reduction="none")
        .double()
        .sum(dim=1)
    )
    for impl, tolerance in [("compiled", 1e-5), ("compiled-int8", 1e-3)]:
        if impl == "compiled-int8" and not kernel.int8_dot_available():
            continue
        got = score(model, codes, impl, threads=2, chunk=100, **cond)
        assert got.shape == (batch,)
        assert ((got - expected).abs() / expected).max() < tolerance, impl
        # One row on two threads (`kernel_pair`, the cores taken as free).
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(policy, "busy_cores", lambda: 0.0)
            one = score(
                model, codes[:1], impl, threads=2, chunk=100, **{k: v[:1] for k, v in cond.items()}
            )
        assert abs(one.item() - expected[0].item()) / expected[0].item() < tolerance, impl
    with pytest.raises(ValueError, match="compiled"):
        score(model, codes, "reference", **cond)
    with pytest.raises(ValueError, match="categorical"):
        score(small_model(output="mol"), codes, "compiled")


def test_int8_rounding_keeps_one_scale_per_row():
    """rounded_model('int8'): each dilated-convolution and head row is scale * q for integers
    |q| <= 127 with 127 reached; a skip channel shares one scale over all layers."""
    model = small_model()
    rounded = kernel.rounded_model(model, "int8")
    res = model.config.residual_channels
    for before, after in [
        (layer.dilated.weight, r.dilated.weight)
        for layer, r in zip(model.layers, rounded.layers, strict=True)
    ] + [(model.head[1].weight, rounded.head[1].weight)]:
        scale = before.abs().amax(dim=(1, 2), keepdim=True) / 127
        q = after / scale
        assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().amax() <= 127 + 1e-3
        assert (after - before).abs().le(scale / 2 + 1e-7).all()
    skips = torch.stack([r.res_skip.weight[res:] for r in rounded.layers])
    top = torch.stack([m.res_skip.weight[res:] for m in model.layers]).abs().amax(dim=(0, 2, 3))
    q = skips / (top / 127)[None, :, None, None]
    assert torch.allclose(q, q.round(), atol=1e-3)


@needs_numba
@pytest.mark.parametrize(
    "impl, parts",
    [
        ("compiled-bf16", 2),
        pytest.param("compiled-int8", 1, marks=needs_int8),
        pytest.param("compiled-int8", "pair", marks=needs_int8),
    ],
)
@pytest.mark.parametrize("batch", [1, 4])
def test_compressed_paths_equal_forward_for_the_default_architecture(impl, parts, batch):
    """The default architecture at batch 1 and 4 (its forward passes over 3,200 samples are the
    cost); every path at batch 16 is held above on the small model. bf16 runs the layer split
    at batch 1 (its `kernel_parts` there), int8 one thread and two (`kernel_pair`)."""
    torch.manual_seed(batch)
    model = WaveNet().eval()
    seq, logits = compiled_run(model, impl, batch, 3100, 100, parts, {})
    expected = forward_last(kernel.rounded_model(model, STORAGES[impl]), seq, {})
    assert (logits - expected).abs().max() < TOLERANCE[impl]
    assert (logits - forward_last(model, seq, {})).abs().max() < 0.05


@needs_numba
def test_bf16_storage_computes_the_rounded_model():
    """The bfloat16 kernel on the model is the float32 kernel on the rounded model: widening is
    exact, so only the summation order of the vectorized loops (compiled separately for each
    weight type) differs, ~1e-7 in the logits; the draws are the same."""
    model = small_model()
    a = compiled_run(model, "compiled-bf16", 3, 150, 60, 1, {})
    b = compiled_run(kernel.rounded_model(model, "bfloat16"), "compiled", 3, 150, 60, 1, {})
    assert torch.equal(a[0], b[0]) and (a[1] - b[1]).abs().max() < 1e-5


@needs_numba
@pytest.mark.parametrize("parts", [2, "pair"])
def test_split_results_do_not_depend_on_thread_timing(parts):
    model = small_model()
    runs = [compiled_run(model, "compiled-bf16", 2, 150, 200, parts, {}) for _ in range(3)]
    assert all(torch.equal(r[0], runs[0][0]) and torch.equal(r[1], runs[0][1]) for r in runs)


def generated(model, impl, temperature, threads=1, batch=2, **kw):
    return torch.cat(
        list(
            generate(
                model,
                200,
                batch,
                temperature=temperature,
                impl=impl,
                chunk=64,
                threads=threads,
                generator=torch.Generator().manual_seed(4),
                **kw,
            )
        ),
        dim=1,
    )


@needs_numba
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.3])
@pytest.mark.parametrize("threads, batch", [(1, 2), (2, 2), (2, 1)])
@pytest.mark.parametrize("output", ["mol", "gaussian"])
def test_continuous_draws_equal_the_reference_draws_in_float64(
    temperature, threads, batch, output, monkeypatch
):
    """float64 (libm gates); batch 1 on 2 threads runs the pair (cores taken as free)."""
    monkeypatch.setattr(policy, "busy_cores", lambda: 0.0)
    model = small_model(output=output, dtype=torch.float64)
    prime = torch.randint(0, 2**16, (batch, 40), generator=torch.Generator().manual_seed(1))
    reference = generated(model, "reference", temperature, batch=batch, prime=prime)
    assert torch.equal(
        generated(model, "compiled", temperature, threads, batch, prime=prime), reference
    )
    assert len(reference.unique()) > (1 if temperature == 0 else 100)  # not stuck on one code


@needs_numba
@pytest.mark.parametrize("output", ["mol", "gaussian"])
def test_continuous_conditioned_draws_equal_the_reference_draws_in_float64(output):
    model = small_model(conditioned=True, output=output, dtype=torch.float64)
    cond = conditioning(model, 2, 200)
    assert torch.equal(
        generated(model, "compiled", 1.0, **cond), generated(model, "reference", 1.0, **cond)
    )


@needs_numba
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.3])
@pytest.mark.parametrize("threads, batch", [(1, 2), (2, 2), (2, 1)])
def test_compiled_draws_equal_the_reference_draws(temperature, threads, batch, monkeypatch):
    """float32; the bfloat16 path against the reference path on the rounded model. Two
    threads at batch 1 run the stream on two threads (`kernel_pair`; the cores taken as free,
    as a parallel test run would not find them)."""
    monkeypatch.setattr(policy, "busy_cores", lambda: 0.0)
    assert kernel_pair(threads, batch, 1) == (batch < threads)
    model = small_model()
    prime = torch.randint(0, 256, (batch, 40), generator=torch.Generator().manual_seed(1))
    reference = generated(model, "reference", temperature, batch=batch, prime=prime)
    assert torch.equal(
        generated(model, "compiled", temperature, threads, batch, prime=prime), reference
    )
    rounded = kernel.rounded_model(model, "bfloat16")
    assert torch.equal(
        generated(model, "compiled-bf16", temperature, threads, batch, prime=prime),
        generated(rounded, "reference", temperature, batch=batch, prime=prime),
    )


@needs_numba
@pytest.mark.parametrize("impl", ["compiled", "compiled-bf16"])
def test_conditioned_generation_equals_the_reference_draws(impl):
    model = small_model(conditioned=True)
    cond = conditioning(model, 2, 200)
    ref_model = kernel.rounded_model(model, STORAGES[impl])
    assert torch.equal(
        generated(model, impl, 1.0, **cond), generated(ref_model, "reference", 1.0, **cond)
    )


def test_auto_picks_by_device_and_dtype():
    small = small_model()
    assert {"auto", "compiled", "compiled-bf16", "reference", "cuda-graph"} <= set(IMPLS)
    if has(kernel.available(), "numba is not installed"):
        # int8 storage where its integer dot product runs (measured fastest, docs/speed.md);
        # bfloat16 storage only by name; float64 models keep their own weights.
        fastest = "compiled-int8" if kernel.int8_dot_available() else "compiled"
        assert resolve_impl("auto", small) == fastest
        assert resolve_impl("auto", WaveNet(), threads=2) == fastest
        assert resolve_impl("auto", WaveNet().double(), threads=2) == "compiled"
    assert resolve_impl("auto", small.to(torch.bfloat16)) == "reference"
    for impl in ("compiled-bf16", "compiled-int8", "cuda-graph"):
        with pytest.raises(ValueError, match=impl):
            resolve_impl(impl, small.to(torch.bfloat16))


@needs_numba
def test_parts_must_divide_the_layer_widths():
    with pytest.raises(ValueError, match="parts"):
        kernel.CompiledWeights(CachedSampler(small_model()), "float32", parts=3)


@needs_cuda
@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("conditioned", [False, True])
def test_cuda_graph_equals_the_reference_path_on_the_gpu(batch, conditioned):
    model = small_model(conditioned).cuda()
    cond = {k: v.cuda() for k, v in conditioning(model, batch, 300).items()}
    prime = torch.randint(0, 256, (batch, 100), generator=torch.Generator().manual_seed(1))

    def run(impl, temperature, floor=0.0):
        return torch.cat(
            list(
                generate(
                    model,
                    150,
                    batch,
                    temperature=temperature,
                    impl=impl,
                    prime=prime.cuda(),
                    chunk=64,
                    generator=torch.Generator().manual_seed(5),
                    floor=floor,
                    **cond,
                )
            ),
            1,
        )

    for temperature in (0.0, 1.0):
        assert torch.equal(run("cuda-graph", temperature), run("reference", temperature))
    temps = sharpened(batch, 150)  # per-draw temperatures and the floor, as a vocoder samples
    assert torch.equal(run("cuda-graph", temps, 0.002), run("reference", temps, 0.002))


@needs_cuda
def test_cuda_graph_logits_equal_forward():
    from wavenet.sampling.cuda_graph import GraphStep

    torch.manual_seed(0)
    model = WaveNet().cuda().eval()
    prime = torch.randint(0, 256, (2, 3100), device="cuda")
    sampler = CachedSampler(model)
    state, logits = sampler.start(2, prime)
    step = GraphStep(sampler, state, 1.0, chunk=50)
    u = UniformStream(2, torch.Generator().manual_seed(0)).take(50)
    out, logits = step.run(state, logits, u)
    seq = torch.cat([prime.cpu(), out, out.new_zeros(2, 1)], dim=1).cuda()
    with torch.no_grad():
        expected = model(seq)[:, :, -1]
    assert state.position == 3100 + 50 + 1
    assert (logits - expected).abs().max() < 1e-3  # TF32 matmuls off: float32 on both sides


def test_benchmark_script_prints_its_fields():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_generate.py"), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["kind"] == "machine" and lines[0]["cpu"]
    if os.path.exists("/proc/cpuinfo"):  # the generation behind a generic name, its vector ISA
        assert lines[0]["cpu_family_model"] and isinstance(lines[0]["isa"], list)
    paths = {line["path"] for line in lines[1:]}
    assert {"reference", "naive"} <= paths
    if has(kernel.available(), "numba is not installed"):
        assert {"compiled", "compiled-bf16"} <= paths
        assert lines[0]["read_gb_s_l2_256kb"] > 0
    for line in lines[1:]:
        assert line["kind"] == "generate"
        for field in (
            "samples_per_s_aggregate",
            "samples_per_s_per_stream",
            "realtime_factor",
            "first_call_s",
            "seconds",
            "runs_s",
            "weight_bytes",
            "load",
            "cpu",
        ):
            assert field in line, field


def bench_lines(*args: str) -> list[dict]:
    """The path lines of `bench_generate.py --quick --threads 1 --impl reference ARGS`."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_generate.py"),
            *("--quick", "--threads", "1", "--impl", "reference", *args),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return [json.loads(line) for line in out.splitlines()[1:]]


def test_benchmark_times_every_output_side_by_side():
    lines = bench_lines("--output", "categorical", "mol", "gaussian")
    assert [(line["output"], line["path"]) for line in lines] == [
        ("categorical", "reference"),
        ("mol", "reference"),
        ("gaussian", "reference"),
    ]
    assert all(line["samples_per_s_per_stream"] > 0 for line in lines)


def test_benchmark_labels_a_checkpoint_with_its_own_predictor():
    """The shipped vocoder predicts linearly: its line says so (not --lpc-order's default 0)."""
    vocoder = ROOT / "data" / "pretrained" / "asterisk4-vocoder.pt"
    (line,) = bench_lines("--checkpoint", str(vocoder), "--samples", "64")
    assert line["lpc_order"] == 16
    assert line["output"] == "categorical+lpc16"
    refused = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_generate.py"),
            "--checkpoint",
            str(vocoder),
            "--lpc-order",
            "0",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "--lpc-order" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_layer_split_needs_free_cores():
    weights = CachedSampler(WaveNet()).merged_weights()  # 5 MB: more than any core's L2 here
    cores = os.cpu_count() or 1
    if cores >= 2:
        assert kernel_parts(2, weights, batch=1, busy=0.0) == 2
    # Other work on the cores: one thread, not a barrier waiting for a descheduled one.
    assert kernel_parts(2, weights, batch=1, busy=float(cores)) == 1
    assert kernel_parts(2, weights, batch=16, busy=0.0) == 1  # rows split instead


def test_a_stream_runs_on_two_threads_only_where_a_core_would_idle():
    cores = os.cpu_count() or 1
    assert kernel_pair(2, 1, parts=1, busy=0.0) == (cores >= 2)
    assert kernel_pair(4, 2, parts=1, busy=0.0) == (cores >= 4)  # two pairs of threads
    assert not kernel_pair(2, 1, parts=1, busy=float(cores))  # the cores are taken
    assert not kernel_pair(2, 2, parts=1, busy=0.0)  # a row per thread instead
    assert not kernel_pair(2, 1, parts=2, busy=0.0)  # the layer split instead
    assert not kernel_pair(1, 1, parts=1, busy=0.0)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="busy_cores reads /proc/stat")
def test_busy_cores_counts_a_spinning_process():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        # With one process spinning, at least one core is busy (other tests may add).
        assert busy_cores() >= 1
    finally:
        spinner.kill()
        spinner.wait()


@needs_numba
def test_the_kernels_exp_is_float64_accurate_down_to_its_floor():
    import numba
    import numpy as np

    exp_all = numba.njit(lambda v: np.array([_exp_neg(t) for t in v]))
    x = -np.concatenate([np.linspace(0.0, 700.0, 70001), np.random.default_rng(0).random(999)])
    assert np.max(np.abs(exp_all(x) / np.exp(x) - 1)) < 1e-15
    assert exp_all(np.array([-750.0, -np.inf]))[0] == np.exp(-700.0)  # the floor


@needs_numba
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 1.3])
@pytest.mark.parametrize("floor", [0.0, 0.002, 0.0035])
def test_the_kernels_draw_is_the_reference_draw(temperature, floor):
    """_sample_row (vectorized max and exp, the floor cut from the unnormalised exps) against
    output.categorical_draw on 5,000 rows of random logits: the same code for every row
    (differences need a uniform within ~1e-15 of a CDF step)."""
    import numba
    import numpy as np

    from wavenet.model.output import categorical_draw

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5000, 256, generator=g) * 4
    logits[:10, 7] = logits[:10].max(dim=1).values  # ties for the greedy draw: the first wins
    uniforms = torch.rand(5000, generator=g, dtype=torch.float64)

    @numba.njit
    def draws(lg, u, t, f, scratch):
        return np.array([_sample_row(lg[i], u[i], t, f, scratch) for i in range(lg.shape[0])])

    got = draws(logits.numpy(), uniforms.numpy(), temperature, floor, np.empty(256))
    want = categorical_draw(logits, temperature, uniforms, floor)
    assert (torch.from_numpy(got) == want).all()
    if floor and temperature:  # the floor bites: draws the plain softmax would make are gone
        assert (want != categorical_draw(logits, temperature, uniforms)).any()


def sharpened(batch: int, samples: int = 200) -> torch.Tensor:
    """(batch, samples) per-draw temperatures that change every 16 samples, as voicing does."""
    g = torch.Generator().manual_seed(6)
    frames = 0.4 + torch.rand(batch, -(-samples // HOP), generator=g, dtype=torch.float64)
    return frames.repeat_interleave(HOP, dim=1)[:, :samples]


@needs_numba
@pytest.mark.parametrize("threads, batch", [(1, 2), (2, 2), (2, 1)])
@pytest.mark.parametrize("floor", [0.0, 0.003])
def test_floor_and_per_draw_temperatures_equal_the_reference_draws(
    threads, batch, floor, monkeypatch
):
    """Every compiled layout (rows split, the pair at batch 1 on 2 threads) draws what the
    reference path draws with the same per-draw temperatures and floor; float32, and bfloat16
    against the reference on the rounded model."""
    monkeypatch.setattr(policy, "busy_cores", lambda: 0.0)
    model = small_model()
    temps = sharpened(batch)
    kw = {"batch": batch, "floor": floor}
    reference = generated(model, "reference", temps, **kw)
    assert torch.equal(generated(model, "compiled", temps, threads, **kw), reference)
    assert not torch.equal(reference, generated(model, "reference", 0.9, **kw))
    rounded = kernel.rounded_model(model, "bfloat16")
    assert torch.equal(
        generated(model, "compiled-bf16", temps, threads, **kw),
        generated(rounded, "reference", temps, **kw),
    )


@needs_numba
def test_per_draw_temperatures_cross_the_mel_windows(monkeypatch):
    """With a mel the compiled path runs `local_window` positions a call: the per-draw
    temperatures are cut at the same places (windows of 64 here, 200 samples)."""
    from wavenet.sampling import cached

    monkeypatch.setattr(cached, "LOCAL_WINDOW", 128)  # local_window(2) = 64
    model = small_model(conditioned=True)
    cond = conditioning(model, 2, 200)
    temps = sharpened(2)
    assert torch.equal(
        generated(model, "compiled", temps, floor=0.002, **cond),
        generated(model, "reference", temps, floor=0.002, **cond),
    )


@pytest.mark.parametrize(
    ("temperature", "floor", "message"),
    [
        (torch.ones(2, 199), 0.0, r"per-draw temperatures must be \(batch=2, samples=200\)"),
        (torch.zeros(2, 200), 0.0, "finite numbers > 0"),
        (torch.full((2, 200), float("nan")), 0.0, "finite numbers > 0"),
        (1.0, 0.004, r"floor must be a number in \[0, 0.003516\]"),
        (1.0, -0.001, "floor must be a number"),
    ],
)
def test_bad_sampling_settings_are_refused(temperature, floor, message):
    with pytest.raises(ValueError, match=message):
        generated(small_model(), "reference", temperature, floor=floor)


def test_floor_and_per_draw_temperatures_need_a_categorical_output():
    model = small_model(output="mol")
    with pytest.raises(ValueError, match="floor applies to a categorical output, not mol"):
        generated(model, "reference", 1.0, floor=0.001)
    with pytest.raises(ValueError, match="per-draw temperatures need a categorical output"):
        generated(model, "reference", sharpened(2))


def test_benchmark_times_linear_prediction_beside_the_plain_model():
    lines = bench_lines("--condition", "mel", "--lpc-order", "0", "16")
    assert [(line["lpc_order"], line["output"]) for line in lines] == [
        (0, "categorical"),
        (16, "categorical+lpc16"),
    ]
    assert all(line["mel_conditioned"] and line["samples_per_s_per_stream"] > 0 for line in lines)
