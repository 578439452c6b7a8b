"""Linear prediction for a vocoder (`model.lpc_order`, LPCNet's split of the work, Valin &
Skoglund 2019): the prediction from the mel's envelope carries the spectral shape, so the
network models only the excitation.

Per mel frame, coefficients a (order + 1, a[0] = 1) come from the log-mel alone
(`wavenet.model.envelope.lpc`, of the pre-emphasised signal the model's codes encode). The
signal s is the decoded μ-law codes the model reads; sample t's prediction is
p[t] = -sum_k a[frame(t), k] s[t - k] (zeros before the start), its excitation
e[t] = s[t] - p[t]. The network reads s[t - 1], p[t] and e[t - 1] (three embeddings summed),
and predicts e[t]'s μ-law code; at generation the drawn excitation plus the prediction is the
next sample (`Predictor`), clipped to [-1, 1] and μ-law coded like the data; the network
then reads that sample's excitation as training computes it, quantize(s - p), so a generated
signal teacher-forced through `forward` gives the sampler's own logits. Since s = p + e
given the past, the NLL of the excitation's code is the signal's, up to the widths of the codes
(bits per 16-bit sample: wavenet.mulaw.log2_widths of the excitation's codes).

Arrays: codes (batch, time) int64; coefficients (batch, frames, order + 1) float64; a frame
covers `hop` samples, samples past the last frame use it.
"""

import functools

import torch

from wavenet import mulaw
from wavenet.model import envelope
from wavenet.model.config import MelConfig


@functools.cache
def levels(classes: int) -> torch.Tensor:
    """(classes,) float64: the value each μ-law code decodes to (the signal the predictor reads)."""
    return mulaw.decode(torch.arange(classes), classes).double()


def quantize(x: torch.Tensor, classes: int) -> torch.Tensor:
    """float64 values (any shape, clipped to [-1, 1]) -> int64 μ-law codes, computed in float64
    (the compiled sampler's `_mulaw` runs the same formula)."""
    return mulaw.encode(x.double(), classes)


def coefficients(
    mel: torch.Tensor, sample_rate: int, cfg: MelConfig, order: int, preemphasis: float
) -> torch.Tensor:
    """(batch, n_mels, frames) log-mel without context frames -> (batch, frames, order + 1)."""
    return envelope.lpc(mel, sample_rate, cfg, order, preemphasis)


def analyse(
    codes: torch.Tensor, a: torch.Tensor, hop: int, classes: int, clean: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The predictor over whole sequences -> (p codes, e codes, target codes), each like codes.

    codes: (batch, time) μ-law codes of the signal the network reads; clean: the codes it
    should have been (training with noise in its input; default `codes`). The prediction
    reads `codes`; e = s - p of `codes`, the target e of `clean` (LPCNet's noise injection:
    the network learns to correct its own input's errors).
    """
    table = levels(classes).to(codes.device)
    s = table[codes.long()]
    p = envelope.predict(s, a.to(s.device), hop)
    e = quantize(s - p, classes)
    target = e if clean is None else quantize(table[clean.long()] - p, classes)
    return quantize(p, classes), e, target


def codes(
    x: torch.Tensor,
    mel: torch.Tensor,
    cfg: MelConfig,
    order: int,
    sample_rate: int,
    preemphasis: float,
    classes: int,
    clean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch, time) codes and their log-mel with `cfg.context` frames on each side (as the
    network takes it) -> `analyse`'s (p codes, e codes, target codes) on x's device."""
    frames = mel[:, :, cfg.context : mel.shape[-1] - cfg.context].detach().float().cpu()
    a = coefficients(frames, sample_rate, cfg, order, preemphasis)
    out = analyse(x.cpu(), a, cfg.hop_length, classes, None if clean is None else clean.cpu())
    return tuple(t.to(x.device) for t in out)


class Predictor:
    """The predictor one sample at a time, for the PyTorch sampler paths: each row's last
    `order` signal values and the pending prediction, equal to `analyse` over what was drawn.

    a: (batch, frames, order + 1) coefficients; position 0's prediction reads silence.
    """

    def __init__(self, a: torch.Tensor, hop: int, classes: int):
        self.a, self.hop, self.classes = a.double().cpu().contiguous(), hop, classes
        batch, _, taps = self.a.shape
        self.past = torch.zeros(batch, taps - 1, dtype=torch.float64)  # s[t-1], s[t-2], ...
        self.p = torch.zeros(batch, dtype=torch.float64)  # the prediction of sample t
        self.t = 0

    def first(self) -> torch.Tensor:
        """(batch,) the prediction codes of sample 0 (from silence)."""
        self.p = self._predict()
        return quantize(self.p, self.classes)

    def prime(self, codes: torch.Tensor) -> None:
        """Continue after (batch, P) signal codes: the predictor at sample P."""
        order = self.past.shape[1]
        tail = levels(self.classes)[codes[:, -order:].long().cpu()].flip(-1)
        self.past.zero_()
        self.past[:, : tail.shape[1]] = tail
        self.t = codes.shape[1]
        self.p = self._predict()

    def feed(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample t's drawn excitation codes (batch,) -> (its signal codes, the excitation
        codes the network reads back (the signal's own, quantize(s - p), as `analyse` gives
        them), the prediction codes of sample t + 1), advancing to t + 1."""
        table = levels(self.classes)
        s = quantize((self.p + table[e.long().cpu()]).clamp(-1.0, 1.0), self.classes)
        e_in = quantize(table[s] - self.p, self.classes)
        self.past = torch.cat([table[s][:, None], self.past[:, :-1]], dim=1)
        self.t += 1
        self.p = self._predict()
        return s, e_in, quantize(self.p, self.classes)

    def _predict(self) -> torch.Tensor:
        frame = min(self.t // self.hop, self.a.shape[1] - 1)
        return -(self.a[:, frame, 1:] * self.past).sum(-1)
