"""`mpqc compile`: the necessity-aware mixed-precision search, end to end.

Objective (stated in every report): among schemes that meet the budget on the target,
maximise top-1 accuracy on the validation split after the chosen recovery (PTQ, or QAT
where the oracle expects it to pay and it can change the winner), spending at most
`max_qat_runs` QAT runs. Steps, each persisted in the run folder as it finishes:

1. front end, calibration, the target's cost model; the budget made absolute
2. PTQ sensitivity of every layer at every precision of the search space (one layer at a
   time, the rest w8a8), and QAT-necessity probes (short QAT), in worker processes
3. exact search (integer program) on additive per-layer proxies at a ladder of budget
   levels, for two objectives (PTQ loss, loss QAT cannot recover): the Pareto candidates
4. every candidate's real cost and its PTQ accuracy in ONNX Runtime
5. the oracle predicts N for each; QAT runs for the candidates it expects to beat the best
   PTQ result by more than the tolerance, best first, within the QAT-run limit
6. the winner is emitted: QDQ model, scheme.json, report.json, report.html, compile.log
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from mpqc.api import DataLike, ModelLike, Prepared, calibrate_model, emit_qdq, prepare
from mpqc.budget import Budget
from mpqc.cost import SchemeCost, scheme_cost
from mpqc.data import load_data
from mpqc.errors import MpqcError
from mpqc.evaluate import evaluate_session
from mpqc.executor import default_workers
from mpqc.modelio import atomic_write_bytes
from mpqc.necessity import (
    LayerProbes,
    NecessityContext,
    Oracle,
    Prediction,
    measure_schemes,
    probe_layers,
    ptq_top1,
)
from mpqc.qat.train import QatConfig
from mpqc.run_dir import RunDir
from mpqc.runtime import input_specs, make_session
from mpqc.scheme import LayerPrecision, Scheme
from mpqc.search import LayerOptions, cheapest, pareto_candidates
from mpqc.targets import OrtCpuTarget, Target, get_target, precision_label
from mpqc.targets.base import Precision

__all__ = ["CompileOptions", "CompileResult", "Candidate", "compile_model", "DEFAULT_BUDGET", "DEFAULT_TARGET"]

DEFAULT_BUDGET = "latency=0.5x"
DEFAULT_TARGET = "bitserial"
_SPACE_ANALYTIC = ("w8a8", "w4a8", "w2a8", "w4a4", "w2a4", "float")
#: on ort-cpu every quantized layer runs as an int8 kernel; only weight-only layers keep
#: their sub-8-bit weights in the file (dequantized at run time).
_SPACE_ORT = ("w8a8", "w8af", "w4af", "float")


@dataclass(frozen=True)
class CompileOptions:
    qat_tolerance: float = 0.01
    max_qat_runs: int = 4
    qat_epochs: int = 3
    probe_epochs: int = 1
    lr: float = 1e-4
    seed: int = 0
    workers: int | None = None
    threads: int = 1
    levels: int = 6
    #: "oracle" (the method), "always" (QAT every fitting candidate), "never" (PTQ only)
    qat_policy: str = "oracle"
    progress: bool = True
    #: reuse sensitivity and probes of an earlier run on the same model, data and space
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.qat_policy not in ("oracle", "always", "never"):
            raise MpqcError(f"unknown QAT policy {self.qat_policy!r}")
        if self.max_qat_runs < 0 or self.qat_epochs < 1 or self.probe_epochs < 1 or self.levels < 1:
            raise MpqcError("--max-qat-runs must be >= 0 and epochs and levels >= 1")


@dataclass
class Candidate:
    scheme: Scheme
    origin: str
    cost: SchemeCost
    fits: bool
    predicted_ptq: float
    ptq: float | None = None
    prediction: Prediction | None = None
    decision: str = ""
    qat: float | None = None
    measured_latency_s: float | None = None

    @property
    def key(self) -> str:
        return RunDir.key(self.scheme.to_json())

    @property
    def accuracy(self) -> float:
        values = [v for v in (self.ptq, self.qat) if v is not None]
        return max(values) if values else float("-inf")

    @property
    def recovery(self) -> str:
        return "qat" if self.qat is not None and self.qat > (self.ptq or 0.0) else "ptq"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "origin": self.origin,
            "scheme": {name: p.label for name, p in self.scheme.layers.items()},
            "cost": self.cost.to_json(),
            "fits": self.fits,
            "predicted_ptq_top1": self.predicted_ptq,
            "ptq_top1": self.ptq,
            "predicted": None if self.prediction is None else self.prediction.to_json(),
            "decision": self.decision,
            "qat_top1": self.qat,
            "measured_latency_ms": None if self.measured_latency_s is None else self.measured_latency_s * 1e3,
        }


@dataclass
class CompileResult:
    model: onnx.ModelProto
    scheme: Scheme
    report: dict[str, Any]
    pareto: list[Candidate]
    winner: Candidate
    output: Path
    qat_runs: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def compile_model(
    model: ModelLike | Prepared | None = None,
    budget: str = DEFAULT_BUDGET,
    target: str | Target = DEFAULT_TARGET,
    data: DataLike = None,
    output: str | os.PathLike[str] = "mpqc_out",
    options: CompileOptions | None = None,
    resume: bool = False,
) -> CompileResult:
    options = options or CompileOptions()
    start = time.perf_counter()
    # -- every input checked before any work ---------------------------------------------
    parsed_budget = Budget.parse(budget)
    resolved = get_target(target, threads=options.threads)
    if model is None:
        from mpqc.models.train import zoo_path

        model = zoo_path()
    prepared = prepare(model)
    analysis = prepared.analysis
    if not analysis.layers:
        raise MpqcError("no quantizable layer (Conv, ConvTranspose, Gemm, MatMul with a constant weight) in the model")
    specs = input_specs(prepared.model)
    train = load_data(data, specs, "train")
    validation = load_data(data, specs, "validation")
    if validation.labels is None:
        raise MpqcError("compile ranks schemes by top-1 accuracy: the data needs labels")
    space = _space(resolved)
    inputs = {
        "model_sha256": hashlib.sha256(prepared.proto.SerializeToString(deterministic=True)).hexdigest(),
        "budget": parsed_budget.describe(),
        "target": resolved.name,
        "data": _data_label(data),
        "seed": options.seed,
        "space": list(space),
        "qat_tolerance": options.qat_tolerance,
        "qat_epochs": options.qat_epochs,
        "probe_epochs": options.probe_epochs,
        "qat_policy": options.qat_policy,
    }
    run = RunDir(Path(output), inputs, resume)  # checks the folder; creates nothing yet
    say = _Say(run, options.progress)
    say(
        f"mpqc compile: {len(analysis.layers)} layers, target {resolved.name}, budget {parsed_budget.describe()}"
        + (" (resumed)" if resume else "")
    )

    # -- 1. calibration, cost model, budget -----------------------------------------------
    calibration = calibrate_model(prepared, data)
    from mpqc.profile import cost_model_for

    costs = cost_model_for(prepared, resolved, data)
    names = analysis.layer_names
    reference = scheme_cost(prepared.model, analysis, Scheme.uniform(names, LayerPrecision(8, 8)), costs)
    limits = parsed_budget.absolute(reference)
    layer_options = _layer_options(prepared, resolved, costs, space, list(limits))
    for metric, bound in limits.items():
        if metric == "memory":
            continue
        floor = cheapest(layer_options, metric)
        if floor > bound:
            raise MpqcError(
                f"budget {parsed_budget.describe()} ({metric} {_fmt(metric, bound)}) cannot be met on "
                f"{resolved.name}: the cheapest reachable scheme costs {_fmt(metric, floor)} "
                f"({floor / reference.metric(metric):.2f}x uniform int8)"
            )
    run.open()

    # -- 2. sensitivity and probes ----------------------------------------------------------
    context = NecessityContext(
        prepared.proto.SerializeToString(),
        calibration,
        train,
        validation,
        QatConfig(epochs=options.qat_epochs, lr=options.lr, seed=options.seed),
        "labels" if train.labels is not None else "distill",
    )
    workers = options.workers or default_workers()
    shared = _SharedCache(inputs, options) if options.use_cache else None
    sensitivity, ref_ptq = _sensitivity(run, shared, prepared, calibration, validation, space, say)
    probes = _probes(run, shared, context, prepared, space, options, workers, say)
    oracle = Oracle(probes, tolerance=options.qat_tolerance, samples=len(validation))

    # -- 3. search ------------------------------------------------------------------------
    loss_ptq = [[sensitivity[o.layer][precision_label(p)] for p in o.precisions] for o in layer_options]
    loss_qat = [[_unrecoverable(oracle, o.layer, p) for p in o.precisions] for o in layer_options]
    additive = {m: b for m, b in limits.items() if m != "memory"}
    found = pareto_candidates(layer_options, additive, {"ptq-loss": loss_ptq, "qat-loss": loss_qat}, options.levels)
    for label in space:
        uniform = Scheme.uniform(names, LayerPrecision.from_shorthand(label))
        if all(uniform != s for s, _, _ in found):
            found.append((uniform, f"uniform {label}", 1.0))
    say(
        f"search: {len(found)} candidate schemes (Pareto set of 2 objectives x {options.levels} budget levels"
        " + uniform schemes)"
    )

    # -- 4. real cost and PTQ of every candidate -------------------------------------------
    candidates = []
    for scheme, origin, _ in found:
        cost = scheme_cost(prepared.model, analysis, scheme, costs)
        fits = parsed_budget.fits(cost, reference)
        predicted_ptq = ref_ptq - sum(sensitivity[n][p.label] for n, p in scheme.layers.items())
        candidates.append(Candidate(scheme, origin, cost, fits, predicted_ptq))
    _evaluate_ptq(run, prepared, calibration, validation, [c for c in candidates if c.fits], say)
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        raise MpqcError(f"no candidate met the budget {parsed_budget.describe()} once costed exactly")

    # -- 5. the oracle and QAT --------------------------------------------------------------
    qat_runs = _decide_and_train(run, context, fitting, oracle, options, workers, say)

    # -- 6. winner, budget check, emit -----------------------------------------------------
    ranked = sorted(fitting, key=lambda c: (-c.accuracy, c.cost.metric(next(iter(limits))), c.key))
    winner = _confirm_budget(ranked, resolved, costs, prepared, parsed_budget, reference, limits, data, say)
    proto = _winner_model(run, prepared, calibration, winner, resolved)
    report = _report(
        prepared,
        resolved,
        parsed_budget,
        limits,
        reference,
        candidates,
        winner,
        probes,
        options,
        qat_runs,
        time.perf_counter() - start,
        inputs,
    )
    # the winner was chosen on the validation split; the test split gives an unbiased number
    test = load_data(data, specs, "test")
    report["winner"]["test_top1"] = evaluate_session(make_session(proto), test).top1
    report["float_test_top1"] = evaluate_session(make_session(prepared.model), test).top1
    run.write_bytes("model.onnx", proto.SerializeToString())
    run.write_bytes("scheme.json", winner.scheme.dumps().encode())
    run.write_json("report.json", report)
    from mpqc.report_html import render

    run.write_bytes("report.html", render(report, candidates, winner, probes).encode())
    say(
        f"winner: {winner.scheme.summary()} via {winner.recovery.upper()}, top-1 {100 * winner.accuracy:.2f}% "
        f"(float {100 * report['float_top1']:.2f}%), {qat_runs} QAT run(s); report: {run.path / 'report.html'}"
    )
    return CompileResult(
        proto,
        winner.scheme,
        report,
        candidates,
        winner,
        run.path,
        qat_runs,
        time.perf_counter() - start,
        report["notes"],
    )


def _data_label(data: DataLike) -> str:
    """How the run folder records the data: the spec a user typed, or a dataset's name."""
    if data is None:
        return "digits"
    if isinstance(data, str):
        return data
    return str(getattr(data, "name", type(data).__name__))


