"""`ort-cpu`: ONNX Runtime on this CPU, measured.

A scheme is lowered to what ONNX Runtime executes here: every layer with quantized weights
and activations runs as an int8 kernel (QLinearConv/QGemm; sub-8-bit levels held in int8),
weight-only layers dequantize their weights and run in float (a MatMul's per-channel
weights fuse into MatMulNBits), float layers run in float. MatMul/Gemm layers also run
dynamic int8 (`w8a8d`: DynamicQuantizeMatMul, activation range taken per run) and
block-wise 4-bit weights (`w4nb`: MatMulNBits, blocks of 32 along K, accuracy level 4 —
ONNX Runtime's default for the fused form: activations go to int8 inside the kernel).
ONNX Runtime's own graph optimizer then decides fusions, layouts and the Quantize/
Dequantize nodes left at the borders of integer regions.

Costs come from ONNX Runtime's profiler on the uniform variant of every precision in the
search space and two alternating variants (int8/float borders): every optimized node's
median time, keyed by what it is. A scheme's latency is predicted by asking ONNX Runtime
for the optimized graph of the lowered scheme (no run) and adding its nodes' measured
times; boundary costs therefore follow the neighbours. Only the variants the search
space uses are built, so no model ONNX Runtime cannot run is ever profiled.

The node costs are then refitted to the variants' wall times (`wall_fit`), with the nodes
each variant runs as prediction sees them; on small models (where timing a few dozen more
models costs seconds) random mixed schemes are timed with the variants and join the fit.
The profiler's microsecond resolution and per-node overhead otherwise miss
sub-millisecond models by up to a quarter, and its names for the optimizer's unnamed
nodes match nothing a prediction sees.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import random
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from mpqc.targets.base import CostInputs, CostModel, Measurement, Target
from mpqc.targets.wall_fit import fit_node_costs

from mpqc.analysis import QUANTIZABLE_OPS, Analysis, Layer, takes_form
from mpqc.cache import Cache, content_key
from mpqc.cpu import detect
from mpqc.emit import emit
from mpqc.errors import TargetError
from mpqc.frontend import Prepared
from mpqc.precision import FLOAT, W8A8, Precision
from mpqc.runtime import open_session
from mpqc.scheme import Scheme
from mpqc.stats import Calibration

__all__ = [
    "profile_variants",
    "OrtCpuTarget",
    "OrtCpuCostModel",
    "CPU_SPACE",
    "ALTERNATES",
    "LayerAttribution",
    "cpu_model",
    "runs_on_cpu",
    "variant_labels",
    "variant_scheme",
    "mixed_schemes",
    "time_variants",
    "interleave",
    "VariantCostModel",
]

_TOKEN = re.compile(r"(_token_\d+)+$")
_ACT_QDQ = re.compile(r"^(?P<tensor>.+?)(_container)?(_a(?P<bits>\d))?_(Q|DQ)$")
#: the precisions ort-cpu runs; every layer with quantized activations is an int8 kernel
#: there, so sub-8-bit activations and weights with activations buy neither speed nor size
CPU_SPACE = (W8A8, Precision.parse("w8a8d"), Precision.parse("w4nb"), Precision(8, None), Precision(4, None), FLOAT)
#: variants beside the uniform ones: borders between int8 and float layers
ALTERNATES = ("alternate-int8", "alternate-float")
_CACHE_VERSION = 8
#: mixed schemes timed with the variants (as many as fit in MIXED_SECONDS of timing, at
#: most MIXED_MAX; none below MIXED_MIN, where the refit was no better than the profile):
#: measured on the zoo's sub-millisecond models against held-out random schemes, 8 left
#: the worst error at 6-9%, 24 at 4-5%
MIXED_SECONDS = 10.0
MIXED_MIN, MIXED_MAX = 8, 24


def cpu_model() -> str:
    """The CPU's model name (profile caches are keyed on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runs_on_cpu(layer: Layer, precision: Precision) -> bool:
    """A layer kind the CPU runtimes quantize, in a form it takes (the dynamic and nbits
    forms only for MatMul/Gemm, and not inside If branches)."""
    return (
        layer.op_type in QUANTIZABLE_OPS
        and takes_form(layer, precision.form, precision.block)
        and not (layer.scope and precision.form != "qdq")
    )


