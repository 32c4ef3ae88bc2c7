"""The `mpqc` command: a thin layer over the Python API.

Bad input prints one line on stderr and exits with status 2; outputs are written
atomically and last, so an error never leaves a file at `-o`. Ctrl-C prints one line and
exits with status 130 (a compile run folder keeps what had finished). Heavy modules are
imported inside the commands, so `mpqc --help` starts at once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mpqc.errors import MpqcError, OptionError, first_line

__all__ = ["main", "build_parser"]

_DEFAULT_MODEL = "the built-in digits_cnn"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, status 2
        print(f"mpqc: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the `None` of options that have no default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


# -- shared parent parsers -----------------------------------------------------------------
def _parent(add: Callable[[argparse.ArgumentParser], None]) -> _Parser:
    parent = _Parser(add_help=False)
    add(parent)
    return parent


def _model(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help=f"ONNX model file (default: {_DEFAULT_MODEL})")


def _data(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default=None,
        help="digits (the default), a .npz with one array per model input (+ optional labels), or module:function "
        "(imports and runs your code); split 60/20/20 into calibration/training, validation and test",
    )
    g.add_argument("--val-data", default=None, help="separate validation data (same forms as --data)")
    g.add_argument("--test-data", default=None, help="separate test data (same forms as --data)")
    g.add_argument(
        "--metric",
        choices=("top1", "agreement", "cosine"),
        default=None,
        help="quality measure (default: top1 with labels, else agreement for classifiers, else cosine)",
    )


def _recipe(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("calibration")
    g.add_argument(
        "--calib-method",
        choices=("auto", "minmax", "percentile", "mse"),
        default="auto",
        help="activation range method; auto picks one per tensor by the output fidelity it gives",
    )
    g.add_argument(
        "--weight-method",
        choices=("auto", "minmax", "mse"),
        default="auto",
        help="weight scales: auto is min-max at 8 bits, below it min-max or MSE by output fidelity",
    )
    g.add_argument("--percentile", type=float, default=99.99, help="percentile of the percentile method")
    g.add_argument("--calib-samples", type=int, default=None, help="calibrate on the first N training samples")
    weights = g.add_mutually_exclusive_group()
    weights.add_argument(
        "--full-range-weights",
        dest="reduce_range",
        action="store_false",
        default=None,
        help="8-bit weights in [-128, 127] (default: by this CPU: full range unless x86 without VNNI/AMX)",
    )
    weights.add_argument(
        "--reduce-range",
        dest="reduce_range",
        action="store_true",
        help="8-bit weights in [-64, 63], for x86 CPUs without VNNI whose int8 kernels saturate",
    )


def _target(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target")
    g.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads when measuring ort-cpu")
    g.add_argument("--no-cache", action="store_true", help="measure and compute again, ignoring the user cache")
    g.add_argument("--space", default=None, help="comma-separated precisions to consider (default: the target's)")


def _backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=("ort", "tensorrt", "qnn", "openvino"),
        default=None,
        help="what will load the model: only precisions it runs, emitted in its form (tensorrt: int8 with zero "
        "point 0; qnn: uint8/uint16 activations, per-tensor MatMul weights), checked against its rules",
    )


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default=None, help="output path")


def _seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (QAT, held-out schemes)")


def _workers(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("jobs (PTQ, probes, QAT)")
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local: worker processes (default: cores, max 4); ray: actors (default: the cluster's CPUs)",
    )
    g.add_argument("--executor", choices=("local", "ray"), default="local", help="where jobs run (ray: the ray extra)")
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="--executor ray: auto or HOST:PORT of a running cluster (default: start a Ray on this machine)",
    )
    g.add_argument("--job-retries", type=int, default=2, help="times a job whose worker died is run again (default: 2)")


def _executor(args: argparse.Namespace) -> Any:
    from mpqc.executor import ExecutorSpec

    return ExecutorSpec(args.executor, args.workers, args.ray_address, args.job_retries)


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")


PARENTS = {
    name: _parent(fn)
    for name, fn in {
        "model": _model,
        "data": _data,
        "recipe": _recipe,
        "target": _target,
        "backend": _backend,
        "output": _output,
        "seed": _seed,
        "workers": _workers,
        "json": _json,
    }.items()
}


# -- helpers --------------------------------------------------------------------------------
def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if getattr(args, "json", False) else text)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _shape(shape: Sequence[Any] | None) -> str:
    return "?" if shape is None else "x".join("?" if d is None else str(d) for d in shape)


def _recipe_of(args: argparse.Namespace) -> Any:
    from mpqc.recipe import Recipe

    return Recipe(
        activation_method=args.calib_method or "auto",
        weight_method=args.weight_method,
        percentile=args.percentile,
        reduce_range=args.reduce_range,
    )


def _data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"val_data": args.val_data, "test_data": args.test_data, "metric": args.metric}


def _eval_rows(f: Any, q: Any, label: str) -> list[tuple[str, str, str]]:
    rows = [("", "float", label), (f"{q.measure} (quality)", _pct(f.quality), _pct(q.quality))]
    if q.top1 is not None and q.measure != "top1":
        rows.append(("top-1", _pct(f.top1), _pct(q.top1)))
    if q.agreement is not None and q.measure != "agreement":
        rows.append(("top-1 agreement", "100.00%", _pct(q.agreement)))
    if q.cosine is not None and q.measure != "cosine":
        rows.append(("output cosine", "1.0000", f"{q.cosine:.4f}"))
    if q.sqnr_db is not None:
        rows.append(("output SQNR", "-", f"{q.sqnr_db:.1f} dB"))
    return rows


# -- commands -------------------------------------------------------------------------------
def _cmd_analyze(args: argparse.Namespace) -> None:
    from mpqc import api

    analysis = api.analyze(args.model)
    rows = [("layer", "op", "input", "output", "weight", "MACs", "params")]
    for layer in analysis.layers:
        rows.append(
            (
                layer.name,
                layer.op_type + (" (dw)" if layer.depthwise else ""),
                _shape(layer.input_shape),
                _shape(layer.output_shape),
                _shape(layer.weight_shape),
                "?" if layer.macs is None else f"{layer.macs:,}",
                f"{layer.params:,}",
            )
        )
    text = _table(rows) if analysis.layers else "no quantizable layer"
    text += (
        f"\n{len(analysis.layers)} quantizable layers, {analysis.total_macs:,} MACs, {analysis.total_params:,} params"
    )
    text += "".join(f"\nnote: {note}" for note in analysis.notes)
    _emit(args, analysis.to_json(), text)


def _cmd_quantize(args: argparse.Namespace) -> None:
    from mpqc import api

    model = Path(args.model) if args.model else None
    stem = model.stem if model else "digits_cnn"
    output = Path(args.output) if args.output else Path(f"{stem}_{Path(str(args.scheme)).stem}.onnx")
    result = api.quantize(
        args.model,
        args.scheme,
        args.data,
        recipe=_recipe_of(args),
        calib_samples=args.calib_samples,
        output=output,
        backend=args.backend,
        **_data_kwargs(args),
    )
    f, q = result.float_eval, result.quant_eval
    assert f is not None and q is not None
    rows = _eval_rows(f, q, result.scheme.summary())
    rows.append(("weight bytes", f"{result.float_weight_bytes:,}", f"{result.weight_bytes:,}"))
    text = _table(rows)
    text += f"\nquality on the test split ({q.samples} samples); data: {result.data}"
    text += f"\nquantized in {result.quantize_seconds:.2f} s"
    text += "".join(f"\nnote: {note}" for note in result.notes)
    text += f"\nwrote {result.output}"
    _emit(args, result.to_json(), text)


def _cmd_ort_options(args: argparse.Namespace) -> None:
    from mpqc import api

    folder = api.export_ort_options(
        args.model, args.scheme, args.data, args.output, recipe=_recipe_of(args), calib_samples=args.calib_samples
    )
    text = (
        f"wrote {folder}/ort_options.json and {folder}/model.onnx (the prepared float model the options name);\n"
        "apply with onnxruntime.quantization.quantize_static(model.onnx, out.onnx, reader, **options), the type names "
        "as QuantType (mpqc.ort_overrides.ort_quant_options converts them)"
    )
    _emit(args, {"output": str(folder)}, text)


def _cmd_eval(args: argparse.Namespace) -> None:
    from mpqc import api

    evaluation = api.evaluate(Path(args.model), args.data, args.reference, split=args.split, metric=args.metric)
    rows = [
        ("metric", "value"),
        ("samples", str(evaluation.samples)),
        (f"{evaluation.measure} (quality)", _pct(evaluation.quality)),
    ]
    if evaluation.top1 is not None and evaluation.measure != "top1":
        rows.append(("top-1", _pct(evaluation.top1)))
    if args.reference:
        rows += [
            ("top-1 agreement", _pct(evaluation.agreement)),
            ("output cosine", "-" if evaluation.cosine is None else f"{evaluation.cosine:.4f}"),
            ("output SQNR", "-" if evaluation.sqnr_db is None else f"{evaluation.sqnr_db:.1f} dB"),
        ]
    where = "every sample of the data" if args.split == "all" else f"the {args.split} split of the data"
    _emit(args, evaluation.to_json(), _table(rows) + f"\non {where} (quantize reports on the test split)")


def _cmd_export(args: argparse.Namespace) -> None:
    from mpqc.export import export_factory, parse_shape

    path = export_factory(args.factory, parse_shape(args.input_shape), args.output)
    _emit(args, {"output": str(path)}, f"wrote {path}")


def _cmd_profile(args: argparse.Namespace) -> None:
    import math

    from mpqc import api

    report = api.profile(
        args.model,
        args.target,
        args.data,
        threads=args.threads,
        use_cache=not args.no_cache,
        space=args.space,
        backend=args.backend,
    )

    def ms(value: float) -> str:
        return "-" if not math.isfinite(value) else f"{value * 1e3:.4f}"

    labels = report.precisions
    rows = [["layer", "op", "MACs", *[f"{p} ms" for p in labels]]]
    for row in report.layers:
        rows.append(
            [row.name, row.op_type, "?" if row.macs is None else f"{row.macs:,}", *[ms(row.seconds[p]) for p in labels]]
        )
    totals = report.totals

    def total(fn: Callable[[Any], str]) -> list[str]:
        return [fn(totals[p]) if p in totals else "-" for p in labels]

    rows.append(["whole model (predicted)", "", "", *total(lambda c: ms(c.latency_s))])
    if report.measured:
        rows.append(
            [
                "whole model (measured)",
                "",
                "",
                *[ms(report.measured[p].median_s) if p in report.measured else "-" for p in labels],
            ]
        )
        rows.append(
            ["  spread (IQR)", "", "", *[ms(report.measured[p].iqr_s) if p in report.measured else "-" for p in labels]]
        )
    rows.append(["weight KB", "", "", *total(lambda c: f"{c.weight_bytes / 1024:.1f}")])
    rows.append(["peak activation KB", "", "", *total(lambda c: f"{c.peak_activation_bytes / 1024:.1f}")])
    rows.append(["GBOPs", "", "", *total(lambda c: f"{c.bops / 1e9:.3f}")])
    info = report.target
    text = _table(rows) + f"\ntarget {info['name']}: {info['description']}"
    if info.get("threads"):
        text += f"; {info['threads']} thread(s), batch 1, {'from cache' if report.cached else 'measured now'}"
    _emit(args, report.to_json(), text)


def _cmd_targets(args: argparse.Namespace) -> None:
    from mpqc.cpu import detect
    from mpqc.targets import builtin_targets

    targets = builtin_targets()
    rows = [("target", "precisions", "description")]
    rows += [(t.name, ", ".join(p.label for p in t.precisions()), t.description) for t in targets]
    cpu = detect()
    text = f"{_table(rows)}\n\nthis CPU: {cpu.describe()}"
    payload = {"targets": [t.info() | {"precisions": [p.label for p in t.precisions()]} for t in targets]}
    _emit(args, payload | {"cpu": cpu.to_json()}, text)


def _cmd_validate(args: argparse.Namespace) -> None:
    """Exit 1 when the backend would refuse the model (the violations on stdout), 0 when not."""
    from mpqc import api
    from mpqc.backend import get_backend

    found = api.validate(_model_path(args.model), args.backend)
    backend = get_backend(args.backend)
    if found:
        text = "\n".join(f"{v.rule:<22} {v}" for v in found)
        text += f"\n{len(found)} violation(s) of the {backend.name} rules ({', '.join(backend.references)})"
    else:
        text = f"{args.model}: no violation of the {backend.name} rules"
    _emit(args, {"backend": backend.name, "violations": [v.to_json() for v in found]}, text)
    if found:
        raise SystemExit(1)


def _cmd_olive_config(args: argparse.Namespace) -> None:
    import json

    from mpqc.modelio import atomic_write_bytes, check_output

    check_output(args.output)
    try:
        from mpqc.olive_pass import package_config
    except ImportError as exc:
        raise OptionError(f"Olive is not installed ({exc}): pip install 'mpqc[olive]'") from None
    path = atomic_write_bytes(args.output, json.dumps(package_config(), indent=2).encode())
    _emit(args, {"output": str(path)}, f"wrote {path}: olive run --config WORKFLOW.json --package-config {path}")


def _cmd_compile(args: argparse.Namespace) -> None:
    from mpqc import api
    from mpqc.compiler import CompileOptions, summary_rows

    if args.resume and args.output and Path(args.output) != Path(args.resume):
        raise OptionError("give either -o or --resume (the run folder to continue), not two different folders")
    output = args.resume or args.output or "mpqc_out"
    if not (args.qat_tolerance == args.qat_tolerance) or abs(args.qat_tolerance) == float("inf"):
        raise OptionError(f"--qat-tolerance must be a finite number of points, got {args.qat_tolerance}")
    if args.max_drop is not None and not 0 <= args.max_drop <= 100:
        raise OptionError(f"--max-drop must be between 0 and 100 points, got {args.max_drop}")
    options = CompileOptions(
        qat_tolerance=args.qat_tolerance / 100,
        max_qat_runs=args.max_qat_runs,
        qat_epochs=args.epochs,
        short_epochs=args.short_epochs,
        probe_epochs=args.probe_epochs,
        seed=args.seed,
        workers=args.workers,
        executor=args.executor,
        ray_address=args.ray_address,
        job_retries=args.job_retries,
        qat_policy=args.qat_policy,
        top_k=args.top_k,
        sensitivity_samples=args.sensitivity_samples,
        max_drop=None if args.max_drop is None else args.max_drop / 100,
        progress=not args.json,
        use_cache=not args.no_cache,
    )
    result = api.compile(
        args.model,
        args.budget,
        args.target,
        args.data,
        output,
        options,
        resume=bool(args.resume),
        space=args.space,
        recipe=_recipe_of(args),
        threads=args.threads,
        calib_samples=args.calib_samples,
        backend=args.backend,
        **_data_kwargs(args),
    )
    rows = [("", "value"), *summary_rows(result.report)]
    text = _table(rows) + f"\nwrote {result.output}/model.onnx, scheme.json, report.json, report.html, compile.log"
    text += f"\nreport: {result.report_path}"
    _emit(
        args,
        {
            "output": str(result.output),
            **{
                k: result.report[k]
                for k in ("winner", "float", "measure", "budget", "qat_runs", "qat_policy", "seconds")
            },
        },
        text,
    )


def _cmd_qat(args: argparse.Namespace) -> None:
    from mpqc import api
    from mpqc.training.config import QatConfig

    model = Path(args.model) if args.model else None
    stem = model.stem if model else "digits_cnn"
    output = Path(args.output) if args.output else Path(f"{stem}_{Path(str(args.scheme)).stem}_qat.onnx")
    config = QatConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        loss=args.loss,
        progress=not args.json,
    )
    result = api.qat(
        args.model, args.scheme, args.data, config=config, output=output, backend=args.backend, **_data_kwargs(args)
    )
    p, q = result.ptq_eval, result.qat_eval
    rows = [("", "PTQ", "QAT"), (f"{q.measure} (quality)", _pct(p.quality), _pct(q.quality))]
    if q.sqnr_db is not None:
        rows.append(("output SQNR vs float", f"{p.sqnr_db:.1f} dB", f"{q.sqnr_db:.1f} dB"))
    text = _table(rows) + f"\nQAT necessity N = {100 * result.necessity:+.2f} points ({q.measure}, test split)"
    text += f"\ntraining: {result.training}"
    text += (
        f"\n{result.scheme.summary()}, {args.epochs} epoch(s) with {result.loss} loss, "
        f"{result.seconds_per_epoch:.2f} s/epoch, {result.seconds:.1f} s in all; data: {result.data}"
        f"\nwrote {result.output}"
    )
    _emit(args, result.to_json(), text)


def _cmd_necessity(args: argparse.Namespace) -> None:
    from mpqc.necessity_run import necessity_workload, profile_table, validation_table
    from mpqc.workload import Workload

    bits = _bits(args.bits)
    where = _executor(args)
    work = Workload.build(_model_path(args.model), args.data, **_data_kwargs(args))
    result = necessity_workload(
        work,
        bits=bits,
        probe_epochs=args.probe_epochs,
        epochs=args.epochs,
        validate=args.validate,
        tolerance=args.qat_tolerance / 100,
        seed=args.seed,
        seeds=args.seeds,
        short_epochs=args.short_epochs,
        executor=where,
        report=args.report,
        model_name=Path(args.model).name if args.model else "digits_cnn",
        progress=not args.json,
    )
    text = profile_table(result)
    if result.validation is not None:
        text += "\n" + validation_table(result)
    text += "\n" + "\n".join(result.notes)
    if args.report:
        text += f"\nreport in {args.report}"
    _emit(args, result.to_json(), text)


def _bits(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p.isdigit() for p in parts):
        raise OptionError(f"--bits takes a comma-separated list of 2, 4 and 8, got {text!r}")
    return tuple(int(p) for p in parts)


def _model_path(value: str | None) -> Any:
    if value is not None:
        return Path(value)
    from mpqc.models import zoo_path

    return zoo_path()


def _cmd_zoo(args: argparse.Namespace) -> None:
    from mpqc.models import DEFAULT_MODEL, manifest

    if args.zoo_command == "train":
        from mpqc.models.train import train

        result = train(args.name, args.epochs, args.seed, Path(args.output_dir) if args.output_dir else None)
        _emit(
            args,
            {"name": result.name, "path": str(result.path), "test_top1": result.test_top1},
            f"trained {result.name}: float test top-1 {_pct(result.test_top1)} (ONNX Runtime); wrote {result.path}",
        )
        return
    shipped = manifest()
    rows = [("model", "input", "float top-1", "description")]
    for name, entry in sorted(shipped.items()):
        rows.append(
            (
                name + (" (default)" if name == DEFAULT_MODEL else ""),
                "x".join(map(str, entry.get("input_shape", []))),
                _pct(float(entry["float_test_top1"])) if "float_test_top1" in entry else "not built",
                str(entry.get("description", "")),
            )
        )
    _emit(args, {"models": shipped}, _table(rows))


# -- the parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (shared options come from the `PARENTS` parsers)."""
    from mpqc.version import __version__

    parser = _Parser(
        prog="mpqc", description="Mixed-precision quantization compiler for ONNX models.", formatter_class=_Help
    )
    parser.add_argument("--version", action="version", version=f"mpqc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def add(name: str, help_text: str, *parents: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=_Help,
            parents=[PARENTS[p] for p in (*parents, "json")],
        )

    p = add("analyze", "list the quantizable layers with shapes, MACs and params", "model")
    p.set_defaults(func=_cmd_analyze)

    p = add(
        "quantize",
        "PTQ with a scheme: calibrate, write a QDQ model, report float and quantized quality",
        "model",
        "data",
        "recipe",
        "backend",
        "output",
    )
    p.add_argument(
        "--scheme",
        default="w8a8",
        help="a precision for every layer (w8a8, w4a8, ..., float), a scheme .json, or ONNX Runtime quantizer "
        "options (.json with TensorQuantOverrides)",
    )
    p.set_defaults(func=_cmd_quantize)

    p = add(
        "ort-options",
        "write a scheme as ONNX Runtime quantize_static options (TensorQuantOverrides) with the model they name",
        "model",
        "data",
        "recipe",
    )
    p.add_argument("--scheme", default="w8a8", help="a precision for every layer, or a scheme .json")
    p.add_argument("-o", "--output", required=True, help="a new folder: ort_options.json and model.onnx")
    p.set_defaults(func=_cmd_ort_options)

    p = add("eval", "quality of a model in ONNX Runtime; with --reference, fidelity to the float model", "data")
    p.add_argument("model", help="ONNX model (float or QDQ)")
    p.add_argument("--reference", default=None, help="the float model, for agreement, cosine and SQNR")
    p.add_argument(
        "--split",
        choices=("train", "validation", "test", "all"),
        default="test",
        help="which part of the data (quantize reports on test)",
    )
    p.set_defaults(func=_cmd_eval)

    p = add("export", "export a PyTorch module to ONNX (imports and runs your code)")
    p.add_argument("factory", help="module:factory returning a torch.nn.Module (the current folder is importable)")
    p.add_argument("--input-shape", required=True, help="example input shape, e.g. 1,3,32,32")
    p.add_argument("-o", "--output", required=True, help="output ONNX file")
    p.set_defaults(func=_cmd_export)

    p = add(
        "compile",
        "necessity-aware mixed-precision search under a budget; emits the best QDQ model",
        "model",
        "data",
        "recipe",
        "target",
        "backend",
        "seed",
        "workers",
    )
    p.add_argument(
        "--budget",
        default=None,
        help="latency=2.5ms, size=40KB, memory=256KB, bops=1.2G, or relative: latency=0.6x (of uniform "
        "int8), latency=0.5xfloat; several joined by commas (default latency=0.5x; with --max-drop latency=1xfloat)",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=None,
        metavar="POINTS",
        help="quality-constrained: the cheapest scheme (in the budget's first metric) whose validation quality "
        "is within POINTS of float",
    )
    p.add_argument(
        "--target",
        default="bitserial",
        help="ort-cpu, openvino-cpu (the openvino extra), bitserial, mcu, or a target .toml",
    )
    p.add_argument("-o", "--output", default=None, help="run folder (default: mpqc_out)")
    p.add_argument("--resume", default=None, help="continue an interrupted run in this folder")
    p.add_argument(
        "--qat-policy",
        choices=("predicted", "always", "never", "ptq-rule", "probed", "predicted-split", "short-qat"),
        default="predicted",
        help="where QAT runs: predicted (learns from its own runs), always, never, "
        "ptq-rule (float - PTQ, top k), probed (layer probes first), predicted-split (learns what QAT "
        "leaves of the weights' and the activations' PTQ loss apart; one more PTQ run per candidate), "
        "short-qat (a short QAT run for every candidate, the full run for the top k by it)",
    )
    p.add_argument("--qat-tolerance", type=float, default=1.0, help="points of quality QAT must add to be run")
    p.add_argument(
        "--max-qat-runs", type=int, default=4, help="QAT runs at most (predicted, ptq-rule; short-qat: full runs)"
    )
    p.add_argument(
        "--top-k", type=int, default=2, help="ptq-rule: QAT the best k by PTQ; short-qat: the best k by short QAT"
    )
    p.add_argument("--epochs", type=int, default=3, help="QAT epochs for candidates")
    p.add_argument("--short-epochs", type=int, default=1, help="short-qat: epochs of the short run")
    p.add_argument("--probe-epochs", type=int, default=1, help="QAT epochs for the necessity probes")
    p.add_argument(
        "--sensitivity-samples", type=int, default=32, help="validation samples the per-layer sensitivity pass runs"
    )
    p.set_defaults(func=_cmd_compile)

    p = add(
        "qat",
        "quantization-aware training of one scheme from an ONNX model; evaluated in ONNX Runtime",
        "model",
        "data",
        "backend",
        "output",
        "seed",
    )
    p.add_argument("--scheme", default="w4a4", help="a precision for every layer, or a scheme .json")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="relative learning rate: each step moves a weight by this much of its quantization step",
    )
    p.add_argument("--batch-size", type=int, default=32, help="samples per step")
    p.add_argument(
        "--loss",
        choices=("auto", "labels", "distill"),
        default="auto",
        help="auto: labels if the data has them, else distillation from the float model",
    )
    p.set_defaults(func=_cmd_qat)

    p = add(
        "necessity",
        "layer-wise QAT-necessity profile, the predictor, and its validation",
        "model",
        "data",
        "seed",
        "workers",
    )
    p.add_argument("--bits", default="2,4,8", help="probe bit widths (weights at each; activations below 8)")
    p.add_argument("--validate", type=int, default=0, help="measure K random held-out schemes against the predictor")
    p.add_argument(
        "--seeds", type=int, default=1, help="QAT runs per held-out scheme (seeds), averaged as the truth (default 1)"
    )
    p.add_argument(
        "--short-epochs",
        type=int,
        default=0,
        help="also score the short-QAT predictor: N after this many epochs (default 0: off)",
    )
    p.add_argument("--probe-epochs", type=int, default=3, help="QAT epochs per probe")
    p.add_argument("--epochs", type=int, default=3, help="QAT epochs per validation scheme")
    p.add_argument("--qat-tolerance", type=float, default=1.0, help="points of quality QAT must add to be needed")
    p.add_argument("--report", default=None, help="folder for necessity.json, .txt and PNG plots")
    p.set_defaults(func=_cmd_necessity)

    p = add(
        "profile",
        "per-layer latency at each precision on a target, and the whole model's",
        "model",
        "target",
        "backend",
    )
    p.add_argument(
        "--target", default="ort-cpu", help="ort-cpu or openvino-cpu (measured), bitserial, mcu, or a target .toml"
    )
    p.add_argument("--data", default=None, help="sample input source (digits, .npz, module:function)")
    p.set_defaults(func=_cmd_profile)

    p = add("validate", "check a QDQ model against a deployment backend's rules; each violation names its node")
    p.add_argument("model", help="ONNX model (QDQ)")
    p.add_argument("--backend", required=True, choices=("ort", "tensorrt", "qnn", "openvino"), help="the backend")
    p.set_defaults(func=_cmd_validate)

    p = add(
        "olive-config",
        "write an Olive package config (Olive's passes plus MpqcCompile) for olive run --package-config",
    )
    p.add_argument("-o", "--output", required=True, help="the .json file to write")
    p.set_defaults(func=_cmd_olive_config)

    p = add("targets", "list the built-in targets and the precisions each runs")
    p.set_defaults(func=_cmd_targets)

    p = add("zoo", "the built-in model zoo: list, or train one on digits and export it")
    zoo = p.add_subparsers(dest="zoo_command", required=False, parser_class=_Parser, metavar="SUBCOMMAND")
    t = zoo.add_parser(
        "train",
        help="train a zoo model deterministically and export it",
        parents=[PARENTS["json"]],
        formatter_class=_Help,
    )
    t.add_argument("name", help="zoo model name (see mpqc zoo list)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs (default: the model's own)")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument(
        "--output-dir",
        default=None,
        help="folder for the ONNX file (default: the package's models/, which updates the manifest)",
    )
    zoo.add_parser("list", help="list zoo models", parents=[PARENTS["json"]], formatter_class=_Help)
    p.set_defaults(func=_cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 2 for bad input, 130 when interrupted, 1 for a bug)."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # libraries' warnings are not the user's business on stderr
    try:
        args.func(args)
        sys.stdout.flush()
    except MpqcError as exc:
        print(f"mpqc: error: {first_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        where = getattr(args, "resume", None) or getattr(args, "output", None) or "mpqc_out"
        keep = f"; finished work is kept in {where} (--resume {where})" if args.command == "compile" else ""
        print(f"mpqc: interrupted{keep}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mpqc ... | head`: the reader left, which is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("MPQC_DEBUG"):
            raise
        print(
            f"mpqc: internal error: {type(exc).__name__}: {first_line(exc)} (MPQC_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
