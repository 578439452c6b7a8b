"""Autoregressive generation: the cached-queue sampler with its explicit state, the compiled
(numba) kernel, and the chunked generation driver. Imports wavenet.model; no training or Hydra."""

from wavenet.sampling.cached import generate
from wavenet.sampling.sampler import CachedSampler, SamplerState

__all__ = ["CachedSampler", "SamplerState", "generate"]
