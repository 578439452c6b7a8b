"""Copy-synthesis quality of a vocoder on a run's held-out files; one JSON line per system.

    python scripts/copy_synthesis.py --vocoder runs/vocoder_asterisk4/checkpoints/best.pt \
        --run runs/vocoder_asterisk4 --baseline data/pretrained/asterisk4-small.pt --out /tmp/cs

Every validation file of the run (data_report.json: never trained on) is cut to whole mel hops
and compared, with wavenet.metrics.listening.copy_synthesis_scores (SPTK mel-cepstral distortion,
log-mel distance, wide-band PESQ, STOI; needs `pip install 'wavenet[metrics]'`), against the
systems below; each row also gives DNSMOS P.835/P.808 of the system's own audio (sig, bak, ovrl,
p808), so the μ-law row is the goal a vocoder's DNSMOS is measured against:
  vocoder       the vocoder re-synthesising it from its own log-mel (at --temperature; by default
                the checkpoint's own, as wavenet-generate draws)
  unconditioned an unconditioned model's free output of the same length (--baseline): the
                distance of speech-like audio that does not follow the mel
  mulaw         the original quantised to 8-bit μ-law and back: the floor of any 8-bit model
Figures are means over files, weighted by frames. --out keeps the first --keep files of each
system as wavs; --figure draws the log-mel spectrograms of the first file's first 3 s and of its
re-synthesis side by side (the PNG in data/pretrained). Files are batched (--batch, similar
lengths together; the shorter rows' mels are padded with silence frames and their outputs cut
back, which changes nothing before the cut).
"""

import argparse
import json
import time
from pathlib import Path

import soundfile as sf
import torch

from wavenet import checkpoint, mulaw
from wavenet.data.dataset import Utterance, read_audio, split_by_file
from wavenet.data.layouts import find_audio
from wavenet.metrics.listening import KEYS_GENERATED, copy_synthesis_scores, dnsmos
from wavenet.metrics.plots import save_figure, spectrograms_figure
from wavenet.metrics.spectral import ANALYSIS
from wavenet.model import envelope
from wavenet.model.features import SILENCE, log_mel, usable_samples
from wavenet.sampling.cached import generate


def heldout(run: Path | None, root: Path | None) -> list[Path]:
    """A run's validation files (its data_report.json), or the held-out files of the split the
    shipped models were trained with (split_by_file(root, 0.1))."""
    if run is not None:
        report = json.loads((run / "data_report.json").read_text())
        return [Path(report["root"]) / name for name in report["validation"]]
    _, val = split_by_file([Utterance(n, s, torch.empty(0)) for n, s in find_audio(root)], 0.1)
    return [root / u.name for u in val]


def synthesise(
    model,
    rate: int,
    audios: list[torch.Tensor],
    batch: int,
    settings: dict[str, float],
    seed: int,
    conditioned: bool,
    threads: int,
    preemphasis: float = 0.0,
) -> tuple[list[torch.Tensor], float]:
    """Generated audio per input (same lengths) and the generation wall time in seconds."""
    order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
    outputs: list[torch.Tensor] = [torch.empty(0)] * len(audios)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for b in range(0, len(order), batch):
        group = order[b : b + batch]
        longest = max(len(audios[i]) for i in group)
        mel = None
        if conditioned:
            cfg = model.config.mel
            mels = [log_mel(audios[i], rate, cfg) for i in group]
            frames = longest // cfg.hop_length
            mel = torch.stack(
                [torch.nn.functional.pad(m, (0, frames - m.shape[1]), value=SILENCE) for m in mels]
            )
        samples = None if conditioned else longest
        temperature = envelope.sharpened_temperature(
            settings["temperature"], settings["sharpen"], mel, rate, model.config.mel, 0, longest
        )
        chunks = generate(
            model,
            samples,
            len(group),
            temperature,
            generator=gen,
            mel=mel,
            threads=threads,
            floor=settings["floor"],
        )
        out = torch.cat(list(chunks), dim=1)
        for row, i in enumerate(group):
            decoded = model.config.codec.decode(out[row : row + 1, : len(audios[i])])
            outputs[i] = mulaw.Deemphasis(preemphasis)(decoded)[0]
    return outputs, time.perf_counter() - start