class _Say:
    def __init__(self, run: RunDir, echo: bool) -> None:
        self.run, self.echo, self.start = run, echo, time.perf_counter()

    def __call__(self, line: str) -> None:
        stamped = f"[{time.perf_counter() - self.start:7.1f}s] {line}"
        self.run.log(stamped)
        if self.echo:
            print(stamped, file=sys.stderr, flush=True)

    def bar(self, total: int, desc: str) -> Any:
        if not self.echo or total == 0:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, leave=False)


def _fmt(metric: str, value: float) -> str:
    if metric == "latency":
        return f"{value * 1e3:.4g}ms"
    if metric in ("size", "memory"):
        return f"{value / 1024:.4g}KB"
    return f"{value:.4g}"


def _space(target: Target) -> tuple[str, ...]:
    return _SPACE_ORT if isinstance(target, OrtCpuTarget) else _SPACE_ANALYTIC


def _pair(label: str) -> Precision:
    p = LayerPrecision.from_shorthand(label)
    return (p.w_bits, p.a_bits)


def _layer_options(
    prepared: Prepared, target: Target, costs: Any, space: tuple[str, ...], metrics: list[str]
) -> list[LayerOptions]:
    from mpqc.cost import bops, weight_bytes

    options = []
    for layer in prepared.analysis.layers:
        allowed = [p for p in (_pair(label) for label in space) if target.supports(layer.op_type, p)]
        if not allowed:
            raise MpqcError(f"target {target.name} runs none of {', '.join(space)} for {layer.op_type} {layer.name}")
        per_metric: dict[str, tuple[float, ...]] = {}
        single = Analysis1(layer)
        for metric in metrics:
            values = []
            for p in allowed:
                scheme = Scheme({layer.name: LayerPrecision(*p)})
                if metric == "latency":
                    values.append(costs.layer_cost(layer.name, p))
                elif metric == "size":
                    values.append(float(weight_bytes(single, scheme)))  # type: ignore[arg-type]
                elif metric == "bops":
                    values.append(float(bops(single, scheme)))  # type: ignore[arg-type]
                else:
                    values.append(0.0)
            per_metric[metric] = tuple(values)
        options.append(LayerOptions(layer.name, tuple(allowed), tuple(0.0 for _ in allowed), per_metric))
    return options


