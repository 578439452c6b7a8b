"""What a listener hears: DNSMOS of generated speech, PESQ / STOI / MCD of copy synthesis.

Bits per μ-law sample say how well a model predicts; these say how the audio sounds. All of
them are defined on 16 kHz speech: other rates are resampled with torchaudio first.

- `dnsmos` (no reference needed): Microsoft's DNSMOS P.835 network (SIG speech quality, BAK
  background noise, OVRL overall; 1-5) and the P.808 network (one overall MOS), run exactly as
  the reference script does (the ONNX models and that procedure ship in the `speechmos`
  package): 9.01 s windows every 1 s, a clip shorter than 9.01 s repeated until it is that long,
  scores averaged over windows. A repeated short clip gives windows that repeat too; each
  distinct window is scored once and weighted by its count, so the result equals the
  reference's at a fraction of the cost (one window for a 1 s clip).
- `copy_synthesis_scores` (against the source recording, time-aligned): wide-band PESQ
  (ITU-T P.862.2, `pesq`), STOI (`pystoi`), mel-cepstral distortion (`mel_cepstral_distortion`)
  and the log-mel distance of wavenet.metrics.spectral.

The packages are the optional extra `wavenet[metrics]`; `available()` says whether they import,
and every scoring function raises a one-line ImportError naming the extra when they do not.
ONNX Runtime sessions are built once per process, single-threaded.
"""

import functools
import math
import warnings
from collections import Counter
from importlib import import_module
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torchaudio

from wavenet.metrics.spectral import log_mel_distance

RATE = 16000  # every listening metric here is defined at 16 kHz
PACKAGES = ("speechmos", "onnxruntime", "librosa", "pesq", "pystoi", "pysptk")
INSTALL = "pip install 'wavenet[metrics]'"

# Mel-cepstral distortion: SPTK mel-cepstra of Blackman-windowed frames at 16 kHz.
MCD_FRAME, MCD_HOP = 1024, 256  # 64 ms windows every 16 ms
MCD_ORDER, MCD_ALPHA = 24, 0.42  # c0..c24 on the mel scale that alpha 0.42 gives at 16 kHz
MCD_FLOOR = 1e-8  # added to the periodogram: digital silence has no log otherwise
MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)

KEYS_GENERATED = ("sig", "bak", "ovrl", "p808")
KEYS_COPY = ("pesq_wb", "stoi", "mcd_db", "log_mel_db")


def _module(name: str) -> ModuleType:
    """Import one optional package, or raise ImportError naming the extra."""
    try:
        with warnings.catch_warnings():
            # pysptk 1.0.1 imports pkg_resources, which warns that it is deprecated.
            warnings.simplefilter("ignore", UserWarning)
            return import_module(name)
    except ImportError as e:
        raise ImportError(
            f"listening metrics need the optional package {name!r} "
            f"({type(e).__name__}: {e}); install them with {INSTALL}"
        ) from e


def require() -> None:
    """Raise the one-line ImportError naming the extra unless every package of it imports."""
    for name in PACKAGES:
        _module(name)


@functools.cache
def available() -> bool:
    """True when every package of the `metrics` extra imports."""
    try:
        require()
    except ImportError:
        return False
    return True


