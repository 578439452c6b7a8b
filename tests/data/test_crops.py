"""Tests for the crops training and validation draw (wavenet.data.dataset): CropSampler,
validation_batch, their mel frames and their shards across ranks."""

from pathlib import Path

import pytest
import torch
import torchaudio.functional as AF

from wavenet import mulaw
from wavenet.data.dataset import (
    Conditioning,
    CropSampler,
    Utterance,
    load_dataset,
    validation_batch,
)
from wavenet.model.features import MelConfig, log_mel, pad_frames, usable_samples


def _noise_utterances(lengths: list[int], seed: int = 0) -> list[Utterance]:
    g = torch.Generator().manual_seed(seed)
    return [
        Utterance(f"{i}.wav", "", (torch.rand(n, generator=g) * 2 - 1).float())
        for i, n in enumerate(lengths)
    ]


def test_crop_sampler_shapes_dtype_range_and_real_substrings() -> None:
    utts = _noise_utterances([3000, 1200, 5000])
    length = 1000
    sampler = CropSampler(utts, length, codec=256, seed=0)
    batch = sampler.draw(16).audio
    assert batch.shape == (16, length) and batch.dtype == torch.int64
    assert int(batch.min()) >= 0 and int(batch.max()) < 256
    windows = torch.cat([AF.mu_law_encoding(u.audio, 256).unfold(0, length, 1) for u in utts])
    for row in batch:
        assert (windows == row).all(dim=1).any(), "crop is not a window of any encoded file"


def test_crop_sampler_other_class_counts() -> None:
    batch = CropSampler(_noise_utterances([500]), 100, codec=16).draw(8).audio
    assert int(batch.min()) >= 0 and int(batch.max()) < 16


def test_crop_sampler_left_pads_short_files_with_silence() -> None:
    (utt,) = _noise_utterances([100])
    batch = CropSampler([utt], 300, codec=256).draw(4).audio
    assert batch.shape == (4, 300)
    expected = torch.cat([torch.full((200,), 128), AF.mu_law_encoding(utt.audio, 256)])
    assert (batch == expected).all()
    assert int(AF.mu_law_encoding(torch.zeros(1), 256)) == 128  # silence is classes // 2


def test_crop_sampler_covers_every_offset() -> None:
    ramp = Utterance("ramp.wav", "", torch.linspace(-0.9, 0.9, 10))
    first = CropSampler([ramp], 8, seed=0).draw(300).audio[:, 0]
    encoded = AF.mu_law_encoding(ramp.audio, 256)
    assert set(first.tolist()) == set(encoded[:3].tolist())  # offsets 0, 1 and 2, no more


def test_crop_sampler_picks_files_in_proportion_to_length() -> None:
    quiet = Utterance("quiet.wav", "", torch.full((1000,), -0.5))
    loud = Utterance("loud.wav", "", torch.full((9000,), 0.5))
    batch = CropSampler([quiet, loud], 1, seed=0).draw(4000).audio
    quiet_class = int(AF.mu_law_encoding(torch.tensor([-0.5]), 256))
    share = float((batch[:, 0] == quiet_class).double().mean())
    assert share == pytest.approx(0.1, abs=0.02)


def test_crop_sampler_state_dict_resumes_exactly(tmp_path: Path) -> None:
    utts = _noise_utterances([3000, 1200, 5000])
    sampler = CropSampler(utts, 500, seed=3)
    sampler.draw(4)
    path = tmp_path / "state.pt"
    torch.save(sampler.state_dict(), path)
    expected = [sampler.draw(4).audio for _ in range(3)]

    resumed = CropSampler(utts, 500, seed=999)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    for want in expected:
        assert torch.equal(resumed.draw(4).audio, want)

    # same seed, same stream; another seed, another stream
    a, b = CropSampler(utts, 500, seed=7), CropSampler(utts, 500, seed=7)
    assert torch.equal(a.draw(8).audio, b.draw(8).audio)
    assert not torch.equal(CropSampler(utts, 500, seed=8).draw(8).audio, a.draw(8).audio)


def test_crop_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        CropSampler([], 100)
    with pytest.raises(ValueError, match="length"):
        CropSampler(_noise_utterances([100]), 0)
    with pytest.raises(ValueError, match="batch"):
        CropSampler(_noise_utterances([100]), 10).draw(0)