class OrtCpuTarget(Target):
    """ONNX Runtime's CPU provider here, measured with `threads` threads (`warmup` and `repeats` runs)."""

    name = "ort-cpu"
    description = "ONNX Runtime CPU execution provider on this machine, measured"
    measures = True
    int8_kernels = True

    def __init__(self, threads: int = 1, warmup: int = 10, repeats: int = 50) -> None:
        if threads < 1 or warmup < 0 or repeats < 4:
            raise TargetError("ort-cpu needs threads >= 1, warmup >= 0 and repeats >= 4")
        self.threads, self.warmup, self.repeats = threads, warmup, repeats

    def precisions(self) -> tuple[Precision, ...]:
        return CPU_SPACE

    def runs(self, layer: Layer, precision: Precision) -> bool:
        return runs_on_cpu(layer, precision) and super().runs(layer, precision)

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "threads": self.threads,
            "cpu": cpu_model(),
            "isa": detect().describe(),
            "onnxruntime": ort.__version__,
        }

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
        return open_session(payload, options)

    def measure_interleaved(
        self, payloads: list[bytes], feed: dict[str, np.ndarray], rounds: int | None = None
    ) -> list[Measurement]:
        """Run the models in turn, round after round, so that the machine's drift (large on
        shared VMs) hits all of them alike; median and IQR per model."""
        sessions = [self.session(p) for p in payloads]
        runs = [functools.partial(session.run, None, feed) for session in sessions]
        return interleave(runs, self.warmup, rounds or self.repeats)

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
    def cost_model(self, inputs: CostInputs) -> OrtCpuCostModel:
        """Profile the variants (or read them from the cache) for this model and input."""
        prepared, feed = inputs.prepared, inputs.sample_feed()
        key = content_key(
            {
                "model": prepared.digest(),
                "threads": self.threads,
                "repeats": self.repeats,
                "ort": ort.__version__,
                "cpu": cpu_model(),
                "isa": detect().to_json(),
                "feed": {k: list(v.shape) for k, v in sorted(feed.items())},
                "variants": variant_labels(prepared.analysis, self),
            }
        )
        cache = Cache("ort-cpu", _CACHE_VERSION, enabled=inputs.use_cache)
        cached = cache.get(key, lambda data: OrtCpuCostModel.from_json(self, prepared, data, cached=True))
        if cached is not None:
            cached.use_feed(feed)
            return cached
        model = OrtCpuCostModel(self, prepared)
        model.use_feed(feed)
        labels = variant_labels(prepared.analysis, self)
        payloads = model.variant_payloads()
        profiles = profile_variants(
            "ort-cpu",
            _CACHE_VERSION,
            key,
            labels,
            payloads,
            lambda payload: self.profile_nodes(payload, feed),
            inputs,
            encode=lambda nodes: [[op, name, t] for (op, name), t in sorted(nodes.items())],
            decode=lambda data: {(str(op), str(name)): float(t) for op, name, t in data},
        )
        float_s = math.fsum(profiles["float"].values()) if "float" in profiles else math.inf
        timed, every, walls = time_variants("ort-cpu", model, labels, payloads, float_s, feed, inputs)
        # the fit needs every timed model's nodes as prediction sees them (the profiler
        # names the optimizer's unnamed nodes after their index instead)
        lowered = {label: self.lowered_nodes(payload) for label, payload in zip(timed, every)}
        model.set_profiles(profiles, {label: wall.median_s for label, wall in zip(timed, walls)}, lowered)
        model.spreads = {label: wall.iqr_s for label, wall in zip(labels, walls)}
        cache.put(key, model.to_json())
        return model


def profile_variants(
    name: str,
    version: int,
    key: str,
    labels: Sequence[str],
    payloads: Sequence[bytes],
    profile: Callable[[bytes], Any],
    inputs: CostInputs,
    encode: Callable[[Any], Any] = lambda v: v,
    decode: Callable[[Any], Any] = lambda v: v,
) -> dict[str, Any]:
    """Each variant's per-node profile, each a job stored in the cache as it finishes (keyed
    on the whole profile's key, so on this CPU, runtime and model), so an interrupted profile
    resumes at the variant it stopped at. Variants run one at a time on this machine: it is
    the one being priced, and two timings at once would disturb each other."""
    cache = Cache(f"{name}-variant", version, enabled=inputs.use_cache)
    profiles: dict[str, Any] = {}
    start = time.perf_counter()
    for i, (label, payload) in enumerate(zip(labels, payloads)):
        variant_key = content_key({"profile": key, "variant": label})
        stored = cache.get(variant_key, decode)
        if stored is not None:
            profiles[label] = stored
            continue
        inputs.say(f"{name}: profiling variant {i + 1}/{len(labels)} ({label}), {time.perf_counter() - start:.0f}s")
        profiles[label] = profile(payload)
        cache.put(variant_key, encode(profiles[label]))
    return profiles


