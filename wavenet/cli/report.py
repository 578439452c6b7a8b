"""`wavenet-report RUN_DIR... [--out FILE.html]`: a run's report page, or a sweep's comparison.

One RUN_DIR without --out writes RUN_DIR/report.html (the page the trainer keeps up to date);
several write one page comparing them (see wavenet.metrics.report), with links relative to the
output file's folder; a run among them that cannot be read (missing, not a run, a damaged file)
is named on stderr and left out. Prints the written path; user errors (one run that cannot be
read, or none of several) print one line and exit 2, and write nothing.
"""

import sys
from pathlib import Path

from wavenet.cli.common import OneLineParser, usable_runs
from wavenet.errors import one_line
from wavenet.metrics.report import read_run, write_comparison, write_report, write_run_page


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
        help="run directories written by wavenet-train (e.g. a sweep's subdirs)",
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
        if len(args.run_dirs) == 1:
            path = (
                write_report(args.run_dirs[0])
                if args.out is None
                else write_run_page(args.run_dirs[0], args.out)
            )
        elif args.out is None:
            raise ValueError(
                f"{len(args.run_dirs)} runs make one comparison page: pass --out FILE.html"
            )
        else:
            path = write_comparison(
                usable_runs("wavenet-report", args.run_dirs, read_run), args.out
            )
    except (ValueError, OSError) as e:
        print(f"wavenet-report: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    print(path)


if __name__ == "__main__":
    main()
