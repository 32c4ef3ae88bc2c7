"""The workload: everything a command works on, built once.

`Workload.build` checks every input that can be checked cheaply (target, budget, metric,
data against the model's inputs) before anything expensive runs, and loads each data split
once. What costs time is computed on first use and kept: the calibration, the float
model's outputs on each split, the quality measure, the target's cost model and the budget
made absolute. compile, necessity, qat, profile and the API all take a workload instead of
rebuilding these."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import cached_property
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from mpqc.autocalib import CHOICE_SAMPLES, CalibrationChoice, WeightChoice, choose_methods, choose_weight_method
from mpqc.backend import Backend, get_backend
from mpqc.backend_check import require_valid
from mpqc.budget import Budget, ResolvedBudget
from mpqc.calibrate import calibrate
from mpqc.cost import SchemeCost, bops, peak_activation_bytes, weight_bytes
from mpqc.cpu import detect
from mpqc.data import Dataset
from mpqc.emit import Emitted, emit, run_loadable
from mpqc.errors import BackendError, BudgetError, DataError, OptionError
from mpqc.frontend import ModelLike, Prepared, prepare
from mpqc.precision import FLOAT, W8A8
from mpqc.quality import MEASURES, Evaluation, QualityMeasure, check_labels, choose_measure, evaluate_outputs
from mpqc.recipe import WEIGHTS_KEY, Recipe
from mpqc.runtime import Outputs, Runner, make_session
from mpqc.scheme import Scheme
from mpqc.signature import InputSpec, input_specs
from mpqc.splits import DataSpec, Splits, make_splits
from mpqc.stats import Calibration
from mpqc.targets import BackendTarget, CostModel, Target, get_target

__all__ = ["Workload", "Reporter"]

Reporter = Callable[[str], None]
_REFERENCE_SCHEMES = {"int8": W8A8, "float": FLOAT}


def _check_references(budget: Budget, target: Target) -> None:
    """A relative budget's reference must be a scheme the target runs (before any work)."""
    runs = {p.label for p in target.precisions()}
    for limit in budget.limits:
        if limit.reference is not None and _REFERENCE_SCHEMES[limit.reference].label not in runs:
            raise BudgetError(
                f"budget {limit.describe()} is relative to uniform {limit.reference}, which target {target.name} "
                f"does not run; it runs {', '.join(sorted(runs))}: give an absolute budget"
            )


def stderr_reporter() -> Reporter:
    """Progress lines on stderr, stamped with the seconds since the start."""
    start = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {line}", file=sys.stderr, flush=True)

    return say


def _for_backend(recipe: Recipe, backend: Backend) -> Recipe:
    """The recipe with what `backend` needs. The 8-bit weight range stays this CPU's (or the
    user's): quality is measured here, in ONNX Runtime, whose x86 int8 kernels saturate."""
    return replace(recipe, **backend.recipe_settings())


