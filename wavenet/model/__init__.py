"""The network: WaveNet and its config, its output distributions (categorical μ-law, mixture of
logistics, Gaussian), the log-mel conditioning features, receptive-field arithmetic. Imports
only torch/torchaudio, wavenet.errors and wavenet.mulaw: no data, training or Hydra.

The names below load on first use (PEP 562), so `wavenet.model.config` reads without torch."""

from wavenet.lazy import exports

_EXPORTS = {
    "MelConfig": "wavenet.model.config",
    "WaveNetConfig": "wavenet.model.config",
    "WaveNet": "wavenet.model.network",
    "log_mel": "wavenet.model.features",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = exports(__name__, _EXPORTS)
