"""wavenet-plot: the learning curves of several runs (a sweep, say) in one figure.

wavenet-plot RUN_DIR [RUN_DIR ...] [--out learning_curves.png]

A run that cannot be drawn (missing, not a run, a damaged metrics.jsonl) is named on stderr and
left out; with none left, one line and exit 2, and nothing is written.
"""

from pathlib import Path

from wavenet.cli.common import OneLineParser, fail, usable_runs
from wavenet.metrics.plots import plot_learning_curves, read_metrics


def main(argv: list[str] | None = None) -> None:
    """wavenet-plot: learning curves of runs in one figure; prints the written path."""
    parser = OneLineParser(
        prog="wavenet-plot",
        description="Plot train and validation bits/sample of wavenet-train runs (their "
        "metrics.jsonl) in one figure, with each run's bigram baseline.",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run directories holding metrics.jsonl (e.g. a sweep's subdirs)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("learning_curves.png"),
        help="image file; format from the suffix (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        runs = usable_runs("wavenet-plot", args.run_dirs, read_metrics)
        print(plot_learning_curves(runs, args.out))
    except (ValueError, OSError) as e:
        fail("wavenet-plot", e)


if __name__ == "__main__":
    main()
