"""Checkpoint -> wav files: `wavenet-generate checkpoint=PATH seconds=2 batch=1 ...`.

Arguments are key=value pairs checked against `GenerateConfig`. Output is streamed to 16-bit PCM
wav files chunk by chunk, so long generations run in flat memory.
"""

from contextlib import ExitStack
from pathlib import Path

import soundfile as sf
import torch

from wavenet import checkpoint, mulaw
from wavenet.cli.common import parse_key_values, run_tool
from wavenet.config import GenerateConfig
from wavenet.data.dataset import read_audio, speaker_ids
from wavenet.errors import DataError
from wavenet.model.features import MEL_FILE_EXTENSIONS, load_mel, utterance_mel
from wavenet.model.network import WaveNet
from wavenet.sampling.cached import generate

USAGE = """usage: wavenet-generate [checkpoint=PATH] [seconds=2] [batch=1] [temperature=1.0]
                        [seed=0] [prime=WAV] [prime_seconds=1.0] [out=DIR]
                        [speaker=NAME | speaker=[NAME,NAME,...]] [mel_from=WAV|NPY|PT]
                        [impl=auto|compiled|reference] [threads=0] [progress=true]
checkpoint defaults to the shipped model, data/pretrained/asterisk4-small.pt
speaker: for speaker-conditioned checkpoints (an unknown name lists the known ones)
mel_from: for vocoder checkpoints; an audio file is re-synthesised from its own log-mel"""


def conditioning(cfg: GenerateConfig, ckpt: dict, model: WaveNet
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
        raise ValueError(f"{cfg.checkpoint} is speaker-conditioned: pass speaker=NAME, one of "
                         f"{', '.join(names)}")
    mel_cfg = model.config.mel
    if not mel_cfg.enabled:
        if cfg.mel_from:
            raise ValueError(f"{cfg.checkpoint} has no mel conditioning; drop mel_from=")
        return speaker, None, cfg.batch
    if not cfg.mel_from:
        raise ValueError(f"{cfg.checkpoint} is a mel-conditioned vocoder: pass mel_from=WAV "
                         f"(copy synthesis) or mel_from=FILE.npy/.pt ({mel_cfg.n_mels} mel bands)")
    if Path(cfg.mel_from).suffix.lower() in MEL_FILE_EXTENSIONS:
        mel = load_mel(cfg.mel_from, mel_cfg)
    else:
        try:
            _, mel = utterance_mel(read_audio(cfg.mel_from, ckpt["sample_rate"]),
                                   ckpt["sample_rate"], mel_cfg)
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
    """Generate the wav files of `cfg` into `cfg.out`; returns their paths."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ckpt = checkpoint.load(cfg.checkpoint)
    model = checkpoint.build_model(ckpt, cfg.checkpoint)
    rate, classes = ckpt["sample_rate"], model.config.classes
    speaker, mel, batch = conditioning(cfg, ckpt, model)

    prime = None
    if cfg.prime:
        audio = read_audio(cfg.prime, rate)[-int(cfg.prime_seconds * rate):]
        prime = mulaw.encode(audio, classes).expand(batch, -1)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(cfg.checkpoint).stem
    tags = [""] * batch
    if cfg.mel_from:
        tags = [f"_{Path(cfg.mel_from).stem}"] * batch
    if speaker is not None:
        tags = [f"{tag}_{checkpoint.speakers(ckpt)[int(i)]}" for tag, i in zip(tags, speaker,
                                                                              strict=True)]
    paths = [out / f"{stem}{tag}_seed{cfg.seed}_{i}.wav" for i, tag in enumerate(tags)]
    samples = None if mel is not None else int(cfg.seconds * rate)
    gen = torch.Generator().manual_seed(cfg.seed)
    with ExitStack() as stack:
        chunks = generate(model, samples, batch, cfg.temperature, prime, gen,
                          progress=cfg.progress, impl=cfg.impl, speaker=speaker, mel=mel)
        files = [stack.enter_context(sf.SoundFile(p, "w", rate, 1, "PCM_16")) for p in paths]
        if prime is not None:  # outputs continue the prime, so it starts each file
            for f in files:
                f.write(mulaw.decode(prime[0], classes).numpy())
        for chunk in chunks:
            for f, row in zip(files, mulaw.decode(chunk, classes).numpy(), strict=True):
                f.write(row)
    return paths


def _main(argv: list[str]) -> None:
    for path in run(parse_key_values(GenerateConfig, argv)):
        print(path)


def main(argv: list[str] | None = None) -> None:
    """wavenet-generate: prints each generated path; user errors print one line, exit 2."""
    run_tool("wavenet-generate", USAGE, _main, argv)


if __name__ == "__main__":
    main()
