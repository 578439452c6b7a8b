"""What the network's head predicts: a distribution over the next sample's integer code.

- categorical: a softmax over `classes` μ-law classes (the original WaveNet);
- mol: a discretized mixture of logistics over 16-bit linear audio (PixelCNN++; the WaveNet
  vocoders of r9y9/wavenet_vocoder and the Parallel WaveNet teacher);
- gaussian: one discretized Gaussian over 16-bit linear audio (ClariNet).

Continuous outputs read and predict 16-bit codes (wavenet.mulaw.LINEAR16): code k stands for
x = (k - 32768) / 32768 and owns the interval [x - 1/65536, x + 1/65536); the lowest and the
highest code also own the tails beyond. A code's probability is its interval's mass, so the
NLL is exact per 16-bit sample and drawing x from the density then rounding it to the nearest
code draws from exactly that distribution.

NLLs are computed in float64 (a 16-bit interval holds a mass of 1e-5 where float32's CDF
difference would keep two digits); every draw takes one uniform number per sample.
"""

import math

import torch
import torch.nn.functional as F

from wavenet import mulaw
from wavenet.model.config import OUTPUTS

# Floor of the logistic and Gaussian log-scales: r9y9/wavenet_vocoder's and PixelCNN++'s -7,
# a scale of about 30 16-bit steps.
LOG_SCALE_MIN = -7.0
HALF = mulaw.LINEAR16_LEVELS // 2
HALF_BIN = 1.0 / mulaw.LINEAR16_LEVELS  # half a 16-bit step on the [-1, 1) scale
TINY = 1e-12  # uniforms are kept inside (TINY, 1 - TINY) where a density's inverse CDF needs it


def categorical_draw(
    logits: torch.Tensor,
    temperature: float | torch.Tensor,
    uniform: torch.Tensor,
    floor: float = 0.0,
) -> torch.Tensor:
    """Sample from softmax(logits / temperature) by inverse CDF -> (batch,) int64.

    logits: (batch, classes); uniform: (batch,) in [0, 1). temperature: a number, or (batch,)
    positive numbers, one per row (a voicing-sharpened row divides its temperature by its
    exponent). 0 means greedy (argmax); below 1 sharpens, above 1 flattens. floor: LPCNet's
    probability floor: each probability less `floor`, clipped at 0, renormalised, so the tails
    that sound as broadband hiss are never drawn (0 <= floor < 1 / classes keeps the top class).
    """
    if not isinstance(temperature, torch.Tensor) and temperature == 0:
        return logits.argmax(dim=1)
    if isinstance(temperature, torch.Tensor):
        t = temperature.to(logits.device, torch.float64)[:, None]
    else:
        t = temperature
    probs = torch.softmax(logits.double() / t, dim=1)
    if floor > 0:
        probs = (probs - floor).clamp_(min=0.0)
    cdf = probs.cumsum(dim=1)
    target = (uniform.to(cdf) * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=logits.shape[1] - 1)


def to_codes(x: torch.Tensor) -> torch.Tensor:
    """Continuous values -> the int64 16-bit codes whose intervals hold them (tails clipped)."""
    return (torch.round(x * HALF).clamp(-HALF, HALF - 1) + HALF).long()


