"""Count-based reference models, to say what a WaveNet's bits/sample are worth."""

import math

import torch

LN2 = math.log(2.0)  # nats per bit


BIGRAM_ALPHA = 0.5  # add-alpha smoothing of every transition count


def bigram_bits_per_sample(
    train: list[torch.Tensor], test: list[torch.Tensor], classes: int = 256, alpha: float = 0.5
) -> float:
    """Cross-entropy (bits/sample) on `test` of a previous-sample model P(x_t | x_{t-1}).

    train, test: lists of (time,) int class-index sequences. Transition counts from `train` are
    smoothed with `alpha` per cell (add-alpha), so unseen transitions keep a finite cost.
    """
    return bigram_cross_entropy(
        transition_counts(train, classes), transition_counts(test, classes), alpha
    )


def transition_counts(seqs: list[torch.Tensor], classes: int) -> torch.Tensor:
    """(classes, classes) float64: how often class j follows class i in `seqs`."""
    counts = torch.zeros(classes * classes, dtype=torch.float64)
    for seq in seqs:
        seq = seq.long()
        counts.index_add_(0, seq[:-1] * classes + seq[1:], torch.ones(len(seq) - 1).double())
    return counts.view(classes, classes)


def bigram_cross_entropy(
    train: torch.Tensor, test: torch.Tensor, alpha: float = BIGRAM_ALPHA
) -> float:
    """Bits/sample on the transitions counted in `test` of the add-alpha bigram of `train`'s
    (both (classes, classes) counts, `transition_counts`)."""
    n = test.sum()
    if n == 0:
        raise ValueError("bigram baseline needs test sequences of at least 2 samples")
    counts = train + alpha
    logp = (counts / counts.sum(dim=1, keepdim=True)).log()
    return float(-(test * logp).sum() / n / LN2)


def unigram_bits_per_sample(seqs: list[torch.Tensor], classes: int = 256) -> float:
    """Entropy (bits/sample) of the class histogram of `seqs` (list of (time,) int tensors)."""
    counts = torch.zeros(classes, dtype=torch.float64)
    for seq in seqs:
        counts += torch.bincount(seq.long(), minlength=classes).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())
