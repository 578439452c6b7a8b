"""The compiled sampler's Python driver: `generate_chunk` and `score_chunk` hand a chunk of
samples to the layout's compiled loop (`_run_part`, or `_run_pair` on two threads a stream),
on plain threads, over the sampler's own state.
"""

import threading

import numpy as np
import torch

from wavenet.model.lpc import levels as lpc_levels
from wavenet.sampling.kernel.intrinsics import _LINE
from wavenet.sampling.kernel.pair import _run_pair
from wavenet.sampling.kernel.parts import _run_part
from wavenet.sampling.kernel.storage import CompiledWeights


def generate_chunk(
    weights: CompiledWeights,
    state,
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float | torch.Tensor,
    threads: int = 1,
    local: torch.Tensor | None = None,
    pair: bool = False,
    floor: float = 0.0,
) -> torch.Tensor:
    """Draw len(uniforms) samples per row, advancing `state` and `logits` in place.

    logits: (batch, channels) float, the next sample's output parameters (updated to the
    following one's). uniforms: (n, batch) float in [0, 1), one per draw (used as float64).
    temperature: one for every draw, or (n, batch), one per draw. floor: the categorical
    draw's probability floor (output.categorical_draw).
    state: a SamplerState on the CPU.
    local: (batch, n, layers * gate) the mel projections of these n positions
    (`CachedSampler.local_bias`), for a mel-conditioned model; None otherwise.
    threads: with weights of one part (weights that fit a core's cache), batch rows are split
    across this many threads instead, each running its rows independently; with `pair`, each
    group of rows runs on two threads (`_run_pair`: the layers on one, the skips, head and
    draw on the other), min(batch, threads // 2) groups.
    Returns (batch, n) int64 codes.
    """
    return _run(weights, state, logits, uniforms, (temperature, floor), threads, local, None, pair)[
        0
    ]


def score_chunk(
    weights: CompiledWeights,
    state,
    logits: torch.Tensor,
    codes: torch.Tensor,
    threads: int = 1,
    local: torch.Tensor | None = None,
    pair: bool = False,
) -> torch.Tensor:
    """Teacher forcing through the kernel: feed codes (batch, n) instead of drawing, advancing
    `state` and `logits` like `generate_chunk`. Returns (batch,) float64: the sum of -ln p of
    each fed code under the kernel's logits, skipping sample 0 of the stream (as
    `wavenet.metrics.evaluate` does). Categorical outputs only.
    """
    if weights.kind != 0:
        raise ValueError("scoring through the kernel needs a categorical output")
    batch, n = codes.shape
    forced = codes.long().contiguous()
    return _run(
        weights,
        state,
        logits,
        torch.zeros(n, batch, dtype=torch.float64),
        (1.0, 0.0),
        threads,
        local,
        forced,
        pair,
    )[1]