def code_bounds(target: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each code's value x, interval ends (x - h, x + h) and whether it is the lowest or
    highest code (whose interval runs on to -inf or +inf), in `like`'s dtype and device."""
    x = (target.to(like.device).long() - HALF).to(like.dtype) / HALF
    return x, x - HALF_BIN, x + HALF_BIN, target == 0, target == 2 * HALF - 1


class Output:
    """One output kind: its codec, head width, NLL and draw. See the module's docstring."""

    name = ""
    codec: mulaw.Codec

    def __init__(self, channels: int):
        self.channels = channels

    def nll(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """params (batch, channels, time), target (batch, time) codes -> (batch, time) NLL in
        nats per code."""
        raise NotImplementedError

    def draw(self, params: torch.Tensor, temperature: float, uniform: torch.Tensor) -> torch.Tensor:
        """params (batch, channels), uniform (batch,) in [0, 1) -> (batch,) int64 codes."""
        raise NotImplementedError

    def initialize(self, head: torch.nn.Conv1d) -> None:
        """Start the head (its last 1x1 convolution) near a sensible first guess."""


class Categorical(Output):
    """A softmax over μ-law classes."""

    name = "categorical"

    def __init__(self, classes: int):
        self.codec = mulaw.Codec("mulaw", classes)
        super().__init__(classes)

    def nll(self, params, target):
        return F.cross_entropy(params, target.long(), reduction="none")

    def draw(self, params, temperature, uniform):
        return categorical_draw(params, temperature, uniform)


def _log_scales(raw: torch.Tensor) -> torch.Tensor:
    return raw.clamp(min=LOG_SCALE_MIN)


# A continuous head starts near N(0, 0.05^2)-like guesses (speech's scale, ~30 times the
# floor): its weights shrunk 10x so the biases set the start, the means spread over +-0.05
# (mixtures) and every log-scale at log(0.05). From PyTorch's default (means ~ +-1, scales ~1)
# the first validation sits near 17 bits per 16-bit sample; from here near 12.
INIT_SCALE = 0.05


def _initialize(head: torch.nn.Conv1d, means: slice, log_scales: slice) -> None:
    with torch.no_grad():
        head.weight.mul_(0.1)
        head.bias.zero_()
        n = means.stop - means.start
        head.bias[means] = torch.linspace(-INIT_SCALE, INIT_SCALE, n) if n > 1 else 0.0
        head.bias[log_scales] = math.log(INIT_SCALE)


class Logistics(Output):
    """A discretized mixture of `mixtures` logistics; channels [logits of the weights, means,
    log-scales], each `mixtures` wide."""

    name = "mol"
    codec = mulaw.LINEAR16

    def __init__(self, mixtures: int):
        self.mixtures = mixtures
        super().__init__(3 * mixtures)

    def initialize(self, head):
        k = self.mixtures
        _initialize(head, slice(k, 2 * k), slice(2 * k, 3 * k))

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, 3K, ...) -> weight logits, means, log-scales (floored), each (batch, K, ...)."""
        k = self.mixtures
        return params[:, :k], params[:, k : 2 * k], _log_scales(params[:, 2 * k :])

    def nll(self, params, target):
        logit_w, mean, log_s = self.split(params.double())
        x, lo, hi, lowest, highest = code_bounds(target, mean)
        inv_s = torch.exp(-log_s)
        a = (lo[:, None] - mean) * inv_s  # standardized interval ends
        b = (hi[:, None] - mean) * inv_s
        # sigmoid(b) - sigmoid(a) = sigmoid(b) sigmoid(-a) (1 - exp(a - b)): exact, no
        # cancellation however small the interval's mass.
        inner = F.logsigmoid(b) + F.logsigmoid(-a) + torch.log(-torch.expm1(a - b))
        log_p = torch.where(
            lowest[:, None].to(a.device),
            F.logsigmoid(b),
            torch.where(highest[:, None].to(a.device), F.logsigmoid(-a), inner),
        )
        return -torch.logsumexp(torch.log_softmax(logit_w, dim=1) + log_p, dim=1)

    def draw(self, params, temperature, uniform):
        logit_w, mean, log_s = self.split(params.double())
        u = uniform.to(mean)
        if temperature == 0:  # the mean of the most likely component
            return to_codes(mean.gather(1, logit_w.argmax(1, keepdim=True))[:, 0])
        weights = torch.softmax(logit_w / temperature, dim=1)
        cdf = weights.cumsum(dim=1)
        target = u * cdf[:, -1]
        k = torch.searchsorted(cdf, target[:, None], right=True).clamp_(max=self.mixtures - 1)
        below = (cdf.gather(1, k) - weights.gather(1, k))[:, 0]
        # Where the uniform fell inside component k's share is itself uniform: reuse it.
        v = ((target - below) / weights.gather(1, k)[:, 0]).clamp(TINY, 1 - TINY)
        x = mean.gather(1, k)[:, 0] + temperature * torch.exp(log_s.gather(1, k)[:, 0]) * (
            torch.log(v) - torch.log1p(-v)
        )
        return to_codes(x)


def _ndtr(z: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF to float64's relative accuracy in the lower tail (where
    torch.special.ndtr is off by 2% at z = -8)."""
    return 0.5 * torch.special.erfc(-z / math.sqrt(2.0))


class Gaussian(Output):
    """One discretized Gaussian; channels [mean, log-scale]."""

    name = "gaussian"
    codec = mulaw.LINEAR16

    def __init__(self):
        super().__init__(2)

    def initialize(self, head):
        _initialize(head, slice(0, 1), slice(1, 2))

    def nll(self, params, target):
        p = params.double()
        mean, log_s = p[:, 0], _log_scales(p[:, 1])
        x, lo, hi, lowest, highest = code_bounds(target, mean)
        inv_s = torch.exp(-log_s)
        a, b = (lo - mean) * inv_s, (hi - mean) * inv_s
        # The interval's mass from the nearer tail: Phi(b) - Phi(a) below the mean, Phi(-a) -
        # Phi(-b) above it, so neither difference is of two numbers near 1.
        upper = (x - mean) > 0
        mass = torch.where(upper, _ndtr(-a) - _ndtr(-b), _ndtr(b) - _ndtr(a))
        # Far in a tail the mass underflows float64: the density at the centre times the width.
        z = (x - mean) * inv_s
        log_mid = -0.5 * z * z - log_s - 0.5 * math.log(2 * math.pi) + math.log(2 * HALF_BIN)
        inner = torch.where(mass > 1e-250, torch.log(mass.clamp(min=1e-300)), log_mid)
        log_p = torch.where(
            lowest.to(a.device),
            torch.special.log_ndtr(b),
            torch.where(highest.to(a.device), torch.special.log_ndtr(-a), inner),
        )
        return -log_p

    def draw(self, params, temperature, uniform):
        p = params.double()
        mean, scale = p[:, 0], torch.exp(_log_scales(p[:, 1]))
        u = uniform.to(mean).clamp(TINY, 1 - TINY)
        return to_codes(mean + temperature * scale * torch.special.ndtri(u))


KINDS = {"categorical": 0, "mol": 1, "gaussian": 2}  # as the compiled sampler names them


def build(output: str, classes: int = mulaw.DEFAULT_CLASSES, mixtures: int = 10) -> Output:
    """The Output of a model config's `output`, `classes` and `mixtures`."""
    if output == "categorical":
        return Categorical(classes)
    if output == "mol":
        return Logistics(mixtures)
    if output == "gaussian":
        return Gaussian()
    raise ValueError(f"model.output must be one of {OUTPUTS}, got {output!r}")
