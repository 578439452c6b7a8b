"""Shared fixtures: repository paths, the bundled demo speech, and a per-test dataset cache."""

import shutil
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# Test tensors are small: one thread avoids OpenMP spin-waits that make tiny ops crawl when
# another process holds the second core. Tests that time or train pass threads explicitly.
torch.set_num_threads(1)
ASTERISK_ROOT = REPO_ROOT.parent / "shared" / "speech" / "asterisk4"


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
    """The full shared asterisk4 speech set; tests using it skip where it is not mounted."""
    if not ASTERISK_ROOT.is_dir():
        pytest.skip(f"shared speech set not found: {ASTERISK_ROOT}")
    return ASTERISK_ROOT


@pytest.fixture(scope="session")
def speech(tmp_path_factory, demo_root: Path) -> Path:
    """Four real demo utterances in a plain folder (no metadata.csv), for tiny training runs."""
    root = tmp_path_factory.mktemp("speech")
    for path in sorted((demo_root / "wavs").glob("*.flac"))[:4]:
        shutil.copy(path, root / path.name)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> Path:
    """Point the dataset cache at a fresh temp dir so no test writes to ~/.cache."""
    cache = tmp_path_factory.mktemp("wavenet-cache")
    monkeypatch.setenv("WAVENET_CACHE_DIR", str(cache))
    return cache
