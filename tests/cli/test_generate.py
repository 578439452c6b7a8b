"""wavenet-generate in process: each bad argument is one line and exit 2; impl= and threads=
reach the sampler."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from builders import TINY_ARCH, random_model, save_model_checkpoint
from tools import one_line_error

from wavenet import checkpoint, mulaw
from wavenet.cli import generate as cli_generate
from wavenet.sampling import kernel
from wavenet.sampling.cached import generate

needs_numba = pytest.mark.requires(kernel.available(), "numba is not installed")


@pytest.mark.parametrize(
    "args,match",
    [
        (["checkpoint=/nonexistent/x.pt"], "checkpoint not found"),
        (["checkpoint=README.md"], "README.md"),
        (["seconds=-1", "checkpoint=x.pt"], "seconds"),
        (["batch=0", "checkpoint=x.pt"], "batch"),
        (["checkpoint=x.pt", "colour=red"], "colour"),
        (["stray"], "key=value"),
    ],
)
def test_generate_user_errors_are_one_line(args, match, repo_root, cli_main, monkeypatch):
    monkeypatch.chdir(repo_root)  # checkpoint=README.md
    one_line_error(cli_main("wavenet-generate", *args), "wavenet-generate: error:", match)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_model_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny.pt", random_model(TINY_ARCH)
    )


@pytest.mark.parametrize("impl", ["reference", pytest.param("compiled", marks=needs_numba)])
def test_impl_and_threads_reach_the_sampler(impl, tiny_checkpoint, tmp_path, cli_main, monkeypatch):
    """impl= picks the sampler path and threads= the torch threads it runs on; the file holds
    what that path draws with the seed."""
    seen = []
    real = cli_generate.generate

    def spy(*args, **kwargs):
        seen.append((kwargs["impl"], torch.get_num_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_generate, "generate", spy)
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={tiny_checkpoint}",
        f"impl={impl}",
        "threads=2",
        "seconds=0.02",
        "seed=5",
        f"out={tmp_path}",
        "progress=false",
        ok=True,
    )
    assert seen == [(impl, 2)]
    model = checkpoint.build_model(checkpoint.load(tiny_checkpoint))
    drawn = next(generate(model, 320, generator=torch.Generator().manual_seed(5), impl=impl))
    audio, _ = sf.read(proc.stdout.strip())
    assert np.abs(audio - mulaw.decode(drawn[0]).numpy()).max() <= 1 / 32767


def test_an_unknown_impl_is_one_line(tiny_checkpoint, tmp_path, cli_main):
    proc = cli_main(
        "wavenet-generate", f"checkpoint={tiny_checkpoint}", "impl=quantum", f"out={tmp_path}"
    )
    one_line_error(proc, "wavenet-generate: error:", "impl", "quantum")


def test_temperature_defaults_to_the_checkpoints_own(tiny_checkpoint, tmp_path, cli_main):
    """No temperature=: a checkpoint's own temperature (export's or its run's
    train.sample_temperature), 1.0 for one that names none; temperature= overrides either."""
    cold = tmp_path / "cold.pt"
    checkpoint.export(tiny_checkpoint, cold, temperature=0.3)

    def drawn(ckpt: Path, *args: str) -> np.ndarray:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        proc = cli_main(
            "wavenet-generate",
            f"checkpoint={ckpt}",
            "seconds=0.05",
            "seed=2",
            f"out={out}",
            "progress=false",
            *args,
            ok=True,
        )
        return sf.read(proc.stdout.strip())[0]

    assert "temperature" not in checkpoint.load(tiny_checkpoint)
    default = drawn(cold)
    assert np.array_equal(default, drawn(cold, "temperature=0.3"))
    assert not np.array_equal(default, drawn(cold, "temperature=1.0"))
    assert np.array_equal(drawn(tiny_checkpoint), drawn(cold, "temperature=1"))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize(
    "device, impl",
    [
        ("cpu", "reference"),
        ("auto", "reference"),
        pytest.param("cuda", "reference", marks=needs_cuda),
        pytest.param("cuda", "cuda-graph", marks=needs_cuda),
        pytest.param("auto", "cuda-graph", marks=needs_cuda),
    ],
)
def test_device_moves_the_model_and_the_file_holds_its_draws(
    device, impl, tiny_checkpoint, tmp_path, cli_main, monkeypatch
):
    """device= puts the model where the sampler runs (cuda-graph on a GPU from the command
    line); the file holds what the same path draws there with the seed."""
    seen = []
    real = cli_generate.generate

    def spy(model, *args, **kwargs):
        seen.append(model.embed.weight.device.type)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(cli_generate, "generate", spy)
    args = [f"checkpoint={tiny_checkpoint}", f"impl={impl}", f"device={device}", "seed=5"]
    proc = cli_main(
        "wavenet-generate", *args, "seconds=0.02", f"out={tmp_path}", "progress=false", ok=True
    )
    on = "cuda" if device == "cuda" or impl == "cuda-graph" else "cpu"
    assert seen == [on]
    model = checkpoint.build_model(checkpoint.load(tiny_checkpoint)).to(on)
    drawn = next(generate(model, 320, generator=torch.Generator().manual_seed(5), impl=impl))
    audio, _ = sf.read(proc.stdout.strip())
    assert np.abs(audio - mulaw.decode(drawn[0].cpu()).numpy()).max() <= 1 / 32767


def test_two_checkpoints_of_one_name_do_not_overwrite_each_other(
    tiny_checkpoint, tmp_path, cli_main
):
    """Two runs' last.pt into one out= share file names: the second is refused, naming the
    first's checkpoint, and leaves its wav as it was; the same checkpoint again replaces it."""
    a, b = tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(tiny_checkpoint.read_bytes())
    out = tmp_path / "out"
    args = ["seconds=0.01", f"out={out}", "progress=false"]
    [wav] = cli_main("wavenet-generate", f"checkpoint={a}", *args, ok=True).stdout.split()
    before = Path(wav).read_bytes()
    proc = cli_main("wavenet-generate", f"checkpoint={b}", *args)
    one_line_error(proc, "wavenet-generate: error:", wav, str(a), "out=")
    assert Path(wav).read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [Path(wav).name]  # no temporary left
    again = cli_main("wavenet-generate", f"checkpoint={a}", *args, "seed=1", ok=True)
    assert again.stdout.split() != [wav]  # another seed, another name
    cli_main("wavenet-generate", f"checkpoint={a}", *args, ok=True)  # a rerun replaces


def test_a_fifo_as_checkpoint_is_refused_without_blocking(tmp_path):
    """checkpoint= a FIFO (a read would wait for a writer forever): one line naming it, in a
    real process so a regression times out instead of hanging the suite."""
    import os

    from tools import run_tool

    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    proc = run_tool(
        "wavenet-generate", f"checkpoint={fifo}", f"out={tmp_path}", cwd=tmp_path, timeout=60
    )
    one_line_error(proc, "wavenet-generate: error:", str(fifo), "FIFO")
