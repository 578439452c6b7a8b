"""How much of speech a linear predictor takes away, by where its coefficients come from; one
JSON line per setting.

    python scripts/prediction_gain.py --root ../shared/speech/asterisk4     # the 31 held-out files
    python scripts/prediction_gain.py --root data/demo --files 2            # seconds

The signal is what a model reads: the file at 16 kHz, pre-emphasised (`--preemphasis`, 0 and
0.85 by default), μ-law coded and decoded. The gain is 10·log10(Σs² / Σ(s − p)²) over all the
files, p[t] = −Σ a_k s[t−k] with 16 coefficients a frame (`--order`), taken

- `mel`: forward, from each frame's 80-band log-mel of the source (`model.lpc_order`'s
  predictor, `wavenet.model.envelope.lpc`): what a vocoder has;
- `past`: backward-adaptive, from the signal's own last `--window` samples before each
  update every `--hop` samples (Hann-windowed autocorrelation, the same noise floor, lag window
  and Levinson-Durbin), as low-delay codecs do: what an unconditioned model could have.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from copy_synthesis import heldout  # noqa: E402

from wavenet import mulaw  # noqa: E402
from wavenet.data.dataset import read_audio  # noqa: E402
from wavenet.model import envelope  # noqa: E402
from wavenet.model.config import MelConfig  # noqa: E402
from wavenet.model.features import utterance_mel  # noqa: E402

RATE = 16000


def backward_coefficients(s: torch.Tensor, order: int, hop: int, window: int) -> torch.Tensor:
    """(time,) signal -> (frames, order + 1) coefficients per `hop` samples, each from the
    `window` samples before the frame starts (the first frame's past is silence)."""
    frames = math.ceil(s.shape[-1] / hop)
    past = torch.nn.functional.pad(s.double(), (window, 0))
    segments = past.unfold(0, window, hop)[:frames]  # frame f: s[f*hop - window .. f*hop - 1]
    w = segments * torch.hann_window(window, periodic=False, dtype=torch.float64)
    r = torch.stack([(w[:, lag:] * w[:, : window - lag]).sum(-1) for lag in range(order + 1)], -1)
    r = r * (1.0 - envelope.LAG_WINDOW * torch.arange(order + 1, dtype=torch.float64).square())
    r[..., 0] = r[..., 0] * (1.0 + envelope.NOISE_FLOOR) + 1e-10
    return envelope.levinson(r, order)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="dataset folder (held-out split)")
    parser.add_argument("--files", type=int, default=0, help="first N held-out files (0 = all)")
    parser.add_argument("--order", type=int, default=16)
    parser.add_argument("--preemphasis", type=float, nargs="+", default=[0.0, 0.85])
    parser.add_argument("--hop", type=int, nargs="+", default=[256, 64, 16])
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args()
    paths = heldout(None, args.root)[: args.files or None]
    mel_cfg = MelConfig(n_mels=80)
    for pre in args.preemphasis:
        power = 0.0
        left: dict[str, float] = {}
        for path in paths:
            audio, mel = utterance_mel(read_audio(path, RATE), RATE, mel_cfg)
            s = mulaw.decode(mulaw.encode(mulaw.preemphasis(audio, pre))).double()
            power += float(s.square().sum())
            predictors = {"mel": envelope.lpc(mel, RATE, mel_cfg, args.order, pre)}
            for hop in args.hop:
                predictors[f"past, every {hop}"] = backward_coefficients(
                    s, args.order, hop, args.window
                )
            for name, a in predictors.items():
                hop = mel_cfg.hop_length if name == "mel" else int(name.split()[-1])
                p = envelope.predict(s, a, hop)
                left[name] = left.get(name, 0.0) + float((s - p).square().sum())
        for name, residual in left.items():
            line = {
                "coefficients": name,
                "preemphasis": pre,
                "order": args.order,
                "window": None if name == "mel" else args.window,
                "files": len(paths),
                "gain_db": round(10 * math.log10(power / residual), 2),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
