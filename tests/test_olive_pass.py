"""mpqc as an Olive pass: the example workflow runs in the real `olive-ai` package (the
`olive` extra, part of the test extras; CI sets MPQC_REQUIRE_EXTRAS so that a missing Olive
fails here) and bad options are refused by name before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest

try:
    import olive  # noqa: F401
except ImportError:
    if os.environ.get("MPQC_REQUIRE_EXTRAS"):
        pytest.fail("Olive is not installed (MPQC_REQUIRE_EXTRAS is set): pip install '.[olive]'")
    pytest.skip("the olive extra is not installed", allow_module_level=True)

from olive.hardware.accelerator import DEFAULT_CPU_ACCELERATOR
from olive.workflows import run as olive_run

from mpqc.backend import get_backend
from mpqc.backend_check import check_model
from mpqc.cli import main
from mpqc.errors import OptionError
from mpqc.olive_pass import MpqcCompile

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "olive_mpqc.json"


def _workflow(tmp_path: Path, **changes) -> dict:
    config = json.loads(EXAMPLE.read_text())
    config["input_model"]["model_path"] = str(ROOT / config["input_model"]["model_path"])
    config["output_dir"] = str(tmp_path / "olive_out")
    config["cache_dir"] = str(tmp_path / "olive_cache")  # Olive's default is ./.olive-cache
    config["passes"]["mpqc"].update(changes)
    return config


def test_the_example_workflow_runs_in_olive(tmp_path, capsys):
    assert main(["olive-config", "-o", str(tmp_path / "pkg.json")]) == 0
    package = json.loads((tmp_path / "pkg.json").read_text())
    assert package["passes"]["MpqcCompile"]["module_path"] == "mpqc.olive_pass.MpqcCompile"
    assert "OnnxStaticQuantization" in package["passes"]  # Olive's own passes stay usable
    config = _workflow(tmp_path, backend="tensorrt", budget="latency=1x")  # tensorrt: w8a8 or float
    olive_run(config, package_config=str(tmp_path / "pkg.json"))
    out = tmp_path / "olive_out"
    model = onnx.load(out / "model.onnx")
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    assert check_model(model, get_backend("tensorrt")) == []
    report = json.loads((out / "report.json").read_text())
    assert report["backend"]["name"] == "tensorrt" and report["winner"]["achieved"]
    assert (out / "report.html").is_file() and (out / "scheme.json").is_file()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"budgett": "latency=0.8x"}, r"unknown MpqcCompile option\(s\) \['budgett'\]"),
        ({"budget": "latency=fast"}, r"MpqcCompile.budget: cannot read budget term 'latency=fast'"),
        ({"target": "tpu"}, r"MpqcCompile.target: unknown target 'tpu'"),
        ({"backend": "cuda"}, r"MpqcCompile.backend: unknown backend 'cuda'"),
        ({"qat_policy": "sometimes"}, r"MpqcCompile.qat_policy: must be one of predicted, always"),
        ({"max_drop": 150}, r"MpqcCompile.max_drop: must be a number of points in \[0, 100\]"),
        ({"workers": 0}, r"MpqcCompile.workers: must be a whole number of at least 1"),
        ({"executor": "dask"}, r"MpqcCompile.executor: unknown executor 'dask'; use one of local, ray"),
        ({"ray_address": "auto"}, r"MpqcCompile.ray_address: --ray-address needs --executor ray"),
    ],
)
def test_bad_options_are_refused_by_name_before_any_work(changes, match):
    config = json.loads(EXAMPLE.read_text())["passes"]["mpqc"]
    config.pop("type")
    config.update(changes)
    with pytest.raises(OptionError, match=match):
        MpqcCompile.generate_config(DEFAULT_CPU_ACCELERATOR, config)
