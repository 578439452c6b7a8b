"""A built wheel carries its Hydra configs: the tools work from an installed package, away from
the checkout."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from wavenet.config import CONF_DIR


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools leaves build/ beside the sources it builds.
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, source / name)
    for name in ("wavenet", "conf"):
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


def test_the_wheel_holds_every_config(unpacked_wheel):
    shipped = {p.relative_to(CONF_DIR) for p in CONF_DIR.rglob("*.yaml")}
    packed = {
        p.relative_to(unpacked_wheel / "wavenet" / "conf")
        for p in (unpacked_wheel / "wavenet" / "conf").rglob("*.yaml")
    }
    assert shipped and packed == shipped


def test_wavenet_train_composes_from_the_installed_package(unpacked_wheel, tmp_path):
    code = (
        "import sys, wavenet; print(wavenet.__file__); "
        "sys.argv = ['wavenet-train', '--cfg', 'job', 'experiment=speaker_demo']; "
        "from wavenet.cli.train import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(unpacked_wheel), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, *config = proc.stdout.splitlines()
    assert first.startswith(str(unpacked_wheel))  # the wheel's package, not the checkout's
    text = "\n".join(config)
    # speaker_demo inherits demo (small model, demo data, its training settings).
    assert "name: speaker_demo" in text and "speaker_channels: 16" in text
    assert "residual_channels: 32" in text and "max_steps: 1200" in text
