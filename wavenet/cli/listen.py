"""Listening metrics of audio files: `wavenet-listen`, the sibling of wavenet-evaluate.

    wavenet-listen generated=DIR_OR_WAV [json_out=FILE]
    wavenet-listen reference=DIR_OR_WAV test=DIR_OR_WAV [json_out=FILE]

generated: DNSMOS (wavenet.metrics.listening.dnsmos) of every audio file. reference + test:
copy synthesis; test files are paired with the reference files of the same name (extension and
folder aside; two single files pair as they are), each pair is cut to the shorter, and scored
with PESQ-WB, STOI, MCD and log-mel distance, plus the DNSMOS of the test file. Files are read at
16 kHz mono. One JSON line of means over files is printed; json_out also gets every file's.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from wavenet.cli.common import parse_key_values, run_tool
from wavenet.data.dataset import read_audio
from wavenet.data.layouts import AUDIO_EXTENSIONS
from wavenet.errors import check_regular_file, one_line
from wavenet.metrics import listening

USAGE = """usage: wavenet-listen generated=DIR_OR_WAV [json_out=FILE] [progress=true]
       wavenet-listen reference=DIR_OR_WAV test=DIR_OR_WAV [json_out=FILE] [progress=true]
generated: prints the mean DNSMOS (sig, bak, ovrl, p808) of the audio files.
reference + test: copy synthesis, files paired by name: pesq_wb, stoi, mcd_db, log_mel_db and
the DNSMOS of the test files. json_out also holds every file's scores.
Needs the optional packages: pip install 'wavenet[metrics]'"""


@dataclass
class ListenConfig:
    generated: str | None = None  # audio file or folder (recursive) of generated speech
    reference: str | None = None  # copy synthesis: the source recordings ...
    test: str | None = None  # ... and their re-syntheses, paired by file name
    json_out: str | None = None  # also write the means and every file's scores here
    progress: bool = True

    def __post_init__(self) -> None:
        copy = self.reference is not None or self.test is not None
        if self.generated is not None and copy:
            raise ValueError("pass either generated=... or reference=... test=..., not both")
        if not copy and self.generated is None:
            raise ValueError(
                "nothing to score: pass generated=DIR_OR_WAV or "
                "reference=DIR_OR_WAV test=DIR_OR_WAV"
            )
        if copy and (self.reference is None or self.test is None):
            missing = "test" if self.test is None else "reference"
            raise ValueError(
                f"copy synthesis needs both reference= and test=; {missing}= is missing"
            )


def audio_files(path: str) -> list[Path]:
    """A file as itself, or a folder's audio files (recursive, sorted); ValueError if none."""
    root = Path(path)
    if not root.is_dir():
        if not root.exists():
            raise ValueError(f"{root}: no such file or folder")
        return [check_regular_file(root)]  # not a FIFO or device, which would block
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )
    if not files:
        raise ValueError(f"{root}: no audio files ({'/'.join(AUDIO_EXTENSIONS)})")
    return files


def pairs(reference: str, test: str) -> list[tuple[Path, Path]]:
    """(reference, test) files with the same stem; every test file needs its reference."""
    refs, tests = audio_files(reference), audio_files(test)
    if len(refs) == 1 and len(tests) == 1 and Path(reference).is_file():
        return [(refs[0], tests[0])]
    by_stem: dict[str, Path] = {}
    for path in refs:
        if path.stem in by_stem:
            raise ValueError(
                f"{reference}: two reference files named {path.stem!r}: "
                f"{by_stem[path.stem]} and {path}"
            )
        by_stem[path.stem] = path
    unmatched = [p for p in tests if p.stem not in by_stem]
    if unmatched:
        raise ValueError(
            f"{unmatched[0]}: no reference file named {unmatched[0].stem!r} in "
            f"{reference} ({len(unmatched)} of {len(tests)} test files unmatched)"
        )
    return [(by_stem[p.stem], p) for p in tests]


def _score(path: Path, scorer, *args) -> dict[str, float]:
    try:
        return scorer(*args, listening.RATE)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def run(cfg: ListenConfig) -> dict:
    """Score the files of `cfg`, write `cfg.json_out`; returns the means (one JSON object)."""
    listening.require()
    rows = []
    if cfg.generated is not None:
        files = audio_files(cfg.generated)
        for path in tqdm(files, desc="DNSMOS", unit="file", disable=not cfg.progress):
            audio = read_audio(path, listening.RATE)
            rows.append(
                {
                    "file": str(path),
                    "seconds": len(audio) / listening.RATE,
                    **_score(path, listening.generated_scores, audio),
                }
            )
        keys = listening.KEYS_GENERATED
    else:
        matched = pairs(cfg.reference, cfg.test)
        for ref_path, test_path in tqdm(
            matched, desc="copy synthesis", unit="pair", disable=not cfg.progress
        ):
            ref = read_audio(ref_path, listening.RATE)
            test = read_audio(test_path, listening.RATE)
            n = min(len(ref), len(test))
            rows.append(
                {
                    "file": str(test_path),
                    "reference": str(ref_path),
                    "seconds": n / listening.RATE,
                    **_score(test_path, listening.copy_synthesis_scores, ref, test),
                    **_score(test_path, listening.generated_scores, test[:n]),
                }
            )
        keys = listening.KEYS_COPY + listening.KEYS_GENERATED
    means = {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in keys}
    result = {**means, "files": len(rows), "seconds": round(sum(r["seconds"] for r in rows), 2)}
    if cfg.json_out:
        out = Path(cfg.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**result, "per_file": rows}, indent=1) + "\n")
    return result


def _main(argv: list[str]) -> None:
    print(json.dumps(run(parse_key_values(ListenConfig, argv))))


def main(argv: list[str] | None = None) -> None:
    """wavenet-listen: prints one JSON line; user errors print one line and exit 2."""
    try:
        run_tool("wavenet-listen", USAGE, _main, argv)
    except ImportError as e:  # the optional extra is missing: a set-up error, told in one line
        print(f"wavenet-listen: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
