"""Tests for wavenet.data.dataset: reading, trimming, caching and splitting audio files (the
layouts that find them: test_layouts.py; crops: test_crops.py)."""

import hashlib
import io
import json
import os
import random
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from builders import SR, metadata_rows, sine, write_audio

from wavenet.data import store
from wavenet.data.dataset import (
    Utterance,
    load_dataset,
    read_audio,
    split_by_file,
    trim_silence,
)
from wavenet.data.layouts import find_audio
from wavenet.errors import DataError


def peak_hz(audio: torch.Tensor, sr: int) -> float:
    spectrum = torch.fft.rfft(audio.double()).abs()
    return float(spectrum.argmax()) * sr / audio.numel()


@pytest.fixture
def real_files(demo_root: Path, tmp_path: Path) -> Path:
    """A folder with copies of three real demo files (two speakers), no metadata."""
    root = tmp_path / "real"
    rows = metadata_rows(demo_root)
    for row in (rows[0], rows[1], rows[-1]):
        (root / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo_root / row["file"], root / row["file"])
    return root


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ---------------------------------------------------------------------------- read_audio


def test_read_audio_downmixes_stereo_to_channel_mean(tmp_path: Path) -> None:
    left, right = sine(440, 0.2), sine(1000, 0.2, amp=0.3)
    path = write_audio(tmp_path / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    audio = read_audio(path, SR)
    assert audio.dtype == torch.float32 and audio.shape == (len(left),)
    torch.testing.assert_close(audio, torch.from_numpy((left + right) / 2), atol=1e-7, rtol=0)


@pytest.mark.parametrize("file_rate", [8000, 44100])
def test_read_audio_resamples_and_keeps_frequency(tmp_path: Path, file_rate: int) -> None:
    seconds, freq = 1.0, 1000.0
    path = write_audio(tmp_path / "tone.wav", sine(freq, seconds, sr=file_rate), sr=file_rate)
    audio = read_audio(path, SR)
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert abs(audio.numel() - seconds * SR) <= 1
    assert peak_hz(audio, SR) == pytest.approx(freq, abs=2.0)
    # the tone's amplitude survives (not attenuated or amplified by the resampler)
    assert float(audio[1000:-1000].abs().max()) == pytest.approx(0.5, abs=0.02)


def test_resampling_is_within_half_a_16_bit_step_of_float64(tmp_path: Path, demo_root) -> None:
    """Speech at 22,050 and 44,100 Hz read at 16 kHz matches torchaudio's resampler run in
    float64 on the same samples to within half a 16-bit step, whether the rate's kernel is new
    or reused (files of both rates read in turn)."""
    audio, rate = sf.read(sorted((demo_root / "wavs").glob("*.flac"))[0], dtype="float32")
    exact = {}
    for file_rate in (22050, 44100):
        file = torchaudio.functional.resample(torch.from_numpy(audio).double(), rate, file_rate)
        path = write_audio(
            tmp_path / f"{file_rate}.wav", file.clamp(-1, 1).numpy(), sr=file_rate, subtype="FLOAT"
        )
        samples = torch.from_numpy(sf.read(path)[0])
        exact[path] = torchaudio.functional.resample(samples, file_rate, SR).clamp(-1, 1)
    for path in [*exact, *exact]:
        got = read_audio(path, SR)
        assert got.shape == exact[path].shape, path.name
        assert float((got.double() - exact[path]).abs().max()) < 0.5 / 32768, path.name


@pytest.mark.parametrize(
    ("suffix", "subtype", "atol"),
    [
        (".wav", "PCM_24", 1e-6),
        (".wav", "FLOAT", 0.0),
        (".wav", "PCM_U8", 1e-2),
        (".flac", "PCM_24", 1e-6),
    ],
)
def test_read_audio_sample_formats(tmp_path: Path, suffix: str, subtype: str, atol: float) -> None:
    tone = sine(440, 0.1)
    path = write_audio(tmp_path / f"tone{suffix}", tone, subtype=subtype)
    audio = read_audio(path, SR)
    assert audio.dtype == torch.float32
    torch.testing.assert_close(audio, torch.from_numpy(tone), atol=atol, rtol=0)


def test_read_audio_ogg_vorbis(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.ogg", sine(440, 0.5), subtype="VORBIS")
    audio = read_audio(path, SR)
    assert audio.numel() == 8000  # lossy, but the length and the pitch survive
    assert peak_hz(audio, SR) == pytest.approx(440, abs=2.0)


def test_read_audio_clips_beyond_full_scale(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "hot.wav", 1.5 * sine(440, 0.1, amp=1.0), subtype="FLOAT")
    audio = read_audio(path, SR)
    assert float(audio.abs().max()) == 1.0


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(4096))


def _empty_file(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("this is not audio\nsecond line\n")


def _no_frames(path: Path) -> None:
    sf.write(path, np.zeros((0, 1), dtype=np.float32), SR, subtype="PCM_16")


def _truncated_header(path: Path) -> None:
    buf = io.BytesIO()
    sf.write(buf, sine(440, 0.1), SR, format="WAV")
    path.write_bytes(buf.getvalue()[:20])


def _nan(path: Path) -> None:
    tone = sine(440, 0.1)
    tone[100] = np.nan
    sf.write(path, tone, SR, subtype="FLOAT")


def _inf(path: Path) -> None:
    tone = sine(440, 0.1)
    tone[5] = np.inf
    sf.write(path, tone, SR, subtype="FLOAT")


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("garbage.flac", _garbage, "cannot read audio"),
        ("empty.wav", _empty_file, "cannot read audio"),
        ("text.wav", _text, "cannot read audio"),
        ("truncated.wav", _truncated_header, "cannot read audio"),
        ("no_frames.wav", _no_frames, "no audio samples"),
        ("nan.wav", _nan, "NaN"),
        ("inf.wav", _inf, "infinite"),
    ],
)
def test_read_audio_bad_files_raise_one_line_data_error(
    tmp_path: Path, name: str, make, reason: str
) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match=reason) as err:
        read_audio(path, SR)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


