"""The compiled sampler's weights in each storage: float32 (the model's own dtype), bfloat16
(the top 16 bits of a float32, `_bf16_bits`) or int8 (one float32 scale per output row,
`int8_scale` and `int8_codes`, its matrices `tiled` for `_tdot`); `rounded_model`, the model
whose forward pass computes what a storage multiplies by; and `CompiledWeights`, the sampler's
merged weights as the kernels read them, split into the shares of a layout.
"""

from dataclasses import dataclass

import numpy as np
import torch

from wavenet.sampling.kernel.intrinsics import _TILE, int8_dot_available

STORAGES = ("float32", "bfloat16", "int8")


def _bf16_bits(w: torch.Tensor) -> np.ndarray:
    """float tensor -> its bfloat16 rounding (to nearest even) as uint16 bits."""
    return (
        w.detach().cpu().to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16)
    )


def int8_scale(amax: torch.Tensor) -> torch.Tensor:
    """Per-row scales of int8 storage from each row's largest |weight|: amax / 127 (1 for an
    all-zero row), so that a row's weights are scale * q for integers q in -127 .. 127."""
    return torch.where(amax > 0, amax / 127, torch.ones_like(amax))


def int8_codes(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The int8 codes q of weights w with scales broadcast against w: round(w / scale)."""
    return torch.round(w / scale).clamp(-127, 127)


def rounded_model(model, storage: str):
    """A copy of `model` whose weights are what the `storage` kernel multiplies by.

    The stored matrices (dilated convolutions, residual/skip projections, the head's two
    convolutions) are rounded to bfloat16 and back, or for int8 to scale * q with one scale per
    output row of the matrices the kernel multiplies (a dilated convolution's or residual
    projection's output channel in each layer; a skip channel over all layers, since the kernel
    computes every layer's skip projection as one matrix; a head convolution's output channel);
    embeddings, biases and the conditioning projections stay float32. Teacher-forced on this
    copy, `model.forward` gives the logits the compiled path of that storage computes, so the
    copy is what accuracy is measured on.
    """
    import copy

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    out = copy.deepcopy(model)
    if storage == "float32":
        return out
    heads = [out.head[1].weight, out.head[3].weight]
    with torch.no_grad():
        if storage == "bfloat16":
            for p in [
                w for layer in out.layers for w in (layer.dilated.weight, layer.res_skip.weight)
            ] + heads:
                p.copy_(p.to(torch.bfloat16).to(p.dtype))
            return out
        res = out.config.residual_channels
        skip_scale = int8_scale(
            torch.stack(
                [layer.res_skip.weight[res:].abs().amax(dim=(1, 2)) for layer in out.layers]
            ).amax(dim=0)
        )
        for layer in out.layers:
            w = layer.res_skip.weight
            scale = torch.cat([int8_scale(w[:res].abs().amax(dim=(1, 2))), skip_scale])
            w.copy_(int8_codes(w, scale[:, None, None]) * scale[:, None, None])
        for w in [layer.dilated.weight for layer in out.layers] + heads:  # (out, in, taps)
            scale = int8_scale(w.abs().amax(dim=(1, 2), keepdim=True))
            w.copy_(int8_codes(w, scale) * scale)
    return out


def tiled(q: torch.Tensor, tile: int) -> torch.Tensor:
    """int8 matrices (..., n, k) -> (..., tiles, k / 2, tile, 2), the layout `_tdot` reads:
    for each tile of `tile` outputs and each pair of inputs, the outputs' two weights side by
    side. n is padded to a multiple of `tile` and k to an even number with zeros."""
    n, k = q.shape[-2:]
    q = torch.nn.functional.pad(q, (0, k % 2, 0, -n % tile))
    lead = q.shape[:-2]
    q = q.reshape(*lead, q.shape[-2] // tile, tile, q.shape[-1] // 2, 2)
    return q.transpose(-3, -2).contiguous()


@dataclass
class CompiledWeights:
    """The sampler's merged weights split into `parts` shares, as contiguous numpy arrays.

    merged: `CachedSampler.merged_weights()` (or the sampler itself). storage: 'float32' keeps
    the model's dtype; 'bfloat16' stores the matrices as bfloat16 bits, 'int8' as int8 codes
    with a float32 scale per output row (`rounded_model` says which rows); both for float32
    models only. Part p computes gated outputs p*share .. (p+1)*share - 1 of every layer
    (share = gate / 2 / parts), their residual and skip contributions, hidden units
    p*skip/parts .. of the head and their share of the logits. The gate biases are not here:
    they are per row, in the state.
    """

    arrays: tuple
    offsets: np.ndarray
    spans: np.ndarray
    dilations: np.ndarray
    parts: int
    storage: str
    kind: int  # the output distribution (output.KINDS)
    taps: int  # inputs of a dilated convolution: kernel size * residual channels

    def __init__(self, merged, storage: str = "float32", parts: int = 1) -> None:
        if hasattr(merged, "merged_weights"):
            merged = merged.merged_weights()
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        if storage == "int8" and not int8_dot_available():
            raise ValueError("int8 storage needs an x86 CPU with AVX2 (its integer dot product)")
        if storage != "float32" and merged.embed.dtype != torch.float32:
            raise ValueError(f"{storage} storage needs a float32 model, got {merged.embed.dtype}")
        layers, gate, _ = merged.conv_w.shape
        half, skip_c = gate // 2, merged.skip_b.shape[0]
        if parts < 1 or half % parts or skip_c % parts:
            raise ValueError(
                f"parts must divide gate / 2 = {half} and skip = {skip_c}, got {parts}"
            )
        share, hid = half // parts, skip_c // parts
        as_np = lambda t: t.detach().cpu().contiguous().numpy()  # noqa: E731
        matrices = [merged.conv_w, merged.res_w, merged.skip_w, merged.head_w1, merged.head_w2]
        if storage == "int8":  # one scale per output row: the last dimension is the input
            scales = [int8_scale(w.abs().amax(dim=-1)) for w in matrices]
            matrices = [
                int8_codes(w, s[..., None]).to(torch.int8)
                for w, s in zip(matrices, scales, strict=True)
            ]
        else:
            scales = [w.new_ones(w.shape[:-1]) for w in matrices]
        if storage == "bfloat16":
            store = _bf16_bits
        elif storage == "int8":
            store = lambda t: as_np(tiled(t, _TILE))  # noqa: E731
        else:
            store = as_np
        (conv, res_w, skip_w, w1, w2), (conv_s, res_s, skip_s, w1_s, w2_s) = matrices, scales
        skip_w = skip_w.view(skip_c, layers, half)
        shares = [slice(p * share, (p + 1) * share) for p in range(parts)]

        def gate_rows(t):  # (layers, gate, ...) -> (parts, layers, 2 * share, ...)
            return torch.stack([torch.cat([t[:, s], t[:, half:][:, s]], dim=1) for s in shares])

        res_parts = torch.stack([res_w[:, :, s] for s in shares])  # (parts, layers, res, share)
        skip_parts = torch.stack(
            [skip_w[:, :, s].reshape(skip_c, layers * share) for s in shares]
        )  # (parts, skip, layers * share)
        w2 = torch.stack(list(w2.view(-1, parts, hid).unbind(1)))  # (parts, classes, hid)
        self.arrays = (
            as_np(merged.embed),
            store(gate_rows(conv)),
            store(res_parts),
            as_np(merged.res_b),
            store(skip_parts),
            as_np(merged.skip_b),
            store(w1.view(parts, hid, skip_c)),
            as_np(merged.head_b1.view(parts, hid)),
            store(w2),
            as_np(merged.head_b2),
            float(merged.skip_scale),
            as_np(gate_rows(conv_s)),
            as_np(res_s),
            as_np(skip_s),
            as_np(w1_s.view(parts, hid)),
            as_np(w2_s),
        )
        # For two threads on one stream (`_run_pair`): the current tap's and the older taps'
        # convolution matrices apart, and the skip projection per layer; same codes and scales.
        res = merged.res_b.shape[1]
        self.pair = (
            (store(conv[:, :, :res]), store(conv[:, :, res:]), store(skip_w.transpose(0, 1)))
            if parts == 1
            else ()
        )
        self.offsets = np.asarray(merged.offsets, dtype=np.int64)
        self.spans = np.asarray(merged.spans, dtype=np.int64)
        self.dilations = np.asarray(merged.dilations, dtype=np.int64)
        self.parts, self.storage, self.kind = parts, storage, merged.kind
        self.taps = merged.conv_w.shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes of every weight a sample reads (of the input table, one row)."""
        embed = self.arrays[0]
        return sum(a.nbytes for a in self.arrays[1:] if isinstance(a, np.ndarray)) + embed[0].nbytes
