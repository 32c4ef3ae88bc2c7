from __future__ import annotations

import pytest

from mpqc.cli import main
from mpqc.cpu import CpuIsa, detect, parse_cpuinfo
from mpqc.recipe import Recipe

AVX2 = "processor : 0\nflags : fpu sse2 avx avx2 fma\n"


@pytest.mark.parametrize(
    "text,arch,features,saturates",
    [
        (AVX2, "x86_64", ("avx2",), True),
        (AVX2.replace("fma", "fma avx512_vnni"), "x86_64", ("avx2", "avx512-vnni"), False),
        (AVX2.replace("fma", "avx_vnni"), "x86_64", ("avx-vnni", "avx2"), False),
        (AVX2.replace("fma", "amx_int8 amx_tile"), "x86_64", ("amx-int8", "avx2"), False),
        ("processor : 0\nFeatures : fp asimd asimddp i8mm\n", "aarch64", ("dotprod", "i8mm"), False),
        ("processor : 0\nFeatures : fp asimd\n", "aarch64", (), False),
        ("", "x86_64", (), True),  # nothing readable on x86: the safe side
    ],
)
def test_int8_saturation_follows_the_instruction_sets(text, arch, features, saturates):
    isa = parse_cpuinfo(text, arch)
    assert isa.features == features and isa.int8_saturates is saturates
    assert ("[-64, 63]" in isa.describe()) is saturates


def test_the_recipe_follows_the_cpu_unless_told():
    assert Recipe().weights_reduced is detect().int8_saturates
    assert Recipe(reduce_range=False).weights_reduced is False
    assert Recipe(reduce_range=True).to_json()["reduce_range_from"] == "given"
    assert Recipe().to_json()["reduce_range_from"] == "cpu"


def test_targets_shows_the_cpu(capsys):
    assert main(["targets"]) == 0
    assert f"this CPU: {detect().describe()}" in capsys.readouterr().out


def test_full_range_and_reduce_range_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "--full-range-weights", "--reduce-range"])
    assert exc.value.code == 2
    assert isinstance(detect(), CpuIsa)
