"""`mpqc compile`: the necessity-aware mixed-precision search, end to end.

The pipeline, one stage per module of this package:

1. workload (`mpqc.workload`): model, splits, target, budget; every input checked
2. costs and feasibility (`candidates`): per-layer costs on the target, the budget made
   absolute and decided against the cheapest reachable scheme before any PTQ or QAT work
3. sensitivity (`sensitivity`): PTQ quality of each layer alone at each precision
4. probes (`probes`, probed policy only): short QAT per layer and variant
5. candidates (`candidates`): the integer program's Pareto schemes, their exact costs and
   PTQ quality
6. QAT policy (`policies`): where QAT runs, as jobs stored as they finish
7. winner (`winner`): best by validation quality, confirmed by measurement where the
   target measures
8. report (`report`): model.onnx, scheme.json, report.json, report.html, compile.log; on a
   measured CPU runtime the winner is also timed on the other one (`elsewhere`)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from mpqc.compiler.candidates import (
    Candidate,
    additive_offsets,
    check_feasible,
    cost_and_ptq,
    layer_options,
    propose,
    search_limits,
)
from mpqc.compiler.options import DEFAULT_BUDGET, DEFAULT_TARGET, POLICIES, CompileOptions
from mpqc.compiler.policies import PolicyContext, PredictedPolicy, make_policy
from mpqc.compiler.probes import layer_probes
from mpqc.compiler.report import build_report, summary_rows
from mpqc.compiler.run_folder import RunFolder
from mpqc.compiler.sensitivity import measure_sensitivity
from mpqc.compiler.winner import choose_winner
from mpqc.errors import BudgetError, MpqcError
from mpqc.executor import Retry
from mpqc.jobs import JobStore, Workers, context_from
from mpqc.necessity import LayerProbes, Oracle, measure_schemes
from mpqc.precision import Precision
from mpqc.progress import Progress
from mpqc.recovery import Predictor, RecoveryModel, SplitRecoveryModel, sampling_noise
from mpqc.scheme import Scheme
from mpqc.training.config import QatConfig
from mpqc.workload import Workload

__all__ = [
    "CompileOptions",
    "CompileResult",
    "Candidate",
    "compile_workload",
    "DEFAULT_BUDGET",
    "DEFAULT_TARGET",
    "POLICIES",
    "summary_rows",
]


@dataclass
class CompileResult:
    """What a compile produced: the model, its scheme, costs and quality, and where it went."""

    model: onnx.ModelProto
    scheme: Scheme
    report: dict[str, Any]
    candidates: list[Candidate]
    winner: Candidate
    output: Path
    qat_runs: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def report_path(self) -> Path:
        return self.output / "report.html"


def compile_workload(
    workload: Workload,
    output: str | os.PathLike[str] = "mpqc_out",
    options: CompileOptions | None = None,
    resume: bool = False,
    space: str | Sequence[str | Precision] | None = None,
) -> CompileResult:
    """Compile a workload that has a target and a budget (see `mpqc.api.compile`)."""
    options = options or CompileOptions()
    if workload.target is None or workload.budget is None:
        raise BudgetError("compile needs a target and a budget")
    start = time.perf_counter()
    searched = workload.target.parse_space(space)
    policy = make_policy(options.qat_policy)
    options.executor_spec().check()  # Ray installed and its cluster reachable, before any work
    inputs = _inputs(workload, searched, options)
    run = RunFolder(Path(output), inputs, resume)  # checked; created once the budget is known to be feasible
    say = Progress(options.progress, run.log)
    workload.reporter = say  # a measuring target says what it profiles
    names = workload.prepared.analysis.layer_names

    # 2. costs and feasibility, before any PTQ or QAT work (and before anything is written)
    per_layer = layer_options(workload, searched, workload.budget.metrics)
    offsets = additive_offsets(workload, per_layer)
    check_feasible(per_layer, workload.resolved_budget, offsets, workload.target.name)
    run.open()
    say(
        f"mpqc compile: {len(names)} layers, target {workload.target.name}, budget {workload.budget.describe()}, "
        f"data {workload.splits.describe()}" + (" (resumed)" if resume else "")
    )
    try:
        with contextlib.ExitStack() as stack:  # the workers stop however the search ends
            return _search(workload, run, say, per_layer, offsets, searched, policy, options, inputs, start, stack)
    except MpqcError as exc:
        raise type(exc)(f"{exc} (run folder {run.path} kept: --resume {run.path} continues)") from None


def _search(
    workload: Workload,
    run: RunFolder,
    say: Progress,
    per_layer: list[Any],
    offsets: dict[str, float],
    searched: tuple[Precision, ...],
    policy: Any,
    options: CompileOptions,
    inputs: dict[str, Any],
    start: float,
    stack: contextlib.ExitStack,
) -> CompileResult:
    names = workload.prepared.analysis.layer_names
    budget = workload.resolved_budget
    say(f"budget {budget.describe()}; quality: {workload.quality.description} ({workload.quality.name})")
    float_quality = workload.evaluate(workload.prepared.model, "validation").quality
    where = options.executor_spec()
    retries: list[dict[str, Any]] = []

    def retried(stage: str) -> Callable[[Retry], None]:
        def record(retry: Retry) -> None:
            retries.append({"stage": stage, "job": retry.job + 1, "attempt": retry.attempt, "reason": retry.reason})
            say(f"{stage}: job {retry.job + 1} lost its worker ({retry.reason}); retry {retry.attempt}")

        return record

    say(f"jobs run {where.describe()}")

    # 3. sensitivity (PTQ jobs; the same context carries the QAT jobs later)
    config = QatConfig(epochs=options.qat_epochs, lr=options.lr, seed=options.seed)
    widths = {8} | {p.a_bits for p in searched if p.quantizes_activations and p.a_bits}
    weight_widths = {p.w_bits for p in searched if p.form == "qdq" and p.w_bits}
    context = context_from(workload, config, widths, weight_widths)
    workers = stack.enter_context(Workers(context, where))  # one start for every stage's jobs
    samples = min(options.sensitivity_samples, len(workload.splits.validation))
    jobs = 1 + sum(len(o.precisions) - (1 if any(p.label == "w8a8" for p in o.precisions) else 0) for o in per_layer)
    with say.count(jobs, f"PTQ sensitivity ({samples} validation samples)") as advance:
        sensitivity, source = measure_sensitivity(
            workload, context, searched, samples, workers, run, options.use_cache, advance, retried("sensitivity")
        )
    say(f"PTQ sensitivity ({source}): w8a8 reference {100 * sensitivity.reference:.2f}")

    # 4. the necessity predictor; probes for the probed policy only
    probes: LayerProbes | None = None
    oracle: Oracle | None = None
    noise = sampling_noise(float_quality, len(workload.splits.validation), workload.quality.per_sample_binary)
    predictor: Predictor | SplitRecoveryModel = (
        SplitRecoveryModel(float_quality, options.qat_tolerance, noise)
        if policy.needs_split
        else RecoveryModel(float_quality, options.qat_tolerance, noise)
    )
    objectives = {"ptq-loss": [[sensitivity.loss[o.layer][p.label] for p in o.precisions] for o in per_layer]}
    if policy.needs_probes:
        from mpqc.compiler.probes import probe_variants_for

        count = 1 + len(names) * len(probe_variants_for(searched))
        with say.count(count, "QAT-necessity probes") as advance:
            probes, source = layer_probes(
                context,
                names,
                float_quality,
                searched,
                options.probe_epochs,
                workers,
                run,
                options.use_cache,
                advance,
                retried("probes"),
            )
        say(f"QAT-necessity probes ({source}): {count} short QAT runs")
        oracle = Oracle(probes, tolerance=options.qat_tolerance, samples=len(workload.splits.validation))
        predictor = oracle
        objectives["qat-loss"] = [[_unrecoverable(oracle, o.layer, p) for p in o.precisions] for o in per_layer]

    # 5. candidates
    span = 1.0 if options.max_drop is not None else 0.5  # quality-constrained: down to the cheapest
    found = propose(per_layer, search_limits(budget, offsets), objectives, options.levels, searched, names, span)
    with say.count(len(found), "candidates (exact cost, PTQ)") as advance:
        candidates = cost_and_ptq(workload, found, sensitivity.predicted_ptq, run, advance, policy.needs_split)
    fitting = [c for c in candidates if c.fits]
    say(f"search: {len(candidates)} candidates, {len(fitting)} fit the budget")
    if not fitting:
        raise BudgetError(f"no candidate met the budget {budget.describe()} once costed exactly")

    # 6. QAT policy
    store = JobStore(run.path / "jobs", context.key)
    models: dict[str, bytes] = {}
    qat_seconds: list[float] = []  # per run, in the worker that ran it
    # where each shorter run stopped: the full run goes on from there instead of replaying it
    states: dict[str, bytes] = {}

    def train(batch: Sequence[Candidate], epochs: int | None = None) -> None:
        count = options.qat_epochs if epochs is None else epochs
        short = count < options.qat_epochs
        resume = [None if short else states.pop(c.key, None) for c in batch]
        went_on = sum(r is not None for r in resume)
        label = f"QAT ({count} epochs each" + (f", {went_on} going on from their short run)" if went_on else ")")
        with say.count(len(batch), label) as advance:
            results = measure_schemes(
                context,
                [c.scheme for c in batch],
                count,
                workers,
                True,
                store,
                advance,
                on_retry=retried("QAT"),
                keep_states=short,
                resume=resume,
            )
        for candidate, result in zip(batch, results):
            qat_seconds.append(result.seconds)
            if short:
                candidate.short_qat = result.qat
                if result.state is not None:
                    states[candidate.key] = result.state
            if candidate.qat is None or result.qat > candidate.qat:  # the best trained model is kept
                candidate.qat = result.qat
                if result.model is not None:
                    models[candidate.key] = result.model

    ctx = PolicyContext(
        float_quality,
        options.qat_tolerance,
        options.max_qat_runs,
        options.round_size,
        options.top_k,
        train,
        say,
        predictor,
        float_quality + noise,  # see PolicyContext.ceiling
        options.qat_epochs,
        options.short_epochs,
    )
    qat_runs = policy.run(fitting, ctx)
    workers.close()

    # 7. winner
    winner = choose_winner(workload, fitting, say, max_drop=options.max_drop, float_quality=float_quality)
    if winner.recovery == "qat":
        proto = onnx.ModelProto()
        proto.ParseFromString(models[winner.key])
    else:
        proto = workload.emit(winner.scheme, check=True).proto()

    if winner.recovery == "qat":  # an emitted winner was checked by `emit`
        workload.validate(proto.SerializeToString(), "the winner")

    # 8. report
    payload = proto.SerializeToString()
    winner_test = workload.evaluate(payload, "test").quality
    float_test = workload.evaluate(workload.prepared.model, "test").quality
    notes = [
        f"quality: {workload.quality.description} ({workload.quality.name}); chosen on the validation split, "
        "test reported only",
        f"data: {workload.splits.describe()}",
        "peak activation memory is checked on candidates only (it is not additive over layers)",
        *workload.splits.notes,
        *workload.calibration_notes(),
        *workload.prepared.analysis.notes,
    ]
    report = build_report(
        workload,
        candidates,
        winner,
        probes,
        options,
        qat_runs,
        time.perf_counter() - start,
        inputs,
        winner_test,
        float_test,
        float_quality,
        notes,
    )
    from mpqc.compiler.elsewhere import price_elsewhere
    from mpqc.report_html import render

    report["executor"] = {**where.to_json(), "retried": retries, "starts": workers.starts}
    report["predictor"] = predictor.to_json() if isinstance(policy, PredictedPolicy) else None
    report["qat_seconds"] = sum(qat_seconds)
    report["probe_seconds"] = (
        None
        if probes is None
        else sum(m.seconds for row in probes.table.values() for m in row.values()) + probes.reference_point.seconds
    )
    report["backend"] = None if workload.backend is None else {**workload.backend.to_json(), "violations": []}
    report["elsewhere"] = price_elsewhere(workload, payload)
    if report["elsewhere"] and "ratio_to_float" in report["elsewhere"]:
        other = report["elsewhere"]
        say(
            f"on {other['target']}: the winner runs at {other['ratio_to_float']:.3f}x float "
            f"({other['winner_ms']:.3f} ms)"
        )
    run.write_bytes("model.onnx", payload)
    run.write_bytes("scheme.json", winner.scheme.dumps().encode())
    run.write_json("report.json", report)
    run.write_bytes("report.html", render(report).encode())
    say(
        f"winner: {winner.scheme.summary()} via {winner.recovery.upper()}, validation "
        f"{100 * winner.quality:.2f} (float {100 * float_quality:.2f}); report: {run.path / 'report.html'}"
    )
    return CompileResult(proto, winner.scheme, report, candidates, winner, run.path, qat_runs, report["seconds"], notes)


def _unrecoverable(oracle: Oracle, layer: str, precision: Precision) -> float:
    if precision.is_float:
        return 0.0
    return sum(
        max(0.0, oracle.probes.unrecoverable(layer, v) - oracle.noise_floor) for v in oracle.variants_of(precision)
    )


def _inputs(workload: Workload, space: Sequence[Precision], options: CompileOptions) -> dict[str, Any]:
    """What a run is bound to: resuming with any of it changed is refused."""
    assert workload.target is not None and workload.budget is not None
    return {
        **workload.fingerprint(),
        "budget": workload.budget.describe(),
        "target": workload.target.name,
        "backend": workload.backend.name if workload.backend is not None else None,
        "space": [p.label for p in space],
        "seed": options.seed,
        "qat_policy": options.qat_policy,
        "qat_tolerance": options.qat_tolerance,
        "qat_epochs": options.qat_epochs,
        "short_epochs": options.short_epochs,
        "probe_epochs": options.probe_epochs,
        "max_qat_runs": options.max_qat_runs,
        "levels": options.levels,
        "top_k": options.top_k,
        "round_size": options.round_size,
        "lr": options.lr,
        "sensitivity_samples": options.sensitivity_samples,
        "max_drop": options.max_drop,
    }
