"""`wavenet-report RUN_DIR... [--out FILE.html]`: a run's report page, or a sweep's comparison.

One RUN_DIR without --out writes RUN_DIR/report.html (the page the trainer keeps up to date);
several write one page comparing them (see wavenet.metrics.report), with links relative to the
output file's folder. A sweep's (or a search's) directory stands for the runs under it, ranked
best first; given alone, its page is SWEEP_DIR/report.html. A run among them that cannot be
read (missing, not a run, a damaged file) is named on stderr and left out. Prints the written
path; user errors (one run that cannot be read, or none of several) print one line and exit 2,
and write nothing.
"""

import sys
from pathlib import Path

from wavenet.cli.common import OneLineParser, usable_runs
from wavenet.errors import one_line
from wavenet.metrics.report import (
    REPORT_FILE,
    read_run,
    sweep_runs,
    write_comparison,
    write_report,
    write_run_page,
)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(
        prog="wavenet-report",
        description="Write a self-contained HTML page of wavenet-train runs: status, scores, "
        "learning curves and a player for every generated sample.",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run directories written by wavenet-train, or a sweep's directory (its runs, ranked)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the page to write (needed for several runs; one run's default "
        "is RUN_DIR/report.html)",
    )
    args = parser.parse_args(argv)
    try:
        run_dirs, ranked = [], False
        for given in args.run_dirs:
            under = sweep_runs(given)
            run_dirs += under or [given]
            ranked |= bool(under)
        if not ranked and len(run_dirs) == 1:
            path = (
                write_report(run_dirs[0])
                if args.out is None
                else write_run_page(run_dirs[0], args.out)
            )
        else:
            out = args.out
            if out is None and ranked and len(args.run_dirs) == 1:
                out = args.run_dirs[0] / REPORT_FILE
            elif out is None:
                raise ValueError(
                    f"{len(run_dirs)} runs make one comparison page: pass --out FILE.html"
                )
            runs = usable_runs("wavenet-report", run_dirs, read_run)
            path = write_comparison(runs, out, ranked=ranked)
    except (ValueError, OSError) as e:
        print(f"wavenet-report: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    print(path)


if __name__ == "__main__":
    main()
