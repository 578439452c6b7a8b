"""Reading, resampling, trimming, caching and cropping speech for WaveNet training.

A dataset is a folder in one of wavenet.layouts' layouts (plain folder, metadata.csv, LJSpeech,
VCTK), which say which files it holds and their speakers.

``load_dataset`` decodes it once to mono float32 at one sample rate, caches the result outside
the dataset folder, and reports every file it could not use; ``speaker_hours`` sums it up.
``CropSampler`` and ``validation_batch`` turn utterances into fixed-length μ-law class crops
with their conditioning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from wavenet import mulaw
from wavenet.data.layouts import find_audio, resolve_layout, screen
from wavenet.errors import DataError, check_regular_file, one_line
from wavenet.model.features import MelConfig, log_mel, pad_frames, usable_samples

# Bump when the cached content or its meaning changes, so old caches are never reused.
CACHE_VERSION = 1


@dataclass
class Utterance:
    """One usable audio file.

    name: path relative to the dataset root, posix style, e.g. "wavs/a.flac".
    speaker: from the layout (metadata.csv's ``speaker`` column, VCTK's pXXX folder); "" when
        the layout has none.
    audio: (time,) float32 mono in [-1, 1] at the dataset sample rate.
    """

    name: str
    speaker: str
    audio: torch.Tensor


@dataclass
class Dataset:
    """Usable utterances, every (name, reason) that was skipped, and their common sample rate."""

    utterances: list[Utterance]
    skipped: list[tuple[str, str]]
    sample_rate: int


def read_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read one file as (time,) float32 mono in [-1, 1] at sample_rate.

    Channels are averaged; other sample rates are resampled. Raises DataError(f"{path}: ...")
    when the file is unreadable or not audio, has zero samples, or has NaN/inf samples.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    check_regular_file(path)  # a FIFO or device would block or never end
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise DataError(f"{path}: cannot read audio ({one_line(e)})") from e
    if data.shape[0] == 0:
        raise DataError(f"{path}: no audio samples")
    audio = torch.from_numpy(data)  # (time, channels)
    if not torch.isfinite(audio).all():
        raise DataError(f"{path}: contains NaN or infinite samples")
    audio = audio.mean(dim=1)
    if file_rate != sample_rate:
        audio = AF.resample(audio, int(file_rate), sample_rate)
    # Float files may exceed full scale and resampling can overshoot slightly; μ-law encoding
    # maps anything beyond ±1 outside [0, classes), so clip here once.
    return audio.clamp_(-1.0, 1.0).contiguous()


def trim_silence(audio: torch.Tensor, threshold_db: float, frame: int = 256) -> torch.Tensor:
    """Drop leading/trailing frames whose peak is below threshold_db relative to the clip's peak.

    audio: (time,) float. Returns a (time',) view of audio; frames are `frame` samples long,
    so up to frame-1 quiet samples may remain at each edge. All-silent input gives (0,).
    """
    if audio.dim() != 1:
        raise ValueError(f"audio must be 1-D (time,), got shape {tuple(audio.shape)}")
    if frame < 1:
        raise ValueError(f"frame must be >= 1, got {frame}")
    if threshold_db > 0:
        raise ValueError(
            f"threshold_db is relative to the peak, so must be <= 0, got {threshold_db}"
        )
    magnitude = audio.abs()
    peak = magnitude.max() if audio.numel() else audio.new_zeros(())
    if peak <= 0:
        return audio[:0]
    n_frames = math.ceil(audio.numel() / frame)
    padded = torch.nn.functional.pad(magnitude, (0, n_frames * frame - audio.numel()))
    frame_peaks = padded.view(n_frames, frame).amax(dim=1)
    loud = torch.nonzero(frame_peaks >= peak * 10.0 ** (threshold_db / 20.0)).flatten()
    start = int(loud[0]) * frame
    end = min((int(loud[-1]) + 1) * frame, audio.numel())
    return audio[start:end]


def default_cache_dir() -> Path:
    """$WAVENET_CACHE_DIR, else ~/.cache/wavenet."""
    env = os.environ.get("WAVENET_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "wavenet"


def _cache_key(
    root: Path,
    layout: str,
    entries: list[tuple[str, str]],
    sample_rate: int,
    trim_db: float | None,
    min_samples: int,
) -> str:
    """Hash of everything the decoded dataset depends on; any file edit changes size or mtime."""
    files = []
    for name, speaker in entries:
        try:
            stat = (root / name).stat()
            files.append([name, speaker, stat.st_size, stat.st_mtime_ns])
        except OSError:
            files.append([name, speaker, None, None])  # missing now; appearing later changes it
    blob = json.dumps(
        [CACHE_VERSION, str(root.resolve()), layout, files, sample_rate, trim_db, min_samples]
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_cache(path: Path, key: str) -> Dataset | None:
    """The cached Dataset, or None when absent, corrupt or not for this key."""
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # a refused pickle warns over 2 lines
            warnings.simplefilter("ignore")
            blob = torch.load(path, weights_only=True)
        if blob["key"] != key or blob["version"] != CACHE_VERSION:
            return None
        names, speakers, audios = blob["names"], blob["speakers"], blob["audio"]
        if not (len(names) == len(speakers) == len(audios)):
            return None
        utterances = [
            Utterance(str(n), str(s), a) for n, s, a in zip(names, speakers, audios, strict=True)
        ]
        skipped = [(str(n), str(r)) for n, r in blob["skipped"]]
        return Dataset(utterances, skipped, int(blob["sample_rate"]))
    except Exception:  # any unreadable cache is simply rebuilt from the audio
        return None


def _save_cache(path: Path, key: str, dataset: Dataset) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written cache."""
    blob = {
        "version": CACHE_VERSION,
        "key": key,
        "sample_rate": dataset.sample_rate,
        "names": [u.name for u in dataset.utterances],
        "speakers": [u.speaker for u in dataset.utterances],
        "audio": [u.audio for u in dataset.utterances],
        "skipped": [list(s) for s in dataset.skipped],
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=path.name, suffix=".tmp", delete=False
        ) as f:
            tmp = f.name
            torch.save(blob, f)
        os.replace(tmp, path)
    except OSError as e:
        # A cache we cannot write only costs time on the next run; training can go on.
        warnings.warn(f"{path}: cannot write dataset cache ({one_line(e)})", stacklevel=3)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def load_dataset(
    root: str | Path,
    sample_rate: int = 16000,
    trim_db: float | None = None,
    min_samples: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    layout: str = "auto",
) -> Dataset:
    """Decode every file of the dataset at root (see find_audio) to (time,) float32 mono.

    sample_rate: the rate every utterance is resampled to.
    layout: one of LAYOUTS ("auto": detect_layout(root)); it decides the files and speakers.

    trim_db: trim edge silence quieter than this (dB re. the clip's peak), None to keep it.
    Files that fail, or have fewer than min_samples samples after trimming, rows naming a file
    outside root and repeated rows are listed in Dataset.skipped with a reason. Raises
    DataError when no file is usable. Results are cached
    in cache_dir (default: $WAVENET_CACHE_DIR or ~/.cache/wavenet); root is never written to.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    root = Path(root)
    layout = resolve_layout(root, layout)
    entries, screened = screen(root, find_audio(root, layout))
    key = _cache_key(root, layout, entries, sample_rate, trim_db, min_samples)
    cache_path = Path(cache_dir or default_cache_dir()) / f"dataset-{key[:40]}.pt"
    cached = _load_cache(cache_path, key)
    if cached is not None:
        return cached

    utterances: list[Utterance] = []
    skipped: list[tuple[str, str]] = list(screened)
    for name, speaker in tqdm(entries, desc=f"decoding {root}", unit="file", disable=not progress):
        path = root / name
        if not path.is_file():
            skipped.append((name, "file not found"))
            continue
        try:
            audio = read_audio(path, sample_rate)
        except DataError as e:
            skipped.append((name, str(e).removeprefix(f"{path}: ")))
            continue
        if trim_db is not None:
            audio = trim_silence(audio, trim_db)
            if audio.numel() == 0:
                skipped.append((name, "silent (all samples are zero)"))
                continue
        if audio.numel() < min_samples:
            skipped.append((name, f"too short: {audio.numel()} samples < {min_samples}"))
            continue
        # clone: a trimmed view would otherwise save (and keep) the whole untrimmed storage.
        utterances.append(Utterance(name, speaker, audio.clone()))

    if not utterances:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise DataError(
            f"{root}: no usable audio, all {len(skipped)} files skipped ({reasons}{more})"
        )
    dataset = Dataset(utterances, skipped, sample_rate)
    _save_cache(cache_path, key, dataset)
    return dataset


def speaker_hours(utterances: list[Utterance], sample_rate: int) -> dict[str, float]:
    """Hours of audio per speaker, keys sorted by speaker name ("" for a layout without speakers).

    utterances: audio (time,) at sample_rate samples per second.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    samples: dict[str, int] = {}
    for u in utterances:
        samples[u.speaker] = samples.get(u.speaker, 0) + u.audio.numel()
    return {speaker: samples[speaker] / sample_rate / 3600.0 for speaker in sorted(samples)}


def speaker_table(utterances: list[Utterance], root: str | Path, layout: str) -> list[str]:
    """The sorted speaker names of `utterances` (a speaker's id is its position).

    Raises DataError naming the dataset when some file has no speaker label.
    """
    unlabelled = [u.name for u in utterances if not u.speaker]
    if unlabelled:
        raise DataError(
            f"{root}: speaker conditioning needs a speaker for every file, but "
            f"layout {layout} gives none for {len(unlabelled)} files (first: "
            f"{unlabelled[0]}); use a metadata.csv with a speaker column or VCTK "
            f"folders, or model.speaker_channels=0"
        )
    return sorted({u.speaker for u in utterances})


def speaker_ids(table: list[str], names: list[str]) -> torch.Tensor:
    """(len(names),) int64 ids of `names` in the speaker table; ValueError (one line) naming
    the first unknown speaker and listing the known ones."""
    if not table:
        raise ValueError("there is no speaker table (the model has no speaker conditioning)")
    for name in names:
        if name not in table:
            raise ValueError(
                f"unknown speaker {name!r}; the speaker table holds {', '.join(table)}"
            )
    return torch.tensor([table.index(name) for name in names], dtype=torch.int64)


def split_by_file(
    utterances: list[Utterance], val_fraction: float
) -> tuple[list[Utterance], list[Utterance]]:
    """Deterministic (train, val) split by file name, each in the input's order.

    Files are ranked by sha1 of their name; the lowest ceil(val_fraction * n) go to validation,
    at least one when val_fraction > 0 and n >= 2, never all of them. Reordering the input
    does not change which files land where.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    names = sorted({u.name for u in utterances})  # a name listed twice is still one file
    n = len(names)
    # round() first: 0.14 * 50 is 7.000000000000001 in floating point, and ceil would give 8.
    n_val = math.ceil(round(val_fraction * n, 9))
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, max(n - 1, 0))
    ranked = sorted(names, key=lambda name: (hashlib.sha1(name.encode()).hexdigest(), name))
    val_names = set(ranked[:n_val])
    train = [u for u in utterances if u.name not in val_names]
    val = [u for u in utterances if u.name in val_names]
    return train, val


def _encode(
    audio: torch.Tensor, length: int, codec: mulaw.Codec, preemphasis: float = 0.0
) -> torch.Tensor:
    """(time,) float -> (max(time, length),) compact-int codes of the (pre-emphasised) audio,
    left-padded with silence."""
    # uint8 holds 256 classes in a quarter of int32's memory; wider codes need int32.
    encoded = codec.encode(mulaw.preemphasis(audio, preemphasis)).to(codec.dtype)
    pad = length - encoded.numel()
    if pad > 0:
        silence = torch.full((pad,), codec.silence, dtype=codec.dtype)
        encoded = torch.cat([silence, encoded])
    return encoded


def _check_crop_args(utterances: list[Utterance], length: int, classes: int) -> None:
    if not utterances:
        raise ValueError("utterances is empty: need at least one utterance to crop from")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if classes < 2:
        raise ValueError(f"classes must be >= 2, got {classes}")


@dataclass
class Batch:
    """Crops and their conditioning, as the model takes them.

    audio: (n, length) int64 codes (μ-law classes, or 16-bit codes; see wavenet.mulaw.Codec).
    speaker: (n,) int64 ids into the speaker table, or None (no speaker conditioning).
    mel: (n, n_mels, length / hop + 2 * context) float32 log-mel frames of the crops with
      `context` frames on each side (silence beyond the utterance), or None.
    """

    audio: torch.Tensor
    speaker: torch.Tensor | None = None
    mel: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.audio)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.audio), move(self.speaker), move(self.mel))

    def split(self, size: int) -> list[Batch]:
        """Consecutive batches of `size` crops (the last may be smaller)."""
        return [
            Batch(
                self.audio[i : i + size],
                None if self.speaker is None else self.speaker[i : i + size],
                None if self.mel is None else self.mel[i : i + size],
            )
            for i in range(0, len(self), size)
        ]


@dataclass
class Conditioning:
    """How crops are made besides cutting: speaker ids in the speaker table `speakers` (sorted
    names, id = position), log-mel frames per `mel` at `sample_rate` (of the plain audio), and
    the pre-emphasis of the audio the classes encode. The default adds nothing."""

    speakers: list[str] | None = None
    mel: MelConfig | None = None
    sample_rate: int = 16000
    preemphasis: float = 0.0

    def __post_init__(self) -> None:
        if self.mel is not None and not self.mel.enabled:
            self.mel = None

    @property
    def hop(self) -> int:
        """Crop starts and lengths are multiples of this: the mel hop, or 1."""
        return self.mel.hop_length if self.mel is not None else 1


def _prepare(
    utterances: list[Utterance], length: int, codec: mulaw.Codec, cond: Conditioning
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, torch.Tensor | None]:
    """Per utterance: codes (at least `length`, left-padded with silence), the padded log-mel
    frames (with a mel), and the speaker ids (with a speaker table)."""
    _check_crop_args(utterances, length, codec.classes)
    if length % cond.hop:
        raise ValueError(f"crop length {length} must be a multiple of the mel hop {cond.hop}")
    ids = None
    if cond.speakers is not None:
        ids = speaker_ids(cond.speakers, [u.speaker for u in utterances])
    if cond.mel is None:
        return ([_encode(u.audio, length, codec, cond.preemphasis) for u in utterances], None, ids)
    encoded, mels = [], []
    for u in utterances:
        # Whole hops only; short files get leading silence, which the mel then describes too.
        audio = u.audio[: usable_samples(len(u.audio), cond.mel)]
        audio = torch.nn.functional.pad(audio, (max(0, length - len(audio)), 0))
        encoded.append(_encode(audio, length, codec, cond.preemphasis))  # the mel hears it plain
        mels.append(pad_frames(log_mel(audio, cond.sample_rate, cond.mel), cond.mel.context))
    return encoded, mels, ids


class CropSampler:
    """Random training crops of `length` codes, with their conditioning.

    Every utterance is encoded once with `codec` (a wavenet.mulaw.Codec, or an int: that many μ-law
    classes; files shorter than `length` are left-padded with the silence code). draw() picks files
    with probability proportional to their length and a uniform offset inside each, from its own
    generator seeded with `seed`; state_dict() and load_state_dict() let a resumed run draw exactly
    the batches the original would have.

    With a mel (`cond.mel`), utterances are cut to whole hops, `length` must be a multiple of
    the hop, crops start on hop boundaries, and each carries its frames plus `context` frames
    on each side; with a speaker table, each carries its utterance's speaker id (see `draw`).

    Data-parallel training: every rank builds the sampler with the same seed and its own
    `rank` of `world_size`. Each draw(batch) takes the choices of all world_size * batch crops
    from the shared stream and gathers only this rank's contiguous slice, so the ranks' crops
    are disjoint draws, together exactly the batch one process would draw with world_size * batch,
    and every rank's sampler state is the same (one state resumes any number of ranks).
    """

    def __init__(
        self,
        utterances: list[Utterance],
        length: int,
        codec: mulaw.Codec | int = 256,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        cond: Conditioning | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.cond = cond or Conditioning()
        self.codec = mulaw.as_codec(codec)
        encoded, mels, self._speakers = _prepare(utterances, length, self.codec, self.cond)
        self.length = length
        self.rank, self.world_size = rank, world_size
        # One flat buffer + start offsets so a batch is a single vectorised gather.
        self._flat = torch.cat(encoded)
        lengths = torch.tensor([e.numel() for e in encoded], dtype=torch.int64)
        self._starts = torch.cumsum(lengths, 0) - lengths
        hop = self.cond.hop
        self._n_offsets = (lengths - length) // hop + 1  # crop starts per file, always >= 1
        self._weights = lengths.to(torch.float64)
        if mels is not None:
            self._mel = torch.cat(mels, dim=1)  # (n_mels, all frames)
            frames = torch.tensor([m.shape[1] for m in mels], dtype=torch.int64)
            self._mel_starts = torch.cumsum(frames, 0) - frames
            self._mel_frames = length // hop + 2 * self.cond.mel.context
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, batch: int) -> Batch:
        """This rank's share of a global draw of world_size * batch crops, with conditioning."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        total = batch * self.world_size
        files = torch.multinomial(self._weights, total, replacement=True, generator=self.generator)
        # float64 uniform * count, floored: exact for any realistic file length (< 2**53).
        u = torch.rand(total, dtype=torch.float64, generator=self.generator)
        mine = slice(self.rank * batch, (self.rank + 1) * batch)
        files, u = files[mine], u[mine]
        steps = (u * self._n_offsets[files]).long()  # in hops
        index = (self._starts[files] + steps * self.cond.hop)[:, None] + torch.arange(self.length)
        out = Batch(self._flat[index].long())
        if self._speakers is not None:
            out.speaker = self._speakers[files]
        if self.cond.mel is not None:
            frames = (self._mel_starts[files] + steps)[:, None] + torch.arange(self._mel_frames)
            out.mel = self._mel[:, frames].permute(1, 0, 2).contiguous()
        return out

    def state_dict(self) -> dict:
        """{"generator": ByteTensor}; round-trips through torch.save/torch.load(weights_only)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the generator so draw() continues exactly as the saved sampler would."""
        self.generator.set_state(state["generator"])


def validation_batch(
    utterances: list[Utterance],
    length: int,
    max_crops: int,
    codec: mulaw.Codec | int = 256,
    cond: Conditioning | None = None,
) -> Batch:
    """Deterministic crops (at most max_crops) and their conditioning, for validation.

    Consecutive non-overlapping windows from the start of each file (short files left-padded
    with silence), taken round-robin across files so each file contributes before any file
    gives a second window.
    """
    if max_crops < 1:
        raise ValueError(f"max_crops must be >= 1, got {max_crops}")
    cond = cond or Conditioning()
    encoded, mels, ids = _prepare(utterances, length, mulaw.as_codec(codec), cond)
    n_windows = [e.numel() // length for e in encoded]
    picked: list[tuple[int, int]] = []  # (file, window)
    for k in range(max(n_windows)):
        picked += [(i, k) for i, n in enumerate(n_windows) if k < n]
    picked = picked[:max_crops]
    out = Batch(torch.stack([encoded[i][k * length : (k + 1) * length] for i, k in picked]).long())
    if ids is not None:
        out.speaker = ids[[i for i, _ in picked]]
    if mels is not None:
        m = length // cond.hop + 2 * cond.mel.context
        first = [k * length // cond.hop for _, k in picked]
        out.mel = torch.stack(
            [mels[i][:, f : f + m] for (i, _), f in zip(picked, first, strict=True)]
        )
    return out
