"""wavenet-generate: bad arguments, checkpoint contents, primes, mels, speakers and outputs.

What every case holds: tests/bad_inputs.py.
"""

import copy
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from bad_inputs import (
    Evil,
    _fill,
    one_line,
    proc_line,
    snapshot,
)
from tools import env, exe, run_tool

import wavenet.cli.generate as generate_cli
from wavenet.cli import common

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
    (["device=gpu"], ["device", "gpu"]),
    (["device=cuda:x"], ["device", "cuda:x"]),
    (["device=cpu", "impl=cuda-graph"], ["impl=cuda-graph", "device=cpu"]),
    *(
        []  # where CUDA is, these are not errors (tests/cli/test_generate.py runs them)
        if torch.cuda.is_available()
        else [
            (["device=cuda"], ["device=cuda", "no", "device=cpu"]),
            (["device=cuda:1"], ["device=cuda:1", "device=cpu"]),
            (["impl=cuda-graph"], ["impl=cuda-graph", "CUDA"]),
        ]
    ),
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


def generate(w: dict, args: list[str]):
    argv = [
        f"checkpoint={w['ckpt']}",
        "seconds=0.01",
        f"out={w['out']}",
        "progress=false",
        *_fill(args, w),
    ]
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
    (
        "classes_65536",
        lambda c: (c["model_config"].update(classes=65536), c.update(classes=65536)),
        ["embed.weight"],
    ),
    ("classes_abc", _config("classes", "abc"), ["model.classes", "abc"]),
    ("output_laplace", _config("output", "laplace"), ["model.output", "laplace"]),
    ("output_list", _config("output", ["mol"]), ["model.output"]),
    ("mixtures_0", _config("mixtures", 0), ["model.mixtures"]),
    ("output_mol_on_categorical_weights", _config("output", "mol"), ["embed.bias"]),
    ("classes_1", _config("classes", 1), ["model.classes"]),
    ("classes_float", _config("classes", 256.0), ["model.classes"]),
    ("classes_bool", _config("classes", True), ["model.classes"]),
    ("blocks_0", _config("blocks", 0), ["model.blocks"]),
    ("channels_2_20", _config("residual_channels", 2**20), ["model.residual_channels"]),
    (
        "params_too_many",
        lambda c: c["model_config"].update(
            residual_channels=8192, gate_channels=16384, skip_channels=16384
        ),
        ["parameters"],
    ),
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
    ("temperature_neg", _set("temperature", -0.5), ["temperature", "-0.5"]),
    ("temperature_nan", _set("temperature", math.nan), ["temperature", "nan"]),
    ("temperature_str", _set("temperature", "warm"), ["temperature", "warm"]),
    ("model_not_mapping", _set("model", [1, 2, 3]), ["'model'"]),
    (
        "tensor_wrong_shape",
        _tensor(lambda m: m.__setitem__("embed.weight", torch.zeros(3, 3))),
        ["embed.weight", "(3, 3)"],
    ),
    ("tensor_missing", _tensor(lambda m: m.pop("head.3.bias")), ["head.3.bias"]),
    (
        "tensor_extra",
        _tensor(lambda m: m.__setitem__("spy.weight", torch.zeros(1))),
        ["spy.weight"],
    ),
    (
        "tensor_not_tensor",
        _tensor(lambda m: m.__setitem__("head.3.bias", "zeros")),
        ["head.3.bias"],
    ),
    (
        "tensor_int",
        _tensor(lambda m: m.__setitem__("head.3.bias", m["head.3.bias"].long())),
        ["head.3.bias", "int64"],
    ),
    ("weights_nan", _fill_weight(math.nan), ["head.3.weight", "NaN"]),
    ("weights_inf", _fill_weight(math.inf), ["head.3.weight"]),
]


@pytest.mark.parametrize(
    "name,mutate,names", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES]
)
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


