from __future__ import annotations

from pathlib import Path

import pytest

from mpqc.budget import Budget
from mpqc.cost import SchemeCost
from mpqc.errors import BudgetError
from mpqc.workload import Workload

REF = {"int8": SchemeCost(0.004, 100_000, 1, 1), "float": SchemeCost(0.010, 400_000, 4, 4)}


def test_absolute_and_relative_limits_resolve():
    budget = Budget.parse("latency=2.5ms, size=40KB").resolve({})
    assert budget.bounds == {"latency": 0.0025, "size": 40 * 1024}
    assert Budget.parse("latency=0.6x").resolve(REF).bounds["latency"] == pytest.approx(0.0024)
    assert Budget.parse("latency=0.5xfloat").resolve(REF).bounds["latency"] == pytest.approx(0.005)
    assert Budget.parse("bops=1.5G").limits[0].value == 1.5e9
    assert budget.fits(SchemeCost(0.002, 30_000, 1, 1)) and not budget.fits(SchemeCost(0.003, 30_000, 1, 1))


def test_references_are_named_and_text_round_trips():
    budget = Budget.parse("latency=0.5xfloat,size=0.7x")
    assert budget.references == ["int8", "float"]
    for text in ("latency=0.5xfloat", "size=40KB,bops=1.2G", "latency=2.5ms", "memory=0.3x"):
        parsed = Budget.parse(text)
        assert Budget.parse(parsed.describe()) == parsed


def test_achieved_speaks_the_budgets_units():
    resolved = Budget.parse("latency=0.5x").resolve(REF)
    (line,) = resolved.achieved(SchemeCost(0.0018, 1, 1, 1))
    assert line == "latency: 1.8 ms of 2 ms = 0.45x int8 (budget 0.5x)"


@pytest.mark.parametrize(
    "text",
    [
        "speed=2ms",
        "latency=2parsecs",
        "latency",
        "",
        ",",
        "size=-1KB",
        "latency=nan",
        "latency=0.5x,latency=0.9x",
        "latency=0x",
        "latency=0.5xgpu",
    ],
)
def test_bad_budgets(text):
    with pytest.raises(BudgetError):
        Budget.parse(text)


def test_a_reference_the_target_cannot_run_is_refused_before_any_work(tmp_path):
    """`latency=0.5xfloat` on a chip without a float path: refused by name, the model is not even loaded."""
    text = (Path(__file__).resolve().parents[1] / "targets" / "mcu.toml").read_text()
    path = tmp_path / "nofloat.toml"
    path.write_text(text.replace("float = 6.0\n", ""))
    with pytest.raises(BudgetError, match="relative to uniform float, which target mcu does not run"):
        Workload.build("missing.onnx", target=str(path), budget="latency=0.5xfloat")
