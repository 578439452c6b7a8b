"""Running the installed command-line tools (wavenet-train, ...) from tests."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# One thread: test models are tiny, and see conftest.py on OpenMP spin-waits.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def exe(name: str) -> str:
    """Path of an installed console script; fails the test if it is not installed."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} not installed: run `pip install -e .`")
    return str(path)


def run_tool(name: str, *args: str, cwd: Path, ok: bool = False,
             timeout: int = 300) -> subprocess.CompletedProcess:
    """Run console script `name` with `args`; with ok=True, assert it exited 0."""
    proc = subprocess.run([exe(name), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"
    return proc
