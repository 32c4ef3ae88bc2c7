"""What compile tells: `report.json` (every candidate, decision and number, each naming its
measure and split), the terminal summary (ending with the cost reached against the budget
in the budget's own units) and `report.html`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpqc.compiler.candidates import Candidate
from mpqc.compiler.options import CompileOptions
from mpqc.necessity import LayerProbes
from mpqc.workload import Workload

__all__ = ["build_report", "summary_rows"]


def build_report(
    workload: Workload,
    candidates: Sequence[Candidate],
    winner: Candidate,
    probes: LayerProbes | None,
    options: CompileOptions,
    qat_runs: int,
    seconds: float,
    inputs: dict[str, Any],
    winner_test: float,
    float_test: float,
    float_validation: float,
    notes: Sequence[str],
) -> dict[str, Any]:
    """The report.json document: inputs, measure, splits, target, budget, every candidate, the winner."""
    assert workload.target is not None
    budget = workload.resolved_budget
    measure = workload.quality
    return {
        "objective": (
            f"maximise validation quality ({measure.description}) after the chosen recovery (PTQ, or QAT where the "
            f"{options.qat_policy} policy spends it) subject to the budget on the target; the search works on "
            "additive per-layer proxies (PTQ sensitivity, target cost), then exact costs and ONNX Runtime quality "
            "for the candidates"
        ),
        "inputs": inputs,
        "measure": measure.to_json(),
        "splits": workload.splits.to_json(),
        "target": workload.target.info(),
        "budget": {**budget.to_json(), "described": budget.describe()},
        "float": {"validation": float_validation, "test": float_test},
        "winner": {
            **winner.to_json(),
            "recovery": winner.recovery,
            "validation": winner.quality,
            "test": winner_test,
            "achieved": budget.achieved(winner.cost),
        },
        "qat_runs": qat_runs,
        "max_qat_runs": options.max_qat_runs,
        "qat_policy": options.qat_policy,
        "qat_tolerance_points": 100 * options.qat_tolerance,
        "candidates": [c.to_json() for c in candidates],
        "probes": None if probes is None else probes.to_json(),
        "recipe": workload.recipe.to_json(),
        "seconds": seconds,
        "notes": list(notes),
    }


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The terminal summary; its last rows are the achieved cost against the budget."""
    measure = report["measure"]["name"]
    winner = report["winner"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    rows = [
        ("scheme", winner["summary"]),
        ("recovery", winner["recovery"].upper()),
        (f"validation {measure}", f"{pct(winner['validation'])} (float {pct(report['float']['validation'])})"),
        (f"test {measure}", f"{pct(winner['test'])} (float {pct(report['float']['test'])})"),
        ("QAT runs", f"{report['qat_runs']} (policy {report['qat_policy']}, limit {report['max_qat_runs']})"),
        ("candidates", str(len(report["candidates"]))),
        ("seconds", f"{report['seconds']:.1f}"),
    ]
    rows += [("budget " + line.split(":")[0], line.split(": ", 1)[1]) for line in winner["achieved"]]
    return rows
