"""The dataset store: every file of a dataset decoded once to 16-bit PCM on disk, read by memory
map, so memory does not grow with the data and every process on a machine shares one copy
through the page cache.

A store is a folder in the cache, one per (dataset root, sample rate, trim), whatever the model,
codec or layout:

    audio.pcm      the int16 samples of every decoded file, end to end
    journal.jsonl  a header line, then one line per decoded file: its name, size and mtime when
                   it was decoded, and where its samples lie (offset, length) or why it is
                   unusable

A file's samples are appended and flushed before its line, so a decode killed part way keeps
every file it finished and goes on from there next time (an unfinished tail of audio.pcm is cut
off, a torn last line dropped). A file whose size or mtime has changed is decoded again, alone:
its new line supersedes the old. One process writes at a time (a lock file); readers map
audio.pcm, which only ever grows while they hold it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import contextmanager, nullcontext
from multiprocessing import get_context
from pathlib import Path
from stat import S_ISREG
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from wavenet.data.audio import from_pcm16, read_audio, to_pcm16, trim_silence
from wavenet.errors import DataError, one_line
from wavenet.files import atomic_write, remove_temporaries

# Bump when the stored content or its meaning changes: a store of another version is rebuilt.
STORE_VERSION = 2
AUDIO, JOURNAL, LOCK, MEMO = "audio.pcm", "journal.jsonl", ".lock", "memo.json"
DTYPE = np.dtype("<i2")
SILENT = "silent (all samples are zero)"
# Below this much audio to decode, one process is quicker than starting workers (each imports
# torch: seconds); the bundled demo set (8 MB) decodes in about a second.
POOL_MIN_BYTES = 64 * 2**20
SYNC_SAMPLES = 2**25  # write decoded audio to disk every 64 MB, so the final sync is short
WAIT_S = 2.0  # how often a process waiting for another's decode looks again
TASK_FILES = 16  # files per worker task: few enough to keep the bar moving, enough to batch IPC


def default_cache_dir() -> Path:
    """$WAVENET_CACHE_DIR, else ~/.cache/wavenet."""
    env = os.environ.get("WAVENET_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "wavenet"


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Record(NamedTuple):  # a tuple: a store of 100,000 files makes 100,000 of them per start
    """One decoded file: its size and mtime when decoded, and its samples
    audio.pcm[offset : offset + length], or the reason it is unusable (then length 0)."""

    size: int
    mtime_ns: int
    offset: int = 0
    length: int = 0
    reason: str | None = None

    def current(self, stat: os.stat_result) -> bool:
        return (self.size, self.mtime_ns) == (stat.st_size, stat.st_mtime_ns)


class Store:
    """An opened store: `records` by file name (posix, relative to the dataset root), `pcm` the
    int16 samples as a read-only memory map (shared through the page cache), `sample_rate`."""

    def __init__(self, path: Path, sample_rate: int, records: dict[str, Record]) -> None:
        self.path, self.sample_rate, self.records = path, sample_rate, records
        end = max((r.offset + r.length for r in records.values()), default=0)
        # Map only what the records name: a writer may be appending beyond it.
        self.pcm = (
            np.memmap(path / AUDIO, dtype=DTYPE, mode="r", shape=(end,))
            if end
            else np.zeros(0, dtype=DTYPE)
        )
        self._fd: int | None = None

    def read(self, offset: int, length: int) -> np.ndarray:
        """(length,) int16 samples from `offset`, read (not mapped), so scanning the whole
        store leaves nothing of it in this process's memory."""
        if self._fd is None:
            # A descriptor kept for the store's life, closed when the store is collected
            # (a file object left to the collector would warn: ResourceWarning).
            self._fd = os.open(self.path / AUDIO, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)
        raw = os.pread(self._fd, length * DTYPE.itemsize, offset * DTYPE.itemsize)
        if len(raw) != length * DTYPE.itemsize:
            raise DataError(f"{self.path / AUDIO}: truncated (delete the folder to rebuild it)")
        return np.frombuffer(raw, dtype=DTYPE)

    def audio(self, offset: int, length: int) -> torch.Tensor:
        """(length,) float32 in [-1, 1): the samples from `offset`, as read_audio gave them."""
        return from_pcm16(self.read(offset, length))

    def memo(self, key: str) -> float | None:
        """A figure computed from the store before (see remember), or None."""
        try:
            return float(json.loads((self.path / MEMO).read_text())[key])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, key: str, value: float) -> None:
        """Keep a figure computed from the store (a baseline), so the next run skips the work.
        A memo that cannot be written is only lost time."""
        try:
            with _locked(self.path / LOCK):
                try:
                    memo = json.loads((self.path / MEMO).read_text())
                except (OSError, ValueError):
                    memo = {}
                memo[key] = value
                atomic_write(self.path / MEMO, json.dumps(memo).encode(), durable=False)
        except OSError:
            pass

    def __getstate__(self) -> dict:  # a pickled store reopens its files
        return {"path": self.path, "sample_rate": self.sample_rate, "records": self.records}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["sample_rate"], state["records"])