class Analysis1:
    """One layer seen as an analysis (for the per-layer cost functions)."""

    def __init__(self, layer: Any) -> None:
        self.layers = (layer,)


def _unrecoverable(oracle: Oracle, layer: str, precision: Precision) -> float:
    if precision == (None, None):
        return 0.0
    return sum(
        max(0.0, oracle.probes.unrecoverable(layer, v) - oracle.noise_floor)
        for v in oracle.variants_of(LayerPrecision(*precision))
    )


class _SharedCache:
    """Sensitivity and probes depend on the model, data, search space and probe settings,
    not on the budget or target: kept in the user cache so another budget reuses them."""

    def __init__(self, inputs: dict[str, Any], options: CompileOptions) -> None:
        from mpqc.targets.ort_cpu import cache_dir

        fields = {k: inputs[k] for k in ("model_sha256", "data", "seed", "space", "probe_epochs")}
        key = RunDir.key({**fields, "lr": options.lr, "version": 1})
        self.folder = cache_dir() / "compile" / key

    def read(self, name: str) -> Any | None:
        path = self.folder / name
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except json.JSONDecodeError:
            return None

    def write(self, name: str, data: Any) -> None:
        atomic_write_bytes(self.folder / name, (json.dumps(data, sort_keys=True) + "\n").encode())


