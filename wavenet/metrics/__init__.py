"""Measuring models and runs: exact evaluation, count baselines, spectral distances, plots.
Imports model, data and sampling; no training or Hydra."""
