"""WaveNet for 8-bit μ-law speech: model, cached-queue sampler, data, trainer, generation.

The public names load on first use (PEP 562): `from wavenet import WaveNet` imports the network
and torch, while a leaf such as `wavenet.errors` or `wavenet.config` imports neither."""

from wavenet.lazy import exports

_EXPORTS = {
    "WaveNet": "wavenet.model.network",
    "WaveNetConfig": "wavenet.model.config",
    "CachedSampler": "wavenet.sampling.sampler",
    "SamplerState": "wavenet.sampling.sampler",
    "generate": "wavenet.sampling.cached",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = exports(__name__, _EXPORTS)
