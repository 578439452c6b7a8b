"""WaveNet: causal dilated convolutions, gated units, residual and skip connections.

Tensors are (batch, channels, time). The model reads integer codes (batch, time) and returns the
parameters (batch, channels, time) of a distribution over each next code, where those at time t
predict sample t from samples strictly before t. `model.output` picks the distribution
(wavenet.model.output): "categorical", logits of a 256-way (by default) softmax over μ-law
classes, read through an embedding; "mol" or "gaussian", a continuous distribution over 16-bit
linear audio, read through a learned linear map of the sample value.

Optional conditioning is added to every layer's gate pre-activations:
- global: a learned speaker embedding (`speaker_channels`), one projection per layer;
- local: log-mel frames (`mel`, see wavenet.features), upsampled to the sample rate by a learned
  network (a frame-rate convolution, then transposed convolutions with kernel = stride) and
  projected per layer. The logits at t see the conditioning at t (a vocoder hears the mel of the
  sample it predicts), never audio samples at or after t.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from wavenet import mulaw
from wavenet.model import lpc
from wavenet.model import output as outputs
from wavenet.model.config import MelConfig, WaveNetConfig
from wavenet.model.features import SILENCE, pad_frames
from wavenet.model.receptive_field import causal_padding


class CausalConv1d(nn.Conv1d):
    """Dilated Conv1d padded on the left only: output t sees inputs t - d*(k-1) .. t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = causal_padding(kernel_size, dilation)

    def forward(self, x: torch.Tensor, out_len: int | None = None) -> torch.Tensor:
        """x: (batch, in_channels, time) -> (batch, out_channels, out_len or time): the last
        out_len outputs only, reading just the inputs they see (zeros before x's start)."""
        if out_len is None:
            return super().forward(F.pad(x, (self.left_pad, 0)))
        pad = max(0, out_len + self.left_pad - x.shape[-1])
        x = x[:, :, x.shape[-1] - (out_len + self.left_pad - pad) :]
        return super().forward(F.pad(x, (pad, 0)) if pad else x)


