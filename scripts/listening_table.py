"""The listening-metrics reference table (docs/listening.md) on held-out asterisk4 speech.

    python scripts/listening_table.py --doc docs/listening.md

Held-out files: split_by_file(all files, 0.1), the split the shipped models were trained with;
per speaker the --per-speaker longest of at most --max-seconds. Rows, one JSON line each:
  real          the held-out recordings themselves (DNSMOS)
  mulaw         their 8-bit μ-law round trip, the floor of any 8-bit model
  vocoder       the shipped vocoder's copy synthesis with its own sampling settings, as a user
                hears it (wavenet-generate checkpoint=...asterisk4-vocoder.pt mel_from=FILE)
  vocoder_tT_fF_sS   the same at temperature T, floor F, sharpen S (--vocoder-settings;
                0.6:0:0 by default, plain sampling at the vocoder's temperature)
  babble        the shipped unconditioned model's free output (wavenet-generate seconds=4 batch=6)
  other_words   another held-out recording of the same speaker (the next longest), scored
                against the file: the copy-synthesis scores of the right voice saying other words
Copy-synthesis scores (PESQ-WB, STOI, MCD, log-mel distance) are means over files of the row's
audio against the held-out recording (cut to the shorter); DNSMOS is the mean over the row's
audio. --doc rewrites the table between the <!-- table --> markers of that file.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from wavenet import checkpoint, mulaw
from wavenet.cli.common import parse_key_values
from wavenet.cli.generate import run as generate
from wavenet.config import PRETRAINED, GenerateConfig
from wavenet.data.dataset import Utterance, read_audio, split_by_file
from wavenet.data.layouts import find_audio
from wavenet.metrics import listening

ROOT = Path(__file__).resolve().parents[1]
VOCODER = PRETRAINED.parent / "asterisk4-vocoder.pt"
RATE = listening.RATE
COPY_KEYS, DNSMOS_KEYS = listening.KEYS_COPY, listening.KEYS_GENERATED
START, END = "<!-- table -->", "<!-- /table -->"


def heldout(
    root: Path, per_speaker: int, max_seconds: float, speakers: list[str] | None
) -> list[tuple[Path, Path]]:
    """(file, another file of its speaker) for the chosen held-out files, grouped by speaker.

    Per speaker, the held-out files of at most max_seconds, longest first; the first
    per_speaker are chosen, and each is paired with the next one of that list (wrapping).
    """
    _, val = split_by_file([Utterance(n, s, torch.empty(0)) for n, s in find_audio(root)], 0.1)
    chosen = []
    for speaker in speakers or sorted({u.speaker for u in val}):
        lengths = [
            (read_audio(root / u.name, RATE).numel() / RATE, u.name)
            for u in val
            if u.speaker == speaker
        ]
        fit = [name for sec, name in sorted(lengths, reverse=True) if sec <= max_seconds]
        if len(fit) < 2:
            raise SystemExit(
                f"speaker {speaker!r}: {len(fit)} held-out files of at most "
                f"{max_seconds} s; other_words needs two"
            )
        chosen += [
            (root / fit[i], root / fit[(i + 1) % len(fit)])
            for i in range(min(per_speaker, len(fit)))
        ]
    return chosen


def row(system: str, refs: list[torch.Tensor] | None, tests: list[torch.Tensor], **extra) -> dict:
    """Means over files: copy-synthesis scores against refs (when given) and DNSMOS of tests."""
    result: dict = {"system": system}
    if refs is not None:
        scores = [
            listening.copy_synthesis_scores(r, t, RATE) for r, t in zip(refs, tests, strict=True)
        ]
        result |= {k: round(sum(s[k] for s in scores) / len(scores), 3) for k in COPY_KEYS}
    scores = [listening.dnsmos(t, RATE) for t in tests]
    result |= {k: round(sum(s[k] for s in scores) / len(scores), 2) for k in DNSMOS_KEYS}
    seconds = sum(len(t) for t in tests) / RATE
    return result | {"files": len(tests), "seconds": round(seconds, 1), **extra}


def markdown(rows: list[dict], command: str, cpu: str) -> str:
    head = (
        "| system | files | DNSMOS SIG | BAK | OVRL | P.808 | PESQ-WB | STOI | MCD (dB) "
        "| log-mel (dB) |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        cells = [
            r["system"],
            str(r["files"]),
            *(f"{r[k]:.2f}" for k in DNSMOS_KEYS),
            *(f"{r[k]:.3f}" if k in r else "—" for k in COPY_KEYS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"{START}\n{head}" + "\n".join(lines) + f"\n\n`{command}` on {cpu}, "
        f"{time.strftime('%Y-%m-%d')}.\n{END}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "speech" / "asterisk4"))
    parser.add_argument("--speakers", help="comma-separated speakers (default: all)")
    parser.add_argument("--per-speaker", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=4.0)
    parser.add_argument("--babble-seconds", type=float, default=4.0)
    parser.add_argument("--babble-batch", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for generation")
    parser.add_argument(
        "--vocoder-settings",
        nargs="+",
        default=["own", "0.6:0:0"],
        metavar="own|T:FLOOR:SHARPEN",
        help="a vocoder row per sampling setting ('own': the checkpoint's)",
    )
    parser.add_argument("--out", help="keep the generated wavs here (default: a temp folder)")
    parser.add_argument("--doc", help="markdown file whose table to rewrite")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    listening.require()

    speakers = args.speakers.split(",") if args.speakers else None
    files = heldout(Path(args.root), args.per_speaker, args.max_seconds, speakers)
    out = Path(args.out or tempfile.mkdtemp(prefix="listening-"))
    refs = [read_audio(path, RATE) for path, _ in files]

    rows = [row("real", None, refs)]
    rows.append(row("mulaw", refs, [mulaw.decode(mulaw.encode(a, 256), 256) for a in refs]))

    for setting in args.vocoder_settings:
        given = {}
        if setting != "own":
            given = dict(zip(("temperature", "floor", "sharpen"), setting.split(":"), strict=True))
        system = "vocoder" if not given else "vocoder_t{temperature}_f{floor}_s{sharpen}"
        system = system.format(**{k: f"{float(v):g}" for k, v in given.items()})
        start = time.perf_counter()
        vocoded = []
        for path, _ in files:
            cfg = parse_key_values(
                GenerateConfig,
                [
                    f"checkpoint={VOCODER}",
                    f"mel_from={path}",
                    f"out={out / system}",
                    *(f"{k}={v}" for k, v in given.items()),
                    f"threads={args.threads}",
                    "progress=false",
                ],
            )
            vocoded.append(read_audio(generate(cfg)[0], RATE))
        seconds = time.perf_counter() - start
        settings = checkpoint.sampling(
            checkpoint.load(VOCODER), **{k: float(v) for k, v in given.items()}
        )
        rows.append(
            row(
                system,
                refs,
                vocoded,
                checkpoint=str(VOCODER.relative_to(ROOT)),
                **settings,
                generate_s=round(seconds, 1),
            )
        )

    start = time.perf_counter()
    cfg = parse_key_values(
        GenerateConfig,
        [
            f"seconds={args.babble_seconds}",
            f"batch={args.babble_batch}",
            f"out={out / 'babble'}",
            f"threads={args.threads}",
            "progress=false",
        ],
    )
    babble = [read_audio(p, RATE) for p in generate(cfg)]
    rows.append(
        row(
            "babble",
            None,
            babble,
            checkpoint=str(PRETRAINED.relative_to(ROOT)),
            generate_s=round(time.perf_counter() - start, 1),
        )
    )

    # Each file against another held-out file of its speaker (cut to the shorter).
    others = [read_audio(other, RATE) for _, other in files]
    rows.append(row("other_words", refs, others))

    for r in rows:
        print(json.dumps(r), flush=True)
    if args.doc:
        cpu = (
            subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True)
            .stdout.split(":", 1)[-1]
            .strip()
            or "unknown CPU"
        )
        command = " ".join(["python", "scripts/listening_table.py", *sys.argv[1:]])
        doc = Path(args.doc)
        text = doc.read_text()
        if START not in text or END not in text:
            raise SystemExit(f"{doc}: no {START} ... {END} markers to put the table between")
        before, rest = text.split(START, 1)
        doc.write_text(before + markdown(rows, command, cpu) + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
