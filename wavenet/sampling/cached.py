"""The generation drivers over the cached-queue sampler (wavenet.sampling.sampler): `generate`
runs a chunk at a time on the path `impl` names (the compiled kernel, the PyTorch step or the
CUDA graph; `resolve_impl`), `score` feeds real codes through a compiled path, and
`generate_naive` is the reference, a forward pass per sample.
"""

from collections.abc import Iterator

import torch
from tqdm import tqdm

from wavenet.model import envelope, lpc
from wavenet.model.features import pad_frames
from wavenet.model.network import WaveNet
from wavenet.sampling import kernel
from wavenet.sampling.cuda_graph import GraphStep
from wavenet.sampling.kernel.policy import kernel_pair, kernel_parts
from wavenet.sampling.paths import IMPLS, STORAGE
from wavenet.sampling.sampler import (
    CachedSampler,
    UniformStream,
    check_floor,
    check_temperature,
    draw,
)


def resolve_impl(impl: str, model: WaveNet, threads: int = 1) -> str:
    """The path `impl` names, with 'auto' resolved for this model and machine.

    auto: on CUDA, 'cuda-graph'; on the CPU with numba, 'compiled-int8' for a float32 model
    where its integer dot product runs (x86 with AVX2: measured the fastest at batch 1 and 16,
    held-out bits/sample within 0.005 of float32, docs/speed.md), else 'compiled'; 'reference'
    where neither runs. 'compiled-bf16' is chosen by name only. Raises ValueError for a path
    that cannot run this model.
    """
    if impl not in IMPLS:
        raise ValueError(f"sampler impl must be one of {IMPLS}, got {impl!r}")
    weight = model.embed.weight
    on_cpu = weight.device.type == "cpu"
    compiled_ok = kernel.available() and on_cpu and weight.dtype in (torch.float32, torch.float64)
    if impl == "compiled" and not compiled_ok:
        raise ValueError("the compiled sampler needs numba and a float32/float64 model on the CPU")
    if impl == "compiled-bf16" and not (compiled_ok and weight.dtype == torch.float32):
        raise ValueError("the compiled-bf16 sampler needs numba and a float32 model on the CPU")
    int8_ok = compiled_ok and weight.dtype == torch.float32 and kernel.int8_dot_available()
    if impl == "compiled-int8" and not int8_ok:
        raise ValueError(
            "the compiled-int8 sampler needs numba, a float32 model on the CPU and "
            "an x86 CPU with AVX2"
        )
    lpc = model.config.lpc_order > 0
    if impl == "cuda-graph" and lpc:
        raise ValueError("the cuda-graph sampler has no linear predictor yet: impl=reference")
    if impl == "cuda-graph" and weight.device.type != "cuda":
        raise ValueError("the cuda-graph sampler needs a model on a CUDA device")
    if impl != "auto":
        return impl
    if weight.device.type == "cuda":
        return "reference" if lpc else "cuda-graph"
    if int8_ok:
        return "compiled-int8"
    return "compiled" if compiled_ok else "reference"


def generation_device(device: str, impl: str) -> torch.device:
    """The device `wavenet-generate device=... impl=...` runs on (see GenerateConfig.device).
    ValueError (one line) for CUDA asked of a machine without it."""
    wants_cuda = device.startswith("cuda") or impl == "cuda-graph"
    if wants_cuda and not torch.cuda.is_available():
        asked = "impl=cuda-graph" if impl == "cuda-graph" else f"device={device}"
        raise ValueError(f"{asked} needs a CUDA device and torch sees none here: use device=cpu")
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device}: torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if device == "auto" and (
        impl == "cuda-graph"
        or (impl == "auto" and not kernel.available() and torch.cuda.is_available())
    ):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def output_length(
    model: WaveNet, samples: int | None, prime: torch.Tensor | None, mel: torch.Tensor | None
) -> int:
    """New samples to generate: `samples`, or with a mel and samples=None, what the mel covers
    after the prime. Raises ValueError when a mel does not cover prime + samples."""
    primed = prime.shape[-1] if prime is not None else 0
    if mel is None:
        if samples is None:
            raise ValueError("samples is required without a mel")
        return samples
    covered = mel.shape[-1] * model.config.mel.hop_length
    if samples is None:
        samples = covered - primed
    if samples < 0 or primed + samples > covered:
        raise ValueError(
            f"the mel's {mel.shape[-1]} frames cover {covered} samples, fewer "
            f"than the {primed}-sample prime plus {samples} new samples"
        )
    return samples


# Compiled path with a mel: positions whose per-layer projections are computed in one matmul.
LOCAL_WINDOW = 4096


