"""The command line: every bad input is one line on stderr, exit status 2, and no file
at -o; the commands of the README work."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import builders as b
import numpy as np
import pytest

from mpqc.cli import main


def _fails(capsys, argv, out_path, match: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("mpqc: error: "), err
    assert match in err, err
    assert not out_path.exists()
    assert not list(out_path.parent.glob(f".{out_path.name}*")), "temp file left behind"


@pytest.fixture()
def out(tmp_path):
    return tmp_path / "out.onnx"


def test_missing_file(capsys, out, tmp_path):
    _fails(capsys, ["quantize", str(tmp_path / "nope.onnx"), "-o", str(out)], out, "not found")


def test_not_onnx(capsys, out, tmp_path):
    path = tmp_path / "text.onnx"
    path.write_text("hello, I am not a model\n" * 20)
    _fails(capsys, ["quantize", str(path), "-o", str(out)], out, "ONNX")


def test_truncated_onnx(capsys, out, tmp_path, default_model):
    data = default_model.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    _fails(capsys, ["quantize", str(path), "-o", str(out)], out, "ONNX")


def test_no_quantizable_layer(capsys, out, tmp_path):
    path = tmp_path / "relu.onnx"
    path.write_bytes(b.no_layers().SerializeToString())
    _fails(
        capsys,
        ["quantize", str(path), "-o", str(out), "--data", _npz(tmp_path, x=np.ones((4, 4), np.float32))],
        out,
        "no quantizable layer",
    )


def test_unknown_op_is_reported_by_name_and_the_rest_quantized(capsys, out, tmp_path):
    path = tmp_path / "odd.onnx"
    path.write_bytes(b.unknown_op().SerializeToString())
    data = _npz(tmp_path, x=np.random.RandomState(0).randn(8, 1, 4, 4).astype(np.float32))
    assert main(["quantize", str(path), "--data", data, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Hardmax (node odd)" in text and out.exists()


def test_scheme_with_unknown_layers(capsys, out, tmp_path):
    scheme = tmp_path / "s.json"
    scheme.write_text(json.dumps({"layers": {"no_such_layer": "w4a8"}}))
    _fails(capsys, ["quantize", "--scheme", str(scheme), "-o", str(out)], out, "unknown layer")


@pytest.mark.parametrize("scheme", ["w3a8", "w16a8"])
def test_bits_outside_the_set(capsys, out, scheme):
    _fails(capsys, ["quantize", "--scheme", scheme, "-o", str(out)], out, "w8a8, w4a8")


def test_bits_outside_the_set_in_json(capsys, out, tmp_path):
    scheme = tmp_path / "s.json"
    scheme.write_text(json.dumps({"default": {"w_bits": 3}}))
    _fails(capsys, ["quantize", "--scheme", str(scheme), "-o", str(out)], out, "2, 4, 8 or float")


def test_data_of_the_wrong_shape(capsys, out, tmp_path):
    data = _npz(tmp_path, input=np.zeros((4, 1, 8, 8), np.float32))
    _fails(capsys, ["quantize", "--data", data, "-o", str(out)], out, "shape")


def test_nan_in_calibration_data(capsys, out, tmp_path):
    array = np.zeros((4, 1, 16, 16), np.float32)
    array[1, 0, 3, 3] = np.inf
    _fails(capsys, ["quantize", "--data", _npz(tmp_path, input=array), "-o", str(out)], out, "NaN or Inf")


def test_bad_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["quantize", "--calib-method", "magic"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_quantize_prints_side_by_side_and_writes(capsys, out):
    assert main(["quantize", "--scheme", "w4a8", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "float" in text and "w4a8" in text and "weight bytes" in text and f"wrote {out}" in text
    assert out.exists()


def test_analyze_json(capsys):
    assert main(["analyze", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["layers"]) == 6 and payload["total_macs"] > 0


def test_eval_with_labels_and_reference(capsys, out, default_model):
    assert main(["quantize", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", "digits", "--reference", str(default_model), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["top1"] > 0.95 and payload["agreement"] > 0.95


def test_console_script_exit_status_and_single_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mpqc", "quantize", str(tmp_path / "x.onnx")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def _npz(tmp_path, **arrays) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def test_compile_offers_every_policy_compile_knows():
    """The parser spells the choices out (importing the compiler would slow `mpqc --help`)."""
    from mpqc.cli import build_parser
    from mpqc.compiler.options import POLICIES

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    compile_parser = commands.choices["compile"]
    (policy,) = [a for a in compile_parser._actions if "--qat-policy" in a.option_strings]
    assert tuple(policy.choices) == POLICIES