# ---------------------------------------------------------------------------- trim_silence


def test_trim_silence_removes_edges_and_keeps_middle() -> None:
    voice = torch.from_numpy(sine(440, 2000 / SR, amp=0.8))
    audio = torch.cat([torch.zeros(1000), voice, torch.zeros(1500)])
    trimmed = trim_silence(audio, -40.0, frame=256)
    # frame-granular: from the frame holding sample 1000 to the end of the frame holding 2999
    torch.testing.assert_close(trimmed, audio[768:3072])
    assert trimmed.abs().sum() == pytest.approx(float(voice.abs().sum()), rel=1e-6)


def test_trim_silence_threshold_is_relative_to_peak() -> None:
    voice = torch.from_numpy(sine(440, 1536 / SR, amp=0.8))  # whole 256-sample frames
    hiss = 0.8 * 10 ** (-50 / 20) * torch.ones(1024)  # -50 dB below the peak
    audio = torch.cat([hiss, voice, hiss])
    assert trim_silence(audio, -40.0).numel() == voice.numel()  # hiss under -40 dB: trimmed
    assert trim_silence(audio, -60.0).numel() == audio.numel()  # hiss above -60 dB: kept


def test_trim_silence_all_silent_is_empty() -> None:
    assert trim_silence(torch.zeros(5000), -40.0).numel() == 0
    assert trim_silence(torch.zeros(0), -40.0).numel() == 0


# ---------------------------------------------------------------------------- load_dataset


def test_load_dataset_skips_bad_file_and_loads_good_ones(real_files: Path, tmp_path: Path) -> None:
    _text(real_files / "broken.wav")
    write_audio(real_files / "extra" / "tone.flac", sine(440, 0.25, sr=22050), sr=22050)
    ds = load_dataset(real_files, cache_dir=tmp_path / "cache")
    names = [u.name for u in ds.utterances]
    assert names == sorted(n for n, _ in find_audio(real_files) if n != "broken.wav")
    assert len(ds.skipped) == 1
    name, reason = ds.skipped[0]
    assert name == "broken.wav" and "cannot read audio" in reason
    assert ds.sample_rate == SR
    tone = next(u for u in ds.utterances if u.name == "extra/tone.flac")
    assert abs(tone.audio.numel() - 4000) <= 1  # resampled from 22.05 kHz
    for u in ds.utterances:
        assert u.audio.dtype == torch.float32 and u.audio.dim() == 1 and u.speaker == ""
        assert float(u.audio.abs().max()) <= 1.0


