"""Speaker- and mel-conditioned models through the tools: training (a real wavenet-train
process), the speaker table, copy synthesis from wav / .npy / .pt, evaluation, and the one-line
errors (wavenet-generate and -evaluate through their main() in process)."""

import csv
import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from bad_inputs import one_line
from tools import require

import wavenet.cli.train as train_cli
from wavenet import checkpoint
from wavenet.data.dataset import load_dataset
from wavenet.metrics import listening
from wavenet.metrics.evaluate import evaluate
from wavenet.model.features import MelConfig, log_mel

TINY = [
    "model=tiny",
    "train=quick",
    "train.progress=false",
    "data.crop=500",
    "train.max_steps=6",
    "train.val_every=3",
    "train.sample_seconds=0.05",
]
# A small mel analysis so the tiny model trains in seconds: 20 bands, 64-sample hop.
MEL = [
    "model.mel.n_mels=20",
    "model.mel.n_fft=256",
    "model.mel.win_length=256",
    "model.mel.hop_length=64",
    "model.mel.upsample=[8,8]",
    "model.mel.channels=8",
]
MEL_CFG = MelConfig(
    n_mels=20, n_fft=256, win_length=256, hop_length=64, upsample=[8, 8], channels=8
)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, demo_root) -> Path:
    """Two speakers, two real utterances each, in the metadata.csv layout."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "wavs").mkdir()
    with open(demo_root / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = [r for r in rows if r["speaker"] == "june"][:2] + [
        r for r in rows if r["speaker"] == "carlo"
    ][:2]
    for r in picked:
        shutil.copy(demo_root / r["file"], root / r["file"])
    with open(root / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "speaker"), *[(r["file"], r["speaker"]) for r in picked]])
    return root


@pytest.fixture(scope="module")
def speaker_run(tmp_path_factory, labelled, train_run) -> Path:
    run = tmp_path_factory.mktemp("speaker_run")
    train_run(run, *TINY, "model.speaker_channels=4", f"data.root={labelled}")
    return run


@pytest.fixture(scope="module")
def vocoder_run(tmp_path_factory, speech, train_run) -> Path:
    run = tmp_path_factory.mktemp("vocoder_run")
    train_run(run, *TINY, *MEL, f"data.root={speech}")
    return run


# --------------------------------------------------------------------------- speaker models


def test_speaker_run_saves_its_table_and_hours_per_speaker(speaker_run, labelled):
    ckpt = checkpoint.load(speaker_run / "checkpoints" / "last.pt")
    assert ckpt["speakers"] == ["carlo", "june"]
    assert checkpoint.build_model(ckpt).speaker_embed.num_embeddings == 2
    report = json.loads((speaker_run / "data_report.json").read_text())
    assert report["layout"] == "metadata"
    hours = {**report["hours_per_speaker"]["train"]}
    for name, h in report["hours_per_speaker"]["validation"].items():
        hours[name] = hours.get(name, 0) + h
    seconds = {"carlo": 0.0, "june": 0.0}
    with open(labelled / "metadata.csv", newline="") as f:
        for row in csv.DictReader(f):
            seconds[row["speaker"]] += sf.info(labelled / row["file"]).duration
    for name, s in seconds.items():
        assert hours[name] == pytest.approx(s / 3600, abs=2e-5)
    assert report["hours"] == pytest.approx(sum(seconds.values()) / 3600, abs=2e-5)


def test_generate_picks_speakers_by_name(speaker_run, tmp_path, cli_main):
    ckpt = speaker_run / "checkpoints" / "last.pt"
    out = tmp_path / "one"
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={ckpt}",
        "speaker=june",
        "seconds=0.05",
        "batch=2",
        f"out={out}",
        "progress=false",
        ok=True,
    )
    paths = proc.stdout.split()
    assert [Path(p).name for p in paths] == ["last_june_seed0_0.wav", "last_june_seed0_1.wav"]
    # A list gives one speaker per file (batch follows the list); rows are conditioned on
    # their own speaker, so the same seed gives different audio per speaker.
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={ckpt}",
        "speaker=[june,carlo]",
        "seconds=0.05",
        f"out={tmp_path / 'two'}",
        "progress=false",
        "temperature=0",
        ok=True,
    )
    names = [Path(p).name for p in proc.stdout.split()]
    assert names == ["last_june_seed0_0.wav", "last_carlo_seed0_1.wav"]
    june, carlo = (sf.read(p)[0] for p in proc.stdout.split())
    assert len(june) == len(carlo) == 800 and not np.array_equal(june, carlo)


@pytest.mark.parametrize(
    "args,match",
    [
        (["speaker=anna"], r"unknown speaker 'anna'; the speaker table holds carlo, june"),
        ([], r"speaker-conditioned: pass speaker=NAME, one of carlo, june"),
        (["speaker=[june,carlo]", "batch=3"], r"speaker lists 2 names but batch=3"),
        (["speaker=june", "mel_from=x.wav"], r"has no mel conditioning"),
    ],
)
def test_speaker_errors_are_one_line(speaker_run, tmp_path, args, match, cli_main):
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={speaker_run / 'checkpoints' / 'last.pt'}",
        *args,
        "seconds=0.01",
        f"out={tmp_path}",
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("wavenet-generate: error:")
    assert re.search(match, proc.stderr), proc.stderr


def test_speaker_conditioning_without_labels_is_a_one_line_error(
    speech, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "wavenet-train",
            *TINY,
            "model.speaker_channels=4",
            f"data.root={speech}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    one_line(capsys, train_cli.main, names=("needs a speaker for every file",))


def test_speaker_checkpoint_is_evaluated_per_speaker(speaker_run, labelled, tmp_path, cli_main):
    proc = cli_main(
        "wavenet-evaluate",
        f"checkpoint={speaker_run / 'checkpoints' / 'last.pt'}",
        f"data.root={labelled}",
        "progress=false",
        ok=True,
    )
    result = json.loads(proc.stdout)
    assert sorted(result["per_speaker"]) == ["carlo", "june"]
    # What the checkpoint's model scores, each file in one pass with its own speaker.
    ckpt = checkpoint.load(speaker_run / "checkpoints" / "last.pt")
    direct = evaluate(
        checkpoint.build_model(ckpt),
        load_dataset(labelled, 16000).utterances,
        chunk=10**9,
        speakers=ckpt["speakers"],
    )
    assert result["bits_per_sample"] == pytest.approx(direct["bits_per_sample"], abs=2e-5)
    assert result["per_speaker"] == pytest.approx(direct["per_speaker"], abs=2e-5)
    assert result["per_speaker"]["carlo"] != result["per_speaker"]["june"]


# ---------------------------------------------------------------------------------- vocoder


def test_vocoder_run_stores_its_mel_settings(vocoder_run):
    ckpt = checkpoint.load(vocoder_run / "checkpoints" / "last.pt")
    mel = ckpt["model_config"]["mel"]
    assert (mel["n_mels"], mel["hop_length"], mel["upsample"]) == (20, 64, [8, 8])
    assert ckpt["speakers"] == []
    # The validation sample is a copy synthesis of the first validation file's start, which is
    # kept beside it (source.wav), as long as the synthesis.
    samples = vocoder_run / "samples"
    assert sorted(p.name for p in samples.glob("*.wav")) == [
        "source.wav",
        "step_0000003.wav",
        "step_0000006.wav",
    ]
    assert sf.info(samples / "source.wav").frames == sf.info(samples / "step_0000006.wav").frames


def test_copy_synthesis_from_wav_npy_and_pt_agree(vocoder_run, speech, tmp_path, cli_main):
    ckpt = vocoder_run / "checkpoints" / "last.pt"
    wav = sorted(speech.glob("*.flac"))[0]
    audio, rate = sf.read(wav, dtype="float32")
    mel = log_mel(torch.from_numpy(audio), rate, MEL_CFG)
    np.save(tmp_path / "mel.npy", mel.numpy())
    np.save(tmp_path / "big_endian.npy", mel.numpy().astype(">f4"))  # converted on load
    torch.save(mel, tmp_path / "mel.pt")
    outputs = []
    sources = [wav, tmp_path / "mel.npy", tmp_path / "big_endian.npy", tmp_path / "mel.pt"]
    for source in sources:
        proc = cli_main(
            "wavenet-generate",
            f"checkpoint={ckpt}",
            f"mel_from={source}",
            "seed=4",
            f"out={tmp_path / source.stem / source.suffix[1:]}",
            "progress=false",
            ok=True,
        )
        [path] = proc.stdout.split()
        outputs.append(sf.read(path)[0])
    assert len(outputs[0]) == len(audio) // 64 * 64  # as long as the mel: whole hops
    assert all(np.array_equal(outputs[0], out) for out in outputs[1:])


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda d: np.save(d / "bad.npy", np.zeros((13, 40), np.float32)),
            r"bad.npy: has 13 mel bands .* expects 20",
        ),
        (lambda d: (d / "bad.npy").write_bytes(b"not numpy"), r"bad.npy: cannot read a mel tensor"),
        (lambda d: torch.save({"mel": 1}, d / "bad.pt"), r"bad.pt: expected a float tensor"),
        (lambda d: None, r"mel-conditioned vocoder: pass mel_from="),
    ],
)
def test_vocoder_errors_are_one_line(vocoder_run, tmp_path, make, match, cli_main):
    make(tmp_path)
    bad = sorted(tmp_path.glob("bad.*"))
    args = [f"mel_from={bad[0]}"] if bad else []
    proc = cli_main(
        "wavenet-generate",
        f"checkpoint={vocoder_run / 'checkpoints' / 'last.pt'}",
        *args,
        f"out={tmp_path / 'out'}",
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.search(match, proc.stderr), proc.stderr


def test_vocoder_checkpoint_is_evaluated(vocoder_run, speech, tmp_path, cli_main):
    proc = cli_main(
        "wavenet-evaluate",
        f"checkpoint={vocoder_run / 'checkpoints' / 'last.pt'}",
        f"data.root={speech}",
        "progress=false",
        "chunk=3000",
        ok=True,
    )
    result = json.loads(proc.stdout)
    total = sum(len(sf.read(p)[0]) // 64 * 64 - 1 for p in speech.glob("*.flac"))
    assert result["samples"] == total  # whole hops of every file, every position after the first
    # Chunks of 3000 score what one pass over each whole file with its whole mel scores.
    model = checkpoint.build_model(checkpoint.load(vocoder_run / "checkpoints" / "last.pt"))
    direct = evaluate(model, load_dataset(speech, 16000).utterances, chunk=10**9)
    assert result["bits_per_sample"] == pytest.approx(direct["bits_per_sample"], abs=2e-5)


# ----------------------------------------------------------------------------------- resume


def test_conditioned_runs_resume(vocoder_run, speaker_run, speech, labelled, tmp_path, train_run):
    """Same settings, more steps: both conditioned runs continue from last.pt (their first six
    steps' records stay as they were, two more follow)."""
    for run, args in (
        (vocoder_run, [*MEL, f"data.root={speech}"]),
        (speaker_run, ["model.speaker_channels=4", f"data.root={labelled}"]),
    ):
        copy = tmp_path / run.name
        shutil.copytree(run, copy)
        before = (copy / "metrics.jsonl").read_text()
        train_run(copy, *TINY, *args, "train.max_steps=8")
        after = (copy / "metrics.jsonl").read_text()
        assert after.startswith(before) and len(after) > len(before)
        assert checkpoint.load(copy / "checkpoints" / "last.pt")["step"] == 8


def test_the_shipped_vocoder_resynthesises_its_own_mel(tmp_path, demo_root, cli_main):
    """data/pretrained/asterisk4-vocoder.pt through wavenet-generate: as long as the mel, within
    7 dB mel-cepstral distortion of its source (it measured 5.9 dB), and 2 dB nearer than the
    same vocoder driven by another utterance of the same speaker (9.2 dB): the output follows
    its own mel, not just the voice."""
    from wavenet.config import PRETRAINED

    require(listening.available(), f"the metrics extra is not installed: {listening.INSTALL}")
    vocoder = PRETRAINED.parent / "asterisk4-vocoder.pt"
    assert vocoder.is_file(), f"{vocoder} is not in the repository"

    def vocode(name: str) -> tuple[np.ndarray, np.ndarray]:
        audio, rate = sf.read(demo_root / "wavs" / name, dtype="float32")
        clip = tmp_path / name.replace(".flac", ".wav")
        sf.write(clip, audio[: int(1.5 * rate)], rate)
        proc = cli_main(
            "wavenet-generate",
            f"checkpoint={vocoder}",
            f"mel_from={clip}",
            f"out={tmp_path / 'out'}",
            "progress=false",
            ok=True,
        )
        out, out_rate = sf.read(proc.stdout.split()[0], dtype="float32")
        assert out_rate == rate == 16000 and len(out) == int(1.5 * rate) // 256 * 256
        return audio[: len(out)], out

    source, resynth = vocode("ast_it_IT_m_Carlo_agent-user.flac")
    _, other = vocode("ast_it_IT_m_Carlo_auth-incorrect.flac")
    near = listening.mel_cepstral_distortion(
        torch.from_numpy(source), torch.from_numpy(resynth), 16000
    )
    far = listening.mel_cepstral_distortion(
        torch.from_numpy(source), torch.from_numpy(other), 16000
    )
    print(f"MCD to the source: its re-synthesis {near:.1f} dB, another utterance's {far:.1f} dB")
    assert near < 7.0 and near < far - 2.0, (near, far)


def test_conditioning_mismatches_are_one_line(
    speaker_run, vocoder_run, speech, labelled, tmp_path, cli_main, capsys, monkeypatch
):
    speaker_ckpt = speaker_run / "checkpoints" / "last.pt"
    cases = [
        # Files whose speaker is not in the table cannot be scored.
        (
            "wavenet-evaluate",
            [f"checkpoint={speaker_ckpt}", f"data.root={speech}"],
            "unknown speaker ''; the speaker table holds carlo, june",
        ),
        # A speaker for a model without speakers.
        (
            "wavenet-generate",
            [
                f"checkpoint={vocoder_run / 'checkpoints' / 'last.pt'}",
                "speaker=june",
                f"mel_from={sorted(speech.glob('*.flac'))[0]}",
            ],
            "has no speaker conditioning; drop speaker=",
        ),
    ]
    for tool, args, match in cases:
        proc = cli_main(tool, *args, "progress=false")
        assert proc.returncode == 2 and match in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    # Resuming a speaker run with another speaker table (other data) is refused.
    copy = tmp_path / "run"
    shutil.copytree(speaker_run, copy)
    other = tmp_path / "other"
    shutil.copytree(labelled, other)
    meta = (other / "metadata.csv").read_text().replace(",june", ",anna")
    (other / "metadata.csv").write_text(meta)
    report = (copy / "data_report.json").read_bytes()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "wavenet-train",
            *TINY,
            "model.speaker_channels=4",
            f"data.root={other}",
            "train.max_steps=8",
            f"hydra.run.dir={copy}",
        ],
    )
    one_line(capsys, train_cli.main, names=("with speakers ['carlo', 'june'] differs",))
    assert (copy / "data_report.json").read_bytes() == report  # the run's record is unchanged


