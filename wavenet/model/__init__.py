"""The network: WaveNet and its config, its output distributions (categorical μ-law, mixture of
logistics, Gaussian), the log-mel conditioning features, receptive-field arithmetic. Imports
only torch/torchaudio, wavenet.errors and wavenet.mulaw: no data, training or Hydra."""

from wavenet.model.features import MelConfig, log_mel
from wavenet.model.network import WaveNet, WaveNetConfig

__all__ = ["MelConfig", "WaveNet", "WaveNetConfig", "log_mel"]
