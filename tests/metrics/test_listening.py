"""Listening metrics on real speech: each prefers the clean clip to its damaged copies.

The scores come from the optional `metrics` extra; without it these tests skip, except under
CI (CI=true), where the extra is part of `.[dev]` and a skip would hide a broken install.
"""

import json
import math
import os
import runpy
import sys

import pytest
import soundfile as sf
import torch
import torchaudio
from tools import require

from wavenet import checkpoint, mulaw
from wavenet.cli import listen
from wavenet.metrics import listening

CLIP = "ast_en_US_f_Allison_agent-incorrect.flac"  # 5 s of one speaker, bundled in data/demo


@pytest.fixture(scope="module")
def extra():
    """Skip (fail under CI) when the optional packages do not import."""
    require(listening.available(), f"listening metrics need the metrics extra: {listening.INSTALL}")


@pytest.fixture(scope="module")
def voice(demo_root):
    """3 s of real speech at 16 kHz, (time,) float32."""
    audio, rate = sf.read(demo_root / "wavs" / CLIP, dtype="float32")
    assert rate == listening.RATE
    return torch.from_numpy(audio[: 3 * rate])


def noisy(audio: torch.Tensor, snr_db: float = 0.0, seed: int = 0) -> torch.Tensor:
    """audio plus white noise at snr_db, scaled (SNR unchanged) to stay within [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(audio.shape, generator=g)
    noise *= audio.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() * 10 ** (-snr_db / 20)
    mixed = audio + noise
    return mixed / max(1.0, float(mixed.abs().max()))


def quantised(audio: torch.Tensor) -> torch.Tensor:
    return mulaw.decode(mulaw.encode(audio, 256), 256)


def test_dnsmos_prefers_real_speech_to_its_noisy_copy(extra, voice):
    clean = listening.dnsmos(voice, listening.RATE)
    assert set(clean) == {"sig", "bak", "ovrl", "p808"}
    assert all(1.0 <= v <= 5.0 for v in clean.values()), clean
    damaged = listening.dnsmos(noisy(voice), listening.RATE)
    assert clean["ovrl"] > damaged["ovrl"] + 0.5, (clean, damaged)
    assert clean["bak"] > damaged["bak"] + 1.0, (clean, damaged)
    # 8-bit μ-law, the floor of any model here, is far nearer the clean clip than the noise.
    floor = listening.generated_scores(quantised(voice), listening.RATE)
    assert floor["ovrl"] > damaged["ovrl"] + 0.5 and floor["bak"] > damaged["bak"] + 1.0


def test_dnsmos_equals_the_reference_procedure_on_a_repeated_short_clip(extra, voice):
    """2.5 s is repeated to 20 s: 11 windows, 5 distinct; each is scored once, weighted."""
    from speechmos import dnsmos as reference

    clip = voice[: int(2.5 * listening.RATE)]
    expected = reference.run(clip.numpy(), listening.RATE)
    got = listening.dnsmos(clip, listening.RATE)
    for key in ("sig", "bak", "ovrl", "p808"):
        assert got[key] == pytest.approx(float(expected[f"{key}_mos"]), abs=1e-5), key


def test_dnsmos_resamples_other_rates(extra, voice):
    at_22k = torchaudio.functional.resample(voice, listening.RATE, 22050).clamp(-1, 1)
    direct, resampled = listening.dnsmos(voice, listening.RATE), listening.dnsmos(at_22k, 22050)
    for key, value in direct.items():
        assert resampled[key] == pytest.approx(value, abs=0.1), key


def test_copy_synthesis_scores_are_at_their_maximum_for_the_clip_itself(extra, voice):
    rate = listening.RATE
    same = listening.copy_synthesis_scores(voice, voice, rate)
    assert set(same) == {"pesq_wb", "stoi", "mcd_db", "log_mel_db"}
    assert same["pesq_wb"] > 4.0 and same["stoi"] > 0.99
    assert same["mcd_db"] == 0.0 and same["log_mel_db"] == pytest.approx(0.0, abs=1e-9)
    damaged = listening.copy_synthesis_scores(voice, noisy(voice), rate)
    floor = listening.copy_synthesis_scores(voice, quantised(voice), rate)
    assert damaged["pesq_wb"] < 2.0 and damaged["stoi"] < 0.9 and damaged["mcd_db"] > 5.0
    assert floor["pesq_wb"] > damaged["pesq_wb"] + 1.5 and floor["stoi"] > damaged["stoi"]
    assert 0.0 < floor["mcd_db"] < damaged["mcd_db"]
    assert 0.0 < floor["log_mel_db"] < damaged["log_mel_db"]


def test_pesq_scores_the_test_signal_against_the_reference_not_the_other_way(extra, voice):
    """PESQ is not symmetric: a copy whose second half dropped out is poor speech against the
    real clip (about 1.4), while the real clip against that copy as reference scores about 3.9
    (PESQ only weighs the reference's speech). So the order of the arguments shows: the
    function must score `test` against `reference`, as pesq.pesq(rate, ref, deg) does."""
    from pesq import pesq

    rate = listening.RATE
    dropped = voice.clone()
    dropped[len(voice) // 2 :] = 0.0
    ref, deg = voice.double().numpy(), dropped.double().numpy()
    right, swapped = pesq(rate, ref, deg, "wb"), pesq(rate, deg, ref, "wb")
    assert right < 2.0 < 3.5 < swapped, (right, swapped)
    score = listening.copy_synthesis_scores(voice, dropped, rate)["pesq_wb"]
    assert score == pytest.approx(right, abs=1e-4)


def test_mcd_grows_with_noise_and_ignores_level_and_trailing_samples(extra, voice):
    rate = listening.RATE
    mcd = listening.mel_cepstral_distortion
    distances = [mcd(voice, noisy(voice, snr), rate) for snr in (40.0, 20.0, 0.0)]
    assert 0.0 < distances[0] < distances[1] < distances[2], distances
    # Symmetric; c0 (the level) is left out, so a gain costs nothing but the periodogram floor.
    assert mcd(noisy(voice, 20.0), voice, rate) == pytest.approx(distances[1])
    assert mcd(voice, 0.5 * voice, rate) < 0.05
    # Aligned signals are cut to the shorter: samples past its end do not count.
    longer = torch.cat([voice, 0.9 * torch.ones(5000)])
    assert mcd(voice, longer, rate) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda a: listening.dnsmos(a, listening.RATE),
        lambda a: listening.mel_cepstral_distortion(a, a, listening.RATE),
        lambda a: listening.copy_synthesis_scores(a, a, listening.RATE),
    ],
    ids=["dnsmos", "mcd", "copy_synthesis_scores"],
)
def test_bad_input_is_a_one_line_value_error(extra, voice, call):
    nan = voice.clone()
    nan[100] = math.nan
    cases = [
        (voice[:500], "500 samples at 16000 Hz are shorter than one 1024-sample frame"),
        (nan, "NaN"),
        (voice.reshape(2, -1), r"expected a \(time,\) signal, got shape \(2, 24000\)"),
        (2.0 * voice, "must lie in \\[-1, 1\\], peak is"),
    ]
    for audio, message in cases:
        with pytest.raises(ValueError, match=message) as caught:
            call(audio)
        assert "\n" not in str(caught.value)


@pytest.mark.filterwarnings("error")  # and no warning from pesq or numpy on the way
def test_too_little_speech_for_pesq_or_stoi_is_a_one_line_value_error(extra, voice):
    for seconds, message in (
        (0.2, "PESQ: Buffer needs to be at least 1/4"),
        (0.3, "STOI: too little non-silent speech"),
    ):
        clip = voice[: int(seconds * listening.RATE)]
        with pytest.raises(ValueError, match=message):
            listening.copy_synthesis_scores(clip, clip, listening.RATE)
    silent = torch.zeros_like(voice)
    for reference, test, message in (
        (voice, silent, "PESQ: the test signal is silent, or too quiet to score"),
        (voice, 1e-30 * voice, "PESQ: the test signal is silent, or too quiet to score"),
        (silent, voice, "PESQ: no utterances detected in the reference"),
        (silent, silent, "PESQ: no utterances detected in the reference"),
    ):
        with pytest.raises(ValueError, match=message) as caught:
            listening.copy_synthesis_scores(reference, test, listening.RATE)
        assert "\n" not in str(caught.value)


def test_a_missing_package_names_the_extra_in_one_line(monkeypatch, voice, tmp_path, capsys):
    real_import = listening.import_module

    def without_pesq(name):
        if name == "pesq":
            raise ModuleNotFoundError("No module named 'pesq'")
        return real_import(name)

    monkeypatch.setattr(listening, "import_module", without_pesq)
    listening.available.cache_clear()
    try:
        assert not listening.available()
        with pytest.raises(ImportError, match="pip install 'wavenet\\[metrics\\]'") as caught:
            listening.require()
        assert "'pesq'" in str(caught.value) and "\n" not in str(caught.value)
        _write(tmp_path, "clip.wav", voice)
        with pytest.raises(SystemExit) as exit_info:
            listen.main([f"generated={tmp_path}", "progress=false"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "wavenet[metrics]" in err, err
    finally:
        listening.available.cache_clear()


def _write(folder, name, audio):
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / name, audio.numpy(), listening.RATE, subtype="PCM_16")


def test_wavenet_listen_scores_generated_and_copy_synthesis_files(extra, voice, tmp_path, capsys):
    refs, tests = tmp_path / "reference", tmp_path / "test"
    clips = {"one": voice[: 2 * listening.RATE], "two": voice[listening.RATE :]}
    for stem, audio in clips.items():
        _write(refs, f"{stem}.flac", audio)
        _write(tests / "sub", f"{stem}.wav", quantised(audio)[:-300])  # a shorter copy

    listen.main([f"generated={tests}", f"json_out={tmp_path / 'gen.json'}", "progress=false"])
    line = capsys.readouterr().out.strip()
    result = json.loads(line)
    assert "\n" not in line and result["files"] == 2
    assert set(result) >= {"sig", "bak", "ovrl", "p808", "seconds"}
    per_file = json.loads((tmp_path / "gen.json").read_text())["per_file"]
    assert [r["file"].rsplit("/", 1)[1] for r in per_file] == ["one.wav", "two.wav"]
    mean_ovrl = sum(r["ovrl"] for r in per_file) / 2
    assert result["ovrl"] == pytest.approx(mean_ovrl, abs=1e-4)

    listen.main([f"reference={refs}", f"test={tests}", "progress=false"])
    result = json.loads(capsys.readouterr().out)
    assert result["files"] == 2 and result["pesq_wb"] > 3.5 and result["stoi"] > 0.99
    assert 0.0 < result["mcd_db"] < 3.0 and result["ovrl"] > 2.0
    assert all(math.isfinite(v) for v in result.values())

    # One file against another, whatever their names.
    listen.main([f"reference={refs / 'one.flac'}", f"test={refs / 'one.flac'}", "progress=false"])
    assert json.loads(capsys.readouterr().out)["mcd_db"] == 0.0


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to score: pass generated=DIR_OR_WAV"),
        (["reference=REFS"], "copy synthesis needs both reference= and test=; test= is missing"),
        (["generated=NOWHERE"], "nowhere: no such file or folder"),
        (["reference=REFS", "test=TESTS"], "stray.wav: no reference file named 'stray'"),
        (["generated=SHORT"], "short.wav: audio: 800 samples at 16000 Hz are shorter than one"),
        (["generated=ZERO"], "zero.wav: is a character device, not a regular file"),
        (["generated=FIFO"], "fifo.wav: is a FIFO, not a regular file"),
        (["reference=FIFO", "test=ZERO"], "fifo.wav: is a FIFO, not a regular file"),
        (["reference=ONE", "test=SILENT"], "silent.wav: PESQ: the test signal is silent"),
        (["reference=SILENT", "test=ONE"], "one.wav: PESQ: no utterances detected in the ref"),
    ],
)
@pytest.mark.filterwarnings("error")  # pesq's numpy warnings on silence among them
def test_wavenet_listen_user_errors_are_one_line_exit_2(
    extra, voice, tmp_path, capsys, args, message
):
    _write(tmp_path / "refs", "one.wav", voice)
    _write(tmp_path / "tests", "stray.wav", voice)
    _write(tmp_path / "short", "short.wav", voice[:800])
    (tmp_path / "zero.wav").symlink_to("/dev/zero")  # endless
    os.mkfifo(tmp_path / "fifo.wav")  # blocks whoever opens it: refused before that
    paths = {"REFS": "refs", "TESTS": "tests", "SHORT": "short", "NOWHERE": "nowhere"}
    _write(tmp_path, "silent.wav", torch.zeros_like(voice))
    paths.update(ZERO="zero.wav", FIFO="fifo.wav", SILENT="silent.wav", ONE="refs/one.wav")
    argv = []
    for arg in args:
        key, value = arg.split("=")
        argv.append(f"{key}={tmp_path / paths[value]}")
    with pytest.raises(SystemExit) as exit_info:
        listen.main([*argv, "progress=false"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wavenet-listen: error: "), captured.err
    assert message in lines[0]


def test_the_reference_table_script_runs_on_the_demo_speech(
    extra, demo_root, repo_root, tmp_path, capsys, monkeypatch
):
    """scripts/listening_table.py with tiny settings: every row, and the doc's table rewritten
    (run as __main__ in this process, which has the DNSMOS models loaded already)."""
    doc = tmp_path / "listening.md"
    doc.write_text("# before\n<!-- table -->\nold\n<!-- /table -->\nafter\n")
    script = repo_root / "scripts" / "listening_table.py"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            str(script),
            f"--root={demo_root}",
            "--speakers=carlo",
            "--per-speaker=1",
            "--max-seconds=2",
            "--babble-seconds=0.25",
            "--babble-batch=1",
            f"--out={tmp_path / 'wavs'}",
            f"--doc={doc}",
        ],
    )
    capsys.readouterr()
    runpy.run_path(str(script), run_name="__main__")
    rows = {r["system"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    plain = "vocoder_t0.6_f0_s0"
    assert list(rows) == ["real", "mulaw", "vocoder", plain, "babble", "other_words"]
    assert (rows[plain]["temperature"], rows[plain]["floor"], rows[plain]["sharpen"]) == (0.6, 0, 0)
    shipped = checkpoint.load(repo_root / "data" / "pretrained" / "asterisk4-vocoder.pt")
    assert {k: rows["vocoder"][k] for k in ("temperature", "floor", "sharpen")} == {
        k: shipped.get(k, d) for k, d in (("temperature", 1.0), ("floor", 0.0), ("sharpen", 0.0))
    }
    assert rows["mulaw"]["pesq_wb"] > rows["vocoder"]["pesq_wb"] > 1.0
    assert rows["vocoder"]["stoi"] > rows["other_words"]["stoi"]
    text = doc.read_text()
    assert text.startswith("# before\n<!-- table -->\n| system |") and "old" not in text
    assert text.endswith("<!-- /table -->\nafter\n") and "| vocoder |" in text
