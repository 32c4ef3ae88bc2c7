"""The bad-input corpus: every case is a command a user could type with one thing wrong.
Each must end with status 2, exactly one line on stderr (no traceback), and the file
system at -o exactly as it was: nothing written, nothing half-written, nothing clobbered."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import builders as b
import numpy as np
import pytest

from mpqc.cli import main

Case = Callable[[Path], tuple[list[str], str]]
CASES: dict[str, Case] = {}


def case(name: str, match: str = "") -> Callable[[Callable[[Path], list[str]]], None]:
    def add(build: Callable[[Path], list[str]]) -> None:
        CASES[name] = lambda tmp: (build(tmp), match)

    return add


def model(tmp: Path) -> str:
    from mpqc.models import zoo_path

    return str(zoo_path())


def npz(tmp: Path, name: str = "data.npz", n: int = 24, **extra: object) -> str:
    arrays: dict[str, object] = {"input": np.random.RandomState(0).rand(n, 1, 16, 16).astype(np.float32)}
    arrays.update(extra)
    path = tmp / name
    np.savez(path, **arrays)
    return str(path)


def raw(tmp: Path, name: str, content: bytes) -> str:
    path = tmp / name
    path.write_bytes(content)
    return str(path)


def out(tmp: Path) -> str:
    return str(tmp / "out" / "q.onnx")


def quantize(tmp: Path, *args: str) -> list[str]:
    return ["quantize", *args, "-o", out(tmp)]


def compile_(tmp: Path, *args: str) -> list[str]:
    return ["compile", *args, "-o", str(tmp / "out" / "run")]


# -- model files ------------------------------------------------------------------------------
case("model-missing", "not found")(lambda t: quantize(t, str(t / "nope.onnx")))
case("model-directory", "directory")(lambda t: quantize(t, str(t)))
case("model-empty", "")(lambda t: quantize(t, raw(t, "empty.onnx", b"")))
case("model-text", "ONNX")(lambda t: quantize(t, raw(t, "t.onnx", b"hello, I am not a model\n" * 20)))
case("model-random-bytes", "ONNX")(lambda t: quantize(t, raw(t, "r.onnx", np.random.RandomState(1).bytes(5000))))
case("model-truncated", "ONNX")(lambda t: quantize(t, raw(t, "cut.onnx", Path(model(t)).read_bytes()[:2000])))
case("model-device", "not a regular file")(lambda t: quantize(t, "/dev/null"))
case("model-no-layers", "no quantizable layer")(
    lambda t: quantize(t, raw(t, "relu.onnx", b.no_layers().SerializeToString()))
)
case("model-invalid-graph", "invalid ONNX")(lambda t: quantize(t, raw(t, "bad.onnx", b.dangling().SerializeToString())))
case("model-external-outside", "outside")(lambda t: quantize(t, raw(t, "ext.onnx", b.external_outside())))
case("model-external-missing", "missing")(lambda t: quantize(t, raw(t, "ext2.onnx", b.external_missing())))
case("analyze-missing", "not found")(lambda t: ["analyze", str(t / "nope.onnx")])
case("profile-missing", "not found")(lambda t: ["profile", str(t / "nope.onnx")])
case("compile-model-missing", "not found")(lambda t: compile_(t, str(t / "nope.onnx")))
case("qat-model-missing", "not found")(lambda t: ["qat", str(t / "nope.onnx"), "-o", out(t)])
case("eval-model-missing", "not found")(lambda t: ["eval", str(t / "nope.onnx")])

# -- data -------------------------------------------------------------------------------------
case("data-missing", "not found")(lambda t: quantize(t, "--data", str(t / "nope.npz")))
case("data-directory", "folder")(lambda t: quantize(t, "--data", str(t)))
case("data-not-zip", "cannot read data file")(lambda t: quantize(t, "--data", raw(t, "d.npz", b"plain text")))
case("data-pickled", "cannot read data file")(
    lambda t: quantize(t, "--data", npz(t, "p.npz", input=np.array([{"a": 1}], dtype=object)))
)
case("data-wrong-name", "no array for model input")(
    lambda t: quantize(t, "--data", raw(t, "w.npz", _npz_bytes(image=np.zeros((4, 1, 16, 16), np.float32))))
)
case("data-wrong-shape", "samples of shape")(
    lambda t: quantize(t, "--data", npz(t, "s.npz", input=np.zeros((12, 1, 8, 8), np.float32)))
)
case("data-wrong-rank", "dimensions")(lambda t: quantize(t, "--data", npz(t, "k.npz", input=np.zeros((12, 16, 16)))))
case("data-complex", "dtype")(
    lambda t: quantize(t, "--data", npz(t, "c.npz", input=np.zeros((12, 1, 16, 16), np.complex64)))
)
case("data-strings", "dtype")(lambda t: quantize(t, "--data", npz(t, "str.npz", input=np.array(["a", "b"]))))
case("data-nan", "NaN or Inf")(
    lambda t: quantize(t, "--data", npz(t, "n.npz", input=np.full((12, 1, 16, 16), np.nan, np.float32)))
)
case("data-inf", "NaN or Inf")(
    lambda t: quantize(t, "--data", npz(t, "i.npz", input=np.full((12, 1, 16, 16), np.inf, np.float32)))
)
case("data-empty", "no samples")(
    lambda t: quantize(t, "--data", npz(t, "e.npz", input=np.zeros((0, 1, 16, 16), np.float32)))
)
case("data-no-arrays", "no input arrays")(lambda t: quantize(t, "--data", raw(t, "none.npz", _npz_bytes())))
case("labels-wrong-length", "one per sample")(lambda t: quantize(t, "--data", npz(t, labels=np.arange(5))))
case("labels-3d", "labels must be")(lambda t: quantize(t, "--data", npz(t, labels=np.zeros((24, 2, 2), np.int64))))
case("labels-fractional", "fractional")(lambda t: quantize(t, "--data", npz(t, labels=np.full(24, 0.5))))
case("labels-negative", ">= 0")(lambda t: quantize(t, "--data", npz(t, labels=-np.ones(24, np.int64))))
case("labels-out-of-range", "out of range")(lambda t: quantize(t, "--data", npz(t, labels=np.full(24, 10))))
case("labels-bad-one-hot", "one-hot")(lambda t: quantize(t, "--data", npz(t, labels=np.ones((24, 10), np.int64))))
case("labels-strings", "labels have dtype")(lambda t: quantize(t, "--data", npz(t, labels=np.array(["x"] * 24))))
case("labels-one-hot-columns", "columns")(
    lambda t: quantize(t, "--data", npz(t, labels=np.eye(3, dtype=np.int64)[np.zeros(24, int)]))
)
case("user-code-raises", "your data function tests_data_source:raises raised ValueError")(
    lambda t: quantize(t, "--data", "tests_data_source:raises")
)
case("user-code-none", "returned NoneType")(lambda t: quantize(t, "--data", "tests_data_source:returns_none"))
case("user-code-int", "returned int")(lambda t: quantize(t, "--data", "tests_data_source:returns_int"))
case("user-code-not-callable", "not a function")(lambda t: quantize(t, "--data", "tests_data_source:NOT_CALLABLE"))
case("user-code-missing-function", "has no function")(lambda t: quantize(t, "--data", "tests_data_source:nope"))
case("user-code-missing-module", "cannot import data module")(lambda t: quantize(t, "--data", "no_such_mod:f"))
case("user-code-empty-module", "module:function")(lambda t: quantize(t, "--data", ":good"))
case("user-code-empty-function", "module:function")(lambda t: quantize(t, "--data", "tests_data_source:"))
case("user-code-mixed-keys", "different keys")(lambda t: quantize(t, "--data", "tests_data_source:mixed_keys"))
case("user-code-import-error", "No module named 'not_installed_anywhere'")(
    lambda t: quantize(t, "--data", "tests_data_source_broken:f")
)
case("data-unknown-spec", "unknown data")(lambda t: quantize(t, "--data", "imagenet"))
case("batch-axes-malformed", "__batch_axes__")(
    lambda t: quantize(t, "--data", npz(t, __batch_axes__=np.array(["input:1"])))
)
case("batch-axes-out-of-range", "out of range")(
    lambda t: quantize(t, "--data", npz(t, __batch_axes__=np.array(["input=7"])))
)
case("test-data-bad", "samples of shape")(
    lambda t: quantize(t, "--data", npz(t), "--test-data", npz(t, "bad.npz", input=np.zeros((3, 1, 4, 4), np.float32)))
)
case("val-data-with-digits", "fixed splits")(lambda t: quantize(t, "--val-data", npz(t)))
case("metric-top1-without-labels", "needs labels")(lambda t: quantize(t, "--data", npz(t), "--metric", "top1"))
case("metric-unknown", "invalid choice")(lambda t: quantize(t, "--metric", "bleu"))
case("eval-no-labels-no-reference", "no labels")(lambda t: ["eval", model(t), "--data", npz(t)])

# -- schemes ----------------------------------------------------------------------------------
for _label in ("w3a8", "w16a8", "w8a32", "int8", "w4a4x", "fp16"):
    case(f"scheme-{_label}", "unknown scheme")(lambda t, s=_label: quantize(t, "--scheme", s))
case("scheme-file-missing", "not found")(lambda t: quantize(t, "--scheme", str(t / "s.json")))
case("scheme-bad-json", "not valid JSON")(lambda t: quantize(t, "--scheme", raw(t, "s.json", b"{")))
case("scheme-not-utf8", "UTF-8")(lambda t: quantize(t, "--scheme", raw(t, "s.json", b'{"default": "w8a8\xe9"}')))
case("scheme-list", "JSON object")(lambda t: quantize(t, "--scheme", raw(t, "s.json", b"[1]")))
case("scheme-string", "JSON object")(lambda t: quantize(t, "--scheme", raw(t, "s.json", b'"w8a8"')))
case("scheme-unknown-layer", "unknown layer")(
    lambda t: quantize(t, "--scheme", _json(t, {"layers": {"no_such_layer": "w4a8"}}))
)
case("scheme-unknown-key", "unknown key")(lambda t: quantize(t, "--scheme", _json(t, {"defaults": "w8a8"})))
case("scheme-layer-unknown-key", "unknown key")(lambda t: quantize(t, "--scheme", _json(t, {"default": {"wbits": 4}})))
case("scheme-layers-not-object", "must be an object")(lambda t: quantize(t, "--scheme", _json(t, {"layers": [1]})))
for _bits in (3, "16", True, 1.5):
    case(f"scheme-bits-{_bits}", "2, 4, 8 or float")(
        lambda t, v=_bits: quantize(t, "--scheme", _json(t, {"default": {"w_bits": v}}))
    )
case("scheme-flag-not-bool", "true or false")(
    lambda t: quantize(t, "--scheme", _json(t, {"default": {"per_channel": 1}}))
)
case("scheme-form-unknown", "form must be")(lambda t: quantize(t, "--scheme", _json(t, {"default": {"form": "fp8"}})))
case("scheme-dynamic-w4", "w8a8d")(
    lambda t: quantize(t, "--scheme", _json(t, {"default": {"w_bits": 4, "a_bits": 8, "form": "dynamic"}}))
)
case("scheme-nbits-block", "power of two")(
    lambda t: quantize(
        t, "--scheme", _json(t, {"default": {"w_bits": 4, "a_bits": "float", "form": "nbits", "block": 24}})
    )
)

# -- budgets and targets ------------------------------------------------------------------------
for _budget, _match in [
    ("speed=2ms", "cannot read budget"),
    ("latency=2parsecs", "unknown unit"),
    ("latency", "cannot read budget"),
    ("", "empty"),
    (",", "empty term"),
    ("size=-1KB", "cannot read budget"),
    ("latency=nan", "cannot read budget"),
    ("latency=0x", "positive"),
    ("latency=0.5x,latency=0.9x", "twice"),
    ("latency=0.5xgpu", "unknown reference"),
    ("memory=3parsec", "unknown unit"),
    ("latency=0.01x", "cannot be met"),
    ("size=1KB", "cannot be met"),
    ("bops=1", "cannot be met"),
]:
    case(f"budget-{_budget or 'empty'}", _match)(lambda t, v=_budget: compile_(t, "--budget", v))
case("target-unknown", "unknown target")(lambda t: compile_(t, "--target", "tpu"))
case("target-file-missing", "not found")(lambda t: compile_(t, "--target", str(t / "chip.toml")))
case("target-bad-toml", "not valid TOML")(lambda t: compile_(t, "--target", raw(t, "c.toml", b"name = \n")))
case("target-not-utf8", "UTF-8")(lambda t: compile_(t, "--target", raw(t, "c.toml", b'name = "caf\xe9"\n')))
case("target-bad-kind", "kind")(lambda t: compile_(t, "--target", raw(t, "c.toml", b'name = "x"\nkind = "warp"\n')))
case("target-missing-table", "missing table")(
    lambda t: compile_(t, "--target", raw(t, "c.toml", b'name = "x"\nkind = "bitserial"\n'))
)
case("target-string-value", "compute.frequency_hz")(
    lambda t: compile_(
        t,
        "--target",
        raw(
            t,
            "c.toml",
            b'name = "x"\nkind = "bitserial"\n[compute]\nfrequency_hz = "fast"\nlanes = 8\nlayer_overhead_cycles = 0\n',
        ),
    )
)
case("target-bad-label", "cycles_per_mac.w3a8")(
    lambda t: compile_(
        t,
        "--target",
        raw(
            t,
            "c.toml",
            b'name = "x"\nkind = "mcu"\n[compute]\nfrequency_hz = 1\n'
            b"layer_overhead_cycles = 0\n[memory]\nflash_bytes = 1\n"
            b"sram_bytes = 1\n[cycles_per_mac]\nw3a8 = 1\n",
        ),
    )
)
case("space-not-run-by-target", "does not run w4a4")(lambda t: compile_(t, "--target", "ort-cpu", "--space", "w4a4"))
case("space-unknown-label", "unknown precision")(lambda t: compile_(t, "--space", "w8a8,int3"))
case("space-empty", "empty precision list")(lambda t: compile_(t, "--space", ","))
case("profile-space-not-run", "does not run w2a2")(lambda t: ["profile", "--target", "ort-cpu", "--space", "w2a2"])
case("profile-target-unknown", "unknown target")(lambda t: ["profile", "--target", "gpu"])

# -- numeric flags ------------------------------------------------------------------------------
for _flag, _value, _match in [
    ("--qat-tolerance", "nan", "finite"),
    ("--qat-tolerance", "inf", "finite"),
    ("--qat-tolerance", "-1", ">= 0"),
    ("--threads", "0", "threads"),
    ("--threads", "-1", "threads"),
    ("--workers", "0", "--workers"),
    ("--workers", "-3", "--workers"),
    ("--max-qat-runs", "-1", "--max-qat-runs"),
    ("--epochs", "0", "--epochs"),
    ("--probe-epochs", "0", "--probe-epochs"),
    ("--short-epochs", "0", "--short-epochs"),
    ("--top-k", "-1", "--top-k"),
    ("--seed", "-1", "--seed"),
    ("--calib-samples", "0", "--calib-samples"),
    ("--calib-samples", "-3", "--calib-samples"),
    ("--percentile", "0", "percentile"),
    ("--percentile", "101", "percentile"),
    ("--percentile", "nan", "percentile"),
    ("--threads", "two", "invalid int"),
    ("--qat-policy", "sometimes", "invalid choice"),
    ("--executor", "dask", "invalid choice"),
    ("--ray-address", "auto", "--ray-address needs --executor ray"),
    ("--job-retries", "-1", "--job-retries"),
]:
    case(f"compile{_flag}={_value}", _match)(lambda t, f=_flag, v=_value: compile_(t, f, v))
for _bits, _match in [("abc", "--bits"), (",", "--bits"), ("3", "--bits"), ("", "--bits"), ("2,16", "--bits")]:
    case(f"necessity-bits-{_bits or 'empty'}", _match)(lambda t, v=_bits: ["necessity", "--bits", v])
case("necessity-ray-address-without-ray", "--ray-address needs --executor ray")(
    lambda t: ["necessity", "--ray-address", "auto"]
)
case("necessity-validate-negative", "--validate")(lambda t: ["necessity", "--validate", "-1"])
case("necessity-report-is-file", "not a folder")(lambda t: ["necessity", "--report", raw(t, "f.txt", b"x")])
case("qat-lr-zero", "lr")(lambda t: ["qat", "--lr", "0", "-o", out(t)])
case("qat-lr-nan", "lr")(lambda t: ["qat", "--lr", "nan", "-o", out(t)])
case("qat-batch-size-zero", "batch size")(lambda t: ["qat", "--batch-size", "0", "-o", out(t)])
case("qat-epochs-negative", "epochs")(lambda t: ["qat", "--epochs", "-1", "-o", out(t)])
case("qat-loss-labels-without-labels", "labels")(lambda t: ["qat", "--data", npz(t), "--loss", "labels", "-o", out(t)])
case("export-bad-shape", "--input-shape")(lambda t: ["export", "m:f", "--input-shape", "1,a", "-o", out(t)])
case("export-zero-shape", "--input-shape")(lambda t: ["export", "m:f", "--input-shape", "0,3", "-o", out(t)])
case("export-no-colon", "module:factory")(lambda t: ["export", "nomodule", "--input-shape", "1,3", "-o", out(t)])
case("export-missing-module", "cannot import")(
    lambda t: ["export", "no_such_module:f", "--input-shape", "1,3", "-o", out(t)]
)
case("export-factory-raises", "your factory tests_data_source:raises raised")(
    lambda t: ["export", "tests_data_source:raises", "--input-shape", "1,3", "-o", out(t)]
)
case("export-not-a-module", "torch.nn.Module")(
    lambda t: ["export", "tests_data_source:returns_int", "--input-shape", "1,3", "-o", out(t)]
)
case("eval-split-unknown", "invalid choice")(lambda t: ["eval", model(t), "--split", "holdout"])

# -- output paths -------------------------------------------------------------------------------
case("output-is-directory", "is a directory")(lambda t: ["quantize", "-o", str(_dir(t))])
case("output-dev-null", "not a regular file")(lambda t: ["quantize", "-o", "/dev/null"])
case("output-under-proc", "cannot write")(lambda t: ["quantize", "-o", "/proc/mpqc_out.onnx"])
case("output-too-long", "too long")(lambda t: ["quantize", "-o", str(t / ("x" * 300 + ".onnx"))])
case("output-parent-is-file", "not a directory")(lambda t: ["quantize", "-o", str(Path(raw(t, "f", b"x")) / "q.onnx")])
case("output-fifo", "not a regular file")(lambda t: ["quantize", "-o", _fifo(t)])
case("output-symlink-to-directory", "is a directory")(lambda t: ["quantize", "-o", _link(t, _dir(t))])
case("qat-output-is-directory", "is a directory")(lambda t: ["qat", "-o", str(_dir(t))])
case("export-output-is-directory", "is a directory")(
    lambda t: ["export", "tests_data_source:batches", "--input-shape", "1,2", "-o", str(_dir(t))]
)
case("compile-output-is-file", "not a folder")(lambda t: ["compile", "-o", raw(t, "file", b"x")])
case("compile-output-not-empty", "not empty")(lambda t: ["compile", "-o", str(_dir(t, with_file=True))])
case("compile-resume-missing", "nothing to resume")(lambda t: ["compile", "--resume", str(_dir(t))])
case("compile-resume-and-output", "either -o or --resume")(
    lambda t: ["compile", "--resume", str(t / "a"), "-o", str(t / "b")]
)
case("compile-output-under-proc", "cannot")(lambda t: ["compile", "-o", "/proc/mpqc_run"])

# -- corrupted run folders (resume) ---------------------------------------------------------------
for _content, _name in [
    (b'{"format": 2, "inp', "truncated"),
    (b"[]", "list"),
    (b"{}", "empty"),
    (b'{"inputs": {}}', "old-format"),
    (b"\xff\xfe", "binary"),
]:
    case(f"resume-state-{_name}", "")(lambda t, c=_content: ["compile", "--resume", _run_with_state(t, c)])


def _npz_bytes(**arrays: object) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _json(tmp: Path, data: object) -> str:
    return raw(tmp, "scheme.json", json.dumps(data).encode())


def _dir(tmp: Path, with_file: bool = False) -> Path:
    folder = tmp / "folder"
    folder.mkdir(exist_ok=True)
    if with_file:
        (folder / "keep.txt").write_text("mine")
    return folder


def _fifo(tmp: Path) -> str:
    path = tmp / "fifo"
    os.mkfifo(path)
    return str(path)


def _link(tmp: Path, target: Path) -> str:
    link = tmp / "link.onnx"
    link.symlink_to(target)
    return str(link)


def _run_with_state(tmp: Path, content: bytes) -> str:
    folder = tmp / "run"
    folder.mkdir()
    (folder / "state.json").write_bytes(content)
    return str(folder)


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under `root` (not following links): kind and content."""
    found = {}
    for path in sorted(root.rglob("*")):
        mode = os.lstat(path).st_mode
        content = path.read_bytes() if stat.S_ISREG(mode) and path.stat().st_size < 50_000_000 else b""
        found[str(path.relative_to(root))] = (stat.S_IFMT(mode), content)
    return found


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MPQC_CACHE_DIR", str(tmp_path / "cache"))


def test_the_corpus_is_large():
    assert len(CASES) >= 120, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, capsys):
    work = tmp_path / "case"
    work.mkdir()
    argv, match = CASES[name](work)
    before = _snapshot(work)
    dev_null = os.stat("/dev/null")
    with pytest.raises(SystemExit) if match.startswith(("invalid choice", "invalid int")) else _noop():
        code = main(argv)
        assert code == 2, capsys.readouterr().err
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mpqc: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert match.lower() in err.lower(), err
    assert _snapshot(work) == before, "the file system changed"
    assert os.stat("/dev/null").st_mode == dev_null.st_mode


class _noop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False
