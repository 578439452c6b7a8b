"""Tests for wavenet.data.store: the decoded dataset on disk survives kills and torn writes,
notices changed files, decodes alike in a pool, and crops from it equal crops from memory."""

import gc
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import SR, sine, write_audio

from wavenet import mulaw
from wavenet.data import store
from wavenet.data.dataset import (
    Conditioning,
    CropSampler,
    Utterance,
    load_dataset,
    read_audio,
    validation_batch,
)
from wavenet.errors import DataError
from wavenet.model.features import MelConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def many(demo_root: Path, tmp_path: Path) -> Path:
    """40 files: copies of the 7 shortest demo files under new names (7, not a divisor of a
    task's 16 files: a file decoded into another's place rarely holds the same samples)."""
    root = tmp_path / "many"
    root.mkdir()
    shortest = sorted((demo_root / "wavs").glob("*.flac"), key=lambda p: p.stat().st_size)[:7]
    for i in range(40):
        shutil.copy(shortest[i % 7], root / f"{i:02d}.flac")
    return root


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = store.read_audio

    def counting(path, sample_rate):
        calls.append(Path(path).name)
        return real(path, sample_rate)

    monkeypatch.setattr(store, "read_audio", counting)
    return calls


def same(a, b) -> None:
    assert [u.name for u in a.utterances] == [u.name for u in b.utterances]
    assert a.skipped == b.skipped
    for x, y in zip(a.utterances, b.utterances, strict=True):
        assert torch.equal(x.audio, y.audio), x.name


def journal_lines(cache: Path) -> int:
    (journal,) = cache.glob("store-*/journal.jsonl")
    return journal.read_bytes().count(b"\n")


# A script, not -c: a spawned pool worker re-imports it (all but the main block), so the
# workers decode slowly too.
SLOW_DECODE = """
import sys, time
from wavenet.data import store
from wavenet.data.dataset import load_dataset
real = store.decode_file
def slow(*args):
    time.sleep(0.15)
    return real(*args)
store.decode_file = slow
if __name__ == "__main__":
    store.POOL_MIN_BYTES = 0
    load_dataset(sys.argv[1], cache_dir=sys.argv[2], workers=int(sys.argv[3]))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_a_dropped_store_closes_its_file_without_a_warning(demo_root: Path, tmp_path: Path):
    """A store read from and dropped closes what it opened, silently: no descriptor left, no
    ResourceWarning (which the suite turns into a failure of whichever test is running when
    the collector finds it)."""
    names = sorted(p.relative_to(demo_root).as_posix() for p in demo_root.glob("wavs/*.flac"))[:2]
    opened, _ = store.open_store(demo_root, names, SR, None, tmp_path / "cache", workers=1)
    before = len(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # several stores opened and dropped
            s, records = store.open_store(demo_root, names, SR, None, tmp_path / "cache")
            record = records[names[0]]
            assert np.array_equal(
                s.read(record.offset, record.length),
                opened.pcm[record.offset : record.offset + record.length],
            )
            del s
            gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_decode_goes_on_from_where_it_stopped(
    many: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Killed mid-way, with one process or a pool (whose processes write at offsets taken in
    turn, so the journal's records need not be in offset order), the next run decodes only
    what no line names, and the store equals a fresh one."""
    cache = tmp_path / "cache"
    script = tmp_path / "slow_decode.py"
    script.write_text(SLOW_DECODE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, str(script), str(many), str(cache), str(workers)], env=env
    )
    try:
        deadline = time.monotonic() + 120
        # Kill once two tasks' files are in (32 lines after the header), mid-decode.
        while not (cache.is_dir() and list(cache.glob("store-*/journal.jsonl"))) or (
            journal_lines(cache) < 1 + 2 * store.TASK_FILES
        ):
            assert child.poll() is None, "the decode ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    done = journal_lines(cache) - 1
    assert 0 < done < 40

    calls = counting_reads(monkeypatch)
    resumed = load_dataset(many, cache_dir=cache)
    assert len(calls) == 40 - done  # only the files the killed decode had not finished
    same(resumed, load_dataset(many, cache_dir=tmp_path / "fresh"))


