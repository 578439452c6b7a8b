"""Writing files so that a crash at any moment leaves the old file or the new one, never half;
holding a directory for one process at a time."""

import fcntl
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wavenet.errors import RunDirInUse, one_line

LOCK_FILE = ".lock"


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable), or the physical total."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def atomic_write(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` atomically.

    The bytes go to a temporary file in the same directory (`.<name>.<random>.tmp`), are
    flushed, and are renamed over `path` in one step. With `durable`, the file and the rename
    are fsynced too (checkpoints); figures and reports skip that cost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from e
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _naming(e, path) from e
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def temporary_beside(path: str | Path) -> Path:
    """A new empty file `.<name>.<random>.tmp` in `path`'s directory, with the usual file mode,
    to write and then rename over `path` (`remove_temporaries` clears what a kill leaves)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from e
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600
    finally:
        os.close(fd)
    return Path(tmp)


def replace(tmp: str | Path, path: str | Path) -> None:
    """Rename the temporary file `tmp` over `path`; an OSError names `path`, not `tmp`."""
    try:
        os.replace(tmp, path)
    except OSError as e:
        raise _naming(e, path) from e


def _naming(e: OSError, path: str | Path) -> OSError:
    """`e` as an OSError of the same errno (and subclass) that names `path`, the file asked
    for, instead of the temporary file a user never named."""
    if e.errno is None:
        return OSError(f"{path}: {one_line(e)}")
    return OSError(e.errno, e.strerror, str(path))


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` left in `directory`; returns them.

    Only call this when no other process is writing into `directory`.
    """
    found = sorted(Path(directory).glob(".*.tmp")) if Path(directory).is_dir() else []
    for tmp in found:
        tmp.unlink(missing_ok=True)
    return found


@contextmanager
def locked_dir(directory: str | Path, holder: str = "another process") -> Iterator[Path]:
    """Hold `directory` for this process: an exclusive advisory lock (flock) on the empty file
    `directory/.lock`. The kernel drops the lock when the holder exits in any way (kill -9
    included), so a lock is never stale, and the file's bytes never change.

    Raises RunDirInUse naming the holder's pid (from /proc/locks) when another process holds
    it. The directory must exist; nothing else in it is read or written.
    """
    path = Path(directory) / LOCK_FILE
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = lock_holder(os.fstat(fd))
            who = f"{holder} (pid {pid})" if pid else holder
            raise RunDirInUse(
                f"{directory}: in use by {who}; wait for it to end or choose another directory"
            ) from None
        yield path
    finally:
        os.close(fd)  # releases the lock


def lock_holder(stat: os.stat_result) -> int | None:
    """The pid holding a flock on the file of `stat`, from Linux's /proc/locks, or None."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"; blocked waiters have "->".
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (
                int(inode) == stat.st_ino
                and int(major, 16) == os.major(stat.st_dev)
                and int(minor, 16) == os.minor(stat.st_dev)
            ):
                return int(fields[4])
        except ValueError:
            continue
    return None


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


@contextmanager
def signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back for the block (they arrive, and raise, right after it): a
    temporary file made in it is always recorded by its caller before an interrupt can leave
    it behind."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
