"""The training loop: crops of real speech in, checkpoints, metrics and samples out.

`main` is the Hydra entry point (`wavenet-train`); it turns the composed config into typed
dataclasses and calls `train`, which knows nothing of Hydra beyond the run directory it is given.
"""

import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import hydra
import soundfile as sf
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from wavenet import checkpoint, mulaw
from wavenet.baseline import bigram_bits_per_sample
from wavenet.config import PROJECT_DIR, Config, register
from wavenet.data import CropSampler, load_dataset, split_by_file, validation_crops
from wavenet.model import WaveNet
from wavenet.sampler import generate

log = logging.getLogger("wavenet.train")
LN2 = math.log(2.0)


def bits_per_sample(model: WaveNet, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits of the samples that have a full receptive field of context.

    batch: (batch, receptive_field + n) int64 -> scalar tensor (differentiable).
    """
    r = model.receptive_field
    logits = model(batch)[:, :, r:]
    return F.cross_entropy(logits, batch[:, r:]) / LN2


@torch.no_grad()
def evaluate(model: WaveNet, crops: torch.Tensor, batch_size: int) -> float:
    """Validation bits/sample over fixed crops (n, length), weighted by predicted samples."""
    model.eval()
    total = 0.0
    for batch in crops.split(batch_size):
        total += bits_per_sample(model, batch).item() * len(batch)
    model.train()
    return total / len(crops)


def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to `min_ratio` at max_steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def write_wav(path: Path, indices: torch.Tensor, sample_rate: int, classes: int) -> None:
    """(time,) μ-law class indices -> 16-bit PCM wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, mulaw.decode(indices, classes).numpy(), sample_rate, subtype="PCM_16")


def train(cfg: Config, run_dir: Path, resolved: dict) -> dict:
    """Train per `cfg`, writing into `run_dir`; returns the final metrics record.

    run_dir receives metrics.jsonl, checkpoints/{last,best}.pt and samples/step_*.wav.
    `resolved` is the full resolved config, stored in every checkpoint.
    """
    tc, dc, mc = cfg.train, cfg.data, cfg.model
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)

    model = WaveNet(mc)
    r = model.receptive_field
    dataset = load_dataset(dc.root, dc.sample_rate, dc.trim_db, min_samples=r + 1,
                           cache_dir=dc.cache_dir, progress=tc.progress)
    for name, reason in dataset.skipped:
        log.warning("skipped %s: %s", name, reason)
    train_set, val_set = split_by_file(dataset.utterances, dc.val_fraction)
    if not val_set:
        val_set = train_set  # val_fraction=0: report fit to the training data
    crops = CropSampler(train_set, r + dc.crop, mc.classes, seed=tc.seed)
    val_batch = validation_crops(val_set, r + dc.crop, dc.val_crops, mc.classes)
    log.info("data: %d files used (%d train, %d validation), %d skipped, %.1f s of audio",
             len(dataset.utterances), len(train_set), len(val_set), len(dataset.skipped),
             sum(len(u.audio) for u in dataset.utterances) / dc.sample_rate)
    bigram = bigram_bits_per_sample(
        [mulaw.encode(u.audio, mc.classes) for u in train_set],
        [mulaw.encode(u.audio, mc.classes) for u in val_set], mc.classes)
    log.info("model: %.2f M parameters, receptive field %d samples (%.1f ms); "
             "bigram baseline %.3f bits/sample on validation",
             sum(p.numel() for p in model.parameters()) / 1e6, r, 1000 * r / dc.sample_rate, bigram)

    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio))

    ckpt_dir = run_dir / "checkpoints"
    step, best = 0, math.inf
    resume_path = {"auto": ckpt_dir / "last.pt", "never": None}.get(tc.resume, Path(tc.resume))
    if resume_path is not None and (resume_path.exists() or tc.resume != "auto"):
        ckpt = checkpoint.load(resume_path)
        if ckpt["model_config"] != asdict(mc):
            raise checkpoint.CheckpointError(
                f"{resume_path}: model {ckpt['model_config']} differs from the configured "
                f"{asdict(mc)}; use another hydra.run.dir or train.resume=never")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        crops.load_state_dict(ckpt["crops"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, best = ckpt["step"], ckpt.get("best_val_bits") or math.inf
        log.info("resumed from %s at step %d", resume_path, step)

    def save(path: Path) -> None:
        checkpoint.save(path, {
            "model": model.state_dict(), "model_config": asdict(mc),
            "sample_rate": dc.sample_rate, "classes": mc.classes, "config": resolved,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "crops": crops.state_dict(), "torch_rng": torch.get_rng_state(),
            "step": step, "best_val_bits": None if math.isinf(best) else best,
        })

    metrics = (run_dir / "metrics.jsonl").open("a")
    model.train()
    bar = tqdm(total=tc.max_steps, initial=step, unit="step", disable=not tc.progress,
               dynamic_ncols=True, file=sys.stderr)
    record: dict = {}
    seen, clock = 0, time.perf_counter()
    while step < tc.max_steps:
        batch = crops.sample(tc.batch_size)
        loss = bits_per_sample(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        seen += batch.shape[0] * (batch.shape[1] - r)
        bar.update(1)
        bar.set_postfix(bits=f"{loss.item():.3f}")

        validate = step % tc.val_every == 0 or step == tc.max_steps
        if step % tc.log_every == 0 or validate:
            now = time.perf_counter()
            record = {"step": step, "train_bits": round(loss.item(), 5),
                      "lr": scheduler.get_last_lr()[0],
                      "samples_per_s": round(seen / (now - clock), 1)}
            if validate:
                record["val_bits"] = round(evaluate(model, val_batch, tc.batch_size), 5)
                record["bigram_val_bits"] = round(bigram, 5)
                bar.write(f"step {step}: train {loss.item():.3f}, validation "
                          f"{record['val_bits']:.3f} bits/sample (bigram {bigram:.3f})")
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            seen, clock = 0, time.perf_counter()
        if validate:
            if record["val_bits"] < best:
                best = record["val_bits"]
                save(ckpt_dir / "best.pt")
            save(ckpt_dir / "last.pt")
            if tc.sample_seconds:
                n = int(tc.sample_seconds * dc.sample_rate)
                gen = torch.Generator().manual_seed(tc.seed + step)
                audio = torch.cat(list(generate(model, n, temperature=tc.sample_temperature,
                                                generator=gen)), dim=1)
                write_wav(run_dir / "samples" / f"step_{step:07d}.wav", audio[0],
                          dc.sample_rate, mc.classes)
                model.train()
            clock = time.perf_counter()  # keep validation out of the throughput figure
    bar.close()
    metrics.close()
    log.info("done: step %d, best validation %.3f bits/sample; checkpoints in %s",
             step, best, ckpt_dir)
    return record


register()


@hydra.main(config_path=str(PROJECT_DIR / "conf"), config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> None:
    """wavenet-train: Hydra entry point. User errors print one line and exit 2."""
    from hydra.core.hydra_config import HydraConfig

    try:
        cfg: Config = OmegaConf.to_object(dcfg)
        resolved = OmegaConf.to_container(dcfg, resolve=True)
        train(cfg, Path(HydraConfig.get().runtime.output_dir), resolved)
    except (ValueError, OSError) as e:  # DataError, CheckpointError and bad values
        print(f"wavenet-train: error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


def one_line(e: BaseException) -> str:
    """An exception as one line, for user-facing errors."""
    text = " ".join(str(e).split())
    return text or type(e).__name__



