"""The network's settings as plain dataclasses (`model.*`, `model.mel.*`): the Hydra schema of
the `model` group and what a checkpoint records. Imports no torch, so a config can be read and
checked (wavenet.config, the tools' argument checks) without loading the network."""

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wavenet.errors import check_float, check_int
from wavenet.model.receptive_field import stack_receptive_field

if TYPE_CHECKING:
    from wavenet import mulaw

OUTPUTS = ("categorical", "mol", "gaussian")


def channels(output: str, classes: int, mixtures: int) -> int:
    """Head output channels of an output kind."""
    return {"categorical": classes, "mol": 3 * mixtures, "gaussian": 2}[output]


@dataclass
class MelConfig:
    """Log-mel analysis and the upsampling network of the local conditioning (`model.mel`)."""

    n_mels: int = 0  # mel bands; 0 = no mel conditioning (an unconditioned or speaker model)
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256  # samples per frame; must equal the product of `upsample`
    fmin: float = 0.0
    fmax: float | None = None  # None: half the sample rate
    channels: int = 64  # conditioning channels after upsampling, projected into every layer
    context: int = 2  # frames on each side that the first (frame-rate) convolution sees
    upsample: list[int] = field(default_factory=lambda: [16, 16])  # transposed-conv strides

    def __post_init__(self) -> None:
        # Bounds keep a checkpoint or a config from asking for absurd sizes; every real
        # analysis is far inside them.
        bounds = {
            "n_mels": (0, 1024),
            "context": (0, 64),
            "n_fft": (1, 2**16),
            "win_length": (1, 2**16),
            "hop_length": (1, 2**16),
            "channels": (1, 4096),
        }
        for name, (low, high) in bounds.items():
            check_int(f"model.mel.{name}", getattr(self, name), low, high)
        if not isinstance(self.upsample, list | tuple) or not 1 <= len(self.upsample) <= 16:
            raise ValueError(
                f"model.mel.upsample must be a list of 1 to 16 strides, got {self.upsample!r}"
            )
        self.upsample = [check_int("model.mel.upsample", s, 1, 2**16) for s in self.upsample]
        if math.prod(self.upsample) != self.hop_length:
            raise ValueError(
                f"model.mel.upsample {self.upsample} must be positive strides whose "
                f"product is model.mel.hop_length={self.hop_length}"
            )
        if self.win_length > self.n_fft:
            raise ValueError(
                f"model.mel.win_length={self.win_length} must be <= model.mel.n_fft={self.n_fft}"
            )
        if self.hop_length > self.n_fft:
            raise ValueError(
                f"model.mel.hop_length={self.hop_length} must be <= model.mel.n_fft={self.n_fft}"
            )
        self.fmin = check_float("model.mel.fmin", self.fmin, 0, 1e6)
        if self.fmax is not None:
            self.fmax = check_float("model.mel.fmax", self.fmax, 0, 1e6)
        if self.fmax is not None and self.fmax <= self.fmin:
            raise ValueError(
                f"model.mel needs 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.fmax}"
            )

    @property
    def enabled(self) -> bool:
        return self.n_mels > 0


# Integer settings and their bounds: far beyond any model this project trains, they stop a
# config or a checkpoint from asking for terabytes before anything is allocated.
BOUNDS = {
    "blocks": (1, 64),
    "layers_per_block": (1, 24),
    "kernel_size": (2, 64),
    "residual_channels": (1, 8192),
    "gate_channels": (2, 16384),
    "skip_channels": (1, 16384),
    "classes": (2, 65536),
    "speaker_channels": (0, 4096),
    "mixtures": (1, 256),
    "lpc_order": (0, 64),
}
MAX_PARAMETERS = 2**28  # 1 GiB of float32 weights
MAX_RECEPTIVE_FIELD = 2**22  # samples (4.4 minutes at 16 kHz): the sampler queues one per layer


