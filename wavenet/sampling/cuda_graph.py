"""The cached sampler's step, random draw included, captured as one CUDA graph.

On a GPU one `CachedSampler.step` is a few hundred tiny kernels, each launched from Python: at
small batches the launches, not the GPU, set the speed. Captured once as a CUDA graph, a step is
one replay. Everything a graph reads must live at fixed addresses, so the step here differs from
`CachedSampler._advance` only in where its indices come from: the position is a device tensor
the graph advances itself (ring-buffer slots are computed from it on the device), the uniforms
of a chunk sit in a device buffer the graph indexes, and the drawn classes go to a device
buffer. All layers' taps are gathered at the start of a step and all layers' inputs written at
its end (a step reads only older slots). The layers run the reference step's own ops.

The numbers are those of the reference path on the same device: same merged weights, same draw
(`wavenet.sampling.sampler.draw`) from the same uniforms.
"""

import math

import torch

from wavenet.model.output import categorical_draw
from wavenet.sampling.sampler import CachedSampler, SamplerState, draw


class GraphStep:
    """`steps` sampler steps (draw, layers, head) of one state, replayed as a CUDA graph.

    sampler: a CachedSampler of a model on a CUDA device; state: its SamplerState (the graph
    updates its ring buffers in place); temperature: a number fixed at capture, or a tensor
    (then every `run` passes its per-draw temperatures, read from a device buffer like the
    uniforms); floor: the categorical draw's probability floor, fixed at capture; chunk: the
    most samples one `run` call draws (the size of the device buffers for uniforms, outputs and
    temperatures).
    """

    def __init__(
        self,
        sampler: CachedSampler,
        state: SamplerState,
        temperature: float | torch.Tensor,
        chunk: int = 16000,
        floor: float = 0.0,
    ):
        device = state.buffer.device
        if device.type != "cuda":
            raise ValueError(f"GraphStep needs a state on a CUDA device, got {device}")
        self.sampler, self.state, self.floor = sampler, state, float(floor)
        per_draw = isinstance(temperature, torch.Tensor)
        self.temperature = None if per_draw else float(temperature)
        w = sampler.merged_weights()
        self.embed = w.embed
        k, layers = sampler.kernel_size, len(w.dilations)
        # Tap m >= 1 of layer l at position t lives at offsets[l] + (t - m * d_l) % span_l.
        lm = [(layer, m) for layer in range(layers) for m in range(1, k)]
        as_long = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
        self.tap_offsets = as_long([w.offsets[layer] for layer, _ in lm])
        self.tap_back = as_long([m * w.dilations[layer] for layer, m in lm])
        self.tap_spans = as_long([w.spans[layer] for layer, _ in lm])
        self.offsets, self.spans = as_long(w.offsets), as_long(w.spans)
        self.layers, self.kernel = layers, k
        batch, classes = state.batch, w.head_b2.shape[0]
        self.position = as_long([state.position])  # (1,), advanced by the graph
        self.index = as_long([0])  # (1,) the draw within the chunk
        self.uniforms = torch.zeros(chunk, batch, dtype=torch.float64, device=device)
        self.temps = (
            torch.ones(chunk, batch, dtype=torch.float64, device=device) if per_draw else None
        )
        self.out = torch.zeros(batch, chunk, dtype=torch.long, device=device)
        self.logits = torch.zeros(batch, classes, dtype=w.embed.dtype, device=device)
        self.graph = self._capture()

    def _step(self) -> None:
        """One sample: draw from self.logits, run every layer, write the next logits."""
        s, st = self.sampler, self.state
        t = self.position
        u = self.uniforms.index_select(0, self.index)[0]
        if self.temps is None:
            x = draw(self.logits, self.temperature, u, s.model, self.floor)
        else:  # the per-draw temperatures' checks read the device: done before each run
            x = categorical_draw(
                self.logits, self.temps.index_select(0, self.index)[0], u, self.floor
            )
        self.out.index_copy_(1, self.index, x[:, None])
        h = self.embed[x]  # (batch, residual)
        slots = self.tap_offsets + torch.remainder(t - self.tap_back, self.tap_spans)
        taps = st.buffer.index_select(0, slots).view(
            self.layers, self.kernel - 1, st.batch, s.residual
        )
        bias = st.bias
        if st.local is not None:
            local = st.local.index_select(2, t).transpose(1, 2) @ s.local_w
            bias = bias + local.contiguous().view_as(bias)
        # The same ops on the same tensors as CachedSampler._advance, so the same GPU kernels
        # give the same numbers (and the same draws) as the reference path.
        inputs, skips = [], None
        for layer in range(self.layers):
            inputs.append(h)
            xcat = torch.cat([h, *taps[layer].unbind(0)], dim=1)
            a = torch.addmm(bias[:, layer], xcat, s.conv_w[layer])
            filt, gate = a.chunk(2, dim=1)
            out = torch.addmm(s.rs_b[layer], torch.tanh(filt) * torch.sigmoid(gate), s.rs_w[layer])
            skip = out[:, s.residual :]
            skips = skip if skips is None else skips + skip
            h = (h + out[:, : s.residual]) * math.sqrt(0.5)
        logits = s.model.head((skips * s.skip_scale).unsqueeze(-1)).squeeze(-1)
        self.logits.copy_(logits)
        st.buffer.index_copy_(0, self.offsets + torch.remainder(t, self.spans), torch.stack(inputs))
        self.position.add_(1)
        self.index.add_(1)

    def _capture(self) -> torch.cuda.CUDAGraph:
        """Warm up on a side stream (as CUDA graphs require), capture, then undo the warm-up's
        writes: the state is as it was."""
        st = self.state
        saved = st.buffer.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        st.buffer.copy_(saved)
        self.position.fill_(st.position)
        self.index.zero_()
        return graph

    @torch.no_grad()
    def run(
        self,
        state: SamplerState,
        logits: torch.Tensor,
        uniforms: torch.Tensor,
        temperatures: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw len(uniforms) samples per row from `logits` (batch, classes); uniforms (n,
        batch) with n <= chunk, and where the graph was captured with per-draw temperatures,
        temperatures (n, batch). Returns (classes (batch, n) int64 on the CPU, the next
        logits); advances `state`."""
        if (temperatures is None) != (self.temps is None):
            raise ValueError("per-draw temperatures go with a graph captured for them")
        if state is not self.state:
            raise ValueError("GraphStep runs the state it was captured with")
        n = uniforms.shape[0]
        if n > self.uniforms.shape[0]:
            raise ValueError(f"at most {self.uniforms.shape[0]} draws per run, got {n}")
        self.uniforms[:n].copy_(uniforms)
        if temperatures is not None:
            self.temps[:n].copy_(temperatures)
        self.logits.copy_(logits)
        self.index.zero_()
        self.position.fill_(state.position)
        for _ in range(n):
            self.graph.replay()
        state.position += n
        return self.out[:, :n].cpu(), self.logits.clone()
