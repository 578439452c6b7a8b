"""Shared plumbing of the command-line tools: Hydra's config store, key=value parsing, and the
promise every tool keeps for user errors: one line on stderr and exit status 2, no traceback.
"""

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wavenet.config import DATA_DIR, PROJECT_DIR, Config
from wavenet.errors import one_line

T = TypeVar("T")


def register() -> None:
    """Register the training schema and the `project_dir` and `shipped` resolvers with Hydra
    (idempotent)."""
    ConfigStore.instance().store(name="config_schema", node=Config)
    if not OmegaConf.has_resolver("project_dir"):
        # ${project_dir:../shared/x} -> absolute path beside the project, whatever the cwd.
        OmegaConf.register_new_resolver("project_dir", lambda rel="": str(PROJECT_DIR / rel))
    if not OmegaConf.has_resolver("shipped"):
        # ${shipped:demo} -> the checkout's data/demo, or the installed package's copy.
        OmegaConf.register_new_resolver("shipped", lambda rel="": str(DATA_DIR / rel))


def check_known_keys(node: DictConfig, schema: type = Config, prefix: str = "") -> None:
    """Raise ValueError naming a key that `schema` lacks, such as one added with `+key=value`
    (Hydra rejects other unknown keys at composition)."""
    types = {f.name: f.type for f in fields(schema)}
    for key in node:
        if key not in types:
            raise ValueError(f"unknown config key '{prefix}{key}'")
        if is_dataclass(types[key]):
            check_known_keys(node[key], types[key], f"{prefix}{key}.")


def parse_key_values(schema: type[T], argv: list[str]) -> T:
    """key=value arguments -> a checked `schema` instance. Raises ValueError with one line."""
    bad = [a for a in argv if "=" not in a or not a.split("=", 1)[0]]
    if bad:
        raise ValueError(f"expected key=value arguments, got {bad[0]!r}")
    empty = [a for a in argv if not a.split("=", 1)[1]]
    if empty:
        raise ValueError(f"{empty[0]} has no value; give one or leave the argument out")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ValueError(f"missing required argument {missing[0]}=...")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ValueError(f"{key}: {one_line(e)}" if key else one_line(e)) from e


class OneLineParser(argparse.ArgumentParser):
    """argparse with the tools' promise: a usage error is one line on stderr and exit 2 (plain
    argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {one_line(ValueError(message))} (see --help)", file=sys.stderr)
        sys.exit(2)


def fail(name: str, e: BaseException, status: int = 2) -> None:
    """Print `name: error: <one line>` on stderr and exit with `status`."""
    print(f"{name}: error: {one_line(e)}", file=sys.stderr)
    sys.exit(status)


def usable_runs(name: str, run_dirs: list[Path], read: Callable[[Path], object]) -> list[Path]:
    """The run directories that `read` takes, for a tool that shows several (wavenet-plot,
    wavenet-report). Each one it refuses (ValueError/OSError: missing, not a run, a damaged
    file) is left out with one stderr line, `name: skipped a run: <reason>`, and the rest are
    shown. With none left, ValueError: the one run's reason, or each run's, in one line."""
    usable, reasons = [], []
    for run_dir in run_dirs:
        try:
            read(run_dir)
        except (ValueError, OSError) as e:
            reasons.append(one_line(e))
        else:
            usable.append(run_dir)
    if not usable:
        if len(reasons) == 1:
            raise ValueError(reasons[0])
        raise ValueError(f"none of the {len(reasons)} runs can be shown: {'; '.join(reasons)}")
    for reason in reasons:
        print(f"{name}: skipped a run: {reason}", file=sys.stderr)
    return usable


# The stop signals of a tool: Ctrl-C, and SIGTERM (what `kill`, timeout(1) and job schedulers
# send), both ending the tool the same way: one line, the exit status of a death by that signal
# (128 + signum: 130, 143), temporary files removed by the `finally` blocks on the way out.
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "stopped by SIGTERM"}
_received: list[int] = []  # the stop signals that came since the tool started


def _on_stop(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C or SIGTERM came since the tool started. Python drops an
    exception raised while a finalizer runs (a `__del__`, a weakref callback), so a signal
    landing there would be lost; long loops call this between chunks so that it still stops
    them."""
    if _received:
        raise KeyboardInterrupt


def run_tool(
    name: str, usage: str, action: Callable[[list[str]], None], argv: list[str] | None = None
) -> None:
    """Run `action(argv)`; --help prints `usage`; ValueError/OSError exit 2 with one line,
    Ctrl-C exits 130 and SIGTERM 143, each with one line (see `check_interrupted`)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        return
    _received.clear()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _on_stop) for s in STOP_SIGNALS} if main_thread else {}
    try:
        action(argv)
    except (ValueError, OSError) as e:
        fail(name, e)
    except KeyboardInterrupt:
        signum = _received[0] if _received else signal.SIGINT
        print(f"{name}: {STOP_SIGNALS[signum]}", file=sys.stderr)
        sys.exit(128 + signum)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
