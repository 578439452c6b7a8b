"""WaveNet for 8-bit μ-law speech: model, cached-queue sampler, data, trainer, generation."""

from wavenet.model import WaveNet, WaveNetConfig
from wavenet.sampling import CachedSampler, SamplerState, generate

__all__ = ["CachedSampler", "SamplerState", "WaveNet", "WaveNetConfig", "generate"]
