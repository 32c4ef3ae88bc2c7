"""`ort-cpu`: ONNX Runtime on this CPU, measured.

A scheme is lowered to what ONNX Runtime executes here: every layer with quantized weights
and activations runs as an int8 kernel (QLinearConv/QGemm; sub-8-bit levels held in int8),
weight-only layers dequantize their weights and run in float, float layers run in float.
ONNX Runtime's own graph optimizer then decides fusions, layouts and the Quantize/
Dequantize nodes left at the borders of integer regions.

Costs come from ONNX Runtime's profiler on a few uniform and alternating variants of the
model: every optimized node's median time, keyed by what it is (a layer's kernel, an
activation's Quantize/Dequantize, another op). A scheme's latency is predicted by asking
ONNX Runtime for the optimized graph of the lowered scheme (no run) and adding its nodes'
measured times, plus the per-run overhead; boundary costs therefore follow the neighbours.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from mpqc.targets.base import CostModel, Precision, Target

from mpqc.analysis import QUANTIZABLE_OPS, Analysis
from mpqc.calibrate import Calibration
from mpqc.scheme import LayerPrecision, Scheme

__all__ = ["OrtCpuTarget", "OrtCpuCostModel", "Measurement", "cache_dir"]

_TOKEN = re.compile(r"(_token_\d+)+$")
_ACT_QDQ = re.compile(r"^(?P<tensor>.+?)(_container)?(_a(?P<bits>\d))?_(Q|DQ)$")
#: Variants profiled to cover every node kind a lowered scheme can contain.
_VARIANTS: tuple[tuple[str, Precision | None], ...] = (
    ("float", (None, None)),
    ("w8a8", (8, 8)),
    ("w4a4", (4, 4)),
    ("w2a2", (2, 2)),
    ("wfa8", (None, 8)),
    ("w8af", (8, None)),
    ("w4af", (4, None)),
    ("w2af", (2, None)),
    ("alternate-int8", None),
    ("alternate-float", None),
)


def cache_dir() -> Path:
    return Path(os.environ.get("MPQC_CACHE_DIR", Path.home() / ".cache" / "mpqc"))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Measurement:
    median_s: float
    iqr_s: float
    runs: int

    def to_json(self) -> dict[str, float]:
        return {"median_ms": self.median_s * 1e3, "iqr_ms": self.iqr_s * 1e3, "runs": self.runs}


@dataclass(frozen=True)
class OrtCpuTarget(Target):
    name: str = "ort-cpu"
    description: str = "ONNX Runtime CPU execution provider on this machine, measured (int8 kernels only)"
    threads: int = 1
    warmup: int = 10
    repeats: int = 50

    def supports(self, op_type: str, precision: Precision) -> bool:
        return op_type in QUANTIZABLE_OPS

    @property
    def measurable(self) -> bool:
        return True

    # -- running ---------------------------------------------------------------------------
    def session(self, payload: bytes, profile: bool = False, optimized_path: str | None = None) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"mpqc_profile_{os.getpid()}")
        if optimized_path:
            options.optimized_model_filepath = optimized_path
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])

    def measure(self, payload: bytes, feed: dict[str, np.ndarray], repeats: int | None = None) -> Measurement:
        """Median and interquartile range of wall time per run (batch of `feed`)."""
        session = self.session(payload)
        for _ in range(self.warmup):
            session.run(None, feed)
        times = []
        for _ in range(repeats or self.repeats):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        q = statistics.quantiles(times, n=4)
        return Measurement(statistics.median(times), q[2] - q[0], len(times))

    def measure_interleaved(
        self, payloads: list[bytes], feed: dict[str, np.ndarray], rounds: int | None = None
    ) -> list[Measurement]:
        """Run the models in turn, round after round, so that the machine's drift (large on
        shared VMs) hits all of them alike; median and IQR per model."""
        sessions = [self.session(p) for p in payloads]
        for session in sessions:
            for _ in range(self.warmup):
                session.run(None, feed)
        times: list[list[float]] = [[] for _ in sessions]
        for _ in range(rounds or self.repeats):
            for i, session in enumerate(sessions):
                start = time.perf_counter()
                session.run(None, feed)
                times[i].append(time.perf_counter() - start)
        result = []
        for values in times:
            q = statistics.quantiles(values, n=4)
            result.append(Measurement(statistics.median(values), q[2] - q[0], len(values)))
        return result

    def profile_nodes(self, payload: bytes, feed: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
        """Median seconds of every optimized node under ONNX Runtime's profiler."""
        session = self.session(payload, profile=True)
        for _ in range(self.warmup + self.repeats):
            session.run(None, feed)
        path = session.end_profiling()
        try:
            events = json.loads(Path(path).read_text())
        finally:
            Path(path).unlink(missing_ok=True)
        durations: dict[tuple[str, str], list[float]] = defaultdict(list)
        for event in events:
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
                key = (event["args"].get("op_name", "?"), event["name"][: -len("_kernel_time")])
                durations[key].append(event["dur"] * 1e-6)
        runs = self.warmup + self.repeats
        return {k: statistics.median(v[-self.repeats :]) for k, v in durations.items() if len(v) >= runs // 2}

    def lowered_nodes(self, payload: bytes) -> list[tuple[str, str]]:
        """(op_type, name) of every node ONNX Runtime will execute, without running it."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "optimized.onnx")
            self.session(payload, optimized_path=path)
            model = onnx.load(path, load_external_data=False)
        return [(node.op_type, node.name) for node in model.graph.node]

    # -- cost model ------------------------------------------------------------------------
    def cost_model(self, prepared: Any, feed: dict[str, np.ndarray], use_cache: bool = True) -> OrtCpuCostModel:
        """Profile the variants (or read them from the cache) for this model and input."""
        key = self._cache_key(prepared, feed)
        path = cache_dir() / "ort-cpu" / f"{key}.json"
        if use_cache and path.exists():
            try:
                return OrtCpuCostModel.from_json(self, prepared, json.loads(path.read_text()), cached=True)
            except (ValueError, KeyError):
                pass  # a stale or foreign file: measure again
        model = OrtCpuCostModel(self, prepared, cache_key=key)
        payloads = model.variant_payloads()
        labels = [label for label, _ in _VARIANTS]
        profiles = {label: self.profile_nodes(payload, feed) for label, payload in zip(labels, payloads)}
        walls = self.measure_interleaved(payloads, feed, rounds=2 * self.repeats)
        model.set_profiles(profiles, {label: wall.median_s for label, wall in zip(labels, walls)})
        model.spreads = {label: wall.iqr_s for label, wall in zip(labels, walls)}
        from mpqc.modelio import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(model.to_json(), indent=1, sort_keys=True).encode())
        return model

    def _cache_key(self, prepared: Any, feed: dict[str, np.ndarray]) -> str:
        digest = hashlib.sha256(prepared.proto.SerializeToString(deterministic=True)).hexdigest()
        parts = [
            digest,
            self.name,
            f"threads={self.threads}",
            f"repeats={self.repeats}",
            f"ort={ort.__version__}",
            _cpu_model(),
            json.dumps({k: list(v.shape) for k, v in sorted(feed.items())}),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _variant(analysis: Analysis, label: str, precision: Precision | None) -> Scheme:
    names = analysis.layer_names
    if precision is not None:
        return Scheme.uniform(names, LayerPrecision(*precision))
    first = LayerPrecision(8, 8) if label == "alternate-int8" else LayerPrecision(None, None)
    second = LayerPrecision(None, None) if label == "alternate-int8" else LayerPrecision(8, 8)
    return Scheme({name: (first if i % 2 == 0 else second) for i, name in enumerate(names)})


@dataclass
class OrtCpuCostModel(CostModel):
    """Measured costs of one model on `ort-cpu`.

    Keeps each variant's profiled node times and its unprofiled wall time; node costs are
    the profiled times scaled so each variant's nodes add up to its wall time (the profiler
    inflates graphs by different amounts), then the median over variants per node."""

    target: OrtCpuTarget
    prepared: Any
    cache_key: str = ""
    cached: bool = False
    profiles: dict[str, dict[str, float]] = field(default_factory=dict)
    walls: dict[str, float] = field(default_factory=dict)
    #: interquartile range of each variant's measured wall time
    spreads: dict[str, float] = field(default_factory=dict)
    #: derived: node key -> seconds; op_type -> seconds (fallback); variant -> layer -> seconds
    nodes: dict[str, float] = field(default_factory=dict)
    op_median: dict[str, float] = field(default_factory=dict)
    variant_layers: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.analysis = self.prepared.analysis
        self._owner = _Attribution(self.analysis, self.prepared)

    # -- building --------------------------------------------------------------------------
    def lower(self, scheme: Scheme) -> bytes:
        from onnx_ir import serde

        from mpqc.api import emit_qdq

        calibration = Calibration.placeholder(self.analysis.activation_tensors)
        result = emit_qdq(self.prepared, scheme, calibration, int8_kernels=True)
        return serde.serialize_model(result.model).SerializeToString()

    def variant_payloads(self) -> list[bytes]:
        return [self.lower(_variant(self.analysis, label, precision)) for label, precision in _VARIANTS]

    def set_profiles(self, profiles: dict[str, dict[tuple[str, str], float]], walls: dict[str, float]) -> None:
        self.profiles = {
            label: {f"{op}|{name}": t for (op, name), t in nodes.items()} for label, nodes in profiles.items()
        }
        self.set_walls(walls)

    def set_walls(self, walls: dict[str, float]) -> None:
        """Re-derive node costs from new wall times of the variants (measured alongside
        whatever is compared with the predictions, so machine drift cancels)."""
        self.walls = dict(walls)
        observed: dict[str, list[float]] = defaultdict(list)
        by_op: dict[str, list[float]] = defaultdict(list)
        self.variant_layers = {}
        for label, nodes in self.profiles.items():
            scale = self.walls[label] / max(math.fsum(nodes.values()), 1e-12)
            shares: dict[str, float] = defaultdict(float)
            for raw, seconds in nodes.items():
                op, name = raw.split("|", 1)
                observed[_key(op, name)].append(seconds * scale)
                by_op[op].append(seconds * scale)
                owner = self._owner.layer_of(op, name)
                if owner is not None:
                    shares[owner] += seconds * scale
            self.variant_layers[label] = dict(shares)
        self.nodes = {k: statistics.median(v) for k, v in sorted(observed.items())}
        self.op_median = {k: statistics.median(v) for k, v in sorted(by_op.items())}

    # -- queries ---------------------------------------------------------------------------
    def layer_cost(self, layer: str, precision: Precision) -> float:
        label = _label(precision)
        table = self.variant_layers.get(label) or self.variant_layers.get(_lowered_label(precision), {})
        return table.get(layer, 0.0)

    def latency(self, scheme: Scheme) -> float:
        return self.predict(scheme)[0]

    def predict(self, scheme: Scheme) -> tuple[float, int]:
        """Predicted seconds, and how many nodes no variant showed (priced at their op's median)."""
        total, fallbacks = 0.0, 0
        for op, name in self.target.lowered_nodes(self.lower(scheme)):
            seconds = self.nodes.get(_key(op, name))
            if seconds is None:
                fallbacks += 1
                seconds = self.op_median.get(op, 0.0)
            total += seconds
        return total, fallbacks

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 5,
            "cache_key": self.cache_key,
            "profiles": self.profiles,
            "walls": self.walls,
            "spreads": self.spreads,
        }

    @classmethod
    def from_json(cls, target: OrtCpuTarget, prepared: Any, data: dict[str, Any], cached: bool) -> OrtCpuCostModel:
        if data.get("version") != 5:
            raise ValueError("cache version")
        model = cls(target, prepared, cache_key=data["cache_key"], cached=cached)
        model.profiles = {k: dict(v) for k, v in data["profiles"].items()}
        model.set_walls(dict(data["walls"]))
        model.spreads = dict(data["spreads"])
        return model


