"""`mpqc necessity`: the layer-wise necessity profile, the predictor, and its validation,
written as a report folder (JSON, a readable table, PNG heat map and scatter plots)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from mpqc.errors import OptionError
from mpqc.executor import ExecutorSpec
from mpqc.jobs import Workers, context_from
from mpqc.modelio import atomic_write_bytes, check_output_dir
from mpqc.necessity import (
    VALIDATION_CHOICES,
    NecessityReport,
    Oracle,
    equal_cost_pairs,
    probe_layers,
    probe_variants,
    validate_oracle,
)
from mpqc.plots import heatmap_png, scatter_png
from mpqc.precision import Precision
from mpqc.progress import Progress
from mpqc.recovery import sampling_noise
from mpqc.training.config import QatConfig
from mpqc.workload import Workload

__all__ = ["necessity_workload", "write_report", "profile_table", "validation_table", "comparison_lines"]


def necessity_workload(
    workload: Workload,
    *,
    bits: tuple[int, ...] = (2, 4, 8),
    probe_epochs: int = 3,
    epochs: int = 3,
    validate: int = 0,
    tolerance: float = 0.01,
    workers: int | None = None,
    seed: int = 0,
    executor: ExecutorSpec | None = None,
    seeds: int = 1,
    short_epochs: int = 0,
    lr: float = 0.05,
    report: str | Path | None = None,
    model_name: str = "",
    progress: bool = True,
) -> NecessityReport:
    """Probe every layer at each bit width (PTQ and a short QAT), build the predictor, and,
    with `validate=K`, measure K random held-out schemes against its predictions (QAT once
    per seed of `seeds`; `short_epochs` adds the short-QAT predictor). Jobs run
    on `executor` (default: `workers` local processes). Costs of
    the equal-cost pairs come from the workload's target (bitserial if it has none)."""
    if not bits or any(b not in (2, 4, 8) for b in bits):
        raise OptionError(f"--bits takes 2, 4 and 8, got {list(bits)}")
    if validate < 0 or probe_epochs < 1 or epochs < 1:
        raise OptionError("--validate must be >= 0, and --epochs and --probe-epochs >= 1")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise OptionError(f"--seeds must be a whole number >= 1, got {seeds!r}")
    if isinstance(short_epochs, bool) or not isinstance(short_epochs, int) or not 0 <= short_epochs <= epochs:
        raise OptionError(f"--short-epochs must be a whole number in [0, --epochs], got {short_epochs!r}")
    if report is not None:
        check_output_dir(report)
    where = executor or ExecutorSpec(workers=workers)
    where.check()
    say = Progress(progress)
    workload.reporter = say
    start = time.perf_counter()
    names = workload.prepared.analysis.layer_names
    validation_set = workload.splits.validation
    float_quality = workload.evaluate(workload.prepared.model, "validation").quality
    # the `auto` range and weight-scale choices are made for every width a job will use: the
    # probes' and, with --validate, the held-out schemes' (2-bit included whatever --bits says;
    # before, their 2-bit layers fell back to min-max, which inflated every PTQ loss there)
    widths = set(bits)
    if validate:
        drawn = [Precision.parse(label) for label in VALIDATION_CHOICES]
        widths |= {p.a_bits for p in drawn if p.a_bits} | {p.w_bits for p in drawn if p.w_bits}
    context = context_from(workload, QatConfig(epochs=epochs, lr=lr, seed=seed), {8, *widths}, widths)
    with Workers(context, where) as pool:  # one start for the probes and every validation run
        variants = probe_variants(list(bits))
        with say.count(1 + len(names) * len(variants), "QAT-necessity probes") as advance:
            probes = probe_layers(context, names, float_quality, variants, probe_epochs, pool, progress=advance)
        oracle = Oracle(probes, tolerance=tolerance, samples=len(validation_set))
        validation = None
        pairs: list[dict] = []
        if workload.target is None:
            from mpqc.targets import get_target

            workload.target = get_target("bitserial")
        if validate:
            runs = validate * (seeds + 1 + (1 if short_epochs else 0))  # + each one's activations-only PTQ
            with say.count(
                runs, f"validation: {validate} held-out schemes x {seeds} seed(s), QAT {epochs} epoch(s)"
            ) as step:
                validation = validate_oracle(
                    context,
                    names,
                    oracle,
                    validate,
                    epochs,
                    pool,
                    seed + 1,
                    seeds=seeds,
                    short_epochs=short_epochs,
                    progress=step,
                    noise=sampling_noise(float_quality, len(validation_set), workload.quality.per_sample_binary),
                )
            costs = [workload.costs.latency(s) for s in validation.schemes]
            pairs = equal_cost_pairs(validation.schemes, [r.necessity for r in validation.records], costs)
    measure = workload.quality
    notes = [
        f"quality: {measure.description} ({measure.name}) on the validation split ({len(validation_set)} samples); "
        f"probes: QAT {probe_epochs} epoch(s) each, schemes: {epochs} epoch(s); ONNX Runtime",
        f"data: {workload.splits.describe()}",
        f"equal-cost pairs use the {workload.target.name} target's predicted latency, within 5%",
    ]
    result = NecessityReport(
        model_name or "model",
        measure.name,
        float_quality,
        probes,
        oracle,
        validation,
        pairs,
        workload.target.name,
        epochs,
        time.perf_counter() - start,
        notes,
    )
    if report is not None:
        write_report(result, Path(report))
    return result


