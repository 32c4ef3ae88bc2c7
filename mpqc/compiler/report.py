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

__all__ = ["build_report", "summary_rows", "pareto_front"]


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
    metric = budget.budget.metrics[0]
    if options.max_drop is None:
        goal = f"maximise validation quality ({measure.description}) after the chosen recovery (PTQ, or QAT where"
    else:
        goal = (
            f"minimise {metric} subject to validation quality ({measure.description}) >= float - "
            f"{100 * options.max_drop:g} points after the chosen recovery (PTQ, or QAT where"
        )
    front = pareto_front(candidates, metric)
    return {
        "objective": (
            f"{goal} the {options.qat_policy} policy spends it) subject to the budget on the target; the search "
            "works on additive per-layer proxies (PTQ sensitivity, target cost), then exact costs and ONNX Runtime "
            "quality for the candidates"
        ),
        "max_drop_points": None if options.max_drop is None else 100 * options.max_drop,
        "pareto": [
            {"key": c.key, "summary": c.scheme.summary(), metric: c.cost.metric(metric), "quality": c.quality}
            for c in front
        ],
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


def pareto_front(candidates: Sequence[Candidate], metric: str) -> list[Candidate]:
    """The fitting candidates no other fitting one beats on both `metric` (lower) and
    validation quality (higher), cheapest first: what a max-drop run explored."""
    front: list[Candidate] = []
    fitting = [c for c in candidates if c.fits and c.ptq is not None]
    for c in sorted(fitting, key=lambda c: (c.cost.metric(metric), -c.quality, c.key)):
        if not front or c.quality > front[-1].quality:
            front.append(c)
    return front


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The terminal summary; its last rows are the achieved cost against the budget."""
    measure = report["measure"]["name"]
    winner = report["winner"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    rows = [
        ("scheme", winner["summary"]),
        *([("max drop", f"{report['max_drop_points']:g} points")] if report.get("max_drop_points") is not None else []),
        ("recovery", winner["recovery"].upper()),
        (f"validation {measure}", f"{pct(winner['validation'])} (float {pct(report['float']['validation'])})"),
        (f"test {measure}", f"{pct(winner['test'])} (float {pct(report['float']['test'])})"),
        ("QAT runs", f"{report['qat_runs']} (policy {report['qat_policy']}, {_limit(report)})"),
        ("candidates", f"{len(report['candidates'])} ({len(report.get('pareto', []))} on the Pareto front)"),
        ("seconds", f"{report['seconds']:.1f}"),
    ]
    other = report.get("elsewhere")
    if other and "ratio_to_float" in other:
        rows.append((f"on {other['target']}", f"{other['winner_ms']:.3f} ms = {other['ratio_to_float']:.3f}x float"))
    rows += [("budget " + line.split(":")[0], line.split(": ", 1)[1]) for line in winner["achieved"]]
    return rows


def _limit(report: dict[str, Any]) -> str:
    """What `--max-qat-runs` bounds under the report's policy."""
    from mpqc.compiler.policies import make_policy

    return make_policy(report["qat_policy"]).describe_limit(report["max_qat_runs"])