def _key(op: str, name: str) -> str:
    return f"{op}|{_TOKEN.sub('', name)}"


def _label(precision: Precision) -> str:
    w, a = precision
    return "float" if w is None and a is None else f"w{'f' if w is None else w}a{'f' if a is None else a}"


def _lowered_label(precision: Precision) -> str:
    """The profiled variant a precision lowers like (same kernels and quantizer kinds)."""
    w, a = precision
    if w is not None and a is not None:
        return "w8a8" if a == 8 else "w4a4"
    if w is not None:
        return f"w{w}af"
    return "wfa8" if a is not None else "float"


class _Attribution:
    """Which layer an optimized node belongs to: its kernel (by name, or by the tensor an
    NCHWc kernel is named after), its weight and bias dequantization, its input quantizers."""

    def __init__(self, analysis: Analysis, prepared: Any) -> None:
        self.layers = {layer.name for layer in analysis.layers}
        self.by_tensor: dict[str, str] = {}
        graph = prepared.model.graph
        for layer in analysis.layers:
            self.by_tensor[layer.output] = layer.name
            self.by_tensor.setdefault(layer.activation, layer.name)
        for node in graph:
            if node.op_type == "Relu" and node.inputs and node.inputs[0] is not None:
                owner = self.by_tensor.get(node.inputs[0].name or "")
                if owner is not None:
                    self.by_tensor[node.outputs[0].name or ""] = owner
        self._weights = re.compile(r"^(?P<layer>.+)_(w\d|bias)_(DQ|guard)$")

    def layer_of(self, op: str, name: str) -> str | None:
        base = _TOKEN.sub("", name)
        if base in self.layers:
            return base
        if base.endswith("_nchwc"):
            return self.by_tensor.get(base[: -len("_nchwc")])
        match = self._weights.match(base)
        if match and match.group("layer") in self.layers:
            return match.group("layer")
        match = _ACT_QDQ.match(base)
        if match and op in ("QuantizeLinear", "DequantizeLinear") and match.group("bits"):
            return self.by_tensor.get(match.group("tensor"))
        return None
