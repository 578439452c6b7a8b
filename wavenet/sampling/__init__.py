"""Autoregressive generation: the cached-queue sampler with its explicit state, the compiled
(numba) kernel, and the chunked generation driver. Imports wavenet.model; no training or Hydra."""

from wavenet.sampling.cached import CachedSampler, SamplerState, generate

__all__ = ["CachedSampler", "SamplerState", "generate"]
