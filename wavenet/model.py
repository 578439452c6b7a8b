"""WaveNet: causal dilated convolutions, gated units, residual and skip connections.

Tensors are (batch, channels, time). The model reads μ-law class indices (batch, time) and returns
logits (batch, classes, time) for a 256-way (by default) softmax, where the logits at time t are a
prediction of sample t from samples strictly before t.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wavenet.receptive_field import causal_padding, stack_receptive_field


@dataclass
class WaveNetConfig:
    """Architecture. Also the Hydra schema of the `model` config group."""

    blocks: int = 3
    layers_per_block: int = 10  # dilations 1, 2, 4, ..., 2**(layers_per_block - 1)
    kernel_size: int = 2
    residual_channels: int = 64
    gate_channels: int = 128  # dilated conv outputs, split in half: tanh filter and sigmoid gate
    skip_channels: int = 256
    classes: int = 256  # μ-law quantization levels

    def __post_init__(self) -> None:
        for name in ("blocks", "layers_per_block", "kernel_size", "residual_channels",
                     "gate_channels", "skip_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        if self.kernel_size < 2:
            raise ValueError(f"model.kernel_size must be >= 2, got {self.kernel_size}")
        if self.gate_channels % 2:
            raise ValueError(f"model.gate_channels must be even (tanh/sigmoid halves), "
                             f"got {self.gate_channels}")
        if not 2 <= self.classes <= 65536:
            raise ValueError(f"model.classes must be in [2, 65536], got {self.classes}")

    @property
    def dilations(self) -> list[int]:
        """Dilation of every layer, bottom first: blocks x (1, 2, 4, ..., 2**(layers-1))."""
        return [2**i for i in range(self.layers_per_block)] * self.blocks

    @property
    def receptive_field(self) -> int:
        """How many past samples one prediction sees: 1 + blocks * (k - 1) * sum(block dilations).

        Each block of rates 1..512 with k = 2 adds 1023 samples of context; the extra 1 is the
        most recent sample, which the first layer reads through the one-step input shift. The
        logits at t depend on exactly samples t - receptive_field .. t - 1.
        """
        return stack_receptive_field(self.kernel_size, self.dilations)[0]


class CausalConv1d(nn.Conv1d):
    """Dilated Conv1d padded on the left only: output t sees inputs t - d*(k-1) .. t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = causal_padding(kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, time) -> (batch, out_channels, time)."""
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ResidualLayer(nn.Module):
    """Dilated causal conv -> tanh * sigmoid -> one 1x1 conv giving residual and skip outputs."""

    def __init__(self, residual: int, gate: int, skip: int, kernel_size: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.residual_channels = residual
        self.dilated = CausalConv1d(residual, gate, kernel_size, dilation)
        # Residual and skip projections share one matmul; the split happens after.
        self.res_skip = nn.Conv1d(gate // 2, residual + skip, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, residual, time) -> (next layer input, skip), each (batch, *, time)."""
        filt, gate = self.dilated(x).chunk(2, dim=1)
        out = self.res_skip(torch.tanh(filt) * torch.sigmoid(gate))
        res, skip = out.split([self.residual_channels, out.shape[1] - self.residual_channels], 1)
        return (x + res) * math.sqrt(0.5), skip


class WaveNet(nn.Module):
    """Unconditioned WaveNet over μ-law class indices.

    >>> model = WaveNet(WaveNetConfig(blocks=1, layers_per_block=4))
    >>> model(torch.zeros(2, 100, dtype=torch.long)).shape
    torch.Size([2, 256, 100])
    """

    def __init__(self, config: WaveNetConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            config = WaveNetConfig(**overrides)
        elif overrides:
            raise ValueError("pass either a WaveNetConfig or keyword overrides, not both")
        self.config = config
        c = config
        self.embed = nn.Embedding(c.classes, c.residual_channels)
        self.layers = nn.ModuleList(
            ResidualLayer(c.residual_channels, c.gate_channels, c.skip_channels, c.kernel_size, d)
            for d in c.dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.classes, 1),
        )
        # Summing many skip outputs grows their variance with depth; keep it near 1.
        self.skip_scale = 1.0 / math.sqrt(len(self.layers))

    @property
    def receptive_field(self) -> int:
        """Past samples seen by one prediction; see WaveNetConfig.receptive_field."""
        return self.config.receptive_field

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"WaveNet expects integer class indices (batch, time), "
                             f"got {tuple(x.shape)} {x.dtype}")

    def shifted_input(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time) indices -> (batch, residual, time) first-layer input at t = embed(x[t-1]).

        Position 0 has no past and gets zeros, as do the causal convolutions' left pads.
        """
        h = self.embed(x.long()).transpose(1, 2)
        return F.pad(h, (1, 0))[:, :, :-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits. x: (batch, time) int class indices -> (batch, classes, time)."""
        return self.run(x)[0]

    def run(self, x: torch.Tensor, tail: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and, when tail > 0, the last `tail` steps of every residual layer's input.

        x: (batch, time) -> (logits (batch, classes, time), [(batch, residual, min(tail, time))]).
        The cached sampler fills its queues from the layer inputs when priming.
        """
        self._check_input(x)
        h = self.shifted_input(x)
        skips = 0
        inputs = []
        for layer in self.layers:
            if tail:
                inputs.append(h[:, :, -tail:])
            h, skip = layer(h)
            skips = skips + skip
        return self.head(skips * self.skip_scale), inputs