def profile_table(result: NecessityReport) -> str:
    """The probe table as text: per layer and variant, PTQ / QAT / N in points."""
    probes = result.probes
    header = ["layer", *[f"{v} PTQ/QAT/N" for v in probes.variants]]
    rows = [header]
    for layer, row in probes.table.items():
        rows.append(
            [
                layer,
                *[
                    f"{100 * row[v].ptq:.1f}/{100 * row[v].qat:.1f}/{100 * row[v].necessity:+.1f}"
                    for v in probes.variants
                ],
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ref = probes.reference_point
    lines.append(
        f"{result.measure}: float {100 * result.float_quality:.2f}%; reference w8a8 PTQ {100 * ref.ptq:.2f}%, QAT "
        f"{100 * ref.qat:.2f}%; probe QAT {probes.epochs} epoch(s); {probes.seconds:.1f} s"
    )
    return "\n".join(lines)


def validation_table(result: NecessityReport) -> str:
    """The validation statistics as text (empty when there was no validation)."""
    if result.validation is None:
        return ""
    s = result.validation.stats
    lines = [
        f"validation on {len(result.validation.schemes)} held-out schemes ({result.validation.seconds:.1f} s), "
        f"tolerance {100 * result.oracle.tolerance:.1f} points:",
        f"  Spearman(pred N, measured N): oracle {s['spearman_oracle']:.3f}, baseline full-recovery "
        f"{s['spearman_full_recovery']:.3f}, baseline sum-of-probes {s['spearman_sum_of_probes']:.3f}",
        f"  decision accuracy: oracle {100 * s['decision_accuracy_oracle']:.0f}%, full-recovery "
        f"{100 * s['decision_accuracy_full_recovery']:.0f}%, "
        f"sum-of-probes {100 * s['decision_accuracy_sum_of_probes']:.0f}%",
        f"  QAT quality: Spearman {s['spearman_qat_quality']:.3f}, "
        f"mean abs error {100 * s['mae_qat_quality']:.2f} points; mean confidence {100 * s['mean_confidence']:.0f}%",
    ]
    lines += comparison_lines(result.validation.comparison)
    for pair in result.pairs:
        lines.append(
            f"  equal cost ({result.cost_target}: {1e3 * pair['cost_a']:.3f} vs {1e3 * pair['cost_b']:.3f} ms),"
            f" N {100 * pair['necessity_a']:+.1f} vs {100 * pair['necessity_b']:+.1f} points"
        )
    return "\n".join(lines)


def comparison_lines(comparison: dict) -> list[str]:
    """Each predictor's scores against the seed-averaged truth, and its difference from the
    rule float - PTQ with the bootstrap interval (positive: better than the rule)."""
    if not comparison:
        return []
    lines = [
        f"  {comparison['schemes']} schemes x {comparison['seeds']} seed(s); seed noise of N "
        f"{100 * comparison['seed_noise']:.2f} points (mean sd); decisions the seeds split on: "
        f"{comparison['split_decisions']}; one seed vs the others' mean: Spearman {comparison['seed_ceiling']:.3f}"
        f"{_halves(comparison)}",
        "  predictor          Spearman  MAE pts  decisions  vs rule_a: dSpearman [95% CI]    dMAE pts [95% CI]",
    ]
    for name, score in comparison["scores"].items():
        diff = comparison["differences"].get(name)
        against = ""
        if diff is not None:
            rho, mae = diff["spearman"], diff["mae"]
            against = (
                f"{rho['value']:+.3f} [{rho['ci95'][0]:+.3f}, {rho['ci95'][1]:+.3f}]    "
                f"{100 * mae['value']:+.2f} [{100 * mae['ci95'][0]:+.2f}, {100 * mae['ci95'][1]:+.2f}]"
            )
        lines.append(
            f"  {name:<17}  {score['spearman']:8.3f}  {100 * score['mae']:7.2f}  "
            f"{100 * score['decision_accuracy']:8.0f}%  {against}"
        )
    for name in ("learned_share", "split_share"):
        intervals = comparison.get(f"{name}_intervals")
        if intervals:
            lines.append(
                f"  {name} (fitted on the first quarter) 95% intervals: truth inside "
                f"{100 * intervals['coverage']:.0f}%; "
                f"{intervals['uncertain']} uncertain decision(s) ({intervals['uncertain_where_seeds_split']} where "
                f"the seeds split); sure decisions right {100 * intervals['sure_accuracy']:.0f}%"
            )
    lines += qat_ranking_lines(comparison.get("qat_ranking"))
    held_out = comparison.get("held_out")
    if held_out:
        lines.append(f"  held out: the {held_out['schemes']} schemes after the {held_out['paid']} fitted on")
        lines += comparison_lines(held_out)[1:]
    return lines


def _halves(comparison: dict) -> str:
    """The half-vs-half agreement of the seeds, where there are enough seeds for it to differ
    from the one-seed ceiling (4 or more) and the record has it (older ones do not)."""
    value = comparison.get("half_agreement")
    seeds = comparison.get("seeds", 0)
    if value is None or not math.isfinite(value) or seeds < 4:
        return ""
    return f"; {seeds // 2} seeds vs {seeds // 2}: {value:.3f}"


def qat_ranking_lines(ranking: dict | None) -> list[str]:
    """How each predictor ranks the QAT quality itself (what a compile's pick needs),
    against the PTQ order that ptq-rule uses."""
    if not ranking:
        return []
    spearmans, differences = ranking["spearman"], ranking["differences"]
    reference = spearmans[ranking["against"]]
    lines = [
        f"  ranking the QAT quality (PTQ + predicted N): PTQ order "
        f"{'-' if reference is None else f'{reference:.3f}'}; "
        f"one seed vs the others' mean {ranking['ceiling']:.3f}{_halves(ranking)}"
    ]
    for name, diff in differences.items():
        lines.append(
            f"    {name:<17}  {spearmans[name]:8.3f}  vs PTQ order {diff['value']:+.3f} "
            f"[{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]"
        )
    return lines


def write_report(result: NecessityReport, folder: Path) -> None:
    """necessity.json, necessity.txt, the heat map and (with validation) the scatter plot in `folder`."""
    atomic_write_bytes(folder / "necessity.json", (json.dumps(result.to_json(), indent=2) + "\n").encode())
    text = profile_table(result) + "\n\n" + validation_table(result) + "\n" + "\n".join(result.notes) + "\n"
    atomic_write_bytes(folder / "necessity.txt", text.encode())
    probes = result.probes
    layers = list(probes.table)
    values = [[100 * probes.table[layer][v].necessity for v in probes.variants] for layer in layers]
    atomic_write_bytes(
        folder / "necessity_heatmap.png",
        heatmap_png(
            layers,
            probes.variants,
            values,
            "QAT necessity per layer (points): QAT - PTQ, one layer changed",
            "N (points)",
        ),
    )
    if result.validation is not None:
        v = result.validation
        truth = [100 * m.necessity for m in v.measured]
        atomic_write_bytes(
            folder / "oracle_validation.png",
            scatter_png(
                {
                    "oracle": ([100 * p.necessity for p in v.predicted], truth),
                    "full recovery": ([100 * a for a in v.baseline_a], truth),
                    "sum of probes": ([100 * b for b in v.baseline_b], truth),
                },
                "predicted N (points)",
                "measured N (points)",
                "QAT necessity: predicted vs measured",
                diagonal=True,
            ),
        )