def store_key(root: Path, sample_rate: int, trim_db: float | None) -> str:
    """What the decoded samples depend on besides each file's own bytes."""
    blob = json.dumps([STORE_VERSION, str(root.resolve()), sample_rate, trim_db])
    return hashlib.sha256(blob.encode()).hexdigest()


def open_store(
    root: Path,
    names: list[str],
    sample_rate: int,
    trim_db: float | None,
    cache_dir: Path,
    workers: int = 0,
    progress: bool = False,
    decode: bool = True,
) -> tuple[Store, dict[str, Record]]:
    """The store of the dataset at root, with every file of `names` decoded as it is now.

    Files not yet in the store, or changed since (size or mtime), are decoded (by `workers`
    processes, 0 = every core) and appended; the rest are read from it. decode=False leaves
    that to another process (torchrun's local rank 0) and waits for it, however long it takes.
    Returns the store and the record of each name whose file exists now (a missing file has
    none). Raises DataError when the cache folder cannot be written.
    """
    key = store_key(root, sample_rate, trim_db)
    path = cache_dir / f"store-{key[:32]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        while True:
            with _locked(path / LOCK):
                records = _recover(path, key, root, sample_rate, trim_db)
                stats = _stats(root, names)
                todo = [n for n in stats if n not in records or not records[n].current(stats[n])]
                if todo and decode:
                    _decode(
                        path, root, todo, stats, records, sample_rate, trim_db, workers, progress
                    )
                if decode or not todo:
                    break
            time.sleep(WAIT_S)  # the decoding process takes the lock meanwhile
    except OSError as e:
        raise DataError(
            f"{cache_dir}: cannot write the dataset store ({one_line(e)}); "
            f"set data.cache_dir or $WAVENET_CACHE_DIR to a writable folder"
        ) from e
    current = {n: records[n] for n in stats if n in records}
    return Store(path, sample_rate, records), current


def _stats(root: Path, names: list[str]) -> dict[str, os.stat_result]:
    """The stat of each name that is a regular file now."""
    stats = {}
    folder = str(root).rstrip(os.sep) + os.sep
    for name in names:  # strings, not Paths: this runs once per file on every start
        try:
            stat = os.stat(name if name.startswith(os.sep) else folder + name)
        except OSError:
            continue
        if S_ISREG(stat.st_mode):
            stats[name] = stat
    return stats


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (one writer per store; others wait)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _recover(
    path: Path, key: str, root: Path, sample_rate: int, trim_db: float | None
) -> dict[str, Record]:
    """The records of the journal at path (the latest line per name), after making the store
    whole: a missing or foreign header starts an empty store, a torn or bad line ends the
    journal there (rewritten without it), and samples beyond the last record are cut off."""
    audio, journal = path / AUDIO, path / JOURNAL
    remove_temporaries(path)  # what a killed atomic_write left
    header = {"version": STORE_VERSION, "key": key, "root": str(root), "rate": sample_rate}
    header["trim_db"] = trim_db
    try:
        lines = journal.read_bytes().split(b"\n")
    except FileNotFoundError:
        lines = []
    try:
        ok = json.loads(lines[0]) == header
    except (IndexError, ValueError):
        ok = False
    if not ok:  # a new store, or another version's: start afresh (unlink: readers keep theirs)
        audio.unlink(missing_ok=True)
        audio.touch()
        atomic_write(journal, (json.dumps(header) + "\n").encode(), durable=False)
        return {}
    samples = audio.stat().st_size // DTYPE.itemsize
    body = lines[1:]
    whole = body[-1] == b""  # the journal ends with a newline: no torn last line
    if whole:
        body = body[:-1]
    try:  # one parse of the whole journal; line by line only to find where it went bad
        rows = json.loads(b"[" + b",".join(body) + b"]")
        if len(rows) != len(body):
            raise ValueError("a line holds more than one value")
    except ValueError:
        rows = []
        for line in body:
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    records: dict[str, Record] = {}
    good = 0
    for r in rows:
        try:
            record = Record(
                int(r["size"]), int(r["mtime_ns"]), int(r["offset"]), int(r["length"]), r["reason"]
            )
            if record.offset < 0 or record.length < 0 or record.offset + record.length > samples:
                raise ValueError("samples beyond audio.pcm")
            records[str(r["name"])] = record
        except (ValueError, KeyError, TypeError):
            break
        good += 1
    if good < len(body) or not whole:
        kept = [lines[0], *body[:good]]
        atomic_write(journal, b"\n".join(kept) + b"\n", durable=False)
    end = max((r.offset + r.length for r in records.values()), default=0)
    if samples > end:
        os.truncate(audio, end * DTYPE.itemsize)
    return records


