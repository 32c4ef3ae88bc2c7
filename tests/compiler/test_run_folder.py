"""The run folder and the cache never lie: corrupted files are reported and recomputed, the
cache is keyed on content (not paths), --no-cache works, Ctrl-C leaves a resumable folder,
and the answer does not depend on the number of workers."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from terminal import ctrl_c_as_in_a_terminal

from mpqc.api import compile as compile_model
from mpqc.compiler import CompileOptions
from mpqc.data import digits_split

FAST = CompileOptions(
    max_qat_runs=2, qat_epochs=1, probe_epochs=1, workers=1, levels=3, progress=False, qat_policy="probed"
)
BUDGET = "latency=0.35x"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MPQC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, default_model):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("MPQC_CACHE_DIR", str(cache))
    out = tmp_path_factory.mktemp("runs") / "done"
    result = compile_model(default_model, BUDGET, "bitserial", None, out, FAST)
    mp.undo()
    return result


def _resume(folder, default_model, capsys):
    result = compile_model(default_model, BUDGET, "bitserial", None, folder, FAST, resume=True)
    return result, capsys.readouterr().err


@pytest.mark.parametrize(
    "name,content",
    [
        ("sensitivity.json", "{}"),
        ("sensitivity.json", '{"reference_ptq": 0.9, "loss": {}'),
        ("probes.json", "[]"),
        ("probes.json", '{"float_quality": "x"}'),
    ],
)
def test_corrupt_files_are_reported_and_recomputed(finished, tmp_path, default_model, capsys, name, content):
    folder = tmp_path / "copy"
    shutil.copytree(finished.output, folder)
    (folder / name).write_text(content)
    result, err = _resume(folder, default_model, capsys)
    assert f"{name} is corrupt" in err and "recomputing" in err
    assert (folder / "scheme.json").read_bytes() == (finished.output / "scheme.json").read_bytes()
    json.loads((folder / name).read_text())  # written again, whole


def test_corrupt_candidates_and_jobs_are_recomputed(finished, tmp_path, default_model, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(finished.output, folder)
    for path in (folder / "candidates").glob("*.json"):
        path.write_text("[1]")
    models = sorted((folder / "jobs").glob("*.onnx"))
    assert models, "the predicted policy trained at least one candidate"
    models[0].write_bytes(models[0].read_bytes()[:100])  # a model cut short by a kill
    result, err = _resume(folder, default_model, capsys)
    assert "candidates/" in err and "corrupt" in err
    assert (folder / "scheme.json").read_bytes() == (finished.output / "scheme.json").read_bytes()
    assert result.winner.quality == pytest.approx(finished.winner.quality)


def _labelled_npz(path, labels_seed: int | None = None) -> None:
    from scipy.ndimage import zoom

    images, labels = digits_split("train")
    images, labels = images[:300], labels[:300]
    x = zoom(images, (1, 2, 2), order=1, grid_mode=True, mode="nearest")[:, None].astype(np.float32)
    if labels_seed is not None:
        labels = np.random.RandomState(labels_seed).permutation(labels)
    np.savez(path, input=x, labels=labels)


def test_the_cache_is_keyed_on_content_not_on_the_path(tmp_path, default_model):
    data = tmp_path / "data.npz"
    _labelled_npz(data)
    never = CompileOptions(qat_policy="never", levels=2, progress=False, workers=1)
    first = compile_model(default_model, BUDGET, "bitserial", str(data), tmp_path / "a", never)
    again = compile_model(default_model, BUDGET, "bitserial", str(data), tmp_path / "b", never)
    assert "PTQ sensitivity (cache)" in (tmp_path / "b" / "compile.log").read_text()
    assert again.winner.quality == first.winner.quality
    _labelled_npz(data, labels_seed=1)  # same path, other labels: the old results no longer hold
    changed = compile_model(default_model, BUDGET, "bitserial", str(data), tmp_path / "c", never)
    assert "PTQ sensitivity (measured)" in (tmp_path / "c" / "compile.log").read_text()
    assert changed.report["float"]["validation"] < 0.5  # shuffled labels: the numbers say so


def test_no_cache_neither_reads_nor_writes(tmp_path, default_model):
    options = CompileOptions(qat_policy="never", levels=2, progress=False, workers=1, use_cache=False)
    compile_model(default_model, BUDGET, "bitserial", None, tmp_path / "run", options)
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.rglob("*.json"))


@pytest.mark.slow
def test_worker_count_does_not_change_the_answer(finished, tmp_path, default_model):
    from dataclasses import replace

    options = replace(FAST, workers=2)
    two = compile_model(default_model, BUDGET, "bitserial", None, tmp_path / "two", options)
    assert (two.output / "scheme.json").read_bytes() == (finished.output / "scheme.json").read_bytes()
    assert two.report["executor"]["starts"] == 1  # the same two workers for every stage

    def numbers(report):
        return [(c["key"], c["ptq"], c["qat"], c["decision"]) for c in report["candidates"]]

    assert numbers(two.report) == numbers(finished.report)
    assert (two.output / "model.onnx").read_bytes() == (finished.output / "model.onnx").read_bytes()


@pytest.mark.slow
def test_ctrl_c_prints_one_line_exits_130_and_can_resume(tmp_path, default_model):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mpqc",
            "compile",
            "--json",
            "--workers",
            "2",
            "--budget",
            BUDGET,
            "--max-qat-runs",
            "2",
            "--epochs",
            "1",
            "-o",
            str(out),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    # interrupt as soon as the first job is stored: mid-run, with something to resume (a
    # fixed wait after it let a fast machine finish first: digits compiles in seconds)
    deadline = time.time() + 300
    while not any((out / "jobs").glob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and err.startswith("mpqc: interrupted") and f"--resume {out}" in err, err
    resumed = compile_model(
        default_model,
        BUDGET,
        "bitserial",
        None,
        out,
        CompileOptions(max_qat_runs=2, qat_epochs=1, probe_epochs=1, workers=2, levels=6, progress=False),
        resume=True,
    )
    assert (resumed.output / "model.onnx").exists()
