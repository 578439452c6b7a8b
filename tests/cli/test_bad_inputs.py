"""Untrusted input through every tool: bad arguments, config values, checkpoint contents, audio,
mels, metadata rows, run directories and the disk. Each case: the exit status, exactly one line
on stderr naming the bad value or file, no traceback, and every pre-existing output and run dir
byte-for-byte unchanged (hashed before and after), with no new run dir.

Most cases call the tools in-process (`main(argv)` raises SystemExit); the few where the process
itself matters (Ctrl-C, two runs on one dir, kill -9) run the installed commands.
"""

import copy
import hashlib
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tools import env, exe, run_tool

import wavenet.cli.evaluate as evaluate_cli
import wavenet.cli.generate as generate_cli
import wavenet.cli.plot as plot_cli
import wavenet.cli.train as train_cli
from wavenet import checkpoint
from wavenet.config import model_config
from wavenet.data.dataset import load_dataset
from wavenet.data.layouts import DUPLICATE, OUTSIDE
from wavenet.model.network import WaveNet, WaveNetConfig

# ------------------------------------------------------------------------------ fixtures


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file and the name of every folder under `roots` (hidden ones too)."""
    seen = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            seen[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest()
                               if path.is_file() else "dir")
    return seen


def save_tiny(path: Path, seed: int = 0, sample_rate: int = 16000, **config) -> dict:
    """A tiny untrained checkpoint at `path`; returns its payload."""
    torch.manual_seed(seed)
    cfg = WaveNetConfig(**{**asdict(model_config("tiny")), **config})
    speakers = ["anna", "bert"] if cfg.speaker_channels else []
    model = WaveNet(cfg, speakers=len(speakers))
    payload = {"model": model.state_dict(), "model_config": asdict(cfg),
               "sample_rate": sample_rate, "classes": cfg.classes, "speakers": speakers,
               "step": 0}
    checkpoint.save(path, payload)
    return torch.load(path, weights_only=True)


VOCODER = {"mel": {"n_mels": 8, "n_fft": 64, "win_length": 64, "hop_length": 16,
                   "channels": 4, "context": 1, "upsample": [4, 4]}}


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_root) -> dict:
    """Everything the cases share, built once: data, checkpoints, a prime, mels, earlier
    generated output and a finished training run."""
    base = tmp_path_factory.mktemp("bad_inputs")
    data = base / "data"
    data.mkdir()
    for path in sorted((demo_root / "wavs").glob("*.flac"))[:4]:
        shutil.copy(path, data / path.name)
    w = {"base": base, "data": data, "prime": data / sorted(os.listdir(data))[0]}
    w["ckpt"] = base / "tiny.pt"
    w["payload"] = save_tiny(w["ckpt"])
    w["vocoder"] = base / "vocoder.pt"
    save_tiny(w["vocoder"], **VOCODER)
    w["speaker"] = base / "speaker.pt"
    save_tiny(w["speaker"], speaker_channels=4)
    w["rate48k"] = base / "rate48k.pt"
    save_tiny(w["rate48k"], sample_rate=48000)
    mels = base / "mels"
    mels.mkdir()
    good = torch.full((8, 20), -5.0)
    variants = {"good.npy": good, "bands.npy": torch.zeros(5, 20), "flat.npy": torch.zeros(20),
                "ints.npy": torch.zeros(8, 20, dtype=torch.int32),
                "empty_batch.npy": torch.zeros(0, 8, 10), "no_frames.npy": torch.zeros(8, 0),
                "nan.npy": good.clone().fill_(math.nan), "huge.npy": good.clone().fill_(1e30),
                "batch3.npy": good.expand(3, -1, -1).contiguous(),
                "big_batch.npy": torch.zeros(5000, 8, 1)}
    for name, tensor in variants.items():
        np.save(mels / name, tensor.numpy())
    torch.save(good, mels / "good.pt")
    (mels / "pickle.pt").write_bytes(pickle.dumps(Evil()))
    (mels / "garbage.npy").write_bytes(b"not numpy at all")
    w["mels"] = mels
    # Earlier output of each generator, which no failed run may touch.
    w["out"] = base / "generated"
    for ckpt, extra in ((w["ckpt"], []), (w["vocoder"], [f"mel_from={mels / 'good.npy'}"])):
        generate_cli.main([f"checkpoint={ckpt}", "seconds=0.01", f"out={w['out']}",
                           "progress=false", "impl=reference", *extra])
    assert len(list(w["out"].glob("*.wav"))) == 2
    # A finished tiny run.
    w["run"] = base / "run"
    run_tool("wavenet-train", *TRAIN, f"data.root={data}", f"hydra.run.dir={w['run']}",
             cwd=base, ok=True)
    assert (w["run"] / ".hydra" / "config.yaml").is_file()
    return w


class Evil:
    """A pickle payload that would run code on load."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/wavenet-pwned",))


