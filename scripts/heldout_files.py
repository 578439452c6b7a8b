"""Copy a run's held-out validation files into a folder that wavenet-evaluate can score.

    python scripts/heldout_files.py runs/pretrained /tmp/heldout
    wavenet-evaluate checkpoint=runs/pretrained/checkpoints/best.pt data.root=/tmp/heldout

Reads the run's data_report.json (written by wavenet-train) and keeps each file's speaker from
the dataset's metadata.csv when it has one, so the evaluation reports per-speaker figures.
"""

import csv
import json
import shutil
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    report = json.loads((run / "data_report.json").read_text())
    root = Path(report["root"])
    meta = root / "metadata.csv"
    speakers = (
        {r["file"]: r.get("speaker", "") for r in csv.DictReader(meta.open())}
        if meta.is_file()
        else {}
    )
    rows = []
    for name in report["validation"]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, out / name)
        rows.append((name, speakers.get(name, "")))
    with (out / "metadata.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("file", "speaker"), *rows])
    print(f"{len(rows)} files -> {out}")


if __name__ == "__main__":
    main()