def _cached(run: RunDir, shared: _SharedCache | None, name: str, say: _Say, what: str) -> Any | None:
    saved = run.read_json(name)
    if saved is not None:
        say(f"{what}: from the run folder")
        return saved
    saved = shared.read(name) if shared is not None else None
    if saved is not None and shared is not None:
        say(f"{what}: from the cache ({shared.folder})")
        run.write_json(name, saved)
    return saved


def _sensitivity(
    run: RunDir,
    shared: _SharedCache | None,
    prepared: Prepared,
    calibration: Any,
    validation: Any,
    space: tuple[str, ...],
    say: _Say,
) -> tuple[dict[str, dict[str, float]], float]:
    saved = _cached(run, shared, "sensitivity.json", say, "PTQ sensitivity")
    if saved is not None:
        return saved["loss"], saved["reference_ptq"]
    names = prepared.analysis.layer_names
    reference = ptq_top1(prepared, Scheme.uniform(names, LayerPrecision(8, 8)), calibration, validation)
    loss: dict[str, dict[str, float]] = {n: {"w8a8": 0.0} for n in names}
    jobs = [(n, label) for n in names for label in space if label != "w8a8"]
    bar = say.bar(len(jobs), "PTQ sensitivity")
    for name, label in jobs:
        precision = LayerPrecision.from_shorthand(label)
        scheme = Scheme({n: (precision if n == name else LayerPrecision(8, 8)) for n in names})
        loss[name][label] = reference - ptq_top1(prepared, scheme, calibration, validation)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    run.write_json("sensitivity.json", {"reference_ptq": reference, "loss": loss})
    if shared is not None:
        shared.write("sensitivity.json", {"reference_ptq": reference, "loss": loss})
    say(f"PTQ sensitivity: {len(jobs)} single-layer PTQ runs, w8a8 reference {100 * reference:.2f}%")
    return loss, reference