TRAIN = ["model=tiny", "data.crop=100", "data.val_crops=2", "train.batch_size=2",
         "train.max_steps=2", "train.val_every=2", "train.sample_seconds=0", "train.threads=1",
         "train.progress=false"]


def one_line(capsys, call, code: int = 2, names: tuple[str, ...] = ()) -> str:
    """Call `call`, which must exit with `code` after exactly one stderr line naming `names`."""
    with pytest.raises(SystemExit) as exit_:
        call()
    out = capsys.readouterr()
    assert exit_.value.code == code, out.err
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def proc_line(proc: subprocess.CompletedProcess, code: int = 2, names=()) -> str:
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------- wavenet-generate arguments


# (arguments, names the error line must hold); {ckpt}, {mels}, {prime}, ... are filled in.
GENERATE_ARGS = [
    (["seconds=nan"], ["seconds", "nan"]),
    (["seconds=inf"], ["seconds", "inf"]),
    (["seconds=-inf"], ["seconds"]),
    (["seconds=-1"], ["seconds"]),
    (["seconds=0"], ["seconds"]),
    (["seconds=1e-9"], ["seconds", "one sample"]),
    (["seconds=1e12"], ["seconds"]),
    (["seconds=1e6"], ["seconds"]),
    (["seconds=abc"], ["seconds", "abc"]),
    (["seconds="], ["seconds="]),
    (["batch=0"], ["batch"]),
    (["batch=-1"], ["batch"]),
    (["batch=100000"], ["batch", "100000"]),
    (["batch=1.5"], ["batch", "1.5"]),
    (["batch=abc"], ["batch"]),
    (["temperature=nan"], ["temperature", "nan"]),
    (["temperature=inf"], ["temperature", "inf"]),
    (["temperature=-inf"], ["temperature"]),
    (["temperature=-1"], ["temperature"]),
    (["temperature=1e9"], ["temperature"]),
    (["temperature=warm"], ["temperature", "warm"]),
    (["prime={prime}", "prime_seconds=nan"], ["prime_seconds"]),
    (["prime={prime}", "prime_seconds=inf"], ["prime_seconds"]),
    (["prime={prime}", "prime_seconds=0"], ["prime_seconds"]),
    (["prime={prime}", "prime_seconds=-1"], ["prime_seconds"]),
    (["prime={prime}", "prime_seconds=1e-6"], ["prime_seconds", "one sample"]),
    (["seed=-1"], ["seed"]),
    (["seed=18446744073709551616"], ["seed"]),
    (["seed=x"], ["seed"]),
    (["threads=-1"], ["threads"]),
    (["threads=100000"], ["threads"]),
    (["impl=warp"], ["impl", "warp"]),
    (["impl="], ["impl="]),
    (["out="], ["out="]),
    (["checkpoint="], ["checkpoint="]),
    (["prime="], ["prime="]),
    (["mel_from="], ["mel_from="]),
    (["colour=red"], ["colour"]),
    (["seconds"], ["seconds"]),
    (["=3"], ["=3"]),
    (["progress=maybe"], ["progress", "maybe"]),
    (["speaker=[]"], ["speaker"]),
    (["speaker=[a,b]", "batch=3"], ["speaker", "batch=3"]),
    (["speaker=anna"], ["speaker"]),  # the tiny model has no speakers
    (["mel_from={mels}/good.npy"], ["mel_from"]),  # nor a mel
]


