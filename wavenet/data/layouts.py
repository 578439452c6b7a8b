"""Dataset layouts: which audio files a dataset folder holds, and each file's speaker.

A dataset is a folder in one of these layouts (``LAYOUTS``; "auto" picks one with
``detect_layout``):

- ``vctk``: ``wav48_silence_trimmed/pXXX/*.flac`` (VCTK 0.92; mic1 kept, mic2 only where an
  utterance has no mic1) or ``wav48/pXXX/*.wav`` (VCTK 0.80); the speaker is the folder name.
- ``ljspeech``: ``metadata.csv`` without a header, ``id|text|normalized text`` per line, audio in
  ``wavs/<id>.wav``; one speaker, "".
- ``metadata``: ``metadata.csv`` with a header, columns ``file,speaker,...`` (speaker optional).
- ``folder``: any tree of wav/flac/ogg files; no speakers.

``find_audio`` lists (name, speaker) pairs, ``screen`` drops those outside the root and repeats;
wavenet.data decodes, caches and crops them.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path, PurePosixPath

from wavenet.errors import DataError, one_line

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
METADATA_FILE = "metadata.csv"
LAYOUTS = ("auto", "folder", "metadata", "ljspeech", "vctk")
LJSPEECH_AUDIO_DIR = "wavs"
# VCTK 0.92 first, so it wins where a download holds both releases.
VCTK_AUDIO_DIRS = ("wav48_silence_trimmed", "wav48")
_VCTK_MIC = re.compile(r"^(?P<utterance>.+)_mic(?P<mic>[12])$")


def check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"{root}: dataset directory does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: dataset path is not a directory")


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            return f.readline().strip()
    except OSError as e:
        raise DataError(f"{path}: cannot read metadata ({one_line(e)})") from e


def _has_file_header(line: str) -> bool:
    """Whether a metadata.csv first line is our header (a ``file`` column), read as CSV.

    Only the part before any "|" counts: an LJSpeech transcript may hold ", file," itself.
    """
    return "file" in [cell.strip() for cell in next(csv.reader([line.split("|")[0]]), [])]


def detect_layout(root: str | Path) -> str:
    """The concrete layout of the dataset folder root: "vctk", "ljspeech", "metadata" or "folder".

    vctk: root/wav48_silence_trimmed/ or root/wav48/ is a directory. ljspeech: root/metadata.csv
    and root/wavs/ exist and metadata.csv's first line has "|" and no ``file`` column header.
    metadata: root/metadata.csv exists. Otherwise folder. Raises DataError when root is missing
    or not a directory.
    """
    root = Path(root)
    check_root(root)
    if any((root / d).is_dir() for d in VCTK_AUDIO_DIRS):
        return "vctk"
    metadata = root / METADATA_FILE
    if metadata.is_file():
        line = _first_line(metadata)
        if (root / LJSPEECH_AUDIO_DIR).is_dir() and "|" in line and not _has_file_header(line):
            return "ljspeech"
        return "metadata"
    return "folder"


def resolve_layout(root: Path, layout: str) -> str:
    """layout checked against LAYOUTS, with "auto" replaced by detect_layout(root)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    check_root(root)
    return detect_layout(root) if layout == "auto" else layout


def find_audio(root: str | Path, layout: str = "auto") -> list[tuple[str, str]]:
    """(relative posix name, speaker) for every audio file of the dataset at root.

    layout: one of LAYOUTS; "auto" uses detect_layout(root).
    folder: every file with an AUDIO_EXTENSIONS suffix (any case) found recursively, sorted,
    speaker "". metadata: metadata.csv's rows in file order (columns file,speaker,...; speaker
    optional). ljspeech: "wavs/<id>.wav" per metadata.csv line with an id, in file order,
    speaker "". vctk: audio files in wav48_silence_trimmed/pXXX/ (else wav48/pXXX/), sorted,
    speaker "pXXX"; a *_mic2 file only where its utterance has no *_mic1 file.
    Files a metadata.csv lists but that are missing are returned; load_dataset skips them.
    Raises ValueError for an unknown layout, DataError when root is missing, not a directory,
    holds nothing, or lacks what the layout needs.
    """
    root = Path(root)
    layout = resolve_layout(root, layout)
    if layout == "vctk":
        return _find_vctk(root)

    metadata = root / METADATA_FILE
    if layout == "ljspeech":
        if not (metadata.is_file() and (root / LJSPEECH_AUDIO_DIR).is_dir()):
            raise DataError(
                f"{root}: layout ljspeech needs {METADATA_FILE} and {LJSPEECH_AUDIO_DIR}/"
            )
        entries = _read_ljspeech(metadata)
    elif layout == "metadata":
        if not metadata.is_file():
            raise DataError(f"{root}: layout metadata needs {METADATA_FILE}")
        entries = _read_metadata(metadata)
    else:
        return _find_folder(root)
    if not entries:
        raise DataError(f"{metadata}: no rows, so no audio files in {root}")
    return entries


OUTSIDE = "outside the dataset root"
DUPLICATE = "listed more than once: used once"


