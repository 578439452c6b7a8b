"""Tests for wavenet.data.layouts (dataset layouts: detection, file lists, speakers) and speaker
hours.

Every fixture is a small copy of real demo speech (data/demo/wavs/*.flac) arranged as the layout
expects, with .wav written where the real dataset ships .wav.
"""

import csv
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from builders import sine, write_audio

from wavenet.data.dataset import load_dataset, read_audio, speaker_hours
from wavenet.data.layouts import DUPLICATE, LAYOUTS, OUTSIDE, detect_layout, find_audio, screen
from wavenet.errors import DataError

SR = 16000  # the demo files' rate, so decoding keeps every sample


@pytest.fixture(scope="session")
def clips(demo_root: Path) -> list[Path]:
    """The six shortest demo files, shortest first, so every fixture decodes in milliseconds."""
    with open(demo_root / "metadata.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: float(row["duration"]))
    return [demo_root / row["file"] for row in rows[:6]]


def place(source: Path, target: Path) -> Path:
    """Copy a demo flac to target, converting it to 16-bit wav (lossless) when target is .wav."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".wav":
        audio, rate = sf.read(source, dtype="int16")
        sf.write(target, audio, rate, subtype="PCM_16")
    else:
        shutil.copy(source, target)
    return target


def hours(paths: list[Path]) -> float:
    return sum(sf.info(p).frames / sf.info(p).samplerate for p in paths) / 3600.0


# LJSpeech transcripts hold quotes that are text; a field that opens a quote it never closes
# would, read with CSV quoting, swallow the following lines into one field.
LJ_LINES = [
    'LJ001-0001|"Printing, in the only sense|"Printing, in the only sense',
    "",
    'LJ001-0002|He said "yes, and no.|"He said yes, and no.',
    "|a line without an id|a line without an id",
    "LJ001-0003|plain text|plain text",
    "LJ001-0004|listed, but its wav is missing|listed, but its wav is missing",
]
LJ_IDS = ["LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0004"]


@pytest.fixture
def ljspeech(tmp_path: Path, clips: list[Path]) -> Path:
    """LJSpeech: header-less metadata.csv (id|text|normalized) and wavs/<id>.wav, one missing."""
    root = tmp_path / "LJSpeech-1.1"
    for utterance, clip in zip(LJ_IDS[:3], clips[:3], strict=True):
        place(clip, root / "wavs" / f"{utterance}.wav")
    (root / "metadata.csv").write_text("\n".join(LJ_LINES) + "\n", encoding="utf-8")
    return root


# VCTK 0.92 names -> the demo clip each one holds.
VCTK_092 = {
    "p225/p225_001_mic1.flac": 0,
    "p225/p225_001_mic2.flac": 1,  # dropped: p225_001 has mic1
    "p225/p225_002_mic2.flac": 2,  # kept: p225_002 has no mic1
    "p226/p226_001_mic2.flac": 3,  # dropped: mic1 below
    "p226/p226_001_mic1.flac": 4,
}
VCTK_092_KEPT = [
    ("wav48_silence_trimmed/p225/p225_001_mic1.flac", "p225"),
    ("wav48_silence_trimmed/p225/p225_002_mic2.flac", "p225"),
    ("wav48_silence_trimmed/p226/p226_001_mic1.flac", "p226"),
]
VCTK_080 = {"p225/p225_001.wav": 0, "p226/p226_001.wav": 1, "p226/p226_002.wav": 2}


@pytest.fixture
def vctk(tmp_path: Path, clips: list[Path]) -> Path:
    """VCTK 0.92: wav48_silence_trimmed/pXXX/*_mic{1,2}.flac plus the release's text files."""
    root = tmp_path / "VCTK-Corpus-0.92"
    for name, k in VCTK_092.items():
        place(clips[k], root / "wav48_silence_trimmed" / name)
    (root / "wav48_silence_trimmed" / "log.txt").write_text("not a speaker folder")
    (root / "txt" / "p225").mkdir(parents=True)
    (root / "txt" / "p225" / "p225_001.txt").write_text("Please call Stella.")
    (root / "speaker-info.txt").write_text("ID AGE GENDER ACCENTS\n")
    return root


@pytest.fixture
def vctk_old(tmp_path: Path, clips: list[Path]) -> Path:
    """VCTK 0.80: wav48/pXXX/*.wav, one file per utterance."""
    root = tmp_path / "VCTK-Corpus"
    for name, k in VCTK_080.items():
        place(clips[k], root / "wav48" / name)
    return root


@pytest.fixture
def metadata_root(tmp_path: Path, clips: list[Path]) -> Path:
    """Our own layout: metadata.csv with a header (file,speaker,...) next to wavs/."""
    root = tmp_path / "ours"
    place(clips[0], root / "wavs" / "b.flac")
    place(clips[1], root / "wavs" / "a.flac")
    (root / "metadata.csv").write_text(
        "file,speaker,text\nwavs/b.flac,june,x|y\nwavs/a.flac,allison,z\n"
    )
    return root


@pytest.fixture
def folder(tmp_path: Path, clips: list[Path]) -> Path:
    """A plain tree of audio files, no metadata."""
    root = tmp_path / "plain"
    place(clips[0], root / "b.flac")
    place(clips[1], root / "sub" / "a.wav")
    return root


ROOTS = {
    "ljspeech": "ljspeech",
    "vctk": "vctk",
    "vctk_old": "vctk",
    "metadata_root": "metadata",
    "folder": "folder",
}


# ---------------------------------------------------------------------------- detection


@pytest.mark.parametrize("fixture,layout", ROOTS.items())
def test_detect_layout_and_auto_is_the_detected_layout(request, fixture: str, layout: str) -> None:
    root = request.getfixturevalue(fixture)
    assert detect_layout(root) == layout
    assert find_audio(root) == find_audio(root, "auto") == find_audio(root, layout)


def test_detect_layout_demo_set_with_header_and_wavs_is_metadata(demo_root: Path) -> None:
    # data/demo has metadata.csv and wavs/ like LJSpeech, but its header makes it ours.
    assert (demo_root / "wavs").is_dir()
    assert detect_layout(demo_root) == "metadata"


def test_detect_layout_pipes_without_wavs_dir_is_metadata(ljspeech: Path) -> None:
    shutil.rmtree(ljspeech / "wavs")
    assert detect_layout(ljspeech) == "metadata"


def test_detect_layout_headerless_csv_without_pipes_is_metadata(ljspeech: Path) -> None:
    (ljspeech / "metadata.csv").write_text("wavs/LJ001-0001.wav,someone\n")
    assert detect_layout(ljspeech) == "metadata"


def test_detect_layout_transcript_with_file_word_is_still_ljspeech(ljspeech: Path) -> None:
    (ljspeech / "metadata.csv").write_text("LJ001-0001|a, file, b|a, file, b\n")
    assert detect_layout(ljspeech) == "ljspeech"


def test_detect_layout_vctk_wins_over_other_files(vctk: Path) -> None:
    (vctk / "metadata.csv").write_text("file,speaker\nx.wav,a\n")
    assert detect_layout(vctk) == "vctk"


def test_detect_layout_missing_root_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        detect_layout(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)


# ---------------------------------------------------------------------------- ljspeech


def test_ljspeech_one_entry_per_id_line_despite_quotes(ljspeech: Path) -> None:
    assert find_audio(ljspeech) == [(f"wavs/{i}.wav", "") for i in LJ_IDS]


def test_ljspeech_with_crlf_and_bom(ljspeech: Path) -> None:
    text = "\ufeff" + "\r\n".join(LJ_LINES) + "\r\n"
    (ljspeech / "metadata.csv").write_bytes(text.encode("utf-8"))
    assert detect_layout(ljspeech) == "ljspeech"
    assert find_audio(ljspeech) == [(f"wavs/{i}.wav", "") for i in LJ_IDS]


def test_ljspeech_load_decodes_listed_wavs_and_reports_the_missing_one(
    ljspeech: Path, clips: list[Path]
) -> None:
    ds = load_dataset(ljspeech, SR)
    assert [u.name for u in ds.utterances] == [f"wavs/{i}.wav" for i in LJ_IDS[:3]]
    assert {u.speaker for u in ds.utterances} == {""}
    for u, clip in zip(ds.utterances, clips[:3], strict=True):
        assert torch.equal(u.audio, read_audio(clip, SR))  # 16-bit wav is lossless
    assert ds.skipped == [("wavs/LJ001-0004.wav", "file not found")]


# ---------------------------------------------------------------------------- vctk


def test_vctk_keeps_mic1_and_mic2_only_where_mic1_is_missing(vctk: Path) -> None:
    assert find_audio(vctk) == VCTK_092_KEPT


def test_vctk_old_release_keeps_every_wav_sorted(vctk_old: Path) -> None:
    assert find_audio(vctk_old) == [
        ("wav48/p225/p225_001.wav", "p225"),
        ("wav48/p226/p226_001.wav", "p226"),
        ("wav48/p226/p226_002.wav", "p226"),
    ]


def test_vctk_prefers_silence_trimmed_when_both_releases_are_there(
    vctk: Path, clips: list[Path]
) -> None:
    for name, k in VCTK_080.items():
        place(clips[k], vctk / "wav48" / name)
    assert find_audio(vctk) == VCTK_092_KEPT


def test_vctk_without_speaker_audio_names_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "vctk"
    (root / "wav48" / "p225").mkdir(parents=True)
    with pytest.raises(DataError, match="no audio files") as err:
        find_audio(root)
    assert str(root / "wav48") in str(err.value)


@pytest.mark.parametrize("fixture,names", [("vctk", VCTK_092), ("vctk_old", VCTK_080)])
def test_vctk_load_decodes_kept_files_with_folder_speakers(
    request, clips: list[Path], fixture: str, names: dict[str, int]
) -> None:
    root = request.getfixturevalue(fixture)
    ds = load_dataset(root, SR)
    assert ds.skipped == []
    assert [(u.name, u.speaker) for u in ds.utterances] == find_audio(root)
    audio_dir = root / ("wav48_silence_trimmed" if fixture == "vctk" else "wav48")
    for u in ds.utterances:
        relative = (root / u.name).relative_to(audio_dir).as_posix()
        assert u.speaker == relative.split("/")[0]
        assert torch.equal(u.audio, read_audio(clips[names[relative]], SR))


# ---------------------------------------------------------------------------- metadata, folder


def test_metadata_and_folder_load_with_their_speakers(metadata_root: Path, folder: Path) -> None:
    ours = load_dataset(metadata_root, SR)
    assert [(u.name, u.speaker) for u in ours.utterances] == [
        ("wavs/b.flac", "june"),
        ("wavs/a.flac", "allison"),
    ]
    plain = load_dataset(folder, SR)
    assert [(u.name, u.speaker) for u in plain.utterances] == [("b.flac", ""), ("sub/a.wav", "")]


# ---------------------------------------------------------------------------- explicit layouts


def test_explicit_layout_overrides_detection(ljspeech: Path, metadata_root: Path) -> None:
    # "folder" ignores metadata.csv and lists what is on disk.
    assert find_audio(ljspeech, "folder") == [(f"wavs/{i}.wav", "") for i in LJ_IDS[:3]]
    assert find_audio(metadata_root, "folder") == [("wavs/a.flac", ""), ("wavs/b.flac", "")]
    ds = load_dataset(metadata_root, SR, layout="folder")
    assert [(u.name, u.speaker) for u in ds.utterances] == find_audio(metadata_root, "folder")


@pytest.mark.parametrize(
    "layout,missing",
    [
        ("ljspeech", "metadata.csv and wavs/"),
        ("metadata", "metadata.csv"),
        ("vctk", "wav48_silence_trimmed or wav48/"),
    ],
)
def test_forced_layout_without_its_files_names_root(
    folder: Path, layout: str, missing: str
) -> None:
    calls = (lambda: find_audio(folder, layout), lambda: load_dataset(folder, SR, layout=layout))
    for call in calls:
        with pytest.raises(DataError) as err:
            call()
        message = str(err.value)
        assert message == f"{folder}: layout {layout} needs {missing}"
        assert "\n" not in message


def test_forced_ljspeech_on_our_metadata_names_the_file(metadata_root: Path) -> None:
    with pytest.raises(DataError, match="layout metadata, not ljspeech") as err:
        find_audio(metadata_root, "ljspeech")
    assert str(metadata_root / "metadata.csv") in str(err.value)


def test_forced_metadata_on_ljspeech_needs_a_file_header(ljspeech: Path) -> None:
    with pytest.raises(DataError, match="'file' column") as err:
        find_audio(ljspeech, "metadata")
    assert str(ljspeech / "metadata.csv") in str(err.value)


def test_unknown_layout_names_value_and_choices(folder: Path) -> None:
    for call in (lambda: find_audio(folder, "timit"), lambda: load_dataset(folder, layout="timit")):
        with pytest.raises(ValueError, match="timit") as err:
            call()
        assert not isinstance(err.value, DataError)
        assert all(choice in str(err.value) for choice in LAYOUTS)


def test_each_layout_lists_its_own_files_from_one_store(vctk: Path, tmp_path: Path) -> None:
    """The store holds decoded files by name, whatever the layout; the files and speakers a
    load returns are the layout's (VCTK keeps mic1; a plain folder takes every file)."""
    cache = tmp_path / "cache"
    as_vctk = load_dataset(vctk, SR, layout="vctk", cache_dir=cache)
    as_folder = load_dataset(vctk, SR, layout="folder", cache_dir=cache)
    assert [(u.name, u.speaker) for u in as_vctk.utterances] == VCTK_092_KEPT
    assert len(as_folder.utterances) == len(VCTK_092) and {
        u.speaker for u in as_folder.utterances
    } == {""}
    assert len(list(cache.glob("store-*"))) == 1
    folder = {u.name: u for u in as_folder.utterances}
    for u in as_vctk.utterances:
        assert torch.equal(u.audio, folder[u.name].audio)


def test_screen_skips_names_outside_the_root_and_repeats(tmp_path: Path) -> None:
    root = tmp_path / "set"
    (root / "wavs" / "deeper").mkdir(parents=True)
    for name in ("a.flac", "b.flac", "deeper/c.flac"):
        (root / "wavs" / name).write_bytes(b"x")
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"x")
    (root / "wavs" / "link.flac").symlink_to(secret)  # a link out
    (root / "wavs" / "inside.flac").symlink_to(root / "wavs" / "a.flac")  # a link in: a repeat
    (root / "out").symlink_to(tmp_path)  # a folder link out
    rows = [
        "wavs/a.flac",
        "wavs/b.flac",
        "wavs/deeper/c.flac",
        "../secret.wav",
        "../nothing_here.wav",
        str(secret),
        "wavs/link.flac",
        "out/secret.wav",
        "wavs/inside.flac",
        "wavs/a.flac",
        "wavs/../wavs/b.flac",
        "wavs/deeper/../../wavs/deeper/c.flac",
        "wavs/missing.flac",  # inside: kept, for load_dataset to report as not found
    ]
    kept, skipped = screen(root, [(r, "") for r in rows])
    assert [n for n, _ in kept] == [
        "wavs/a.flac",
        "wavs/b.flac",
        "wavs/deeper/c.flac",
        "wavs/missing.flac",
    ]
    assert dict(skipped) == {
        "../secret.wav": OUTSIDE,
        "../nothing_here.wav": OUTSIDE,
        str(secret): OUTSIDE,
        "wavs/link.flac": OUTSIDE,
        "out/secret.wav": OUTSIDE,
        "wavs/inside.flac": DUPLICATE,
        "wavs/a.flac": DUPLICATE,
        "wavs/../wavs/b.flac": DUPLICATE,
        "wavs/deeper/../../wavs/deeper/c.flac": DUPLICATE,
    }


# ---------------------------------------------------------------------------- speaker_hours


def test_speaker_hours_sums_each_speakers_audio(vctk: Path, clips: list[Path]) -> None:
    ds = load_dataset(vctk, SR)
    got = speaker_hours(ds.utterances, SR)
    assert list(got) == ["p225", "p226"]  # sorted by speaker
    kept = {name.removeprefix("wav48_silence_trimmed/"): s for name, s in VCTK_092_KEPT}
    for speaker in got:
        files = [clips[VCTK_092[n]] for n, s in kept.items() if s == speaker]
        assert got[speaker] == pytest.approx(hours(files), rel=1e-12)
    # At half the rate every file has half the samples, so the hours stay the same.
    at_8k = speaker_hours(load_dataset(vctk, SR // 2).utterances, SR // 2)
    assert at_8k == pytest.approx(got, rel=1e-3)


def test_speaker_hours_keeps_the_empty_speaker(ljspeech: Path, clips: list[Path]) -> None:
    got = speaker_hours(load_dataset(ljspeech, SR).utterances, SR)
    assert list(got) == [""]
    assert got[""] == pytest.approx(hours(clips[:3]), rel=1e-12)
    assert speaker_hours([], SR) == {}
    with pytest.raises(ValueError, match="0"):
        speaker_hours([], 0)


# ---------------------------------------------------------------------------- find_audio


def test_find_audio_recursive_sorted_case_insensitive(tmp_path: Path) -> None:
    for name in ["b.WAV", "sub/a.flac", "sub/deeper/c.Ogg", "a.wav"]:
        write_audio(tmp_path / name, sine(440, 0.01))
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "sub" / "cover.png").write_bytes(b"\x89PNG")
    (tmp_path / "folder.wav").mkdir()  # a directory with an audio suffix is not a file
    assert find_audio(tmp_path) == [
        ("a.wav", ""),
        ("b.WAV", ""),
        ("sub/a.flac", ""),
        ("sub/deeper/c.Ogg", ""),
    ]


def test_find_audio_metadata_keeps_row_order_and_speakers(tmp_path: Path) -> None:
    write_audio(tmp_path / "wavs" / "z.flac", sine(440, 0.01))
    write_audio(tmp_path / "wavs" / "a.flac", sine(440, 0.01))
    write_audio(tmp_path / "unlisted.wav", sine(440, 0.01))  # metadata decides, not the folder
    (tmp_path / "metadata.csv").write_text(
        "file,speaker,duration\n"
        "wavs/z.flac,june,0.01\n"
        "wavs/missing.flac,carlo,1.0\n"
        "wavs/a.flac,allison,0.01\n"
    )
    assert find_audio(tmp_path) == [
        ("wavs/z.flac", "june"),
        ("wavs/missing.flac", "carlo"),
        ("wavs/a.flac", "allison"),
    ]


def test_find_audio_metadata_without_speaker_column(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("file\nb.wav\na.wav\n")
    assert find_audio(tmp_path) == [("b.wav", ""), ("a.wav", "")]


def test_find_audio_metadata_without_file_column(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text("path,speaker\na.wav,x\n")
    with pytest.raises(DataError, match="file"):
        find_audio(tmp_path)


def test_find_audio_missing_or_empty_dir_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as err:
        find_audio(missing)
    assert str(missing) in str(err.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError, match="no audio files") as err:
        find_audio(empty)
    assert str(empty) in str(err.value)

    not_dir = tmp_path / "file.wav"
    write_audio(not_dir, sine(440, 0.01))
    with pytest.raises(DataError, match="not a directory") as err:
        find_audio(not_dir)
    assert str(not_dir) in str(err.value)


@pytest.mark.parametrize("layout", ["metadata", "ljspeech"])
def test_a_nul_byte_in_a_listed_name_is_named_with_its_file(tmp_path: Path, layout: str) -> None:
    """NUL cannot be in a file name (open() would fail with 'embedded null byte', naming
    nothing): the metadata file and its row are named instead."""
    (tmp_path / "wavs").mkdir()
    if layout == "metadata":
        text = "file,speaker\nwavs/a.wav,x\nwavs/b\x00.wav,y\n"
    else:
        text = "a|one|one\nb\x00|two|two\n"
    (tmp_path / "metadata.csv").write_text(text)
    with pytest.raises(DataError, match=r"metadata.csv: .*NUL"):
        find_audio(tmp_path, layout)


def test_many_repeated_rows_are_summarised_not_listed(tmp_path: Path) -> None:
    """A metadata.csv listing one file 12 times: it is used once and the 11 repeats make six
    log lines (five named, then the count), not eleven."""
    write_audio(tmp_path / "a.wav", sine(220, 0.2))
    (tmp_path / "metadata.csv").write_text("file,speaker\n" + "a.wav,x\n" * 12)
    dataset = load_dataset(tmp_path, 16000, cache_dir=tmp_path / "cache")
    assert len(dataset.utterances) == 1 and len(dataset.skipped) == 11
    lines = dataset.skipped_lines()
    assert lines[:5] == [f"skipped a.wav: {DUPLICATE}"] * 5
    assert lines[5:] == [f"skipped 6 more files: {DUPLICATE}"]