def test_a_torn_tail_is_cut_off(
    many: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(many, cache_dir=cache)
    (folder,) = cache.glob("store-*")
    size = (folder / store.AUDIO).stat().st_size
    with open(folder / store.AUDIO, "ab") as f:
        f.write(b"\x01" * 1001)  # samples of a file whose line never came
    with open(folder / store.JOURNAL, "ab") as f:
        f.write(b'{"name": "40.flac", "si')  # a line torn by a kill
    calls = counting_reads(monkeypatch)
    same(load_dataset(many, cache_dir=cache), first)
    assert calls == []
    assert (folder / store.AUDIO).stat().st_size == size
    assert journal_lines(cache) == 41


def test_a_truncated_store_decodes_what_it_lost(
    many: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(many, cache_dir=cache)
    (audio,) = cache.glob(f"store-*/{store.AUDIO}")
    os.truncate(audio, audio.stat().st_size // 2)
    calls = counting_reads(monkeypatch)
    again = load_dataset(many, cache_dir=cache)
    assert 0 < len(calls) < 40
    same(again, first)


def test_a_pool_decodes_as_one_process(
    many: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (many / "broken.wav").write_text("not audio")
    write_audio(many / "tone.flac", sine(440, 0.5, sr=22050), sr=22050)  # resampled
    one = load_dataset(many, cache_dir=tmp_path / "one", workers=1)
    monkeypatch.setattr(store, "POOL_MIN_BYTES", 0)
    pooled = load_dataset(many, cache_dir=tmp_path / "pool", workers=2)
    same(pooled, one)
    assert pooled.skipped[0][0] == "broken.wav" and "cannot read audio" in pooled.skipped[0][1]


def test_this_process_is_one_of_the_decoders(
    many: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.workers=2 is this process and one worker: the tasks beyond those handed to the pool
    are decoded here (while the worker starts, and whenever none of its results waits), and the
    store is the one process's."""
    one = load_dataset(many, cache_dir=tmp_path / "one", workers=1)
    monkeypatch.setattr(store, "POOL_MIN_BYTES", 0)
    monkeypatch.setattr(store, "TASK_FILES", 1)  # 40 tasks, 4 of them in the pool at first
    here = counting_reads(monkeypatch)  # a spawned worker does not see the patch
    pooled = load_dataset(many, cache_dir=tmp_path / "pool", workers=2)
    same(pooled, one)
    assert 0 < len(here) <= 40 - 4, f"decoded here: {len(here)} of 40"


def test_decoding_processes_write_to_disjoint_places(many: Path, tmp_path: Path) -> None:
    """This process and a pool worker write into one audio.pcm, taking offsets in turn from the
    shared counter (however long ago the worker started): no two files' samples overlap, and
    each file's place holds its own samples."""
    audio = tmp_path / store.AUDIO
    audio.touch()
    spawn = get_context("spawn")
    sink = store._Sink(audio, spawn.Value("q", 0))
    paths = [str(p) for p in sorted(many.glob("*.flac"))[:12]]
    with ProcessPoolExecutor(
        1, mp_context=spawn, initializer=store._start_worker, initargs=(sink,)
    ) as pool:
        places = pool.submit(store._decode_task, paths[:4], SR, None).result()
        places += store._decode_task(paths[4:8], SR, None, sink)  # after the worker's
        places += pool.submit(store._decode_task, paths[8:], SR, None).result()
    sink.close()
    ranges = sorted((offset, offset + length) for offset, length in places)
    assert all(end <= start for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False))
    pcm = np.fromfile(audio, dtype=store.DTYPE)
    for path, (offset, length) in zip(paths, places, strict=True):
        assert np.array_equal(pcm[offset : offset + length], store.decode_file(path, SR, None))


def test_an_unwritable_cache_is_a_one_line_data_error(many: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot write the dataset store") as err:
        load_dataset(many, cache_dir=blocker / "cache")
    assert str(blocker) in str(err.value) and "\n" not in str(err.value)


MEL = MelConfig(n_mels=20, n_fft=256, win_length=256, hop_length=64, upsample=[8, 8], channels=8)


@pytest.mark.parametrize(
    ("codec", "mel", "preemphasis", "length"),
    [(256, None, 0.0, 3000), (256, MEL, 0.85, 3008), (mulaw.LINEAR16, None, 0.5, 1500)],
)
def test_crops_from_the_store_equal_crops_from_memory(
    demo_root: Path, tmp_path: Path, codec, mel, preemphasis, length
) -> None:
    stored = load_dataset(demo_root, cache_dir=tmp_path / "cache").utterances[:10]
    memory = [Utterance(u.name, u.speaker, read_audio(demo_root / u.name, SR)) for u in stored]
    assert stored[0].store is not None and memory[0].store is None
    speakers = sorted({u.speaker for u in stored})
    cond = Conditioning(speakers, mel, SR, preemphasis)
    a = CropSampler(stored, length, codec, seed=4, cond=cond)
    b = CropSampler(memory, length, codec, seed=4, cond=cond)
    for x, y in [(a.draw(8), b.draw(8)) for _ in range(3)]:
        assert torch.equal(x.audio, y.audio) and torch.equal(x.speaker, y.speaker)
        assert (x.mel is None and y.mel is None) or torch.equal(x.mel, y.mel)
    # Windows as long as the longest file: every short file is left-padded.
    longest = max(u.samples for u in stored) // a.cond.hop * a.cond.hop
    for n in (length, longest):
        x, y = (
            validation_batch(stored, n, 40, codec, cond),
            validation_batch(memory, n, 40, codec, cond),
        )
        assert torch.equal(x.audio, y.audio)
        assert (x.mel is None and y.mel is None) or torch.equal(x.mel, y.mel)


def test_a_waiting_process_reads_what_another_decodes(
    many: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun's ranks besides local rank 0 (decode=False) wait for its store, however long."""
    cache = tmp_path / "cache"
    monkeypatch.setattr(store, "WAIT_S", 0.05)
    calls = counting_reads(monkeypatch)
    waited: list = []
    waiter = threading.Thread(
        target=lambda: waited.append(load_dataset(many, cache_dir=cache, decode=False))
    )
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive() and calls == []  # waiting, not decoding
    built = load_dataset(many, cache_dir=cache)
    waiter.join(timeout=60)
    assert len(calls) == 40  # decoded once, by the decoding process
    same(waited[0], built)
