"""Training: the loop, the resumable state, the EMA of the weights and the torchrun world.
Imports model, data, sampling and metrics; takes typed configs, never Hydra."""
