"""The training loop's bigram baseline: counted in chunks from the store, equal to the
in-memory reference (wavenet.metrics.baseline), and remembered in the store."""

import math
from pathlib import Path

import pytest
import torch

from wavenet import mulaw
from wavenet.data.dataset import Utterance, load_dataset, split_by_file
from wavenet.metrics.baseline import bigram_bits_per_sample
from wavenet.training import loop


def reference(train, val, codec: mulaw.Codec, preemphasis: float) -> float:
    """What the loop computed before the store: every utterance encoded in memory at once."""
    mu = codec if codec.kind == "mulaw" else mulaw.Codec()

    def encode(utts):
        return [mu.encode(mulaw.preemphasis(u.audio, preemphasis)) for u in utts]

    val_codes = encode(val)
    bits = bigram_bits_per_sample(encode(train), val_codes, mu.classes)
    if codec.kind != "mulaw":
        bits += mulaw.mean_log2_width(mu, torch.cat([s[1:] for s in val_codes]))
    return bits


@pytest.mark.parametrize(
    ("codec", "preemphasis"),
    [(mulaw.Codec(), 0.0), (mulaw.Codec("mulaw", 64), 0.85), (mulaw.LINEAR16, 0.5)],
)
def test_bigram_in_chunks_equals_the_reference(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec, preemphasis
) -> None:
    utterances = load_dataset(demo_root, cache_dir=tmp_path / "cache").utterances[:12]
    train, val = split_by_file(utterances, 0.25)
    want = reference(train, val, codec, preemphasis)
    # Chunks of a few files (demo files are 1-8 s): pairs and pre-emphasis must stop at the
    # files' boundaries inside a chunk.
    monkeypatch.setattr(loop, "CHUNK_SAMPLES", 150_000)
    assert loop.bigram_baseline(train, val, codec, preemphasis) == pytest.approx(want, rel=1e-12)
    in_memory = [[Utterance(u.name, u.speaker, u.audio) for u in s] for s in (train, val)]
    assert loop.bigram_baseline(*in_memory, codec, preemphasis) == pytest.approx(want, rel=1e-12)


def test_bigram_is_remembered_in_the_store(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    utterances = load_dataset(demo_root, cache_dir=tmp_path / "cache").utterances[:6]
    train, val = split_by_file(utterances, 0.3)
    first = loop.bigram_baseline(train, val, mulaw.Codec(), 0.0)

    def fail(*args, **kwargs):
        raise AssertionError("counted again although the store remembers the figure")

    monkeypatch.setattr(loop, "bigram_counts", fail)
    assert loop.bigram_baseline(train, val, mulaw.Codec(), 0.0) == first
    with pytest.raises(AssertionError, match="counted again"):  # another split is counted
        loop.bigram_baseline(val, train, mulaw.Codec(), 0.0)


def test_the_bigram_is_add_alpha_transition_probabilities_worked_by_hand() -> None:
    """Train 0,1,0,1 over 2 classes, alpha 0.5: rows (0.5, 2.5) and (1.5, 0.5), so
    P(1|0) = 5/6 and P(1|1) = 1/4; test 0,1,1 costs the mean of their -log2."""
    want = -(math.log2(5 / 6) + math.log2(1 / 4)) / 2
    bits = bigram_bits_per_sample([torch.tensor([0, 1, 0, 1])], [torch.tensor([0, 1, 1])], 2, 0.5)
    assert bits == pytest.approx(want, abs=1e-12)
