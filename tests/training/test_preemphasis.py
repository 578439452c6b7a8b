"""Pre-emphasis (data.preemphasis): the model learns y[t] = x[t] - a x[t-1], generation undoes it.

The point of it: the 8-bit quantisation noise, flat in the model's domain, is tilted down at high
frequencies with the speech when de-emphasised, so it hides under the speech spectrum.
"""

import json
import shutil

import pytest
import soundfile as sf
import torch

from wavenet import checkpoint, mulaw
from wavenet.cli import evaluate as evaluate_cli
from wavenet.cli import generate as generate_cli
from wavenet.data.dataset import Conditioning, CropSampler, Utterance, read_audio

A = 0.85


@pytest.fixture(scope="module")
def voice(demo_root) -> torch.Tensor:
    return read_audio(sorted((demo_root / "wavs").glob("*.flac"))[0], 16000)


def test_deemphasis_inverts_preemphasis_in_any_chunks(voice):
    x = voice[None, :20000]
    y = mulaw.preemphasis(x, A)
    assert not torch.allclose(y, x)
    whole = mulaw.Deemphasis(A)(y)
    chunked = mulaw.Deemphasis(A)
    parts = torch.cat([chunked(part) for part in y.split(777, dim=1)], dim=1)
    torch.testing.assert_close(whole, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)
    assert mulaw.preemphasis(x, 0.0) is x and mulaw.Deemphasis(0.0)(x) is x


def band_energy(noise: torch.Tensor, low: float, high: float) -> float:
    spectrum = torch.fft.rfft(noise).abs().pow(2)
    freqs = torch.fft.rfftfreq(len(noise), 1 / 16000)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_the_quantisation_noise_moves_under_the_speech(voice):
    x = voice[:48000]
    plain = x - mulaw.decode(mulaw.encode(x))
    emphasised = mulaw.decode(mulaw.encode(mulaw.preemphasis(x, A)))
    tilted = x - mulaw.Deemphasis(A)(emphasised[None])[0]
    # Less noise where speech has little energy (high), more where it has much (low).
    assert band_energy(tilted, 4000, 8000) < 0.5 * band_energy(plain, 4000, 8000)
    assert band_energy(tilted, 0, 500) > band_energy(plain, 0, 500)


def test_crops_encode_the_emphasised_audio_and_the_mel_hears_it_plain(voice):
    from wavenet.model.features import MelConfig, log_mel, pad_frames

    mel = MelConfig(n_mels=20, n_fft=256, win_length=256, hop_length=64, upsample=[8, 8])
    utt = Utterance("a.flac", "", voice[:6400])
    sampler = CropSampler([utt], 640, seed=1, cond=Conditioning(None, mel, 16000, A))
    batch = sampler.draw(4)
    encoded = mulaw.encode(mulaw.preemphasis(utt.audio, A))
    frames = pad_frames(log_mel(utt.audio, 16000, mel), mel.context)
    for row in range(4):
        starts = [
            s
            for s in range(0, 6400 - 640 + 1, 64)
            if torch.equal(encoded[s : s + 640], batch.audio[row])
        ]
        assert starts, "a crop is a span of the emphasised audio's classes"
        first = starts[0] // 64
        torch.testing.assert_close(batch.mel[row], frames[:, first : first + batch.mel.shape[-1]])


@pytest.fixture(scope="module")
def emphasised_run(tmp_path_factory, demo_root, train_run):
    run = tmp_path_factory.mktemp("emphasis") / "run"
    train_run(
        run,
        "model=tiny",
        "train=quick",
        f"data.root={demo_root}",
        "data.crop=300",
        "data.preemphasis=0.85",
        "train.max_steps=10",
        "train.sample_seconds=0.25",
        "train.threads=1",
        "train.progress=false",
    )
    return run


def test_the_checkpoint_records_it_and_the_tools_follow(
    emphasised_run, demo_root, tmp_path, capsys, voice
):
    ckpt_path = emphasised_run / "checkpoints" / "last.pt"
    ckpt = checkpoint.load(ckpt_path)
    assert checkpoint.preemphasis(ckpt) == A
    # Evaluation scores the audio the model predicts: the emphasised one.
    two = tmp_path / "two"
    two.mkdir()
    for path in sorted((demo_root / "wavs").glob("*.flac"))[:2]:
        shutil.copy(path, two / path.name)
    evaluate_cli.main(
        [
            f"checkpoint={ckpt_path}",
            f"data.root={two}",
            "progress=false",
            f"json_out={tmp_path / 'e.json'}",
        ]
    )
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["preemphasis"] == A
    from wavenet.metrics.evaluate import evaluate

    model = checkpoint.build_model(ckpt)
    utts = [Utterance("v", "", voice[:4000])]
    with_a = evaluate(model, utts, preemphasis=A)["bits_per_sample"]
    without = evaluate(model, utts)["bits_per_sample"]
    assert with_a != pytest.approx(without, abs=1e-3)
    # Generation de-emphasises: a primed output starts with the prime itself, not its
    # emphasised version (whose low end is much weaker).
    prime = tmp_path / "prime.wav"
    sf.write(prime, voice[:8000].numpy(), 16000)
    capsys.readouterr()
    generate_cli.main(
        [
            f"checkpoint={ckpt_path}",
            f"prime={prime}",
            "prime_seconds=0.5",
            "seconds=0.05",
            f"out={tmp_path / 'gen'}",
            "progress=false",
        ]
    )
    out_path = tmp_path / "gen" / capsys.readouterr().out.split()[0].split("/")[-1]
    written, _ = sf.read(out_path, dtype="float32")
    head, x = torch.from_numpy(written[:8000]), voice[:8000]
    emphasised = mulaw.preemphasis(x, A)
    # The prime comes back with the μ-law error of the emphasised domain, de-emphasised (the
    # filter's gain reaches 1 / (1 - a) at low frequencies): a small fraction of the signal.
    assert (head - x).pow(2).mean() < 0.01 * x.pow(2).mean()
    assert (head - emphasised).pow(2).mean() > 0.2 * x.pow(2).mean()
