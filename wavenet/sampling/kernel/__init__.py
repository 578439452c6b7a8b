"""The cached-queue sampler's generation loop compiled to machine code with numba.

`CachedSampler.step` costs ~30 small PyTorch calls per layer-step, so at batch 1 Python and
dispatch overhead, not arithmetic, set the speed. Here a whole chunk of samples (layers, gates,
head, softmax and the random draw) runs in one compiled call over the sampler's own state: the
same ring buffers and merged weights (`CachedSampler.merged_weights`), so both paths compute the
same numbers and stay interchangeable mid-run.

Once the loop is compiled, a sample costs a read of every weight (1.27 M for the default model,
5 MB in float32): more than one core's L2, so batch 1 runs at the speed the last-level cache
streams them. Two things cut that traffic:

- storage: weights kept as bfloat16 (the top 16 bits of a float32, widened back by a shift in
  registers; the arithmetic stays float32), half the bytes; or as int8 with one float32 scale
  per output row, a quarter of the bytes (the default model's 1.3 MB fit a 2 MB L2). The int8
  path also rounds each matrix input to int16 levels of its own largest value and sums the
  products exactly in int32 with pmaddwd (`_tdot`): widening int8 weights to float32 would
  cost more instructions than the multiply-adds, and the integer sum takes 32 products an
  instruction. Its matrices are tiled so that vector lanes are output rows (`tiled`): one
  broadcast pair of inputs meets 64 outputs' weights a pass and no sum is reduced across
  lanes. Arithmetic, not weight traffic, sets its speed;
- parts: the weights split between `parts` threads (one per core), each computing its share of
  every layer from its own cache; a spin barrier per layer exchanges the residual partial sums.
  With bfloat16 and two parts each core's share (1.3 MB) stays in its 2 MB L2.

Every part computes the whole batch, so the split works at batch 1; the threads' results are
combined in a fixed order, so a run gives the same numbers however its threads are scheduled.
With weights of one part, a stream can also run on two threads with no barrier (`_run_pair`:
the layers on one, the skip projections, head and draw on the other), the layout the int8 path
takes at batch 1 on two free cores.

The rooms: `intrinsics` (numba intrinsics, the spin barrier), `storage` (the weights in each
storage, `CompiledWeights`), `step` (the products, gates and head every layout shares), `draws`
(the next sample from the output parameters), one module per layout (`parts`: one part or the
layer split; `pair`), `run` (the Python driver), and `policy` (how many threads, in which
layout). Imports wavenet.model and numba (where installed); no training or Hydra.
"""

import hashlib
from pathlib import Path

from wavenet.files import atomic_write
from wavenet.model import output
from wavenet.sampling.kernel.intrinsics import available, int8_dot_available
from wavenet.sampling.kernel.pair import pair_shares
from wavenet.sampling.kernel.run import generate_chunk, score_chunk
from wavenet.sampling.kernel.storage import STORAGES, CompiledWeights, rounded_model, tiled

__all__ = [
    "STORAGES",
    "CompiledWeights",
    "available",
    "generate_chunk",
    "int8_dot_available",
    "pair_shares",
    "rounded_model",
    "score_chunk",
    "tiled",
]


def _drop_stale_cache() -> None:
    """Delete this package's numba cache (`cache=True`) once any source compiled into it has
    changed: numba checks a cached function against its own file only, while a layout
    (`_run_part`, `_run_pair`) inlines the other modules' pieces and output.py's constants.
    A read-only install keeps its cache elsewhere, and its sources do not change."""
    here = Path(__file__).parent
    sources = [*sorted(here.glob("*.py")), Path(output.__file__)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    cache = here / "__pycache__"
    mark = cache / "kernel-sources.sha256"
    if mark.is_file() and mark.read_text() == digest:
        return
    try:
        for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        atomic_write(mark, digest.encode(), durable=False)  # a reader sees all of it or none
    except OSError:  # not writable: numba caches elsewhere
        pass


if available():
    _drop_stale_cache()
