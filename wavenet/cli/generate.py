"""Checkpoint -> wav files: `wavenet-generate checkpoint=PATH seconds=2 batch=1 ...`.

Arguments are key=value pairs checked against `GenerateConfig`. Output is streamed to 16-bit PCM
wav files chunk by chunk, so long generations run in flat memory.
"""

import resource
import shutil
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import soundfile as sf
import torch

from wavenet import checkpoint, mulaw
from wavenet.cli.common import check_interrupted, parse_key_values, run_tool
from wavenet.config import MAX_BATCH, GenerateConfig
from wavenet.data.dataset import read_audio, speaker_ids
from wavenet.errors import DataError, check_int, one_line
from wavenet.files import available_memory, replace, signals_held, temporary_beside
from wavenet.model import envelope
from wavenet.model.features import MEL_FILE_EXTENSIONS, load_mel, utterance_mel
from wavenet.model.network import WaveNet
from wavenet.sampling.cached import generate, generation_device, output_length, resolve_impl

USAGE = """usage: wavenet-generate [checkpoint=PATH] [seconds=2] [batch=1] [temperature=T]
                        [floor=P] [sharpen=S]
                        [seed=0] [prime=WAV] [prime_seconds=1.0] [out=DIR]
                        [speaker=NAME | speaker=[NAME,NAME,...]] [mel_from=WAV|NPY|PT]
                        [impl=auto|compiled|compiled-int8|reference|cuda-graph]
                        [device=auto|cpu|cuda|cuda:N] [threads=0] [progress=true]
checkpoint defaults to the shipped model, data/pretrained/asterisk4-small.pt
temperature, floor, sharpen default to the checkpoint's own, else 1.0, 0, 0 (docs/listening.md)
speaker: for speaker-conditioned checkpoints (an unknown name lists the known ones)
mel_from: for vocoder checkpoints; an audio file is re-synthesised from its own log-mel"""


def conditioning(
    cfg: GenerateConfig, ckpt: dict, model: WaveNet
) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    """(speaker ids (batch,), log-mel (batch, n_mels, frames), batch) for this checkpoint, or
    a one-line ValueError for a missing, unknown or unexpected speaker or mel."""
    speaker = None
    names = checkpoint.speakers(ckpt)
    if cfg.speaker is not None:
        if not names:
            raise ValueError(f"{cfg.checkpoint} has no speaker conditioning; drop speaker=")
        speaker = speaker_ids(names, cfg.speakers)
    elif names:
        raise ValueError(
            f"{cfg.checkpoint} is speaker-conditioned: pass speaker=NAME, one of {', '.join(names)}"
        )
    mel_cfg = model.config.mel
    if not mel_cfg.enabled:
        if cfg.mel_from:
            raise ValueError(f"{cfg.checkpoint} has no mel conditioning; drop mel_from=")
        return speaker, None, cfg.batch
    if not cfg.mel_from:
        raise ValueError(
            f"{cfg.checkpoint} is a mel-conditioned vocoder: pass mel_from=WAV "
            f"(copy synthesis) or mel_from=FILE.npy/.pt ({mel_cfg.n_mels} mel bands)"
        )
    if Path(cfg.mel_from).suffix.lower() in MEL_FILE_EXTENSIONS:
        mel = load_mel(cfg.mel_from, mel_cfg)
    else:
        try:
            _, mel = utterance_mel(
                read_audio(cfg.mel_from, ckpt["sample_rate"]), ckpt["sample_rate"], mel_cfg
            )
        except DataError:
            raise
        except ValueError as e:
            raise ValueError(f"{cfg.mel_from}: {e}") from e
    batch = cfg.batch
    if mel.dim() == 3 and mel.shape[0] > 1:
        if batch not in (1, mel.shape[0]):
            raise ValueError(f"{cfg.mel_from}: holds {mel.shape[0]} mels but batch={batch}")
        batch = mel.shape[0]
        if speaker is not None and len(speaker) == 1:
            speaker = speaker.expand(batch)
    mel = mel.reshape(-1, *mel.shape[-2:]).expand(batch, -1, -1)
    if speaker is not None and len(speaker) != batch:
        raise ValueError(f"speaker names {len(speaker)} files but the mel gives {batch}")
    return speaker, mel, batch