@pytest.mark.parametrize(
    "kind", ["missing", "folder", "empty", "random", "truncated", "pickle", "tensor"]
)
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
        sf.write(folder / "nan.wav", np.full(100, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
        (folder / "a_folder.wav").mkdir()
        sf.write(folder / "short.wav", np.zeros(8, dtype=np.float32), 16000)
        # Not regular files: reading a FIFO blocks until a writer comes, a device never ends.
        for name in ("fifo.wav", "fifo.npy"):
            os.mkfifo(folder / name)
        for name in ("zero.wav", "zero.npy"):
            (folder / name).symlink_to("/dev/zero")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(folder / "socket.wav"))
        (folder / "clash" / "tiny_seed0_0.wav").mkdir(parents=True)  # an output's name taken
    return {p.stem: p for p in folder.iterdir()}


PRIME_MEL_CASES = [
    (["prime={base}/no_such.wav"], ["no_such.wav"]),
    (["prime={base}/primes/text.wav"], ["text.wav"]),
    (["prime={base}/primes/empty.wav"], ["empty.wav"]),
    (["prime={base}/primes/nan.wav"], ["nan.wav", "NaN"]),
    (["prime={base}/primes/a_folder.wav"], ["a_folder.wav", "a directory"]),
    (["prime={base}/primes/zero.wav"], ["zero.wav", "a character device"]),
    (["prime={base}/primes/socket.wav"], ["socket.wav", "a socket"]),
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
    (
        ["checkpoint={vocoder}", "mel_from={mels}/good.npy", "prime={prime}"],
        ["good.npy", "prime"],
    ),  # the mel is shorter than the prime
    (["checkpoint={vocoder}", "mel_from={base}/primes/short.wav"], ["short.wav"]),
    (["checkpoint={vocoder}", "mel_from={base}/primes/zero.npy"], ["zero.npy", "character device"]),
    (["checkpoint={vocoder}", "mel_from={base}/primes/zero.wav"], ["zero.wav", "character device"]),
    (["checkpoint={vocoder}", "mel_from={base}/primes/socket.wav"], ["socket.wav", "a socket"]),
    (["checkpoint={vocoder}", "mel_from={base}/primes"], ["primes", "a directory"]),
    (["checkpoint={speaker}"], ["speaker=NAME", "anna"]),
    (["checkpoint={speaker}", "speaker=zoe"], ["zoe", "anna"]),
    (["checkpoint={speaker}", "speaker=[anna,zoe]"], ["zoe"]),
    (["out={base}/tiny.pt"], ["tiny.pt"]),  # a file, not a folder
    (["out={base}/tiny.pt/sub"], ["tiny.pt"]),
    (["out={base}/primes/clash", "impl=reference"], ["clash/tiny_seed0_0.wav", "in the way"]),
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


@pytest.mark.parametrize(
    "args",
    [
        ["prime={base}/primes/fifo.wav"],
        ["checkpoint={vocoder}", "mel_from={base}/primes/fifo.wav"],
        ["checkpoint={vocoder}", "mel_from={base}/primes/fifo.npy"],
    ],
    ids=["prime", "mel_from_audio", "mel_from_npy"],
)
def test_generate_refuses_a_fifo_without_blocking(world, args):
    """A FIFO with no writer blocks whoever opens it: refused before opening, in one line. A
    real process, so a regression times out instead of hanging the suite."""
    _prime_files(world["base"])
    before = snapshot(world["base"])
    argv = [f"checkpoint={world['ckpt']}", "seconds=0.01", f"out={world['out']}", *args]
    proc = run_tool("wavenet-generate", *_fill(argv, world), cwd=world["base"], timeout=120)
    fifo = Path(_fill(args, world)[-1].split("=", 1)[1])
    proc_line(proc, names=[fifo, "a FIFO, not a regular file"])
    assert snapshot(world["base"]) == before


def test_generate_success_replaces_files_whole(world, capsys, tmp_path):
    """A good run writes complete files and leaves no temporary behind."""
    out = tmp_path / "fresh" / "deeper"
    generate_cli.main(
        [
            f"checkpoint={world['ckpt']}",
            "seconds=0.01",
            f"out={out}",
            "progress=false",
            "impl=reference",
            "batch=2",
        ]
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == ["tiny_seed0_0.wav", "tiny_seed0_1.wav"]
    assert sf.info(out / names[0]).frames == 160


def test_generate_error_leaves_no_new_folder(world, capsys, tmp_path):
    out = tmp_path / "never" / "made"
    one_line(
        capsys,
        lambda: generate_cli.main([f"checkpoint={world['ckpt']}", f"out={out}", "temperature=-2"]),
        names=["temperature"],
    )
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    "signum,code,line",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
    ids=["ctrl_c", "sigterm"],
)
def test_generate_ctrl_c_or_sigterm_is_one_line_and_keeps_earlier_output(
    world, tmp_path, signum, code, line
):
    """Ctrl-C, and SIGTERM (kill, timeout, a job scheduler), stop generation the same way: one
    line, the exit status of that signal, the temporaries removed, earlier output unchanged."""
    out = tmp_path / "out"
    shutil.copytree(world["out"], out)
    before = snapshot(out)
    proc = subprocess.Popen(
        [
            exe("wavenet-generate"),
            f"checkpoint={world['ckpt']}",
            "seconds=600",
            f"out={out}",
            "progress=false",
            "impl=reference",
        ],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.1)  # generating: the temporaries are open
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()  # no 10-minute generation left behind if it did not stop
    assert proc.returncode == code, stderr
    assert stderr.strip() == f"wavenet-generate: {line}"
    assert snapshot(out) == before  # nothing replaced, no temporary left


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped raise
def test_a_ctrl_c_lost_in_a_finalizer_still_stops_the_tool(capsys):
    """Python drops a KeyboardInterrupt raised while a `__del__` runs ("Exception ignored");
    the tools remember the signal, so the next check between chunks still stops them."""

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # handled inside __del__: the raise is dropped

    steps = []

    def action(argv):
        Finalized()  # collected at once: SIGINT arrives within its __del__
        steps.append("went on")  # as without the check: the interrupt did not surface
        common.check_interrupted()
        steps.append("finished")

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as exit_:
        common.run_tool("wavenet-generate", "usage", action, [])
    assert exit_.value.code == 130 and steps == ["went on"]
    assert capsys.readouterr().err.strip() == "wavenet-generate: interrupted"
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back
    common.run_tool("wavenet-generate", "usage", lambda argv: common.check_interrupted(), [])


def test_an_output_path_in_the_way_is_named_before_any_file_is_replaced(world, capsys, tmp_path):
    """batch=2 into a folder whose second output name is a folder: refused before generating,
    so the first file (from an earlier run) is not replaced by a run that cannot finish."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny_seed0_0.wav").write_bytes(b"earlier")
    (out / "tiny_seed0_1.wav").mkdir()
    before = snapshot(out)
    args = [f"checkpoint={world['ckpt']}", "seconds=0.01", f"out={out}", "batch=2"]
    one_line(
        capsys,
        lambda: generate_cli.main([*args, "impl=reference"]),
        names=["tiny_seed0_1.wav", "in the way"],
    )
    assert snapshot(out) == before