def _fill(args: list[str], w: dict) -> list[str]:
    return [a.format(ckpt=w["ckpt"], mels=w["mels"], prime=w["prime"], base=w["base"],
                     data=w["data"], vocoder=w["vocoder"], speaker=w["speaker"])
            for a in args]


def generate(w: dict, args: list[str]):
    argv = [f"checkpoint={w['ckpt']}", "seconds=0.01", f"out={w['out']}", "progress=false",
            *_fill(args, w)]
    return lambda: generate_cli.main(argv)


@pytest.mark.parametrize("args,names", GENERATE_ARGS, ids=lambda v: str(v))
def test_generate_bad_argument(world, capsys, args, names):
    before = snapshot(world["base"])
    one_line(capsys, generate(world, args), names=_fill(names, world))
    assert snapshot(world["base"]) == before


# ------------------------------------------------------ wavenet-generate checkpoint contents


def _set(key, value):
    def mutate(c):
        c[key] = value
    return mutate


def _config(key, value):
    def mutate(c):
        c["model_config"][key] = value
    return mutate


def _drop(key, where=None):
    def mutate(c):
        del (c[where] if where else c)[key]
    return mutate


def _tensor(fn):
    def mutate(c):
        fn(c["model"])
    return mutate


def _fill_weight(value):
    return _tensor(lambda m: m["head.3.weight"].fill_(value))


# (name, mutation of the tiny payload, names the error line must hold)
CHECKPOINT_CASES = [
    ("no_format", _drop("format"), ["not a wavenet checkpoint"]),
    ("other_format", _set("format", "gpt"), ["not a wavenet checkpoint"]),
    ("version_99", _set("version", 99), ["version 99"]),
    ("version_str", _set("version", "1"), ["version"]),
    ("version_0", _set("version", 0), ["version"]),
    ("no_model", _drop("model"), ["'model'"]),
    ("no_model_config", _drop("model_config"), ["model_config"]),
    ("no_sample_rate", _drop("sample_rate"), ["sample_rate"]),
    ("no_step", _drop("step"), ["step"]),
    ("config_extra_key", _config("colour", "red"), ["colour"]),
    ("config_missing_key", _drop("blocks", "model_config"), ["blocks"]),
    ("config_list", _set("model_config", [1, 2]), ["model_config", "list"]),
    ("config_string", _set("model_config", "tiny"), ["model_config", "str"]),
    ("config_none", _set("model_config", None), ["model_config"]),
    ("classes_65536", lambda c: (c["model_config"].update(classes=65536),
                                 c.update(classes=65536)), ["embed.weight"]),
    ("classes_abc", _config("classes", "abc"), ["model.classes", "abc"]),
    ("classes_1", _config("classes", 1), ["model.classes"]),
    ("classes_float", _config("classes", 256.0), ["model.classes"]),
    ("classes_bool", _config("classes", True), ["model.classes"]),
    ("blocks_0", _config("blocks", 0), ["model.blocks"]),
    ("channels_2_20", _config("residual_channels", 2**20), ["model.residual_channels"]),
    ("params_too_many", lambda c: c["model_config"].update(
        residual_channels=8192, gate_channels=16384, skip_channels=16384), ["parameters"]),
    ("layers_40", _config("layers_per_block", 40), ["model.layers_per_block"]),
    ("kernel_1", _config("kernel_size", 1), ["model.kernel_size"]),
    ("gate_odd", _config("gate_channels", 31), ["gate_channels"]),
    ("mel_list", _config("mel", [80]), ["model.mel"]),
    ("mel_bad_key", _config("mel", {"n_mels": 8, "bands": 3}), ["bands"]),
    ("mel_fmin_nan", _config("mel", {"fmin": math.nan}), ["model.mel.fmin"]),
    ("speaker_channels_str", _config("speaker_channels", "4"), ["model.speaker_channels"]),
    ("sample_rate_0", _set("sample_rate", 0), ["sample_rate", "0"]),
    ("sample_rate_neg", _set("sample_rate", -16000), ["sample_rate"]),
    ("sample_rate_abc", _set("sample_rate", "abc"), ["sample_rate", "abc"]),
    ("sample_rate_float", _set("sample_rate", 16000.5), ["sample_rate"]),
    ("sample_rate_huge", _set("sample_rate", 10**9), ["sample_rate"]),
    ("step_neg", _set("step", -1), ["step"]),
    ("step_str", _set("step", "ten"), ["step"]),
    ("classes_disagree", _set("classes", 65536), ["classes"]),
    ("speakers_without_embedding", _set("speakers", ["anna"]), ["speakers"]),
    ("speakers_not_list", _set("speakers", "anna"), ["speakers"]),
    ("wall_s_nan", _set("wall_s", math.nan), ["wall_s"]),
    ("model_not_mapping", _set("model", [1, 2, 3]), ["'model'"]),
    ("tensor_wrong_shape", _tensor(lambda m: m.__setitem__("embed.weight", torch.zeros(3, 3))),
     ["embed.weight", "(3, 3)"]),
    ("tensor_missing", _tensor(lambda m: m.pop("head.3.bias")), ["head.3.bias"]),
    ("tensor_extra", _tensor(lambda m: m.__setitem__("spy.weight", torch.zeros(1))),
     ["spy.weight"]),
    ("tensor_not_tensor", _tensor(lambda m: m.__setitem__("head.3.bias", "zeros")),
     ["head.3.bias"]),
    ("tensor_int", _tensor(lambda m: m.__setitem__("head.3.bias", m["head.3.bias"].long())),
     ["head.3.bias", "int64"]),
    ("weights_nan", _fill_weight(math.nan), ["head.3.weight", "NaN"]),
    ("weights_inf", _fill_weight(math.inf), ["head.3.weight"]),
]


