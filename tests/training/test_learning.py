"""Short runs on real speech learn: a tiny WaveNet on the bundled demo speech beats what the
previous one or two samples can predict (the same on the full asterisk4 set, and a vocoder's
use of its mel: test_learning_asterisk4.py)."""

import json

import numpy as np
import torch

from wavenet import checkpoint, mulaw
from wavenet.data.dataset import load_dataset
from wavenet.metrics.baseline import LN2, bigram_bits_per_sample
from wavenet.metrics.evaluate import evaluate


def trigram_bits_per_sample(
    train: list[torch.Tensor], test: list[torch.Tensor], classes: int = 256, alpha: float = 0.5
) -> float:
    """Cross-entropy (bits/sample) on `test` of P(x_t | x_{t-2}, x_{t-1}), counted on `train`
    with add-alpha smoothing: the best that two samples of context give by counting."""
    counts = np.zeros(classes**3, dtype=np.int64)
    for seq in train:
        s = seq.long().numpy()
        counts += np.bincount((s[:-2] * classes + s[1:-1]) * classes + s[2:], minlength=classes**3)
    counts = counts.reshape(classes * classes, classes)
    rows = counts.sum(axis=1)
    total, n = 0.0, 0
    for seq in test:
        s = seq.long().numpy()
        ctx = s[:-2] * classes + s[1:-1]
        p = (counts[ctx, s[2:]] + alpha) / (rows[ctx] + classes * alpha)
        total -= np.log(p).sum()
        n += len(s) - 2
    return total / n / LN2


def test_tiny_model_on_the_demo_speech_beats_two_samples_of_context(demo_run, demo_root):
    """The shared demo run (conftest.DEMO_RUN, ~30 s): on whole held-out files of its own split,
    it needs fewer bits than the bigram and trigram models counted on its training files. It
    reached 4.52 bits/sample against 4.88 (trigram) and 5.16 (bigram) on 2026-12-03: a model
    that used only the last two or three samples, or did not learn, fails."""
    report = json.loads((demo_run / "data_report.json").read_text())
    data = load_dataset(demo_root, 16000, min_samples=65).utterances
    train_set = [u for u in data if u.name in set(report["train"])]
    val_set = [u for u in data if u.name in set(report["validation"])]
    assert len(train_set) == len(report["train"]) and len(val_set) == len(report["validation"]) >= 5
    train_seqs = [mulaw.encode(u.audio) for u in train_set]
    val_seqs = [mulaw.encode(u.audio) for u in val_set]
    bigram = bigram_bits_per_sample(train_seqs, val_seqs)
    trigram = trigram_bits_per_sample(train_seqs, val_seqs)
    model = checkpoint.build_model(checkpoint.load(demo_run / "checkpoints" / "last.pt"))
    wavenet = evaluate(model, val_set, batch=8, chunk=16384)["bits_per_sample"]
    print(
        f"held-out bits/sample: wavenet {wavenet:.3f}, trigram {trigram:.3f}, bigram {bigram:.3f}"
    )
    assert 4.9 < bigram < 5.4 and trigram < bigram  # the reference points of this split
    assert wavenet < trigram - 0.15
