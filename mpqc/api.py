"""The Python API that deployment toolchains call; the CLI is a thin layer over it.

Every function takes a model (path, `onnx.ModelProto`, `onnx_ir.Model`, or a `Prepared`)
and data (`digits`, an `.npz` path, `module:function`, a dict of arrays, or None for the
built-in digits). Errors a caller can fix raise subclasses of `mpqc.MpqcError`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from mpqc.analysis import Analysis
from mpqc.compiler import CompileOptions, CompileResult, compile_workload
from mpqc.compiler.options import DEFAULT_BUDGET, DEFAULT_TARGET, MAX_DROP_BUDGET
from mpqc.errors import DataError
from mpqc.frontend import ModelLike, Prepared, prepare
from mpqc.modelio import atomic_write_bytes, check_output
from mpqc.precision import Precision
from mpqc.profiling import ProfileReport, profile_workload
from mpqc.quality import Evaluation, choose_measure
from mpqc.recipe import Recipe
from mpqc.scheme import Scheme
from mpqc.splits import DataSpec
from mpqc.targets import Target
from mpqc.workload import Workload

__all__ = [
    "Prepared",
    "QuantizeResult",
    "QatRunResult",
    "prepare",
    "analyze",
    "quantize",
    "evaluate",
    "profile",
    "qat",
    "compile",
    "export_ort_options",
    "validate",
]

SchemeLike = str | os.PathLike[str] | dict[str, Any] | Scheme


def _default(model: ModelLike | Prepared | None) -> ModelLike | Prepared:
    if model is None:
        from mpqc.models import zoo_path

        return zoo_path()
    return model


def analyze(model: ModelLike | Prepared | None = None) -> Analysis:
    """The quantizable layers, their shapes, MACs and parameters, and notes on the rest."""
    return prepare(_default(model)).analysis


@dataclass
class QuantizeResult:
    """A PTQ model with its float and quantized quality on the test split."""

    model: onnx.ModelProto
    scheme: Scheme
    analysis: Analysis
    weight_bytes: int
    float_weight_bytes: int
    calibration_seconds: float
    quantize_seconds: float
    float_eval: Evaluation | None = None
    quant_eval: Evaluation | None = None
    output: Path | None = None
    data: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme.to_json(),
            "summary": self.scheme.summary(),
            "weight_bytes": self.weight_bytes,
            "float_weight_bytes": self.float_weight_bytes,
            "calibration_seconds": self.calibration_seconds,
            "quantize_seconds": self.quantize_seconds,
            "float": None if self.float_eval is None else self.float_eval.to_json(),
            "quantized": None if self.quant_eval is None else self.quant_eval.to_json(),
            "output": None if self.output is None else str(self.output),
            "data": self.data,
            "notes": self.notes,
        }


def quantize(
    model: ModelLike | Prepared | None = None,
    scheme: SchemeLike = "w8a8",
    data: DataSpec = None,
    *,
    val_data: DataSpec = None,
    test_data: DataSpec = None,
    metric: str | None = None,
    recipe: Recipe | None = None,
    calib_samples: int | None = None,
    evaluate: bool = True,
    output: str | os.PathLike[str] | None = None,
    workload: Workload | None = None,
    backend: str | None = None,
) -> QuantizeResult:
    """PTQ of `scheme`, calibrated on the training split of `data`, evaluated (float and
    quantized, in ONNX Runtime) on its test split; written to `output` if given. `backend`
    (`ort`, `tensorrt`, `qnn`, `openvino`) emits in the form that backend loads and checks
    the result against its rules (a `BackendError` names a layer it cannot run)."""
    if output is not None:
        check_output(output)
    start = time.perf_counter()
    work = workload or Workload.build(
        _default(model),
        data,
        val_data=val_data,
        test_data=test_data,
        metric=metric,
        recipe=recipe,
        calib_samples=calib_samples,
        backend=backend,
    )
    analysis = work.prepared.analysis
    bound, fitted = _scheme_for(scheme, work).fitted_to(analysis)
    work.check_backend(bound)
    if evaluate:
        _ = work.quality  # labels and metric checked before the calibration pass
    emitted = work.emit(bound, check=True)
    payload = emitted.payload()
    seconds = time.perf_counter() - start
    float_bytes = sum(layer.params for layer in analysis.layers) * 4
    notes = [*fitted, *work.splits.notes, *work.calibration_notes(), *emitted.notes, *analysis.notes]
    result = QuantizeResult(
        emitted.proto(),
        bound,
        analysis,
        emitted.weight_bytes,
        float_bytes,
        work.calibration.seconds,
        seconds,
        data=work.splits.describe(),
        notes=notes,
    )
    if evaluate:
        result.float_eval = work.evaluate(work.prepared.model, "test")
        result.quant_eval = work.evaluate(payload, "test")
    if output is not None:
        result.output = atomic_write_bytes(output, payload)
    return result


def _scheme_for(spec: SchemeLike, work: Workload) -> Scheme:
    """A scheme from a shorthand, an mpqc scheme (file or mapping), or ONNX Runtime quantizer
    options (`TensorQuantOverrides`, as `export_ort_options` writes them)."""
    import json

    from mpqc.ort_overrides import is_ort_overrides, scheme_from_ort_overrides

    data: Any = spec
    if isinstance(spec, str | os.PathLike) and str(spec).endswith(".json") and Path(spec).is_file():
        try:
            data = json.loads(Path(spec).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = spec  # Scheme.parse names the problem
    if is_ort_overrides(data):
        initializers = set(work.prepared.model.graph.initializers)
        return scheme_from_ort_overrides(data, work.prepared.analysis, initializers)
    return Scheme.parse(spec, work.prepared.analysis.layer_names)


def export_ort_options(
    model: ModelLike | Prepared | None = None,
    scheme: SchemeLike = "w8a8",
    data: DataSpec = None,
    output: str | os.PathLike[str] = "ort_options",
    *,
    recipe: Recipe | None = None,
    calib_samples: int | None = None,
) -> Path:
    """Write `scheme` as ONNX Runtime `quantize_static` options (`ort_options.json`: the
    TensorQuantOverrides with mpqc's calibrated activation ranges, nodes_to_exclude, global
    options) and the prepared float model they name (`model.onnx`) into the folder `output`."""
    import json

    from mpqc.ort_overrides import to_ort_overrides

    folder = Path(output)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DataError(f"output folder {folder} exists and is not empty")
    work = Workload.build(_default(model), data, recipe=recipe, calib_samples=calib_samples)
    bound = _scheme_for(scheme, work)
    layers = bound.layers.values()
    resolved = work.resolve_recipe(
        {p.a_bits for p in layers if p.quantizes_activations and p.a_bits},
        {p.w_bits for p in layers if p.form == "qdq" and p.w_bits},
    )
    options = to_ort_overrides(work.prepared, bound, work.calibration, resolved)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "model.onnx", work.prepared.proto.SerializeToString())
    atomic_write_bytes(folder / "ort_options.json", (json.dumps(options, indent=2) + "\n").encode())
    return folder


def evaluate(
    model: ModelLike,
    data: DataSpec = None,
    reference: ModelLike | None = None,
    *,
    split: str = "test",
    metric: str | None = None,
) -> Evaluation:
    """Quality of `model` on one split of `data` (the split `quantize` reports on; `all` for
    every sample): top-1 against labels, and with `reference` (the float model) agreement,
    cosine and SQNR. The measure is chosen as everywhere (see `mpqc.quality`)."""
    from mpqc.modelio import load_model
    from mpqc.quality import evaluate_outputs

    if split not in ("train", "validation", "test", "all"):
        raise DataError(f"unknown split {split!r}; use train, validation, test or all")
    work = Workload.build(reference if reference is not None else model, data, metric=metric, require_layers=False)
    if split == "all":
        work.splits = work.splits.everything()
        split = "test"
    dataset = work.splits.get(split)
    if reference is None and dataset.labels is None:
        raise DataError(f"nothing to measure {model} against: {dataset.name} has no labels; give --reference")
    outputs = work.outputs(load_model(model), split)
    ref = work.reference(split) if reference is not None else None
    measure = work.quality if reference is not None else choose_measure("top1", outputs, dataset.labels, dataset.name)
    return evaluate_outputs(outputs, ref, dataset.labels, measure, split)


def profile(
    model: ModelLike | Prepared | None = None,
    target: str | Target = "ort-cpu",
    data: DataSpec = None,
    *,
    threads: int = 1,
    use_cache: bool = True,
    space: str | list[str | Precision] | None = None,
    backend: str | None = None,
) -> ProfileReport:
    """Each layer's cost at each precision on `target` (only those `backend` runs, if given),
    and whole-model costs (measured where the target measures)."""
    work = Workload.build(_default(model), data, target=target, threads=threads, use_cache=use_cache, backend=backend)
    return profile_workload(work, space)


@dataclass
class QatRunResult:
    """PTQ then QAT of one scheme, both evaluated in ONNX Runtime on the test split."""

    model: onnx.ModelProto
    scheme: Scheme
    ptq_eval: Evaluation
    qat_eval: Evaluation
    loss: str
    seconds: float
    seconds_per_epoch: float
    losses: list[float] = field(default_factory=list)
    output: Path | None = None
    data: str = ""
    #: how training went (best step, early stop, or the PTQ weights kept)
    training: str = ""
    #: the trained model did not beat PTQ on validation, so the PTQ model was kept
    kept_ptq: bool = False
    #: PTQ and the returned model on the validation split (the one QAT chose on)
    ptq_validation: Evaluation | None = None
    qat_validation: Evaluation | None = None

    @property
    def necessity(self) -> float:
        return self.qat_eval.quality - self.ptq_eval.quality

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme.summary(),
            "ptq": self.ptq_eval.to_json(),
            "qat": self.qat_eval.to_json(),
            "necessity": self.necessity,
            "loss": self.loss,
            "seconds": self.seconds,
            "seconds_per_epoch": self.seconds_per_epoch,
            "losses": self.losses,
            "output": None if self.output is None else str(self.output),
            "data": self.data,
            "training": self.training,
            "kept_ptq": self.kept_ptq,
            "validation": {
                "ptq": None if self.ptq_validation is None else self.ptq_validation.to_json(),
                "qat": None if self.qat_validation is None else self.qat_validation.to_json(),
            },
        }


def qat(
    model: ModelLike | Prepared | None = None,
    scheme: SchemeLike = "w4a4",
    data: DataSpec = None,
    *,
    config: Any = None,
    val_data: DataSpec = None,
    test_data: DataSpec = None,
    metric: str | None = None,
    output: str | os.PathLike[str] | None = None,
    backend: str | None = None,
) -> QatRunResult:
    """PTQ then QAT of `scheme`: trained on the training split, its best state chosen on the
    validation split (never worse than PTQ there), reported on the test split."""
    from mpqc.emit import serialize
    from mpqc.training.config import QatConfig
    from mpqc.training.train import Validation, resolve_loss, train_scheme

    if output is not None:
        check_output(output)
    config = config or QatConfig()
    start = time.perf_counter()
    work = Workload.build(_default(model), data, val_data=val_data, test_data=test_data, metric=metric, backend=backend)
    bound, _ = Scheme.parse(scheme, work.prepared.analysis.layer_names).fitted_to(work.prepared.analysis)
    work.check_backend(bound)
    loss = resolve_loss(config, work.splits.train.labels is not None)
    measure = work.quality
    ptq_payload = work.emit(bound).payload()
    outcome = train_scheme(
        work.prepared,
        bound,
        work.calibration,
        work.recipe,
        work.splits.train,
        work.float_runner(),
        config,
        work.reference("train"),
        measure.output,
        Validation(work.splits.validation, work.reference("validation"), measure),
    )
    payload = serialize(outcome.model)
    ptq_validation, qat_validation = work.evaluate(ptq_payload, "validation"), work.evaluate(payload, "validation")
    kept = qat_validation.quality < ptq_validation.quality
    if kept:  # never end below the PTQ start on validation
        payload, qat_validation = ptq_payload, ptq_validation
    result = QatRunResult(
        onnx.load_from_string(payload),
        bound,
        work.evaluate(ptq_payload, "test"),
        work.evaluate(payload, "test"),
        loss,
        time.perf_counter() - start,
        outcome.seconds_per_epoch,
        outcome.losses,
        data=work.splits.describe(),
        training=outcome.summary() + ("; ONNX Runtime found the PTQ model better on validation: kept" if kept else ""),
        kept_ptq=kept,
        ptq_validation=ptq_validation,
        qat_validation=qat_validation,
    )
    work.validate(payload, "the trained model")
    if output is not None:
        result.output = atomic_write_bytes(output, payload)
    return result


def compile(  # noqa: A001 (the main job is called compile)
    model: ModelLike | Prepared | None = None,
    budget: str | None = None,
    target: str | Target = DEFAULT_TARGET,
    data: DataSpec = None,
    output: str | os.PathLike[str] = "mpqc_out",
    options: CompileOptions | None = None,
    resume: bool = False,
    *,
    val_data: DataSpec = None,
    test_data: DataSpec = None,
    metric: str | None = None,
    space: str | list[str | Precision] | None = None,
    recipe: Recipe | None = None,
    threads: int = 1,
    calib_samples: int | None = None,
    backend: str | None = None,
) -> CompileResult:
    """The best scheme for `model` under `budget` on `target`, with QAT where the policy
    spends it; everything is written to the run folder `output`. With `options.max_drop`,
    the cheapest scheme (in the budget's first metric) within that much quality of float;
    the budget then defaults to `latency=1xfloat`, else to `latency=0.5x`."""
    options = options or CompileOptions()
    if budget is None:
        budget = MAX_DROP_BUDGET if options.max_drop is not None else DEFAULT_BUDGET
    work = Workload.build(
        _default(model),
        data,
        val_data=val_data,
        test_data=test_data,
        metric=metric,
        target=target,
        budget=budget,
        recipe=recipe,
        threads=threads,
        use_cache=options.use_cache,
        calib_samples=calib_samples,
        backend=backend,
    )
    return compile_workload(work, output, options, resume, space)


def validate(model: ModelLike, backend: str) -> list[Any]:
    """Every rule of `backend` (`ort`, `tensorrt`, `qnn`, `openvino`) the QDQ model breaks,
    each naming its node; empty when the backend accepts it. OpenVINO also compiles it."""
    import onnx_ir as ir

    from mpqc.backend import get_backend
    from mpqc.backend_check import check_model
    from mpqc.modelio import load_model

    return check_model(ir.serde.serialize_model(load_model(model)), get_backend(backend))
