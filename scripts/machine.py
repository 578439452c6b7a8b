"""What the benchmarks print about the machine they ran on (imported by scripts/bench_*.py)."""

import platform
from pathlib import Path

from wavenet.training.loop import cpu_flags


def cpuinfo() -> dict[str, str]:
    """The first processor's /proc/cpuinfo fields ("model name", "cpu family", ...); empty off
    Linux."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name (lscpu's 'Model name', from /proc/cpuinfo) or platform's guess."""
    return cpuinfo().get("model name") or platform.processor() or platform.machine()


# Instruction sets that change the kernels' speed: vector width, integer dot products, bfloat16.
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
)


def cpu_id() -> dict:
    """Which CPU generation behind a generic model name ("AMD EPYC" is Zen 3 or Zen 4 on these
    machines): {"cpu_family_model": "25/1", "isa": [the ISA_FLAGS it has]}; empty off Linux."""
    fields = cpuinfo()
    if not fields:
        return {}
    flags = cpu_flags()
    return {
        "cpu_family_model": f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}",
        "isa": [f for f in ISA_FLAGS if f in flags],
    }


def load() -> float:
    """The 1-minute load average: other work competing for the cores during a measurement."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")
