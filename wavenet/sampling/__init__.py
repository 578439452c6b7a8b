"""Autoregressive generation: the cached-queue sampler with its explicit state, the compiled
(numba) kernel, and the chunked generation driver. Imports wavenet.model; no training or Hydra.
The names below load on first use (PEP 562): `wavenet.sampling.paths` reads without torch."""

from wavenet.lazy import exports

_EXPORTS = {
    "generate": "wavenet.sampling.cached",
    "CachedSampler": "wavenet.sampling.sampler",
    "SamplerState": "wavenet.sampling.sampler",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = exports(__name__, _EXPORTS)