def score(
    name: str, refs: list[torch.Tensor], tests: list[torch.Tensor], rate: int, extra: dict
) -> dict:
    """Means over files, weighted by frames, of copy_synthesis_scores."""
    frames = [len(r) // ANALYSIS.hop_length for r in refs]
    total = sum(frames)
    means = dict.fromkeys(("mcd_db", "log_mel_db", "pesq_wb", "stoi", *KEYS_GENERATED), 0.0)
    for f, r, t in zip(frames, refs, tests, strict=True):
        scores = copy_synthesis_scores(r, t, rate) | dnsmos(t, rate)
        for key in means:
            means[key] += f * scores[key] / total
    return {
        "system": name,
        "mcd_db": round(means["mcd_db"], 3),
        "log_mel_distance_db": round(means["log_mel_db"], 3),
        "pesq_wb": round(means["pesq_wb"], 3),
        "stoi": round(means["stoi"], 4),
        **{f"dnsmos_{k}": round(means[k], 2) for k in KEYS_GENERATED},
        "files": len(refs),
        "seconds_of_audio": round(sum(map(len, refs)) / rate, 1),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocoder", required=True, help="mel-conditioned checkpoint")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="run dir whose validation files to use")
    where.add_argument(
        "--root", type=Path, help="data root: the held-out files of its 10%% file split"
    )
    parser.add_argument("--baseline", help="unconditioned checkpoint for the reference row")
    parser.add_argument("--files", type=int, default=0, help="first N files only (0 = all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--temperature", type=float, help="sampling temperature (default: each checkpoint's own)"
    )
    parser.add_argument("--floor", type=float, help="probability floor (default: the vocoder's)")
    parser.add_argument("--sharpen", type=float, help="voicing sharpening (default: the vocoder's)")
    parser.add_argument(
        "--grid",
        nargs="+",
        metavar="T:FLOOR:SHARPEN",
        help="one vocoder row per setting (e.g. 0.6:0:0 0.6:0.002:1.5) instead of one",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", help="folder for example wavs")
    parser.add_argument("--keep", type=int, default=3, help="example files per system")
    parser.add_argument("--figure", help="PNG of the first file's first 3 s and its re-synthesis")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ckpt = checkpoint.load(args.vocoder)
    vocoder = checkpoint.build_model(ckpt)
    rate, cfg = ckpt["sample_rate"], vocoder.config.mel
    if not cfg.enabled:
        raise SystemExit(f"{args.vocoder}: not a mel-conditioned checkpoint")
    paths = heldout(args.run, args.root)[: args.files or None]
    refs = []
    for path in paths:
        audio = read_audio(path, rate)
        refs.append(audio[: usable_samples(len(audio), cfg)])
    systems = {"mulaw": ([mulaw.decode(mulaw.encode(a, 256), 256) for a in refs], {})}
    threads = args.threads or torch.get_num_threads()
    given = {"temperature": args.temperature, "floor": args.floor, "sharpen": args.sharpen}
    try:  # every setting checked before minutes of synthesis
        grid = [dict(zip(given, map(float, g.split(":")), strict=True)) for g in args.grid or []]
        every = [checkpoint.sampling(ckpt, **setting) for setting in grid or [given]]
    except ValueError as e:
        raise SystemExit(f"copy_synthesis.py: {e}") from None
    for settings in every:
        voc, seconds = synthesise(
            vocoder,
            rate,
            refs,
            args.batch,
            settings,
            args.seed,
            True,
            threads,
            checkpoint.preemphasis(ckpt),
        )
        name = "vocoder" if not grid else "vocoder_t{temperature:g}_f{floor:g}_s{sharpen:g}"
        systems[name.format(**settings)] = (
            voc,
            {
                "checkpoint": args.vocoder,
                "step": ckpt["step"],
                **settings,
                "train_wall_s": round(ckpt.get("wall_s", 0.0)),
                "generate_samples_per_s": round(sum(map(len, refs)) / seconds),
            },
        )
    if args.baseline:
        base_ckpt = checkpoint.load(args.baseline)
        base = checkpoint.build_model(base_ckpt)
        base_settings = checkpoint.sampling(base_ckpt, temperature=args.temperature)
        out, seconds = synthesise(
            base,
            rate,
            refs,
            args.batch,
            base_settings,
            args.seed,
            False,
            threads,
            checkpoint.preemphasis(base_ckpt),
        )
        systems["unconditioned"] = (
            out,
            {
                "checkpoint": args.baseline,
                "step": base_ckpt["step"],
                "temperature": base_settings["temperature"],
                "generate_samples_per_s": round(sum(map(len, refs)) / seconds),
            },
        )
    for name, (tests, extra) in systems.items():
        print(json.dumps(score(name, refs, tests, rate, extra)), flush=True)
        if args.out:
            folder = Path(args.out) / name
            folder.mkdir(parents=True, exist_ok=True)
            for path, audio in list(zip(paths, tests, strict=True))[: args.keep]:
                sf.write(folder / f"{path.stem}.wav", audio.numpy(), rate, subtype="PCM_16")
    if args.figure:
        clip = 3 * rate
        fig = spectrograms_figure(
            refs[0][:clip],
            voc[0][:clip],
            rate,
            (f"{paths[0].name} (held out)", "vocoder copy synthesis"),
        )
        save_figure(fig, args.figure)
    if args.out:
        folder = Path(args.out) / "original"
        folder.mkdir(parents=True, exist_ok=True)
        for path, audio in list(zip(paths, refs, strict=True))[: args.keep]:
            sf.write(folder / f"{path.stem}.wav", audio.numpy(), rate, subtype="PCM_16")


if __name__ == "__main__":
    main()
