"""Shared fixtures: repository paths, the bundled demo speech, one dataset cache per session,
Hydra composition, in-process training runs, and the command-line tools (as real processes or
in-process).

Helpers that are plain functions (test tones, tiny models, the subprocess runner) live in
tests/builders.py and tests/tools.py; these fixtures hand the test a ready-made callable.
"""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import tools
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# Test tensors are small: one thread avoids OpenMP spin-waits that make tiny ops crawl when
# another process holds the second core. Tests that time or train pass threads explicitly.
torch.set_num_threads(1)
ASTERISK_ROOT = REPO_ROOT.parent / "shared" / "speech" / "asterisk4"

# Under pytest-xdist (scripts/test.sh runs two workers) tests are handed out a file at a time,
# and the files that share a session fixture that trains or builds for tens of seconds go
# together, so it is built once: `demo_run` (conftest.py) and `world` (tests/cli/conftest.py).
FILE_GROUPS = {
    "tests/training/test_learning.py": "demo_run",
    "tests/metrics/test_evaluate.py": "demo_run",
    "tests/cli/test_outputs.py": "demo_run",
    **{
        f"tests/cli/test_bad_{tool}.py": "world"
        for tool in ("train", "generate", "evaluate", "plot_report")
    },
    # One worker compiles the sampler's float64, bf16 and conditioned kernels (numba, ~6-12 s
    # each on a fresh clone before its cache exists), not both.
    **{
        f"tests/sampling/test_{name}.py": "sampling"
        for name in ("kernels", "cached", "conditioned")
    },
    # The report tests share one real run (test_report.train_tiny_run), trained once per worker.
    "tests/metrics/test_report.py": "report",
    "tests/cli/test_report_browser.py": "report",
}
# Groups go out in collection order, each to the first worker free: the longest first (about
# 100, 90, 80, 60 and 60 s on 2026-12-03), the short ones fill in behind them (the rest in file
# order).
LONGEST_FIRST = (
    "world",
    "tests/cli/test_faults.py",
    "tests/cli/test_sweeps.py",
    "tests/training/test_learning_asterisk4.py",
    "demo_run",
    "sampling",
    "tests/metrics/test_listening.py",
    "tests/scripts/test_scripts.py",
    "tests/cli/test_cli.py",
    "tests/training/test_distributed.py",
    "report",
    "tests/training/test_loop.py",
    "tests/cli/test_conditioned_tools.py",
)


def _group(nodeid: str) -> str:
    path = nodeid.split("::")[0]
    return FILE_GROUPS.get(path, path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    # Hand groups out in collection order (LONGEST_FIRST), not xdist's default of the groups
    # with the most tests first, which left the two-test asterisk4 group for the end.
    config.option.loadscopereorder = False
    return ByGroup(config, log)


def pytest_runtest_setup(item):
    """@pytest.mark.requires(available, reason): skip without the optional part, fail under CI
    (tools.require)."""
    for mark in item.iter_markers("requires"):
        tools.require(*mark.args, **mark.kwargs)


def pytest_collection_modifyitems(config, items):
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))  # stable


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def demo_root(repo_root: Path) -> Path:
    """The bundled demo speech subset, data/demo (metadata.csv + wavs/*.flac)."""
    return repo_root / "data" / "demo"


@pytest.fixture(scope="session")
def asterisk_root() -> Path:
    """The full shared asterisk4 speech set (../shared/speech/asterisk4). Tests using it skip
    where it is not mounted, except in CI (CI=true), where its absence is a failure: CI must
    run the learning checks, not skip them."""
    tools.require(ASTERISK_ROOT.is_dir(), f"shared speech set not found: {ASTERISK_ROOT}")
    return ASTERISK_ROOT


@pytest.fixture(scope="session")
def speech(tmp_path_factory, demo_root: Path) -> Path:
    """Four real demo utterances in a plain folder (no metadata.csv), for tiny training runs."""
    root = tmp_path_factory.mktemp("speech")
    for path in sorted((demo_root / "wavs").glob("*.flac"))[:4]:
        shutil.copy(path, root / path.name)
    return root


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory) -> Path:
    """One dataset cache for the session (a store per dataset path, each file's size and mtime
    recorded, so tests cannot see each other's data), set in os.environ so the tools'
    subprocesses use it too: no test writes ~/.cache, and each dataset is decoded once per
    session."""
    cache = tmp_path_factory.mktemp("wavenet-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("WAVENET_CACHE_DIR", str(cache))
    yield cache
    patch.undo()


# -------------------------------------------------------------------------- Hydra and train


@pytest.fixture(scope="session")
def compose() -> Callable[..., "DictConfig"]:  # noqa: F821 (omegaconf, imported where used)
    """compose(*overrides) -> the DictConfig wavenet-train would run (wavenet.conf + overrides)."""
    return tools.compose


@pytest.fixture(scope="session")
def train_run() -> Callable[..., dict]:
    """train_run(run_dir, *overrides): wavenet.training.loop.train in this process on the
    composed config, as wavenet-train runs it; returns the last metrics record."""
    return tools.train_run


# A tiny model on the bundled demo speech, long enough to learn more than a few samples'
# statistics: about 30 s on one core (tests/training/test_learning.py measures what it reaches).
DEMO_RUN = [
    "model=tiny",
    "data.crop=500",
    "train.batch_size=8",
    "train.lr=7e-3",
    "train.warmup_steps=20",
    "train.max_steps=800",
    "train.val_every=800",
    "train.sample_seconds=0",
    "train.threads=1",
    "train.progress=false",
]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_root: Path) -> Path:
    """The run dir of DEMO_RUN on data/demo (checkpoints/last.pt, metrics.jsonl,
    data_report.json), trained in this process once per session."""
    run = tmp_path_factory.mktemp("demo_run")
    tools.train_run(run, *DEMO_RUN, f"data.root={demo_root}")
    return run


# ---------------------------------------------------------------------- command-line tools


@pytest.fixture(scope="session")
def cli() -> Callable[..., "tools.CompletedProcess"]:
    """cli(name, *args, cwd=DIR, ok=True): run the installed console script `name` as a real
    process (for what needs one: Hydra's command line, exit codes, signals, torchrun)."""

    def cli(name: str, *args: str, cwd: Path, ok: bool = True) -> tools.CompletedProcess:
        return tools.run_tool(name, *args, cwd=cwd, ok=ok)

    return cli


@pytest.fixture
def cli_main(capsys) -> Callable[..., "tools.CompletedProcess"]:
    """cli_main(name, *args, ok=False): run wavenet-generate, -evaluate, -plot or -report
    through its `main(argv)` in this process (argument checks and runs whose process does not
    matter); returns a CompletedProcess with the exit status (SystemExit's code, 0 on return)
    and what it printed; with ok=True, asserts it exited 0."""

    def cli_main(name: str, *args: str, ok: bool = False) -> tools.CompletedProcess:
        return tools.run_main(name, *args, capsys=capsys, ok=ok)

    return cli_main
