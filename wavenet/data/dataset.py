"""Decoding, storing, splitting and cropping speech for WaveNet training.

A dataset is a folder in one of wavenet.layouts' layouts (plain folder, metadata.csv, LJSpeech,
VCTK), which say which files it holds and their speakers.

``load_dataset`` decodes it once into a store on disk (wavenet.data.store: 16-bit PCM read by
memory map, outside the dataset folder) and reports every file it could not use;
``speaker_hours`` sums it up. ``CropSampler`` and ``validation_batch`` cut fixed-length crops of
codes (μ-law classes or 16-bit) with their conditioning from it, encoding each batch as it is
drawn, so memory holds only the batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wavenet import mulaw
from wavenet.data.audio import PCM16_SCALE, from_pcm16, read_audio, trim_silence
from wavenet.data.layouts import find_audio, resolve_layout, screen
from wavenet.data.store import Store, default_cache_dir, open_store
from wavenet.errors import DataError

# log_mel's own transform: crops frame their span exactly as it frames a whole utterance.
from wavenet.model.features import SILENCE, MelConfig, mel_transform, usable_samples

__all__ = [
    "PCM16_SIGN",
    "Batch",
    "Conditioning",
    "CropSampler",
    "Dataset",
    "Utterance",
    "default_cache_dir",  # wavenet.data.store's, and read_audio, trim_silence wavenet.data.audio's
    "load_dataset",
    "pcm16_codes",
    "read_audio",
    "speaker_hours",
    "speaker_ids",
    "speaker_table",
    "split_by_file",
    "trim_silence",
    "validation_batch",
]


class Utterance:
    """One usable audio file.

    name: path relative to the dataset root, posix style, e.g. "wavs/a.flac".
    speaker: from the layout (metadata.csv's ``speaker`` column, VCTK's pXXX folder); "" when
        the layout has none.
    audio: (time,) float32 mono in [-1, 1] at the dataset sample rate: held in memory, or read
        from the store at each access (``Utterance.stored``: `store`, `offset`).
    samples: its length, without reading it.
    """

    __slots__ = ("name", "speaker", "samples", "store", "offset", "_audio")

    def __init__(self, name: str, speaker: str, audio: torch.Tensor) -> None:
        self.name, self.speaker, self._audio = name, speaker, audio
        self.samples, self.store, self.offset = audio.numel(), None, 0

    @classmethod
    def stored(cls, name: str, speaker: str, store: Store, offset: int, samples: int) -> Utterance:
        """The utterance store.pcm[offset : offset + samples]."""
        u = cls.__new__(cls)
        u.name, u.speaker, u._audio = name, speaker, None
        u.samples, u.store, u.offset = samples, store, offset
        return u

    @property
    def audio(self) -> torch.Tensor:
        if self._audio is not None:
            return self._audio
        return self.store.audio(self.offset, self.samples)

    def __repr__(self) -> str:
        return f"Utterance({self.name!r}, {self.speaker!r}, {self.samples} samples)"


@dataclass
class Dataset:
    """Usable utterances, every (name, reason) that was skipped, and their common sample rate."""

    utterances: list[Utterance]
    skipped: list[tuple[str, str]]
    sample_rate: int

    SHOWN = 5  # skipped files named per reason; the rest are counted

    def skipped_lines(self) -> list[str]:
        """What was skipped, for a log: up to SHOWN names per reason, then a count of the rest
        (100,000 repeated metadata rows make a few lines, not 100,000)."""
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.skipped:
            by_reason.setdefault(reason, []).append(name)
        lines = []
        for reason, names in by_reason.items():
            lines += [f"skipped {name}: {reason}" for name in names[: self.SHOWN]]
            if len(names) > self.SHOWN:
                lines.append(f"skipped {len(names) - self.SHOWN} more files: {reason}")
        return lines


def load_dataset(
    root: str | Path,
    sample_rate: int = 16000,
    trim_db: float | None = None,
    min_samples: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    layout: str = "auto",
    workers: int = 0,
    decode: bool = True,
    listing: list[tuple[str, str]] | None = None,
) -> Dataset:
    """Every file of the dataset at root (see find_audio), decoded into its store: utterances
    of (time,) float32 mono, read from the store on access.

    sample_rate: the rate every utterance is resampled to.
    layout: one of LAYOUTS ("auto": detect_layout(root)); it decides the files and speakers.
    trim_db: trim edge silence quieter than this (dB re. the clip's peak), None to keep it.
    workers: decoding processes (0: every core).
    decode: False leaves decoding to another process and waits for it (torchrun's ranks
        besides each machine's first).
    listing: find_audio(root, layout) where the caller has just read it, else None.

    Files that fail, or have fewer than min_samples samples after trimming, rows naming a file
    outside root and repeated rows are listed in Dataset.skipped with a reason. Raises
    DataError when no file is usable. The store lives in cache_dir (default: $WAVENET_CACHE_DIR
    or ~/.cache/wavenet), one per (root, sample_rate, trim_db); root is never written to.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: every core), got {workers}")
    root = Path(root)
    layout = resolve_layout(root, layout)
    entries, screened = screen(root, find_audio(root, layout) if listing is None else listing)
    cache = Path(cache_dir or default_cache_dir())
    names = [name for name, _ in entries]
    store, records = open_store(root, names, sample_rate, trim_db, cache, workers, progress, decode)

    utterances: list[Utterance] = []
    skipped: list[tuple[str, str]] = list(screened)
    for name, speaker in entries:
        record = records.get(name)
        if record is None:
            skipped.append((name, "file not found"))
        elif record.reason is not None:
            skipped.append((name, record.reason))
        elif record.length < min_samples:
            skipped.append((name, f"too short: {record.length} samples < {min_samples}"))
        else:
            utterances.append(Utterance.stored(name, speaker, store, record.offset, record.length))
    if not utterances:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise DataError(
            f"{root}: no usable audio, all {len(skipped)} files skipped ({reasons}{more})"
        )
    return Dataset(utterances, skipped, sample_rate)


def speaker_hours(utterances: list[Utterance], sample_rate: int) -> dict[str, float]:
    """Hours of audio per speaker, keys sorted by speaker name ("" for a layout without speakers).

    utterances: audio (time,) at sample_rate samples per second.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    samples: dict[str, int] = {}
    for u in utterances:
        samples[u.speaker] = samples.get(u.speaker, 0) + u.samples
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


class _Crops:
    """Crops of `length` codes from a list of utterances, with their conditioning.

    Each utterance is seen as it is cropped: cut to whole hops (with a mel), left-padded with
    silence to at least `length` samples. A crop is gathered from the store's memory map (or
    from the utterances' audio, when they are in memory), pre-emphasised and encoded when it is
    cut, and its mel computed from the same samples: frame i of an utterance describes samples
    [i * hop, (i + 1) * hop) of it, framed as wavenet.model.features.log_mel frames the whole.
    Index arithmetic and gathers are numpy, and torch runs on one thread meanwhile (see
    _one_thread).
    """

    def __init__(
        self, utterances: list[Utterance], length: int, codec: mulaw.Codec, cond: Conditioning
    ) -> None:
        if not utterances:
            raise ValueError("utterances is empty: need at least one utterance to crop from")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if codec.classes < 2:
            raise ValueError(f"classes must be >= 2, got {codec.classes}")
        if length % cond.hop:
            raise ValueError(f"crop length {length} must be a multiple of the mel hop {cond.hop}")
        self.length, self.codec, self.cond = length, codec, cond
        store = utterances[0].store
        self._table = None
        if store is not None and all(u.store is store for u in utterances):
            self._flat: np.ndarray = store.pcm  # int16: one vectorised gather per batch
            self._starts = np.array([u.offset for u in utterances], dtype=np.int64)
            if not cond.preemphasis:
                self._table = pcm16_codes(codec)
        else:
            audio = [u.audio.float().numpy() for u in utterances]
            self._flat = np.concatenate(audio)  # float32
            sizes = np.array([len(a) for a in audio], dtype=np.int64)
            self._starts = np.cumsum(sizes) - sizes
        samples = torch.tensor([u.samples for u in utterances], dtype=torch.int64)
        self.usable = usable_samples(samples, cond.mel) if cond.mel else samples
        self.pad = (length - self.usable).clamp(min=0)  # leading silence of short files
        self.padded = self.usable + self.pad  # the length each utterance is cropped from
        self._usable, self._pad = self.usable.numpy(), self.pad.numpy()
        self.speakers = None
        if cond.speakers is not None:
            self.speakers = speaker_ids(cond.speakers, [u.speaker for u in utterances])
        if cond.mel is not None:
            self._mel = mel_transform(cond.mel, cond.sample_rate)
            self.frames = length // cond.hop + 2 * cond.mel.context

    def batch(self, files: torch.Tensor, starts: torch.Tensor) -> Batch:
        """The crops of utterances `files` (n,) from `starts` (n,) (hop-aligned, in the padded
        utterance), with their speaker ids and mel frames."""
        with _one_thread():
            return self._batch(files, starts)

    def _batch(self, files: torch.Tensor, starts: torch.Tensor) -> Batch:
        f = files.numpy()
        # One sample before each crop: pre-emphasis needs it (silence before the utterance).
        span = starts.numpy()[:, None] - 1 + np.arange(self.length + 1)
        samples = self._samples(f, span)
        if self._table is not None:  # stored samples, no pre-emphasis: codes by lookup
            codes = torch.from_numpy(self._table[samples[:, 1:].view(np.uint16) ^ PCM16_SIGN])
        else:
            audio = mulaw.preemphasis(_float(samples), self.cond.preemphasis)[:, 1:]
            codes = self.codec.encode(audio)
        out = Batch(codes.long())
        if self.speakers is not None:
            out.speaker = self.speakers[files]
        if self.cond.mel is not None:
            out.mel = self._mels(f, starts.numpy() // self.cond.hop)
        return out

    def _samples(self, files: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(n, m) samples (int16 from the store, else float32) at `positions` (n, m) of the
        padded utterances `files` (n,): 0 in the padding and outside the utterance."""
        real = positions - self._pad[files][:, None]
        usable = self._usable[files][:, None]
        inside = (real >= 0) & (real < usable)
        index = self._starts[files][:, None] + np.minimum(real.clip(min=0), usable - 1)
        samples = self._flat[index.clip(min=0)]  # (clip: a file shorter than one hop)
        samples[~inside] = 0
        return samples

    def _mels(self, files: np.ndarray, first: np.ndarray) -> torch.Tensor:
        """(n, n_mels, frames) log-mel of the crops whose first frame is `first` (n,), with
        `context` frames on each side (silence beyond the utterance)."""
        cfg = self.cond.mel
        hop, context = cfg.hop_length, cfg.context
        left = (cfg.n_fft - hop) // 2
        right = cfg.n_fft - hop - left
        start = first - context  # the first frame, in the utterance's frames
        # log_mel reflect-pads the utterance by (left, right) and frames it without centring.
        span = self.frames * hop + cfg.n_fft - hop
        padded = (start * hop - left)[:, None] + np.arange(span)
        n = (self._usable + self._pad)[files][:, None]
        mirrored = np.where(padded < 0, -padded, padded)
        mirrored = np.where(mirrored >= n, 2 * (n - 1) - mirrored, mirrored)
        # log_mel zero-pads an utterance too short to reflect (_samples gives 0 outside it).
        positions = np.where(n > max(left, right), mirrored, padded)
        mel = self._mel(_float(self._samples(files, positions)))
        mel = torch.log(mel.clamp(min=1e-5))
        frame = start[:, None] + np.arange(self.frames)
        beyond = torch.from_numpy((frame < 0) | (frame >= n // hop))
        return mel.masked_fill_(beyond[:, None, :], SILENCE)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread inside: a batch's ops are too small to share, and on busy cores
    two threads ran them 10x slower than one (their pool waits for a core)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


PCM16_SIGN = np.uint16(PCM16_SCALE)  # a 16-bit sample's bits ^ this = sample + 32768


def pcm16_codes(codec: mulaw.Codec) -> np.ndarray:
    """(65536,) the code of every 16-bit sample v, at index v + 32768: what encoding v / 32768
    (exact in float32, as read_audio gives it) gives, for a lookup instead."""
    grid = torch.arange(-PCM16_SCALE, PCM16_SCALE, dtype=torch.float32) / PCM16_SCALE
    return codec.encode(grid).to(codec.dtype).numpy()


def _float(samples: np.ndarray) -> torch.Tensor:
    """Gathered samples as float32 audio: int16 from the store scaled as read_audio reads."""
    return from_pcm16(samples) if samples.dtype == np.int16 else torch.from_numpy(samples)


class CropSampler:
    """Random training crops of `length` codes, with their conditioning.

    Crops are encoded with `codec` (a wavenet.mulaw.Codec, or an int: that many μ-law classes)
    as they are drawn; files shorter than `length` are left-padded with silence. draw() picks
    files with probability proportional to their (padded) length and a uniform offset inside
    each, from its own generator seeded with `seed`; state_dict() and load_state_dict() let a
    resumed run draw exactly the batches the original would have.

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
        self._crops = _Crops(utterances, length, self.codec, self.cond)
        self.length = length
        self.rank, self.world_size = rank, world_size
        padded = self._crops.padded
        self._n_offsets = (padded - length) // self.cond.hop + 1  # crop starts per file, >= 1
        self._weights = padded.to(torch.float64)
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
        return self._crops.batch(files, steps * self.cond.hop)

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
    crops = _Crops(utterances, length, mulaw.as_codec(codec), cond or Conditioning())
    n_windows = crops.padded // length
    files, windows = [], []
    for k in range(int(n_windows.max())):
        have = sum(len(f) for f in files)
        if have >= max_crops:
            break
        files.append(torch.nonzero(n_windows > k).flatten()[: max_crops - have])
        windows.append(torch.full_like(files[-1], k))
    return crops.batch(torch.cat(files), torch.cat(windows) * length)
