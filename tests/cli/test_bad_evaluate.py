"""wavenet-evaluate: bad input, strict JSON, dataset rows outside the root or repeated.

What every case holds: tests/bad_inputs.py.
"""

import copy
import json
import math
import shutil

import pytest
import torch
from bad_inputs import (
    _fill,
    one_line,
    snapshot,
)

import wavenet.cli.evaluate as evaluate_cli
from wavenet.data.dataset import load_dataset
from wavenet.data.layouts import DUPLICATE, OUTSIDE

# -------------------------------------------------------------------------- wavenet-evaluate


EVALUATE_CASES = [
    ([], ["checkpoint"]),
    (["checkpoint={ckpt}"], ["data.root"]),
    (["checkpoint=", "data.root={data}"], ["checkpoint="]),
    (["checkpoint={ckpt}", "data.root="], ["data.root="]),
    (["checkpoint={ckpt}", "data.root={data}", "batch=0"], ["batch"]),
    (["checkpoint={ckpt}", "data.root={data}", "batch=nan"], ["batch"]),
    (["checkpoint={ckpt}", "data.root={data}", "batch=100000"], ["batch"]),
    (["checkpoint={ckpt}", "data.root={data}", "chunk=0"], ["chunk"]),
    (["checkpoint={ckpt}", "data.root={data}", "chunk=1e12"], ["chunk"]),
    (["checkpoint={ckpt}", "data.root={data}", "threads=-1"], ["threads"]),
    (["checkpoint={ckpt}", "data.root={data}", "data.layout=xml"], ["data.layout", "xml"]),
    (["checkpoint={ckpt}", "data.root={data}", "data.trim_db=nan"], ["data.trim_db"]),
    (["checkpoint={ckpt}", "data.root={data}", "data.trim_db=inf"], ["data.trim_db"]),
    (["checkpoint={ckpt}", "data.root={data}", "data.trim_db=6"], ["data.trim_db"]),
    (["checkpoint={ckpt}", "data.root={data}", "data.cache_dir="], ["data.cache_dir="]),
    (["checkpoint={ckpt}", "data.root={data}", "colour=red"], ["colour"]),
    (["checkpoint={ckpt}", "data.root={data}", "--json-out"], ["--json-out"]),
    (["checkpoint={ckpt}", "data.root={data}", "json_out="], ["json_out="]),
    (["checkpoint={ckpt}", "data.root={data}", "stray"], ["stray"]),
    (["checkpoint={base}/missing.pt", "data.root={data}"], ["missing.pt"]),
    (["checkpoint={ckpt}", "data.root={base}/no_such_dir"], ["no_such_dir"]),
    (["checkpoint={ckpt}", "data.root={base}/tiny.pt"], ["tiny.pt"]),
    (["checkpoint={ckpt}", "data.root={base}/mels"], ["mels", "no audio"]),
    (["checkpoint={ckpt}", "data.root={base}/outside_only"], ["outside the dataset root"]),
    (["checkpoint={speaker}", "data.root={data}"], ["speaker"]),
    (["checkpoint={base}/nan_weights.pt", "data.root={data}"], ["NaN"]),
    (["checkpoint={base}/overflow.pt", "data.root={data}"], ["not finite"]),
]


@pytest.fixture(scope="module")
def evaluate_files(world) -> None:
    base = world["base"]
    payload = copy.deepcopy(world["payload"])
    payload["model"]["head.3.weight"].fill_(math.nan)
    torch.save(payload, base / "nan_weights.pt")
    payload = copy.deepcopy(world["payload"])
    payload["model"]["head.3.weight"].fill_(3e38)  # finite weights, overflowing logits
    payload["model"]["head.3.bias"][0] = -3e38
    torch.save(payload, base / "overflow.pt")
    outside = base / "outside_only"
    outside.mkdir()
    (outside / "metadata.csv").write_text(
        "file,speaker\n../data/{}\n/etc/passwd\n".format(world["prime"].name)
    )


@pytest.mark.parametrize("args,names", EVALUATE_CASES, ids=lambda v: str(v))
def test_evaluate_bad_input(world, evaluate_files, capsys, args, names):
    before = snapshot(world["base"])
    argv = ["progress=false", *_fill(args, world)]
    one_line(capsys, lambda: evaluate_cli.main(argv), names=_fill(names, world))
    assert snapshot(world["base"]) == before


def test_evaluate_output_is_strict_json(world, capsys, tmp_path):
    evaluate_cli.main(
        [
            f"checkpoint={world['ckpt']}",
            f"data.root={world['data']}",
            "progress=false",
            f"json_out={tmp_path / 'r.json'}",
        ]
    )
    line = capsys.readouterr().out.strip()
    parse = lambda text: json.loads(text, parse_constant=lambda c: pytest.fail(c))  # noqa: E731
    assert parse(line) == parse((tmp_path / "r.json").read_text())


# ----------------------------------------------------------------------- data outside the root


def test_rows_outside_the_root_and_repeats_are_skipped_and_reported(world, tmp_path):
    root = tmp_path / "set"
    (root / "wavs").mkdir(parents=True)
    first, second = sorted(world["data"].iterdir())[:2]
    shutil.copy(first, root / "wavs" / "a.flac")
    shutil.copy(second, root / "wavs" / "b.flac")
    secret = tmp_path / "secret.wav"
    shutil.copy(first, secret)
    (root / "wavs" / "link.flac").symlink_to(secret)
    rows = [
        "wavs/a.flac",
        "wavs/b.flac",
        "../secret.wav",
        "../nothing_here.wav",
        str(secret),
        "wavs/link.flac",
        *["wavs/a.flac"] * 50,
        "wavs/../wavs/b.flac",
    ]
    (root / "metadata.csv").write_text("file,speaker\n" + "\n".join(rows) + "\n")
    dataset = load_dataset(root, 16000, cache_dir=tmp_path / "cache")
    assert [u.name for u in dataset.utterances] == ["wavs/a.flac", "wavs/b.flac"]
    reasons = dict(dataset.skipped)
    # Same word whether the outside file exists or not.
    for row in ("../secret.wav", "../nothing_here.wav", str(secret), "wavs/link.flac"):
        assert reasons[row] == OUTSIDE
    assert reasons["wavs/../wavs/b.flac"] == DUPLICATE
    assert sum(1 for name, r in dataset.skipped if r == DUPLICATE) == 51
