"""What this CPU's int8 kernels can do, read from the operating system, never assumed.

ONNX Runtime's x86 u8 x s8 kernels on AVX2 without VNNI multiply with `vpmaddubsw`, which
adds pairs of products in int16 and saturates: with full-range int8 weights a layer can
overflow (the digits CNN lost 3 points, a ResNet-18 10). VNNI (AVX-512 VNNI, AVX-VNNI), AMX
and Arm's dot-product instructions accumulate in int32 and do not. So 8-bit weights are
held in [-64, 63] only where the kernels saturate (`CpuIsa.int8_saturates`), and in the
full [-128, 127] everywhere else."""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CpuIsa", "detect", "parse_cpuinfo"]

#: /proc/cpuinfo flag -> the name reported; only what int8 kernels dispatch on
_X86 = {"avx2": "avx2", "avx512_vnni": "avx512-vnni", "avx_vnni": "avx-vnni", "amx_int8": "amx-int8"}
_ARM = {"asimddp": "dotprod", "i8mm": "i8mm"}
_NO_SATURATION = {"avx512-vnni", "avx-vnni", "amx-int8"}


@dataclass(frozen=True)
class CpuIsa:
    """The CPU's architecture and the int8-relevant instruction sets found on it."""

    arch: str  # "x86_64", "aarch64", ...
    features: tuple[str, ...]
    #: where the features were read ("/proc/cpuinfo", or "unknown": nothing could be read)
    source: str = "/proc/cpuinfo"

    @property
    def x86(self) -> bool:
        return self.arch.lower() in ("x86_64", "amd64", "i686", "i386", "x86")

    @property
    def int8_saturates(self) -> bool:
        """True where int8 kernels add int16 pairs (x86 without VNNI/AMX, or an x86 CPU whose
        features could not be read: the safe side)."""
        return self.x86 and not (_NO_SATURATION & set(self.features))

    def describe(self) -> str:
        found = ", ".join(self.features) if self.features else "none of avx2/vnni/amx/dotprod"
        weights = "[-64, 63] (kernels saturate)" if self.int8_saturates else "[-128, 127]"
        return f"{self.arch} ({found}; from {self.source}): 8-bit weights {weights}"

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "features": list(self.features),
            "source": self.source,
            "int8_saturates": self.int8_saturates,
        }


def parse_cpuinfo(text: str, arch: str) -> CpuIsa:
    """The int8-relevant features named in a /proc/cpuinfo text (x86 `flags`, Arm `Features`)."""
    names = _X86 if arch.lower() in ("x86_64", "amd64", "i686", "i386", "x86") else _ARM
    found: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found |= {names[f] for f in value.split() if f in names}
    return CpuIsa(arch, tuple(sorted(found)))


@functools.cache
def detect() -> CpuIsa:
    """This machine's CPU (read once per process)."""
    arch = platform.machine() or "unknown"
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(), arch)
    except OSError:
        return CpuIsa(arch, (), source="unknown")