def _probes(
    run: RunDir,
    shared: _SharedCache | None,
    context: NecessityContext,
    prepared: Prepared,
    space: tuple[str, ...],
    options: CompileOptions,
    workers: int,
    say: _Say,
) -> LayerProbes:
    saved = _cached(run, shared, "probes.json", say, "QAT-necessity probes")
    if saved is not None:
        return LayerProbes.from_json(saved)
    bits = sorted({b for label in space if label != "float" for b in _bits_of(label)} | {8})
    variants = [f"w{b}a8" for b in bits if b != 8] + [f"w8a{b}" for b in bits if b != 8 and _has_act(space, b)]
    float_top1 = evaluate_session(make_session(prepared.model), context.evaluation).top1 or 0.0
    bar = say.bar(1 + len(variants) * len(prepared.analysis.layers), "QAT probes")
    probes = probe_layers(context, prepared, float_top1, variants, options.probe_epochs, workers, progress=bar)
    if bar is not None:
        bar.close()
    run.write_json("probes.json", probes.to_json())
    if shared is not None:
        shared.write("probes.json", probes.to_json())
    say(
        f"QAT-necessity probes: {1 + sum(len(r) for r in probes.table.values())} short QAT runs "
        f"({options.probe_epochs} epoch each) in "
        f"{probes.seconds:.1f}s on {workers} worker(s)"
    )
    return probes


def _bits_of(label: str) -> list[int]:
    p = LayerPrecision.from_shorthand(label)
    return [b for b in (p.w_bits, p.a_bits) if b is not None]


def _has_act(space: tuple[str, ...], bits: int) -> bool:
    return any(LayerPrecision.from_shorthand(label).a_bits == bits for label in space if label != "float")


def _evaluate_ptq(
    run: RunDir, prepared: Prepared, calibration: Any, validation: Any, candidates: list[Candidate], say: _Say
) -> None:
    bar = say.bar(len(candidates), "candidates (PTQ)")
    done = 0
    for candidate in candidates:
        saved = run.read_json(f"candidates/{candidate.key}.json")
        if saved is not None and saved.get("ptq_top1") is not None:
            candidate.ptq = saved["ptq_top1"]
            candidate.qat = saved.get("qat_top1")
            candidate.decision = saved.get("decision", "")
        else:
            candidate.ptq = ptq_top1(prepared, candidate.scheme, calibration, validation)
            run.write_json(f"candidates/{candidate.key}.json", candidate.to_json())
            done += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    say(
        f"candidates: {len(candidates)} fit the budget; {done} evaluated with PTQ now, "
        f"{len(candidates) - done} from the run folder"
    )