@dataclass
class WaveNetConfig:
    """Architecture. Also the Hydra schema of the `model` config group."""

    blocks: int = 3
    layers_per_block: int = 10  # dilations 1, 2, 4, ..., 2**(layers_per_block - 1)
    kernel_size: int = 2
    residual_channels: int = 64
    gate_channels: int = 128  # dilated conv outputs, split in half: tanh filter and sigmoid gate
    skip_channels: int = 256
    classes: int = 256  # μ-law quantization levels (output=categorical)
    # The next sample's distribution: "categorical" (softmax over μ-law classes), "mol" (a
    # discretized mixture of `mixtures` logistics) or "gaussian", the last two over 16-bit audio.
    output: str = "categorical"
    mixtures: int = 10
    # Global conditioning: width of the learned speaker embedding; 0 = none. The speaker table
    # (how many, their names) comes from the training data and is saved in the checkpoint.
    speaker_channels: int = 0
    mel: MelConfig = field(default_factory=MelConfig)  # local conditioning; n_mels=0 = none
    # Linear prediction from the mel (wavenet.model.lpc): the network models the excitation of
    # an order-`lpc_order` predictor; 0 = none. Needs the mel and a categorical output.
    lpc_order: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.mel, dict):  # from a checkpoint's or a YAML file's plain dict
            try:
                self.mel = MelConfig(**self.mel)
            except TypeError as e:  # an unknown or missing key
                raise ValueError(f"model.mel: {e}") from e
        if not isinstance(self.mel, MelConfig):
            raise ValueError(f"model.mel must be a mapping of mel settings, got {self.mel!r}")
        if self.output not in OUTPUTS:
            raise ValueError(
                f"model.output must be one of {', '.join(OUTPUTS)}, got {self.output!r}"
            )
        for name, (low, high) in BOUNDS.items():
            check_int(f"model.{name}", getattr(self, name), low, high)
        if self.lpc_order and not (self.mel.enabled and self.output == "categorical"):
            raise ValueError(
                f"model.lpc_order={self.lpc_order} needs mel conditioning (model.mel.n_mels > 0) "
                f"and output=categorical, got n_mels={self.mel.n_mels}, output={self.output}"
            )
        if self.gate_channels % 2:
            raise ValueError(
                f"model.gate_channels must be even (tanh/sigmoid halves), got {self.gate_channels}"
            )
        if self.receptive_field > MAX_RECEPTIVE_FIELD:
            raise ValueError(
                f"model: receptive field {self.receptive_field} samples is above "
                f"the limit of {MAX_RECEPTIVE_FIELD} (fewer blocks or "
                f"model.layers_per_block)"
            )
        if self.parameters() > MAX_PARAMETERS:
            raise ValueError(
                f"model: {self.parameters():,} parameters is above the limit of "
                f"{MAX_PARAMETERS:,} (fewer or narrower layers)"
            )

    def parameters(self, speakers: int = 0) -> int:
        """How many parameters the WaveNet of this config has (with `speakers` in its table),
        computed without building it."""
        r, g, s, k, c = (
            self.residual_channels,
            self.gate_channels,
            self.skip_channels,
            self.kernel_size,
            self.output_channels,
        )
        m = self.mel
        local = m.channels if m.enabled else 0
        layer = r * g * k + g + self.speaker_channels * g + local * g + (g // 2 + 1) * (r + s)
        inputs = self.classes * r if self.output == "categorical" else 2 * r
        inputs += 2 * self.classes * r if self.lpc_order else 0  # prediction, excitation
        n = inputs + speakers * self.speaker_channels + len(self.dilations) * layer
        n += s * s + s + s * c + c  # the head
        if m.enabled:
            n += m.n_mels * local * (2 * m.context + 1) + local
            n += sum(local * local * stride + local for stride in m.upsample)
        return n

    @property
    def output_channels(self) -> int:
        """Channels of the head: the output distribution's parameters."""
        return channels(self.output, self.classes, self.mixtures)

    @property
    def codec(self) -> "mulaw.Codec":
        """How audio becomes the codes this model reads and predicts."""
        from wavenet import mulaw  # imports torch: only when a codec is asked for

        if self.output == "categorical":
            return mulaw.Codec("mulaw", self.classes)
        return mulaw.LINEAR16

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
