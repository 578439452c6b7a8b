"""A built wheel carries its Hydra configs: the tools work from an installed package, away from
the checkout."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from wavenet.config import CONF_DIR


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools leaves build/ beside the sources it builds.
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, source / name)
    for name in ("wavenet", "conf", "data"):
        shutil.copytree(
            repo_root / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(out.glob("wavenet-*.whl"))
    site = out / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def test_the_wheel_holds_every_package(unpacked_wheel, repo_root):
    # pyproject.toml lists the packages (conf/ mapped in as wavenet.conf): a new sub-package
    # left off the list fails here.
    def packages(root):
        return {str(p.parent.relative_to(root)) for p in (root / "wavenet").rglob("__init__.py")}

    assert packages(unpacked_wheel) == packages(repo_root) | {"wavenet/conf"}
    # What the defaults read: the shipped models and the demo speech, in the package.
    shipped = unpacked_wheel / "wavenet" / "shipped"
    assert (shipped / "pretrained" / "asterisk4-small.pt").is_file()
    assert len(list((shipped / "demo" / "wavs").glob("*.flac"))) == len(
        list((repo_root / "data" / "demo" / "wavs").glob("*.flac"))
    )


def test_the_wheel_holds_every_config(unpacked_wheel):
    shipped = {p.relative_to(CONF_DIR) for p in CONF_DIR.rglob("*.yaml")}
    packed = {
        p.relative_to(unpacked_wheel / "wavenet" / "conf")
        for p in (unpacked_wheel / "wavenet" / "conf").rglob("*.yaml")
    }
    assert shipped and packed == shipped


def installed(site: Path, cwd: Path, tool: str, *args: str) -> subprocess.CompletedProcess:
    """Run `tool`'s main with `args` from the installed files in `site` (not the checkout), in
    `cwd`, a folder outside the checkout."""
    module = {"wavenet-train": "train", "wavenet-generate": "generate"}[tool]
    code = (
        f"import sys, wavenet; print(wavenet.__file__); sys.argv = {[tool, *args]!r}; "
        f"from wavenet.cli.{module} import main; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def test_the_installed_package_generates_and_trains_with_what_it_ships(unpacked_wheel, tmp_path):
    # The defaults: the shipped model for generate, the demo speech for experiment=demo.
    proc = installed(unpacked_wheel, tmp_path, "wavenet-generate", "seconds=0.5", "progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, wav = proc.stdout.split()
    assert first.startswith(str(unpacked_wheel))
    audio, rate = sf.read(tmp_path / wav)
    assert rate == 16000 and len(audio) == 8000
    proc = installed(
        unpacked_wheel,
        tmp_path,
        "wavenet-train",
        "experiment=demo",
        "train=quick",
        "model=tiny",
        "data.crop=200",
        "train.max_steps=2",
        "train.val_every=2",
        "train.sample_seconds=0",
        "train.progress=false",
        "hydra.run.dir=run",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert str(unpacked_wheel) in json.dumps(report)  # it read the wheel's demo speech


def test_wavenet_train_composes_from_the_installed_package(unpacked_wheel, tmp_path):
    proc = installed(
        unpacked_wheel, tmp_path, "wavenet-train", "--cfg", "job", "experiment=speaker_demo"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, *config = proc.stdout.splitlines()
    assert first.startswith(str(unpacked_wheel))  # the wheel's package, not the checkout's
    text = "\n".join(config)
    # speaker_demo inherits demo (small model, demo data, its training settings).
    assert "name: speaker_demo" in text and "speaker_channels: 16" in text
    assert "residual_channels: 32" in text and "max_steps: 1200" in text
