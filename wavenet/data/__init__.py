"""Speech data: dataset layouts, reading/resampling/caching, and training crops with their
conditioning. Imports wavenet.model (the mel convention) and wavenet.mulaw; no training or Hydra."""