class Workload:
    """A prepared model, its data splits, the PTQ recipe, and optionally a target and a
    budget. Use `Workload.build`."""

    def __init__(
        self,
        prepared: Prepared,
        splits: Splits,
        specs: list[InputSpec],
        recipe: Recipe,
        *,
        metric: str | None = None,
        target: Target | None = None,
        budget: Budget | None = None,
        calib_samples: int | None = None,
        use_cache: bool = True,
        reporter: Reporter | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.prepared = prepared
        #: what will load the emitted files (`--backend`); None: ONNX Runtime, unchecked
        self.backend = backend
        self.splits = splits
        self.specs = specs
        #: the recipe as asked for; `recipe` adds the choices `auto` has made so far
        self.requested_recipe = recipe
        self.choices: dict[int, CalibrationChoice] = {}
        self.weight_choices: dict[int, WeightChoice] = {}
        self.metric = metric
        self.target = target
        self.budget = budget
        self.calib_samples = calib_samples
        self.use_cache = use_cache
        self.reporter = reporter
        self._runner: Runner | None = None
        self._references: dict[str, Outputs] = {}

    @classmethod
    def build(
        cls,
        model: ModelLike | Prepared,
        data: DataSpec = None,
        *,
        val_data: DataSpec = None,
        test_data: DataSpec = None,
        metric: str | None = None,
        target: str | Target | None = None,
        budget: str | Budget | None = None,
        recipe: Recipe | None = None,
        calib_samples: int | None = None,
        threads: int = 1,
        use_cache: bool = True,
        reporter: Reporter | None = None,
        require_layers: bool = True,
        backend: str | Backend | None = None,
    ) -> Workload:
        """Check everything cheap first (target, budget, metric), then prepare the model and
        load and check the data. `require_layers=False` accepts a model with nothing to
        quantize (to evaluate one that already is)."""
        if metric is not None and metric not in MEASURES:
            raise DataError(f"unknown metric {metric!r}; use one of {', '.join(MEASURES)}")
        if calib_samples is not None and calib_samples < 1:
            raise DataError(f"--calib-samples must be at least 1, got {calib_samples}")
        if threads < 1:
            raise OptionError(f"--threads must be at least 1, got {threads}")
        resolved_backend = get_backend(backend) if backend is not None else None
        resolved_target = get_target(target, threads=threads) if target is not None else None
        if resolved_target is not None and resolved_backend is not None:
            resolved_target = BackendTarget(resolved_target, resolved_backend)
        parsed_budget = Budget.parse(budget) if isinstance(budget, str) else budget
        if parsed_budget is not None and resolved_target is None:
            raise BudgetError("a budget needs a target to price it")
        if parsed_budget is not None and resolved_target is not None:
            _check_references(parsed_budget, resolved_target)
        prepared = prepare(model, fuse_attention=resolved_backend is None or resolved_backend.attention)
        if require_layers:
            prepared.require_layers()
        recipe = recipe or Recipe(**(resolved_target.recipe_defaults() if resolved_target else {}))
        if resolved_backend is not None:
            recipe = _for_backend(recipe, resolved_backend)

        def specs_for(batch_axes: dict[str, int]) -> list[InputSpec]:
            return input_specs(prepared.model, batch_axes)

        splits = make_splits(data, specs_for, validation=val_data, test=test_data)
        specs = specs_for({})
        return cls(
            prepared,
            splits,
            specs,
            recipe,
            metric=metric,
            target=resolved_target,
            budget=parsed_budget,
            calib_samples=calib_samples,
            use_cache=use_cache,
            reporter=reporter,
            backend=resolved_backend,
        )

    # -- progress ---------------------------------------------------------------------------
    def say(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter(line)

    # -- running models ---------------------------------------------------------------------
    def runner(self, model: ir.Model | bytes) -> Runner:
        runner = Runner(make_session(model), self.specs)
        if self._runner is not None:
            runner.per_sample = self._runner.per_sample  # the float model showed the layout
        return runner

    def outputs(self, model: ir.Model | bytes, split: str) -> Outputs:
        self.reference(split)
        return self.runner(model).run(self.splits.get(split))

    def float_runner(self) -> Runner:
        """The runner of the float model; after a run it knows how samples map to outputs."""
        if self._runner is None:
            self._runner = self.runner(self.prepared.model)
        return self._runner

    def reference(self, split: str) -> Outputs:
        """The float model's outputs on a split (kept)."""
        if split not in self._references:
            self._references[split] = self.float_runner().run(self.splits.get(split))
        return self._references[split]

    def sample_feed(self) -> dict[str, np.ndarray]:
        """One calibration sample in the model's layout (timing)."""
        runner = Runner(make_session(self.prepared.model), self.specs)
        return runner.feed(self.splits.train.take(1).inputs)

    # -- what is computed once ------------------------------------------------------------------
    @cached_property
    def quality(self) -> QualityMeasure:
        """The measure, chosen from the float model's validation outputs and the labels; labels
        of every split are checked against it."""
        validation = self.splits.validation
        measure = choose_measure(self.metric, self.reference("validation"), validation.labels, validation.name)
        checked: dict[str, Any] = {}
        for role in ("train", "validation", "test"):
            dataset = self.splits.get(role)
            if dataset.labels is not None:
                checked[role] = dataset.with_labels(check_labels(dataset.labels, measure.classes, dataset.name))
        self.splits = replace(self.splits, **checked)
        if measure.needs_labels and any(self.splits.get(r).labels is None for r in ("train", "validation", "test")):
            raise DataError("metric top1 needs labels in every split; some data has none")
        return measure

    @cached_property
    def calibration(self) -> Calibration:
        data = self.splits.train
        if self.calib_samples is not None:
            data = data.take(self.calib_samples)
        histograms = self.requested_recipe.activation_method != "minmax"
        self.say(f"calibration: {len(data)} samples")
        return calibrate(self.prepared.model, data, self.specs, self.prepared.analysis.activation_tensors, histograms)

    @cached_property
    def costs(self) -> CostModel:
        if self.target is None:
            raise BudgetError("no target: costs need one")
        return self.target.cost_model(self)

    @cached_property
    def resolved_budget(self) -> ResolvedBudget:
        if self.budget is None:
            raise BudgetError("no budget given")
        refs = {name: self.scheme_cost(self.uniform(_REFERENCE_SCHEMES[name])) for name in self.budget.references}
        return self.budget.resolve(refs)

    @property
    def recipe(self) -> Recipe:
        """The PTQ recipe with every per-tensor choice made so far."""
        chosen: dict[tuple[str, int], str] = {}
        for bits, choice in self.choices.items():
            chosen[("*", bits)] = choice.start
            chosen.update({(tensor, bits): method for tensor, method in choice.methods.items()})
        for bits, weights in self.weight_choices.items():
            chosen[(WEIGHTS_KEY, bits)] = weights.method
        return self.requested_recipe.with_choices(chosen)

    def resolve_recipe(self, bits: Iterable[int], weight_bits: Iterable[int] = ()) -> Recipe:
        """Make the `auto` choices for these activation widths and sub-8-bit weight widths
        (once each) and return the recipe."""
        weights = sorted({b for b in weight_bits if b < 8} - set(self.weight_choices))
        activations = sorted(set(bits) - set(self.choices))
        if self.requested_recipe.weight_method != "auto":
            weights = []
        if self.requested_recipe.activation_method != "auto":
            activations = []
        if not weights and not activations:
            return self.recipe
        data = self.splits.validation.take(CHOICE_SAMPLES)
        common = (self.specs, data, [o[: len(data)] for o in self.reference("validation")])
        per_sample = self.float_runner().per_sample
        for width in weights:
            self.weight_choices[width] = choose_weight_method(
                self.prepared, self.calibration, self.recipe, *common, width, per_sample=per_sample, say=self.say
            )
        for width in activations:
            self.choices[width] = choose_methods(
                self.prepared, self.calibration, self.recipe, *common, width, per_sample=per_sample, say=self.say
            )
        return self.recipe

    def calibration_notes(self) -> list[str]:
        chosen = [c.summary() for _, c in sorted(self.choices.items())]
        chosen += [c.summary() for _, c in sorted(self.weight_choices.items())]
        if self.requested_recipe.reduce_range is None:
            chosen.append(f"this CPU: {detect().describe()}")
        return [*self.calibration.notes, *chosen]

    # -- per scheme -------------------------------------------------------------------------
    def uniform(self, precision: Any) -> Scheme:
        return Scheme.uniform(self.prepared.analysis.layer_names, precision)

    def emit(self, scheme: Scheme, check: bool = False) -> Emitted:
        """The QDQ model of `scheme` (lowered as the target runs it), `auto` ranges chosen first."""
        layers = scheme.layers.values()
        recipe = self.resolve_recipe(
            {p.a_bits for p in layers if p.quantizes_activations and p.a_bits},
            {p.w_bits for p in layers if p.form == "qdq" and p.w_bits},
        )
        int8_kernels = self.target.int8_kernels if self.target is not None else False
        emitted = emit(self.prepared, scheme, self.calibration, recipe, int8_kernels, check)
        if check and self.backend is not None:
            require_valid(emitted.proto(), self.backend, f"the {scheme.summary()} model")
        return emitted

    def check_backend(self, scheme: Scheme) -> None:
        """Refuse, naming the layer, a scheme the backend cannot run (before any work)."""
        if self.backend is None:
            return
        for layer in self.prepared.analysis.layers:
            reason = self.backend.refusal(layer, scheme[layer.name])
            if reason is not None:
                raise BackendError(f"layer {layer.name} ({layer.op_type}) at {scheme[layer.name].label}: {reason}")

    def validate(self, payload: bytes, what: str) -> None:
        """A model about to be returned, checked against the backend's rules."""
        if self.backend is not None:
            require_valid(onnx.load_from_string(payload), self.backend, what)

    def evaluate(self, model: ir.Model | bytes, split: str) -> Evaluation:
        """Quality of a model (float or quantized) on a split, against the float model."""
        dataset = self.splits.get(split)
        measure = self.quality
        return evaluate_outputs(self.outputs(model, split), self.reference(split), dataset.labels, measure, split)

    def ptq_quality(self, scheme: Scheme, split: str = "validation") -> float:
        """PTQ quality of `scheme`. Should ONNX Runtime refuse the model for a sub-8-bit type
        (it fuses a float-weight layer's 4- or 2-bit input, `wfa4`, into a QLinearConv it
        cannot load), it is emitted as `emit(check=True)` does, in 8-bit containers."""
        return run_loadable(
            lambda check: self.emit(scheme, check=check).payload(),
            lambda payload: self.evaluate(payload, split).quality,
        )

    def scheme_cost(self, scheme: Scheme) -> SchemeCost:
        analysis, model = self.prepared.analysis, self.prepared.model
        return SchemeCost(
            latency_s=float(self.costs.latency(scheme)) if self.target is not None else 0.0,
            weight_bytes=weight_bytes(analysis, scheme),
            peak_activation_bytes=peak_activation_bytes(model, analysis, scheme),
            bops=bops(analysis, scheme),
        )

    def fingerprint(self) -> dict[str, str]:
        """Content hashes of what results depend on: model, every split, recipe."""
        return {
            "model": self.prepared.digest(),
            "train": self.splits.train.digest(),
            "validation": self.splits.validation.digest(),
            "test": self.splits.test.digest(),
            "recipe": json.dumps(self.requested_recipe.to_json(), sort_keys=True),
            "metric": self.metric or "auto",
            "calib_samples": str(self.calib_samples),
        }

    def dataset(self, split: str) -> Dataset:
        return self.splits.get(split)
