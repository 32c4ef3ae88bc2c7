"""Shared by the benchmarks: the ResNet-18 they train once and cache, a model by name (kit or
zoo), and latency timing."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

BUILD = Path(__file__).resolve().parent.parent / "build" / "benchmarks"


def resnet18_path(epochs: int = 2) -> Path:
    """CIFAR-shaped ResNet-18 trained briefly on digits (3x32x32); cached in build/."""
    from mpqc.models import zoo
    from mpqc.models.train import train

    path = BUILD / "resnet18_cifar.onnx"
    if not path.exists():
        zoo.ZOO["resnet18_cifar"] = zoo.ZooEntry(
            "resnet18_cifar", zoo.resnet18_cifar, (1, 3, 32, 32), epochs, 1e-3, "benchmark only"
        )
        train("resnet18_cifar", output_dir=BUILD)
    return path


def single_thread_session(payload: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def interleaved_latency(
    sessions: dict[str, ort.InferenceSession], feed: dict[str, np.ndarray], repeats: int = 200, warmup: int = 20
) -> tuple[dict[str, tuple[float, float]], dict[str, list[float]]]:
    """Median and interquartile spread (ms) of batch-1 latency, sessions run in turn so
    that machine drift hits all of them alike, each timed run after an untimed one of the
    same session (the steady state, as `mpqc.targets.ort_cpu.interleave` times)."""
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            session.run(None, feed)
            start = time.perf_counter()
            session.run(None, feed)
            times[name].append((time.perf_counter() - start) * 1e3)
    result = {}
    for name, values in times.items():
        q = statistics.quantiles(values, n=4)
        result[name] = (statistics.median(values), q[2] - q[0])
    return result, times


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median of per-round ratios: robust to the machine's drift between rounds."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def best_of(runs: int, func) -> tuple[float, object]:
    """Fastest wall time of `runs` calls after one untimed warm-up call (imports, caches)."""
    result = func()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def digits(path: Path, split: str):
    """The digits split a zoo model takes, shaped for it."""
    from mpqc.workload import Workload

    return Workload.build(path).splits.get(split)


def top1(payload: bytes, dataset) -> float:
    """Top-1 of a model (bytes) on a labelled dataset, in ONNX Runtime."""
    from mpqc.modelio import load_model
    from mpqc.runtime import Runner, make_session
    from mpqc.signature import input_specs

    model = load_model(__import__("onnx").load_from_string(payload))
    outputs = Runner(make_session(payload), input_specs(model)).run(dataset)
    return float(np.mean(outputs[0].argmax(-1) == dataset.labels))


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def model_and_data(name: str) -> tuple[Path, dict[str, Path | None]]:
    """A kit model (its calibration and test files, `make realkit`) or a zoo model (built-in
    data), by name: `data` and `test_data` as `Workload.build` and `compile` take them."""
    from mpqc.models import zoo_path

    from mpqc.realkit import kit_models

    for kit in kit_models():
        if kit.name == name:
            return kit.model, {"data": kit.calib, "test_data": kit.test}
    return zoo_path(name), {"data": None, "test_data": None}