def _run(weights, state, logits, uniforms, draws, threads, local, forced, pair):
    """generate_chunk, or with forced codes, score_chunk: (codes, nll). draws: (temperature: a
    number or (n, batch) per draw, floor)."""
    n, batch = uniforms.shape
    out = np.empty((batch, n), dtype=np.int64)
    nll = np.zeros(batch, dtype=np.float64)
    lg = logits.numpy()
    has_local = local is not None
    if has_local and tuple(local.shape[:2]) != (batch, n):
        raise ValueError(
            f"local must be (batch={batch}, n={n}, layers * gate), got {tuple(local.shape)}"
        )
    dt = lg.dtype
    local_np = local.numpy() if has_local else np.zeros((batch, 1, 1), dt)
    forced_np = forced.numpy() if forced is not None else np.zeros((batch, 1), np.int64)
    u = uniforms.numpy().astype(np.float64)
    temperature, floor = draws
    if isinstance(temperature, torch.Tensor):
        if tuple(temperature.shape) != (n, batch):
            raise ValueError(
                f"temperatures must be (n={n}, batch={batch}), got {tuple(temperature.shape)}"
            )
        temps = np.ascontiguousarray(temperature.numpy(), dtype=np.float64)
    else:
        temps = np.full((n, batch), float(temperature))
    buffer, bias = state.buffer.numpy(), state.bias.numpy()
    parts = weights.parts
    lpc = _predictor(state, batch)
    net = (weights.offsets, weights.spans, weights.dilations, weights.taps)
    options = (float(floor), dt == np.float64, has_local, weights.kind, forced is not None)

    def rows_args(b0: int, b1: int, parts: int) -> tuple:
        embed, skip_b, b2 = weights.arrays[0], weights.arrays[5], weights.arrays[9]
        rows = b1 - b0
        exchange = (
            np.zeros(parts * _LINE, np.int64),
            np.empty((2, parts, rows, embed.shape[1]), dt),
            np.empty((2, parts, rows, skip_b.shape[0]), dt),
            np.empty((2, parts, rows, b2.shape[0]), dt),
        )
        io = (
            lg[b0:b1],
            u[:, b0:b1],
            out[b0:b1],
            local_np[b0:b1],
            forced_np[b0:b1],
            nll[b0:b1],
            temps[:, b0:b1],
            _rows(lpc, b0, b1, False),
        )
        return (
            n,
            state.position,
            io,
            (buffer[:, b0:b1], bias[b0:b1]),
            net,
            weights.arrays,
            exchange,
            options,
        )

    if parts > 1:
        # Plain threads, not numba's pool: the parts spin-wait on each other, so all of them
        # must be running at once. _run_part releases the GIL.
        # One exchange for all parts; each runs the predictor on its own copy (part 0 on the
        # state's).
        args = rows_args(0, batch, parts)
        jobs = [(_run_part, (0, parts, *args))]
        for p in range(1, parts):
            io = (*args[2][:7], _rows(lpc, 0, batch, True))
            jobs.append((_run_part, (p, parts, *args[:2], io, *args[3:])))
    elif pair and threads >= 2:
        groups = max(1, min(batch, threads // 2))
        bounds = [p * batch // groups for p in range(groups + 1)]
        layers, gate = weights.arrays[11].shape[1:]  # the gate scales: (1, layers, gate)
        jobs = []
        for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
            args = rows_args(b0, b1, 1)
            exchange = (
                np.zeros(2 * _LINE, np.int64),
                np.zeros((b1 - b0, 3), np.int64),
                np.empty((layers, b1 - b0, gate // 2), dt),
                np.empty((layers, b1 - b0, gate), dt),
            )
            jobs += [
                (_run_pair, (role, *args[:5], weights.arrays + weights.pair, exchange, options))
                for role in (0, 1)
            ]
    else:
        split = max(1, min(threads, batch))
        bounds = [p * batch // split for p in range(split + 1)]
        jobs = [(_run_part, (0, 1, *rows_args(bounds[p], bounds[p + 1], 1))) for p in range(split)]
    others = [threading.Thread(target=f, args=a, daemon=True) for f, a in jobs[1:]]
    for th in others:
        th.start()
    jobs[0][0](*jobs[0][1])
    for th in others:
        th.join()
    state.position += n
    if state.lpc is not None:
        state.lpc.t += n
    return torch.from_numpy(out), torch.from_numpy(nll)


def _predictor(state, batch: int) -> tuple:
    """The kernel's view of the state's linear predictor (kernel.predictor): its arrays share
    memory with `state.lpc`, so the kernel advances it; dummies without one."""
    lp = state.lpc
    if lp is None:
        return (
            False,
            np.zeros((batch, 1, 2)),
            np.zeros((batch, 1)),
            np.zeros(batch),
            np.zeros(2),
            1,
        )
    levels = lpc_levels(lp.classes).numpy()
    return (True, lp.a.numpy(), lp.past.numpy(), lp.p.numpy(), levels, lp.hop)


def _rows(lpc: tuple, b0: int, b1: int, own: bool) -> tuple:
    """Rows b0 .. b1 - 1 of the predictor's arrays; `own`: copies of its state."""
    on, a, past, p, levels, hop = lpc
    past, p = past[b0:b1], p[b0:b1]
    return (on, a[b0:b1], past.copy() if own else past, p.copy() if own else p, levels, hop)
