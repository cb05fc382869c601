"""What this CPU is: its model name, vector extensions, cores and clock, and the fp32 peak they allow.

Read from ``/proc/cpuinfo`` (and ``/sys`` for the clock) without importing any engine, so that the choice of
encoder cached per CPU can be checked at start-up for the price of reading one small file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

# The flags that decide how fast the encoder's GEMMs run, in the order a reader compares CPUs by.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_bf16", "amx_int8")
# int8 dot products without the 16-bit saturation of AVX2's vpmaddubsw (VNNI, or AMX's int8 tiles)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
FMA_UNITS_ASSUMED = 2  # Intel server cores with AVX-512 and AMD Zen 2-4 both issue two FMAs a cycle


@dataclass(frozen=True)
class FlopPeak:
    """The fp32 peak of the cores this process may use, and how it was reckoned (printed with every figure)."""

    gflops: float
    assumptions: str


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]
    cores: int  # the cores this process may run on (its affinity: a container's limit, not the host's)
    max_mhz: float | None
    clock_source: str

    @classmethod
    def read(cls, cpuinfo: Path = Path("/proc/cpuinfo"),
             max_freq: Path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")) -> CpuInfo:
        fields: dict[str, str] = {}
        try:
            text = cpuinfo.read_text()
        except OSError:
            text = ""
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                if fields:  # the first processor's block is enough: all cores of one machine report alike
                    break
                continue
            fields.setdefault(key.strip(), value.strip())
        mhz, source = None, "unknown"
        try:
            mhz, source = int(max_freq.read_text().strip()) / 1000.0, str(max_freq)
        except (OSError, ValueError):
            try:  # virtual machines often have no cpufreq: the clock the guest was told
                mhz, source = float(fields["cpu MHz"]), f"{cpuinfo} 'cpu MHz' (the current clock, not the maximum)"
            except (KeyError, ValueError):
                pass
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        return cls(model=fields.get("model name", "unknown CPU"), flags=frozenset(fields.get("flags", "").split()),
                   cores=cores, max_mhz=mhz, clock_source=source)

    @property
    def vector_extensions(self) -> list[str]:
        return [flag for flag in VECTOR_FLAGS if flag in self.flags]

    @property
    def has_int8_dot(self) -> bool:
        """Whether int8 GEMMs run without AVX2's saturating 16-bit sums (so full-range int8 weights are safe)."""
        return any(flag in self.flags for flag in INT8_DOT_FLAGS)

    @property
    def flags_digest(self) -> str:
        """Short and stable: a cache keyed by it changes when the CPU (or what the hypervisor exposes) does."""
        return hashlib.sha256(" ".join(sorted(self.flags)).encode()).hexdigest()[:16]

    def fp32_peak(self) -> FlopPeak:
        """cores x FMA units x fp32 lanes x 2 FLOP x clock. The FMA units are assumed (no flag tells them), the
        clock is the maximum where the kernel reports one; all-core turbo and AVX-512 down-clocking are ignored."""
        lanes = 16 if "avx512f" in self.flags else 8 if "avx" in self.flags else 4
        mhz = self.max_mhz or 0.0
        gflops = self.cores * FMA_UNITS_ASSUMED * lanes * 2 * mhz / 1000.0
        return FlopPeak(gflops, f"{self.cores} cores x {FMA_UNITS_ASSUMED} FMA units (assumed) x {lanes} fp32 lanes x "
                        f"2 FLOP x {mhz:.0f} MHz (from {self.clock_source})")