@pytest.mark.parametrize("name,mutate,names", CHECKPOINT_CASES, ids=[c[0] for c in
                                                                      CHECKPOINT_CASES])
def test_generate_bad_checkpoint_contents(world, capsys, tmp_path, name, mutate, names):
    payload = copy.deepcopy(world["payload"])
    mutate(payload)
    path = tmp_path / f"{name}.pt"
    torch.save(payload, path)
    before = snapshot(world["base"])
    one_line(capsys, generate(world, [f"checkpoint={path}"]), names=[path, *names])
    assert snapshot(world["base"]) == before


def _file_cases(tmp: Path, w: dict) -> dict[str, Path]:
    """Checkpoint files that are not checkpoints at all."""
    files = {"missing": tmp / "missing.pt", "folder": tmp}
    (tmp / "empty.pt").write_bytes(b"")
    files["empty"] = tmp / "empty.pt"
    (tmp / "random.pt").write_bytes(os.urandom(4096))
    files["random"] = tmp / "random.pt"
    (tmp / "truncated.pt").write_bytes(w["ckpt"].read_bytes()[:3000])
    files["truncated"] = tmp / "truncated.pt"
    torch.save({"weights": Evil()}, tmp / "pickle.pt", _use_new_zipfile_serialization=True)
    files["pickle"] = tmp / "pickle.pt"
    torch.save(torch.zeros(3), tmp / "tensor.pt")
    files["tensor"] = tmp / "tensor.pt"
    return files


@pytest.mark.parametrize("kind", ["missing", "folder", "empty", "random", "truncated", "pickle",
                                  "tensor"])
def test_generate_not_a_checkpoint(world, capsys, tmp_path, kind):
    path = _file_cases(tmp_path, world)[kind]
    before = snapshot(world["base"])
    one_line(capsys, generate(world, [f"checkpoint={path}"]), names=[path])
    assert snapshot(world["base"]) == before
    assert not Path("/tmp/wavenet-pwned").exists()


# ------------------------------------------------- wavenet-generate prime, mel, speakers, out


def _prime_files(base: Path) -> dict[str, Path]:
    folder = base / "primes"
    if not folder.exists():
        folder.mkdir()
        (folder / "text.wav").write_text("RIFF? no, a text file")
        sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
        sf.write(folder / "nan.wav", np.full(100, np.nan, dtype=np.float32), 16000,
                 subtype="FLOAT")
        (folder / "a_folder.wav").mkdir()
        sf.write(folder / "short.wav", np.zeros(8, dtype=np.float32), 16000)
    return {p.stem: p for p in folder.iterdir()}