def test_validation_batch_round_robin_windows() -> None:
    length = 100
    utts = _noise_utterances([250, 100, 30])
    enc = [AF.mu_law_encoding(u.audio, 256) for u in utts]
    crops = validation_batch(utts, length, max_crops=100).audio
    assert crops.shape == (4, length) and crops.dtype == torch.int64
    padded_short = torch.cat([torch.full((70,), 128), enc[2]])
    expected = torch.stack([enc[0][:100], enc[1], padded_short, enc[0][100:200]])
    assert torch.equal(crops, expected)
    assert torch.equal(validation_batch(utts, length, max_crops=100).audio, crops)  # deterministic

    limited = validation_batch(utts, length, max_crops=3).audio
    assert torch.equal(limited, expected[:3])  # every file contributes before any repeats


def test_validation_batch_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_crops"):
        validation_batch(_noise_utterances([100]), 10, max_crops=0)
    with pytest.raises(ValueError, match="empty"):
        validation_batch([], 10, max_crops=4)


MEL_CFG = MelConfig(
    n_mels=20, n_fft=256, win_length=256, hop_length=64, upsample=[8, 8], channels=8
)


def test_mel_crops_carry_the_frames_of_their_span(demo_root):
    utts = load_dataset(demo_root).utterances[:6]
    names = sorted({u.speaker for u in utts})
    cond = Conditioning(names, MEL_CFG, 16000)
    sampler = CropSampler(utts, 640, seed=3, cond=cond)
    batch = sampler.draw(12)
    frames = 640 // 64 + 2 * MEL_CFG.context
    assert batch.audio.shape == (12, 640) and batch.mel.shape == (12, 20, frames)
    padded = [pad_frames(log_mel(u.audio, 16000, MEL_CFG), MEL_CFG.context) for u in utts]
    for row in range(12):
        # Find the crop in its utterance: it starts on a hop and its frames are that span's.
        hits = []
        for i, u in enumerate(utts):
            enc = mulaw.encode(u.audio[: usable_samples(len(u.audio), MEL_CFG)], 256)
            for start in range(0, len(enc) - 640 + 1, 64):
                if torch.equal(enc[start : start + 640], batch.audio[row]):
                    hits.append((i, start))
        assert hits, "a crop must be a hop-aligned span of some utterance"
        i, start = hits[0]
        torch.testing.assert_close(batch.mel[row], padded[i][:, start // 64 : start // 64 + frames])
        assert batch.speaker[row] == cond.speakers.index(utts[i].speaker)
    # The sampler state resumes the same conditioned draws.
    state = sampler.state_dict()
    again = CropSampler(utts, 640, seed=0, cond=cond)
    again.load_state_dict(state)
    a, b = sampler.draw(4), again.draw(4)
    assert torch.equal(a.audio, b.audio) and torch.equal(a.mel, b.mel)
    with pytest.raises(ValueError, match="multiple of the mel hop"):
        CropSampler(utts, 650, cond=cond)


def test_validation_batch_windows_match_their_frames(demo_root):
    utts = load_dataset(demo_root).utterances[:3]
    cond = Conditioning(None, MEL_CFG, 16000)
    val = validation_batch(utts, 1280, 6, cond=cond)
    assert val.speaker is None and val.mel.shape == (6, 20, 1280 // 64 + 4)
    first = pad_frames(log_mel(utts[0].audio, 16000, MEL_CFG), MEL_CFG.context)
    torch.testing.assert_close(val.mel[0], first[:, :24])
    torch.testing.assert_close(val.mel[3], first[:, 20:44])  # the file's second window


def test_crop_shards_are_one_global_draw():
    gen = torch.Generator().manual_seed(0)
    utts = [
        Utterance(f"{i}.wav", "", torch.rand(n, generator=gen) * 2 - 1)
        for i, n in enumerate([900, 1500, 700])
    ]
    whole = CropSampler(utts, 200, seed=5)
    ranks = [CropSampler(utts, 200, seed=5, rank=k, world_size=3) for k in range(3)]
    for _ in range(2):
        expected = whole.draw(12).audio
        assert torch.equal(torch.cat([s.draw(4).audio for s in ranks]), expected)
    assert all(
        torch.equal(s.state_dict()["generator"], whole.state_dict()["generator"]) for s in ranks
    )
    with pytest.raises(ValueError, match="rank"):
        CropSampler(utts, 200, rank=2, world_size=2)
