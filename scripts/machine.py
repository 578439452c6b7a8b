"""What the benchmarks print about the machine they ran on (imported by scripts/bench_*.py)."""

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (lscpu's 'Model name', from /proc/cpuinfo) or platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> float:
    """The 1-minute load average: other work competing for the cores during a measurement."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")
