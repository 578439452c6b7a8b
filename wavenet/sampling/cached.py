"""Cached-queue autoregressive generation.

Each residual layer of dilation d and kernel k needs its own inputs from d, 2d, ..., (k-1)d steps
ago. The sampler keeps exactly those in one ring buffer per layer (an explicit `SamplerState`), so
one step costs O(layers) small matmuls instead of a forward pass over the receptive field.
Training and sampling share the model's weights; the sampler reads them once, merged for speed.
"""

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from wavenet.model.network import WaveNet
from wavenet.model.output import KINDS, categorical_draw
from wavenet.sampling import kernel


@dataclass(frozen=True)
class MergedWeights:
    """The step's weights in the layouts the fast paths read, all (out, in) like PyTorch's.

    embed: (codes, residual), every code's first-layer input (`WaveNet.input_table`). conv_w:
    (layers, gate, kernel * residual), every layer's dilated convolution with its taps side by side
    in the order [current, t - d, t - 2d, ...]; conv_b: (layers, gate). res_w: (layers, residual,
    gate / 2), res_b: (layers, residual). skip_w: (skip, layers * gate / 2), every layer's skip
    projection side by side (so all skips are one matmul over the layers' gated outputs stacked);
    skip_b: (skip,) their biases summed. head_w1/head_b1: (skip, skip)/(skip,), head_w2/head_b2:
    (channels, skip)/(channels,), the output distribution's parameters. skip_scale: the model's
    skip_scale. dilations, spans, offsets: the ring buffers' layout (see SamplerState). kind: the
    output distribution, numbered as output.KINDS. Tensors share the model's device and dtype;
    conditioning projections are not here (the state holds them per row).
    """

    embed: torch.Tensor
    conv_w: torch.Tensor
    conv_b: torch.Tensor
    res_w: torch.Tensor
    res_b: torch.Tensor
    skip_w: torch.Tensor
    skip_b: torch.Tensor
    head_w1: torch.Tensor
    head_b1: torch.Tensor
    head_w2: torch.Tensor
    head_b2: torch.Tensor
    skip_scale: float
    dilations: list[int]
    spans: list[int]
    offsets: list[int]
    kind: int = 0


@dataclass
class SamplerState:
    """Everything a generation run carries from one step to the next.

    buffer: (sum of spans, batch, residual), all layers' ring buffers in one tensor; layer l
      owns rows offsets[l] .. offsets[l] + span_l, span_l = (k-1) * d_l, and its input at time s
      lives at row offsets[l] + s % span_l. queues[l] is that slice (a view).
    position: the time index the next `step` computes (samples consumed so far + 1).
    bias: (batch, layers, gate) every layer's gate bias per row: the dilated convolution's bias
      plus the row's speaker projection, computed once.
    local: (batch, mel.channels, samples + 1) the upsampled mel of the whole output (and a zero
      position after it), or None; the per-layer projections of position t are computed from
      local[:, :, t] when t is reached.
    """

    buffer: torch.Tensor
    queues: list[torch.Tensor]
    position: int
    bias: torch.Tensor
    local: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return self.buffer.shape[1]


