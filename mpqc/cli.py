"""The `mpqc` command: a thin layer over the Python API.

Bad input prints one line on stderr and exits with status 2; no output file is left
behind (outputs are written atomically, last)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mpqc.errors import MpqcError, first_line

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, status 2
        print(f"mpqc: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _default_model() -> Path:
    from mpqc.models.train import zoo_path

    return zoo_path()


def _model_arg(value: str | None) -> Path:
    return _default_model() if value is None else Path(value)


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if getattr(args, "json", False) else text)


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _cmd_analyze(args: argparse.Namespace) -> None:
    import mpqc

    analysis = mpqc.analyze(_model_arg(args.model))
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
    text = _table(rows)
    text += (
        f"\n{len(analysis.layers)} quantizable layers, {analysis.total_macs:,} MACs, {analysis.total_params:,} params"
    )
    for note in analysis.notes:
        text += f"\nnote: {note}"
    _emit(args, analysis.to_json(), text)


def _cmd_quantize(args: argparse.Namespace) -> None:
    import mpqc

    model = _model_arg(args.model)
    output = Path(args.output) if args.output else Path(f"{model.stem}_{Path(str(args.scheme)).stem}.onnx")
    result = mpqc.quantize(
        model,
        args.scheme,
        args.data,
        calib_method=args.calib_method,
        weight_method=args.weight_method,
        calib_samples=args.calib_samples,
        reduce_range=not args.full_range_weights,
        output=output,
    )
    f, q = result.float_eval, result.quant_eval
    assert f is not None and q is not None
    rows = [("", "float", result.scheme.summary())]
    rows.append(("top-1", _fmt_pct(f.top1), _fmt_pct(q.top1)))
    rows.append(("top-1 agreement", "100.00%", _fmt_pct(q.agreement)))
    rows.append(("output SQNR", "-", f"{q.sqnr_db:.1f} dB" if q.sqnr_db is not None else "-"))
    rows.append(("output cosine", "1.0000", f"{q.cosine:.4f}" if q.cosine is not None else "-"))
    rows.append(("weight bytes", f"{result.float_weight_bytes:,}", f"{result.weight_bytes:,}"))
    text = _table(rows) + f"\nevaluated on {q.samples} samples; quantized in {result.quantize_seconds:.2f} s"
    for note in result.notes:
        text += f"\nnote: {note}"
    text += f"\nwrote {result.output}"
    _emit(args, result.to_json(), text)


def _cmd_eval(args: argparse.Namespace) -> None:
    import mpqc

    evaluation = mpqc.evaluate(Path(args.model), args.data, Path(args.reference) if args.reference else None)
    rows = [("metric", "value"), ("samples", str(evaluation.samples)), ("top-1", _fmt_pct(evaluation.top1))]
    if args.reference:
        rows += [
            ("top-1 agreement", _fmt_pct(evaluation.agreement)),
            ("output SQNR", "-" if evaluation.sqnr_db is None else f"{evaluation.sqnr_db:.1f} dB"),
            ("output cosine", "-" if evaluation.cosine is None else f"{evaluation.cosine:.4f}"),
        ]
    _emit(args, evaluation.to_json(), _table(rows))


def _cmd_export(args: argparse.Namespace) -> None:
    from mpqc.export import export_factory, parse_shape

    path = export_factory(args.factory, parse_shape(args.input_shape), args.output)
    _emit(args, {"output": str(path)}, f"wrote {path}")


def _cmd_profile(args: argparse.Namespace) -> None:
    from mpqc.profile import profile

    report = profile(_model_arg(args.model), args.target, args.data, threads=args.threads, use_cache=not args.no_cache)
    unit, factor = ("ms", 1e3)
    rows = [["layer", "op", "MACs", *[f"{p} {unit}" for p in report.precisions]]]
    for row in report.layers:
        rows.append(
            [
                row.name,
                row.op_type,
                "?" if row.macs is None else f"{row.macs:,}",
                *[_num(row.seconds[p] * factor) for p in report.precisions],
            ]
        )
    rows.append(
        ["whole model (predicted)", "", "", *[_num(report.totals[p].latency_s * factor) for p in report.precisions]]
    )
    if report.measured_s:
        rows.append(
            [
                "whole model (measured)",
                "",
                "",
                *[_num(report.measured_s[p] * factor) if p in report.measured_s else "-" for p in report.precisions],
            ]
        )
        rows.append(
            [
                "  spread (IQR)",
                "",
                "",
                *[_num(report.spread_s[p] * factor) if p in report.spread_s else "-" for p in report.precisions],
            ]
        )
    rows.append(["weight KB", "", "", *[f"{report.totals[p].weight_bytes / 1024:.1f}" for p in report.precisions]])
    rows.append(
        [
            "peak activation KB",
            "",
            "",
            *[f"{report.totals[p].peak_activation_bytes / 1024:.1f}" for p in report.precisions],
        ]
    )
    rows.append(["GBOPs", "", "", *[f"{report.totals[p].bops / 1e9:.3f}" for p in report.precisions]])
    text = _table(rows) + f"\ntarget {report.target}: {report.description}"
    if report.threads is not None:
        text += f"; {report.threads} thread(s), batch 1, {'from cache' if report.cached else 'measured now'}"
    _emit(args, report.to_json(), text)


def _cmd_targets(args: argparse.Namespace) -> None:
    from mpqc.targets import builtin_targets

    targets = builtin_targets()
    rows = [("target", "description")] + [(t.name, t.description) for t in targets]
    _emit(args, {"targets": [{"name": t.name, "description": t.description} for t in targets]}, _table(rows))


def _num(value: float) -> str:
    return "-" if value == float("inf") else f"{value:.4f}"


def _cmd_compile(args: argparse.Namespace) -> None:
    from mpqc.compile import CompileOptions, compile_model

    if args.resume and args.output and Path(args.output) != Path(args.resume):
        raise MpqcError("give either -o or --resume (the run folder to continue), not two different folders")
    output = args.resume or args.output or "mpqc_out"
    options = CompileOptions(
        qat_tolerance=args.qat_tolerance / 100,
        max_qat_runs=args.max_qat_runs,
        qat_epochs=args.epochs,
        probe_epochs=args.probe_epochs,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        progress=not args.json,
    )
    model = Path(args.model) if args.model else None
    result = compile_model(model, args.budget, args.target, args.data, output, options, resume=bool(args.resume))
    winner = result.winner
    rows = [
        ("", "value"),
        ("scheme", winner.scheme.summary()),
        ("recovery", winner.recovery.upper()),
        ("validation top-1", f"{_fmt_pct(winner.accuracy)} (float {_fmt_pct(result.report['float_top1'])})"),
        (
            "test top-1",
            f"{_fmt_pct(result.report['winner'].get('test_top1'))} "
            f"(float {_fmt_pct(result.report.get('float_test_top1'))})",
        ),
        ("QAT runs", f"{result.qat_runs} (limit {options.max_qat_runs})"),
        ("candidates", str(len(result.pareto))),
        ("seconds", f"{result.seconds:.1f}"),
    ]
    text = _table(rows) + f"\nwrote {result.output}/model.onnx, scheme.json, report.json, report.html, compile.log"
    text += f"\nreport: {result.output / 'report.html'}"
    _emit(args, {"output": str(result.output), "winner": result.report["winner"], "qat_runs": result.qat_runs}, text)


def _cmd_qat(args: argparse.Namespace) -> None:
    from mpqc.qat import QatConfig, qat

    model = _model_arg(args.model)
    output = Path(args.output) if args.output else Path(f"{model.stem}_{Path(str(args.scheme)).stem}_qat.onnx")
    config = QatConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        loss=args.loss,
        progress=not args.json,
    )
    result = qat(model, args.scheme, args.data, config=config, output=output)
    p, q = result.ptq_eval, result.qat_eval
    rows = [
        ("", "PTQ", "QAT"),
        ("top-1 (ONNX Runtime)", _fmt_pct(p.top1), _fmt_pct(q.top1)),
        ("top-1 (torch, trained graph)", "-", _fmt_pct(result.torch_top1)),
        ("output SQNR vs float", f"{p.sqnr_db:.1f} dB", f"{q.sqnr_db:.1f} dB"),
    ]
    text = _table(rows)
    if result.necessity is not None:
        text += f"\nQAT necessity N = {100 * result.necessity:+.2f} points"
    text += (
        f"\n{result.scheme.summary()}, {args.epochs} epoch(s) with {result.loss} loss, "
        f"{result.seconds_per_epoch:.2f} s/epoch, {result.seconds:.1f} s in all\nwrote {result.output}"
    )
    _emit(args, result.to_json(), text)


def _cmd_necessity(args: argparse.Namespace) -> None:
    from mpqc.necessity_run import necessity, profile_table, validation_table

    bits = tuple(int(b) for b in args.bits.split(",") if b.strip()) if args.bits else (2, 4, 8)
    model = _model_arg(args.model)
    result = necessity(
        model,
        args.data,
        bits=bits,
        probe_epochs=args.probe_epochs,
        epochs=args.epochs,
        validate=args.validate,
        tolerance=args.qat_tolerance / 100,
        workers=args.workers,
        seed=args.seed,
        report=args.report,
        model_name=model.name,
    )
    text = profile_table(result)
    if result.validation is not None:
        text += "\n" + validation_table(result)
    text += "\n" + "\n".join(result.notes)
    if args.report:
        text += f"\nreport in {args.report}"
    _emit(args, result.to_json(), text)


def _cmd_zoo(args: argparse.Namespace) -> None:
    from mpqc.models.train import manifest, train
    from mpqc.models.zoo import DEFAULT_MODEL, ZOO

    if args.zoo_command == "train":
        result = train(args.name, args.epochs, args.seed, Path(args.output_dir) if args.output_dir else None)
        _emit(
            args,
            {"name": result.name, "path": str(result.path), "test_top1": result.test_top1},
            f"trained {result.name}: float test top-1 {_fmt_pct(result.test_top1)} (ONNX Runtime); wrote {result.path}",
        )
        return
    shipped = manifest()
    rows = [("model", "input", "float top-1", "description")]
    for name, entry in ZOO.items():
        top1 = shipped.get(name, {}).get("float_test_top1")
        rows.append(
            (
                name + (" (default)" if name == DEFAULT_MODEL else ""),
                "x".join(map(str, entry.input_shape)),
                "not built" if top1 is None else _fmt_pct(float(top1)),
                entry.description,
            )
        )  # type: ignore[arg-type]
    _emit(args, {"models": shipped}, _table(rows))


def _shape(shape: Sequence[Any] | None) -> str:
    return "?" if shape is None else "x".join("?" if d is None else str(d) for d in shape)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpqc", description="Mixed-precision quantization compiler for ONNX models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return cmd

    p = add("analyze", "list the quantizable layers with shapes, MACs and params")
    p.add_argument("model", nargs="?", help="ONNX model (default: the built-in digits_cnn)")
    p.set_defaults(func=_cmd_analyze)

    p = add("quantize", "quantize with a scheme, calibrate (PTQ), evaluate in ONNX Runtime, write a QDQ model")
    p.add_argument("model", nargs="?", help="ONNX model (default: the built-in digits_cnn)")
    p.add_argument("--scheme", default="w8a8", help="w8a8, w4a8, w4a4, w2a8, float, wXaY, or a scheme .json")
    p.add_argument("--data", default=None, help="digits (default), a .npz file, or module:function")
    p.add_argument("--calib-method", default="minmax", choices=("minmax", "percentile", "mse"))
    p.add_argument(
        "--weight-method",
        default="auto",
        choices=("auto", "minmax", "mse"),
        help="auto: min-max at 8 bits, MSE-optimal below",
    )
    p.add_argument("--calib-samples", type=int, default=None, help="use only the first N calibration samples")
    p.add_argument(
        "--full-range-weights",
        action="store_true",
        help="8-bit weights in [-128, 127] (for VNNI/Arm); default [-64, 63], safe on AVX2",
    )
    p.add_argument("-o", "--output", help="output QDQ model (default: MODEL_SCHEME.onnx here)")
    p.set_defaults(func=_cmd_quantize)

    p = add("eval", "top-1 in ONNX Runtime; with --reference, fidelity against the float model")
    p.add_argument("model", help="ONNX model (float or QDQ)")
    p.add_argument("--data", default=None, help="digits (default), a .npz file, or module:function")
    p.add_argument("--reference", help="float model for label-free agreement, SQNR and cosine")
    p.set_defaults(func=_cmd_eval)

    p = add("export", "export a PyTorch module to ONNX")
    p.add_argument("factory", help="module:factory returning a torch.nn.Module")
    p.add_argument("--input-shape", required=True, help="example input shape, e.g. 1,3,32,32")
    p.add_argument("-o", "--output", required=True, help="output ONNX file")
    p.set_defaults(func=_cmd_export)

    p = add("compile", "necessity-aware mixed-precision search under a budget; emits the best QDQ model")
    p.add_argument("model", nargs="?", help="ONNX model (default: the built-in digits_cnn)")
    p.add_argument(
        "--budget",
        default="latency=0.5x",
        help="latency=2.5ms, size=40KB, memory=256KB, bops=1.2G, or relative to int8: latency=0.6x",
    )
    p.add_argument("--target", default="bitserial", help="ort-cpu, bitserial, mcu, or a target .toml")
    p.add_argument("--data", default=None, help="digits (default), a .npz with labels, or module:function")
    p.add_argument("-o", "--output", default=None, help="run folder (default: mpqc_out)")
    p.add_argument("--resume", default=None, help="continue an interrupted run in this folder")
    p.add_argument("--qat-tolerance", type=float, default=1.0, help="points of accuracy QAT must add to be run")
    p.add_argument("--max-qat-runs", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3, help="QAT epochs for candidates")
    p.add_argument("--probe-epochs", type=int, default=1, help="QAT epochs for the necessity probes")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: cores, at most 4)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads when measuring ort-cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="redo sensitivity and probes even if cached")
    p.set_defaults(func=_cmd_compile)

    p = add("qat", "quantization-aware training of one scheme from an ONNX model; evaluated in ONNX Runtime")
    p.add_argument("model", nargs="?", help="ONNX model (default: the built-in digits_cnn)")
    p.add_argument("--scheme", default="w4a4", help="shorthand or scheme .json (as for quantize)")
    p.add_argument("--data", default=None, help="digits (default), a .npz file, or module:function")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--loss",
        default="auto",
        choices=("auto", "labels", "distill"),
        help="auto: labels if the data has them, else distillation from the float model",
    )
    p.add_argument("-o", "--output", help="output QDQ model (default: MODEL_SCHEME_qat.onnx here)")
    p.set_defaults(func=_cmd_qat)

    p = add("necessity", "layer-wise QAT-necessity profile, the oracle, and its validation")
    p.add_argument("model", nargs="?", help="ONNX model (default: the built-in digits_cnn)")
    p.add_argument("--data", default=None, help="digits (default), a .npz file with labels, or module:function")
    p.add_argument("--bits", default="2,4,8", help="probe bit widths (weights at each; activations below 8)")
    p.add_argument("--validate", type=int, default=0, help="measure K random held-out schemes against the oracle")
    p.add_argument("--probe-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="QAT epochs for validation schemes")
    p.add_argument("--qat-tolerance", type=float, default=1.0, help="points of accuracy QAT must add to be needed")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: cores, at most 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", default=None, help="folder for necessity.json, .txt and PNG plots")
    p.set_defaults(func=_cmd_necessity)

    p = add("profile", "per-layer latency at each precision on a target, and the whole model's")
    p.add_argument("model", nargs="?", help="ONNX model (default: the built-in digits_cnn)")
    p.add_argument("--target", default="ort-cpu", help="ort-cpu (measured), bitserial, mcu, or a target .toml")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (ort-cpu)")
    p.add_argument("--data", default=None, help="a sample input source (digits, .npz, module:function)")
    p.add_argument("--no-cache", action="store_true", help="measure again even if a cached table exists")
    p.set_defaults(func=_cmd_profile)

    p = add("targets", "list the built-in targets")
    p.set_defaults(func=_cmd_targets)

    p = add("zoo", "the built-in model zoo: list, or train one on digits and export it")
    zoo = p.add_subparsers(dest="zoo_command", required=False, parser_class=_Parser)
    t = zoo.add_parser("train", help="train a zoo model deterministically and export it")
    t.add_argument("name")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--output-dir", default=None, help="default: the package's models/ (updates the manifest)")
    t.add_argument("--json", action="store_true")
    zoo.add_parser("list", help="list zoo models").add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        args.func(args)
    except MpqcError as exc:
        print(f"mpqc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mpqc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("MPQC_DEBUG"):
            raise
        first = first_line(exc)
        print(
            f"mpqc: internal error: {type(exc).__name__}: {first} (MPQC_DEBUG=1 shows the traceback)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
