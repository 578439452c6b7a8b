"""The errors a user can cause, and the one-line form every tool prints them in.

Each tool turns these (and plain ValueError/OSError for bad values) into one line on stderr and
an exit status: 2 for bad input, 1 for a run that cannot go on, 130 or 0 for a requested stop.
"""

import signal
from pathlib import Path


class DataError(ValueError):
    """A user-facing data problem; str() is one line naming the file/dir and the problem."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; str() is one line naming the file and the problem."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (disk full, no permission, ...); the previous file
    at that path is unchanged. str() is one line naming the file and the cause."""


class TrainingStopped(RuntimeError):
    """Training cannot go on (non-finite losses in a row); str() is one line. Exit status 1."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped training after last.pt was saved; exit with `exit_code`
    (130 for SIGINT, like any Ctrl-C'd tool; 0 for SIGTERM, a requested stop)."""

    def __init__(self, signum: int, step: int, path: Path):
        self.exit_code = 130 if signum == signal.SIGINT else 0
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; "
                         f"checkpoint saved to {path}")


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