def _decode(
    path: Path,
    root: Path,
    todo: list[str],
    stats: dict[str, os.stat_result],
    records: dict[str, Record],
    sample_rate: int,
    trim_db: float | None,
    workers: int,
    progress: bool,
) -> None:
    """Decode the files `todo`, writing each one's samples and then its line, and add their
    records. Every decoding process writes its own samples into audio.pcm, at offsets it takes
    from one shared counter (after the last record: _recover cut what lies beyond), so only
    offsets travel back to this process, which writes the journal."""
    workers = workers or default_workers()
    if sum(stats[n].st_size for n in todo) < POOL_MIN_BYTES:
        workers = 1
    tasks = [todo[i : i + TASK_FILES] for i in range(0, len(todo), TASK_FILES)]
    bar = tqdm(total=len(todo), desc=f"decoding {root}", unit="file", disable=not progress)
    end = (path / AUDIO).stat().st_size // DTYPE.itemsize
    # Shared between processes only where there are several (a shared Value starts
    # multiprocessing's resource tracker: a process of its own).
    counter = get_context("spawn").Value("q", end) if workers > 1 else _Counter(end)
    sink = _Sink(path / AUDIO, counter)
    samples = synced = 0
    syncing: Future | None = None  # audio.pcm going to disk in a thread: decoding goes on
    try:
        with open(path / JOURNAL, "ab") as journal, bar, ThreadPoolExecutor(1) as syncer:
            for names, results in _results(root, tasks, sample_rate, trim_db, workers, sink):
                lines = []
                for name, result in zip(names, results, strict=True):
                    stat = stats[name]
                    if isinstance(result, str):
                        record = Record(stat.st_size, stat.st_mtime_ns, reason=result)
                    else:
                        record = Record(stat.st_size, stat.st_mtime_ns, *result)
                        samples += result[1]
                    records[name] = record
                    lines.append(json.dumps({"name": name, **record._asdict()}) + "\n")
                journal.write("".join(lines).encode())  # the samples are written already
                journal.flush()
                # To disk as we go, so the last sync is short; one sync at a time.
                if samples - synced >= SYNC_SAMPLES and (syncing is None or syncing.done()):
                    if syncing is not None:
                        syncing.result()  # its OSError, if any
                    syncing = syncer.submit(os.fdatasync, sink.fd)
                    synced = samples
                bar.set_postfix_str(f"{samples / sample_rate / 3600:.2f} h", refresh=False)
                bar.update(len(names))
            if syncing is not None:
                syncing.result()
            os.fsync(sink.fd)
            os.fsync(journal.fileno())
    finally:
        sink.close()


class _Counter:
    """One process's offset counter, with the interface of a multiprocessing.Value."""

    def __init__(self, value: int) -> None:
        self.value = value

    def get_lock(self) -> nullcontext:
        return nullcontext()


