"""PTQ sensitivity: each layer alone at each precision of the space it runs on the target
(the rest w8a8), its
quality loss on the validation split against uniform w8a8. One ONNX Runtime pass per
(layer, precision); reused from the run folder, then from the user cache (it depends on
the model, data, recipe and space, not on the budget or the target's costs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mpqc.cache import Cache, content_key
from mpqc.compiler.run_folder import RunFolder
from mpqc.executor import OnRetry
from mpqc.jobs import JobStore, QatContext, Where, run_ptq_jobs
from mpqc.precision import W8A8, Precision
from mpqc.scheme import Scheme
from mpqc.workload import Workload

__all__ = ["Sensitivity", "measure_sensitivity"]

_VERSION = 3


@dataclass(frozen=True)
class Sensitivity:
    """Per-layer PTQ quality losses: the additive proxy of the search."""

    #: PTQ quality of uniform w8a8
    reference: float
    #: layer -> precision label -> quality lost against the reference
    loss: dict[str, dict[str, float]]

    def predicted_ptq(self, scheme: Scheme) -> float:
        """Reference minus the layers' losses: the additive proxy the search optimises, held to
        [0, 1] (layers that gained by noise must not predict more than perfect quality)."""
        raw = self.reference - sum(self.loss[name][p.label] for name, p in scheme.layers.items())
        return min(1.0, max(0.0, raw))

    def to_json(self) -> dict[str, Any]:
        return {"reference_ptq": self.reference, "loss": self.loss}

    @classmethod
    def parse(cls, data: Any, labels: dict[str, list[str]]) -> Sensitivity:
        """Raises unless the table covers every layer and its labels with finite numbers."""
        reference = float(data["reference_ptq"])
        loss = {n: {lab: float(data["loss"][n][lab]) for lab in own} for n, own in labels.items()}
        values = [reference, *[v for row in loss.values() for v in row.values()]]
        if any(v != v or abs(v) > 2 for v in values):
            raise ValueError("values out of range")
        return cls(reference, loss)


def measure_sensitivity(
    workload: Workload,
    context: QatContext,
    space: Sequence[Precision],
    samples: int,
    where: Where,
    run: RunFolder,
    use_cache: bool,
    progress: Callable[[int], None] | None = None,
    on_retry: OnRetry | None = None,
) -> tuple[Sensitivity, str]:
    """The table, and where it came from ("run folder", "cache" or "measured"), measured on the
    first `samples` validation samples by PTQ jobs run `where` (each stored in the run folder
    as it finishes, so a resumed run measures only what was missing)."""
    assert workload.target is not None
    target = workload.target
    layers = workload.prepared.analysis.layers
    names = [layer.name for layer in layers]
    runnable = {layer.name: [p for p in space if target.runs(layer, p)] for layer in layers}
    labels = {name: sorted({p.label for p in own} | {W8A8.label}) for name, own in runnable.items()}
    key = content_key(
        {
            **workload.fingerprint(),
            "measure": workload.quality.name,
            "space": labels,
            "samples": samples,
            "int8_kernels": context.int8_kernels,
        }
    )
    cache = Cache("sensitivity", _VERSION, enabled=use_cache)

    def parse(data: Any) -> Sensitivity:
        return Sensitivity.parse(data, labels)

    saved = run.read("sensitivity.json", parse)
    if saved is not None:
        return saved, "run folder"
    saved = cache.get(key, parse)
    if saved is not None:
        run.write_json("sensitivity.json", saved.to_json())
        return saved, "cache"
    reference_scheme = Scheme.uniform(names, W8A8)
    pairs = [(n, p) for n in names for p in runnable[n] if p.label != W8A8.label]
    schemes = [reference_scheme] + [reference_scheme.with_layer(n, p) for n, p in pairs]
    store = JobStore(run.path / "jobs", context.key)
    qualities = run_ptq_jobs(context, schemes, samples, where, progress, store, on_retry)
    reference = qualities[0]
    loss: dict[str, dict[str, float]] = {n: {W8A8.label: 0.0} for n in names}
    for (name, precision), quality in zip(pairs, qualities[1:]):
        loss[name][precision.label] = reference - quality
    result = Sensitivity(reference, loss)
    run.write_json("sensitivity.json", result.to_json())
    cache.put(key, result.to_json())
    return result, "measured"
