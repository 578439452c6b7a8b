"""Shared plumbing of the key=value tools (wavenet-generate, wavenet-evaluate).

Arguments are `key=value` pairs merged onto a dataclass schema, as Hydra overrides are; user
errors become one line on stderr and exit status 2, never a traceback.
"""

import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wavenet.errors import one_line

T = TypeVar("T")


def parse_key_values(schema: type[T], argv: list[str]) -> T:
    """key=value arguments -> a checked `schema` instance. Raises ValueError with one line."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ValueError(f"expected key=value arguments, got {bad[0]!r}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ValueError(f"missing required argument {missing[0]}=...")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ValueError(str(e).splitlines()[0]) from e


def run_tool(name: str, usage: str, action: Callable[[list[str]], None],
             argv: list[str] | None = None) -> None:
    """Run `action(argv)`; --help prints `usage`; ValueError/OSError exit 2 with one line."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        return
    try:
        action(argv)
    except (ValueError, OSError) as e:
        print(f"{name}: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