def run(cfg: GenerateConfig) -> list[Path]:
    """Generate the wav files of `cfg` into `cfg.out`; returns their paths.

    Everything is checked before any output is touched: the arguments, the checkpoint, the
    prime, the mel, the speakers, the output's size against the wav format, the free disk
    space, memory and the open-file limit. Each file is written to a temporary file beside it
    and renamed into place once complete, so an error or Ctrl-C changes no existing file and
    leaves no partial one.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ckpt = checkpoint.load(cfg.checkpoint)
    model = checkpoint.build_model(ckpt, cfg.checkpoint)
    rate, codec = ckpt["sample_rate"], model.config.codec
    speaker, mel, batch = conditioning(cfg, ckpt, model)
    check_int(
        f"batch (the mel file {cfg.mel_from} holds {batch} mels)" if cfg.mel_from else "batch",
        batch,
        1,
        MAX_BATCH,
    )

    prime = None
    if cfg.prime:
        n = int(cfg.prime_seconds * rate)
        if n < 1:
            raise ValueError(
                f"prime_seconds={cfg.prime_seconds} is less than one sample at {rate} Hz"
            )
        audio = read_audio(cfg.prime, rate)[-n:]
        emphasised = mulaw.preemphasis(audio, checkpoint.preemphasis(ckpt))
        prime = codec.encode(emphasised).expand(batch, -1)
    samples = None
    if mel is None:
        samples = int(cfg.seconds * rate)
        if samples < 1:
            raise ValueError(f"seconds={cfg.seconds} is less than one sample at {rate} Hz")
    try:
        samples = output_length(model, samples, prime, mel)
    except ValueError as e:
        raise ValueError(f"{cfg.mel_from}: {e}") from e
    primed = prime.shape[-1] if prime is not None else 0
    if samples < 1:
        raise ValueError(
            f"{cfg.mel_from}: the mel covers {primed + samples} samples, "
            f"none after the {primed}-sample prime"
        )
    device = generation_device(str(cfg.device), cfg.impl)
    model.to(device)
    resolve_impl(cfg.impl, model, cfg.threads or torch.get_num_threads())

    out = Path(cfg.out)
    stem = Path(cfg.checkpoint).stem
    tags = [""] * batch
    if cfg.mel_from:
        tags = [f"_{Path(cfg.mel_from).stem}"] * batch
    if speaker is not None:
        tags = [
            f"{tag}_{checkpoint.speakers(ckpt)[int(i)]}"
            for tag, i in zip(tags, speaker, strict=True)
        ]
    paths = [out / f"{stem}{tag}_seed{cfg.seed}_{i}.wav" for i, tag in enumerate(tags)]
    source = str(Path(cfg.checkpoint).resolve())
    check_targets(paths, source)
    check_resources(model, out, batch, primed, samples, mel is not None)

    gen = torch.Generator().manual_seed(cfg.seed)
    settings = checkpoint.sampling(
        ckpt, temperature=cfg.temperature, floor=cfg.floor, sharpen=cfg.sharpen
    )
    temperature = envelope.sharpened_temperature(
        settings["temperature"], settings["sharpen"], mel, rate, model.config.mel, primed, samples
    )

    def on(x):  # the conditioning where the model is (the outputs are written from the CPU)
        return x.to(device) if x is not None else None

    chunks = generate(
        model,
        samples,
        batch,
        on(temperature) if isinstance(temperature, torch.Tensor) else temperature,
        on(prime),
        gen,
        progress=cfg.progress,
        impl=cfg.impl,
        speaker=on(speaker),
        mel=on(mel),
        floor=settings["floor"],
    )
    deemphasis = mulaw.Deemphasis(checkpoint.preemphasis(ckpt), batch)  # no-op without
    with output_files(paths, rate, source) as files:
        if prime is not None:  # outputs continue the prime, so it starts each file
            for f, row in zip(files, deemphasis(codec.decode(prime)).numpy(), strict=True):
                f.write(row)
        for chunk in chunks:
            check_interrupted()
            for f, row in zip(files, deemphasis(codec.decode(chunk.cpu())).numpy(), strict=True):
                f.write(row)
    return paths


# 16-bit PCM wav: a 44-byte header, 2 bytes a sample, sizes in 32-bit fields.
WAV_HEADER, WAV_LIMIT = 44, 2**32 - 1


def check_resources(
    model: WaveNet, out: Path, batch: int, primed: int, samples: int, mel: bool
) -> None:
    """ValueError/OSError (one line) when `batch` files of `primed + samples` samples would
    pass the wav format's 4 GiB limit, the free space of `out`'s disk, the memory the sampler
    needs, or the open-file limit (raised to the hard limit where that is enough)."""
    total = primed + samples
    size = WAV_HEADER + 2 * total
    if size > WAV_LIMIT:
        raise ValueError(
            f"{total} samples per file is {size / 2**30:.1f} GiB, beyond the wav "
            f"format's 4 GiB: generate less (seconds=)"
        )
    existing = next(p for p in (out, *out.parents) if p.exists() or p == Path(p.anchor))
    if existing.exists() and not existing.is_dir():
        raise OSError(f"{out}: {existing} is not a directory")
    free = shutil.disk_usage(existing).free
    if batch * size > free:
        raise OSError(
            f"{out}: {batch} files of {size / 2**20:.1f} MiB need "
            f"{batch * size / 2**20:.1f} MiB, the disk has {free / 2**20:.1f} MiB free"
        )
    c = model.config
    spans = sum((c.kernel_size - 1) * d for d in c.dilations)
    # float32 values: the queues, the prime's teacher-forced pass, the upsampled mel.
    values = spans * c.residual_channels
    values += (primed + 1) * (
        c.output_channels + c.gate_channels + 2 * c.residual_channels + c.skip_channels
    )
    if mel:
        values += (total + 1) * c.mel.channels
    need, available = 4 * batch * values, available_memory()
    if need > available:
        raise ValueError(
            f"batch={batch} of {total} samples needs about {need / 2**30:.1f} GiB "
            f"of memory, {available / 2**30:.1f} GiB are available: lower batch "
            f"or the length"
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = batch + 64  # the outputs and what the process already has open
    if soft != resource.RLIM_INFINITY and files > soft:
        if hard != resource.RLIM_INFINITY and files > hard:
            raise ValueError(
                f"batch={batch} needs {files} open files, the limit is {hard} "
                f"(ulimit -n): lower batch"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, hard))


SOURCE_TAG = "wavenet-generate checkpoint="  # the wav's comment: what made it


def check_targets(paths: list[Path], source: str | None = None) -> None:
    """OSError naming the first output path that a finished file could not replace (a folder,
    a FIFO, ...), before anything is generated: every rename into place then succeeds, so no
    output is left half replaced. An existing regular file is replaced, as a rerun expects,
    unless its comment says another checkpoint than `source` made it (two runs' last.pt into
    one out= would share file names): that is refused, naming both."""
    for path in paths:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):  # a rename replaces a link itself
            raise OSError(f"{path}: is in the way of an output file (not a regular file)")
        made_by = made_from(path)
        if source is not None and made_by is not None and made_by != source:
            raise OSError(
                f"{path}: generated from another checkpoint ({made_by}), not replaced: "
                f"give another out= or remove it"
            )


def made_from(path: Path) -> str | None:
    """The checkpoint a wav of wavenet-generate records in its comment, or None."""
    try:
        if path.stat().st_size > 0:
            with sf.SoundFile(path) as f:
                comment = f.comment or ""
                if comment.startswith(SOURCE_TAG):
                    return comment[len(SOURCE_TAG) :]
    except (OSError, sf.SoundFileError, RuntimeError):
        pass  # not a wav we can read: replaced as any file
    return None


@contextmanager
def output_files(
    paths: list[Path], rate: int, source: str | None = None
) -> Iterator[list[sf.SoundFile]]:
    """16-bit wav files open for writing, each a temporary file beside its path, renamed into
    place when the block completes; `source`, the checkpoint, is recorded in each comment. On
    any exception (Ctrl-C too) the temporaries are deleted and every existing file is left as
    it was; a folder made for them and left empty goes."""
    out = paths[0].parent
    made = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        with ExitStack() as stack:
            files = []
            for path in paths:
                with signals_held():  # an interrupt after mkstemp would orphan the file
                    temps.append(temporary_beside(path))
                tmp = temps[-1]
                f = stack.enter_context(sf.SoundFile(tmp, "w", rate, 1, "PCM_16", format="WAV"))
                if source is not None:
                    f.comment = SOURCE_TAG + source
                files.append(f)
            yield files
        for tmp, path in zip(temps, paths, strict=True):
            replace(tmp, path)  # an error names the output, not the temporary
    except sf.SoundFileError as e:
        raise OSError(f"{out}: cannot write the wav files ({one_line(e)})") from e
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        for folder in made:  # deepest first; only what we made and is still empty
            with suppress(OSError):
                folder.rmdir()


def _main(argv: list[str]) -> None:
    for path in run(parse_key_values(GenerateConfig, argv)):
        print(path)


def main(argv: list[str] | None = None) -> None:
    """wavenet-generate: prints each generated path; user errors print one line, exit 2."""
    run_tool("wavenet-generate", USAGE, _main, argv)


if __name__ == "__main__":
    main()