PRIME_MEL_CASES = [
    (["prime={base}/no_such.wav"], ["no_such.wav"]),
    (["prime={base}/primes/text.wav"], ["text.wav"]),
    (["prime={base}/primes/empty.wav"], ["empty.wav"]),
    (["prime={base}/primes/nan.wav"], ["nan.wav", "NaN"]),
    (["prime={base}/primes/a_folder.wav"], ["a_folder.wav"]),
    (["checkpoint={vocoder}"], ["mel_from"]),
    (["checkpoint={vocoder}", "mel_from={mels}/missing.npy"], ["missing.npy"]),
    (["checkpoint={vocoder}", "mel_from={mels}/bands.npy"], ["bands.npy", "5 mel bands"]),
    (["checkpoint={vocoder}", "mel_from={mels}/flat.npy"], ["flat.npy"]),
    (["checkpoint={vocoder}", "mel_from={mels}/ints.npy"], ["ints.npy"]),
    (["checkpoint={vocoder}", "mel_from={mels}/empty_batch.npy"], ["empty_batch.npy"]),
    (["checkpoint={vocoder}", "mel_from={mels}/no_frames.npy"], ["no_frames.npy"]),
    (["checkpoint={vocoder}", "mel_from={mels}/nan.npy"], ["nan.npy", "NaN"]),
    (["checkpoint={vocoder}", "mel_from={mels}/huge.npy"], ["huge.npy"]),
    (["checkpoint={vocoder}", "mel_from={mels}/pickle.pt"], ["pickle.pt"]),
    (["checkpoint={vocoder}", "mel_from={mels}/garbage.npy"], ["garbage.npy"]),
    (["checkpoint={vocoder}", "mel_from={mels}/batch3.npy", "batch=2"], ["batch3.npy", "batch=2"]),
    (["checkpoint={vocoder}", "mel_from={mels}/big_batch.npy"], ["big_batch.npy", "batch"]),
    (["checkpoint={vocoder}", "mel_from={mels}/good.npy", "prime={prime}"],
     ["good.npy", "prime"]),  # the mel is shorter than the prime
    (["checkpoint={vocoder}", "mel_from={base}/primes/short.wav"], ["short.wav"]),
    (["checkpoint={speaker}"], ["speaker=NAME", "anna"]),
    (["checkpoint={speaker}", "speaker=zoe"], ["zoe", "anna"]),
    (["checkpoint={speaker}", "speaker=[anna,zoe]"], ["zoe"]),
    (["out={base}/tiny.pt"], ["tiny.pt"]),  # a file, not a folder
    (["out={base}/tiny.pt/sub"], ["tiny.pt"]),
    (["seconds=80000", "batch=4000"], ["MiB free"]),  # more than the disk holds
    (["checkpoint={base}/rate48k.pt", "seconds=86400"], ["4 GiB"]),  # past the wav format
    (["prime={prime}", "batch=4096"], ["memory"]),  # the primed pass would not fit
]


@pytest.mark.parametrize("args,names", PRIME_MEL_CASES, ids=lambda v: str(v))
def test_generate_bad_prime_mel_speaker_or_output(world, capsys, args, names):
    _prime_files(world["base"])
    before = snapshot(world["base"])
    one_line(capsys, generate(world, args), names=_fill(names, world))
    assert snapshot(world["base"]) == before


def test_generate_success_replaces_files_whole(world, capsys, tmp_path):
    """A good run writes complete files and leaves no temporary behind."""
    out = tmp_path / "fresh" / "deeper"
    generate_cli.main([f"checkpoint={world['ckpt']}", "seconds=0.01", f"out={out}",
                       "progress=false", "impl=reference", "batch=2"])
    names = sorted(p.name for p in out.iterdir())
    assert names == ["tiny_seed0_0.wav", "tiny_seed0_1.wav"]
    assert sf.info(out / names[0]).frames == 160


def test_generate_error_leaves_no_new_folder(world, capsys, tmp_path):
    out = tmp_path / "never" / "made"
    one_line(capsys, lambda: generate_cli.main([f"checkpoint={world['ckpt']}", f"out={out}",
                                                "temperature=-2"]), names=["temperature"])
    assert not (tmp_path / "never").exists()