def interleave(runs: Sequence[Callable[[], object]], warmup: int, rounds: int) -> list[Measurement]:
    """Each run `warmup` times, then all in turn, round after round, so that the machine's
    drift (large on shared VMs) hits all of them alike; median and IQR per run. Each timed
    run follows an untimed one of the same model: the steady state a deployed model runs
    in. Timed right after another model, a sub-millisecond model runs 2-12% slower (its
    weights evicted from the cache), by an amount that depends on its neighbour."""
    for run in runs:
        for _ in range(warmup):
            run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            run()
            start = time.perf_counter()
            run()
            times[i].append(time.perf_counter() - start)
    result = []
    for values in times:
        q = statistics.quantiles(values, n=4)
        result.append(Measurement(statistics.median(values), q[2] - q[0], len(values)))
    return result


def variant_labels(analysis: Analysis, target: Target) -> list[str]:
    """The uniform variant of every precision some layer runs (a form no layer takes would
    only repeat the float variant), and the alternating ones."""
    used = [p.label for p in CPU_SPACE if any(target.runs(layer, p) for layer in analysis.layers)]
    return used + list(ALTERNATES)


def mixed_schemes(analysis: Analysis, target: Target, count: int) -> list[Scheme]:
    """`count` random schemes (a seed of their own, so that a benchmark's random schemes
    are not these), each layer a precision the target runs for it."""
    rng = random.Random("ort-cpu mixed schemes")
    choices = [(layer.name, target.search_space(layer)) for layer in analysis.layers]
    return [Scheme({name: rng.choice(options) for name, options in choices}) for _ in range(count)]


def mixed_count(float_profile_s: float, rounds: int) -> int:
    """How many mixed schemes to time: as many as MIXED_SECONDS allows (each timed run
    follows an untimed one; the float variant's profiled sum stands for its wall time)."""
    fit = int(MIXED_SECONDS / max(2 * rounds * float_profile_s, 1e-9))
    return min(fit, MIXED_MAX) if fit >= MIXED_MIN else 0


def variant_scheme(analysis: Analysis, label: str, target: Target) -> Scheme:
    """A precision on every layer that runs it (float elsewhere), or an alternating scheme."""
    if label not in ALTERNATES:
        precision = Precision.parse(label)
        return Scheme({x.name: precision if target.runs(x, precision) else FLOAT for x in analysis.layers})
    names = analysis.layer_names
    first, second = (W8A8, FLOAT) if label == "alternate-int8" else (FLOAT, W8A8)
    return Scheme({name: (first if i % 2 == 0 else second) for i, name in enumerate(names)})