def test_load_dataset_skips_missing_metadata_file(tmp_path: Path) -> None:
    write_audio(tmp_path / "wavs" / "a.flac", sine(440, 0.1))
    (tmp_path / "metadata.csv").write_text("file,speaker\nwavs/gone.flac,x\nwavs/a.flac,y\n")
    ds = load_dataset(tmp_path, cache_dir=tmp_path.parent / "cache")
    assert [(u.name, u.speaker) for u in ds.utterances] == [("wavs/a.flac", "y")]
    assert ds.skipped == [("wavs/gone.flac", "file not found")]


def test_load_dataset_min_samples_and_silence_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_audio(root / "long.wav", sine(440, 0.1))
    write_audio(root / "short.wav", sine(440, 0.001))
    write_audio(root / "silent.wav", np.zeros(1600, dtype=np.float32))
    ds = load_dataset(root, trim_db=-40.0, min_samples=800, cache_dir=tmp_path / "cache")
    assert [u.name for u in ds.utterances] == ["long.wav"]
    reasons = dict(ds.skipped)
    assert set(reasons) == {"short.wav", "silent.wav"}
    assert "too short" in reasons["short.wav"] and "silent" in reasons["silent.wav"]


def test_load_dataset_nothing_usable_names_root_and_reasons(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(5):
        _text(root / f"bad{i}.wav")
    with pytest.raises(DataError) as err:
        load_dataset(root, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert str(root) in message and "bad0.wav" in message and "2 more" in message
    assert "\n" not in message


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the store decodes from now on (in this process: small sets use no pool)."""
    calls: list[str] = []
    real = store.read_audio

    def counting(path, sample_rate):
        calls.append(str(path))
        return real(path, sample_rate)

    monkeypatch.setattr(store, "read_audio", counting)
    return calls


def test_load_dataset_store_avoids_second_decode(
    real_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    calls = _count_reads(monkeypatch)
    first = load_dataset(real_files, cache_dir=cache)
    assert len(calls) == len(first.utterances) == 3
    second = load_dataset(real_files, cache_dir=cache)
    assert len(calls) == 3  # nothing decoded again
    assert [u.name for u in second.utterances] == [u.name for u in first.utterances]
    for a, b in zip(first.utterances, second.utterances, strict=True):
        # 16-bit files at their own rate are kept exactly
        assert torch.equal(a.audio, b.audio)
        assert torch.equal(b.audio, read_audio(real_files / b.name, SR))
    assert second.skipped == first.skipped and second.sample_rate == first.sample_rate
    assert not list(cache.rglob("*.tmp"))  # the atomic writes left no temporary file behind


def test_load_dataset_default_cache_dir_from_env(
    real_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("WAVENET_CACHE_DIR", str(cache))
    load_dataset(real_files)
    assert len(list(cache.glob("store-*/audio.pcm"))) == 1


def test_load_dataset_store_per_rate_and_trim_and_only_changed_files_decoded_again(
    real_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    calls = _count_reads(monkeypatch)
    n = len(find_audio(real_files))
    load_dataset(real_files, cache_dir=cache)
    assert len(calls) == n
    load_dataset(real_files, cache_dir=cache, min_samples=30000)  # the same store
    assert len(calls) == n

    at_8k = load_dataset(real_files, sample_rate=8000, cache_dir=cache)
    assert len(calls) == 2 * n and at_8k.sample_rate == 8000
    load_dataset(real_files, trim_db=-40.0, cache_dir=cache)
    assert len(calls) == 3 * n
    assert len(list(cache.glob("store-*"))) == 3

    touched = next(real_files.rglob("*.flac"))
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    load_dataset(real_files, cache_dir=cache)
    assert calls[3 * n :] == [str(touched)]  # only the changed file


def test_load_dataset_sees_a_rewritten_file(real_files: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = load_dataset(real_files, cache_dir=cache)
    changed = before.utterances[1]
    # Same name, new content and length (the mtime may not move within its resolution).
    write_audio(real_files / changed.name, sine(300, 0.3))
    after = load_dataset(real_files, cache_dir=cache)
    new = next(u for u in after.utterances if u.name == changed.name)
    assert torch.equal(new.audio, read_audio(real_files / changed.name, SR))
    assert new.samples == round(0.3 * SR)
    for a, b in zip(before.utterances, after.utterances, strict=True):
        if a.name != changed.name:
            assert torch.equal(a.audio, b.audio)


def test_load_dataset_rebuilds_a_foreign_or_corrupt_journal(
    real_files: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(real_files, cache_dir=cache)
    (journal,) = cache.glob("store-*/journal.jsonl")
    journal.write_bytes(b"definitely not a journal")
    second = load_dataset(real_files, cache_dir=cache)
    for a, b in zip(first.utterances, second.utterances, strict=True):
        assert torch.equal(a.audio, b.audio)
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0])["version"] == store.STORE_VERSION and len(lines) == 1 + 3


def test_load_dataset_read_only_root_is_never_written(real_files: Path, tmp_path: Path) -> None:
    before = tree_snapshot(real_files)
    paths = [real_files, *real_files.rglob("*")]
    for p in paths:
        p.chmod(stat.S_IRUSR | stat.S_IXUSR if p.is_dir() else stat.S_IRUSR)
    try:
        ds = load_dataset(real_files, trim_db=-40.0, cache_dir=tmp_path / "cache")
    finally:
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert len(ds.utterances) == 3
    assert tree_snapshot(real_files) == before


def test_load_dataset_progress_bar(real_files: Path, tmp_path: Path, capsys) -> None:
    load_dataset(real_files, cache_dir=tmp_path / "cache", progress=True)
    assert "file" in capsys.readouterr().err


# ---------------------------------------------------------------------------- split_by_file


def names(utterances: list[Utterance]) -> list[str]:
    return [u.name for u in utterances]


def _utterances(n: int, samples: int = 10) -> list[Utterance]:
    return [Utterance(f"wavs/{i:03d}.flac", "", torch.zeros(samples)) for i in range(n)]


def test_split_by_file_deterministic_disjoint_and_order_independent() -> None:
    utts = _utterances(40)
    train, val = split_by_file(utts, 0.25)
    assert len(val) == 10 and len(train) == 30
    assert {u.name for u in train}.isdisjoint(u.name for u in val)
    assert {u.name for u in train} | {u.name for u in val} == {u.name for u in utts}
    # each part keeps the input order
    assert [u.name for u in val] == sorted(u.name for u in val)
    assert [u.name for u in train] == sorted(u.name for u in train)

    shuffled = utts[:]
    random.Random(1).shuffle(shuffled)
    train2, val2 = split_by_file(shuffled, 0.25)
    assert {u.name for u in val2} == {u.name for u in val}
    assert [u.name for u in val2] == [u.name for u in shuffled if u.name in {v.name for v in val}]
    again = split_by_file(utts, 0.25)
    assert (names(again[0]), names(again[1])) == (names(train), names(val))

    # ranking really is by sha1 of the name
    ranked = sorted(utts, key=lambda u: hashlib.sha1(u.name.encode()).hexdigest())
    assert {u.name for u in val} == {u.name for u in ranked[:10]}


def test_split_by_file_sizes() -> None:
    assert len(split_by_file(_utterances(50), 0.14)[1]) == 7  # 0.14 * 50 is 7.000000000000001
    assert len(split_by_file(_utterances(20), 0.01)[1]) == 1  # at least one
    assert len(split_by_file(_utterances(20), 1e-12)[1]) == 1
    train, val = split_by_file(_utterances(2), 0.9)
    assert len(train) == 1 and len(val) == 1  # never all files
    train, val = split_by_file(_utterances(1), 0.5)
    assert len(train) == 1 and val == []
    train, val = split_by_file(_utterances(5), 0.0)
    assert names(train) == names(_utterances(5)) and val == []


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_by_file_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_file(_utterances(4), fraction)