def _signal(audio: torch.Tensor, sample_rate: int, what: str = "audio") -> np.ndarray:
    """(time,) float in [-1, 1] at sample_rate -> float64 numpy at RATE, checked."""
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor, got {type(audio).__name__}")
    if audio.dim() != 1:
        raise ValueError(f"{what}: expected a (time,) signal, got shape {tuple(audio.shape)}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not torch.isfinite(audio).all():
        raise ValueError(f"{what}: contains NaN or infinite samples")
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if peak > 1.0:
        raise ValueError(f"{what}: samples must lie in [-1, 1], peak is {peak:.4g}")
    audio = audio.double()
    if sample_rate != RATE:
        audio = torchaudio.functional.resample(audio, sample_rate, RATE).clamp(-1.0, 1.0)
    if audio.numel() < MCD_FRAME:
        raise ValueError(
            f"{what}: {audio.numel()} samples at {RATE} Hz are shorter than one "
            f"{MCD_FRAME}-sample frame"
        )
    return audio.numpy()


def _finite(scores: dict[str, float], what: str) -> dict[str, float]:
    bad = [k for k, v in scores.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{what}: {bad[0]} is not finite ({scores[bad[0]]})")
    return scores


@functools.cache
def _dnsmos_model():
    """speechmos' DNSMOS with single-threaded sessions, built once per process."""
    ort = _module("onnxruntime")
    reference = _module("speechmos.dnsmos")

    class Model(reference.DNSMOS):
        def __init__(self) -> None:  # the parent's sessions take every core
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            folder = Path(reference.__file__).parent / "dnsmos_models"
            self.primary_model_path = str(folder / "sig_bak_ovr.onnx")
            self.onnx_sess = ort.InferenceSession(
                self.primary_model_path, options, providers=["CPUExecutionProvider"]
            )
            self.p808_onnx_sess = ort.InferenceSession(
                str(folder / "model_v8.onnx"), options, providers=["CPUExecutionProvider"]
            )

    return Model(), reference.INPUT_LENGTH


def dnsmos(audio: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """DNSMOS of one clip: {"sig", "bak", "ovrl"} (P.835) and "p808" (P.808), each 1-5.

    audio: (time,) float in [-1, 1] at sample_rate, at least 1024 samples at 16 kHz.
    Raises ValueError (one line) for bad input or a non-finite score, ImportError without the
    `metrics` extra. About 0.2 s of one CPU core per clip up to 9 s long (see docs/listening.md).
    """
    x = _signal(audio, sample_rate).astype(np.float32)
    model, input_length = _dnsmos_model()
    window = int(input_length * RATE)
    period = None
    if len(x) < window:  # the reference repeats a short clip until it fills a window
        period = len(x)
        while len(x) < window:
            x = np.append(x, x)
    hops = int(np.floor(len(x) / RATE) - input_length) + 1
    counts: Counter[int] = Counter()
    for idx in range(hops):
        start = int(idx * RATE)
        if start + window > len(x):
            continue
        counts[start % period if period else start] += 1
    totals = np.zeros(4)
    for start, count in counts.items():
        seg = x[start : start + window]
        raw = model.onnx_sess.run(None, {"input_1": seg[np.newaxis, :]})[0][0]
        sig, bak, ovrl = model.get_polyfit_val(*raw, False)
        mel = model.audio_melspec(audio=seg[:-160]).astype(np.float32)
        p808 = model.p808_onnx_sess.run(None, {"input_1": mel[np.newaxis]})[0][0][0]
        totals += count * np.array([sig, bak, ovrl, p808], dtype=np.float64)
    means = totals / sum(counts.values())
    return _finite({k: float(v) for k, v in zip(KEYS_GENERATED, means, strict=True)}, "DNSMOS")


def generated_scores(audio: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """The scores that need no reference, for generated speech: today the `dnsmos` keys."""
    return dnsmos(audio, sample_rate)


def _mel_cepstra(x: np.ndarray) -> np.ndarray:
    """(time,) float64 at RATE -> (frames, MCD_ORDER + 1) mel-cepstra c0..c24."""
    sptk = _module("pysptk").sptk
    frames = np.lib.stride_tricks.sliding_window_view(x, MCD_FRAME)[::MCD_HOP]
    windowed = frames * np.blackman(MCD_FRAME)
    try:
        return np.stack(
            [
                sptk.mcep(f, order=MCD_ORDER, alpha=MCD_ALPHA, etype=1, eps=MCD_FLOOR)
                for f in windowed
            ]
        )
    except RuntimeError as e:  # SPTK's mcep gives up on a degenerate frame
        raise ValueError(f"mel-cepstral analysis failed: {e}") from e


def _aligned(
    reference: torch.Tensor, test: torch.Tensor, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two checked signals at RATE, the longer cut to the shorter (copy synthesis is aligned)."""
    ref = _signal(reference, sample_rate, "reference")
    out = _signal(test, sample_rate, "test")
    n = min(len(ref), len(out))
    return ref[:n], out[:n]


def _mcd(ref: np.ndarray, out: np.ndarray) -> float:
    diff = _mel_cepstra(ref)[:, 1:] - _mel_cepstra(out)[:, 1:]
    return float(np.mean(MCD_SCALE * np.sqrt((diff**2).sum(axis=1))))


def _pesq_wb(ref: np.ndarray, out: np.ndarray) -> float:
    pesq = _module("pesq")
    try:
        # pesq scales both by their joint peak: 0/0 for two silent signals (a numpy warning).
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(pesq.pesq(RATE, ref, out, "wb"))
    except pesq.NoUtterancesError as e:  # its voice activity detection runs on the reference
        raise ValueError("PESQ: no utterances detected in the reference") from e
    except pesq.PesqError as e:  # shorter than 1/4 s, ...
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"PESQ: {reason}") from e
    except ValueError as e:  # its C code meets a NaN ("cannot convert float NaN to integer")
        raise ValueError("PESQ: the test signal is silent, or too quiet to score") from e


def _stoi(ref: np.ndarray, out: np.ndarray) -> float:
    pystoi = _module("pystoi")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = float(pystoi.stoi(ref, out, RATE, extended=False))
    # pystoi returns 1e-5 with a warning when too little non-silent speech is left.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise ValueError("STOI: too little non-silent speech (it needs about 0.4 s)")
    return score


def mel_cepstral_distortion(reference: torch.Tensor, test: torch.Tensor, sample_rate: int) -> float:
    """Mean mel-cepstral distortion in dB between two time-aligned (time,) signals in [-1, 1].

    What is computed, as vocoder papers do it: both signals at 16 kHz (resampled if needed) and
    cut to the shorter; frames of 1024 samples every 256 (64 ms every 16 ms, no padding, a last
    partial frame dropped), Blackman window; SPTK mel-cepstra c0..c24 of each frame
    (`pysptk.sptk.mcep`, order 24, alpha 0.42, 1e-8 added to the periodogram); c0 (the frame's
    level) left out; per frame

        MCD = (10 / ln 10) * sqrt(2 * sum_{d=1..24} (c_d - c'_d) ** 2)

    averaged over every frame, silent ones included. No time warping: copy synthesis is aligned.
    0 for identical signals. Raises ValueError for input shorter than one frame or non-finite.
    """
    ref, out = _aligned(reference, test, sample_rate)
    return _finite({"mcd_db": _mcd(ref, out)}, "mel-cepstral distortion")["mcd_db"]


def copy_synthesis_scores(
    reference: torch.Tensor, test: torch.Tensor, sample_rate: int
) -> dict[str, float]:
    """{"pesq_wb", "stoi", "mcd_db", "log_mel_db"} of a re-synthesis against its source.

    reference, test: (time,) float in [-1, 1] at sample_rate, time-aligned (the longer is cut).
    pesq_wb: wide-band PESQ (ITU-T P.862.2 MOS-LQO, about 1.0-4.64); stoi: STOI (0-1); mcd_db:
    `mel_cepstral_distortion`; all three at 16 kHz. log_mel_db: log_mel_distance of
    wavenet.metrics.spectral at sample_rate. Raises ValueError (one line) for bad input or a
    non-finite score, ImportError without the `metrics` extra.
    """
    ref, out = _aligned(reference, test, sample_rate)
    n = min(len(reference), len(test))
    scores = {
        "pesq_wb": _pesq_wb(ref, out),
        "stoi": _stoi(ref, out),
        "mcd_db": _mcd(ref, out),
        "log_mel_db": log_mel_distance(reference[:n].float(), test[:n].float(), sample_rate),
    }
    return _finite(scores, "copy-synthesis scores")