class CachedSampler:
    """Step-by-step WaveNet evaluation equal to `model.forward`, one sample per call.

    >>> sampler = CachedSampler(model)
    >>> state, logits = sampler.start(batch=2)          # logits for t = 0: (2, classes)
    >>> logits = sampler.step(state, logits.argmax(1))  # feed sample 0, get logits for t = 1

    Conditioning is precomputed in `start`: the speaker projections once per row (folded into
    the gate biases), the upsampled mel once for the whole output.
    """

    def __init__(self, model: WaveNet):
        self.model = model
        c = model.config
        self.kernel_size = c.kernel_size
        self.dilations = c.dilations
        self.residual = c.residual_channels
        self.skip_scale = model.skip_scale
        with torch.no_grad():
            # Conv taps ordered [current, t-d, t-2d, ...] so one matmul takes the concatenation.
            self.conv_w = [
                torch.cat(
                    [
                        layer.dilated.weight[:, :, c.kernel_size - 1 - m]
                        for m in range(c.kernel_size)
                    ],
                    dim=1,
                )
                .t()
                .contiguous()
                for layer in model.layers
            ]
            self.conv_b = [layer.dilated.bias.clone() for layer in model.layers]
            self.rs_w = [layer.res_skip.weight[:, :, 0].t().contiguous() for layer in model.layers]
            self.rs_b = [layer.res_skip.bias.clone() for layer in model.layers]
            # Conditioning projections of all layers side by side: (channels, layers * gate).
            self.speaker_w = (
                torch.cat([layer.speaker.weight.t() for layer in model.layers], 1)
                if model.speaker_embed is not None
                else None
            )
            self.local_w = (
                torch.cat(
                    [layer.local.weight[:, :, 0].t() for layer in model.layers], 1
                ).contiguous()
                if model.upsampler is not None
                else None
            )
        self.gate = c.gate_channels

        self.spans = [(c.kernel_size - 1) * d for d in self.dilations]
        self.offsets = [sum(self.spans[:i]) for i in range(len(self.spans))]

    @torch.no_grad()
    def merged_weights(self) -> MergedWeights:
        """This sampler's weights merged and laid out for the compiled kernels (a copy)."""
        model, res = self.model, self.residual
        rs_w = torch.stack(self.rs_w).transpose(1, 2)  # (layers, residual + skip, gate / 2)
        rs_b = torch.stack(self.rs_b)
        return MergedWeights(
            embed=model.input_table(),
            conv_w=torch.stack(self.conv_w).transpose(1, 2).contiguous(),
            conv_b=torch.stack(self.conv_b),
            res_w=rs_w[:, :res].contiguous(),
            res_b=rs_b[:, :res].contiguous(),
            skip_w=torch.cat(list(rs_w[:, res:]), dim=1).contiguous(),
            skip_b=rs_b[:, res:].sum(dim=0),
            head_w1=model.head[1].weight[:, :, 0].detach().clone(),
            head_b1=model.head[1].bias.detach().clone(),
            head_w2=model.head[3].weight[:, :, 0].detach().clone(),
            head_b2=model.head[3].bias.detach().clone(),
            skip_scale=float(self.skip_scale),
            dilations=list(self.dilations),
            spans=list(self.spans),
            offsets=list(self.offsets),
            kind=KINDS[model.config.output],
        )

    @torch.no_grad()
    def new_state(
        self, batch: int, speaker: torch.Tensor | None = None, mel: torch.Tensor | None = None
    ) -> SamplerState:
        """All-zero queues (the causal padding of the forward pass), position 0, and the
        precomputed conditioning: speaker (batch,) ids, mel (batch, n_mels, frames) log-mel."""
        model = self.model
        model.check_conditioning(batch, speaker, mel)
        buffer = self.conv_w[0].new_zeros(sum(self.spans), batch, self.residual)
        queues = list(buffer.split(self.spans))
        bias = torch.stack(self.conv_b).expand(batch, -1, -1)
        if speaker is not None:
            g = model.speaker_embed(speaker.long().to(buffer.device))
            bias = bias + (g @ self.speaker_w).view(batch, len(self.spans), self.gate)
        local = None
        if mel is not None:
            if mel.dim() != 3 or mel.shape[0] != batch:
                raise ValueError(
                    f"mel must be (batch={batch}, n_mels, frames), got {tuple(mel.shape)}"
                )
            # One zero position past the end: the step after the last draw computes logits
            # there, which are never drawn from.
            local = F.pad(model.local_features(mel.to(buffer.device)), (0, 1))
        return SamplerState(buffer, queues, 0, bias.contiguous(), local)

    @torch.no_grad()
    def start(
        self,
        batch: int = 1,
        prime: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        mel: torch.Tensor | None = None,
    ) -> tuple[SamplerState, torch.Tensor]:
        """A fresh state, optionally primed, and the logits of the first sample to generate.

        prime: (batch, P) int class indices or None. With a prime, the queues hold the layer
        inputs of positions 0..P (computed in one teacher-forced pass) and the logits predict
        sample P; without, they predict sample 0 from silence.
        speaker, mel: the conditioning of a conditioned model (see `new_state`); the mel
        describes the whole output, prime included, so it has (P + new samples) / hop frames.
        Returns (state, logits (batch, classes)).
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        state = self.new_state(batch, speaker, mel)
        if prime is None or prime.shape[-1] == 0:
            # Position 0 sees only the zero padding: one step with a zero input, no forward pass.
            return state, self._advance(state, self.conv_w[0].new_zeros(batch, self.residual))
        if prime.dim() != 2 or prime.shape[0] != batch:
            raise ValueError(f"prime must be (batch={batch}, time), got {tuple(prime.shape)}")
        length = prime.shape[1]
        local = None
        if state.local is not None:
            covered = state.local.shape[-1] - 1
            if covered <= length:
                raise ValueError(
                    f"the mel covers {covered} samples, no more than the {length}-sample prime"
                )
            local = state.local[:, :, : length + 1]
        # One placeholder sample at position P: layer inputs and logits at P see only x[<P].
        x = torch.cat([prime.long(), prime.new_zeros(batch, 1, dtype=torch.long)], dim=1)
        tail = max(self.spans) + 1
        logits, inputs = self.model.run(x, tail=tail, speaker=speaker, local=local)
        first = length + 1 - inputs[0].shape[-1]  # time index of the first kept input
        for queue, h, span in zip(state.queues, inputs, self.spans, strict=True):
            times = torch.arange(first, length + 1)
            keep = times > length - span  # the last `span` positions, ending at P
            queue[times[keep] % span] = h[:, :, keep].permute(2, 0, 1).to(queue.dtype)
        state.position = length + 1
        return state, logits[:, :, -1]

    @torch.no_grad()
    def step(self, state: SamplerState, x: torch.Tensor) -> torch.Tensor:
        """Feed the newest sample and return the logits of the next one.

        x: (batch,) int codes of sample `state.position - 1`.
        Returns (batch, channels) output parameters (logits of a categorical model) for sample
        `state.position`; advances the state.
        """
        return self._advance(state, self.model.embed(x.long()))

    def local_bias(self, state: SamplerState, n: int) -> torch.Tensor:
        """(batch, n, layers * gate): every layer's mel projection at positions
        state.position .. state.position + n - 1, in one matmul."""
        t = state.position
        if t + n > state.local.shape[-1]:
            raise ValueError(
                f"the mel conditioning covers {state.local.shape[-1] - 1} samples; "
                f"cannot generate sample {t + n - 2}"
            )
        return (state.local[:, :, t : t + n].transpose(1, 2) @ self.local_w).contiguous()

    def _advance(self, state: SamplerState, h: torch.Tensor) -> torch.Tensor:
        """Run position `state.position` on first-layer input h (batch, residual) -> logits."""
        t = state.position
        bias = state.bias
        if state.local is not None:
            bias = bias + self.local_bias(state, 1).view_as(bias)
        skips = None
        for layer, (queue, span, dil, cw, rw, rb) in enumerate(
            zip(
                state.queues,
                self.spans,
                self.dilations,
                self.conv_w,
                self.rs_w,
                self.rs_b,
                strict=True,
            )
        ):
            taps = [h] + [queue[(t - m * dil) % span] for m in range(1, self.kernel_size)]
            a = torch.addmm(bias[:, layer], torch.cat(taps, dim=1), cw)
            filt, gate = a.chunk(2, dim=1)
            out = torch.addmm(rb, torch.tanh(filt) * torch.sigmoid(gate), rw)
            queue[t % span] = h  # the oldest tap was read above; its row is free
            skip = out[:, self.residual :]
            skips = skip if skips is None else skips + skip
            h = (h + out[:, : self.residual]) * math.sqrt(0.5)
        state.position = t + 1
        return self.model.head((skips * self.skip_scale).unsqueeze(-1)).squeeze(-1)


class UniformStream:
    """The uniform numbers behind the random draws: one per (step, batch row), in blocks.

    Every generator path takes its draws from here, so the same seed gives the same audio
    whichever path runs and however the output is chunked.
    """

    def __init__(self, batch: int, generator: torch.Generator | None = None):
        self.batch, self.generator = batch, generator
        self.block = max(16, 2**16 // batch)  # steps per draw from the generator
        self._left = torch.empty(0, batch, dtype=torch.float64)

    def take(self, n: int) -> torch.Tensor:
        """(n, batch) float64 uniforms in [0, 1)."""
        while len(self._left) < n:
            block = torch.rand(
                self.block, self.batch, dtype=torch.float64, generator=self.generator
            )
            self._left = torch.cat([self._left, block])
        out, self._left = self._left[:n], self._left[n:]
        return out


def check_temperature(temperature: float) -> None:
    """ValueError unless temperature is a finite number >= 0 (0 = greedy)."""
    if not (
        isinstance(temperature, int | float) and math.isfinite(temperature) and temperature >= 0
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")


def draw(
    logits: torch.Tensor, temperature: float, uniform: torch.Tensor, model: WaveNet | None = None
) -> torch.Tensor:
    """Draw the next codes -> (batch,) int64, one uniform (batch,) in [0, 1) per row.

    logits: (batch, channels), the output parameters of `model` (default: a categorical
    softmax, sampled by inverse CDF). temperature 0 means greedy (the most likely class; for a
    continuous output, the mean of its most likely component); below 1 sharpens, above 1
    flattens (a continuous output's weights are softened like logits, its scales multiplied).
    """
    check_temperature(temperature)
    if model is None:
        return categorical_draw(logits, temperature, uniform)
    return model.distribution.draw(logits, temperature, uniform)


# Sampler paths (`generate(impl=...)`, `wavenet-generate impl=...`):
#   compiled        numba loop, the model's own float32/float64 weights (the exact fast path)
#   compiled-bf16   numba loop, matrices stored as bfloat16, float32 arithmetic
#   compiled-int8   numba loop, matrices stored as int8 (a scale per row), int16-rounded inputs,
#                   exact int32 sums (x86 with AVX2)
#   reference       CachedSampler.step in PyTorch ops, any device and dtype
#   cuda-graph      CachedSampler.step captured as one CUDA graph (wavenet.sampling.cuda_graph)
#   auto            the fastest of these that runs here and is accurate enough (`resolve_impl`)
IMPLS = ("auto", "compiled", "compiled-bf16", "compiled-int8", "reference", "cuda-graph")
STORAGE = {"compiled": "float32", "compiled-bf16": "bfloat16", "compiled-int8": "int8"}


def l2_bytes() -> int:
    """One core's L2 cache in bytes (Linux sysfs), or 1 MiB where it cannot be read."""
    try:
        for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                unit = {"K": 2**10, "M": 2**20}.get(size[-1], 1)
                return int(size.rstrip("KM")) * unit
    except (OSError, ValueError):
        pass
    return 2**20


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
    if impl == "cuda-graph" and weight.device.type != "cuda":
        raise ValueError("the cuda-graph sampler needs a model on a CUDA device")
    if impl != "auto":
        return impl
    if weight.device.type == "cuda":
        return "cuda-graph"
    if int8_ok:
        return "compiled-int8"
    return "compiled" if compiled_ok else "reference"


def busy_cores(window: float = 0.002, reads: int = 5) -> float:
    """Cores that other work keeps busy now: the fewest runnable threads besides the caller
    that /proc/stat's `procs_running` shows over `reads` reads `window` seconds apart (work
    that holds a core is runnable at every read, a short burst seldom at all), in ~10 ms.
    Where there is no /proc/stat, the 1-minute load average (which also counts this
    process's own recent work)."""

    def running() -> int | None:
        try:
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith("procs_running"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    counts = []
    for i in range(reads):
        if i:
            time.sleep(window)
        count = running()
        if count is None:
            return os.getloadavg()[0]
        counts.append(count)
    return float(max(0, min(counts) - 1))


def kernel_parts(
    threads: int,
    weights: MergedWeights,
    storage: str = "float32",
    batch: int = 1,
    busy: float | None = None,
) -> int:
    """Threads to split every layer's weights between: 1 where there are at least as many
    batch rows as threads (the kernel splits the rows: measured faster at batch 16, no barrier
    per layer), for int8 storage (its 1.3 MB fit a 2 MB L2 and arithmetic sets its speed: the
    split measured no faster, docs/speed.md), where the stored weights fit one core's L2
    (nothing to gain), or where other work holds the cores (`busy`: cores busy with other work,
    `busy_cores()` when None; a spin barrier waiting for a descheduled thread made the split 20x
    slower than one thread on a loaded 2-core machine), else the most <= threads that divide
    gate / 2 and skip evenly."""
    if batch >= threads or storage == "int8":
        return 1
    bytes_per = {"float32": weights.embed.element_size(), "bfloat16": 2}[storage]
    stored = bytes_per * sum(
        w.numel()
        for w in (weights.conv_w, weights.res_w, weights.skip_w, weights.head_w1, weights.head_w2)
    )
    if stored <= l2_bytes():
        return 1
    busy = busy_cores() if busy is None else busy
    if busy + threads > (os.cpu_count() or 1) + 0.5:
        return 1
    half, skip = weights.conv_w.shape[1] // 2, weights.skip_b.shape[0]
    return max(p for p in range(1, max(1, threads) + 1) if half % p == 0 and skip % p == 0)


def kernel_pair(threads: int, batch: int, parts: int, busy: float | None = None) -> bool:
    """Whether each stream runs on two threads (`kernel.pair._run_pair`: one thread the
    layers, the other the skips, the head and the draw, meeting once a layer without a
    barrier): for weights of one part (`kernel_parts`) where there are fewer batch rows than
    threads, so that a core would otherwise idle (int8 at batch 1: 1.5x one thread,
    docs/speed.md), and where the cores are free (`busy` as for `kernel_parts`: the two threads
    spin-wait on each other)."""
    if parts > 1 or threads < 2 or batch >= threads:
        return False
    busy = busy_cores() if busy is None else busy
    return busy + 2 * min(batch, threads // 2) <= (os.cpu_count() or 1) + 0.5


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


@torch.no_grad()
def generate(
    model: WaveNet,
    samples: int | None,
    batch: int = 1,
    temperature: float = 1.0,
    prime: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 16000,
    progress: bool = False,
    impl: str = "auto",
    threads: int | None = None,
    speaker: torch.Tensor | None = None,
    mel: torch.Tensor | None = None,
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
    Yields (batch, <= chunk) int64 tensors, so long outputs can be streamed to disk.
    """
    samples = output_length(model, samples, prime, mel)
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    check_temperature(temperature)
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
        from wavenet.sampling.cuda_graph import GraphStep

        graph = GraphStep(sampler, state, temperature, chunk)
    window = local_window(batch)
    with tqdm(total=samples, unit="sample", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            u = uniforms.take(n)
            if compiled is not None:
                if state.local is None:
                    out = kernel.generate_chunk(
                        compiled, state, logits, u, temperature, threads, pair=pair
                    )
                else:
                    out = torch.cat(
                        [
                            kernel.generate_chunk(
                                compiled,
                                state,
                                logits,
                                part,
                                temperature,
                                threads,
                                sampler.local_bias(state, len(part)),
                                pair,
                            )
                            for part in u.split(window)
                        ],
                        dim=1,
                    )
            elif graph is not None:
                out, logits = graph.run(state, logits, u)
            else:
                out = torch.empty(batch, n, dtype=torch.long)
                for i in range(n):
                    out[:, i] = draw(logits, temperature, u[i], model)
                    logits = sampler.step(state, out[:, i])
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
    benchmarks. Returns (batch, samples) int64.
    """
    model.eval()
    samples = output_length(model, samples, prime, mel)
    window = model.receptive_field
    device = model.embed.weight.device
    local = model.local_features(mel.to(device)) if mel is not None else None
    seq = (prime if prime is not None else torch.zeros(batch, 0)).long().to(device)
    start = seq.shape[1]
    uniforms = UniformStream(batch, generator)
    for _ in range(samples):
        # The window's left edge is never read; shorter contexts are zero-padded like forward.
        ctx = torch.cat([seq[:, -window:], seq.new_zeros(batch, 1)], dim=1)
        end = seq.shape[1] + 1  # positions end - len(ctx) .. end - 1
        ctx_local = local[:, :, end - ctx.shape[1] : end] if local is not None else None
        logits = model.run(ctx, speaker=speaker, local=ctx_local)[0][:, :, -1]
        seq = torch.cat(
            [seq, draw(logits, temperature, uniforms.take(1)[0], model)[:, None]], dim=1
        )
    return seq[:, start:]