class VariantCostModel(CostModel):
    """What both measured CPU cost models share: the profiled variants' tables (`profiles`,
    `walls`, `spreads`), the sample they run, measuring schemes, and the cache form.
    Subclasses set `target` and `prepared` and implement `lower` and `set_walls`."""

    measures = True
    target: Any
    prepared: Prepared
    profiles: dict[str, dict[str, float]]
    walls: dict[str, float]
    spreads: dict[str, float]
    #: how many mixed schemes were timed with the variants, and their times (`mixed-<i>`)
    mixed: int = 0
    mixed_walls: dict[str, float]
    _feed: dict[str, np.ndarray] | None

    def lower(self, scheme: Scheme) -> bytes:
        raise NotImplementedError

    def set_walls(self, walls: dict[str, float]) -> None:
        raise NotImplementedError

    def timed(self) -> list[tuple[str, bytes]]:
        """(label, lowered model) of everything the costs are derived from, the variants
        then the mixed schemes: time them alongside the schemes to compare and pass the
        times to `set_walls`, so that the machine's drift cancels."""
        variants = list(zip(variant_labels(self.prepared.analysis, self.target), self.variant_payloads()))
        return variants + [(f"mixed-{i}", self.lower(s)) for i, s in enumerate(self.mixed_schemes())]

    def variant_payloads(self) -> list[bytes]:
        """The lowered variants, in the order of `variant_labels`."""
        analysis = self.prepared.analysis
        return [
            self.lower(variant_scheme(analysis, label, self.target)) for label in variant_labels(analysis, self.target)
        ]

    def mixed_schemes(self) -> list[Scheme]:
        return mixed_schemes(self.prepared.analysis, self.target, self.mixed)

    def _take_walls(self, walls: dict[str, float]) -> None:
        """Keep `walls` apart: the variants' and the mixed schemes' (one for each)."""
        self.walls = {k: v for k, v in walls.items() if not k.startswith("mixed-")}
        self.mixed_walls = {k: v for k, v in walls.items() if k.startswith("mixed-")}
        if set(self.mixed_walls) != {f"mixed-{i}" for i in range(self.mixed)}:
            raise ValueError(f"{self.mixed} mixed schemes but {len(self.mixed_walls)} times")

    def use_feed(self, feed: dict[str, np.ndarray]) -> None:
        """The sample `measure` runs with (the one the variants were profiled with)."""
        self._feed = feed

    def measure(self, schemes: Sequence[Scheme]) -> list[Measurement]:
        if self._feed is None:
            raise TargetError(f"{self.target.name}: no sample input to measure with")
        return self.target.measure_interleaved([self.lower(s) for s in schemes], self._feed)

    def measured_uniform(self) -> dict[str, Measurement]:
        return {
            label: Measurement(wall, self.spreads.get(label, 0.0), 2 * self.target.repeats)
            for label, wall in self.walls.items()
            if label not in ALTERNATES
        }

    def info(self) -> dict[str, Any]:
        return {"cached": self.cached, "variants": list(self.walls)}

    def to_json(self) -> dict[str, Any]:
        return {"profiles": self.profiles, "walls": self.walls, "spreads": self.spreads}

    def load_json(self, data: Any) -> None:
        """Tables from the cache; raises on anything but a complete table for the current variants."""
        labels = variant_labels(self.prepared.analysis, self.target)
        if set(data["walls"]) != set(labels) or set(data["profiles"]) != set(labels):
            raise ValueError("variants differ")
        _check_times([*data["walls"].values(), *data["spreads"].values()])
        self.profiles = {k: {n: float(t) for n, t in v.items()} for k, v in data["profiles"].items()}
        self.set_walls({**{k: float(v) for k, v in data["walls"].items()}, **self.load_extra(data)})
        self.spreads = {k: float(v) for k, v in data["spreads"].items()}

    def load_extra(self, data: Any) -> dict[str, float]:
        """Wall times of whatever else a subclass timed, read from its cached tables."""
        return {}


def _check_times(values: Sequence[Any], positive: bool = False) -> None:
    """Raises unless every value is a finite, non-negative (or `positive`) number of seconds."""
    for value in values:
        if not (isinstance(value, int | float) and math.isfinite(value) and (value > 0 if positive else value >= 0)):
            raise ValueError("bad time")


def time_variants(
    name: str,
    model: VariantCostModel,
    labels: list[str],
    payloads: list[bytes],
    float_s: float,
    feed: dict[str, np.ndarray],
    inputs: CostInputs,
) -> tuple[list[str], list[bytes], list[Measurement]]:
    """Time the variants interleaved, with as many mixed schemes as `mixed_count` allows
    for a model whose float variant profiled at `float_s`: (labels, models, times)."""
    target, rounds = model.target, 2 * model.target.repeats
    count = mixed_count(float_s, rounds)
    labels = labels + [f"mixed-{i}" for i in range(count)]
    payloads = payloads + [model.lower(s) for s in mixed_schemes(model.prepared.analysis, target, count)]
    more = f" and {count} mixed schemes" if count else ""
    inputs.say(f"{name}: timing the {len(labels) - count} variants{more} interleaved")
    return labels, payloads, target.measure_interleaved(payloads, feed, rounds=rounds)


