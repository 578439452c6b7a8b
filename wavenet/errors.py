"""The errors a user can cause, and the one-line form every tool prints them in.

Each tool turns these (and plain ValueError/OSError for bad values) into one line on stderr and
an exit status: 2 for bad input, 1 for a run that cannot go on, 130 or 0 for a requested stop.
"""

import math
import os
import signal
import stat
from pathlib import Path


class DataError(ValueError):
    """A user-facing data problem; str() is one line naming the file/dir and the problem."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; str() is one line naming the file and the problem."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (disk full, no permission, ...); the previous file
    at that path is unchanged. str() is one line naming the file and the cause."""


class RunDirInUse(OSError):
    """Another process holds the run directory's lock; str() is one line naming its pid."""


class TrainingStopped(RuntimeError):
    """Training cannot go on (non-finite losses in a row); str() is one line. Exit status 1."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped training after last.pt was saved; exit with `exit_code`
    (130 for SIGINT, like any Ctrl-C'd tool; 0 for SIGTERM, a requested stop)."""

    def __init__(self, signum: int, step: int, path: Path):
        self.exit_code = 130 if signum == signal.SIGINT else 0
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved to {path}"
        )


# Diagnostic tails that OmegaConf and Hydra append to their messages over several lines.
_TAILS = (" full_key:", " Config search path:")


def one_line(e: BaseException, limit: int | None = None) -> str:
    """An exception as one line: whitespace runs collapsed, OmegaConf's and Hydra's diagnostic
    tails dropped, cut to `limit` characters; its type name if that leaves nothing."""
    text = " ".join(str(e).split())
    for tail in _TAILS:
        text = text.split(tail)[0]
    if limit is not None:
        text = text[:limit]
    return text or type(e).__name__


def check_int(name: str, value: object, low: int, high: int) -> int:
    """`value` if it is an integer (not a bool) in [low, high], else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_float(name: str, value: object, low: float, high: float, low_open: bool = False) -> float:
    """`value` as a float if it is a finite number in [low, high] ((low, high] with
    `low_open`), else ValueError naming `name`: NaN and infinities are never settings."""
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
        and not (low_open and value == low)
    )
    if not ok:
        span = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a finite number in {span}, got {value!r}")
    return float(value)


# What a path names when it is not a regular file, for the message.
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_regular_file(path: str | Path) -> Path:
    """`path` as a Path if it names a regular file (through links), else DataError naming it:
    missing, or a directory, FIFO, socket or device, which reading would block on (a FIFO with
    no writer) or never finish (/dev/zero). Call it before opening a file a user named."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:  # missing, no permission on a folder, a loop of links, ...
        raise DataError(f"{path}: {e.strerror or one_line(e)}") from e
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise DataError(f"{path}: is {kind}, not a regular file")
    return Path(path)