def screen(
    root: str | Path, entries: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(entries to use, (name, reason) of the others): a name that resolves outside `root`
    after following symlinks (`../x.wav`, an absolute path, a link out) is skipped, with no
    word on whether its file exists; a file listed again (by any spelling) is used once."""
    base = Path(root).resolve()
    prefix = str(base).rstrip(os.sep) + os.sep
    kept, skipped, seen = [], [], set()
    # Each folder resolved and listed once (100,000 files share a few): its real path, and
    # which of its entries are symlinks, to be resolved one by one.
    folders: dict[str, tuple[str | None, set[str]]] = {}
    for name, speaker in entries:
        path = name if name.startswith(os.sep) else prefix + name  # os.path.join, quicker
        folder, _, leaf = path.rpartition(os.sep)
        if folder not in folders:
            folders[folder] = (_resolve(folder or os.sep), _symlinks(folder or os.sep))
        real, links = folders[folder]
        target = None
        if real is not None:
            target = real.rstrip(os.sep) + os.sep + leaf
            if leaf in ("", ".", "..") or leaf in links:
                target = _resolve(target)
        if target is None or not (target + os.sep).startswith(prefix):
            skipped.append((name, OUTSIDE))
        elif target in seen:
            skipped.append((name, DUPLICATE))
        else:
            seen.add(target)
            kept.append((name, speaker))
    return kept, skipped


def _symlinks(folder: str) -> set[str]:
    """The names of the symlinks in `folder` (none where it cannot be listed)."""
    try:
        with os.scandir(folder) as listing:
            return {entry.name for entry in listing if entry.is_symlink()}
    except OSError:
        return set()


def _resolve(path: str) -> str | None:
    """The real path, following every symlink; None for a symlink loop."""
    try:
        return os.path.realpath(path, strict=False)
    except (OSError, RuntimeError):
        return None


def _find_folder(root: Path) -> list[tuple[str, str]]:
    names = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
    ]
    if not names:
        exts = "/".join(AUDIO_EXTENSIONS)
        raise DataError(f"{root}: no audio files ({exts}) and no {METADATA_FILE} found")
    return [(name, "") for name in sorted(names)]


def _find_vctk(root: Path) -> list[tuple[str, str]]:
    """VCTK's <audio dir>/<speaker>/<file> audio files as (name, speaker), sorted by name.

    VCTK 0.92 records each utterance with two microphones (p225_001_mic1.flac, ..._mic2.flac):
    one copy is enough, so mic2 is kept only where the utterance has no mic1 file.
    """
    audio_dirs = [root / d for d in VCTK_AUDIO_DIRS if (root / d).is_dir()]
    if not audio_dirs:
        raise DataError(f"{root}: layout vctk needs {' or '.join(VCTK_AUDIO_DIRS)}/")
    audio_dir = audio_dirs[0]
    files = [
        path
        for speaker_dir in audio_dir.iterdir()
        if speaker_dir.is_dir()
        for path in speaker_dir.iterdir()
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
    ]
    has_mic1 = set()
    for path in files:
        match = _VCTK_MIC.match(path.stem)
        if match and match["mic"] == "1":
            has_mic1.add((path.parent, match["utterance"]))
    entries = []
    for path in files:
        match = _VCTK_MIC.match(path.stem)
        if match and match["mic"] == "2" and (path.parent, match["utterance"]) in has_mic1:
            continue
        entries.append((path.relative_to(root).as_posix(), path.parent.name))
    if not entries:
        exts = "/".join(AUDIO_EXTENSIONS)
        raise DataError(f"{audio_dir}: no audio files ({exts}) in its speaker folders")
    return sorted(entries)


def _read_ljspeech(path: Path) -> list[tuple[str, str]]:
    """LJSpeech metadata.csv lines (id|text|normalized text, no header) as ("wavs/<id>.wav", "")."""
    line = _first_line(path)
    if _has_file_header(line):
        raise DataError(
            f"{path}: has a header with a 'file' column, so it is layout metadata, not ljspeech"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            # QUOTE_NONE: the transcripts hold unbalanced quotes that are text, not CSV quoting.
            rows = list(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read metadata ({one_line(e)})") from e
    ids = [row[0].strip() for row in rows if row and row[0].strip()]
    if any("\0" in i for i in ids):
        raise DataError(f"{path}: an id holds a NUL byte (a damaged or binary file)")
    return [(f"{LJSPEECH_AUDIO_DIR}/{utterance}.wav", "") for utterance in ids]


def _read_metadata(path: Path) -> list[tuple[str, str]]:
    """Rows of a metadata.csv as (name, speaker), in file order."""
    try:
        # utf-8-sig: spreadsheets often save CSV with a byte-order mark before "file".
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row]  # blank lines hold nothing
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read metadata ({one_line(e)})") from e
    header = rows[0] if rows else None
    if header is None or "file" not in header:
        raise DataError(f"{path}: needs a header with a 'file' column, got {header}")

    def column(name: str) -> int | None:  # the last of a repeated name, as csv.DictReader
        return len(header) - 1 - header[::-1].index(name) if name in header else None

    file, speaker = column("file"), column("speaker")
    entries = []
    for number, row in enumerate(rows[1:], start=2):
        name = row[file].strip() if file < len(row) else ""
        if not name:  # an empty cell: nothing to load
            continue
        if "\0" in name:  # no file system names a file so; a damaged or binary file
            raise DataError(f"{path}: row {number}: the file name holds a NUL byte")
        # Names are posix so they hash and cache identically on every OS.
        who = row[speaker].strip() if speaker is not None and speaker < len(row) else ""
        entries.append((_posix(name), who))
    return entries


def _posix(name: str) -> str:
    """PurePosixPath(name with "\\" as "/").as_posix(), without building a path for the usual
    plain relative name (a metadata.csv may list 100,000 of them)."""
    plain = not (
        "\\" in name
        or "//" in name
        or "/./" in name
        or name.startswith("./")
        or name.endswith(("/", "/."))
        or name == "."
    )
    return name if plain else PurePosixPath(name.replace("\\", "/")).as_posix()