class OrtCpuCostModel(VariantCostModel):
    """Measured costs of one model on `ort-cpu`.

    Keeps each variant's profiled node times and its unprofiled wall time; node costs are
    the profiled times scaled so each variant's nodes add up to its wall time (the profiler
    inflates graphs by different amounts), then the median over variants per node; then
    the node costs (and a per-run cost no node owns) are refitted to the wall time of every
    timed model, variants and mixed schemes, held near those (`wall_fit`)."""

    def __init__(self, target: OrtCpuTarget, prepared: Prepared, cached: bool = False) -> None:
        self.target, self.prepared, self.cached = target, prepared, cached
        self.analysis = prepared.analysis
        self.profiles: dict[str, dict[str, float]] = {}
        self.walls: dict[str, float] = {}
        #: interquartile range of each variant's measured wall time
        self.spreads: dict[str, float] = {}
        #: every timed model's optimized node keys (the variants' and `mixed-<i>`)
        self.lowered: dict[str, list[str]] = {}
        self.mixed_walls: dict[str, float] = {}
        #: derived: node key -> seconds; op type -> seconds (fallback); node name -> seconds
        #: (fallback for a node another variant ran as a different op); variant -> layer ->
        #: seconds; seconds per run no node owns
        self.nodes: dict[str, float] = {}
        self.op_median: dict[str, float] = {}
        self.name_median: dict[str, float] = {}
        self.variant_layers: dict[str, dict[str, float]] = {}
        self.intercept = 0.0
        self._owner = LayerAttribution(self.analysis, prepared)
        self._feed: dict[str, np.ndarray] | None = None

    # -- building --------------------------------------------------------------------------
    def lower(self, scheme: Scheme) -> bytes:
        """The model ONNX Runtime runs for `scheme` here (placeholder ranges: for timing only)."""
        calibration = Calibration.placeholder(self.analysis.activation_tensors)
        return emit(self.prepared, scheme, calibration, int8_kernels=True).payload()

    def set_profiles(
        self,
        profiles: dict[str, dict[tuple[str, str], float]],
        walls: dict[str, float],
        lowered: dict[str, list[tuple[str, str]]] | None = None,
    ) -> None:
        self.profiles = {
            label: {f"{op}|{name}": t for (op, name), t in nodes.items()} for label, nodes in profiles.items()
        }
        self.lowered = {label: [_key(op, name) for op, name in nodes] for label, nodes in (lowered or {}).items()}
        self.mixed = sum(label.startswith("mixed-") for label in self.lowered)
        self.set_walls(walls)

    def set_walls(self, walls: dict[str, float]) -> None:
        """Re-derive node costs from new wall times of the variants and mixed schemes
        (measured alongside whatever is compared with the predictions, so machine drift
        cancels)."""
        self._take_walls(walls)
        observed: dict[str, list[float]] = defaultdict(list)
        by_op: dict[str, list[float]] = defaultdict(list)
        for label, nodes in self.profiles.items():
            scale = self.walls[label] / max(math.fsum(nodes.values()), 1e-12)
            for raw, seconds in nodes.items():
                op, name = raw.split("|", 1)
                observed[_key(op, name)].append(seconds * scale)
                by_op[op].append(seconds * scale)
        self.nodes = {k: statistics.median(v) for k, v in sorted(observed.items())}
        self.op_median = {k: statistics.median(v) for k, v in sorted(by_op.items())}
        self._index_names()
        self.intercept = 0.0
        if self.lowered:
            times = {**self.walls, **self.mixed_walls}
            rows = [(self.lowered[label], times[label]) for label in sorted(self.lowered)]
            prior = {key: self._price(key) for nodes, _ in rows for key in nodes}
            fit = fit_node_costs(prior, rows)
            self.nodes = {**self.nodes, **fit.nodes}
            self.intercept = fit.intercept
            self._index_names()
        self.variant_layers = {}
        for label, nodes in self.profiles.items():
            shares: dict[str, float] = defaultdict(float)
            for raw in nodes:
                op, name = raw.split("|", 1)
                owner = self._owner.layer_of(op, name)
                if owner is not None:
                    shares[owner] += self.nodes[_key(op, name)]
            self.variant_layers[label] = dict(shares)

    # -- queries ---------------------------------------------------------------------------
    def layer_cost(self, layer: str, precision: Precision) -> float:
        table = self.variant_layers.get(precision.label)
        if table is None:
            raise TargetError(f"ort-cpu has no profile for {precision.label}; it runs {', '.join(self.walls)}")
        return table.get(layer, 0.0)

    def latency(self, scheme: Scheme) -> float:
        return self.predict(scheme)[0]

    def predict(self, scheme: Scheme) -> tuple[float, int]:
        """Predicted seconds, and how many nodes no variant showed (see `_price`)."""
        total, fallbacks = self.intercept, 0
        for op, name in self.target.lowered_nodes(self.lower(scheme)):
            key = _key(op, name)
            fallbacks += key not in self.nodes
            total += self._price(key)
        return total, fallbacks

    def _price(self, key: str) -> float:
        """A node's cost; one no variant ran is priced as the same-named node of another
        variant (ONNX Runtime fuses a shortcut convolution into a `FusedConv` in some
        neighbourhoods only), else at its op's median (the optimizer's unnamed nodes)."""
        if key in self.nodes:
            return self.nodes[key]
        op, name = key.split("|", 1)
        return self.name_median.get(_base_name(name), self.op_median.get(op, 0.0))

    def _index_names(self) -> None:
        """`name_median` from `nodes` (unnamed nodes have no namesake)."""
        by_name: dict[str, list[float]] = defaultdict(list)
        for key, seconds in self.nodes.items():
            name = _base_name(key.split("|", 1)[1])
            if name:
                by_name[name].append(seconds)
        self.name_median = {k: statistics.median(v) for k, v in sorted(by_name.items())}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "lowered": self.lowered, "mixed_walls": self.mixed_walls}

    def load_extra(self, data: Any) -> dict[str, float]:
        lowered, walls = data["lowered"], data["mixed_walls"]
        if not isinstance(lowered, dict) or not all(isinstance(n, list) for n in lowered.values()):
            raise ValueError("bad lowered nodes")
        if set(walls) != {label for label in lowered if label.startswith("mixed-")}:
            raise ValueError("mixed schemes differ")
        if lowered and not set(variant_labels(self.analysis, self.target)) <= set(lowered):
            raise ValueError("variants differ")
        _check_times(list(walls.values()), positive=True)
        self.lowered = {str(label): [str(key) for key in nodes] for label, nodes in lowered.items()}
        self.mixed = len(walls)
        return {k: float(v) for k, v in walls.items()}

    @classmethod
    def from_json(cls, target: OrtCpuTarget, prepared: Prepared, data: Any, cached: bool) -> OrtCpuCostModel:
        """Raises on anything but a complete table for the current variants."""
        model = cls(target, prepared, cached=cached)
        model.load_json(data)
        return model