# ------------------------------------------------------------------------ linear prediction


@pytest.fixture(scope="module")
def lpc_run(tmp_path_factory, speech, train_run) -> Path:
    """A vocoder with linear prediction from its mel, pre-emphasis and noise in its input."""
    run = tmp_path_factory.mktemp("lpc_run")
    train_run(
        run,
        *TINY,
        *MEL,
        "model.lpc_order=8",
        "data.preemphasis=0.85",
        "train.input_noise=2",
        f"data.root={speech}",
    )
    return run


def test_a_vocoder_with_linear_prediction_generates_alike_on_every_path(
    lpc_run, speech, tmp_path, cli_main
):
    ckpt = lpc_run / "checkpoints" / "last.pt"
    assert checkpoint.load(ckpt)["model_config"]["lpc_order"] == 8
    wav = sorted(speech.glob("*.flac"))[0]
    outputs = []
    for impl in ("reference", "compiled"):
        proc = cli_main(
            "wavenet-generate",
            f"checkpoint={ckpt}",
            f"mel_from={wav}",
            "seed=4",
            f"impl={impl}",
            f"out={tmp_path / impl}",
            "progress=false",
            ok=True,
        )
        [path] = proc.stdout.split()
        outputs.append(sf.read(path)[0])
    assert len(outputs[0]) == sf.info(wav).frames // 64 * 64
    assert np.array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[0]).max() > 0


