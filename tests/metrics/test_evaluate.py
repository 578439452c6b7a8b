"""wavenet.metrics.evaluate: exact whole-file bits/sample, chunked and batched (the command
line: cli/test_evaluate.py)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from builders import COND_MEL, TINY_ARCH, conditioned_model, random_model

from wavenet import checkpoint, mulaw
from wavenet.data.dataset import Utterance, load_dataset, split_by_file
from wavenet.metrics.evaluate import chunk_windows, evaluate
from wavenet.model.features import log_mel, pad_frames, usable_samples
from wavenet.model.network import WaveNet

TWO_BLOCKS_K3 = {**TINY_ARCH, "blocks": 2, "layers_per_block": 5, "kernel_size": 3}  # field 125


@pytest.fixture(scope="module")
def demo(demo_root) -> list[Utterance]:
    """Every demo utterance at 16 kHz."""
    return load_dataset(demo_root, 16000).utterances


@pytest.fixture(scope="module")
def long_utterance(demo) -> Utterance:
    """About 10 s of real speech: the first demo files end to end, as one file."""
    audio = torch.cat([u.audio for u in demo[:4]])
    assert 8 * 16000 < len(audio) < 14 * 16000
    return Utterance("long.flac", "", audio)


def whole_file_bits(model: WaveNet, audio: torch.Tensor) -> float:
    """The definition: one forward pass over the file, positions 1.. scored, in bits/sample."""
    seq = mulaw.encode(audio, model.config.classes)
    with torch.no_grad():
        logits = model(seq[None])[0, :, 1:].t()
    nll = F.cross_entropy(logits, seq[1:], reduction="none").double().sum().item()
    return nll / (len(seq) - 1) / math.log(2)


def test_chunk_windows_cover_every_position_once():
    windows = chunk_windows(2500, 1000, 64)
    assert windows == [(0, 1, 1001), (937, 1001, 2001), (1937, 2001, 2500)]
    assert chunk_windows(1, 1000, 64) == []  # a single sample has nothing to predict
    assert chunk_windows(30, 10, 64) == [(0, 1, 11), (0, 11, 21), (0, 21, 30)]


@pytest.mark.parametrize("config", [TINY_ARCH, TWO_BLOCKS_K3], ids=["tiny", "2blocks_k3"])
def test_chunked_equals_one_pass_over_a_long_file(config, long_utterance, monkeypatch):
    # float64 makes "equal" sharp: a chunk one sample short of context is caught below.
    model = random_model(config, torch.float64)
    utterance = Utterance("part.flac", "", long_utterance.audio[: 6 * 16000])
    reference = whole_file_bits(model, utterance.audio)
    chunked = evaluate(model, [utterance], batch=8, chunk=500)
    assert chunked["samples"] == len(utterance.audio) - 1
    assert chunked["bits_per_sample"] == pytest.approx(reference, rel=1e-13)

    # The check can fail: one sample less of left context per chunk changes the result.
    short = model.receptive_field - 1
    monkeypatch.setattr(WaveNet, "receptive_field", property(lambda self: short))
    wrong = evaluate(model, [utterance], batch=8, chunk=500)["bits_per_sample"]
    print(f"one sample short of context: off by {abs(wrong - reference) / reference:.1e}")
    assert abs(wrong - reference) > 1e-12 * reference


@pytest.mark.parametrize(
    "speaker,mel", [(True, False), (False, True), (True, True)], ids=["speaker", "mel", "both"]
)
def test_chunked_equals_one_pass_for_conditioned_models(speaker, mel, demo):
    """Speaker and mel conditioning, chunked and batched: each file's bits equal one forward
    pass over the whole file with its speaker and its whole log-mel (float64, so exactly)."""
    model = conditioned_model(speaker, mel).double()
    table = ["allison", "carlo", "june"]  # the model's 3 speakers
    files = [
        Utterance(u.name, u.speaker, u.audio[: 12000 - 7 * i])  # 0.75 s, cut mid-hop
        for i, u in enumerate([u for u in demo if u.speaker in table][::7][:4])
    ]
    assert len({u.speaker for u in files}) >= 2
    nll, count, per_speaker = 0.0, 0, {}
    for u in files:
        audio = u.audio[: usable_samples(len(u.audio), COND_MEL)] if mel else u.audio
        seq = mulaw.encode(audio)
        frames = pad_frames(log_mel(audio, 16000, COND_MEL), COND_MEL.context).double()
        with torch.no_grad():
            logits = model(
                seq[None],
                torch.tensor([table.index(u.speaker)]) if speaker else None,
                frames[None] if mel else None,
            )[0, :, 1:]
        file_nll = F.cross_entropy(logits.t(), seq[1:], reduction="sum").item()
        nll, count = nll + file_nll, count + len(seq) - 1
        s = per_speaker.setdefault(u.speaker, [0.0, 0])
        s[0], s[1] = s[0] + file_nll, s[1] + len(seq) - 1
    chunked = evaluate(model, files, batch=3, chunk=500, speakers=table, sample_rate=16000)
    assert chunked["samples"] == count
    assert chunked["bits_per_sample"] == pytest.approx(nll / count / math.log(2), rel=1e-12)
    assert chunked["per_speaker"] == pytest.approx(
        {k: v[0] / v[1] / math.log(2) for k, v in per_speaker.items()}, rel=1e-12
    )


def test_chunked_equals_one_pass_in_float32(long_utterance):
    model = random_model(TINY_ARCH)
    reference = whole_file_bits(model, long_utterance.audio)
    for chunk in (1000, 10**7):
        result = evaluate(model, [long_utterance], batch=8, chunk=chunk)
        assert result["bits_per_sample"] == pytest.approx(reference, rel=1e-6)


def test_batched_equals_file_by_file(demo):
    # The two shortest files of each speaker (0.5 to 1.5 s); chunk 5000 splits them unevenly,
    # so batches mix chunks of different files and lengths, right-padded and masked.
    files = []
    for speaker in sorted({u.speaker for u in demo}):
        files += sorted((u for u in demo if u.speaker == speaker), key=lambda u: len(u.audio))[:2]
    model = random_model(TINY_ARCH)
    batched = evaluate(model, files, batch=4, chunk=5000)
    alone = [evaluate(model, [u], batch=1, chunk=5000) for u in files]

    assert batched["files"] == len(files)
    assert (
        batched["samples"]
        == sum(r["samples"] for r in alone)
        == sum(len(u.audio) - 1 for u in files)
    )
    total = sum(r["bits_per_sample"] * r["samples"] for r in alone)
    assert batched["bits_per_sample"] == pytest.approx(total / batched["samples"], rel=1e-6)
    assert sorted(batched["per_speaker"]) == sorted({u.speaker for u in files})
    for speaker, bits in batched["per_speaker"].items():
        mine = [r for r, u in zip(alone, files, strict=True) if u.speaker == speaker]
        expected = sum(r["bits_per_sample"] * r["samples"] for r in mine) / sum(
            r["samples"] for r in mine
        )
        assert bits == pytest.approx(expected, rel=1e-6)


def test_result_keys_and_reference_points(long_utterance):
    result = evaluate(random_model(TINY_ARCH), [long_utterance], chunk=4000)
    assert result["uniform_bits_per_sample"] == 8.0
    assert result["per_speaker"] == {"": result["bits_per_sample"]}
    assert result["files"] == 1
    assert 6.0 < result["unigram_bits_per_sample"] < 8.0
    with pytest.raises(ValueError, match="chunk"):
        evaluate(random_model(TINY_ARCH), [long_utterance], chunk=0)
    with pytest.raises(ValueError, match="nothing to score"):
        evaluate(random_model(TINY_ARCH), [Utterance("one.wav", "", torch.zeros(1))])


def test_trained_tiny_model_beats_the_unigram_entropy(demo_run, demo):
    # Scored on the files training held out (scoring all 265 s takes 20 s on one thread).
    model = checkpoint.build_model(checkpoint.load(demo_run / "checkpoints" / "last.pt"))
    _, held_out = split_by_file(demo, 0.1)
    result = evaluate(model, held_out, batch=8, chunk=16384)
    print(json.dumps(result))
    assert result["files"] == len(held_out) >= 5
    assert result["bits_per_sample"] < result["unigram_bits_per_sample"] < 8.0
    assert all(bits < result["unigram_bits_per_sample"] for bits in result["per_speaker"].values())
