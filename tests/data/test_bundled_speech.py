"""The speech the tests and the demo run on: data/demo as listed in its metadata, an unchanged
copy of part of asterisk4, and the full asterisk4 set where ../shared holds it."""

from pathlib import Path

import pytest
from builders import SR, metadata_rows

from wavenet.data.dataset import load_dataset
from wavenet.data.layouts import find_audio


def test_demo_subset_matches_its_metadata(demo_root: Path, tmp_path: Path) -> None:
    rows = metadata_rows(demo_root)
    ds = load_dataset(demo_root, sample_rate=SR, cache_dir=tmp_path / "cache")
    assert ds.skipped == []
    assert [(u.name, u.speaker) for u in ds.utterances] == [(r["file"], r["speaker"]) for r in rows]
    assert {u.speaker for u in ds.utterances} == {"allison", "june", "carlo", "ivrvoice_ru"}
    for u, row in zip(ds.utterances, rows, strict=True):
        assert u.audio.numel() / SR == pytest.approx(float(row["duration"]), abs=1e-3), u.name
        assert float(u.audio.abs().max()) > 0.05, f"{u.name} is nearly silent"
    seconds = sum(u.audio.numel() for u in ds.utterances) / SR
    assert 200 < seconds < 330  # about a minute per speaker


def test_demo_subset_is_an_unchanged_copy_of_asterisk4(
    demo_root: Path, asterisk_root: Path
) -> None:
    full = {r["file"]: r for r in metadata_rows(asterisk_root)}
    for row in metadata_rows(demo_root):
        assert full[row["file"]] == row
        demo_bytes = (demo_root / row["file"]).read_bytes()
        assert demo_bytes == (asterisk_root / row["file"]).read_bytes(), row["file"]
    assert (asterisk_root / "CREDITS.md").read_text() in (demo_root / "CREDITS.md").read_text()


def test_asterisk4_layout_is_found(asterisk_root: Path) -> None:
    entries = find_audio(asterisk_root)
    assert len(entries) == len(metadata_rows(asterisk_root))
    assert all((asterisk_root / name).is_file() for name, _ in entries)
    assert {speaker for _, speaker in entries} == {"allison", "june", "carlo", "ivrvoice_ru"}
