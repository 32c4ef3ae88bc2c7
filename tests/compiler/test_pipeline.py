"""mpqc compile end to end on the default model (short QAT settings to keep the suite fast)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time

import pytest

from mpqc.api import compile as compile_model
from mpqc.cli import main
from mpqc.compiler import CompileOptions
from mpqc.errors import MpqcError
from mpqc.workload import Workload

FAST = CompileOptions(
    max_qat_runs=2, qat_epochs=1, probe_epochs=1, workers=1, levels=3, progress=False, qat_policy="probed"
)


@pytest.fixture(autouse=True, scope="module")
def _own_cache(tmp_path_factory):
    """A cache of this module's own: runs here must not find probes from elsewhere."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MPQC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


BUDGET = "latency=0.35x"


@pytest.fixture(scope="module")
def run(tmp_path_factory, default_model):
    out = tmp_path_factory.mktemp("compile") / "out"
    return compile_model(default_model, BUDGET, "bitserial", None, out, FAST)


def test_outputs_and_budget_honesty(run):
    for name in ("model.onnx", "scheme.json", "report.json", "report.html", "compile.log"):
        assert (run.output / name).stat().st_size > 0
    report = json.loads((run.output / "report.json").read_text())
    bound = report["budget"]["bounds"]["latency"]["value"]
    assert report["winner"]["cost"]["latency_s"] <= bound
    assert (
        report["winner"]["achieved"][0].startswith("latency: ")
        and "x int8 (budget 0.35x)" in report["winner"]["achieved"][0]
    )
    assert report["measure"]["name"] == "top1" and report["splits"]["disjoint"]
    assert report["winner"]["fits"] and "objective" in report
    assert run.qat_runs <= FAST.max_qat_runs
    decisions = [c["decision"] for c in report["candidates"] if c["fits"]]
    assert all(decisions) and any(d.startswith("qat") for d in decisions)
    for candidate in report["candidates"]:
        if candidate["fits"]:
            assert candidate["ptq"] is not None and candidate["predicted"] is not None


def test_the_default_policy_runs_no_probes_and_shows_its_intervals(tmp_path, default_model):
    from dataclasses import replace

    result = compile_model(
        default_model, BUDGET, "bitserial", None, tmp_path / "p", replace(FAST, qat_policy="predicted")
    )
    report = result.report
    assert report["probes"] is None and not (result.output / "probes.json").exists()
    assert report["predictor"]["runs"] == result.qat_runs > 0
    assert 0 <= report["predictor"]["kappa"] <= 1
    for c in report["candidates"]:
        if c["fits"] and c["predicted"] is not None:
            low, high = c["predicted"]["interval"]
            assert low <= c["predicted"]["necessity"] <= high
            assert c["predicted"]["decision"] in ("qat", "ptq", "uncertain")
    page = (result.output / "report.html").read_text()
    assert "95% interval" in page


def test_predicted_split_measures_each_fitting_candidate_at_float_weights(tmp_path, default_model):
    from dataclasses import replace

    result = compile_model(
        default_model, BUDGET, "bitserial", None, tmp_path / "s", replace(FAST, qat_policy="predicted-split")
    )
    report = result.report
    assert report["predictor"]["runs"] == result.qat_runs > 0 and set(report["predictor"]["shares"]) == {
        "weights",
        "activations",
    }
    fitting = [c for c in report["candidates"] if c["fits"]]
    assert fitting and all(c["activations_ptq"] is not None and c["predicted"] is not None for c in fitting)
    assert all(c["activations_ptq"] is None for c in report["candidates"] if not c["fits"])


def test_short_qat_trains_every_fitting_candidate_short_and_its_best_in_full(tmp_path, default_model):
    from dataclasses import replace

    options = replace(FAST, qat_policy="short-qat", qat_epochs=2, short_epochs=1, max_qat_runs=1)
    result = compile_model(default_model, "latency=0.5x", "bitserial", None, tmp_path / "h", options)
    fitting = [c for c in result.candidates if c.fits]
    assert len(fitting) >= 2 and all(c.short_qat is not None for c in fitting)
    assert result.qat_runs == len(fitting) + 1
    full = [c for c in fitting if "go on to 2 epochs" in c.decision]
    assert len(full) == 1 and full[0].short_qat == max(c.short_qat or 0.0 for c in fitting)
    assert all(c["short_qat"] is not None for c in result.report["candidates"] if c["fits"])
    # the full run went on from the short one (tests/test_jobs.py: the same bytes as a replay)
    assert "QAT (2 epochs each, 1 going on from their short run)" in (result.output / "compile.log").read_text()