def test_generate_ctrl_c_is_one_line_and_keeps_earlier_output(world, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(world["out"], out)
    before = snapshot(out)
    proc = subprocess.Popen([exe("wavenet-generate"), f"checkpoint={world['ckpt']}",
                             "seconds=600", f"out={out}", "progress=false", "impl=reference"],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob(".*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.1)  # generating: the temporaries are open
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "wavenet-generate: interrupted"
    assert snapshot(out) == before  # nothing replaced, no temporary left


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
    (outside / "metadata.csv").write_text("file,speaker\n../data/{}\n/etc/passwd\n".format(
        world["prime"].name))


@pytest.mark.parametrize("args,names", EVALUATE_CASES, ids=lambda v: str(v))
def test_evaluate_bad_input(world, evaluate_files, capsys, args, names):
    before = snapshot(world["base"])
    argv = ["progress=false", *_fill(args, world)]
    one_line(capsys, lambda: evaluate_cli.main(argv), names=_fill(names, world))
    assert snapshot(world["base"]) == before


def test_evaluate_output_is_strict_json(world, capsys, tmp_path):
    evaluate_cli.main([f"checkpoint={world['ckpt']}", f"data.root={world['data']}",
                       "progress=false", f"json_out={tmp_path / 'r.json'}"])
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
    rows = ["wavs/a.flac", "wavs/b.flac", "../secret.wav", "../nothing_here.wav", str(secret),
            "wavs/link.flac", *["wavs/a.flac"] * 50, "wavs/../wavs/b.flac"]
    (root / "metadata.csv").write_text("file,speaker\n" + "\n".join(rows) + "\n")
    dataset = load_dataset(root, 16000, cache_dir=tmp_path / "cache")
    assert [u.name for u in dataset.utterances] == ["wavs/a.flac", "wavs/b.flac"]
    reasons = dict(dataset.skipped)
    # Same word whether the outside file exists or not.
    for row in ("../secret.wav", "../nothing_here.wav", str(secret), "wavs/link.flac"):
        assert reasons[row] == OUTSIDE
    assert reasons["wavs/../wavs/b.flac"] == DUPLICATE
    assert sum(1 for name, r in dataset.skipped if r == DUPLICATE) == 51


# ---------------------------------------------------------------------------- wavenet-train


TRAIN_CASES = [
    ("model.blocks=0", ["model.blocks"]),
    ("model.blocks=three", ["model.blocks", "three"]),
    ("model.residual_channels=1048576", ["model.residual_channels"]),
    ("model.layers_per_block=40", ["model.layers_per_block"]),
    ("model.classes=1", ["model.classes"]),
    ("model.kernel_size=1", ["model.kernel_size"]),
    ("model.gate_channels=7", ["model.gate_channels"]),
    ("model.speaker_channels=-1", ["model.speaker_channels"]),
    ("model.mel.n_mels=-1", ["model.mel.n_mels"]),
    ("model.mel.hop_length=100", ["model.mel.upsample"]),
    ("model.mel.fmin=nan", ["model.mel.fmin"]),
    ("model.mel.fmax=inf", ["model.mel.fmax"]),
    ("train.lr=inf", ["train.lr", "inf"]),
    ("train.lr=nan", ["train.lr", "nan"]),
    ("train.lr=0", ["train.lr"]),
    ("train.lr=-1", ["train.lr"]),
    ("train.grad_clip=nan", ["train.grad_clip", "nan"]),
    ("train.grad_clip=-1", ["train.grad_clip"]),
    ("train.checkpoint_minutes=nan", ["train.checkpoint_minutes", "nan"]),
    ("train.checkpoint_minutes=inf", ["train.checkpoint_minutes"]),
    ("train.weight_decay=nan", ["train.weight_decay"]),
    ("train.min_lr_ratio=2", ["train.min_lr_ratio"]),
    ("train.ema_decay=1", ["train.ema_decay"]),
    ("train.ema_decay=nan", ["train.ema_decay"]),
    ("train.sample_seconds=inf", ["train.sample_seconds"]),
    ("train.sample_temperature=nan", ["train.sample_temperature"]),
    ("train.max_steps=0", ["train.max_steps"]),
    ("train.batch_size=0", ["train.batch_size"]),
    ("train.accumulate=0", ["train.accumulate"]),
    ("train.threads=-1", ["train.threads"]),
    ("train.seed=-1", ["train.seed"]),
    ("train.precision=fp8", ["train.precision", "fp8"]),
    ("train.device=tpu", ["train.device", "tpu"]),
    ("train.lr_schedule=linear", ["train.lr_schedule", "linear"]),
    ("train.resume=", ["train.resume"]),
    ("data.val_fraction=nan", ["data.val_fraction"]),
    ("data.val_fraction=1", ["data.val_fraction"]),
    ("data.sample_rate=0", ["data.sample_rate"]),
    ("data.crop=0", ["data.crop"]),
    ("data.trim_db=nan", ["data.trim_db"]),
    ("data.trim_db=3", ["data.trim_db"]),
    ("data.layout=xml", ["data.layout", "xml"]),
    ("data.val_crops=0", ["data.val_crops"]),
    ("+train.colour=red", ["train.colour"]),
    ("train.max_stpes=3", ["max_stpes"]),
    ("model=huge", ["model/huge"]),
    ("logger=wandb", ["logger", "wandb"]),
]


def train_in_process(monkeypatch, cwd: Path, *args: str):
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["wavenet-train", *args])
    return train_cli.main


# Every case aims at the finished run; a quarter also at a new run dir (keeps the file fast).
TRAIN_TARGETS = [(*case, "existing") for case in TRAIN_CASES] + [
    (*case, "new") for case in TRAIN_CASES[::4]]


@pytest.mark.parametrize("override,names,target", TRAIN_TARGETS,
                         ids=[f"{c[0]}-{c[2]}" for c in TRAIN_TARGETS])
def test_train_rejected_config_touches_no_run_dir(world, capsys, monkeypatch, tmp_path,
                                                  override, names, target):
    run = world["run"] if target == "existing" else tmp_path / "runs" / "new"
    before = snapshot(world["base"])
    call = train_in_process(monkeypatch, tmp_path, *TRAIN, f"data.root={world['data']}",
                            f"hydra.run.dir={run}", override)
    one_line(capsys, call, names=["wavenet-train: error:", *names])
    assert snapshot(world["base"]) == before
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["tiny.pt", "tiny.pt/run"])
def test_train_run_dir_in_the_way_of_a_file(world, capsys, monkeypatch, tmp_path, where):
    before = snapshot(world["base"])
    call = train_in_process(monkeypatch, tmp_path, *TRAIN, f"data.root={world['data']}",
                            f"hydra.run.dir={world['base'] / where}")
    one_line(capsys, call, names=["tiny.pt"])
    assert snapshot(world["base"]) == before


def _train_proc(world, run: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([exe("wavenet-train"), *TRAIN, f"data.root={world['data']}",
                             f"hydra.run.dir={run}", *args], cwd=world["base"], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_two_runs_on_one_dir_the_second_is_refused(world, tmp_path):
    run = tmp_path / "shared_run"
    first = _train_proc(world, run, "train.max_steps=100000", "train.val_every=100000",
                        "train.checkpoint_every=5")
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()[1][-2000:]
            time.sleep(0.2)
        second = run_tool("wavenet-train", *TRAIN, f"data.root={world['data']}",
                          f"hydra.run.dir={run}", "train.seed=1", cwd=world["base"])
        proc_line(second, names=[str(run), f"pid {first.pid}"])
        assert first.poll() is None  # the first is untouched and still training
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err[-2000:]
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "seed: 0" in config and "seed: 1" not in config
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step logged twice


def test_kill_9_during_start_up_leaves_no_stale_lock(world, tmp_path):
    run = tmp_path / "killed"
    proc = _train_proc(world, run)
    deadline = time.monotonic() + 60
    while not (run / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=60)
    again = run_tool("wavenet-train", *TRAIN, f"data.root={world['data']}",
                     f"hydra.run.dir={run}", cwd=world["base"])
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.parametrize("damage,names", [
    ("nan", ["last.pt", "NaN"]),
    ("no_optimizer", ["last.pt", "optimizer"]),
    ("other_model", ["last.pt", "differs"]),
    ("no_data", ["no_such_data"]),
])
def test_resume_from_a_bad_checkpoint_changes_nothing(world, tmp_path, damage, names):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    if damage == "nan":
        ckpt["model"]["head.3.weight"].fill_(math.nan)
    elif damage == "no_optimizer":
        del ckpt["optimizer"]
    torch.save(ckpt, last)
    before = snapshot(run)
    other = ["model.residual_channels=8"] if damage == "other_model" else []
    data = tmp_path / "no_such_data" if damage == "no_data" else world["data"]
    proc = run_tool("wavenet-train", *TRAIN, f"data.root={data}", f"hydra.run.dir={run}",
                    "train.max_steps=4", *other, cwd=world["base"])
    proc_line(proc, names=names)
    assert snapshot(run) == before


def test_resume_from_a_named_bad_checkpoint(world, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    run = tmp_path / "fresh_run"
    proc = run_tool("wavenet-train", *TRAIN, f"data.root={world['data']}",
                    f"hydra.run.dir={run}", f"train.resume={bad}", cwd=world["base"])
    proc_line(proc, names=["bad.pt"])
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing but the lock


# ----------------------------------------------------------------------------- wavenet-plot


PLOT_CASES = [
    ("{base}/no_such_run", ["no_such_run"]),
    ("{base}/mels", ["mels"]),
    ("{base}/tiny.pt", ["tiny.pt"]),
    ("{base}/plot_garbage", ["plot_garbage"]),
    ("{base}/plot_empty", ["plot_empty"]),
]


@pytest.mark.parametrize("run,names", PLOT_CASES, ids=[c[0] for c in PLOT_CASES])
def test_plot_bad_run_dir(world, capsys, tmp_path, run, names):
    base = world["base"]
    (base / "plot_garbage").mkdir(exist_ok=True)
    (base / "plot_garbage" / "metrics.jsonl").write_text("{not json\n\x00\x01\n")
    (base / "plot_empty").mkdir(exist_ok=True)
    (base / "plot_empty" / "metrics.jsonl").write_text("")
    before = snapshot(base)
    out = tmp_path / "curves.png"
    argv = [_fill([run], world)[0], "--out", str(out)]
    one_line(capsys, lambda: plot_cli.main(argv), names=_fill(names, world))
    assert snapshot(base) == before and not out.exists()


@pytest.mark.parametrize("out,names", [("{base}/tiny.pt/curves.png", ["tiny.pt"]),
                                       ("{base}/curves.xyz", ["xyz"])])
def test_plot_bad_output(world, capsys, out, names):
    before = snapshot(world["base"])
    argv = [str(world["run"]), "--out", _fill([out], world)[0]]
    one_line(capsys, lambda: plot_cli.main(argv), names=names)
    assert snapshot(world["base"]) == before


# --------------------------------------------------------------------------- wavenet-report


@pytest.mark.parametrize("run,names", PLOT_CASES[:3], ids=[c[0] for c in PLOT_CASES[:3]])
def test_report_bad_run_dir(world, capsys, run, names):
    import wavenet.cli.report as report_cli

    before = snapshot(world["base"])
    argv = _fill([run], world)
    one_line(capsys, lambda: report_cli.main(argv), names=_fill(names, world))
    assert snapshot(world["base"]) == before


USAGE_CASES = [([], ["RUN_DIR"]), (["{run}", "--bogus"], ["--bogus"]),
               (["{run}", "--out"], ["--out"])]


@pytest.mark.parametrize("tool", ["plot", "report"])
@pytest.mark.parametrize("argv,names", USAGE_CASES, ids=["no_run", "unknown_option", "no_out"])
def test_argparse_usage_errors_are_one_line(world, capsys, tool, argv, names):
    import wavenet.cli.report as report_cli

    main = {"plot": plot_cli.main, "report": report_cli.main}[tool]
    argv = [str(world["run"]) if a == "{run}" else a for a in argv]
    before = snapshot(world["base"])
    one_line(capsys, lambda: main(argv), names=[f"wavenet-{tool}: error:", *names])
    assert snapshot(world["base"]) == before
