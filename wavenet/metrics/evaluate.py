"""Exact bits/sample of a model on every file of a dataset (the figure `wavenet-evaluate` prints).

Every file is scored at every position t >= 1 (position 0 has no past), with the same zero
padding of the past as one forward pass over the whole file. Long files are cut into chunks of
`chunk` predicted positions, each fed `receptive_field` samples of left context (fewer at the
start of the file), so the result equals the whole-file pass; chunks of several files are
batched together, right-padded and masked.
"""

import math
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

from wavenet import mulaw
from wavenet.data.dataset import Utterance, speaker_ids
from wavenet.metrics.baseline import LN2, unigram_bits_per_sample
from wavenet.model.features import log_mel, pad_frames, usable_samples
from wavenet.model.network import WaveNet


def chunk_windows(length: int, chunk: int, context: int) -> list[tuple[int, int, int]]:
    """(window start, first scored position, end) of every chunk of a file of `length` samples.

    Positions 1 .. length-1 are scored, `chunk` per window; each window starts `context` samples
    before its first scored position, or at 0 at the start of the file.
    """
    return [(max(0, s - context), s, min(length, s + chunk)) for s in range(1, length, chunk)]


@torch.no_grad()
def evaluate(
    model: WaveNet,
    utterances: list[Utterance],
    batch: int = 8,
    chunk: int = 65536,
    progress: bool = False,
    speakers: list[str] | None = None,
    sample_rate: int = 16000,
    preemphasis: float = 0.0,
) -> dict:
    """Negative log-likelihood in bits per sample of `utterances` under `model`.

    utterances: their .audio is (time,) float in [-1, 1] at the model's sample rate; each is
    encoded with the model's codec (μ-law classes, or 16-bit codes for a continuous output) and
    scored at every position t >= 1, exactly as one forward pass over the whole file would
    score it. Files with fewer than 2 samples have no
    scored position and are not counted. Runs on the model's device; float64 accumulation.
    preemphasis: the coefficient the model was trained with (wavenet.mulaw.preemphasis); the
    figure is then per sample of the pre-emphasised audio, which is what it predicts.

    Conditioned models: `speakers` is the checkpoint's speaker table (each utterance's speaker
    must be in it); a mel-conditioned model hears the log-mel of each file (at `sample_rate`),
    and files are scored over whole hops (the mel describes nothing beyond the last one).

    Returns {"bits_per_sample": float, "per_speaker": {speaker: float} (both per code: per
    μ-law sample of a categorical model, per 16-bit sample of a continuous one), "unit":
    "mulaw" or "16-bit", "bits_per_16bit_sample": float (every model in one unit: a categorical
    model spreads each class's probability evenly over its 16-bit values), "samples": int
    (scored positions), "files": int, "uniform_bits_per_sample": log2(codes),
    "unigram_bits_per_sample": entropy of the code histogram of the scored samples}.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    codec = model.config.codec
    mel_cfg = model.config.mel if model.upsampler is not None else None
    audios = [
        u.audio[: usable_samples(len(u.audio), mel_cfg)] if mel_cfg else u.audio for u in utterances
    ]
    seqs = [codec.encode(mulaw.preemphasis(a, preemphasis)) for a in audios]
    ids = None
    if model.speaker_embed is not None:
        ids = speaker_ids(speakers or [], [u.speaker for u in utterances])
    mels = None
    if mel_cfg is not None:
        mels = [pad_frames(log_mel(a, sample_rate, mel_cfg), mel_cfg.context) for a in audios]
    # A model with linear prediction reads the prediction and excitation codes and predicts the
    # excitation's (wavenet.model.lpc), analysed over each whole file: (3, time) per file.
    lpcs = None
    if model.embed_p is not None:
        lpcs = [
            torch.stack(model.lpc_codes(s[None], m[None])).cpu()[:, 0]
            for s, m in zip(seqs, mels, strict=True)
        ]
    targets = [lp[2] for lp in lpcs] if lpcs is not None else seqs
    used = [i for i, s in enumerate(seqs) if s.numel() >= 2]
    if not used:
        raise ValueError(f"nothing to score: {len(utterances)} utterances, none with >= 2 samples")
    device = next(model.parameters()).device
    context = model.receptive_field

    # (file, window start, first scored, end); longest first so each batch pads little.
    windows = [(i, *w) for i in used for w in chunk_windows(len(seqs[i]), chunk, context)]
    windows.sort(key=lambda w: w[3] - w[1], reverse=True)
    totals = torch.zeros(len(seqs), dtype=torch.float64)
    was_training = model.training
    model.eval()
    bar = tqdm(
        total=sum(len(seqs[i]) - 1 for i in used),
        unit="sample",
        unit_scale=True,
        desc="evaluating",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    with bar:
        for b in range(0, len(windows), batch):
            group = windows[b : b + batch]
            width = group[0][3] - group[0][1]
            # Rows: the signal's codes, and with linear prediction the prediction's, the
            # excitation's and the targets.
            x = torch.full((len(group), 4, width), codec.silence, dtype=torch.long)
            mask = torch.zeros(len(group), width, dtype=torch.bool)
            for row, (i, start, first, end) in enumerate(group):
                x[row, 0, : end - start] = seqs[i][start:end]
                if lpcs is not None:
                    x[row, 1:, : end - start] = lpcs[i][:, start:end]
                mask[row, first - start : end - start] = True
            x, mask = x.to(device), mask.to(device)
            codes = (x[:, 1], x[:, 2]) if lpcs is not None else None
            speaker = ids[[w[0] for w in group]].to(device) if ids is not None else None
            local = None
            if mels is not None:
                local = torch.stack(
                    [
                        window_features(model, mels[i], start, end, width)
                        for i, start, _, end in group
                    ]
                )
            # Right padding cannot reach earlier positions (the model is causal); it is masked.
            params = model.run(x[:, 0], speaker=speaker, local=local, lpc_codes=codes)[0]
            nll = model.nll(params, x[:, 3] if lpcs is not None else x[:, 0]).double() * mask
            totals.index_add_(0, torch.tensor([w[0] for w in group]), nll.sum(dim=1).cpu())
            bar.update(int(mask.sum()))
    model.train(was_training)

    counts = torch.tensor([max(len(s) - 1, 0) for s in seqs], dtype=torch.float64)
    per_speaker = {}
    for speaker in sorted({utterances[i].speaker for i in used}):
        idx = torch.tensor([i for i in used if utterances[i].speaker == speaker])
        per_speaker[speaker] = float(totals[idx].sum() / counts[idx].sum()) / LN2
    bits = float(totals.sum() / counts.sum()) / LN2
    offset = mulaw.mean_log2_width(codec, torch.cat([targets[i][1:] for i in used]))
    if not math.isfinite(bits) or not all(map(math.isfinite, per_speaker.values())):
        raise ValueError(
            f"the model's bits/sample is not finite ({bits}): its logits overflow "
            f"on this data; no score"
        )
    return {
        "bits_per_sample": bits,
        "per_speaker": per_speaker,
        "unit": "mulaw" if codec.kind == "mulaw" else "16-bit",
        "bits_per_16bit_sample": bits + offset,
        "samples": int(counts.sum()),
        "files": len(used),
        "uniform_bits_per_sample": math.log2(codec.classes),
        "unigram_bits_per_sample": unigram_bits_per_sample(
            [targets[i][1:] for i in used], codec.classes
        ),
    }


def window_features(
    model: WaveNet, mel: torch.Tensor, start: int, end: int, width: int
) -> torch.Tensor:
    """Upsampled features of samples start..end-1 of a file, zero-padded to `width`.

    mel: the file's (n_mels, frames + 2 * context) padded log-mel. Only the frames around the
    window are upsampled: equal to slicing the whole file's features (see `Upsampler`).
    """
    hop, context = model.config.mel.hop_length, model.config.mel.context
    first, last = start // hop, -(-end // hop)
    frames = mel[:, first : last + 2 * context].to(model.embed.weight.device)
    feats = model.upsample(frames[None])[0, :, start - first * hop : end - first * hop]
    return F.pad(feats, (0, width - feats.shape[-1]))