class _Sink:
    """audio.pcm opened for writing in one decoding process, and the counter every process
    takes its offsets from (a multiprocessing.Value: its lock makes each take atomic)."""

    def __init__(self, audio: Path, counter) -> None:
        self.audio, self.counter = audio, counter
        self.fd = os.open(audio, os.O_WRONLY)

    def write(self, pcm: list[np.ndarray]) -> list[tuple[int, int]]:
        """Write these files' samples end to end; (offset, length) of each."""
        lengths = [len(x) for x in pcm]
        with self.counter.get_lock():
            offset = self.counter.value
            self.counter.value += sum(lengths)
        data = memoryview(np.concatenate(pcm).astype(DTYPE, copy=False)).cast("B")
        at, done = offset * DTYPE.itemsize, 0
        while done < len(data):  # pwrite may write less than asked
            done += os.pwrite(self.fd, data[done:], at + done)
        starts = np.cumsum([offset, *lengths[:-1]])
        return [(int(start), length) for start, length in zip(starts, lengths, strict=True)]

    def close(self) -> None:
        os.close(self.fd)

    def __getstate__(self) -> dict:  # to a spawned worker: the path and counter, not the fd
        return {"audio": self.audio, "counter": self.counter}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["audio"], state["counter"])


def _results(
    root: Path,
    tasks: list[list[str]],
    sample_rate: int,
    trim_db: float | None,
    workers: int,
    sink: _Sink,
) -> Iterator[tuple[list[str], list]]:
    """(names, decode results) per task, in no fixed order, from `workers` processes: this one
    and a pool of `workers - 1` (spawned: forking a process that has run torch's thread pools
    can hang), a few tasks in flight per pool worker. This process decodes a task itself
    whenever no worker's result is waiting, from the start (each worker first imports torch:
    seconds of a core) to the end, so no core is left to a process that only collects."""

    def paths(names: list[str]) -> list[str]:
        return [str(root / n) for n in names]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker: resampling one file is too small to share
    try:
        if workers == 1:
            for names in tasks:
                yield names, _decode_task(paths(names), sample_rate, trim_db, sink)
            return
        pool = ProcessPoolExecutor(
            workers - 1,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(sink,),
        )
        try:
            pending: dict[Future, list[str]] = {}
            queue = iter(tasks)
            while True:
                while len(pending) < 4 * (workers - 1) and (names := next(queue, None)):
                    pending[pool.submit(_decode_task, paths(names), sample_rate, trim_db)] = names
                if not pending:
                    return
                done, _ = wait(pending, timeout=0)
                if not done and (names := next(queue, None)):
                    yield names, _decode_task(paths(names), sample_rate, trim_db, sink)
                    continue
                if not done:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            # Not waiting for the idle workers to exit (torch's teardown: a second): the
            # executor's thread joins them while this process goes on.
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        torch.set_num_threads(threads)


_worker_sink: _Sink | None = None  # a pool worker's, from _start_worker


def _start_worker(sink: _Sink) -> None:
    """Pool worker set-up: the pool is the parallelism, so its torch uses one thread."""
    global _worker_sink
    torch.set_num_threads(1)
    _worker_sink = sink


def _decode_task(
    paths: list[str], sample_rate: int, trim_db: float | None, sink: _Sink | None = None
) -> list:
    """Decode these files and write their samples: per path, its (offset, length) in audio.pcm
    or the reason it is unusable."""
    decoded = [decode_file(path, sample_rate, trim_db) for path in paths]
    pcm = [x for x in decoded if not isinstance(x, str)]
    places = iter((sink or _worker_sink).write(pcm) if pcm else [])
    return [x if isinstance(x, str) else next(places) for x in decoded]


def decode_file(path: str | Path, sample_rate: int, trim_db: float | None) -> np.ndarray | str:
    """One file as (time,) int16 at sample_rate (edge silence trimmed below trim_db, if set),
    or the reason it cannot be used."""
    try:
        audio = read_audio(path, sample_rate)
    except DataError as e:
        return str(e).removeprefix(f"{path}: ")
    if trim_db is not None:
        audio = trim_silence(audio, trim_db)
        if audio.numel() == 0:
            return SILENT
    return to_pcm16(audio)
