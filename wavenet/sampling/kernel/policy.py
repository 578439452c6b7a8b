"""How the compiled sampler uses the machine's cores: `kernel_parts` (split every layer between
threads), `kernel_pair` (each stream on two threads), from the batch, the weights' size against
one core's L2 (`l2_bytes`) and the cores other work keeps busy now (`busy_cores`).
"""

import os
import time
from pathlib import Path

from wavenet.sampling.sampler import MergedWeights


def l2_bytes() -> int:
    """One core's L2 cache in bytes (Linux sysfs), or 1 MiB where it cannot be read."""
    try:
        for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                unit = {"K": 2**10, "M": 2**20}.get(size[-1], 1)
                return int(size.rstrip("KM")) * unit
    except (OSError, ValueError):
        pass
    return 2**20


def busy_cores(window: float = 0.002, reads: int = 5) -> float:
    """Cores that other work keeps busy now: the fewest runnable threads besides the caller
    that /proc/stat's `procs_running` shows over `reads` reads `window` seconds apart (work
    that holds a core is runnable at every read, a short burst seldom at all), in ~10 ms.
    Where there is no /proc/stat, the 1-minute load average (which also counts this
    process's own recent work)."""

    def running() -> int | None:
        try:
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith("procs_running"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    counts = []
    for i in range(reads):
        if i:
            time.sleep(window)
        count = running()
        if count is None:
            return os.getloadavg()[0]
        counts.append(count)
    return float(max(0, min(counts) - 1))


def kernel_parts(
    threads: int,
    weights: MergedWeights,
    storage: str = "float32",
    batch: int = 1,
    busy: float | None = None,
) -> int:
    """Threads to split every layer's weights between: 1 where there are at least as many
    batch rows as threads (the kernel splits the rows: measured faster at batch 16, no barrier
    per layer), for int8 storage (its 1.3 MB fit a 2 MB L2 and arithmetic sets its speed: the
    split measured no faster, docs/speed.md), where the stored weights fit one core's L2
    (nothing to gain), or where other work holds the cores (`busy`: cores busy with other work,
    `busy_cores()` when None; a spin barrier waiting for a descheduled thread made the split 20x
    slower than one thread on a loaded 2-core machine), else the most <= threads that divide
    gate / 2 and skip evenly."""
    if batch >= threads or storage == "int8":
        return 1
    bytes_per = {"float32": weights.embed.element_size(), "bfloat16": 2}[storage]
    stored = bytes_per * sum(
        w.numel()
        for w in (weights.conv_w, weights.res_w, weights.skip_w, weights.head_w1, weights.head_w2)
    )
    if stored <= l2_bytes():
        return 1
    busy = busy_cores() if busy is None else busy
    if busy + threads > (os.cpu_count() or 1) + 0.5:
        return 1
    half, skip = weights.conv_w.shape[1] // 2, weights.skip_b.shape[0]
    return max(p for p in range(1, max(1, threads) + 1) if half % p == 0 and skip % p == 0)


def kernel_pair(threads: int, batch: int, parts: int, busy: float | None = None) -> bool:
    """Whether each stream runs on two threads (`kernel.pair._run_pair`: one thread the
    layers, the other the skips, the head and the draw, meeting once a layer without a
    barrier): for weights of one part (`kernel_parts`) where there are fewer batch rows than
    threads, so that a core would otherwise idle (int8 at batch 1: 1.5x one thread,
    docs/speed.md), and where the cores are free (`busy` as for `kernel_parts`: the two threads
    spin-wait on each other)."""
    if parts > 1 or threads < 2 or batch >= threads:
        return False
    busy = busy_cores() if busy is None else busy
    return busy + 2 * min(batch, threads // 2) <= (os.cpu_count() or 1) + 0.5
