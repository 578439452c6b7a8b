"""The log-mel convention of wavenet.model.features (see its module docstring)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from wavenet.model.features import MelConfig, log_mel


def test_log_mel_frames_describe_whole_hops():
    cfg = MelConfig(n_mels=20, n_fft=256, win_length=256, hop_length=64, upsample=[8, 8])
    torch.manual_seed(0)
    audio = torch.randn(1000) * 0.1
    mel = log_mel(audio, 16000, cfg)
    assert mel.shape == (20, 1000 // 64)
    # A batch gives the rows' own spectra, and a clip cut at a hop boundary gives the same
    # frames away from its end (the analysis window reaches (n_fft - hop) / 2 past a hop).
    both = log_mel(torch.stack([audio, audio.flip(0)]), 16000, cfg)
    torch.testing.assert_close(both[0], mel)
    cut = log_mel(audio[:640], 16000, cfg)
    torch.testing.assert_close(cut[:, :8], mel[:, :8], atol=1e-4, rtol=1e-4)
    assert log_mel(torch.zeros(640), 16000, cfg).max() == pytest.approx(-11.5129, abs=1e-3)
    with pytest.raises(ValueError, match="upsample"):
        MelConfig(n_mels=20, hop_length=200, upsample=[16, 16])


# The convention written out independently, with numpy, from the formulas (Slaney's Auditory
# Toolbox mel scale and area normalisation, as librosa and torchaudio's "slaney" options).
SR = 16000
CFG = MelConfig(n_mels=40, n_fft=512, win_length=400, hop_length=160, upsample=[10, 16])


def slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Hz -> Slaney mel: linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + 27.0 * np.log(np.maximum(hz, 1e-10) / 1000.0) / np.log(6.4)
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, log_part)


def slaney_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0)
    return np.where(mel < 15.0, 200.0 * mel / 3.0, log_part)


def slaney_filterbank(cfg: MelConfig, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_fft // 2 + 1, n_mels) triangles between mel-spaced edges, each scaled by
    2 / (its upper edge - its lower edge) in Hz; and the bands' centre frequencies."""
    fmax = cfg.fmax or sr / 2
    edges = slaney_hz(np.linspace(slaney_mel(cfg.fmin), slaney_mel(fmax), cfg.n_mels + 2))
    bins = np.arange(cfg.n_fft // 2 + 1) * sr / cfg.n_fft
    fb = np.zeros((len(bins), cfg.n_mels))
    for m in range(cfg.n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising, falling = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
        fb[:, m] = np.maximum(0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return fb, edges[1:-1]


def reference_log_mel(audio: np.ndarray, cfg: MelConfig, sr: int) -> np.ndarray:
    """Frame i: a periodic Hann window of win_length (centred in n_fft) over the audio,
    reflect-padded by (n_fft - hop) / 2, from sample i * hop - (n_fft - hop) / 2; magnitude
    spectrum (power 1); Slaney mel; log of max(., 1e-5). (n_mels, samples // hop)."""
    hop, n_fft = cfg.hop_length, cfg.n_fft
    audio = audio[: len(audio) // hop * hop].astype(np.float64)
    left = (n_fft - hop) // 2
    padded = np.pad(audio, (left, n_fft - hop - left), mode="reflect")
    n = np.arange(cfg.win_length)
    window = np.zeros(n_fft)
    start = (n_fft - cfg.win_length) // 2
    window[start : start + cfg.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)
    frames = np.stack(
        [padded[i * hop : i * hop + n_fft] * window for i in range(len(audio) // hop)]
    )
    magnitude = np.abs(np.fft.rfft(frames, axis=1))  # (frames, bins)
    fb, _ = slaney_filterbank(cfg, sr)
    return np.log(np.maximum(magnitude @ fb, 1e-5)).T


def test_log_mel_equals_the_convention_computed_independently(demo_root):
    """Real speech through log_mel and through the formulas above agree: another power, the
    HTK mel scale, no Slaney normalisation or another window alignment would not."""
    audio, rate = sf.read(sorted((demo_root / "wavs").glob("*.flac"))[0], dtype="float32")
    got = log_mel(torch.from_numpy(audio), rate, CFG).double().numpy()
    expected = reference_log_mel(audio, CFG, rate)
    assert got.shape == expected.shape == (40, len(audio) // 160)
    np.testing.assert_allclose(got, expected, atol=2e-3, rtol=0)


def test_a_tone_lands_in_the_band_around_its_frequency():
    _, centres = slaney_filterbank(CFG, SR)
    for hz in (300.0, 1000.0, 3000.0):
        t = np.arange(SR // 2) / SR
        mel = log_mel(torch.from_numpy(0.5 * np.sin(2 * np.pi * hz * t)).float(), SR, CFG)
        assert int(mel.mean(dim=1).argmax()) == int(np.abs(centres - hz).argmin()), hz


def test_frame_i_describes_samples_i_hop_to_the_next_hop():
    """A click in the middle of hop 7 is loudest in frame 7 (windows are centred on their hop),
    and the frames before and after it see it equally."""
    hop = CFG.hop_length
    audio = torch.zeros(20 * hop)
    audio[7 * hop + hop // 2] = 1.0
    energy = log_mel(audio, SR, CFG).exp().sum(dim=0)
    assert int(energy.argmax()) == 7
    assert energy[6].item() == pytest.approx(energy[8].item(), rel=1e-4)
    assert log_mel(torch.zeros(20 * hop + hop - 1), SR, CFG).shape == (40, 20)  # whole hops