def test_a_vocoder_with_linear_prediction_is_scored_on_its_excitation(
    lpc_run, speech, tmp_path, cli_main
):
    """wavenet-evaluate's chunks score what the teacher-forced forward pass over each whole
    file scores against its excitation's codes (`WaveNet.targets`), in bits per 16-bit sample
    through the excitation codes' widths."""
    proc = cli_main(
        "wavenet-evaluate",
        f"checkpoint={lpc_run / 'checkpoints' / 'last.pt'}",
        f"data.root={speech}",
        "progress=false",
        "chunk=3000",
        ok=True,
    )
    result = json.loads(proc.stdout)
    model = checkpoint.build_model(checkpoint.load(lpc_run / "checkpoints" / "last.pt"))
    from wavenet import mulaw
    from wavenet.model.features import pad_frames

    total = count = width = 0.0
    for path in sorted(speech.glob("*.flac")):
        audio = torch.from_numpy(sf.read(path, dtype="float32")[0])
        audio = audio[: len(audio) // 64 * 64]
        x = mulaw.encode(mulaw.preemphasis(audio, 0.85))[None]
        mel = pad_frames(log_mel(audio, 16000, MEL_CFG), MEL_CFG.context)[None]
        with torch.no_grad():
            target = model.targets(x, mel)
            nll = model.nll(model(x, mel=mel), target)[0, 1:]
        total, count = total + float(nll.double().sum()), count + nll.numel()
        width += float(mulaw.log2_widths(model.config.codec)[target[0, 1:]].sum())
    bits = total / count / math.log(2)
    assert result["bits_per_sample"] == pytest.approx(bits, abs=2e-5)
    assert result["bits_per_16bit_sample"] == pytest.approx(bits + width / count, abs=2e-5)
