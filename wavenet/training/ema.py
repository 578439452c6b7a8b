"""An exponential moving average of a model's weights, kept as a second copy of the model.

The average smooths out the step-to-step noise of the weights; it usually validates better than
the raw weights late in training and is what generation should use. It is kept in float32 on the
model's device and updated after every optimizer step, outside autograd.
"""

import copy

import torch
from torch import nn


class EMA:
    """`module` holds the average: e <- d * e + (1 - d) * w after every update, with the decay
    warmed up as d = min(decay, (1 + n) / (10 + n)) over the first updates n = 0, 1, ..., so
    the average is not dominated by the random initial weights. `updates` counts updates and
    is saved with the average (state_dict), so a resumed run continues the same sequence.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s weights (same architecture, unwrapped)."""
        d = self.current_decay()
        for e, w in zip(self.module.parameters(), model.parameters(), strict=True):
            e.lerp_(w.detach(), 1.0 - d)
        for e, w in zip(self.module.buffers(), model.buffers(), strict=True):
            e.copy_(w)
        self.updates += 1

    def state_dict(self) -> dict:
        """The averaged weights (a WaveNet state dict) and the update count."""
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