def test_the_emitted_model_is_the_winner_and_runs(run, prepared_default):
    work = Workload.build(prepared_default)
    payload = (run.output / "model.onnx").read_bytes()
    assert work.evaluate(payload, "validation").quality == pytest.approx(run.winner.quality)
    assert work.evaluate(payload, "test").quality == pytest.approx(run.report["winner"]["test"])


def test_report_html_is_self_contained_with_three_plots(run):
    page = (run.output / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3
    assert "budget latency" not in page or "ms" in page
    for encoded in images:
        png = base64.b64decode(encoded)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "http" not in page.replace("https://", "").split("<body>")[0]  # nothing fetched from the network
    assert "Pareto front" in page and "QAT necessity heat map" in page


def test_same_seed_same_scheme(run, tmp_path, default_model):
    again = compile_model(default_model, BUDGET, "bitserial", None, tmp_path / "again", FAST)
    assert (again.output / "scheme.json").read_bytes() == (run.output / "scheme.json").read_bytes()


def test_infeasible_budget_names_the_cheapest_cost_and_writes_nothing(tmp_path, default_model):
    out = tmp_path / "none"
    with pytest.raises(MpqcError, match=r"cannot be met on bitserial: the cheapest reachable scheme costs .*x int8"):
        compile_model(default_model, "latency=0.1x", "bitserial", None, out, FAST)
    assert not out.exists()


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--budget", "speed=2"], "cannot read budget"),
        (["--budget", "latency=0.5x,latency=0.9x"], "twice"),
        (["--qat-tolerance", "nan"], "finite"),
        (["--workers", "-3"], "--workers"),
        (["--space", "w4a4", "--target", "ort-cpu"], "does not run w4a4"),
        (["--target", "tpu"], "unknown target"),
        (["missing.onnx"], "not found"),
        (["--budget", "size=1parsec"], "unknown unit"),
        (["--max-drop", "-1"], "--max-drop must be between 0 and 100"),
        (["--max-drop", "nan"], "--max-drop must be between 0 and 100"),
        (["--budget", "latency=0.1x", "--max-drop", "1"], "cannot be met on bitserial"),
    ],
)
def test_bad_inputs_fail_before_any_work(tmp_path, capsys, argv, match):
    out = tmp_path / "out"
    start = time.perf_counter()
    assert main(["compile", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not out.exists() and time.perf_counter() - start < 10


def test_refuses_a_used_folder_and_a_changed_resume(run, tmp_path, default_model):
    with pytest.raises(MpqcError, match="--resume"):
        compile_model(default_model, BUDGET, "bitserial", None, run.output, FAST)
    with pytest.raises(MpqcError, match="different budget"):
        compile_model(default_model, "latency=0.4x", "bitserial", None, run.output, FAST, resume=True)


def test_resume_after_a_killed_run(run, tmp_path, default_model):
    out = tmp_path / "killed"
    code = (
        "from mpqc.api import compile as compile_model\nfrom mpqc.compiler import CompileOptions\n"
        f"compile_model({str(default_model)!r}, {BUDGET!r}, 'bitserial', None, {str(out)!r}, "
        "CompileOptions(max_qat_runs=2, qat_epochs=1, probe_epochs=1, workers=1, levels=3, progress=False, "
        "qat_policy='probed'))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 300
    while not (out / "probes.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert (out / "sensitivity.json").exists() and (out / "probes.json").exists()
    assert not (out / "scheme.json").exists()
    resumed = compile_model(default_model, BUDGET, "bitserial", None, out, FAST, resume=True)
    log = (out / "compile.log").read_text()
    assert "PTQ sensitivity (run folder)" in log and "probes (run folder)" in log
    assert (resumed.output / "scheme.json").read_bytes() == (run.output / "scheme.json").read_bytes()


def test_max_drop_picks_the_cheapest_candidate_within_the_drop(tmp_path, default_model):
    from dataclasses import replace

    options = replace(FAST, max_drop=0.02, qat_policy="never")
    result = compile_model(default_model, None, "bitserial", None, tmp_path / "drop", options)
    report = result.report
    assert report["budget"]["text"] == "latency=1xfloat" and report["max_drop_points"] == 2
    floor = report["float"]["validation"] - 0.02
    inside = [c for c in result.candidates if c.fits and c.quality >= floor - 1e-12]
    assert result.winner in inside and result.winner.quality >= floor
    assert result.winner.cost.latency_s == min(c.cost.latency_s for c in inside)
    front = report["pareto"]
    assert front and all(a["latency"] < b["latency"] and a["quality"] < b["quality"] for a, b in zip(front, front[1:]))
    assert any(c["summary"] == "float" for c in report["candidates"])  # the search reaches the float end too
    assert "minimise latency subject to validation quality" in report["objective"]