class ResidualLayer(nn.Module):
    """Dilated causal conv -> tanh * sigmoid -> one 1x1 conv giving residual and skip outputs."""

    def __init__(
        self,
        residual: int,
        gate: int,
        skip: int,
        kernel_size: int,
        dilation: int,
        speaker_channels: int = 0,
        local_channels: int = 0,
    ):
        super().__init__()
        self.dilation = dilation
        self.residual_channels = residual
        self.dilated = CausalConv1d(residual, gate, kernel_size, dilation)
        # Conditioning projections into the gate pre-activations (the dilated conv has the bias).
        self.speaker = nn.Linear(speaker_channels, gate, bias=False) if speaker_channels else None
        self.local = nn.Conv1d(local_channels, gate, 1, bias=False) if local_channels else None
        self.res_skip = nn.Conv1d(gate // 2, residual + skip, 1)

    def forward(
        self,
        x: torch.Tensor,
        speaker: torch.Tensor | None = None,
        local: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, residual, time) -> (next layer input, skip), each (batch, *, time).

        speaker: (batch, speaker_channels) embedding; local: (batch, local_channels, time).
        """
        # Residual and skip projections share one matmul; the split happens after.
        out = self.res_skip(self._gated(self.dilated(x), speaker, local))
        res, skip = out.split([self.residual_channels, out.shape[1] - self.residual_channels], 1)
        return (x + res) * math.sqrt(0.5), skip

    def trimmed(
        self,
        x: torch.Tensor,
        speaker: torch.Tensor | None,
        local: torch.Tensor | None,
        out_len: int,
        keep: int,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The layer for a loss on the last positions only: (the last out_len positions of
        the next layer's input, or None for out_len 0; the last `keep` positions of the gated
        activations, which the skip projection reads). x: the last positions of this layer's
        input (all of them from the crop's start where out_len needs them);
        local: (batch, local_channels, time), the whole crop's."""
        width = max(out_len, keep)
        z = self._gated(
            self.dilated(x, width),
            speaker,
            local[:, :, local.shape[-1] - width :] if local is not None else None,
        )
        if not out_len:
            return None, z
        r = self.residual_channels
        res = F.conv1d(z[:, :, width - out_len :], self.res_skip.weight[:r], self.res_skip.bias[:r])
        return (x[:, :, x.shape[-1] - out_len :] + res) * math.sqrt(0.5), z[:, :, width - keep :]

    def _gated(
        self, a: torch.Tensor, speaker: torch.Tensor | None, local: torch.Tensor | None
    ) -> torch.Tensor:
        """tanh(filter) * sigmoid(gate) of the dilated conv's output plus the conditioning."""
        if self.speaker is not None:
            a = a + self.speaker(speaker)[:, :, None]
        if self.local is not None:
            a = a + self.local(local)
        filt, gate = a.chunk(2, dim=1)
        return torch.tanh(filt) * torch.sigmoid(gate)


class Upsampler(nn.Module):
    """Log-mel frames -> per-sample conditioning features, learned.

    A convolution over 2 * context + 1 frames (no padding), then one transposed convolution per
    stride in `upsample` with kernel = stride, so every output sample depends only on the frames
    within `context` of its own: a crop of an utterance upsamples exactly as the same span of
    the whole utterance does, given the same context frames.
    """

    def __init__(self, mel: MelConfig):
        super().__init__()
        self.context = mel.context
        self.hop = mel.hop_length
        self.pre = nn.Conv1d(mel.n_mels, mel.channels, 2 * mel.context + 1)
        self.stages = nn.ModuleList(
            nn.ConvTranspose1d(mel.channels, mel.channels, s, stride=s) for s in mel.upsample
        )
        # Start as nearest-neighbour repetition: PyTorch's default init scales a transposed conv
        # for overlapping taps, which with kernel = stride shrinks the features by ~30x a stage.
        with torch.no_grad():
            for stage in self.stages:
                stage.weight.copy_(torch.eye(mel.channels)[:, :, None].expand_as(stage.weight))
                stage.bias.zero_()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames + 2 * context) log-mel -> (batch, channels, frames * hop)."""
        # Fixed rescaling: silence (log 1e-5) -> -1, log-magnitude 0 -> +1.
        h = self.pre((mel - SILENCE) / (-SILENCE / 2) - 1)
        for stage in self.stages:
            h = stage(F.leaky_relu(h, 0.2))
        return h


class LinearInput(nn.Module):
    """16-bit codes -> a learned linear map of their value x = (code - 32768) / 32768:
    (x * INPUT_GAIN) * w + b, (..., residual); the continuous outputs' counterpart of the
    embedding (a Conv1d(1, residual, 1) of the raw value, as r9y9/wavenet_vocoder reads audio).

    Speech sits near a tenth of full scale (the demo set's RMS is 0.13), so the fixed gain of
    10 and w ~ N(0, 1), b = 0 give first-layer inputs of about unit size, as the categorical
    embedding's N(0, 1) rows are, instead of a bias that drowns the signal.
    """

    INPUT_GAIN = 10.0

    def __init__(self, residual: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(residual))
        self.bias = nn.Parameter(torch.zeros(residual))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = (codes.long() - outputs.HALF).to(self.weight.dtype) * (self.INPUT_GAIN / outputs.HALF)
        return x[..., None] * self.weight + self.bias


class WaveNet(nn.Module):
    """WaveNet over integer codes, optionally conditioned on speaker and/or log-mel frames.

    >>> model = WaveNet(WaveNetConfig(blocks=1, layers_per_block=4))
    >>> model(torch.zeros(2, 100, dtype=torch.long)).shape
    torch.Size([2, 256, 100])

    speakers: size of the speaker table (from the data); needed when config.speaker_channels > 0.
    sample_rate, preemphasis: of the audio the codes encode; a model with linear prediction
    (`lpc_order` > 0) computes its coefficients from the mel with them (wavenet.model.lpc).
    """

    def __init__(
        self,
        config: WaveNetConfig | None = None,
        speakers: int = 0,
        sample_rate: int | None = None,
        preemphasis: float = 0.0,
        **overrides,
    ):
        super().__init__()
        if config is None:
            config = WaveNetConfig(**overrides)
        elif overrides:
            raise ValueError("pass either a WaveNetConfig or keyword overrides, not both")
        if (config.speaker_channels > 0) != (speakers > 0):
            raise ValueError(
                f"model.speaker_channels={config.speaker_channels} needs a speaker "
                f"table and a table needs speaker_channels > 0, got {speakers} "
                f"speakers"
            )
        if config.lpc_order and sample_rate is None:
            raise ValueError(
                f"model.lpc_order={config.lpc_order} needs the sample rate of its audio"
            )
        self.config = config
        c = config
        self.speakers = speakers
        self.sample_rate, self.preemphasis = sample_rate, preemphasis
        self.distribution = outputs.build(c.output, c.classes, c.mixtures)
        self.embed = (
            nn.Embedding(c.classes, c.residual_channels)
            if c.output == "categorical"
            else LinearInput(c.residual_channels)
        )
        # With linear prediction: the prediction's and the excitation's codes, read beside the
        # signal's (wavenet.model.lpc).
        self.embed_p = nn.Embedding(c.classes, c.residual_channels) if c.lpc_order else None
        self.embed_e = nn.Embedding(c.classes, c.residual_channels) if c.lpc_order else None
        self.speaker_embed = nn.Embedding(speakers, c.speaker_channels) if speakers else None
        self.upsampler = Upsampler(c.mel) if c.mel.enabled else None
        local = c.mel.channels if c.mel.enabled else 0
        self.layers = nn.ModuleList(
            ResidualLayer(
                c.residual_channels,
                c.gate_channels,
                c.skip_channels,
                c.kernel_size,
                d,
                c.speaker_channels,
                local,
            )
            for d in c.dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(c.skip_channels, c.output_channels, 1),
        )
        # Summing many skip outputs grows their variance with depth; keep it near 1.
        self.skip_scale = 1.0 / math.sqrt(len(self.layers))
        if c.output != "categorical":
            self.distribution.initialize(self.head[3])

    @property
    def receptive_field(self) -> int:
        """Past samples seen by one prediction; see WaveNetConfig.receptive_field."""
        return self.config.receptive_field

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(
                f"WaveNet expects integer codes (batch, time), got {tuple(x.shape)} {x.dtype}"
            )

    @torch.no_grad()
    def input_table(self) -> torch.Tensor:
        """(codes, residual): the first layer's input vector of every code (a copy), which the
        cached sampler looks up: the embedding, or the linear input map of all 65536 values.
        With linear prediction (3 * classes, residual): the signal's, the prediction's and the
        excitation's embeddings, one after the other."""
        if self.embed_p is not None:
            return torch.cat([self.embed.weight, self.embed_p.weight, self.embed_e.weight]).clone()
        if isinstance(self.embed, nn.Embedding):
            return self.embed.weight.detach().clone()
        return self.embed(torch.arange(mulaw.LINEAR16_LEVELS, device=self.embed.weight.device))

    def nll(self, params: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(batch, output_channels, time) parameters, (batch, time) codes -> (batch, time)
        NLL in nats per code (per μ-law sample or per 16-bit sample)."""
        return self.distribution.nll(params, target)

    def check_conditioning(
        self,
        batch: int,
        speaker: torch.Tensor | None,
        local: torch.Tensor | None,
        time: int | None = None,
    ) -> None:
        """ValueError (one line) unless the conditioning fits this model and `batch` rows:
        speaker (batch,) ids iff speaker-conditioned; local features (batch, channels, time)
        or, with time=None, any mel tensor iff mel-conditioned."""
        if (speaker is None) != (self.speaker_embed is None):
            raise ValueError(
                "this model is speaker-conditioned: pass speaker ids (batch,)"
                if speaker is None
                else "this model has no speaker conditioning"
            )
        if speaker is not None and tuple(speaker.shape) != (batch,):
            raise ValueError(f"speaker must be (batch={batch},) ids, got {tuple(speaker.shape)}")
        if (local is None) != (self.upsampler is None):
            raise ValueError(
                "this model is mel-conditioned: pass mel frames"
                if local is None
                else "this model has no mel conditioning"
            )
        if (
            local is not None
            and time is not None
            and (local.shape[0] != batch or local.shape[-1] != time)
        ):
            raise ValueError(
                f"the upsampled mel {tuple(local.shape)} does not cover the "
                f"{time} samples of batch {batch}: pass time / hop frames plus "
                f"the context frames"
            )

    def shifted_input(
        self, x: torch.Tensor, lpc_codes: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(batch, time) codes -> (batch, residual, time) first-layer input at t = embed(x[t-1]).

        Position 0 has no past and gets zeros, as do the causal convolutions' left pads.
        lpc_codes: (prediction, excitation) codes (batch, time) of a model with linear
        prediction, which reads embed(x[t-1]) + embed_e(e[t-1]) + embed_p(p[t]).
        """
        h = self.embed(x.long())
        if lpc_codes is not None:
            h = h + self.embed_e(lpc_codes[1].long())
        h = F.pad(h.transpose(1, 2), (1, 0))[:, :, :-1]
        if lpc_codes is not None:
            h = h + self.embed_p(lpc_codes[0].long()).transpose(1, 2)
        return h

    def lpc_coefficients(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames + 2 * context) log-mel, as `forward` takes it -> (batch,
        frames, lpc_order + 1) float64 prediction coefficients (wavenet.model.lpc)."""
        m = self.config.mel
        frames = mel[:, :, m.context : mel.shape[-1] - m.context].detach().float().cpu()
        return lpc.coefficients(
            frames, self.sample_rate, m, self.config.lpc_order, self.preemphasis
        )

    def lpc_codes(
        self, x: torch.Tensor, mel: torch.Tensor, clean: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, time) codes and their mel (as `forward`) -> (prediction codes, excitation
        codes, target codes), each (batch, time) on x's device: see `lpc.codes`."""
        c = self.config
        return lpc.codes(
            x, mel, c.mel, c.lpc_order, self.sample_rate, self.preemphasis, c.classes, clean
        )

    def targets(
        self,
        x: torch.Tensor,
        mel: torch.Tensor | None = None,
        clean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The codes the output at each position predicts, (batch, time): x's own (`clean`'s
        where the input x carries noise), or with linear prediction the excitation's."""
        if self.embed_p is None:
            return x if clean is None else clean
        if mel is None:
            raise ValueError("a model with linear prediction needs the mel")
        return self.lpc_codes(x, mel, clean)[2]

    def upsample(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames + 2 * context) -> (batch, mel.channels, frames * hop) features.

        The frames must carry `mel.context` frames of context on each side: real frames inside
        an utterance, `features.pad_frames` (silence) at its ends.
        """
        if self.upsampler is None:
            raise ValueError("this model has no mel conditioning")
        n_mels, context = self.config.mel.n_mels, self.config.mel.context
        if mel.dim() != 3 or mel.shape[1] != n_mels or mel.shape[2] <= 2 * context:
            raise ValueError(
                f"mel must be (batch, n_mels={n_mels}, frames + 2*{context}) with "
                f"frames >= 1, got {tuple(mel.shape)}"
            )
        return self.upsampler(mel.to(self.embed.weight.dtype))

    def local_features(self, mel: torch.Tensor) -> torch.Tensor:
        """Whole utterances: (batch, n_mels, frames) -> (batch, channels, frames * hop), the ends
        padded with silence frames."""
        return self.upsample(pad_frames(mel, self.config.mel.context))

    def forward(
        self,
        x: torch.Tensor,
        speaker: torch.Tensor | None = None,
        mel: torch.Tensor | None = None,
        last: int = 0,
        lpc_codes: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Teacher-forced output parameters (logits of a categorical model).
        x: (batch, time) int codes -> (batch, output_channels, time), or (..., last) with
        last > 0: the parameters of the last `last` positions only (see `run`).

        speaker: (batch,) int ids into the speaker table, for a speaker-conditioned model.
        mel: (batch, n_mels, time / hop + 2 * context) log-mel frames of x with context (see
        `upsample`), for a mel-conditioned model.
        lpc_codes: a model with linear prediction: x's (prediction, excitation) codes when the
        caller has them (`lpc_codes`, with the targets), else they are analysed from the mel.
        """
        local = self.upsample(mel) if mel is not None else None
        if lpc_codes is None and self.embed_p is not None and mel is not None:
            lpc_codes = self.lpc_codes(x, mel)[:2]
        return self.run(x, speaker=speaker, local=local, last=last, lpc_codes=lpc_codes)[0]

    def run(
        self,
        x: torch.Tensor,
        tail: int = 0,
        speaker: torch.Tensor | None = None,
        local: torch.Tensor | None = None,
        last: int = 0,
        lpc_codes: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and, when tail > 0, the last `tail` steps of every residual layer's input.

        x: (batch, time) -> (parameters (batch, output_channels, time),
        [(batch, residual, min(tail, time))]).
        speaker: (batch,) ids; local: (batch, mel.channels, time) upsampled features.
        The cached sampler fills its queues from the layer inputs when priming.
        last > 0 (training, which scores a crop's last positions): parameters (batch,
        output_channels, last), equal to the last `last` of the full output, computed from
        only what they see: each layer's output where a later layer reads it, the skip outputs
        and the head at those positions alone (a quarter less work for crops of
        receptive_field + 2000).
        lpc_codes: (prediction, excitation) codes (batch, time) of x, for a model with linear
        prediction (`lpc_codes`).
        """
        self._check_input(x)
        if (lpc_codes is None) != (self.embed_p is None):
            raise ValueError(
                "this model predicts an excitation: pass its lpc codes"
                if lpc_codes is None
                else "this model has no linear prediction"
            )
        self.check_conditioning(x.shape[0], speaker, local, x.shape[1])
        if last and tail:
            raise ValueError("run: pass last or tail, not both")
        if not 0 <= last <= x.shape[1]:
            raise ValueError(f"run: last={last} is outside 0..{x.shape[1]} (the input's length)")
        g = self.speaker_embed(speaker.long()) if speaker is not None else None
        h = self.shifted_input(x, lpc_codes)
        if last:
            return self.head(self._last_skips(h, g, local, last) * self.skip_scale), []
        skips = 0
        inputs = []
        for layer in self.layers:
            if tail:
                inputs.append(h[:, :, -tail:])
            h, skip = layer(h, g, local)
            skips = skips + skip
        return self.head(skips * self.skip_scale), inputs

    def _last_skips(
        self, h: torch.Tensor, g: torch.Tensor | None, local: torch.Tensor | None, last: int
    ) -> torch.Tensor:
        """The sum of the skip outputs at the last `last` positions, (batch, skip, last): each
        layer computes only the outputs that later layers read (the span of their dilations
        beyond `last`), and the ten skip projections are one matmul over the layers' gated
        activations stacked (the sum of the per-layer projections, in fewer, larger GEMMs)."""
        c = self.config
        above = [
            sum(d * (c.kernel_size - 1) for d in c.dilations[k + 1 :])
            for k in range(len(self.layers))
        ]
        gated = []
        for k, layer in enumerate(self.layers):
            out_len = min(h.shape[-1], last + above[k]) if k < len(self.layers) - 1 else 0
            h, z = layer.trimmed(h, g, local, out_len, last)
            gated.append(z)
        r = c.residual_channels
        weight = torch.cat([layer.res_skip.weight[r:] for layer in self.layers], dim=1)
        bias = torch.stack([layer.res_skip.bias[r:] for layer in self.layers]).sum(0)
        return F.conv1d(torch.cat(gated, dim=1), weight, bias)