def _decide_and_train(
    run: RunDir,
    context: NecessityContext,
    fitting: list[Candidate],
    oracle: Oracle,
    options: CompileOptions,
    workers: int,
    say: _Say,
) -> int:
    """QAT in rounds of `workers` runs, best predicted first. After each round the oracle
    refits the unrecovered fraction from the runs just paid for, predictions are redone,
    and only candidates still predicted to beat the best result by the tolerance go on."""
    done = [c for c in fitting if c.qat is not None]  # from the run folder
    for candidate in done:
        candidate.decision = candidate.decision or "qat (from the run folder)"
    runs = 0
    left = options.max_qat_runs - len(done) if options.qat_policy == "oracle" else len(fitting)
    while True:
        if done:
            oracle.refit_kappa([(c.ptq or 0.0, c.qat or 0.0) for c in done])
        best = max(c.accuracy for c in fitting)
        pending = [c for c in fitting if c.qat is None]
        for candidate in pending:
            candidate.prediction = oracle.predict(candidate.scheme, candidate.ptq or 0.0)
        if options.qat_policy == "never" or left <= 0:
            break
        if options.qat_policy == "always":
            eligible = pending
        else:
            # optimistic (prediction + one sigma): worth a run if it might beat the best by the tolerance
            eligible = [
                c
                for c in pending
                if c.prediction is not None
                and c.prediction.needs_qat
                and _optimistic(c.prediction) > best + options.qat_tolerance
            ]
        if not eligible:
            break
        eligible.sort(key=lambda c: (-(_optimistic(c.prediction) if c.prediction else 0.0), c.key))
        size = len(eligible) if options.qat_policy == "always" else min(max(workers, 1), left)
        batch = eligible[:size]
        for candidate in batch:
            assert candidate.prediction is not None
            candidate.decision = (
                "qat (policy: always QAT)"
                if options.qat_policy == "always"
                else f"qat: predicted {100 * candidate.prediction.qat_top1:.2f}% > best {100 * best:.2f}% + tolerance"
            )
        say(
            f"QAT round: {len(batch)} run(s) ({options.qat_epochs} epochs each), best so far {100 * best:.2f}%, "
            f"unrecovered fraction {oracle.kappa:.2f}"
        )
        bar = say.bar(len(batch), "QAT")
        results = measure_schemes(
            context, [c.scheme for c in batch], options.qat_epochs, workers, keep_models=True, progress=bar
        )
        if bar is not None:
            bar.close()
        for candidate, measured in zip(batch, results):
            candidate.qat = measured.qat
            if measured.model is not None:
                run.write_bytes(f"candidates/{candidate.key}.qat.onnx", measured.model)
            run.write_json(f"candidates/{candidate.key}.json", candidate.to_json())
            done.append(candidate)
        runs += len(batch)
        left -= len(batch)
    best = max(c.accuracy for c in fitting)
    for candidate in fitting:
        if candidate.qat is not None:
            continue
        prediction = candidate.prediction
        assert prediction is not None
        if options.qat_policy == "never":
            candidate.decision = "ptq (policy: never QAT)"
        elif not prediction.needs_qat:
            candidate.decision = f"ptq: predicted N {100 * prediction.necessity:.2f} points <= tolerance"
        elif _optimistic(prediction) <= best + options.qat_tolerance:
            candidate.decision = (
                f"ptq: QAT cannot change the winner (predicted {100 * prediction.qat_top1:.2f}% "
                f"+{100 * prediction.sigma:.2f}, best {100 * best:.2f}%)"
            )
        else:
            candidate.decision = "ptq: QAT-run limit reached"
        run.write_json(f"candidates/{candidate.key}.json", candidate.to_json())
    return len(done)


def _optimistic(prediction: Prediction) -> float:
    return prediction.qat_top1 + prediction.sigma


