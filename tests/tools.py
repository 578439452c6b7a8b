"""Running the command-line tools (wavenet-train, ...) from tests: as installed console scripts
in a new process, or through their `main(argv)` in this one; the one-line-error check;
wavenet-train's config and training run in this process (Hydra compose, then the loop); and
`require`, what a test does when an optional part is missing. conftest.py hands these to tests
as fixtures."""

import importlib
import os
import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess
from typing import NoReturn

import pytest
import torch

# Hydra, omegaconf and the training loop are imported where used: the sampler's CUDA tests run
# on a bare GPU machine with torch, numpy and pytest (scripts/gpu_check.sh).

BIN = Path(sys.executable).parent
# In-process entry points, by console-script name.
MAINS = {
    "wavenet-generate": "wavenet.cli.generate",
    "wavenet-evaluate": "wavenet.cli.evaluate",
    "wavenet-plot": "wavenet.cli.plot",
    "wavenet-report": "wavenet.cli.report",
}


# ----------------------------------------------------------------------- optional parts


def ci() -> bool:
    """Whether the suite runs in CI (CI=true, as CI services set it). CI installs every optional
    part (`.[dev]` holds the metrics extra, tensorboard and numba; .ci/run the browser; the
    runner mounts ../shared), so there a missing one is a broken install, not a reason to skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> NoReturn:
    if ci():
        pytest.fail(f"{reason} (CI=true: CI installs it, so its absence fails the test)")
    pytest.skip(reason)


def require(available: bool, reason: str) -> None:
    """Skip the test when an optional part is not `available`, saying `reason`; under CI fail
    it instead. Also the `requires(available, reason)` marker (conftest.py applies it)."""
    if not available:
        _missing(reason)


def has(available: bool, reason: str) -> bool:
    """For the part of a test that needs an optional part: whether to run it (`available`);
    under CI a missing part fails the test instead of leaving that part out."""
    if not available and ci():
        _missing(reason)
    return available


def importable(module: str) -> bool:
    """Whether `module` imports (for `require`)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- the tools


def env() -> dict[str, str]:
    """The environment of a tool process: this one's (read now, so the session's
    WAVENET_CACHE_DIR is in it) with one thread, as test models are tiny (see conftest.py)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def exe(name: str) -> str:
    """Path of an installed console script; fails the test if it is not installed."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} not installed: run `pip install -e .`")
    return str(path)


def run_tool(
    name: str, *args: str, cwd: Path, ok: bool = False, timeout: int = 300
) -> CompletedProcess:
    """Run console script `name` with `args` in a new process; with ok=True, assert it
    exited 0."""
    proc = subprocess.run(
        [exe(name), *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )
    if ok:
        assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"
    return proc


def run_main(
    name: str, *args: str, capsys: pytest.CaptureFixture, ok: bool = False
) -> CompletedProcess:
    """Call tool `name`'s main(list(args)) in this process; returns its exit status (0 when it
    returns) and its stdout and stderr, as run_tool would; with ok=True, assert it exited 0.
    Restores torch's thread count."""
    main = importlib.import_module(MAINS[name]).main
    capsys.readouterr()  # drop what the test printed before
    threads = torch.get_num_threads()
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    if ok:
        assert code == 0, f"{name} failed:\n{err[-3000:]}"
    return CompletedProcess([name, *args], code, out, err)


def one_line_error(proc: CompletedProcess, *names: str, code: int = 2) -> str:
    """Assert the tool failed with `code` and one stderr line naming all of `names`; returns
    the line."""
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def compose(*overrides: str):
    """The DictConfig wavenet-train would run: Hydra compose over wavenet.conf + overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from wavenet.cli.common import register
    from wavenet.config import CONF_DIR

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def train_run(run_dir: Path, *overrides: str) -> dict:
    """wavenet.training.loop.train in this process on compose(*overrides), writing into run_dir;
    returns the last metrics record. Restores one torch thread (train.threads sets them)."""
    from omegaconf import OmegaConf

    from wavenet.training.loop import train

    dcfg = compose(*overrides)
    try:
        return train(OmegaConf.to_object(dcfg), run_dir, OmegaConf.to_container(dcfg, resolve=True))
    finally:
        torch.set_num_threads(1)
