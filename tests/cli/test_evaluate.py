"""wavenet-evaluate on the command line: the JSON it prints and writes, and one-line errors
(argument checks run its main() in process)."""

import json
import shutil
from pathlib import Path

import pytest
from builders import TINY_ARCH, random_model, save_model_checkpoint
from tools import one_line_error

from wavenet.data.dataset import load_dataset
from wavenet.metrics.evaluate import evaluate


@pytest.fixture(scope="module")
def small_set(demo_root, tmp_path_factory) -> Path:
    """Four demo files of two speakers, with a metadata.csv."""
    root = tmp_path_factory.mktemp("speech")
    rows = [line.split(",") for line in (demo_root / "metadata.csv").read_text().splitlines()[1:]]
    chosen = [r for r in rows if r[1] == "allison"][:2] + [r for r in rows if r[1] == "june"][:2]
    (root / "wavs").mkdir()
    for name, _, _ in chosen:
        shutil.copy(demo_root / name, root / name)
    (root / "metadata.csv").write_text(
        "file,speaker\n" + "".join(f"{r[0]},{r[1]}\n" for r in chosen)
    )
    return root


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    return save_model_checkpoint(path, random_model(TINY_ARCH))


def test_cli_prints_and_writes_json(random_checkpoint, small_set, tmp_path, cli):
    """The installed console script, in its own process."""
    out = tmp_path / "results" / "eval.json"
    proc = cli(
        "wavenet-evaluate",
        f"checkpoint={random_checkpoint}",
        f"data.root={small_set}",
        "batch=2",
        "chunk=8000",
        f"json_out={out}",
        "progress=false",
        "threads=1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert json.loads(out.read_text()) == result
    for key in (
        "bits_per_sample",
        "per_speaker",
        "samples",
        "files",
        "uniform_bits_per_sample",
        "unigram_bits_per_sample",
    ):
        assert key in result, key
    assert result["files"] == 4 and sorted(result["per_speaker"]) == ["allison", "june"]
    # The same numbers as the function, rounded to 5 decimals.
    utterances = load_dataset(small_set, 16000, min_samples=2).utterances
    direct = evaluate(random_model(TINY_ARCH), utterances, chunk=8000)
    assert result["samples"] == direct["samples"]
    assert result["bits_per_sample"] == pytest.approx(direct["bits_per_sample"], abs=1e-5)


def test_cli_accepts_the_json_out_flag(random_checkpoint, small_set, tmp_path, cli_main):
    out = tmp_path / "flag.json"
    proc = cli_main(
        "wavenet-evaluate",
        f"checkpoint={random_checkpoint}",
        f"data.root={small_set}",
        "--json-out",
        str(out),
        "progress=false",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == json.loads(proc.stdout)


@pytest.mark.parametrize(
    "make_args,match",
    [
        (
            lambda ck, data, tmp: [f"checkpoint={data / 'metadata.csv'}", f"data.root={data}"],
            "metadata.csv",
        ),
        (lambda ck, data, tmp: [f"checkpoint={ck}", f"data.root={tmp / 'nowhere'}"], "nowhere"),
    ],
)
def test_cli_user_errors_are_one_line(
    make_args, match, random_checkpoint, small_set, tmp_path, cli_main
):
    proc = cli_main(
        "wavenet-evaluate", *make_args(random_checkpoint, small_set, tmp_path), "progress=false"
    )
    one_line_error(proc, "wavenet-evaluate: error:", match)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args,match",
    [
        (["data.root=x"], "checkpoint"),
        (["checkpoint=x.pt"], "data.root"),
        (["checkpoint=x.pt", "data.root=x", "batch=0"], "batch"),
        (["checkpoint=x.pt", "data.root=x", "chunk=-5"], "chunk"),
        (["checkpoint=x.pt", "data.root=x", "colour=red"], "colour"),
        (["stray"], "key=value"),
        (["checkpoint=/nonexistent/x.pt", "data.root=x"], "checkpoint not found"),
    ],
)
def test_bad_arguments_are_one_line(args, match, cli_main):
    one_line_error(cli_main("wavenet-evaluate", *args), "wavenet-evaluate: error:", match)
