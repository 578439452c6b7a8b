"""The cached-queue sampler: the step that every generation path runs, with its explicit state.

Each residual layer of dilation d and kernel k needs its own inputs from d, 2d, ..., (k-1)d steps
ago. The sampler keeps exactly those in one ring buffer per layer (an explicit `SamplerState`), so
one step costs O(layers) small matmuls instead of a forward pass over the receptive field.
Training and sampling share the model's weights; the sampler reads them once, merged for speed
(`MergedWeights`, the layout the compiled kernels read). The random draws take their uniforms
from a `UniformStream`, so every path draws the same samples from the same seed.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wavenet.model.features import pad_frames
from wavenet.model.lpc import Predictor
from wavenet.model.network import WaveNet
from wavenet.model.output import KINDS, categorical_draw


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
    lpc: the linear predictor of a model with `lpc_order` > 0 (wavenet.model.lpc), at sample
      position - 1, whose excitation is drawn next; else None.
    """

    buffer: torch.Tensor
    queues: list[torch.Tensor]
    position: int
    bias: torch.Tensor
    local: torch.Tensor | None = None
    lpc: Predictor | None = None

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
        predictor = None
        if model.embed_p is not None:
            a = model.lpc_coefficients(pad_frames(mel, model.config.mel.context))
            predictor = Predictor(a, model.config.mel.hop_length, model.config.classes)
        return SamplerState(buffer, queues, 0, bias.contiguous(), local, predictor)

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
            # Position 0 sees only the zero padding: one step with a zero input (and the
            # prediction of sample 0, from silence), no forward pass.
            h = self.conv_w[0].new_zeros(batch, self.residual)
            if state.lpc is not None:
                h = h + self.model.embed_p(state.lpc.first().to(h.device))
            return state, self._advance(state, h)
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
        codes = None
        if state.lpc is not None:
            p, e, _ = self.model.lpc_codes(x, pad_frames(mel, self.model.config.mel.context))
            codes = (p, e)
            state.lpc.prime(prime)
        logits, inputs = self.model.run(x, tail=tail, speaker=speaker, local=local, lpc_codes=codes)
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
        `state.position`; advances the state. A model with linear prediction: see `feed`.
        """
        return self.feed(state, x)[1]

    @torch.no_grad()
    def feed(self, state: SamplerState, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`step` returning (the sample's codes (batch,), the next logits): x itself, or for a
        model with linear prediction x is the drawn excitation and the codes are the signal's
        (its prediction plus x, `Predictor.feed`)."""
        model = self.model
        if state.lpc is None:
            return x, self._advance(state, model.embed(x.long()))
        s, e, p = state.lpc.feed(x)
        device = model.embed.weight.device
        h = model.embed(s.to(device)) + model.embed_e(e.to(device))
        return s, self._advance(state, h + model.embed_p(p.to(device)))

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


def check_temperature(temperature: float | torch.Tensor) -> None:
    """ValueError unless temperature is a finite number >= 0 (0 = greedy), or a tensor of
    per-draw temperatures, each finite and > 0."""
    if isinstance(temperature, torch.Tensor):
        if not temperature.is_floating_point() or not bool(
            (torch.isfinite(temperature) & (temperature > 0)).all()
        ):
            raise ValueError("per-draw temperatures must be finite numbers > 0")
        return
    if not (
        isinstance(temperature, int | float) and math.isfinite(temperature) and temperature >= 0
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")


def check_floor(floor: float, model: WaveNet) -> None:
    """ValueError unless `floor` fits `model`: 0, or for a categorical output a number in
    [0, 0.9 / classes] (the top class always keeps some mass)."""
    if floor == 0:
        return
    if model.config.output != "categorical":
        raise ValueError(f"floor applies to a categorical output, not {model.config.output}")
    high = 0.9 / model.config.classes
    if not (isinstance(floor, int | float) and math.isfinite(floor) and 0 <= floor <= high):
        raise ValueError(f"floor must be a number in [0, {high:.4g}], got {floor}")


def draw(
    logits: torch.Tensor,
    temperature: float | torch.Tensor,
    uniform: torch.Tensor,
    model: WaveNet | None = None,
    floor: float = 0.0,
) -> torch.Tensor:
    """Draw the next codes -> (batch,) int64, one uniform (batch,) in [0, 1) per row.

    logits: (batch, channels), the output parameters of `model` (default: a categorical
    softmax, sampled by inverse CDF). temperature 0 means greedy (the most likely class; for a
    continuous output, the mean of its most likely component); below 1 sharpens, above 1
    flattens (a continuous output's weights are softened like logits, its scales multiplied).
    A (batch,) tensor gives each row its own (categorical outputs). floor: the categorical
    draw's probability floor (`output.categorical_draw`).
    """
    check_temperature(temperature)
    if model is None or model.config.output == "categorical":
        return categorical_draw(logits, temperature, uniform, floor)
    return model.distribution.draw(logits, temperature, uniform)
