"""Count-based reference models, to say what a WaveNet's bits/sample are worth."""

import math

import torch

LN2 = math.log(2.0)  # nats per bit


def bigram_bits_per_sample(
    train: list[torch.Tensor], test: list[torch.Tensor], classes: int = 256, alpha: float = 0.5
) -> float:
    """Cross-entropy (bits/sample) on `test` of a previous-sample model P(x_t | x_{t-1}).

    train, test: lists of (time,) int class-index sequences. Transition counts from `train` are
    smoothed with `alpha` per cell (add-alpha), so unseen transitions keep a finite cost.
    """
    counts = torch.full((classes, classes), alpha, dtype=torch.float64)
    for seq in train:
        seq = seq.long()
        counts.view(-1).index_add_(
            0, seq[:-1] * classes + seq[1:], torch.ones(len(seq) - 1, dtype=torch.float64)
        )
    logp = (counts / counts.sum(dim=1, keepdim=True)).log()
    total, n = 0.0, 0
    for seq in test:
        seq = seq.long()
        total -= logp[seq[:-1], seq[1:]].sum().item()
        n += len(seq) - 1
    if n == 0:
        raise ValueError("bigram baseline needs test sequences of at least 2 samples")
    return total / n / LN2


def unigram_bits_per_sample(seqs: list[torch.Tensor], classes: int = 256) -> float:
    """Entropy (bits/sample) of the class histogram of `seqs` (list of (time,) int tensors)."""
    counts = torch.zeros(classes, dtype=torch.float64)
    for seq in seqs:
        counts += torch.bincount(seq.long(), minlength=classes).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())
