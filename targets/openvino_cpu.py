"""`openvino-cpu`: OpenVINO's CPU plugin here, measured (the `openvino` extra).

OpenVINO reads the same QDQ ONNX model mpqc emits for `ort-cpu` and lowers it with its own
low-precision transformations: QuantizeLinear/DequantizeLinear pairs become FakeQuantize
nodes and int8 kernels where both a layer's weights and input are quantized, weight
DequantizeLinear nodes are folded or kept as weight decompression, DynamicQuantizeLinear
and blocked weights run as OpenVINO decides on this CPU. The search space is the one of
`ort-cpu`, so one scheme can be priced on both runtimes.

Costs: each variant (the uniform scheme of every precision some layer runs, and two
alternating int8/float schemes) is profiled with OpenVINO's performance counters (per
executed node, median over the runs), the node times scaled to the variant's wall time
measured in one interleaved run, and each node attributed to a layer by name. A scheme's
latency is additive: the sum of its layers' costs plus what no layer owns (the median over
variants). On small models, random mixed schemes are timed with the variants and the
layer costs refitted to all those wall times (`wall_fit`, as on `ort-cpu`). Unlike
`ort-cpu` it does not re-derive boundary costs from the lowered graph, so its predictions
are checked in `benchmarks/cross_runtime.py`.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections import defaultdict
from typing import Any

import numpy as np
from mpqc.targets.base import CostInputs, Measurement, Target
from mpqc.targets.ort_cpu import (
    ALTERNATES,
    CPU_SPACE,
    LayerAttribution,
    VariantCostModel,
    _check_times,
    cpu_model,
    interleave,
    profile_variants,
    runs_on_cpu,
    time_variants,
    variant_labels,
    variant_scheme,
)
from mpqc.targets.wall_fit import fit_node_costs

from mpqc.analysis import Layer
from mpqc.cache import Cache, content_key
from mpqc.cpu import detect
from mpqc.emit import emit
from mpqc.errors import TargetError
from mpqc.frontend import Prepared
from mpqc.precision import Precision
from mpqc.scheme import Scheme
from mpqc.stats import Calibration

__all__ = ["OpenVinoCpuTarget", "OpenVinoCostModel", "openvino_version"]

_CACHE_VERSION = 2
_MISSING = "openvino-cpu needs the openvino package: pip install 'mpqc[openvino]'"


def openvino_version() -> str | None:
    """The installed OpenVINO's version, or None where it is absent (checked before any work)."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


@functools.cache
def _float_precision() -> str:
    """What OpenVINO runs float layers in on this CPU by default: bf16 where the CPU has it
    natively (AVX-512 BF16, AMX), f32 otherwise. Timings of the float model, and so every
    ratio to it, are of that precision; it is recorded, not overridden, since it is what a
    deployment with OpenVINO's defaults gets."""
    import openvino as ov

    return str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


class OpenVinoCpuTarget(Target):
    """OpenVINO's CPU plugin here, measured with `threads` threads (`warmup` and `repeats` runs)."""

    name = "openvino-cpu"
    description = "OpenVINO CPU plugin on this machine, measured"
    measures = True
    int8_kernels = True

    def __init__(self, threads: int = 1, warmup: int = 10, repeats: int = 50) -> None:
        if threads < 1 or warmup < 0 or repeats < 4:
            raise TargetError("openvino-cpu needs threads >= 1, warmup >= 0 and repeats >= 4")
        if openvino_version() is None:
            raise TargetError(_MISSING)
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
            "openvino": openvino_version(),
            "float_precision": _float_precision(),
        }

    # -- running ---------------------------------------------------------------------------
    def compiled(self, payload: bytes, profile: bool = False) -> Any:
        """The model compiled for the CPU plugin (latency hint, `threads` threads)."""
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
            "PERF_COUNT": profile,
        }
        return core.compile_model(core.read_model(model=payload), "CPU", config)

    def measure_interleaved(
        self, payloads: list[bytes], feed: dict[str, np.ndarray], rounds: int | None = None
    ) -> list[Measurement]:
        """The models in turn, round after round (machine drift hits all alike); median and IQR."""
        requests = [self.compiled(p).create_infer_request() for p in payloads]
        runs = [functools.partial(request.infer, feed) for request in requests]
        return interleave(runs, self.warmup, rounds or self.repeats)

    def profile_nodes(self, payload: bytes, feed: dict[str, np.ndarray]) -> dict[str, float]:
        """Median seconds of every executed node (`type|name`) under the performance counters."""
        request = self.compiled(payload, profile=True).create_infer_request()
        for _ in range(self.warmup):
            request.infer(feed)
        durations: dict[str, list[float]] = defaultdict(list)
        for _ in range(self.repeats):
            request.infer(feed)
            for info in request.profiling_info:
                seconds = info.real_time.total_seconds()
                if seconds > 0:
                    durations[f"{info.node_type}|{info.node_name}"].append(seconds)
        return {key: statistics.median(values) for key, values in sorted(durations.items())}

    # -- cost model ------------------------------------------------------------------------
    def cost_model(self, inputs: CostInputs) -> OpenVinoCostModel:
        """Profile the variants (or read them from the cache) for this model and input."""
        prepared, feed = inputs.prepared, inputs.sample_feed()
        labels = variant_labels(prepared.analysis, self)
        key = content_key(
            {
                "model": prepared.digest(),
                "threads": self.threads,
                "repeats": self.repeats,
                "openvino": openvino_version(),
                "cpu": cpu_model(),
                "isa": detect().to_json(),
                "feed": {k: list(v.shape) for k, v in sorted(feed.items())},
                "variants": labels,
            }
        )
        cache = Cache("openvino-cpu", _CACHE_VERSION, enabled=inputs.use_cache)
        cached = cache.get(key, lambda data: OpenVinoCostModel.from_json(self, prepared, data))
        if cached is not None:
            cached.use_feed(feed)
            return cached
        model = OpenVinoCostModel(self, prepared)
        model.use_feed(feed)
        payloads = model.variant_payloads()
        profiles = profile_variants(
            "openvino-cpu",
            _CACHE_VERSION,
            key,
            labels,
            payloads,
            lambda payload: self.profile_nodes(payload, feed),
            inputs,
            decode=lambda data: {str(n): float(t) for n, t in data.items()},
        )
        float_s = math.fsum(profiles["float"].values()) if "float" in profiles else math.inf
        timed, _, walls = time_variants("openvino-cpu", model, labels, payloads, float_s, feed, inputs)
        model.set_profiles(profiles, {label: w.median_s for label, w in zip(timed, walls)}, len(timed) - len(labels))
        model.spreads = {label: w.iqr_s for label, w in zip(labels, walls)}
        cache.put(key, model.to_json())
        return model