def _base_name(name: str) -> str:
    """A node's name without ONNX Runtime's suffixes for copies (`_token_<n>`, `/duplicated`)."""
    return _TOKEN.sub("", name).removesuffix("/duplicated")


def _key(op: str, name: str) -> str:
    return f"{op}|{_TOKEN.sub('', name)}"


class LayerAttribution:
    """Which layer an optimized node belongs to: its kernel (by name, by the tensor an
    NCHWc kernel is named after, or, as OpenVINO names them, the layer's name with a
    suffix such as `/WithoutBiases`), its weight and bias dequantization, its input
    quantizers (QuantizeLinear/DequantizeLinear, OpenVINO's FakeQuantize)."""

    def __init__(self, analysis: Analysis, prepared: Prepared) -> None:
        self.layers = {layer.name for layer in analysis.layers}
        self.by_tensor: dict[str, str] = {}
        #: a layer's output tensor -> the layer (OpenVINO names a node producing a graph
        #: output after the tensor, `y_original`)
        self.by_output = {layer.output: layer.name for layer in analysis.layers}
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
        head = base.split("/WithoutBiases", 1)[0]
        if head in self.layers:
            return head
        tensor = base[: -len("_original")] if base.endswith("_original") else base
        if tensor in self.by_output:  # OpenVINO names a fused kernel after its output
            return self.by_output[tensor]
        if base.endswith("_bias_add") and base[: -len("_bias_add")] in self.layers:  # a Gemm as MatMul + Add
            return base[: -len("_bias_add")]
        match = _ACT_QDQ.match(base)
        if match and op in ("QuantizeLinear", "DequantizeLinear", "FakeQuantize") and match.group("bits"):
            return self.by_tensor.get(match.group("tensor"))
        if op == "DynamicQuantizeLinear" and base.endswith("_dyn_Q"):  # shared by the layers reading it
            return self.by_tensor.get(base[: -len("_dyn_Q")])
        return None