def local_window(batch: int) -> int:
    """Positions per compiled call with a mel: their projections take batch * window * layers *
    gate floats."""
    return max(64, LOCAL_WINDOW // batch)


def _compiled_chunk(compiled, sampler, state, logits, u, temperature, threads, pair, floor):
    """`generate`'s chunk on a compiled path: (batch, n) codes from uniforms u (n, batch) at
    `temperature` (a number, or (n, batch) per draw); with a mel, `local_window` positions a
    call."""
    if state.local is None:
        return kernel.generate_chunk(
            compiled, state, logits, u, temperature, threads, pair=pair, floor=floor
        )
    window = local_window(state.batch)
    temps = temperature.split(window) if isinstance(temperature, torch.Tensor) else None
    return torch.cat(
        [
            kernel.generate_chunk(
                compiled,
                state,
                logits,
                part,
                temperature if temps is None else temps[k],
                threads,
                sampler.local_bias(state, len(part)),
                pair,
                floor,
            )
            for k, part in enumerate(u.split(window))
        ],
        dim=1,
    )


def _per_draw(temperature: float | torch.Tensor, batch: int, samples: int, model: WaveNet):
    """`generate`'s temperature checked: a number, or (batch, samples) float64, one a draw."""
    check_temperature(temperature)
    if not isinstance(temperature, torch.Tensor):
        return temperature
    if tuple(temperature.shape) != (batch, samples):
        raise ValueError(
            f"per-draw temperatures must be (batch={batch}, samples={samples}), "
            f"got {tuple(temperature.shape)}"
        )
    if model.config.output != "categorical":
        raise ValueError(
            f"per-draw temperatures need a categorical output, not {model.config.output}"
        )
    return temperature.double().cpu()


@torch.no_grad()
def generate(
    model: WaveNet,
    samples: int | None,
    batch: int = 1,
    temperature: float | torch.Tensor = 1.0,
    prime: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 16000,
    progress: bool = False,
    impl: str = "auto",
    threads: int | None = None,
    speaker: torch.Tensor | None = None,
    mel: torch.Tensor | None = None,
    floor: float = 0.0,
) -> Iterator[torch.Tensor]:
    """Generate `samples` new codes per item with the cached sampler, in chunks.

    prime: (batch, P) int codes (`model.config.codec`) to continue from, or None to start from
    silence.
    speaker: (batch,) speaker ids of a speaker-conditioned model.
    mel: (batch, n_mels, frames) log-mel (wavenet.features) of a mel-conditioned model, covering
    the prime and the new samples; samples=None generates all that the mel covers.
    impl: one of IMPLS: 'compiled' (numba, the model's dtype), 'compiled-bf16' (numba, bfloat16
    weights), 'reference' (PyTorch ops per step), 'cuda-graph' (the step as a CUDA graph) or
    'auto' (see `resolve_impl`). threads: threads the compiled paths use (default:
    torch.get_num_threads()): the batch rows split between them, or at a batch smaller than
    threads every layer split (`kernel_parts`) or each stream on two (`kernel_pair`).
    temperature: one for every draw, or (batch, samples) one per draw (categorical outputs:
    e.g. the voicing-sharpened temperatures of wavenet.model.envelope). floor: the probability
    floor of every categorical draw (`output.categorical_draw`); 0 = none.
    Yields (batch, <= chunk) int64 tensors, so long outputs can be streamed to disk.
    """
    samples = output_length(model, samples, prime, mel)
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    temperature = _per_draw(temperature, batch, samples, model)
    check_floor(floor, model)
    threads = threads or torch.get_num_threads()
    impl = resolve_impl(impl, model, threads)
    model.eval()
    sampler = CachedSampler(model)
    state, logits = sampler.start(batch, prime, speaker, mel)
    uniforms = UniformStream(batch, generator)
    compiled = graph = None
    if impl in STORAGE:
        merged = sampler.merged_weights()
        parts = kernel_parts(threads, merged, STORAGE[impl], batch)
        compiled = kernel.CompiledWeights(merged, STORAGE[impl], parts)
        pair = kernel_pair(threads, batch, parts)
    elif impl == "cuda-graph":
        graph = GraphStep(sampler, state, temperature, chunk, floor)
    with tqdm(total=samples, unit="sample", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            u = uniforms.take(n)
            t = temperature
            if isinstance(t, torch.Tensor):
                t = t[:, start : start + n].T.contiguous()  # (n, batch), as the uniforms
            if compiled is not None:
                out = _compiled_chunk(compiled, sampler, state, logits, u, t, threads, pair, floor)
            elif graph is not None:
                out, logits = graph.run(
                    state, logits, u, t if isinstance(t, torch.Tensor) else None
                )
            else:
                out = torch.empty(batch, n, dtype=torch.long)
                for i in range(n):
                    ti = t[i] if isinstance(t, torch.Tensor) else t
                    out[:, i], logits = sampler.feed(state, draw(logits, ti, u[i], model, floor))
            bar.update(n)
            yield out


@torch.no_grad()
def score(
    model: WaveNet,
    codes: torch.Tensor,
    impl: str = "auto",
    threads: int | None = None,
    speaker: torch.Tensor | None = None,
    mel: torch.Tensor | None = None,
    chunk: int = 16000,
) -> torch.Tensor:
    """Teacher-forced scoring through a compiled sampler path: what that path's logits make of
    real audio, e.g. to measure what compressed weights cost (scripts/storage_accuracy.py).

    codes: (batch, T) int codes of a categorical model, fed from silence like `generate`
    without a prime; speaker, mel: as for `generate` (the mel covers the T samples).
    impl: a compiled path ('auto' resolves as for `generate`). Returns (batch,) float64: the
    sum of -ln p over samples 1 .. T-1 of each row (sample 0 is not scored, as in
    `wavenet.metrics.evaluate`, whose sums it equals for float32 weights up to float error).
    """
    threads = threads or torch.get_num_threads()
    impl = resolve_impl(impl, model, threads)
    if impl not in STORAGE:
        raise ValueError(f"scoring runs a compiled path, got impl={impl!r}")
    if model.config.lpc_order:
        raise ValueError("scoring through the kernel does not take a model with linear prediction")
    model.eval()
    batch = codes.shape[0]
    sampler = CachedSampler(model)
    state, logits = sampler.start(batch, None, speaker, mel)
    compiled = kernel.CompiledWeights(sampler.merged_weights(), STORAGE[impl], 1)
    pair = kernel_pair(threads, batch, 1)
    total = torch.zeros(batch, dtype=torch.float64)
    for part in codes.split(chunk if state.local is None else local_window(batch), dim=1):
        local = sampler.local_bias(state, part.shape[1]) if state.local is not None else None
        total += kernel.score_chunk(compiled, state, logits, part, threads, local, pair)
    return total


@torch.no_grad()
def generate_naive(
    model: WaveNet,
    samples: int | None,
    batch: int = 1,
    temperature: float = 1.0,
    prime: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    speaker: torch.Tensor | None = None,
    mel: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference generator: a full forward pass over the receptive-field window per sample.

    Same contract and random draws as `generate`; O(receptive field) per sample, for tests and
    benchmarks. A model with linear prediction analyses the whole output so far each sample
    (`lpc.analyse`, O(samples)). Returns (batch, samples) int64.
    """
    model.eval()
    samples = output_length(model, samples, prime, mel)
    window = model.receptive_field
    device = model.embed.weight.device
    local = model.local_features(mel.to(device)) if mel is not None else None
    seq = (prime if prime is not None else torch.zeros(batch, 0)).long().to(device)
    start = seq.shape[1]
    uniforms = UniformStream(batch, generator)
    lpc_on = model.config.lpc_order > 0
    if lpc_on:
        a = model.lpc_coefficients(pad_frames(mel, model.config.mel.context))
        hop, classes = model.config.mel.hop_length, model.config.classes
    for _ in range(samples):
        # The window's left edge is never read; shorter contexts are zero-padded like forward.
        x = torch.cat([seq, seq.new_zeros(batch, 1)], dim=1)
        ctx = x[:, -window - 1 :]
        end = x.shape[1]  # positions end - len(ctx) .. end - 1
        ctx_local = local[:, :, end - ctx.shape[1] : end] if local is not None else None
        codes = None
        if lpc_on:
            p, e, _ = lpc.analyse(x.cpu(), a, hop, classes)
            codes = (p[:, -ctx.shape[1] :].to(device), e[:, -ctx.shape[1] :].to(device))
        logits = model.run(ctx, speaker=speaker, local=ctx_local, lpc_codes=codes)[0][:, :, -1]
        new = draw(logits, temperature, uniforms.take(1)[0], model)
        if lpc_on:  # the signal: the prediction of the new sample plus the drawn excitation
            signal = lpc.levels(classes)[x.cpu()]
            predicted = envelope.predict(signal, a, hop)[:, -1]
            new = lpc.quantize((predicted + lpc.levels(classes)[new.cpu()]).clamp(-1, 1), classes)
        seq = torch.cat([seq, new.to(device)[:, None]], dim=1)
    return seq[:, start:]