def _confirm_budget(
    ranked: list[Candidate],
    target: Target,
    costs: Any,
    prepared: Prepared,
    budget: Budget,
    reference: SchemeCost,
    limits: dict[str, float],
    data: DataLike,
    say: _Say,
) -> Candidate:
    """Analytic targets: the computed cost is the truth. ort-cpu: measure the best few with
    the uniform int8 reference in the same interleaved run; the first that fits wins."""
    if not isinstance(target, OrtCpuTarget) or "latency" not in limits:
        return ranked[0]
    from mpqc.data import load_data as _load

    feed = dict(_load(data, input_specs(prepared.model), "calibration").take(1).inputs)
    names = prepared.analysis.layer_names
    int8 = Scheme.uniform(names, LayerPrecision(8, 8))
    for candidate in ranked[:5]:
        runs = target.measure_interleaved([costs.lower(int8), costs.lower(candidate.scheme)], feed)
        ref_s, cand_s = runs[0].median_s, runs[1].median_s
        candidate.measured_latency_s = cand_s
        relative = next((lim for lim in budget.limits if lim.metric == "latency"), None)
        bound = relative.value * ref_s if relative is not None and relative.relative else limits["latency"]
        if cand_s <= bound:
            say(f"budget check: measured {cand_s * 1e3:.3f} ms <= {bound * 1e3:.3f} ms (int8 {ref_s * 1e3:.3f} ms)")
            return candidate
        say(
            f"budget check: {candidate.scheme.summary()} measured {cand_s * 1e3:.3f} ms > {bound * 1e3:.3f} ms; "
            "trying the next candidate"
        )
    raise MpqcError("no candidate met the latency budget when measured on ort-cpu; loosen the budget")


def _winner_model(
    run: RunDir, prepared: Prepared, calibration: Any, winner: Candidate, target: Target
) -> onnx.ModelProto:
    if winner.recovery == "qat":
        payload = run.read_bytes(f"candidates/{winner.key}.qat.onnx")
        if payload is not None:
            proto = onnx.ModelProto()
            proto.ParseFromString(payload)
            return proto
    lowered = isinstance(target, OrtCpuTarget)
    return ir.serde.serialize_model(emit_qdq(prepared, winner.scheme, calibration, int8_kernels=lowered).model)


def _report(
    prepared: Prepared,
    target: Target,
    budget: Budget,
    limits: dict[str, float],
    reference: SchemeCost,
    candidates: list[Candidate],
    winner: Candidate,
    probes: LayerProbes,
    options: CompileOptions,
    qat_runs: int,
    seconds: float,
    inputs: dict[str, Any],
) -> dict[str, Any]:
    return {
        "objective": (
            "maximise validation top-1 after the chosen recovery (PTQ, or QAT where the oracle expects "
            "it to pay and to change the winner) subject to the budget on the target; search on additive "
            "per-layer proxies (PTQ sensitivity, loss QAT cannot recover, target cost), exact costs and "
            "ONNX Runtime accuracies for the candidates"
        ),
        "inputs": inputs,
        "target": {"name": target.name, "description": target.description},
        "budget": {
            "text": budget.describe(),
            "absolute": {m: v for m, v in limits.items()},
            "reference_uniform_int8": reference.to_json(),
        },
        "float_top1": probes.float_top1,
        "winner": {**winner.to_json(), "recovery": winner.recovery, "accuracy": winner.accuracy},
        "qat_runs": qat_runs,
        "max_qat_runs": options.max_qat_runs,
        "qat_policy": options.qat_policy,
        "qat_tolerance": options.qat_tolerance,
        "candidates": [c.to_json() for c in candidates],
        "probes": probes.to_json(),
        "seconds": seconds,
        "notes": [
            f"accuracies: top-1 on the validation split in ONNX Runtime; probes: QAT {options.probe_epochs} epoch(s),"
            f" candidates: QAT {options.qat_epochs} epoch(s)",
            "peak activation memory is checked on candidates only (it is not additive over layers)",
        ]
        + (
            []
            if inputs["data"] == "digits"
            else ["one data source serves training, validation and test: accuracies are not held out"]
        )
        + list(prepared.analysis.notes),
    }