class OpenVinoCostModel(VariantCostModel):
    """Measured, additive costs of one model on `openvino-cpu` (see the module docstring)."""

    def __init__(self, target: OpenVinoCpuTarget, prepared: Prepared, cached: bool = False) -> None:
        self.target, self.prepared, self.cached = target, prepared, cached
        self.analysis = prepared.analysis
        self.profiles: dict[str, dict[str, float]] = {}
        self.walls: dict[str, float] = {}
        self.spreads: dict[str, float] = {}
        #: variant -> layer -> seconds; seconds no layer owns (median over variants)
        self.variant_layers: dict[str, dict[str, float]] = {}
        self.rest = 0.0
        self.mixed_walls: dict[str, float] = {}
        self._owner = LayerAttribution(self.analysis, prepared)
        self._feed: dict[str, np.ndarray] | None = None

    def lower(self, scheme: Scheme) -> bytes:
        """The QDQ model OpenVINO reads for `scheme` (placeholder ranges: for timing only)."""
        calibration = Calibration.placeholder(self.analysis.activation_tensors)
        return emit(self.prepared, scheme, calibration, int8_kernels=True).payload()

    def set_profiles(self, profiles: dict[str, dict[str, float]], walls: dict[str, float], mixed: int = 0) -> None:
        self.profiles = profiles
        self.mixed = mixed
        self.set_walls(walls)

    def set_walls(self, walls: dict[str, float]) -> None:
        """Node times scaled so each variant's add up to its wall time; layer shares and the
        rest; refitted to the mixed schemes' times where there are some."""
        self._take_walls(walls)
        rests = []
        self.variant_layers = {}
        for label, nodes in self.profiles.items():
            scale = self.walls[label] / max(math.fsum(nodes.values()), 1e-12)
            shares: dict[str, float] = defaultdict(float)
            for key, seconds in nodes.items():
                op, name = key.split("|", 1)
                owner = self._owner.layer_of(op, name)
                if owner is not None:
                    shares[owner] += seconds * scale
            self.variant_layers[label] = dict(shares)
            rests.append(max(0.0, self.walls[label] - math.fsum(shares.values())))
        self.rest = statistics.median(rests) if rests else 0.0
        if self.mixed:
            self._refit()

    def _refit(self) -> None:
        """Layer costs (`layer|precision`) and the rest fitted to every wall time."""

        def keys(scheme: Scheme) -> list[str]:
            return [f"{name}|{p.label}" for name, p in scheme.layers.items()]

        uniform = [label for label in self.walls if label not in ALTERNATES]
        prior = {f"{layer}|{label}": cost for label in uniform for layer, cost in self.variant_layers[label].items()}
        rows = [
            (keys(variant_scheme(self.analysis, label, self.target)), self.walls[label]) for label in sorted(self.walls)
        ]
        rows += [(keys(s), self.mixed_walls[f"mixed-{i}"]) for i, s in enumerate(self.mixed_schemes())]
        fit = fit_node_costs(prior, rows)
        for label in uniform:  # a layer its variant ran at another precision keeps its share
            table = self.variant_layers[label]
            self.variant_layers[label] = {
                layer.name: fit.nodes.get(f"{layer.name}|{label}", table.get(layer.name, 0.0))
                for layer in self.analysis.layers
            }
        self.rest = fit.intercept

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "mixed": self.mixed, "mixed_walls": self.mixed_walls}

    def load_extra(self, data: Any) -> dict[str, float]:
        count, walls = data["mixed"], data["mixed_walls"]
        if not isinstance(count, int) or set(walls) != {f"mixed-{i}" for i in range(count)}:
            raise ValueError("mixed schemes differ")
        _check_times(list(walls.values()), positive=True)
        self.mixed = count
        return {k: float(v) for k, v in walls.items()}

    def layer_cost(self, layer: str, precision: Precision) -> float:
        table = self.variant_layers.get(precision.label)
        if table is None:
            raise TargetError(f"openvino-cpu has no profile for {precision.label}; it runs {', '.join(self.walls)}")
        return table.get(layer, 0.0)

    def latency(self, scheme: Scheme) -> float:
        return self.rest + math.fsum(self.layer_cost(name, p) for name, p in scheme.layers.items())

    @classmethod
    def from_json(cls, target: OpenVinoCpuTarget, prepared: Prepared, data: Any) -> OpenVinoCostModel:
        """Raises on anything but a complete table for the current variants."""
        model = cls(target, prepared, cached=True)
        model.load_json(data)
        return model
